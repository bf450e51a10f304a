"""GuardEngine: evaluation order, fail-closed paths, risk-reducing orders, resize chain, sweep
ordering and de-duplication, approval, persistence, reload, explain and config."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from guards.config import GuardsConfig
from guards.engine import GuardEngine, order_actions
from guards.explain import decision_to_dict, explain_rows
from guards.rules import REGISTRY
from guards.rules.base import RuleConfig
from guards.rules.overtrading import Overtrading
from guards.rules.stop_loss import StopLoss
from guards.state import GuardState
from guards.types import (
    Account,
    Action,
    ApprovedOrder,
    GuardContext,
    Mark,
    MarketRules,
    OrderIntent,
    Position,
    Tier,
)

SYM = "TEST/USDT:USDT"
TIERS = (Tier(0.0, math.inf, 0.005, 0.0, 100.0),)
NOON = datetime(2024, 6, 3, 12, 0, tzinfo=UTC).timestamp()
LATE = datetime(2024, 6, 3, 22, 30, tzinfo=UTC).timestamp()
GOOD = OrderIntent(SYM, "long", 1.0, leverage=3.0, stop_price=98.0)
DEFAULT_ORDER = [
    "halt",
    "loss_limit",
    "data",
    "no_overnight",
    "overtrading",
    "anti_top_up",
    "circuit_breaker",
    "stop_loss",
    "position_cap",
    "liquidation",
]


def ctx(
    positions: tuple[Position, ...] = (),
    wallet: float = 10_000.0,
    now: float = NOON,
    prices: dict[str, float] | None = None,
    mark_age: float = 0.0,
    **kw: Any,
) -> GuardContext:
    prices = {SYM: 100.0, **(prices or {})}
    for p in positions:
        prices.setdefault(p.symbol, p.entry_price)
    return GuardContext(
        account=Account(wallet, {p.symbol: p for p in positions}),
        markets={s: MarketRules(s, TIERS) for s in prices},
        marks={s: Mark(px, now - mark_age) for s, px in prices.items()},
        now=now,
        **kw,
    )


# -- configuration ------------------------------------------------------------------------


def test_defaults_follow_the_design_table() -> None:
    c = GuardsConfig()
    assert (c.stale_price_s, c.sweep_s) == (30.0, 10.0)
    pc = c.position_cap
    assert (pc.max_leverage, pc.max_margin_pct, pc.max_total_margin_pct) == (5, 10, 50)
    assert (pc.max_positions, pc.on_breach) == (5, "resize")
    assert (c.stop_loss.max_risk_pct, c.stop_loss.missing) == (1.0, "reject")
    assert not c.trend.enabled
    enabled = [name for name in REGISTRY if c.rule_config(name).enabled]
    assert enabled == [name for name in REGISTRY if name != "trend"]


def test_every_config_field_is_described_and_bounded_models_are_strict() -> None:
    def walk(model: type[BaseModel]) -> None:
        assert model.model_config.get("frozen") and model.model_config.get("extra") == "forbid"
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no description"
            ann = info.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann)

    walk(GuardsConfig)
    assert set(REGISTRY) <= set(GuardsConfig.model_fields)
    for name, cls in REGISTRY.items():
        assert cls.name == name
        assert issubclass(cls.config_model, RuleConfig)
        assert type(GuardsConfig().rule_config(name)) is cls.config_model


def test_config_rejects_unknown_keys_and_out_of_range_values() -> None:
    with pytest.raises(ValidationError):
        GuardsConfig.model_validate({"position_cap": {"max_leverag": 3}})
    with pytest.raises(ValidationError):
        GuardsConfig.model_validate({"position_cap": {"max_leverage": 0.5}})
    with pytest.raises(ValidationError):
        GuardsConfig.model_validate({"stop_loss": {"max_risk_pct": 0}})
    with pytest.raises(ValidationError):
        GuardsConfig().position_cap.max_leverage = 10  # type: ignore[misc]


# -- check: order and first refusal -----------------------------------------------------------


def test_allowed_order_runs_every_enabled_rule_in_order() -> None:
    d = GuardEngine(GuardsConfig()).check(GOOD, ctx())
    assert d.outcome == "allow" and d.code == "ok" and d.amount == 1.0
    assert [v.rule for v in d.verdicts] == DEFAULT_ORDER
    assert all(v.outcome == "allow" for v in d.verdicts)


def test_trend_slots_in_between_top_up_and_breaker() -> None:
    e = GuardEngine(GuardsConfig.model_validate({"trend": {"enabled": True}}))
    rules = [v.rule for v in e.check(GOOD, ctx()).verdicts]
    assert rules.index("anti_top_up") < rules.index("trend") < rules.index("circuit_breaker")


def test_first_refusal_wins_but_all_verdicts_are_recorded() -> None:
    # 21:30 UTC: session closed (no_overnight) and no stop (stop_loss): the session refusal wins
    no_stop = OrderIntent(SYM, "long", 1.0, leverage=3.0)
    d = GuardEngine(GuardsConfig()).check(no_stop, ctx(now=NOON + 9.5 * 3600))
    assert d.code == "session_closed" and d.outcome == "reject" and d.amount == 0.0
    by_rule = {v.rule: v for v in d.verdicts}
    assert by_rule["stop_loss"].code == "stop_missing"
    assert by_rule["position_cap"].outcome == "allow"
    assert [v.rule for v in d.verdicts] == DEFAULT_ORDER


def test_resize_happens_before_the_liquidation_check() -> None:
    # cross, wallet 1,000, long 500 @ 100 at 5x, stop 90. At the requested size the cross
    # liquidation price would be (1,000 - 50,000)/(500*0.005 - 500) = 98.49 (1.5 % away: too
    # close). stop_loss sizes it first: budget 10 (1 %; the daily budget leaves 30). With 2 bps
    # of slippage the entry fills at 100.02 and the stop at 90 * 0.9998 = 89.982, so per unit
    # 10.038 + 0.0005*(100.02 + 89.982) = 10.133001 → 10 / 10.133001 = 0.98687 → 0.986 units;
    # for that size the cross wallet covers any price (liq None): allowed.
    intent = OrderIntent(SYM, "long", 500.0, leverage=5.0, margin_mode="cross", stop_price=90.0)
    d = GuardEngine(GuardsConfig()).check(intent, ctx(wallet=1_000.0))
    assert d.outcome == "resize" and d.amount == pytest.approx(0.986)
    by_rule = {v.rule: v for v in d.verdicts}
    assert by_rule["stop_loss"].outcome == "resize"
    assert by_rule["liquidation"].outcome == "allow"
    assert by_rule["liquidation"].figures["liq_price"] is None


def test_stop_loss_then_position_cap_resize_chain() -> None:
    # stop 98 with 2 bps of slippage: per unit (100.02 - 97.9804) + 0.0005*(100.02 + 97.9804)
    # = 2.1386002, risk fits 100 / 2.1386002 = 46.7595 → 46.759 units; margin cap 1,000 at 3x
    # and price 100 fits 30 → 30
    intent = OrderIntent(SYM, "long", 100.0, leverage=3.0, stop_price=98.0)
    d = GuardEngine(GuardsConfig()).check(intent, ctx())
    by_rule = {v.rule: v for v in d.verdicts}
    assert by_rule["stop_loss"].amount == pytest.approx(46.759)
    assert by_rule["position_cap"].amount == pytest.approx(30.0)
    assert d.amount == pytest.approx(30.0) and d.intent.amount == d.amount
    # both resizes are credited, each to its own rule
    assert d.code == "resized" and d.reason.startswith("stop_loss: resized 100 → 46.759")
    assert "; position_cap: resized 46.759 → 30 to fit caps" in d.reason


# -- check: fail closed ------------------------------------------------------------------------


def test_missing_market_refuses_and_later_rules_are_not_evaluated() -> None:
    context = ctx()
    context = GuardContext(context.account, {}, context.marks, context.now)
    d = GuardEngine(GuardsConfig()).check(GOOD, context)
    assert d.code == "missing_market"
    assert [v.code for v in d.verdicts[3:]] == ["not_evaluated"] * 7


def test_market_without_tiers_is_missing() -> None:
    context = ctx()
    context = GuardContext(context.account, {SYM: MarketRules(SYM, ())}, context.marks, context.now)
    assert GuardEngine(GuardsConfig()).check(GOOD, context).code == "missing_market"


def test_stale_price_edges() -> None:
    e = GuardEngine(GuardsConfig())  # stale after 30 s
    assert e.check(GOOD, ctx(mark_age=30.0)).allowed
    d = e.check(GOOD, ctx(mark_age=30.001))
    assert d.code == "stale_price"
    data = next(v for v in d.verdicts if v.rule == "data")
    assert data.figures["age_s"] == pytest.approx(30.001)
    context = ctx()
    assert e.check(GOOD, GuardContext(context.account, context.markets, {}, NOON)).code == (
        "stale_price"
    )


def test_stale_mark_of_another_open_position_refuses() -> None:
    other = Position("OTHER/USDT:USDT", "long", 1.0, 50.0, leverage=2.0, margin=25.0, stop_price=45)
    context = ctx((other,))
    marks = dict(context.marks)
    marks["OTHER/USDT:USDT"] = Mark(50.0, NOON - 31)
    d = GuardEngine(GuardsConfig()).check(
        GOOD, GuardContext(context.account, context.markets, marks, NOON)
    )
    assert d.code == "stale_price" and "OTHER/USDT:USDT" in d.reason


@pytest.mark.parametrize(
    "intent",
    [
        OrderIntent(SYM, "long", 0.0, leverage=3.0, stop_price=98.0),
        OrderIntent(SYM, "long", float("nan"), leverage=3.0, stop_price=98.0),
        OrderIntent(SYM, "long", 1.0, leverage=0.0, stop_price=98.0),
        OrderIntent(SYM, "long", 1.0, leverage=3.0, stop_price=-1.0),
        OrderIntent(SYM, "long", 1.0, order_type="limit", leverage=3.0, stop_price=98.0),
    ],
)
def test_invalid_intents_refused(intent: OrderIntent) -> None:
    assert GuardEngine(GuardsConfig()).check(intent, ctx()).code == "invalid_intent"


def test_a_rule_raising_refuses_and_names_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: Overtrading, intent: OrderIntent, ctx: GuardContext) -> Any:
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(Overtrading, "check", boom)
    d = GuardEngine(GuardsConfig()).check(GOOD, ctx())
    assert d.code == "rule_error" and not d.allowed
    assert "overtrading" in d.reason and "ZeroDivisionError" in d.reason
    assert [v.rule for v in d.verdicts] == DEFAULT_ORDER  # the others still ran


def test_engine_level_error_refuses() -> None:
    broken = GuardContext(None, {}, {}, NOON)  # type: ignore[arg-type]
    d = GuardEngine(GuardsConfig()).check(GOOD, broken)
    assert d.code == "rule_error" and not d.allowed


# -- risk-reducing orders -----------------------------------------------------------------------


def test_reduce_only_passes_even_when_everything_else_would_refuse() -> None:
    e = GuardEngine(GuardsConfig())
    e.halt("ops", ts=NOON)
    context = GuardContext(Account(0.0, {}), {}, {}, LATE)  # no market, no mark, session closed
    intent = OrderIntent(SYM, "long", 5.0, reduce_only=True)
    d = e.check(intent, context)
    assert d.outcome == "allow" and d.code == "reduce_only" and d.amount == 5.0
    assert all(v.outcome == "skip" for v in d.verdicts)


def test_closing_order_passes_and_flip_is_refused() -> None:
    pos = Position(SYM, "long", 2.0, 100.0, leverage=3.0, margin=66.7, stop_price=98.0)
    e = GuardEngine(GuardsConfig())
    e.halt("ops", ts=NOON)
    close = e.check(OrderIntent(SYM, "short", 2.0), ctx((pos,), now=LATE))
    assert close.allowed and close.code == "closing"
    flip = e.check(OrderIntent(SYM, "short", 2.001, stop_price=103.0), ctx((pos,)))
    assert flip.code == "flip_refused" and not flip.allowed


def test_add_margin_is_judged_by_anti_top_up_only() -> None:
    pos = Position(SYM, "long", 2.0, 100.0, leverage=3.0, margin=66.7, stop_price=98.0)
    intent = OrderIntent(SYM, "long", 0.0, kind="add_margin", margin_amount=10.0)
    d = GuardEngine(GuardsConfig()).check(intent, ctx((pos,)))
    assert d.code == "add_margin_refused"
    judged = {v.rule for v in d.verdicts if v.outcome != "skip"}
    assert judged == {"halt", "data", "anti_top_up"}


# -- approve ----------------------------------------------------------------------------------


def test_approve_seals_allowed_decisions_only() -> None:
    e = GuardEngine(GuardsConfig())
    approved = e.approve(e.check(GOOD, ctx()))
    assert isinstance(approved, ApprovedOrder)
    assert (approved.amount, approved.stop_price) == (1.0, 98.0)
    assert e.state.entries == [NOON] and e.state.symbols[SYM].planned_stop == 98.0
    refused = e.check(OrderIntent(SYM, "long", 1.0, leverage=3.0), ctx())
    with pytest.raises(ValueError):
        e.approve(refused)
    with pytest.raises(TypeError):
        ApprovedOrder(GOOD, 1.0, None, None, refused, object())


# -- sweep --------------------------------------------------------------------------------------

# A: isolated long 1 @ 100 with margin 10 → liq 90.4523; marked at 93 → 2.74 % → reduce.
# B: 2x long without a live stop → place_stop.
POS_A = Position("A/USDT:USDT", "long", 1.0, 100.0, leverage=10.0, margin=10.0, stop_price=92.0)
POS_B = Position("B/USDT:USDT", "long", 1.0, 100.0, leverage=2.0, margin=50.0)


def test_sweep_orders_by_urgency() -> None:
    actions = GuardEngine(GuardsConfig()).sweep(ctx((POS_A, POS_B), prices={"A/USDT:USDT": 93.0}))
    assert [(a.kind, a.symbol, a.rule) for a in actions] == [
        ("reduce", "A/USDT:USDT", "liquidation"),
        ("place_stop", "B/USDT:USDT", "stop_loss"),
    ]


def test_sweep_close_supersedes_reduce_and_place_stop() -> None:
    context = ctx(
        (POS_A, POS_B), now=LATE, prices={"A/USDT:USDT": 93.0}, open_entry_orders={SYM: 1}
    )
    actions = GuardEngine(GuardsConfig()).sweep(context)
    assert [(a.kind, a.symbol) for a in actions] == [
        ("close", "A/USDT:USDT"),
        ("close", "B/USDT:USDT"),
        ("cancel_entries", SYM),
    ]


def test_order_actions_keeps_the_largest_reduce_and_puts_halts_first() -> None:
    def act(kind: str, symbol: str | None, amount: float | None = None, rule: str = "r") -> Action:
        return Action(kind, symbol, rule, "c", "", amount)  # type: ignore[arg-type]

    ordered = order_actions(
        [
            act("place_stop", "X"),
            act("reduce", "X", 0.2),
            act("reduce", "X", 0.5, rule="other"),
            act("cancel_entries", "Y"),
            act("halt", None),
            act("halt", None),
        ]
    )
    assert [(a.kind, a.amount) for a in ordered] == [
        ("halt", None),
        ("reduce", 0.5),
        ("cancel_entries", None),
        ("place_stop", None),
    ]


def test_a_failing_sweep_does_not_stop_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: StopLoss, ctx: GuardContext) -> list[Action]:
        raise RuntimeError("exchange adapter state corrupt")

    monkeypatch.setattr(StopLoss, "sweep", boom)
    e = GuardEngine(GuardsConfig())
    actions = e.sweep(ctx((POS_A, POS_B), prices={"A/USDT:USDT": 93.0}))
    assert [(a.kind, a.rule, a.code) for a in actions] == [
        ("halt", "stop_loss", "rule_error"),
        ("reduce", "liquidation", "liq_reduce"),
    ]
    assert len(e.last_sweep_errors) == 1 and "RuntimeError" in e.last_sweep_errors[0]


# -- state, reload, explain -------------------------------------------------------------------


def test_state_round_trips_through_json() -> None:
    config = GuardsConfig.model_validate({"trend": {"enabled": True, "ema_period": 2}})
    e = GuardEngine(config)
    e.on_candle(SYM, 97, 99, 96, 98, NOON - 120)  # EMA seed (98 + 99)/2 = 98.5 < mark 100
    e.on_candle(SYM, 98, 100, 97, 99, NOON - 60)
    e.on_price(SYM, 100.0, NOON - 30)
    e.on_liquidations(SYM, 5_000.0, NOON - 30)
    e.on_position_closed("B/USDT:USDT", "stop", pnl=-3.0, ts=NOON - 10)
    e.on_equity(10_000.0, NOON - 5)
    e.approve(e.check(GOOD, ctx()))
    e.halt("ops", until=NOON + 600, ts=NOON)
    text = json.dumps(e.state.to_dict(), allow_nan=False)
    restored = GuardState.from_dict(json.loads(text))
    assert restored.to_dict() == e.state.to_dict()
    twin = GuardEngine(config, restored)
    later = ctx(now=NOON + 700)
    assert [v.code for v in twin.check(GOOD, later).verdicts] == [
        v.code for v in e.check(GOOD, later).verdicts
    ]


def test_state_rejects_unknown_version() -> None:
    with pytest.raises(ValueError):
        GuardState.from_dict({"version": 99})


def test_reload_swaps_config_and_keeps_state() -> None:
    e = GuardEngine(GuardsConfig())
    e.approve(e.check(GOOD, ctx()))
    e.reload(GuardsConfig.model_validate({"position_cap": {"max_leverage": 2}}))
    assert e.config.position_cap.max_leverage == 2
    d = e.check(GOOD, ctx(now=NOON + 120))
    assert d.intent.leverage == 2.0 and d.code == "resized"  # 3x capped to 2x
    assert e.state.entries == [NOON]


def test_explain_rows_and_json() -> None:
    d = GuardEngine(GuardsConfig()).check(GOOD, ctx())
    rows = explain_rows(d)
    assert [r.rule for r in rows] == DEFAULT_ORDER
    liq = rows[-1]
    assert liq.outcome == "allow" and "liq_price=" in liq.figures
    data = json.loads(json.dumps(decision_to_dict(d), allow_nan=False))
    assert data["outcome"] == "allow" and data["intent"]["stop_price"] == 98.0
    assert len(data["verdicts"]) == len(DEFAULT_ORDER)
