"""Invariants of the guard engine, checked with hypothesis.

- an allowed opening order has its stop strictly between entry and liquidation, at least the
  configured buffer before liquidation;
- exposure after an allowed order stays within the caps (leverage, margin per position, total
  margin, positions) and the loss at the stop within the risk cap;
- risk-reducing orders always pass, whatever the context;
- a rule raising makes the engine refuse; the engine never raises on odd input.

Margins, losses and caps are recomputed here from their definitions, not taken from the rules.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any
from unittest.mock import patch

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from guards.config import GuardsConfig
from guards.engine import RISK_REDUCING_CODES, GuardEngine
from guards.liquidation import liquidation_price, maintenance_margin
from guards.rules import REGISTRY
from guards.types import Account, GuardContext, Mark, MarketRules, OrderIntent, Position, Tier

NOW = datetime(2024, 6, 3, 12, 0, tzinfo=UTC).timestamp()
# Four brackets in Binance's shape; cum from continuity: 50,000*0.001 = 50,
# 50 + 600,000*0.005 = 3,050, 3,050 + 3,000,000*0.015 = 48,050.
TIERS = (
    Tier(0.0, 50_000.0, 0.004, 0.0, 125.0),
    Tier(50_000.0, 600_000.0, 0.005, 50.0, 100.0),
    Tier(600_000.0, 3_000_000.0, 0.01, 3_050.0, 50.0),
    Tier(3_000_000.0, math.inf, 0.025, 48_050.0, 20.0),
)
SYMBOLS = ["S0/USDT:USDT", "S1/USDT:USDT", "S2/USDT:USDT", "S3/USDT:USDT", "S4/USDT:USDT"]
TARGET = "T/USDT:USDT"
PROPS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

sides = st.sampled_from(["long", "short"])
modes = st.sampled_from(["isolated", "cross"])
prices = st.floats(1.0, 100_000.0)


@st.composite
def positions(draw: st.DrawFn, symbol: str, wallet: float) -> tuple[Position, float]:
    """A position on ``symbol`` worth 1-50 % of ``wallet``, and its mark."""
    side = draw(sides)
    entry = draw(prices)
    amount = wallet * draw(st.floats(0.01, 0.5)) / entry
    leverage = draw(st.floats(1.0, 10.0))
    mark = entry * draw(st.floats(0.97, 1.03))
    pos = Position(
        symbol,
        side,
        amount,
        entry,
        margin_mode=draw(modes),
        leverage=leverage,
        margin=amount * entry / leverage,
        stop_price=entry * (0.9 if side == "long" else 1.1),
        adds=draw(st.integers(0, 2)),
    )
    return pos, mark


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[GuardsConfig, OrderIntent, GuardContext]:
    config = GuardsConfig.model_validate(
        {
            "no_overnight": {"enabled": False},
            "position_cap": {
                "max_leverage": draw(st.floats(1.0, 20.0)),
                "max_margin_pct": draw(st.floats(1.0, 50.0)),
                "max_total_margin_pct": draw(st.floats(5.0, 100.0)),
                "max_positions": draw(st.integers(2, 8)),
                "on_breach": draw(st.sampled_from(["resize", "resize", "resize", "reject"])),
            },
            "stop_loss": {
                "max_risk_pct": draw(st.floats(0.1, 5.0)),
                "missing": draw(st.sampled_from(["reject", "attach", "attach", "attach"])),
                "default_stop_pct": draw(st.floats(0.2, 20.0)),
            },
            "liquidation": {
                "stop_buffer_pct": draw(st.floats(0.1, 5.0)),
                "min_distance_pct": draw(st.floats(3.5, 30.0)),
            },
            "anti_top_up": {"max_adds": 5},
        }
    )
    wallet = draw(st.floats(100.0, 1_000_000.0))
    others = draw(st.lists(st.sampled_from(SYMBOLS), unique=True, max_size=3))
    held: dict[str, Position] = {}
    marks: dict[str, Mark] = {}
    for symbol in others:
        pos, mark = draw(positions(symbol, wallet))
        held[symbol] = pos
        marks[symbol] = Mark(mark, NOW)
    price = draw(prices)
    side = draw(sides)
    s = 1 if side == "long" else -1
    mode = draw(modes)
    if draw(st.booleans()):  # an open position on the target, same side, in profit
        entry = price * (1 - s * draw(st.floats(0.001, 0.1)))
        amount = wallet * draw(st.floats(0.01, 0.3)) / entry
        lev = draw(st.floats(1.0, 10.0))
        held[TARGET] = Position(
            TARGET,
            side,
            amount,
            entry,
            margin_mode=mode,
            leverage=lev,
            margin=amount * entry / lev,
            stop_price=entry * (1 - s * 0.05),
        )
    marks[TARGET] = Mark(price, NOW)
    stop = None
    if draw(st.integers(0, 3)):
        stop = price * (1 - s * draw(st.floats(0.001, 0.3)))
    intent = OrderIntent(
        TARGET,
        side,
        wallet * draw(st.floats(0.001, 20.0)) / price,
        leverage=draw(st.floats(1.0, 60.0)),
        margin_mode=mode,
        stop_price=stop,
    )
    markets = {sym: MarketRules(sym, TIERS, amount_step=1e-6, price_step=1e-6) for sym in marks}
    ctx = GuardContext(Account(wallet, held), markets, marks, NOW)
    return config, intent, ctx


def margin_of(p: Position) -> float:
    return p.margin if p.margin > 0 else p.amount * p.entry_price / p.leverage


@PROPS
@given(scenarios())
def test_allowed_order_stop_lies_between_entry_and_liquidation(
    scenario: tuple[GuardsConfig, OrderIntent, GuardContext],
) -> None:
    config, intent, ctx = scenario
    d = GuardEngine(config).check(intent, ctx)
    assume(d.allowed and d.code not in RISK_REDUCING_CODES)
    final = d.intent
    entry = ctx.marks[TARGET].price
    s = 1 if final.side == "long" else -1
    stop = d.stop_price
    assert stop is not None and stop == final.stop_price
    assert s * (entry - stop) > 0  # on the losing side of entry
    pos = ctx.account.positions.get(TARGET)
    total = final.amount + (pos.amount if pos else 0.0)
    avg = (final.amount * entry + (pos.amount * pos.entry_price if pos else 0.0)) / total
    if final.margin_mode == "isolated":
        wallet = final.amount * entry / final.leverage + (margin_of(pos) if pos else 0.0)
        liq = liquidation_price(
            side=final.side,
            amount=total,
            entry_price=avg,
            margin_mode="isolated",
            wallet_balance=wallet,
            tiers=TIERS,
        )
    else:
        others = [p for sym, p in ctx.account.positions.items() if sym != TARGET]
        cross = [p for p in others if p.margin_mode == "cross"]
        isolated = sum(
            margin_of(p) for p in ctx.account.positions.values() if p.margin_mode == "isolated"
        )
        mm = sum(maintenance_margin(p.amount * ctx.marks[p.symbol].price, TIERS) for p in cross)
        upnl = sum(p.unrealized_pnl(ctx.marks[p.symbol].price) for p in cross)
        liq = liquidation_price(
            side=final.side,
            amount=total,
            entry_price=avg,
            margin_mode="cross",
            wallet_balance=ctx.account.wallet_balance - isolated,
            tiers=TIERS,
            other_maint_margin=mm,
            other_unrealized_pnl=upnl,
        )
    if liq is not None:
        buffer = config.liquidation.stop_buffer_pct / 100
        assert s * (stop - liq) > 0  # strictly before liquidation
        assert s * (stop - liq * (1 + s * buffer)) >= -1e-9 * stop  # with the buffer
        assert s * (entry - liq) / entry * 100 >= config.liquidation.min_distance_pct - 1e-9


@PROPS
@given(scenarios())
def test_exposure_after_an_allowed_order_stays_within_caps(
    scenario: tuple[GuardsConfig, OrderIntent, GuardContext],
) -> None:
    config, intent, ctx = scenario
    d = GuardEngine(config).check(intent, ctx)
    assume(d.allowed and d.code not in RISK_REDUCING_CODES)
    final = d.intent
    cap = config.position_cap
    held = ctx.account.positions
    marks = ctx.marks
    entry = marks[TARGET].price
    equity = ctx.account.wallet_balance + sum(
        p.unrealized_pnl(marks[sym].price) for sym, p in held.items()
    )
    new_margin = final.amount * entry / final.leverage
    pos = held.get(TARGET)
    tol = 1 + 1e-9
    assert final.amount <= intent.amount * tol
    assert final.leverage <= cap.max_leverage * tol
    assert new_margin + (margin_of(pos) if pos else 0.0) <= cap.max_margin_pct / 100 * equity * tol
    total = new_margin + sum(margin_of(p) for p in held.values())
    assert total <= cap.max_total_margin_pct / 100 * equity * tol
    assert len(set(held) | {TARGET}) <= max(cap.max_positions, len(held))
    if pos is None:
        assert len(held) + 1 <= cap.max_positions
    # loss at the stop, fees at the taker rate on entry and exit, within the risk cap
    s = 1 if final.side == "long" else -1
    stop = d.stop_price
    assert stop is not None
    fee = ctx.markets[TARGET].taker_fee
    loss = final.amount * (s * (entry - stop) + fee * (entry + stop))
    if pos is not None:
        loss += pos.amount * (s * (pos.entry_price - stop) + fee * stop)
    assert loss <= config.stop_loss.max_risk_pct / 100 * equity * tol + 1e-9


@PROPS
@given(
    scenarios(),
    st.floats(allow_nan=True, allow_infinity=True),
    sides,
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_reduce_only_always_passes(
    scenario: tuple[GuardsConfig, OrderIntent, GuardContext],
    amount: float,
    side: str,
    drop_market: bool,
    drop_mark: bool,
    halted: bool,
) -> None:
    config, _, ctx = scenario
    markets = {} if drop_market else ctx.markets
    marks = {} if drop_mark else ctx.marks
    ctx = GuardContext(ctx.account, markets, marks, ctx.now + (10_000 if drop_mark else 0))
    engine = GuardEngine(config)
    if halted:
        engine.halt("test", ts=NOW)
    intent = OrderIntent(TARGET, side, amount, reduce_only=True)  # type: ignore[arg-type]
    d = engine.check(intent, ctx)
    assert d.allowed and d.code == "reduce_only"
    assert d.amount is amount or (math.isnan(amount) and math.isnan(d.amount))


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(list(REGISTRY)),
    st.sampled_from([ValueError, KeyError, ZeroDivisionError, RuntimeError, AttributeError]),
)
def test_a_raising_rule_makes_the_engine_refuse(rule: str, error: type[Exception]) -> None:
    config = GuardsConfig.model_validate(
        {"no_overnight": {"enabled": True}, "trend": {"enabled": True, "ema_period": 2}}
    )
    engine = GuardEngine(config)
    engine.on_candle(TARGET, 90, 91, 89, 90, NOW - 120)
    engine.on_candle(TARGET, 90, 91, 89, 90, NOW - 60)
    intent = OrderIntent(TARGET, "long", 1.0, leverage=2.0, stop_price=97.0)
    ctx = GuardContext(
        Account(10_000.0, {}), {TARGET: MarketRules(TARGET, TIERS)}, {TARGET: Mark(100.0, NOW)}, NOW
    )
    assert engine.check(intent, ctx).allowed  # the baseline passes every rule

    def boom(self: Any, intent: OrderIntent, ctx: GuardContext) -> Any:
        raise error("injected")

    with patch.object(REGISTRY[rule], "check", boom):
        d = engine.check(intent, ctx)
    assert not d.allowed and d.code == "rule_error"
    verdict = next(v for v in d.verdicts if v.rule == rule)
    assert verdict.code == "rule_error" and error.__name__ in verdict.reason


odd = st.floats(allow_nan=True, allow_infinity=True) | st.none()


@settings(max_examples=300, deadline=None)
@given(
    st.floats(allow_nan=True, allow_infinity=True),
    odd,
    odd,
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(allow_nan=True, allow_infinity=True),
    sides,
    modes,
)
def test_engine_never_raises_and_only_allows_sane_orders(
    amount: float,
    stop: float | None,
    take_profit: float | None,
    leverage: float,
    mark: float,
    wallet: float,
    side: str,
    mode: str,
) -> None:
    intent = OrderIntent(
        TARGET,
        side,  # type: ignore[arg-type]
        amount,
        leverage=leverage,
        margin_mode=mode,  # type: ignore[arg-type]
        stop_price=stop,
        take_profit=take_profit,
    )
    ctx = GuardContext(
        Account(wallet, {}), {TARGET: MarketRules(TARGET, TIERS)}, {TARGET: Mark(mark, NOW)}, NOW
    )
    d = GuardEngine(GuardsConfig()).check(intent, ctx)
    if d.allowed:
        assert math.isfinite(d.amount) and d.amount > 0
        assert d.stop_price is not None and math.isfinite(d.stop_price)
