"""loss_limit: daily loss and drawdown limits, halts and their reset, manual halt and resume."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from guards.config import GuardsConfig
from guards.engine import GuardEngine
from guards.rules import REGISTRY
from guards.types import (
    Account,
    Decision,
    GuardContext,
    Mark,
    MarketRules,
    OrderIntent,
    Position,
    Tier,
)

SYM = "TEST/USDT:USDT"
TIERS = (Tier(0.0, math.inf, 0.005, 0.0, 100.0),)
DAY = datetime(2024, 6, 3, 0, 0, tzinfo=UTC).timestamp()
NOW = DAY + 12 * 3600
INTENT = OrderIntent(SYM, "long", 1.0, leverage=2.0, stop_price=95.0)


def engine(**params: Any) -> GuardEngine:
    tables: dict[str, Any] = {name: {"enabled": name == "loss_limit"} for name in REGISTRY}
    tables["loss_limit"].update(params)
    return GuardEngine(GuardsConfig.model_validate(tables))


def ctx(wallet: float = 10_000.0, mark: float | None = None, now: float = NOW) -> GuardContext:
    """With ``mark``: a long 10 @ 100 position marked there (uPnL = 10 * (mark - 100))."""
    positions = {}
    marks = {SYM: Mark(100.0, now)}
    if mark is not None:
        positions[SYM] = Position(
            SYM, "long", 10.0, 100.0, leverage=2.0, margin=500.0, stop_price=60.0
        )
        marks[SYM] = Mark(mark, now)
    return GuardContext(
        account=Account(wallet, positions),
        markets={SYM: MarketRules(SYM, TIERS)},
        marks=marks,
        now=now,
        open_entry_orders={SYM: 1},
    )


def check(e: GuardEngine, context: GuardContext) -> Decision:
    return e.check(INTENT, context)


def test_daily_loss_edges_pre_trade() -> None:
    e = engine()  # 3 % of the day's first equity
    e.on_equity(10_000.0, DAY + 60)
    # uPnL 10 * (70 - 100) = -300 → equity 9,700 → 3.00 % (not beyond)
    assert check(e, ctx(mark=70.0)).allowed
    # 10 * (69.9 - 100) = -301 → 3.01 %
    d = check(e, ctx(mark=69.9))
    assert d.code == "daily_loss_limit"
    v = next(v for v in d.verdicts if v.rule == "loss_limit")
    assert v.figures["daily_loss_pct"] == pytest.approx(3.01)


def test_sweep_halts_to_the_next_reset_and_closes() -> None:
    e = engine()
    e.on_equity(10_000.0, DAY + 60)
    assert [a for a in e.sweep(ctx(mark=70.0)) if a.rule == "loss_limit"] == []
    actions = e.sweep(ctx(mark=69.9))
    assert [(a.kind, a.code) for a in actions] == [
        ("halt", "daily_loss_limit"),
        ("close", "halted"),
        ("cancel_entries", "halted"),
    ]
    assert e.state.halt is not None and e.state.halt.kind == "daily"
    assert e.state.halt.until == DAY + 86_400  # next 00:00 UTC
    # halted: even a healthy context is refused, and positions keep being closed
    d = check(e, ctx(mark=100.0, now=NOW + 60))
    assert d.code == "halted" and d.verdicts[0].figures["kind"] == "daily"
    assert any(a.kind == "close" for a in e.sweep(ctx(mark=100.0, now=NOW + 60)))
    # the halt action is announced once
    assert not any(a.kind == "halt" for a in e.sweep(ctx(mark=69.0, now=NOW + 120)))
    # next trading day: halt over, new baseline = the first equity of the day
    tomorrow = DAY + 86_400
    assert check(e, ctx(wallet=9_600.0, now=tomorrow)).allowed
    assert e.sweep(ctx(wallet=9_600.0, now=tomorrow)) == []
    assert e.state.halt is None
    assert e.state.day_start_equity == 9_600.0 and e.state.day_key == "2024-06-04"


def test_drawdown_edges_and_manual_resume() -> None:
    e = engine()
    e.on_equity(12_000.0, DAY - 86_400)  # peak, yesterday
    e.on_equity(10_800.0, DAY + 60)  # today's baseline
    # (12,000 - 10,800)/12,000 = 10.0 % → not beyond
    assert e.sweep(ctx(wallet=10_800.0)) == []
    actions = e.sweep(ctx(wallet=10_799.0))  # 10.008 %
    assert actions[0].kind == "halt" and actions[0].code == "drawdown_limit"
    assert e.state.halt is not None and e.state.halt.until is None
    # a drawdown halt survives the daily reset
    later = DAY + 3 * 86_400
    e.sweep(ctx(wallet=10_799.0, now=later))
    assert check(e, ctx(wallet=10_799.0, now=later)).code == "halted"
    lifted = e.resume()
    assert lifted is not None and lifted.kind == "drawdown"
    assert check(e, ctx(wallet=10_799.0, now=later)).allowed
    e.sweep(ctx(wallet=10_799.0, now=later))
    assert e.state.equity_peak == 10_799.0  # the peak restarts after a resume


def test_drawdown_pre_trade_before_any_sweep() -> None:
    e = engine(max_drawdown_pct=5.0)
    e.on_equity(10_000.0, DAY + 60)
    # 5 % down: beyond the 3 % daily limit, not beyond the 5 % drawdown limit
    assert check(e, ctx(wallet=9_500.0)).code == "daily_loss_limit"
    e2 = engine(max_drawdown_pct=5.0, max_daily_loss_pct=50.0)
    e2.on_equity(10_000.0, DAY + 60)
    assert check(e2, ctx(wallet=9_500.0)).allowed  # exactly 5 %
    assert check(e2, ctx(wallet=9_499.0)).code == "drawdown_limit"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        # 09:00 New York = 13:00 UTC in summer (EDT) ...
        (datetime(2024, 6, 3, 12, 59, 59, tzinfo=UTC), datetime(2024, 6, 3, 13, 0, tzinfo=UTC)),
        # ... and 14:00 UTC in winter (EST)
        (datetime(2024, 12, 3, 13, 59, 59, tzinfo=UTC), datetime(2024, 12, 3, 14, 0, tzinfo=UTC)),
    ],
)
def test_day_reset_in_a_time_zone(before: datetime, after: datetime) -> None:
    e = engine(day_reset="09:00", timezone="America/New_York")
    e.on_equity(10_000.0, before.timestamp())
    assert e.state.day_key == f"{before:%Y-%m}-02"  # before 09:00 local: still the 2nd
    e.on_equity(9_000.0, before.timestamp() + 0.5)
    assert e.state.day_start_equity == 10_000.0
    e.on_equity(9_000.0, after.timestamp())
    assert e.state.day_key == after.date().isoformat()
    assert e.state.day_start_equity == 9_000.0


def test_manual_halt_and_resume() -> None:
    e = engine()
    assert e.halt("maintenance", ts=NOW)
    d = check(e, ctx())
    assert d.code == "halted" and d.verdicts[0].figures["kind"] == "manual"
    assert e.sweep(ctx()) == []  # a manual halt does not flatten
    assert e.resume() is not None
    assert check(e, ctx()).allowed


def test_manual_halt_with_end_time() -> None:
    e = engine()
    e.halt("news", until=NOW + 600, ts=NOW)
    assert check(e, ctx(now=NOW + 599)).code == "halted"
    assert check(e, ctx(now=NOW + 600)).allowed


def test_manual_halt_applies_with_every_rule_disabled() -> None:
    tables: dict[str, Any] = {name: {"enabled": False} for name in REGISTRY}
    e = GuardEngine(GuardsConfig.model_validate(tables))
    e.halt("kill switch", ts=NOW)
    assert check(e, ctx()).code == "halted"


def test_weaker_halt_does_not_replace_a_resume_only_one() -> None:
    e = engine()
    e.halt("ops", ts=NOW)
    assert not e.halt("short pause", until=NOW + 60, ts=NOW)
    assert e.state.halt is not None and e.state.halt.reason == "ops"


def test_missing_mark_skips_the_loss_evaluation() -> None:
    e = engine()
    e.on_equity(10_000.0, DAY + 60)
    context = ctx(mark=50.0)
    context = GuardContext(context.account, context.markets, {}, NOW)
    actions = e.sweep(context)
    assert [(a.kind, a.code) for a in actions] == [("halt", "stale_price")]
    assert e.state.halt is None
