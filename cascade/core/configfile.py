"""The one YAML-to-pydantic loader: every kind of config (pipeline, suite, sweep, training) reads through here.

Its errors name `file:line: key: message`, for YAML syntax, for pydantic validation at any depth, and for checks
a caller makes after validation (`error_at`). YAML is read with `safe_load` only; a key given twice in one mapping
is refused at the line of the second one (YAML would silently keep the last).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from cascade.core.errors import CascadeError

M = TypeVar("M", bound=BaseModel)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (it is already given above)", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read_yaml(path: str | Path, what: str) -> tuple[Any, yaml.Node | None]:
    """(data, node tree) of a YAML file; the tree maps validation errors back to lines."""
    path = Path(path)
    if not path.is_file():
        raise CascadeError(f"{what} not found", where=str(path))
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CascadeError(f"not UTF-8 text (byte {exc.start})", where=str(path)) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise CascadeError(f"not valid YAML ({getattr(exc, 'problem', None) or exc})", where=where) from None
    return data, root


def line_of(root: yaml.Node | None, loc: tuple) -> int | None:
    """The YAML line of the node at a location (or of its deepest existing parent)."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    node, line = value, key.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def key_path(loc: tuple) -> str:
    """`pipeline[0].bm25.k` from a location tuple."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def error_at(path: str | Path, root: yaml.Node | None, loc: tuple, message: str) -> CascadeError:
    """A one-line error for the key at `loc`, naming its file and line."""
    line = line_of(root, loc)
    where = f"{path}:{line}" if line else str(path)
    return CascadeError(f"{key_path(loc)}: {message}" if loc else message, where=where)


def validation_error(
    path: str | Path, root: yaml.Node | None, error: ValidationError, prefix: tuple = ()
) -> CascadeError:
    """The first pydantic error, as `file:line: key: message`."""
    detail = error.errors()[0]
    loc = prefix + tuple(p for p in detail["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    message = "unknown key" if detail["type"] == "extra_forbidden" else detail["msg"]
    if detail["type"] == "value_error":  # a validator's own message, without pydantic's "Value error, "
        message = message.removeprefix("Value error, ")
    if detail["type"] == "missing":
        message = "required key is missing"
    return error_at(path, root, loc, message)


def validate(model: type[M], data: Any, path: str | Path, root: yaml.Node | None, prefix: tuple = ()) -> M:
    """`model` from `data` (the node at `prefix` of the file), or a one-line error naming file, line and key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(path, root, exc, prefix) from None


def load_model(path: str | Path, model: type[M], what: str, defaults: dict | None = None) -> tuple[M, yaml.Node | None]:
    """Read a YAML mapping and validate it as `model`; `defaults` fill keys the file leaves out."""
    data, root = read_yaml(path, what)
    if not isinstance(data, dict):
        fields = ", ".join(list(model.model_fields)[:4])
        raise CascadeError(f"a {what} is a YAML mapping with keys {fields}, ...", where=str(path))
    data = {**(defaults or {}), **data}
    return validate(model, data, path, root), root
