"""Invariants of the paper exchange under random order flow and prices (hypothesis).

- rounding equals ccxt's own ``amount_to_precision`` / ``price_to_precision`` (binanceusdm,
  TICK_SIZE mode, fed our market dicts), asked twice (the book remembers), and orders'
  datetime strings equal ccxt's ``iso8601`` -- ccxt is the oracle here;
- money is conserved: wallet = start + realised PnL - fees + funding (fees include partial
  liquidation fees), from the accumulators and from the fill and funding records alike;
- no position is left liquidatable after a price point (checked with the guards' math);
- refused orders leave no trace; reduce-only orders never grow or flip a position;
- same inputs give the same state, and a snapshot restored mid-way ends in the same state.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import ccxt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guards.liquidation import liquidation_stage
from paper.config import PaperConfig
from paper.core import PaperCore
from paper.core.records import iso8601
from paper.markets import load_markets

BTC = "BTC/USDT:USDT"
XRP = "XRP/USDT:USDT"
ETH = "ETH/USDT:USDT"
T0 = 1_700_000_100_000
MARKETS = load_markets()
ORACLE = ccxt.binanceusdm()
ORACLE.set_markets([m.to_ccxt() for m in MARKETS.values()])
CORE = PaperCore(PaperConfig(), MARKETS)


@settings(max_examples=300, deadline=None)
@given(
    symbol=st.sampled_from(sorted(MARKETS)),
    amount=st.floats(min_value=1e-6, max_value=5_000, allow_nan=False),
    price=st.floats(min_value=1e-3, max_value=200_000, allow_nan=False),
)
def test_rounding_matches_ccxt(symbol: str, amount: float, price: float) -> None:
    try:
        expected_amount: float | None = float(ORACLE.amount_to_precision(symbol, amount))
    except ccxt.InvalidOrder:
        expected_amount = None
    minimum = MARKETS[symbol].rules.min_amount
    maximum = MARKETS[symbol].max_amount or float("inf")
    try:
        expected_price: float | None = float(ORACLE.price_to_precision(symbol, price))
    except ccxt.InvalidOrder:
        expected_price = None
    for _ in range(2):  # the second time from the book's rounding memo
        if expected_amount is None or not minimum <= expected_amount <= maximum:
            with pytest.raises(ccxt.InvalidOrder):
                CORE.amount_to_precision(symbol, amount)
        else:
            assert CORE.amount_to_precision(symbol, amount) == expected_amount
        if expected_price is None:
            with pytest.raises(ccxt.InvalidOrder):
                CORE.price_to_precision(symbol, price)
        else:
            assert CORE.price_to_precision(symbol, price) == expected_price


@settings(max_examples=300, deadline=None)
@given(ts_ms=st.integers(min_value=0, max_value=4_102_444_799_999))
def test_order_datetime_matches_ccxt(ts_ms: int) -> None:
    assert iso8601(ts_ms) == ccxt.Exchange.iso8601(ts_ms)


# ---------------------------------------------------------------- random sessions

START = 60_000.0
price_move = st.tuples(st.just("price"), st.floats(-0.06, 0.06))
action = st.one_of(
    price_move,
    price_move,
    price_move,
    st.tuples(st.just("market"), st.sampled_from(["buy", "sell"]), st.floats(0.001, 16)),
    st.tuples(st.just("reduce"), st.sampled_from(["buy", "sell"]), st.floats(0.001, 8)),
    st.tuples(
        st.just("limit"),
        st.sampled_from(["buy", "sell"]),
        st.floats(0.001, 0.3),
        st.floats(-0.03, 0.03),
    ),
    st.tuples(st.just("stop"), st.floats(0.002, 0.05)),
    st.tuples(st.just("funding"), st.floats(-0.002, 0.002)),
    st.tuples(st.just("leverage"), st.sampled_from([1, 5, 20, 50, 75, 100])),
    st.tuples(st.just("cancel")),
)
profiles = st.sampled_from(["binance", "tiered"])
modes = st.sampled_from(["isolated", "cross"])


def fresh(profile: str, mode: str) -> PaperCore:
    config = PaperConfig.model_validate(
        {
            "slippage_bps": 1.5,
            "liquidation_profile": profile,
            "default_margin_mode": mode,
            "funding_rate": 0.0003,
        }
    )
    core = PaperCore(config, load_markets([BTC], config), START)
    core.on_price(BTC, 50_000, T0)
    core.set_leverage(50, BTC)
    return core


def step(core: PaperCore, act: tuple[Any, ...], i: int) -> None:
    """Apply one action; exchange refusals are fine (and must leave no trace)."""
    kind = act[0]
    ts = T0 + i * 1_800_000
    last = core.last_price(BTC)
    assert last is not None
    if kind == "price":
        core.on_price(BTC, round(last * (1 + act[1]), 1), ts)
        return
    if kind == "funding":
        core.apply_funding(BTC, act[1])
        return
    before = json.dumps(core.snapshot())
    pos = core.position(BTC)
    try:
        if kind == "market":
            core.create_order(BTC, "market", act[1], act[2])
        elif kind == "reduce":
            core.create_order(BTC, "market", act[1], act[2], params={"reduceOnly": True})
        elif kind == "limit":
            core.create_order(BTC, "limit", act[1], act[2], last * (1 + act[3]))
        elif kind == "stop" and pos is not None:
            side = "sell" if pos.side == "long" else "buy"
            trigger = last * (1 - act[1]) if pos.side == "long" else last * (1 + act[1])
            core.create_order(
                BTC,
                "market",
                side,
                pos.amount,
                None,
                {"stopLossPrice": trigger, "reduceOnly": True},
            )
        elif kind == "leverage":
            core.set_leverage(act[1], BTC)
        elif kind == "cancel":
            for order in core.open_orders(BTC)[:1]:
                core.cancel_order(order["id"])
    except (ccxt.InvalidOrder, ccxt.InsufficientFunds):
        assert json.dumps(core.snapshot()) == before
        return
    if kind == "reduce":
        after = core.position(BTC)
        if pos is None:
            raise AssertionError("a reduce-only order without a position must be refused")
        assert after is None or (after.side == pos.side and after.amount < pos.amount)


def check_money(core: PaperCore) -> None:
    """The ledger reconciles with the trade, fill and funding records."""
    pnl = sum(t.pnl for t in core.trades)
    expected = START + pnl - core.total_fees + core.total_funding
    assert core.wallet_balance == pytest.approx(expected, rel=1e-9, abs=1e-6)
    fill_fees = sum(f.fee for f in core.fills)
    funding = sum(p.amount for p in core.funding_payments)
    from_records = START + sum(f.realized_pnl for f in core.fills) - fill_fees + funding
    assert core.wallet_balance == pytest.approx(from_records, rel=1e-9, abs=1e-6)
    assert fill_fees == pytest.approx(core.total_fees, rel=1e-9, abs=1e-6)
    assert funding == pytest.approx(core.total_funding, rel=1e-9, abs=1e-6)
    open_entry_fees = sum(p["info"]["entryFees"] for p in core.positions())
    assert sum(t.fees for t in core.trades) + open_entry_fees == pytest.approx(
        fill_fees, rel=1e-9, abs=1e-6
    )


def check_invariants(core: PaperCore) -> None:
    check_money(core)
    rules = core.market_rules(BTC)
    for p in core.positions():
        assert p["contracts"] > 0
        assert round(p["contracts"] / rules.amount_step, 6).is_integer()
        if p["marginMode"] == "isolated":
            stage = liquidation_stage(
                side=p["side"],
                amount=p["contracts"],
                entry_price=p["entryPrice"],
                price=p["markPrice"],
                margin_mode="isolated",
                wallet_balance=p["collateral"],
                tiers=rules.tiers,
                liquidation_fee_rate=rules.liquidation_fee_rate,
            )
            assert stage == "none"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profile=profiles, mode=modes, actions=st.lists(action, min_size=1, max_size=40))
def test_random_sessions_keep_invariants(
    profile: str, mode: str, actions: list[tuple[Any, ...]]
) -> None:
    core = fresh(profile, mode)
    for i, act in enumerate(actions):
        step(core, act, i)
        check_invariants(core)


@settings(max_examples=80, deadline=None)
@given(
    profile=profiles,
    mode=modes,
    side=st.sampled_from(["buy", "sell"]),
    amount=st.floats(0.5, 16),
    leverage=st.sampled_from([10, 20, 50, 75]),
    path=st.lists(st.floats(-0.02, 0.02), min_size=1, max_size=30),
    adverse=st.floats(0.0, 0.01),
)
def test_leveraged_positions_through_price_paths(
    profile: str,
    mode: str,
    side: str,
    amount: float,
    leverage: int,
    path: list[float],
    adverse: float,
) -> None:
    """High leverage and a drift against the position: liquidations, partial ones included."""
    core = fresh(profile, mode)
    core.set_leverage(leverage, BTC)
    try:
        core.create_order(BTC, "market", side, amount)
    except (ccxt.InvalidOrder, ccxt.InsufficientFunds):
        return
    drift = -adverse if side == "buy" else adverse
    for i, move in enumerate(path, 1):
        last = core.last_price(BTC)
        assert last is not None
        core.on_price(BTC, round(last * (1 + move + drift), 1), T0 + i * 60_000)
        check_invariants(core)


@settings(max_examples=30, deadline=None)
@given(
    profile=profiles,
    mode=modes,
    actions=st.lists(action, min_size=2, max_size=30),
    cut=st.integers(0, 29),
)
def test_deterministic_and_snapshot_restore_mid_session(
    profile: str, mode: str, actions: list[tuple[Any, ...]], cut: int
) -> None:
    cut = min(cut, len(actions))
    a, b = fresh(profile, mode), fresh(profile, mode)
    for i, act in enumerate(actions[:cut]):
        step(a, act, i)
        step(b, act, i)
    assert a.snapshot() == b.snapshot()
    b = PaperCore.restore(json.loads(json.dumps(b.snapshot())))
    for i, act in enumerate(actions[cut:], cut):
        step(a, act, i)
        step(b, act, i)
    assert a.snapshot() == b.snapshot()


def test_xrp_market_whole_units_and_tick() -> None:
    core = PaperCore(PaperConfig(slippage_bps=0), load_markets([XRP]), 1_000)
    core.on_price(XRP, 0.51234, T0)
    order = core.create_order(XRP, "limit", "buy", 20.05, 0.50006)
    assert order["amount"] == 20.0 and order["price"] == 0.5001


@settings(max_examples=60, deadline=None)
@given(
    profile=profiles,
    legs=st.lists(
        st.tuples(
            st.sampled_from([BTC, ETH]),
            st.sampled_from(["buy", "sell"]),
            st.floats(0.01, 8),
            st.floats(-0.03, 0.03),
        ),
        min_size=1,
        max_size=25,
    ),
)
def test_two_cross_positions_share_the_wallet(
    profile: str, legs: list[tuple[str, str, float, float]]
) -> None:
    """Cross margin over two symbols: money conserved, the priced symbol never left liquidatable."""
    config = PaperConfig.model_validate(
        {"liquidation_profile": profile, "default_margin_mode": "cross", "default_leverage": 25}
    )
    core = PaperCore(config, load_markets([BTC, ETH], config), START)
    core.on_price(BTC, 50_000, T0)
    core.on_price(ETH, 2_500, T0)
    for i, (symbol, side, size, move) in enumerate(legs, 1):
        amount = size if symbol == BTC else size * 20
        with contextlib.suppress(ccxt.InvalidOrder, ccxt.InsufficientFunds):
            core.create_order(symbol, "market", side, amount)
        last = core.last_price(symbol)
        assert last is not None
        core.on_price(symbol, round(last * (1 + move), 1), T0 + i * 60_000)
        check_invariants_cross(core, symbol)


def check_invariants_cross(core: PaperCore, priced: str) -> None:
    check_money(core)
    positions = {p["symbol"]: p for p in core.positions()}
    p = positions.get(priced)
    if p is None:
        return
    others = [q for s, q in positions.items() if s != priced]
    rules = core.market_rules(priced)
    stage = liquidation_stage(
        side=p["side"],
        amount=p["contracts"],
        entry_price=p["entryPrice"],
        price=p["markPrice"],
        margin_mode="cross",
        wallet_balance=core.cross_wallet_balance,
        tiers=rules.tiers,
        other_maint_margin=sum(q["maintenanceMargin"] for q in others),
        other_unrealized_pnl=sum(q["unrealizedPnl"] for q in others),
        liquidation_fee_rate=rules.liquidation_fee_rate,
    )
    assert stage == "none"
