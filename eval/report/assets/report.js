// cascade report: tabs (one per suite) and sortable tables. No library, no network; the page works without it.
(() => {
  "use strict";
  const tabs = Array.from(document.querySelectorAll('[role="tab"]'));
  const panels = Array.from(document.querySelectorAll('[role="tabpanel"]'));

  function show(id, focus) {
    for (const tab of tabs) {
      const on = tab.getAttribute("aria-controls") === id;
      tab.setAttribute("aria-selected", on ? "true" : "false");
      tab.tabIndex = on ? 0 : -1;
      if (on && focus) tab.focus();
    }
    for (const panel of panels) panel.hidden = panel.id !== id;
  }

  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => {
      const id = tab.getAttribute("aria-controls");
      show(id, false);
      try {
        history.replaceState(null, "", "#" + id);
      } catch (e) {
        /* some file:// contexts refuse; the tab still switches */
      }
    });
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = tabs[(i + step + tabs.length) % tabs.length];
      show(next.getAttribute("aria-controls"), true);
    });
  });
  if (tabs.length) {
    const wanted = decodeURIComponent(location.hash.slice(1));
    show(panels.some((p) => p.id === wanted) ? wanted : tabs[0].getAttribute("aria-controls"), false);
  }

  // A cell sorts by its data-v attribute (numbers as numbers); empty values go last in both directions.
  function key(cell) {
    const raw = cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent.trim();
    if (raw === "") return null;
    const number = Number(raw);
    return Number.isNaN(number) ? raw.toLowerCase() : number;
  }

  function compare(a, b) {
    if (typeof a === "number" && typeof b === "number") return a - b;
    if (typeof a === "number") return -1;
    if (typeof b === "number") return 1;
    return a < b ? -1 : a > b ? 1 : 0;
  }

  for (const table of document.querySelectorAll("table.sortable")) {
    const headers = Array.from(table.tHead.rows[0].cells);
    headers.forEach((th, column) => {
      th.tabIndex = 0;
      th.title = "Sort by " + th.textContent.trim();
      const sort = () => {
        const direction = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
        for (const other of headers) other.removeAttribute("aria-sort");
        th.setAttribute("aria-sort", direction);
        const sign = direction === "ascending" ? 1 : -1;
        const body = table.tBodies[0];
        const rows = Array.from(body.rows).map((row, index) => ({ row, index, value: key(row.cells[column]) }));
        rows.sort((x, y) => {
          if (x.value === null || y.value === null) {
            return (x.value === null) - (y.value === null) || x.index - y.index;
          }
          return sign * compare(x.value, y.value) || x.index - y.index;
        });
        for (const { row } of rows) body.appendChild(row);
      };
      th.addEventListener("click", sort);
      th.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          sort();
        }
      });
    });
  }
})();
