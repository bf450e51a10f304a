"""Where settings come from, checked before pydantic-settings reads them: names and files.

``check_environment`` refuses a ``GUARDBOT_`` environment variable, ``.env`` entry or
``guardbot_`` secret file that names no setting of the model (with the nearest valid name), and
a list or section value that is not the JSON the environment sources expect; ``read_text``
refuses a binary or non-UTF-8 config file or ``.env``. Every refusal is a ``ConfigError`` whose
one-line message names the input, the value and what is expected. ``bot.settings`` builds on
these (and re-exports ``ConfigError``).
"""

from __future__ import annotations

import difflib
import functools
import json
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

ENV_PREFIX = "GUARDBOT_"
NESTED = "__"
#: ``GUARDBOT_`` variables that are not settings (read where they are used).
NON_SETTINGS = frozenset({"GUARDBOT_LIVE_CONFIRM", "GUARDBOT_INSTALL_BROWSER"})


class ConfigError(Exception):
    """A configuration problem, with one readable message (no traceback for users)."""


def nearest(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the closest candidate, or ``""``."""
    found = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {found[0]}?)" if found else ""


def read_text(path: Path, what: str, expected: str) -> str:
    """A config-like file as text; a missing, unreadable or binary one is a ``ConfigError``
    naming the file and what it should be."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what} {path} is not a text file (byte {data[exc.start]:#04x} at offset "
            f"{exc.start} is not UTF-8): expected {expected}"
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        raise ConfigError(
            f"{what} {path} is not a text file (a NUL byte at offset {nul}): expected {expected}"
        )
    return text


def short(text: str, limit: int = 120) -> str:
    """``text`` cut to ``limit`` characters (a value in a message stays one short line)."""
    return text if len(text) <= limit else f"{text[: limit - 1]}… ({len(text)} characters)"


# -- GUARDBOT_ variables and secret files must name a setting -----------------------------


def _field_kind(annotation: Any) -> tuple[str, type[BaseModel] | None]:
    """``("section", model)``, ``("open", None)`` (a dict: any key below), ``("list", None)``
    (a JSON list) or ``("leaf", None)`` for a field's annotation."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0] if args else annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section", annotation
    origin = typing.get_origin(annotation) or annotation
    if origin in (dict, Mapping):
        return "open", None
    if origin in (tuple, list, set, frozenset):
        return "list", None
    return "leaf", None


def _walk(model: type[BaseModel], prefix: tuple[str, ...]) -> dict[tuple[str, ...], str]:
    tree: dict[tuple[str, ...], str] = {}
    for name, field in model.model_fields.items():
        kind, sub = _field_kind(field.annotation)
        path = (*prefix, name)
        tree[path] = kind
        if sub is not None:
            tree.update(_walk(sub, path))
    return tree


@functools.cache
def setting_tree(model: type[BaseModel]) -> dict[tuple[str, ...], str]:
    """Every setting path (sections and keys) of ``model`` with its kind (``_field_kind``)."""
    return _walk(model, ())


def tree_names(model: type[BaseModel], under: tuple[str, ...], sep: str) -> list[str]:
    """The setting names below ``under`` (all when empty), joined with ``sep``."""
    return [sep.join(p) for p in setting_tree(model) if p[: len(under)] == under]


def _kind_of(model: type[BaseModel], path: tuple[str, ...]) -> str | None:
    tree = setting_tree(model)
    kind = tree.get(path)
    if kind is not None:
        return kind
    for depth in range(len(path) - 1, 0, -1):
        if tree.get(path[:depth]) == "open":
            return "open"
    return None


def _check_name(model: type[BaseModel], name: str, value: str | None, origin: str) -> None:
    """A ``GUARDBOT_`` name must name a setting (else: the nearest valid name); the value of a
    list or a section must be JSON, as the environment sources read it."""
    upper = name.upper()
    if upper in NON_SETTINGS:
        return
    path = tuple(upper[len(ENV_PREFIX) :].lower().split(NESTED))
    kind = _kind_of(model, path)
    secret = any(s in upper for s in ("KEY", "SECRET", "PASSWORD", "TOKEN", "WEBHOOK"))
    shown = "" if value is None else f" = {'***' if secret else short(repr(value))}"
    if kind is None:
        found = difflib.get_close_matches(
            NESTED.join(path), tree_names(model, (), NESTED), n=1, cutoff=0.6
        )
        hint = f" (did you mean {ENV_PREFIX}{found[0].upper()}?)" if found else ""
        raise ConfigError(
            f"unknown setting: {origin}{shown} names no setting; expected "
            f"{ENV_PREFIX}<SECTION>{NESTED}<KEY> of a setting{hint}"
        )
    if value is None or kind not in ("list", "section"):
        return
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    want = list if kind == "list" else dict
    if not isinstance(parsed, want):
        dotted = ".".join(path)
        what = "a JSON list" if kind == "list" else "a JSON object"
        if dotted == "exchange.symbols":
            what += ', e.g. ["BTC/USDT:USDT"]'
        raise ConfigError(
            f"invalid configuration: {dotted}{shown} (from {origin}): expected {what}"
        )


def check_environment(
    model: type[BaseModel],
    environ: Mapping[str, str],
    env_file: Path | None,
    secrets_dir: Path | None,
) -> None:
    """Every ``GUARDBOT_`` variable (environment, ``.env``) and ``guardbot_`` secret file must
    name a setting; ``.env`` must be a text file. Raises ``ConfigError`` naming the first one
    that does not."""
    for name, value in environ.items():
        if name.upper().startswith(ENV_PREFIX):
            _check_name(model, name, value, f"environment variable {name}")
    if env_file is not None and env_file.is_file():
        from io import StringIO

        from dotenv import dotenv_values

        text = read_text(env_file, "env file", "KEY=VALUE lines")
        for key, entry_value in dotenv_values(stream=StringIO(text)).items():
            if key.upper().startswith(ENV_PREFIX):
                _check_name(model, key, entry_value, f"{key} in env file {env_file}")
    if secrets_dir is not None and secrets_dir.is_dir():
        for entry in sorted(secrets_dir.iterdir()):
            if entry.name.upper().startswith(ENV_PREFIX) and entry.is_file():
                _check_name(model, entry.name, None, f"secrets file {entry}")
