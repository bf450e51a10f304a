"""overtrading: entries per rolling hour and day, spacing, and how entries are recorded."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from guards.config import GuardsConfig
from guards.engine import GuardEngine
from guards.rules import REGISTRY
from guards.state import GuardState
from guards.types import Account, Decision, GuardContext, Mark, MarketRules, OrderIntent, Tier

SYM = "TEST/USDT:USDT"
TIERS = (Tier(0.0, math.inf, 0.005, 0.0, 100.0),)
NOW = datetime(2024, 6, 3, 12, 0, tzinfo=UTC).timestamp()
INTENT = OrderIntent(SYM, "long", 1.0, leverage=2.0, stop_price=95.0)


def engine(entries: tuple[float, ...] | list[float] = (), **params: Any) -> GuardEngine:
    tables: dict[str, Any] = {name: {"enabled": name == "overtrading"} for name in REGISTRY}
    tables["overtrading"].update(params)
    state = GuardState()
    for ts in entries:
        state.record_entry(ts)
    return GuardEngine(GuardsConfig.model_validate(tables), state)


def check(e: GuardEngine, now: float = NOW, intent: OrderIntent = INTENT) -> Decision:
    ctx = GuardContext(
        account=Account(10_000.0, {}),
        markets={SYM: MarketRules(SYM, TIERS)},
        marks={SYM: Mark(100.0, now)},
        now=now,
    )
    return e.check(intent, ctx)


def test_hourly_limit_edges() -> None:
    # 4 entries within the last hour → the 5th is refused
    inside = [NOW - 3599, NOW - 3000, NOW - 2000, NOW - 1000]
    d = check(engine(inside))
    assert d.code == "rate_hour"
    assert next(v for v in d.verdicts if v.rule == "overtrading").figures["count"] == 4
    # the oldest exactly one hour ago has left the window
    assert check(engine([NOW - 3600, NOW - 3000, NOW - 2000, NOW - 1000])).allowed
    assert check(engine(inside[1:])).allowed


def test_daily_limit_edges() -> None:
    # 12 entries in the last 24 h, two hours apart (≤ 1 per hour)
    twelve = [NOW - 86_399 + i * 7_200 for i in range(12)]
    assert check(engine(twelve)).code == "rate_day"
    shifted = [NOW - 86_400 + i * 7_200 for i in range(12)]  # oldest exactly a day ago
    assert check(engine(shifted)).allowed


def test_spacing_edges() -> None:
    assert check(engine([NOW - 59])).code == "rate_spacing"
    assert check(engine([NOW - 60])).allowed
    assert check(engine([NOW - 1], min_seconds_between_entries=0)).allowed


def test_approve_records_opening_orders_only() -> None:
    e = engine(min_seconds_between_entries=0, max_entries_per_hour=2)
    for i in range(2):
        decision = check(e, NOW + i)
        e.approve(decision)  # recorded at the check's time
    assert e.state.entries == [NOW, NOW + 1]
    assert check(e, NOW + 2).code == "rate_hour"
    # closing / reduce-only orders always pass and are not entries
    reduce = OrderIntent(SYM, "long", 1.0, reduce_only=True)
    e.approve(check(e, NOW + 3, reduce))
    assert e.state.entries == [NOW, NOW + 1]


def test_a_refused_check_records_nothing() -> None:
    e = engine([NOW - 10])
    decision = check(e)
    assert not decision.allowed
    assert e.state.entries == [NOW - 10]


def test_old_entries_are_pruned() -> None:
    e = engine([NOW - 90_000, NOW - 80_000, NOW])
    assert e.state.entries == [NOW - 80_000, NOW]
