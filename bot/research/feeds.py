"""What a replay runs on: the candle files the settings name, each with its mark candles, funding
rates and market rules, cut to the configured time window; and the guards configuration with
every rule switched off (``--no-guards``).

Beside a freqtrade-named candle file (``SOL_USDT_USDT-5m-futures.feather``), its mark candles
(``…-5m-mark.*``) and funding history (``…-8h-funding_rate.*``) are picked up when they are in the
same folder, and a markets snapshot (``markets-<exchange>.json``, as ``guardbot download`` and
the live cache write it) in that folder or its parent, unless the settings name them. What was
used is listed in ``Feed.notes`` and so in the report.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import structlog

from bot.settings import Settings
from guards import GuardsConfig
from paper.feed import (
    Candles,
    FeedError,
    Gap,
    Timerange,
    TimerangeError,
    bundled_candles_path,
    bundled_funding_path,
    format_timeframe,
    infer_symbol,
    load_candles,
    load_funding,
    parse_timerange,
)
from paper.markets import (
    PaperMarket,
    UnknownMarket,
    bundled_tier_entries,
    read_snapshot,
    resolve_market,
    spot_hint,
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


class Feed(NamedTuple):
    """One symbol's replay data."""

    candles: Candles
    marks: Candles | None
    rates: list[tuple[int, float]]
    #: The market rules to replay with (None: resolved by the caller from the bundled files).
    market: PaperMarket | None = None
    #: What was used and what to know about it (sources, window, gaps), for the report.
    notes: tuple[str, ...] = ()


def _iso(ts_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts_ms / 1000))


def utc(ts_ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts_ms / 1000))


def window(settings: Settings) -> Timerange | None:
    try:
        return parse_timerange(settings.feed.timerange)
    except TimerangeError as exc:
        raise ReplayError(str(exc)) from None


def load_feeds(settings: Settings) -> list[Feed]:
    """Every candle file the settings name (``feed.path`` then ``feed.paths``), each with its
    mark candles, funding rates and market (or the bundled set when nothing is named)."""
    feed = settings.feed
    tr = window(settings)
    snapshot = _snapshot(settings)
    feeds = [
        _load_one(
            settings,
            feed.path,
            feed.symbol,
            tr,
            snapshot,
            mark_path=feed.mark_path,
            funding_path=feed.funding_path,
        )
    ]
    for extra in feed.paths:
        feeds.append(_load_one(settings, extra, None, tr, snapshot))
    symbols = [f.candles.symbol for f in feeds]
    if len(set(symbols)) != len(symbols):
        raise ReplayError(f"two candle files of the same symbol: {symbols}")
    if len(feeds) > 1:
        end = max(f.candles.ts[-1] for f in feeds)
        start = min(f.candles.ts[0] for f in feeds)
        for i, f in enumerate(feeds):
            c = f.candles
            extra_notes = []
            if c.ts[-1] + c.timeframe_ms <= end:
                extra_notes.append(
                    f"{c.symbol} data ends at {utc(c.ts[-1] + c.timeframe_ms)}, before the "
                    f"others ({utc(end)}): its last mark is held after that"
                )
            if c.ts[0] > start:
                extra_notes.append(f"{c.symbol} data starts later, at {utc(c.ts[0])}")
            for note in extra_notes:
                log.warning(
                    "data_coverage",
                    data_time=_iso(c.ts[-1] + c.timeframe_ms),
                    symbol=c.symbol,
                    note=note,
                )
            feeds[i] = f._replace(notes=f.notes + tuple(extra_notes))
    return feeds


def _snapshot(settings: Settings) -> tuple[Path, dict[str, Any], dict[str, Any]] | None:
    path = settings.feed.markets_path
    if path is None and settings.feed.path is not None:
        path = _find_snapshot(Path(settings.feed.path))
    if path is None:
        return None
    try:
        markets, tiers = read_snapshot(path)
    except UnknownMarket as exc:
        raise ReplayError(str(exc)) from None
    return path, markets, tiers


def _find_snapshot(data: Path) -> Path | None:
    folder = data if data.is_dir() else data.parent
    for where in (folder, folder.parent):
        found = sorted(where.glob("markets-*.json")) if where.is_dir() else []
        if found:
            return found[0]
    return None


def sibling(path: Path, kind: str) -> Path | None:
    """The mark (``kind="mark"``) or funding (``"funding_rate"``) file of a freqtrade-named
    candle file in the same folder, or None."""
    if path.is_dir():
        return None
    head, sep, rest = path.name.partition("-")
    tf = rest.partition("-")[0]
    if not sep or not tf:
        return None
    wanted = f"{head}-{tf}-mark" if kind == "mark" else f"{head}-8h-funding_rate"
    for candidate in sorted(path.parent.glob(wanted + ".*")):
        if candidate != path and candidate.is_file():
            return candidate
    return None


def _load_one(
    settings: Settings,
    path: Path | None,
    symbol: str | None,
    tr: Timerange | None,
    snapshot: tuple[Path, dict[str, Any], dict[str, Any]] | None,
    *,
    mark_path: Path | None = None,
    funding_path: Path | None = None,
) -> Feed:
    feed = settings.feed
    notes: list[str] = []
    bundled = path is None
    source = bundled_candles_path() if path is None else Path(path)
    name = symbol or infer_symbol(source)
    if name is not None:
        _check_tradeable(name, snapshot)  # before reading a large file or warning about its gaps
    try:
        candles = load_candles(
            source, symbol=symbol, allow_gaps=False if bundled else feed.allow_gaps
        )
    except (FeedError, OSError) as exc:
        raise ReplayError(_with_hint(str(exc), source)) from None
    if name is None:
        _check_tradeable(candles.symbol, snapshot)
    notes.append(f"candles: {source}" + (" (bundled)" if bundled else ""))
    if candles.gaps:
        notes.append(_gap_summary(candles.symbol, candles.gaps, candles.timeframe_ms))
    if tr is not None:
        whole = (candles.ts[0], candles.ts[-1] + candles.timeframe_ms)
        candles = candles.between(tr.start_ms, tr.end_ms)
        if len(candles) == 0:
            raise ReplayError(
                f"no candles of {source} in the timerange {tr} ({tr.describe()}); the data "
                f"covers {utc(whole[0])} → {utc(whole[1])} UTC"
            )
        notes.append(f"timerange {tr}: {tr.describe()}")
    if mark_path is None and not bundled:
        mark_path = sibling(source, "mark")
    if funding_path is None:
        funding_path = bundled_funding_path() if bundled else sibling(source, "funding_rate")
    marks = None
    rates: list[tuple[int, float]] = []
    try:
        if mark_path is not None:
            marks = load_candles(mark_path, symbol=candles.symbol, allow_gaps=True)
            notes.append(f"mark prices: {mark_path}")
        if funding_path is not None:
            series = load_funding(funding_path, symbol=candles.symbol)
            rates = series.between(candles.ts[0], candles.ts[-1] + candles.timeframe_ms)
            notes.append(f"funding: {funding_path} ({len(rates)} events in range)")
        else:
            notes.append(
                f"funding: no series, paper.funding_rate {settings.paper.funding_rate:g} per 8 h"
            )
    except (FeedError, OSError) as exc:
        raise ReplayError(str(exc)) from None
    market, how = _market(candles, settings, snapshot)
    notes.append(f"market rules of {candles.symbol}: {how}")
    if candles.gaps:
        g = candles.gaps
        log.warning(
            "data_gaps",
            data_time=_iso(g[0].start_ms),
            symbol=candles.symbol,
            gaps=len(g),
            missing=sum(x.missing for x in g),
            largest=_gap_text(max(g, key=lambda x: x.missing), candles.timeframe_ms),
            first=[_gap_text(x, candles.timeframe_ms) for x in g[:3]],
        )
    return Feed(candles, marks, rates, market, tuple(notes))


def _check_tradeable(symbol: str, snapshot: tuple[Path, Any, Any] | None) -> None:
    """Refuse a symbol without leverage tiers (in the snapshot or bundled) at once."""
    if snapshot is not None and snapshot[2].get(symbol):
        return
    if symbol not in bundled_tier_entries():
        raise ReplayError(f"no market rules for {symbol}: {spot_hint(symbol)}")


def _market(
    candles: Candles, settings: Settings, snapshot: tuple[Path, Any, Any] | None
) -> tuple[PaperMarket, str]:
    try:
        return resolve_market(
            candles.symbol,
            settings.paper,
            snapshot=(snapshot[1], snapshot[2]) if snapshot is not None else None,
            snapshot_name=str(snapshot[0]) if snapshot is not None else "",
            prices=_sample(candles),
        )
    except UnknownMarket as exc:
        raise ReplayError(str(exc)) from None


def _sample(candles: Candles) -> Sequence[float]:
    n = min(len(candles), 2000)
    return list(candles.open[:n]) + list(candles.close[:n])


def _gap_text(gap: Gap, tf_ms: int) -> str:
    return f"{gap.missing} x {format_timeframe(tf_ms)} from {utc(gap.start_ms)}"


def _gap_summary(symbol: str, gaps: Sequence[Gap], tf_ms: int) -> str:
    largest = max(gaps, key=lambda g: g.missing)
    first = "; ".join(_gap_text(g, tf_ms) for g in gaps[:3])
    return (
        f"{symbol}: {len(gaps)} gaps, {sum(g.missing for g in gaps):,} candles missing; "
        f"largest {_gap_text(largest, tf_ms)}; first: {first}"
    )


def _with_hint(message: str, source: Path) -> str:
    if "gap:" in message and "allow_gaps" in message:
        return message.replace("(pass allow_gaps to accept)", "(pass --allow-gaps to accept)")
    return message


def markets_of(
    feeds: Sequence[Feed], settings: Settings
) -> tuple[list[str], dict[str, PaperMarket], list[str]]:
    """The symbols, market rules and report notes of loaded feeds (a feed without a market
    gets the bundled or data-derived rules)."""
    symbols: list[str] = []
    markets: dict[str, PaperMarket] = {}
    notes: list[str] = []
    for f in feeds:
        symbol = f.candles.symbol
        if not symbol:
            raise ReplayError(
                "cannot tell the symbol of the data: pass --symbol (e.g. BTC/USDT:USDT)"
            )
        if f.market is not None:
            markets[symbol] = f.market
        else:
            try:
                markets[symbol] = resolve_market(
                    symbol, settings.paper, prices=list(f.candles.close[:2000])
                )[0]
            except UnknownMarket as exc:
                raise ReplayError(str(exc)) from None
        symbols.append(symbol)
        notes.extend(f.notes)
    return symbols, markets, notes
