"""A small TOML writer for configuration trees (the best configuration ``guardbot tune`` writes).

Handles what the settings hold: tables, strings, booleans, integers, floats, arrays of those and
inline tables inside arrays; ``None`` (an unset optional) is left out, so the default applies.
The output reads back with ``tomllib`` to the same tree (tested).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v if x is not None) + "]"
    if isinstance(v, Mapping):
        inner = ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items() if x is not None)
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def dumps(tree: Mapping[str, Any], header: str = "") -> str:
    """``tree`` as a TOML document (``header`` lines become comments at the top)."""
    lines = [f"# {h}" if h else "#" for h in header.splitlines()]
    if lines:
        lines.append("")
    _table(tree, [], lines)
    return "\n".join(lines).rstrip() + "\n"


def _table(tree: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    scalars = [(k, v) for k, v in tree.items() if v is not None and not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in tree.items() if isinstance(v, Mapping)]
    if path and (scalars or not tables):
        lines.append("[" + ".".join(_key(p) for p in path) + "]")
    for k, v in scalars:
        lines.append(f"{_key(k)} = {_value(v)}")
    if path and (scalars or not tables):
        lines.append("")
    for k, v in tables:
        _table(v, [*path, k], lines)
