"""stop_loss: stop required and on the losing side, risk at the stop with fees, TP rules, sweep.

Risk at the stop (hand formula): loss = q*|E - S| + fee*q*E + fee*q*S, budget = 1 % of equity.
With E = 100, S = 98, fee = 0.0005: per unit 2 + 0.0005*(100 + 98) = 2.099.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from guards.config import GuardsConfig
from guards.engine import GuardEngine
from guards.rules import REGISTRY
from guards.state import GuardState
from guards.types import (
    Account,
    Action,
    Decision,
    GuardContext,
    Mark,
    MarketRules,
    OrderIntent,
    Position,
    Tier,
    Verdict,
)

SYM = "TEST/USDT:USDT"
NOW = datetime(2024, 6, 3, 12, 0, tzinfo=UTC).timestamp()
FLAT_TIER = (Tier(0.0, math.inf, 0.005, 0.0, 100.0),)


def only(rule: str, **params: Any) -> GuardsConfig:
    """Only ``rule`` on; the stop_loss rule without slippage unless asked (the hand formula
    above has none; the slippage tests below add it)."""
    tables: dict[str, Any] = {name: {"enabled": name == rule} for name in REGISTRY}
    if rule == "stop_loss":
        tables[rule]["slippage_bps"] = 0.0
    tables[rule].update(params)
    return GuardsConfig.model_validate(tables)


def ctx(
    positions: tuple[Position, ...] = (),
    wallet: float = 10_000.0,
    mark: float = 100.0,
    **market_kw: Any,
) -> GuardContext:
    rules = MarketRules(SYM, FLAT_TIER, taker_fee=0.0005, **market_kw)
    return GuardContext(
        account=Account(wallet, {p.symbol: p for p in positions}),
        markets={SYM: rules},
        marks={SYM: Mark(mark, NOW)},
        now=NOW,
    )


def verdict(decision: Decision) -> Verdict:
    return next(v for v in decision.verdicts if v.rule == "stop_loss")


def check(intent: OrderIntent, context: GuardContext, **params: Any) -> Decision:
    return GuardEngine(only("stop_loss", **params)).check(intent, context)


def order(amount: float, stop: float | None = 98.0, side: str = "long", **kw: Any) -> OrderIntent:
    return OrderIntent(symbol=SYM, side=side, amount=amount, stop_price=stop, **kw)  # type: ignore[arg-type]


def test_risk_just_inside_the_budget_is_allowed() -> None:
    # 47.641 * 2.099 = 99.998459 ≤ 100
    d = check(order(47.641), ctx())
    assert d.outcome == "allow"
    assert verdict(d).figures["risk"] == pytest.approx(47.641 * 2.099)


def test_risk_just_outside_resizes_to_fit() -> None:
    # 47.642 * 2.099 = 100.000558 > 100 → largest fit 100 / 2.099 = 47.6417... → 47.641
    d = check(order(47.642), ctx())
    assert d.outcome == "resize" and d.amount == pytest.approx(47.641)
    assert verdict(d).code == "risk_too_high"


def test_risk_breach_rejected_when_configured() -> None:
    d = check(order(47.642), ctx(), on_breach="reject")
    assert d.code == "risk_too_high" and not d.allowed


def test_short_risk() -> None:
    # short E = 100, S = 102.5: per unit 2.5 + 0.0005*(100 + 102.5) = 2.60125; 200 budget (2 %)
    # → 200 / 2.60125 = 76.886... → 76.886
    d = check(order(100.0, stop=102.5, side="short"), ctx(), max_risk_pct=2.0)
    assert d.amount == pytest.approx(76.886)


def test_limit_order_uses_limit_price_as_entry() -> None:
    # E = 95 (limit), S = 93: per unit 2 + 0.0005*(95 + 93) = 2.094 → 100/2.094 = 47.755...
    intent = order(60.0, stop=93.0, price=95.0, order_type="limit")
    d = check(intent, ctx())
    assert d.amount == pytest.approx(47.755)


def test_add_to_position_counts_the_existing_loss_at_the_stop() -> None:
    # existing long 10 @ 99 marked at 100: uPnL +10 → equity 10,010 → budget 100.10.
    # its loss at the new stop 98: 10*(99-98) + 0.0005*10*98 = 10.49
    # budget left 100.10 - 10.49 = 89.61 → 89.61 / 2.099 = 42.6917... → 42.691
    pos = Position(SYM, "long", 10.0, 99.0, leverage=5.0, margin=198.0)
    d = check(order(50.0), ctx((pos,)))
    assert d.amount == pytest.approx(42.691)


def test_add_with_stop_in_profit_frees_budget() -> None:
    # existing long 10 @ 90 marked at 100: uPnL +100 → equity 10,100 → budget 101.
    # its loss at stop 98: 10*(90-98) + 0.49 = -79.51 (a locked-in profit)
    # budget 101 + 79.51 = 180.51 → 180.51 / 2.099 = 85.9981... → 85.998
    pos = Position(SYM, "long", 10.0, 90.0, leverage=5.0, margin=180.0)
    d = check(order(100.0), ctx((pos,)))
    assert d.amount == pytest.approx(85.998)


def test_missing_stop_rejected_by_default() -> None:
    d = check(order(1.0, stop=None), ctx())
    assert d.code == "stop_missing"


def test_missing_stop_attached_and_sized() -> None:
    # attach 2 %: long stop 98.0; then sized as above → 47.641
    d = check(order(100.0, stop=None), ctx(), missing="attach")
    assert d.stop_price == pytest.approx(98.0)
    assert d.intent.stop_price == pytest.approx(98.0)
    assert d.amount == pytest.approx(47.641)
    small = check(order(1.0, stop=None), ctx(), missing="attach")
    assert small.outcome == "allow" and small.code == "stop_attached"
    short = check(order(1.0, stop=None, side="short"), ctx(), missing="attach")
    assert short.stop_price == pytest.approx(102.0)


def test_attached_stop_rounds_away_from_entry() -> None:
    # mark 100.05, 2 % → 98.049 → down to price step 0.1 → 98.0 (long); short 102.051 → 102.1
    assert check(order(1.0, stop=None), ctx(mark=100.05), missing="attach").stop_price == (
        pytest.approx(98.0)
    )
    short = check(order(1.0, stop=None, side="short"), ctx(mark=100.05), missing="attach")
    assert short.stop_price == pytest.approx(102.1)


@pytest.mark.parametrize(
    ("side", "stop", "ok"),
    [("long", 99.9, True), ("long", 100.0, False), ("short", 100.1, True), ("short", 100.0, False)],
)
def test_stop_side_edges(side: str, stop: float, ok: bool) -> None:
    d = check(order(1.0, stop=stop, side=side), ctx())
    assert d.allowed is ok
    if not ok:
        assert d.code == "stop_wrong_side"


def test_take_profit_rules() -> None:
    assert check(order(1.0), ctx(), require_take_profit=True).code == "take_profit_missing"
    assert check(order(1.0, take_profit=99.0), ctx()).code == "take_profit_wrong_side"
    # reward/risk: stop 98 (risk 2), TP 104 → 4/2 = 2.0 meets 2; TP 103.9 → 1.95 does not
    assert check(order(1.0, take_profit=104.0), ctx(), min_reward_risk=2.0).allowed
    d = check(order(1.0, take_profit=103.9), ctx(), min_reward_risk=2.0)
    assert d.code == "reward_risk_low"
    assert verdict(d).figures["reward_risk"] == pytest.approx(1.95)


def test_risk_sized_amount_below_market_minimum_is_refused() -> None:
    d = check(order(100.0), ctx(min_amount=50.0))
    assert d.code == "below_min_amount"


# -- sweep ------------------------------------------------------------------------------------


def sweep(
    positions: tuple[Position, ...], mark: float, state: GuardState | None = None
) -> list[Action]:
    engine = GuardEngine(only("stop_loss"), state)
    return [a for a in engine.sweep(ctx(positions, mark=mark)) if a.rule == "stop_loss"]


def test_sweep_ignores_positions_with_a_live_stop() -> None:
    pos = Position(SYM, "long", 1.0, 100.0, leverage=2.0, margin=50.0, stop_price=98.0)
    assert sweep((pos,), 100.0) == []


def test_sweep_places_default_stop() -> None:
    # 2x long @ 100: margin 50, liq (50 - 100)/(0.005 - 1) = 50.25...; default stop 98.0
    pos = Position(SYM, "long", 1.0, 100.0, leverage=2.0, margin=50.0)
    (action,) = sweep((pos,), 100.0)
    assert action.kind == "place_stop" and action.code == "stop_missing"
    assert action.stop_price == pytest.approx(98.0)


def test_sweep_prefers_the_planned_stop() -> None:
    state = GuardState()
    state.symbol(SYM).planned_stop = 97.3
    pos = Position(SYM, "long", 1.0, 100.0, leverage=2.0, margin=50.0)
    (action,) = sweep((pos,), 100.0, state)
    assert action.stop_price == pytest.approx(97.3)


def test_sweep_keeps_stop_clear_of_liquidation() -> None:
    # 40x long: margin 2.5 → liq (2.5 - 100)/(0.005 - 1) = 97.98994975; buffer 1 % → 98.96984925
    # → rounded up (toward entry) to 99.0, which beats the 2 % default (98.0).
    pos = Position(SYM, "long", 1.0, 100.0, leverage=40.0, margin=2.5)
    (action,) = sweep((pos,), 100.0)
    assert action.kind == "place_stop"
    assert action.stop_price == pytest.approx(99.0)
    assert action.figures["liq_price"] == pytest.approx(97.98994975)


def test_sweep_closes_when_mark_already_past_the_stop() -> None:
    pos = Position(SYM, "short", 1.0, 100.0, leverage=2.0, margin=50.0)
    (action,) = sweep((pos,), 102.0)  # short default stop 102.0, mark at it
    assert action.kind == "close" and action.code == "stop_passed"


def test_add_without_a_stop_keeps_the_positions_live_stop() -> None:
    # long 10 @ 90 with a live stop at 95, marked at 100; add 5 without a stop.
    # existing loss at 95: 10*(90 - 95) + 0.0005*10*95 = -49.525 (locked-in profit);
    # new: 5*(100 - 95 + 0.0005*(100 + 95)) = 25.4875 → total -24.04 within budget
    pos = Position(SYM, "long", 10.0, 90.0, leverage=5.0, margin=180.0, stop_price=95.0)
    d = check(order(5.0, stop=None), ctx((pos,)))
    assert d.outcome == "allow" and d.code == "stop_inherited"
    assert d.stop_price == 95.0
    assert verdict(d).figures["risk"] == pytest.approx(-24.0375)


# -- slippage and the loss budgets ----------------------------------------------------------


def with_limits(**loss_limit: Any) -> GuardsConfig:
    """stop_loss (no slippage) and loss_limit on, everything else off."""
    tables: dict[str, Any] = {
        name: {"enabled": name in ("stop_loss", "loss_limit")} for name in REGISTRY
    }
    tables["stop_loss"]["slippage_bps"] = 0.0
    tables["loss_limit"].update(loss_limit)
    return GuardsConfig.model_validate(tables)


def day_state(start: float, peak: float | None = None) -> GuardState:
    state = GuardState(day_key="2024-06-03", day_start_equity=start)  # NOW is 3 Jun 12:00 UTC
    state.equity_peak = start if peak is None else peak
    return state


def test_slippage_is_part_of_the_loss_at_the_stop() -> None:
    # 2 bps: the entry fills at 100 * 1.0002 = 100.02, the stop at 98 * 0.9998 = 97.9804;
    # per unit (100.02 - 97.9804) + 0.0005*(100.02 + 97.9804) = 2.0396 + 0.0990002 = 2.1386002
    # → 100 / 2.1386002 = 46.7595 → 46.759
    d = check(order(100.0), ctx(), slippage_bps=2.0)
    assert d.amount == pytest.approx(46.759)
    assert verdict(d).figures["risk"] == pytest.approx(46.759 * 2.1386002)


def test_the_daily_budget_left_caps_the_risk() -> None:
    # the day started at 10,000 and 250 are lost (wallet 9,750, flat): floor 9,700, 50 left,
    # below 1 % of 9,750 = 97.5 → 50 / 2.099 = 23.8209... → 23.82
    e = GuardEngine(with_limits(), day_state(10_000.0))
    d = e.check(order(100.0), ctx(wallet=9_750.0))
    v = verdict(d)
    assert d.outcome == "resize" and d.amount == pytest.approx(23.82)
    assert v.code == "daily_loss_budget"
    assert v.figures["daily_budget_left"] == pytest.approx(50.0)
    assert v.figures["until"] == datetime(2024, 6, 4, 0, 0, tzinfo=UTC).timestamp()


def test_the_risk_at_the_stop_of_every_open_position_counts() -> None:
    # OTHER long 10 @ 100, stop 90: closed at its stop 10*(90 - 100) - 0.0005*10*90 = -100.45,
    # so the worst case is 10,000 - 100.45 = 9,899.55; with a 1.5 % daily limit the floor is
    # 9,850: 49.55 left → 49.55 / 2.099 = 23.6064... → 23.606
    other = Position(
        "OTHER/USDT:USDT", "long", 10.0, 100.0, leverage=5.0, margin=200.0, stop_price=90.0
    )
    base = ctx()
    context = GuardContext(
        Account(10_000.0, {other.symbol: other}),
        {**base.markets, other.symbol: MarketRules(other.symbol, FLAT_TIER, taker_fee=0.0005)},
        {**base.marks, other.symbol: Mark(100.0, NOW)},
        NOW,
    )
    e = GuardEngine(with_limits(max_daily_loss_pct=1.5), day_state(10_000.0))
    d = e.check(order(100.0), context)
    v = verdict(d)
    assert v.figures["worst_equity"] == pytest.approx(9_899.55)
    assert d.amount == pytest.approx(23.606) and v.code == "daily_loss_budget"


@pytest.mark.parametrize(
    ("side", "stop", "mark", "worst"),
    [
        # long 10 @ 100, stop 90, mark 100: closed at the stop, 10*(90-100) - 0.0005*900 = -100.45
        ("long", 90.0, 100.0, 9_899.55),
        # mark 85, already past the stop (a gap it has not filled): the exit is the mark,
        # 10*(85-100) - 0.0005*850 = -150.425
        ("long", 90.0, 85.0, 9_849.575),
        # short 10 @ 100, stop 110, mark 120 past it: 10*(100-120) - 0.0005*1200 = -200.6
        ("short", 110.0, 120.0, 9_799.4),
        # short, mark 105 short of the stop: at the stop, 10*(100-110) - 0.0005*1100 = -100.55
        ("short", 110.0, 105.0, 9_899.45),
    ],
)
def test_a_position_whose_mark_is_past_its_stop_counts_at_the_mark(
    side: str, stop: float, mark: float, worst: float
) -> None:
    other = Position(
        "OTHER/USDT:USDT", side, 10.0, 100.0, leverage=5.0, margin=200.0, stop_price=stop
    )  # type: ignore[arg-type]
    base = ctx()
    context = GuardContext(
        Account(10_000.0, {other.symbol: other}),
        {**base.markets, other.symbol: MarketRules(other.symbol, FLAT_TIER, taker_fee=0.0005)},
        {**base.marks, other.symbol: Mark(mark, NOW)},
        NOW,
    )
    e = GuardEngine(with_limits(max_daily_loss_pct=5.0), day_state(10_000.0))
    v = verdict(e.check(order(1.0), context))
    assert v.figures["worst_equity"] == pytest.approx(worst)


def test_the_drawdown_budget_left_caps_the_risk() -> None:
    # peak 11,000, drawdown limit 9.5 %: floor 11,000 * 0.905 = 9,955; flat at 10,000: 45 left
    # (the day's 300 and 1 % = 100 leave more) → 45 / 2.099 = 21.4387... → 21.438
    e = GuardEngine(with_limits(max_drawdown_pct=9.5), day_state(10_000.0, peak=11_000.0))
    d = e.check(order(100.0), ctx())
    assert d.amount == pytest.approx(21.438) and verdict(d).code == "drawdown_budget"


def test_nothing_left_refuses_and_says_when_entries_reopen() -> None:
    e = GuardEngine(with_limits(), day_state(10_000.0))
    d = e.check(order(1.0), ctx(wallet=9_700.0))  # exactly at the 3 % floor
    v = verdict(d)
    assert not d.allowed and d.code == "daily_loss_budget"
    assert "daily reset" in v.reason
    assert v.figures["until"] == datetime(2024, 6, 4, 0, 0, tzinfo=UTC).timestamp()


def test_an_open_cross_position_without_a_stop_leaves_the_budget_unknown() -> None:
    other = Position("OTHER/USDT:USDT", "long", 1.0, 100.0, margin_mode="cross", leverage=5.0)
    base = ctx()
    context = GuardContext(
        Account(10_000.0, {other.symbol: other}),
        {**base.markets, other.symbol: MarketRules(other.symbol, FLAT_TIER)},
        {**base.marks, other.symbol: Mark(100.0, NOW)},
        NOW,
    )
    d = GuardEngine(with_limits(), day_state(10_000.0)).check(order(1.0), context)
    assert d.code == "open_risk_unbounded"


def test_the_sweep_tightens_stops_when_the_peak_lifts_the_floor() -> None:
    # long 10 @ 100, stop 95, wallet 10,000, mark 105; peak 10,500, drawdown limit 5 %:
    # floor 10,500 * 0.95 = 9,975. Worst case 10,000 + 10*(95 - 100) - 0.0005*10*95 = 9,949.525
    # (below it). Closing now: 10,000 + 10*5 - 0.0005*10*105 = 10,049.475.
    # f = (9,975 - 9,949.525) / (10,049.475 - 9,949.525) = 25.475 / 99.95 = 0.25488;
    # stop 95 + 0.25488 * 10 = 97.5488 → up to the 0.1 tick: 97.6
    # (worst case then 10,000 - 24 - 0.488 = 9,975.512 ≥ 9,975).
    pos = Position(SYM, "long", 10.0, 100.0, leverage=5.0, margin=200.0, stop_price=95.0)
    e = GuardEngine(with_limits(max_drawdown_pct=5.0), day_state(10_050.0, peak=10_500.0))
    actions = [a for a in e.sweep(ctx((pos,), mark=105.0)) if a.rule == "stop_loss"]
    (action,) = actions
    assert action.kind == "place_stop" and action.code == "stop_tightened"
    assert action.stop_price == pytest.approx(97.6)
    assert action.figures["fraction"] == pytest.approx(25.475 / 99.95)
    # with the stop there, nothing more to do
    tightened = Position(SYM, "long", 10.0, 100.0, leverage=5.0, margin=200.0, stop_price=97.6)
    assert [a for a in e.sweep(ctx((tightened,), mark=105.0)) if a.rule == "stop_loss"] == []
