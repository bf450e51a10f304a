"""position_cap: leverage, margin, total margin and position-count caps, resize and minimums.

Every expected number is worked out by hand in the test from the cap definitions:
margin = amount * price / leverage, caps are % of equity = wallet + unrealised PnL.
"""

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
    Tiers,
    Verdict,
)

SYM = "TEST/USDT:USDT"
NOW = datetime(2024, 6, 3, 12, 0, tzinfo=UTC).timestamp()
FLAT_TIER = (Tier(0.0, math.inf, 0.005, 0.0, 100.0),)


def only(rule: str, **params: Any) -> GuardsConfig:
    tables: dict[str, Any] = {name: {"enabled": name == rule} for name in REGISTRY}
    tables[rule].update(params)
    return GuardsConfig.model_validate(tables)


def market(symbol: str = SYM, **kw: Any) -> MarketRules:
    return MarketRules(symbol=symbol, tiers=kw.pop("tiers", FLAT_TIER), **kw)


def ctx(
    positions: tuple[Position, ...] = (),
    wallet: float = 10_000.0,
    prices: dict[str, float] | None = None,
    markets: tuple[MarketRules, ...] = (),
) -> GuardContext:
    prices = {SYM: 100.0, **(prices or {})}
    rules = {m.symbol: m for m in (market(), *markets)}
    for p in positions:
        rules.setdefault(p.symbol, market(p.symbol))
        prices.setdefault(p.symbol, p.entry_price)
    return GuardContext(
        account=Account(wallet, {p.symbol: p for p in positions}),
        markets=rules,
        marks={s: Mark(px, NOW) for s, px in prices.items()},
        now=NOW,
    )


def verdict(decision: Decision, rule: str = "position_cap") -> Verdict:
    return next(v for v in decision.verdicts if v.rule == rule)


def check(intent: OrderIntent, context: GuardContext, **params: Any) -> Decision:
    return GuardEngine(only("position_cap", **params)).check(intent, context)


def long(amount: float, leverage: float = 5.0, symbol: str = SYM) -> OrderIntent:
    return OrderIntent(symbol=symbol, side="long", amount=amount, leverage=leverage)


# Equity 10,000, max_margin_pct 10 → margin cap 1,000; at 5x and price 100 that is a notional
# of 5,000 = 50 units.


def test_margin_cap_just_inside_is_allowed() -> None:
    d = check(long(50.0), ctx())
    assert d.outcome == "allow" and d.amount == 50.0
    assert verdict(d).figures["margin_cap"] == pytest.approx(1_000.0)


def test_margin_cap_just_outside_resizes_down_to_the_step() -> None:
    d = check(long(50.001), ctx())
    assert d.outcome == "resize"
    assert d.amount == pytest.approx(50.0)
    assert verdict(d).code == "cap_margin"
    assert d.intent.amount == d.amount


def test_margin_cap_breach_rejected_when_configured() -> None:
    d = check(long(50.001), ctx(), on_breach="reject")
    assert d.outcome == "reject" and d.code == "cap_margin"


def test_resize_rounds_down_to_amount_step() -> None:
    # price 99.7: 5,000 / 99.7 = 50.1504... units → floor to 0.001 = 50.150
    d = check(long(60.0), ctx(prices={SYM: 99.7}))
    assert d.amount == pytest.approx(50.150)
    assert d.amount * 99.7 / 5.0 <= 1_000.0


def test_equity_counts_unrealised_pnl() -> None:
    # other position: long 100 @ 50 marked at 40 → uPnL -1,000; equity 9,000 → cap 900;
    # its margin 100*50/5 = 1,000; total cap 4,500 not binding. 900 * 5 / 100 = 45 units.
    other = Position("OTHER/USDT:USDT", "long", 100.0, 50.0, leverage=5.0, margin=1_000.0)
    d = check(long(46.0), ctx((other,), prices={"OTHER/USDT:USDT": 40.0}))
    assert d.amount == pytest.approx(45.0)
    assert verdict(d).figures["equity"] == pytest.approx(9_000.0)


def test_total_margin_cap() -> None:
    # five other positions of 980 margin = 4,900; total cap 5,000 → room 100 → 5 units at 5x.
    others = tuple(
        Position(f"O{i}/USDT:USDT", "long", 49.0, 100.0, leverage=5.0, margin=980.0)
        for i in range(5)
    )
    d = check(long(6.0), ctx(others), max_positions=10)
    assert d.outcome == "resize" and d.amount == pytest.approx(5.0)
    assert verdict(d).code == "cap_total_margin"
    assert check(long(5.0), ctx(others), max_positions=10).outcome == "allow"


def test_no_room_left_is_refused_with_the_cap_code() -> None:
    others = tuple(
        Position(f"O{i}/USDT:USDT", "long", 50.0, 100.0, leverage=5.0, margin=1_000.0)
        for i in range(5)
    )
    d = check(long(1.0), ctx(others), max_positions=10)
    assert d.code == "cap_total_margin" and not d.allowed


def test_max_positions() -> None:
    four = tuple(
        Position(f"O{i}/USDT:USDT", "long", 1.0, 100.0, leverage=5.0, margin=20.0) for i in range(4)
    )
    assert check(long(1.0), ctx(four)).outcome == "allow"
    fifth = Position("O9/USDT:USDT", "long", 1.0, 100.0, leverage=5.0, margin=20.0)
    d = check(long(1.0), ctx((*four, fifth)))
    assert d.code == "cap_positions"
    assert verdict(d).figures["open_positions"] == 5
    # adding to one of the five open positions is not a new position
    existing = Position(SYM, "long", 1.0, 90.0, leverage=5.0, margin=18.0)
    assert check(long(1.0), ctx((*four, existing))).outcome == "allow"


def test_add_counts_existing_margin() -> None:
    # existing 30 @ 100 at 5x → margin 600; room 400 → 20 units at 5x
    existing = Position(SYM, "long", 30.0, 100.0, leverage=5.0, margin=600.0)
    d = check(long(25.0), ctx((existing,)))
    assert d.amount == pytest.approx(20.0)


def test_leverage_cap_resizes_to_capped_leverage() -> None:
    # 10 units at 6x → leverage capped to 5x; margin 10*100/5 = 200 ≤ 1,000 so size stays.
    d = check(long(10.0, leverage=6.0), ctx())
    assert d.outcome == "resize"
    assert d.intent.leverage == 5.0 and d.amount == 10.0
    assert verdict(d).code == "cap_leverage"
    assert verdict(d).figures["requested_leverage"] == 6.0


def test_leverage_cap_then_margin_cap() -> None:
    # 80 units at 10x: capped to 5x, then margin cap → 50 units.
    d = check(long(80.0, leverage=10.0), ctx())
    assert d.intent.leverage == 5.0 and d.amount == pytest.approx(50.0)


def test_leverage_at_cap_passes_and_above_cap_rejects_when_configured() -> None:
    assert check(long(1.0, leverage=5.0), ctx(), on_breach="reject").outcome == "allow"
    d = check(long(1.0, leverage=5.01), ctx(), on_breach="reject")
    assert d.code == "cap_leverage"


def test_tier_max_leverage_lowers_leverage() -> None:
    # Tiers: [0, 5,000) up to 20x, [5,000, ∞) up to 5x; config allows 10x.
    # 60 units at 10x: notional 6,000 lands in tier 2 (5x max) → leverage 5x; margin cap 1,000
    # → 50 units (notional 5,000, which is tier 2 too: 5x fine).
    tiers = (Tier(0.0, 5_000.0, 0.01, 0.0, 20.0), Tier(5_000.0, math.inf, 0.02, 50.0, 5.0))
    context = ctx(markets=(market(tiers=tiers),))
    d = check(long(60.0, leverage=10.0), context, max_leverage=10)
    assert d.intent.leverage == 5.0
    assert d.amount == pytest.approx(50.0)
    # 40 units at 10x: notional 4,000 in tier 1 (20x) and margin 400 fits → allowed as is.
    assert check(long(40.0, leverage=10.0), context, max_leverage=10).outcome == "allow"


def test_resize_below_market_minimum_is_refused() -> None:
    # margin cap lets 50 units; the market's minimum is 60 units.
    context = ctx(markets=(market(min_amount=60.0),))
    d = check(long(70.0), context)
    assert d.code == "below_min_amount" and not d.allowed
    assert verdict(d).figures["min_amount"] == 60.0


def test_order_below_min_notional_is_refused_without_resize() -> None:
    # 0.05 * 100 = 5 USDT < min notional 10
    context = ctx(markets=(market(min_notional=10.0),))
    assert check(long(0.05), context).code == "below_min_amount"
    assert check(long(0.1), context).outcome == "allow"


def test_no_equity_refuses() -> None:
    assert check(long(1.0), ctx(wallet=0.0)).code == "no_equity"


def test_okx_tiers_cap_leverage_by_position_size() -> None:
    # OKX's tiers are sizes (guards.tiers, model "okx"): [0, 50] units up to 20x, above 5x.
    # 60 units at 10x: the size 60 is tier 2 (5x) whatever the price → leverage 5x, 50 units
    # (the margin cap 1,000 at 5x and 100); 40 units stay in tier 1.
    tiers = Tiers((Tier(0.0, 50.0, 0.01, 0.0, 20.0), Tier(50.0, math.inf, 0.02, 0.0, 5.0)), "okx")
    context = ctx(markets=(market(tiers=tiers, liquidation_model="okx"),))
    d = check(long(60.0, leverage=10.0), context, max_leverage=10)
    assert d.intent.leverage == 5.0
    assert d.amount == pytest.approx(50.0)
    assert check(long(40.0, leverage=10.0), context, max_leverage=10).outcome == "allow"
