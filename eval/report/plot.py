"""The efficiency-effectiveness plot as inline SVG, drawn here so the page needs no plotting library or network.

x is latency (ms/query, log scale when it spans more than a decade), y the effectiveness measure. The Pareto
frontier, the runs no other run beats on both axes at once (`cascade.eval.pareto`, ties included), is highlighted
and joined by a step line.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

from cascade.eval.pareto import pareto_front

WIDTH, HEIGHT = 780, 380
LEFT, RIGHT, TOP, BOTTOM = 64, 200, 24, 52


@dataclass(frozen=True)
class Point:
    label: str
    ms: float
    score: float
    baseline: bool = False


def _nice_step(span: float, count: int = 5) -> float:
    raw = span / max(count, 1)
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def _linear_ticks(low: float, high: float) -> list[float]:
    step = _nice_step(high - low)
    first = math.ceil(low / step - 1e-9) * step
    ticks, value = [], first
    while value <= high + 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _log_ticks(low: float, high: float) -> list[float]:
    ticks = []
    for exponent in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        for factor in (1, 2, 5):
            value = factor * 10**exponent
            if low <= value <= high:
                ticks.append(value)
    return ticks


def _label(value: float) -> str:
    return f"{value:g}"


def _place_labels(items: list[tuple[float, float, str]], line: float = 12.0, char: float = 6.2) -> list[float]:
    """The y of each label: at its point, pushed down past labels already placed that it would overprint."""
    placed: list[tuple[float, float, float]] = []  # x0, x1, y
    out = [0.0] * len(items)
    for i in sorted(range(len(items)), key=lambda i: (items[i][1], items[i][0])):
        x, y, text = items[i]
        x0, x1 = x + 8, x + 8 + char * len(text)
        while any(a < x1 and x0 < b and abs(y - c) < line for a, b, c in placed):
            y += line
        placed.append((x0, x1, y))
        out[i] = y
    return out


def efficiency_plot(points: list[Point], measure: str, title: str) -> str:
    """An SVG element (a string) with one circle per run; frontier circles carry the class `frontier`."""
    esc = html.escape
    if not points:
        return ""
    positive = [p.ms for p in points if p.ms > 0]
    floor = min(positive) / 2 if positive else 0.01
    xs = [max(p.ms, floor) for p in points]
    x_low, x_high = min(xs), max(xs)
    log_x = x_high / x_low > 10
    if log_x:
        x_low, x_high = 10 ** (math.floor(math.log10(x_low) * 4) / 4), 10 ** (math.ceil(math.log10(x_high) * 4) / 4)
        ticks_x = _log_ticks(x_low, x_high)
    else:
        pad = (x_high - x_low) * 0.1 or max(x_high * 0.1, 0.1)
        x_low, x_high = max(0.0, x_low - pad), x_high + pad
        ticks_x = _linear_ticks(x_low, x_high)
    ys = [p.score for p in points]
    pad = (max(ys) - min(ys)) * 0.1 or 0.05
    y_low, y_high = max(0.0, min(ys) - pad), min(1.0, max(ys) + pad) if max(ys) <= 1 else max(ys) + pad
    if y_high <= y_low:
        y_high = y_low + 0.1
    ticks_y = _linear_ticks(y_low, y_high)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(value: float) -> float:
        value = max(value, floor)
        if log_x:
            return LEFT + plot_w * (math.log10(value) - math.log10(x_low)) / (math.log10(x_high) - math.log10(x_low))
        return LEFT + plot_w * (value - x_low) / (x_high - x_low)

    def sy(value: float) -> float:
        return TOP + plot_h * (1 - (value - y_low) / (y_high - y_low))

    parts = [
        f'<svg class="effplot" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{esc(title)}">',
        f"<title>{esc(title)}</title>",
        f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}"/>',
    ]
    for tick in ticks_x:
        x = sx(tick)
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot_h}"/>')
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{_label(tick)}</text>'
        )
    for tick in ticks_y:
        y = sy(tick)
        parts.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_label(tick)}</text>')
    axis_x = "ms/query (log scale)" if log_x else "ms/query"
    parts.append(
        f'<text class="axis" x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 12}" text-anchor="middle">{axis_x}</text>'
    )
    parts.append(
        f'<text class="axis" transform="translate(16 {TOP + plot_h / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">{esc(measure)}</text>'
    )
    front = pareto_front([(x, p.score) for p, x in zip(points, xs, strict=True)])
    if len(front) > 1:
        # A step line: between two frontier runs, the best score on offer is the faster one's.
        path = [f"M{sx(xs[front[0]]):.1f},{sy(points[front[0]].score):.1f}"]
        path += [f"H{sx(xs[i]):.1f} V{sy(points[i].score):.1f}" for i in front[1:]]
        parts.append(f'<path class="frontier-line" d="{" ".join(path)}"/>')
    label_y = _place_labels([(sx(xs[i]), sy(p.score), p.label) for i, p in enumerate(points)])
    for i, p in enumerate(points):
        x, y = sx(xs[i]), sy(p.score)
        classes = "point" + (" frontier" if i in front else "") + (" baseline" if p.baseline else "")
        tip = f"{p.label}: {measure} {p.score:.4f}, {p.ms:.2f} ms/query" + (" (Pareto frontier)" if i in front else "")
        leader = (
            f'<line class="leader" x1="{x + 4:.1f}" y1="{y + 3:.1f}" x2="{x + 8:.1f}" y2="{label_y[i]:.1f}"/>'
            if label_y[i] - y > 2
            else ""
        )
        parts.append(
            f'<g class="{classes}"><circle cx="{x:.1f}" cy="{y:.1f}" r="5"><title>{esc(tip)}</title></circle>'
            f'{leader}<text x="{x + 8:.1f}" y="{label_y[i] + 4:.1f}">{esc(p.label)}</text></g>'
        )
    parts.append("</svg>")
    return "\n".join(parts)
