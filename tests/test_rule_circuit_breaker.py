"""circuit_breaker: price-move and liquidation-notional trips, window expiry, halt duration."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from guards.config import GuardsConfig
from guards.engine import GuardEngine
from guards.rules import REGISTRY
from guards.types import Account, Decision, GuardContext, Mark, MarketRules, OrderIntent, Tier

SYM = "TEST/USDT:USDT"
TIERS = (Tier(0.0, math.inf, 0.005, 0.0, 100.0),)
T = datetime(2024, 6, 3, 12, 0, tzinfo=UTC).timestamp()


def engine(**params: Any) -> GuardEngine:
    tables: dict[str, Any] = {name: {"enabled": name == "circuit_breaker"} for name in REGISTRY}
    tables["circuit_breaker"].update(params)
    return GuardEngine(GuardsConfig.model_validate(tables))


def check(e: GuardEngine, now: float, symbol: str = SYM) -> Decision:
    ctx = GuardContext(
        account=Account(10_000.0, {}),
        markets={symbol: MarketRules(symbol, TIERS)},
        marks={symbol: Mark(100.0, now)},
        now=now,
    )
    return e.check(OrderIntent(symbol, "long", 1.0, stop_price=90.0), ctx)


def test_price_drop_edges() -> None:
    # defaults: 5 % within 15 min opens the breaker for 60 min
    e = engine()
    e.on_price(SYM, 100.0, T)
    e.on_price(SYM, 95.01, T + 600)  # 4.99 %
    assert check(e, T + 601).allowed
    e.on_price(SYM, 95.0, T + 700)  # 5.00 %
    d = check(e, T + 701)
    assert d.code == "breaker_open"
    assert "fell 5.00%" in d.reason
    # open until 700 + 3,600 s
    assert check(e, T + 700 + 3599).code == "breaker_open"
    assert check(e, T + 700 + 3600).allowed


def test_price_rise_trips_too() -> None:
    e = engine()
    e.on_price(SYM, 100.0, T)
    e.on_price(SYM, 105.0, T + 60)
    assert check(e, T + 61).code == "breaker_open"


def test_move_outside_the_window_does_not_trip() -> None:
    e = engine()
    e.on_price(SYM, 100.0, T)
    e.on_price(SYM, 95.0, T + 900)  # the 100 is exactly 15 min old: out of the window
    assert check(e, T + 901).allowed
    e.on_price(SYM, 98.0, T + 950)
    e.on_price(SYM, 93.0, T + 1000)  # 98 → 93 = 5.10 % within the window
    assert check(e, T + 1001).code == "breaker_open"


def test_breaker_is_per_symbol() -> None:
    e = engine()
    e.on_price(SYM, 100.0, T)
    e.on_price(SYM, 90.0, T + 60)
    assert check(e, T + 61, "OTHER/USDT:USDT").allowed


def test_liquidation_notional_edges_and_window() -> None:
    e = engine(liq_notional=1_000_000)
    e.on_liquidations(SYM, 600_000, T)
    e.on_liquidations(SYM, 400_000, T + 60)  # 1,000,000: not above
    assert check(e, T + 61).allowed
    e.on_liquidations(SYM, 1, T + 120)
    assert check(e, T + 121).code == "breaker_open"
    # the window forgets: 600k at T has left by T + 900
    e2 = engine(liq_notional=1_000_000)
    e2.on_liquidations(SYM, 600_000, T)
    e2.on_liquidations(SYM, 600_000, T + 900)
    assert check(e2, T + 901).allowed


def test_liquidation_feed_off_by_default() -> None:
    e = engine()
    e.on_liquidations(SYM, 1e12, T)
    assert check(e, T + 1).allowed


def test_disabled_breaker_ignores_feeds() -> None:
    tables: dict[str, Any] = {name: {"enabled": False} for name in REGISTRY}
    e = GuardEngine(GuardsConfig.model_validate(tables))
    e.on_price(SYM, 100.0, T)
    e.on_price(SYM, 50.0, T + 1)
    assert SYM not in e.state.symbols
