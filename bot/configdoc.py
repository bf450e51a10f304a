"""Documentation generated from the settings models: the README's config table and TOML output."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from bot.settings import Settings


def _bounds(meta: list[Any]) -> str:
    parts = []
    for m in meta:
        for attr, sym in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            value = getattr(m, attr, None)
            if value is not None:
                parts.append(f"{sym} {value}")
    return ", ".join(parts)


def iter_fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str, str, str]]:
    """(dotted key, default, bounds, description) for every leaf field of a settings model."""
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from iter_fields(ann, key + ".")
            continue
        if info.default is not PydanticUndefined:
            default = info.default
        elif info.default_factory is not None:
            default = info.default_factory()  # type: ignore[call-arg]
        else:
            default = None
        shown = "" if default is None else json.dumps(default, default=str, ensure_ascii=False)
        yield key, shown, _bounds(info.metadata), info.description or ""


def markdown_table() -> str:
    """The config reference as a Markdown table (kept in the README; a test checks it is fresh)."""
    rows = ["| key | default | bounds | description |", "|---|---|---|---|"]
    for key, default, bounds, desc in iter_fields(Settings):
        cell = default.replace("|", "\\|")
        rows.append(
            f"| `{key}` | `{cell}` | {bounds} | {desc} |"
            if cell
            else f"| `{key}` | | {bounds} | {desc} |"
        )
    return "\n".join(rows)


def to_toml(data: Mapping[str, Any]) -> str:
    """Render nested plain data as TOML-like text (tables for nested mappings)."""
    lines: list[str] = []

    def emit(table: Mapping[str, Any], path: str) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping) or not v}
        nested = {k: v for k, v in table.items() if isinstance(v, Mapping) and v}
        if path and scalars:
            lines.append(f"\n[{path}]")
        for k, v in scalars.items():
            lines.append(f"{k} = {_toml_value(v)}")
        for k, v in nested.items():
            emit(v, f"{path}.{k}" if path else k)

    emit(data, "")
    return "\n".join(lines).lstrip("\n")


def _toml_value(value: Any) -> str:
    if value is None:
        return '""  # unset'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def default_toml() -> str:
    """``config/default.toml``: every key at its default, each with its description as a comment."""
    out = [
        "# guardbot default configuration: every knob, at its safe default.",
        "# Generated from the settings models (guardbot config doc --toml); a test checks it.",
        "# Layering (highest first): CLI flags > GUARDBOT_* env (nested with __) > .env >",
        "# secrets dir (/run/secrets) > the file given with --config > this file.",
        "# Out of the box: paper mode replaying the bundled BTC/USDT:USDT 5m data (Mar-Apr 2025).",
    ]
    _emit_model(Settings, "", out)
    return "\n".join(out) + "\n"


def _emit_model(model: type[BaseModel], path: str, out: list[str]) -> None:
    nested: list[tuple[str, type[BaseModel], str]] = []
    scalars: list[str] = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            nested.append((name, ann, info.description or ""))
            continue
        if info.default is not PydanticUndefined:
            default = info.default
        elif info.default_factory is not None:
            default = info.default_factory()  # type: ignore[call-arg]
        else:
            default = None
        bounds = _bounds(info.metadata)
        note = f"{info.description or ''}" + (f" ({bounds})" if bounds else "")
        scalars.append(f"# {note}")
        if default is None:
            scalars.append(f"# {name} =")
        else:
            scalars.append(f"{name} = {_toml_value(default)}")
    if path and scalars:
        out.append("")
        out.append(f"[{path}]")
    elif scalars:
        out.append("")
    out.extend(scalars)
    for name, sub, desc in nested:
        if desc:
            out.append("")
            out.append(f"# --- {desc}")
        _emit_model(sub, f"{path}.{name}" if path else name, out)
