"""trend: EMA seeding and update, side vs EMA edges, falling knife window, warm-up."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from guards.config import GuardsConfig
from guards.engine import GuardEngine
from guards.rules import REGISTRY
from guards.types import Account, Decision, GuardContext, Mark, MarketRules, OrderIntent, Tier

SYM = "TEST/USDT:USDT"
TIERS = (Tier(0.0, math.inf, 0.005, 0.0, 100.0),)
NOW = datetime(2024, 6, 3, 12, 0, tzinfo=UTC).timestamp()


def engine(**params: Any) -> GuardEngine:
    tables: dict[str, Any] = {name: {"enabled": name == "trend"} for name in REGISTRY}
    tables["trend"].update(params)
    return GuardEngine(GuardsConfig.model_validate(tables))


def check(e: GuardEngine, mark: float, side: str = "long", now: float = NOW) -> Decision:
    ctx = GuardContext(
        account=Account(10_000.0, {}),
        markets={SYM: MarketRules(SYM, TIERS)},
        marks={SYM: Mark(mark, now)},
        now=now,
    )
    return e.check(OrderIntent(SYM, side, 1.0, stop_price=mark * 0.5), ctx)  # type: ignore[arg-type]


def candle(e: GuardEngine, close: float, ts: float, high: float | None = None) -> None:
    e.on_candle(SYM, close, high if high is not None else close, close, close, ts)


def seeded(**params: Any) -> GuardEngine:
    # period 3: closes 10, 11, 12 → seed = mean = 11; then close 14 → 11 + (14 - 11) * 2/4 = 12.5
    e = engine(ema_period=3, **params)
    for i, close in enumerate((10.0, 11.0, 12.0, 14.0)):
        candle(e, close, NOW - 3600 + i * 60)
    return e


def test_ema_seed_and_update() -> None:
    e = seeded()
    assert e.state.symbols[SYM].ema == pytest.approx(12.5)


def test_long_and_short_against_ema_edges() -> None:
    e = seeded(falling_knife_pct=50.0)
    assert check(e, 12.4).code == "trend_against_ema"
    assert check(e, 12.5).allowed
    assert check(e, 12.6, "short").code == "trend_against_ema"
    assert check(e, 12.5, "short").allowed


def test_warm_up_refuses() -> None:
    e = engine(ema_period=3)
    candle(e, 10.0, NOW - 120)
    candle(e, 11.0, NOW - 60)
    d = check(e, 20.0)
    assert d.code == "trend_warming_up"
    assert check(engine(), 20.0).code == "trend_warming_up"  # no candles at all


def test_stale_or_repeated_candles_are_ignored() -> None:
    e = seeded()
    candle(e, 1_000.0, NOW - 3600 + 3 * 60)  # same time as the last candle
    candle(e, 1_000.0, NOW - 7200)  # older
    assert e.state.symbols[SYM].ema == pytest.approx(12.5)


def test_falling_knife_edges_and_window() -> None:
    # EMA 12.5; a candle with high 20 closed 30 minutes ago; window 60 min, 5 %:
    # mark 19.0 is 5.0 % below 20 → refused; 19.01 is 4.95 % → allowed
    e = seeded(window_min=60, falling_knife_pct=5.0)
    candle(e, 19.5, NOW - 1800, high=20.0)
    d = check(e, 19.0)
    assert d.code == "falling_knife"
    assert next(v for v in d.verdicts if v.rule == "trend").figures["window_high"] == 20.0
    assert check(e, 19.01).allowed
    assert check(e, 19.0, "short").code == "trend_against_ema"  # shorts: only the EMA test
    # once the high's candle is more than 60 minutes old it no longer counts
    assert check(e, 19.0, now=NOW + 1800).allowed


def test_window_high_is_the_highest_recent_high() -> None:
    e = seeded(window_min=60, falling_knife_pct=5.0)
    candle(e, 19.0, NOW - 1500, high=21.0)
    candle(e, 19.0, NOW - 1200, high=20.0)
    candle(e, 19.5, NOW - 900, high=19.6)
    assert check(e, 19.9).code == "falling_knife"  # (21 - 19.9)/21 = 5.24 %
    assert check(e, 20.0).allowed  # 4.76 %
