"""What the paper core reports: fills, funding payments and the events ``on_price`` returns.

Money figures are worked by hand in each test. BTC/USDT:USDT (bundled Binance values): tick 0.1,
step 0.001, taker 0.0005, maker 0.0002; tiers 1 [0, 50k) mmr 0.004 cum 0, 2 [50k, 600k) mmr
0.005 cum 50, 3 [600k, 3M) mmr 0.0065 cum 950. ccxt's own Binance parser is the oracle for the
shape of ``Fill.to_ccxt()``.
"""

from __future__ import annotations

import json
from typing import Any

import ccxt
import pytest

from paper.config import PaperConfig
from paper.core import Fill, FundingPayment, LiquidationEvent, PaperCore, Trade
from paper.markets import load_markets

BTC = "BTC/USDT:USDT"
T0 = 1_700_000_100_000  # 2023-11-14 22:15:00 UTC; next funding 2023-11-15 00:00 UTC
NEXT_FUNDING = 1_700_006_400_000


def make(balance: float = 10_000, leverage: float = 10, **cfg: Any) -> PaperCore:
    cfg.setdefault("slippage_bps", 0)
    config = PaperConfig(**cfg)
    core = PaperCore(config, load_markets([BTC], config), balance)
    core.set_leverage(leverage, BTC)
    return core


def long_with_stop(core: PaperCore, stop: float = 49_000) -> None:
    core.on_price(BTC, 50_000, T0)
    core.create_order(BTC, "market", "buy", 0.1, params={"clientOrderId": "entry"})
    core.create_order(BTC, "market", "sell", 0.1, None, {"stopLossPrice": stop, "reduceOnly": True})


# ---------------------------------------------------------------- fills


def test_market_order_filled_in_create_order_records_a_taker_fill() -> None:
    core = make()
    core.on_price(BTC, 50_000, T0)
    order = core.create_order(BTC, "market", "buy", 0.1, params={"clientOrderId": "a1"})
    (fill,) = core.fills
    assert fill.id == 1 and fill.order_id == order["id"] and fill.client_order_id == "a1"
    assert (fill.symbol, fill.side, fill.amount, fill.price) == (BTC, "buy", 0.1, 50_000)
    assert fill.fee == pytest.approx(2.5)  # 0.1 * 50000 * 0.0005
    assert fill.fee_currency == "USDT"
    assert fill.realized_pnl == 0.0  # an opening fill realises nothing
    assert fill.timestamp == T0
    assert fill.taker_or_maker == "taker"
    assert not fill.reduce_only and not fill.closed
    assert fill.reason == "strategy" and fill.tag == ""


def test_nothing_happening_returns_the_one_empty_tuple() -> None:
    core = make()
    flat = core.on_price(BTC, 50_000, T0)
    long_with_stop(core)
    quiet = core.on_price(BTC, 49_500, T0 + 60_000)  # above the stop, below nothing
    assert flat == () and quiet == ()
    assert flat is quiet  # the shared empty tuple: nothing allocated


def test_stop_fill_comes_back_with_the_trade_it_closed() -> None:
    core = make()
    long_with_stop(core)
    core.on_price(BTC, 49_500, T0 + 60_000)
    fill, trade = core.on_price(BTC, 48_000, T0 + 120_000)
    assert isinstance(fill, Fill) and isinstance(trade, Trade)
    assert (fill.side, fill.amount, fill.price) == ("sell", 0.1, 49_000)
    assert fill.fee == pytest.approx(2.45)  # 0.1 * 49000 * 0.0005
    assert fill.realized_pnl == pytest.approx(-100)  # 0.1 * (49000 - 50000), gross
    assert fill.reason == "stop" and fill.reduce_only and fill.closed
    assert fill.timestamp == T0 + 120_000
    assert trade.pnl == pytest.approx(-100)
    assert trade.fees == pytest.approx(2.5 + 2.45)  # entry fee + closing fee
    assert core.fills[-1] is fill and core.trades[-1] is trade


def test_resting_limit_fill_is_maker_and_opening() -> None:
    core = make()
    core.on_price(BTC, 50_000, T0)
    order = core.create_order(BTC, "limit", "buy", 0.1, 49_500, {"tag": "dip"})
    (fill,) = core.on_price(BTC, 49_000, T0 + 60_000)
    assert isinstance(fill, Fill)
    assert fill.order_id == order["id"] and fill.client_order_id is None
    assert fill.price == 49_500 and fill.taker_or_maker == "maker"
    assert fill.fee == pytest.approx(0.99)  # 0.1 * 49500 * 0.0002
    assert fill.tag == "dip" and not fill.closed and fill.realized_pnl == 0.0


def test_a_flip_is_one_fill_with_the_pnl_of_the_closed_part() -> None:
    core = make()
    core.on_price(BTC, 50_000, T0)
    core.create_order(BTC, "market", "buy", 0.1)
    core.on_price(BTC, 50_700, T0 + 60_000)
    core.create_order(BTC, "market", "sell", 0.3)
    fill = core.fills[-1]
    assert fill.amount == pytest.approx(0.3)
    assert fill.realized_pnl == pytest.approx(70)  # 0.1 * (50700 - 50000)
    assert fill.fee == pytest.approx(7.605)  # 0.3 * 50700 * 0.0005
    assert fill.closed and not fill.reduce_only
    assert core.positions()[0]["side"] == "short"


# ---------------------------------------------------------------- funding


def test_funding_payment_is_returned_and_recorded() -> None:
    core = make(funding_rate=0.0001)
    core.on_price(BTC, 50_000, T0)
    core.create_order(BTC, "market", "buy", 0.1)
    (payment,) = core.on_price(BTC, 51_000, NEXT_FUNDING + 5_000)
    assert isinstance(payment, FundingPayment)
    # long pays 0.1 * 51000 * 0.0001 = 0.51, settled for the 00:00 funding time
    assert payment.amount == pytest.approx(-0.51)
    assert (payment.timestamp, payment.rate, payment.price) == (NEXT_FUNDING, 0.0001, 51_000)
    assert payment.position == 0.1 and payment.currency == "USDT"
    assert core.funding_payments == [payment]
    ccxt_entry = payment.to_ccxt()
    assert ccxt_entry["amount"] == pytest.approx(-0.51)
    assert ccxt_entry["code"] == "USDT" and ccxt_entry["symbol"] == BTC
    assert ccxt_entry["datetime"] == "2023-11-15T00:00:00.000Z"


def test_funding_comes_before_a_stop_on_the_same_price() -> None:
    core = make(funding_rate=0.0001)
    long_with_stop(core)
    core.on_price(BTC, 49_500, T0 + 60_000)
    payment, fill, trade = core.on_price(BTC, 48_500, NEXT_FUNDING)
    assert isinstance(payment, FundingPayment) and isinstance(fill, Fill)
    assert isinstance(trade, Trade)
    assert payment.amount == pytest.approx(-0.485)  # 0.1 * 48500 * 0.0001, at the mark
    assert trade.funding == pytest.approx(-0.485)  # the closed round trip carries it


# ---------------------------------------------------------------- the liquidation engine


def test_whole_liquidation_returns_the_engine_fill_trade_and_event() -> None:
    core = make()
    core.on_price(BTC, 50_000, T0)
    core.create_order(BTC, "market", "buy", 0.1)  # margin 500
    fill, trade, event = core.on_price(BTC, 45_180, T0 + 60_000)  # trigger 4500 / 0.0996
    assert isinstance(fill, Fill) and isinstance(trade, Trade)
    assert isinstance(event, LiquidationEvent)
    # bankruptcy: 500 + 0.1 (P - 50000) = 0 -> P = 45000; the margin is the loss, no fee debit
    assert (fill.side, fill.amount) == ("sell", 0.1) and fill.price == pytest.approx(45_000)
    assert fill.realized_pnl == pytest.approx(-500) and fill.fee == 0.0
    assert fill.reason == "liquidation" and fill.reduce_only and fill.closed
    assert fill.order_id == "liquidation-2" and fill.client_order_id == "autoclose-2"
    assert event.margin_lost == pytest.approx(500) and not event.partial


def test_partial_liquidation_fill_carries_the_liquidation_fee() -> None:
    core = make(40_000, 20, liquidation_profile="tiered", liquidation_fee_rate=0.005)
    core.on_price(BTC, 50_000, T0)
    core.create_order(BTC, "market", "buy", 13)  # 650000 notional: tier 3
    events = core.on_price(BTC, 48_050, T0 + 60_000)
    fill, trade, event = events
    assert isinstance(fill, Fill) and isinstance(event, LiquidationEvent)
    assert isinstance(trade, Trade)
    # keep floor(600000 / 48050, 0.001) = 12.486 (top of tier 2): close 0.514 at the mark
    assert fill.amount == pytest.approx(0.514) and fill.price == 48_050
    assert fill.fee == pytest.approx(123.4885)  # 0.005 * 0.514 * 48050
    assert fill.realized_pnl == pytest.approx(-1_002.3)  # 0.514 * (48050 - 50000)
    assert not fill.closed and event.partial
    assert trade.fees == pytest.approx(325 * 0.514 / 13 + 123.4885)  # entry fee share + fee


# ---------------------------------------------------------------- ccxt shape


def test_to_ccxt_agrees_with_ccxts_binance_trade_parser() -> None:
    core = make()
    long_with_stop(core)
    core.on_price(BTC, 49_500, T0 + 60_000)
    core.on_price(BTC, 48_000, T0 + 120_000)
    fill = core.fills[-1]
    ours = fill.to_ccxt()
    oracle = ccxt.binanceusdm()
    oracle.set_markets([core.market(BTC).to_ccxt()])
    raw = {k: str(v).lower() if isinstance(v, bool) else v for k, v in ours["info"].items()}
    raw["symbol"] = core.market(BTC).id
    parsed = oracle.parse_trade(json.loads(json.dumps(raw)))
    for key in ("id", "order", "timestamp", "datetime", "symbol", "side", "takerOrMaker"):
        assert ours[key] == parsed[key], key
    for key in ("price", "amount", "cost"):
        assert ours[key] == pytest.approx(parsed[key]), key
    assert ours["fee"]["cost"] == pytest.approx(parsed["fee"]["cost"])
    assert ours["fee"]["currency"] == parsed["fee"]["currency"] == "USDT"
    assert ours["info"]["realizedPnl"] == pytest.approx(-100)
    assert ours["info"]["clientOrderId"] is None
    assert ours["info"]["reason"] == "stop"
    entry = core.fills[0].to_ccxt()
    assert entry["info"]["clientOrderId"] == "entry" and entry["cost"] == pytest.approx(5_000)


# ---------------------------------------------------------------- cursors and snapshots


def _churn(core: PaperCore, n: int, t: int) -> None:
    for i in range(n):
        core.on_price(BTC, 50_000 + 10 * i, t + i * 1_000)
        core.create_order(BTC, "market", "buy" if i % 2 == 0 else "sell", 0.01)


def test_fills_since_a_cursor_gives_only_the_new_ones() -> None:
    core = make()
    _churn(core, 3, T0)
    cursor = core.fill_cursor
    assert cursor == 3 and [f.id for f in core.fills_since(0)] == [1, 2, 3]
    assert core.fills_since(cursor) == []
    _churn(core, 2, T0 + 10_000)
    assert [f.id for f in core.fills_since(cursor)] == [4, 5]
    assert core.fills_since(cursor) == core.fills[3:]


def test_snapshot_keeps_fills_funding_and_their_ids() -> None:
    core = make(funding_rate=0.0001)
    _churn(core, 3, T0)
    core.apply_funding(BTC, 0.0002)
    restored = PaperCore.restore(json.loads(json.dumps(core.snapshot(), allow_nan=False)))
    assert restored.fills == core.fills
    assert restored.funding_payments == core.funding_payments
    assert restored.snapshot() == core.snapshot()
    for c in (core, restored):
        _churn(c, 1, T0 + 10_000)
    assert restored.fills[-1] == core.fills[-1] and restored.fills[-1].id == 4


def test_snapshot_without_history_never_reuses_a_fill_id() -> None:
    core = make()
    _churn(core, 3, T0)
    lean = PaperCore.restore(json.loads(json.dumps(core.snapshot(history=False))))
    assert lean.fills == [] and lean.fill_cursor == 3
    _churn(lean, 1, T0 + 10_000)
    assert [f.id for f in lean.fills_since(3)] == [4]


def test_version_1_snapshot_still_restores() -> None:
    core = make()
    _churn(core, 2, T0)
    old = core.snapshot()
    for key in ("fills", "fill_seq", "funding_payments", "funding_seq"):
        del old[key]
    old["version"] = 1
    restored = PaperCore.restore(old)
    assert restored.wallet_balance == core.wallet_balance
    assert restored.trades == core.trades and restored.fills == []
