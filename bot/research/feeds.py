"""What a replay runs on: the candle files the settings name, loaded with their mark candles and
funding rates, and the guards configuration with every rule switched off (``--no-guards``).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import structlog

from bot.settings import Settings
from guards import GuardsConfig
from paper.feed import (
    Candles,
    FeedError,
    bundled_candles_path,
    bundled_funding_path,
    load_candles,
    load_funding,
)

log = structlog.get_logger("replay")


class ReplayError(Exception):
    """A replay that cannot run (bad data, unknown market, bad strategy): one readable message."""


def guards_off(config: GuardsConfig) -> GuardsConfig:
    """The same config with every rule disabled (the engine still refuses unknown markets)."""
    update = {}
    for name in type(config).model_fields:
        sub = getattr(config, name)
        if hasattr(sub, "enabled"):
            update[name] = sub.model_copy(update={"enabled": False})
    return config.model_copy(update=update)


def enabled_rules(config: GuardsConfig) -> list[str]:
    return [
        name
        for name in type(config).model_fields
        if getattr(getattr(config, name), "enabled", False) is True
    ]


def load_feeds(settings: Settings) -> list[Feed]:
    """Every candle file the settings name (``feed.path`` then ``feed.paths``), each with its
    mark candles and funding rates where given (or the bundled set when nothing is named)."""
    first = load_feed(settings)
    feeds = [Feed(*first)]
    for extra in settings.feed.paths:
        try:
            candles = load_candles(extra, allow_gaps=settings.feed.allow_gaps)
        except (FeedError, OSError) as exc:
            raise ReplayError(str(exc)) from None
        for gap in candles.gaps:
            log.warning("data_gap", file=str(extra), gap=str(gap))
        if len(candles) == 0:
            raise ReplayError(f"no candles in {extra}")
        feeds.append(Feed(candles, None, []))
    symbols = [f.candles.symbol for f in feeds]
    if len(set(symbols)) != len(symbols):
        raise ReplayError(f"two candle files of the same symbol: {symbols}")
    return feeds


class Feed(NamedTuple):
    """One symbol's replay data."""

    candles: Candles
    marks: Candles | None
    rates: list[tuple[int, float]]


def load_feed(settings: Settings) -> tuple[Candles, Candles | None, list[tuple[int, float]]]:
    """Candles, optional mark candles and funding rates the settings name (or the bundled set)."""
    feed = settings.feed
    try:
        if feed.path is None:
            candles = load_candles(bundled_candles_path(), symbol=feed.symbol)
            funding_path: Path | None = feed.funding_path or bundled_funding_path()
        else:
            candles = load_candles(feed.path, symbol=feed.symbol, allow_gaps=feed.allow_gaps)
            funding_path = feed.funding_path
        for gap in candles.gaps:
            log.warning("data_gap", file=str(feed.path), gap=str(gap))
        marks = None
        if feed.mark_path is not None:
            marks = load_candles(feed.mark_path, symbol=candles.symbol, allow_gaps=True)
        rates: list[tuple[int, float]] = []
        if funding_path is not None:
            series = load_funding(funding_path, symbol=candles.symbol)
            rates = series.between(candles.ts[0], candles.ts[-1] + candles.timeframe_ms)
    except (FeedError, OSError) as exc:
        raise ReplayError(str(exc)) from None
    if len(candles) == 0:
        raise ReplayError(f"no candles in {feed.path}")
    return candles, marks, rates
