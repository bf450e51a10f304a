"""Strategies: the protocol, the built-ins, and loading one by dotted path from config.

``strategy.path = "bot.strategies.sma_cross:SmaCross"`` names a class (or factory) and
``strategy.params`` its keyword arguments. Built-ins: ``bot.strategies.sma_cross:SmaCross`` and
``bot.strategies.donchian:Donchian``. Seatbelt mode (``"none"``) is the caller's business.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from bot.strategies.base import NO_INTENTS, BaseStrategy, EntryParams, Strategy

__all__ = ["NO_INTENTS", "BaseStrategy", "EntryParams", "Strategy", "load_strategy"]


def load_strategy(path: str, params: Mapping[str, Any] | None = None) -> Strategy:
    """Import ``"package.module:Class"`` and build it with ``params`` as keyword arguments.

    Raises ``ValueError`` naming the path when the path is malformed, the module or attribute is
    missing, the parameters are refused, or the object built is not a ``Strategy``.
    """
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr or ":" in attr:
        raise ValueError(f'strategy path {path!r} must look like "package.module:Class"')
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
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
