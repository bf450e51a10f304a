"""Strategies: the protocol, the built-ins, and loading one by dotted path from config.

``strategy.path = "bot.strategies.sma_cross:SmaCross"`` names a class (or factory) and
``strategy.params`` its keyword arguments. Built-ins: ``bot.strategies.sma_cross:SmaCross`` and
``bot.strategies.donchian:Donchian``. Seatbelt mode (``"none"``) is the caller's business.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from bot.strategies.base import NO_INTENTS, BaseStrategy, EntryParams, Strategy

__all__ = ["NO_INTENTS", "BaseStrategy", "EntryParams", "Strategy", "load_strategy"]


def load_strategy(path: str, params: Mapping[str, Any] | None = None) -> Strategy:
    """Import ``"package.module:Class"`` (or ``"path/to/file.py:Class"``, a user's own strategy
    file) and build it with ``params`` as keyword arguments.

    Raises ``ValueError`` naming the path when the path is malformed, the module or attribute is
    missing, the parameters are refused, or the object built is not a ``Strategy``.
    """
    module_name, sep, attr = path.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(
            f'strategy path {path!r} must look like "package.module:Class" or "file.py:Class"'
        )
    try:
        if module_name.endswith(".py"):
            module = _import_file(Path(module_name).expanduser())
        else:
            module = importlib.import_module(module_name)
    except (ImportError, OSError) as e:
        raise ValueError(f"strategy path {path!r}: cannot import {module_name!r} ({e})") from e
    factory: Any = module
    for part in attr.split("."):
        try:
            factory = getattr(factory, part)
        except AttributeError:
            raise ValueError(f"strategy path {path!r}: {module_name} has no {attr!r}") from None
    if not callable(factory):
        raise ValueError(f"strategy path {path!r}: {attr!r} is not a class or factory")
    try:
        strategy = factory(**dict(params or {}))
    except (TypeError, ValueError) as e:
        raise ValueError(f"strategy path {path!r}: bad params {dict(params or {})!r}: {e}") from e
    if not isinstance(strategy, Strategy) or not isinstance(getattr(strategy, "name", None), str):
        raise ValueError(
            f"strategy path {path!r}: {type(strategy).__name__} is not a Strategy "
            "(needs name, on_candle and on_tick)"
        )
    return strategy


def _import_file(file: Path) -> ModuleType:
    """Import a strategy file by path (once per process; the module is named after the file)."""
    resolved = file.resolve()
    if not resolved.is_file():
        raise ImportError(f"no such file: {file}")
    name = "guardbot_user_strategy_" + hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
