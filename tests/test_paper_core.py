"""PaperCore: orders, fills, fees, slippage, funding, ledger, ordering of events, snapshots.

Expected money figures are worked by hand in each test. BTC/USDT:USDT: tick 0.1, step 0.001,
min amount 0.001, min notional 100, taker 0.0005, maker 0.0002 (bundled Binance values).
"""

from __future__ import annotations

import json
from typing import Any

import ccxt
import pytest

from paper.config import PaperConfig
from paper.core import FUNDING_PERIOD_MS, PaperCore
from paper.markets import load_markets

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
T0 = 1_700_000_100_000  # 2023-11-14 22:15:00 UTC; next funding 2023-11-15 00:00 UTC
NEXT_FUNDING = 1_700_006_400_000


def make(balance: float = 10_000, **cfg: Any) -> PaperCore:
    cfg.setdefault("slippage_bps", 0)
    config = PaperConfig(**cfg)
    core = PaperCore(config, load_markets([BTC, ETH], config), balance)
    core.set_leverage(10, BTC)
    return core


# ---------------------------------------------------------------- order entry and validation


def test_market_order_fills_at_last_with_taker_fee_and_margin() -> None:
    core = make()
    core.on_price(BTC, 50_000, T0)
    order = core.create_order(BTC, "market", "buy", 0.1, params={"clientOrderId": "a1"})
    assert order["status"] == "closed"
    assert order["filled"] == 0.1 and order["remaining"] == 0.0
    assert order["average"] == 50_000
    assert order["fee"] == {"cost": pytest.approx(2.5), "currency": "USDT"}  # 5000 * 0.0005
    assert order["clientOrderId"] == "a1" and order["timestamp"] == T0
    assert order["datetime"] == "2023-11-14T22:15:00.000Z"
    assert core.wallet_balance == pytest.approx(9_997.5)
    # free = wallet - isolated margin 500
    assert core.free_margin == pytest.approx(9_497.5)
    (pos,) = core.positions()
    assert pos["side"] == "long" and pos["contracts"] == 0.1 and pos["entryPrice"] == 50_000
    assert pos["marginMode"] == "isolated" and pos["leverage"] == 10
    assert pos["initialMargin"] == pytest.approx(500)
    assert pos["maintenanceMargin"] == pytest.approx(5_000 * 0.004)


def test_holding_is_the_open_position_side_and_size() -> None:
    core = make()
    core.on_price(BTC, 50_000, T0)
    assert core.holding(BTC) is None
    core.create_order(BTC, "market", "sell", 0.1)
    assert core.holding(BTC) == ("short", 0.1)
    core.create_order(BTC, "market", "buy", 0.04, params={"reduceOnly": True})
    assert core.holding(BTC) == ("short", pytest.approx(0.06))
    core.create_order(BTC, "market", "buy", 0.06, params={"reduceOnly": True})
    assert core.holding(BTC) is None


def test_slippage_bps_and_participation_are_adverse() -> None:
    core = make(slippage_bps=2, participation_coef=0.5)
    core.on_price(BTC, 50_000, T0)
    core.on_candle_volume(BTC, 10.0)
    buy = core.create_order(BTC, "market", "buy", 0.1)
    # 2 bps + 0.5 * 0.1 / 10 = 0.0002 + 0.005 = 0.0052 -> 50000 * 1.0052
    assert buy["average"] == pytest.approx(50_260)
    sell = core.create_order(BTC, "market", "sell", 0.1)
    assert sell["average"] == pytest.approx(49_740)


def test_amount_and_price_rounded_like_ccxt() -> None:
    core = make()
    core.on_price(BTC, 50_000, T0)
    order = core.create_order(BTC, "limit", "buy", 0.0039999, 49_000.06)
    assert order["amount"] == 0.003  # truncated to the 0.001 step
    assert order["price"] == 49_000.1  # rounded to the 0.1 tick
    with pytest.raises(ccxt.InvalidOrder):
        core.create_order(BTC, "market", "buy", 0.0009)  # truncates to 0
    with pytest.raises(ccxt.InvalidOrder):
        core.create_order(BTC, "limit", "buy", 0.001, 49_000)  # 49 USDT < min notional 100


def test_reduce_only_orders_skip_min_notional() -> None:
    core = make()
    core.on_price(BTC, 50_000, T0)
    core.create_order(BTC, "market", "buy", 0.003)
    out = core.create_order(BTC, "market", "sell", 0.001, params={"reduceOnly": True})
    assert out["filled"] == 0.001
    assert core.positions()[0]["contracts"] == pytest.approx(0.002)


def test_duplicate_client_order_id_rejected_and_lookup_by_client_id() -> None:
    core = make()
    core.on_price(BTC, 50_000, T0)
    first = core.create_order(BTC, "limit", "buy", 0.01, 40_000, {"clientOrderId": "x"})
    with pytest.raises(ccxt.InvalidOrder):
        core.create_order(BTC, "limit", "buy", 0.01, 40_000, {"clientOrderId": "x"})
    found = core.fetch_order(None, BTC, {"clientOrderId": "x"})
    assert found["id"] == first["id"]
    assert core.fetch_order(first["id"])["clientOrderId"] == "x"
    with pytest.raises(ccxt.OrderNotFound):
        core.fetch_order("999")


def test_leverage_limits() -> None:
    core = make(1_000_000)
    with pytest.raises(ccxt.InvalidOrder):
        core.set_leverage(126, BTC)  # tier 1 max is 125
    core.set_leverage(100, BTC)
    core.on_price(BTC, 50_000, T0)
    # 1.2 BTC = 60000 notional is tier 2: max 100x, allowed
    core.create_order(BTC, "market", "buy", 1.2)
    # 12 BTC more = 660000 notional, tier 3: max 75x < 100x
    with pytest.raises(ccxt.InvalidOrder):
        core.create_order(BTC, "market", "buy", 12)
    with pytest.raises(ccxt.InvalidOrder):
        core.set_leverage(125, BTC)  # the open position's tier 2 allows 100x at most


def test_insufficient_margin() -> None:
    core = make(1_000)
    core.on_price(BTC, 50_000, T0)
    # 0.2 BTC at 10x needs 1000 margin + 5 fee > 1000
    with pytest.raises(ccxt.InsufficientFunds):
        core.create_order(BTC, "market", "buy", 0.2)
    assert core.positions() == [] and core.wallet_balance == 1_000
    core.create_order(BTC, "market", "buy", 0.19)  # 950 + 4.75
    with pytest.raises(ccxt.InsufficientFunds):
        core.create_order(BTC, "limit", "buy", 0.011, 45_000)  # 49.5 + 0.099 > 45.25 free


def test_trigger_that_would_fire_at_once_is_refused() -> None:
    core = make()
    core.on_price(BTC, 50_000, T0)
    core.create_order(BTC, "market", "buy", 0.1)
    with pytest.raises(ccxt.OrderImmediatelyFillable):
        core.create_order(BTC, "market", "sell", 0.1, None, {"stopLossPrice": 50_100})
    with pytest.raises(ccxt.OrderImmediatelyFillable):
        core.create_order(BTC, "market", "sell", 0.1, None, {"takeProfitPrice": 49_900})


def test_margin_mode_change_refused_with_position() -> None:
    core = make()
    core.on_price(BTC, 50_000, T0)
    core.set_margin_mode("cross", BTC)
    core.create_order(BTC, "market", "buy", 0.1)
    with pytest.raises(ccxt.OperationRejected):
        core.set_margin_mode("isolated", BTC)
    assert core.positions()[0]["marginMode"] == "cross"


def test_unknown_symbol_is_bad_symbol() -> None:
    with pytest.raises(ccxt.BadSymbol):
        make().create_order("DOGE/USDT:USDT", "market", "buy", 1)


# ---------------------------------------------------------------- fills on the price path


def test_resting_limit_fills_as_maker_at_its_price() -> None:
    core = make()
    core.on_price(BTC, 50_000, T0)
    order = core.create_order(BTC, "limit", "buy", 0.1, 49_500)
    assert order["status"] == "open"
    core.on_price(BTC, 49_600, T0 + 60_000)
    assert core.fetch_order(order["id"])["status"] == "open"
    core.on_price(BTC, 49_000, T0 + 120_000)  # passes through 49500
    filled = core.fetch_order(order["id"])
    assert filled["status"] == "closed" and filled["average"] == 49_500
    assert filled["fee"]["cost"] == pytest.approx(4_950 * 0.0002)  # maker
    assert filled["lastTradeTimestamp"] == T0 + 120_000


def test_marketable_limit_is_taker_capped_at_its_price() -> None:
    core = make(slippage_bps=10)
    core.on_price(BTC, 50_000, T0)
    order = core.create_order(BTC, "limit", "buy", 0.1, 50_020)
    # 50000 * 1.001 = 50050 would cross the limit: filled at 50020, taker fee
    assert order["status"] == "closed" and order["average"] == 50_020
    assert order["fee"]["cost"] == pytest.approx(5_002 * 0.0005)


def test_stop_fills_at_stop_price_when_crossed_between_prices() -> None:
    core = make(slippage_bps=2)
    core.on_price(BTC, 50_000, T0)
    core.create_order(BTC, "market", "buy", 0.1)
    stop = core.create_order(
        BTC, "market", "sell", 0.1, None, {"stopLossPrice": 49_000, "reduceOnly": True}
    )
    assert stop["type"] == "stop_market" and stop["stopLossPrice"] == 49_000
    core.on_price(BTC, 49_500, T0 + 60_000)  # first price after arming: not beyond
    core.on_price(BTC, 48_000, T0 + 120_000)
    done = core.fetch_order(stop["id"])
    assert done["status"] == "closed"
    assert done["average"] == pytest.approx(49_000 * (1 - 0.0002))
    trade = core.trades[-1]
    assert trade.reason == "stop" and trade.amount == 0.1
    assert core.positions() == []


def test_stop_gapped_through_fills_at_the_price_after_the_gap() -> None:
    core = make(slippage_bps=2)
    core.on_price(BTC, 50_000, T0)
    core.create_order(BTC, "market", "buy", 0.1)
    stop = core.create_order(
        BTC, "market", "sell", 0.1, None, {"stopLossPrice": 49_000, "reduceOnly": True}
    )
    core.on_price(BTC, 48_000, T0 + 60_000, gap=True)  # the next candle opens below the stop
    # 48000 * (1 - 0.0002) = 47990.4: the gap price, slipped
    assert core.fetch_order(stop["id"])["average"] == pytest.approx(47_990.4)


def test_stop_armed_at_the_open_and_crossed_by_the_walk_fills_at_the_stop() -> None:
    # The stop goes on at the candle's open; the walk's next point (the low, 48000) is past it.
    # The walk travels through 49000, so the stop fills there: 49000 * (1 - 0.0002) = 48990.2,
    # not at the low (48000 * 0.9998 = 47990.4) as if the price had gapped.
    core = make(slippage_bps=2)
    core.on_price(BTC, 50_000, T0, gap=True)
    core.create_order(BTC, "market", "buy", 0.1)
    stop = core.create_order(
        BTC, "market", "sell", 0.1, None, {"stopLossPrice": 49_000, "reduceOnly": True}
    )
    core.on_price(BTC, 48_000, T0 + 100_000)
    assert core.fetch_order(stop["id"])["average"] == pytest.approx(48_990.2)
    # loss: 0.1 * (50000 * 1.0002 - 48990.2) = 0.1 * 1019.8 = 101.98 before fees
    assert core.trades[-1].pnl == pytest.approx(-101.98)


def test_take_profit_and_trigger_on_last_price() -> None:
    core = make(trigger_price="last")
    core.on_price(BTC, 50_000, T0, mark=50_000)
    core.create_order(BTC, "market", "sell", 0.1)
    tp = core.create_order(
        BTC, "market", "buy", 0.1, None, {"takeProfitPrice": 48_000, "reduceOnly": True}
    )
    core.on_price(BTC, 48_500, T0 + 60_000, mark=47_900)  # mark crossed, last did not
    assert core.fetch_order(tp["id"])["status"] == "open"
    core.on_price(BTC, 47_950, T0 + 120_000, mark=48_100)
    filled = core.fetch_order(tp["id"])
    assert filled["status"] == "closed" and filled["average"] == 48_000
    assert core.trades[-1].reason == "take_profit"
    assert core.trades[-1].pnl == pytest.approx(0.1 * 2_000)


def test_working_type_param_overrides_config() -> None:
    core = make(trigger_price="last")
    core.on_price(BTC, 50_000, T0)
    core.create_order(BTC, "market", "buy", 0.1)
    stop = core.create_order(
        BTC,
        "market",
        "sell",
        0.1,
        None,
        {"stopLossPrice": 49_000, "reduceOnly": True, "workingType": "MARK_PRICE"},
    )
    core.on_price(BTC, 49_500, T0 + 60_000, mark=48_900)
    assert core.fetch_order(stop["id"])["status"] == "closed"


def test_stop_before_liquidation_when_the_path_meets_it_first() -> None:
    core = make()
    core.on_price(BTC, 50_000, T0)
    core.create_order(BTC, "market", "buy", 0.1)  # liquidation at 45180.72 (10x isolated)
    core.create_order(
        BTC, "market", "sell", 0.1, None, {"stopLossPrice": 46_000, "reduceOnly": True}
    )
    core.on_price(BTC, 49_000, T0 + 60_000)
    core.on_price(BTC, 44_000, T0 + 120_000)  # crosses the stop, then the liquidation price
    assert core.liquidations == []
    assert core.trades[-1].exit_price == pytest.approx(46_000)


def test_gap_through_stop_and_liquidation_liquidates() -> None:
    core = make()
    core.on_price(BTC, 50_000, T0)
    core.create_order(BTC, "market", "buy", 0.1)
    stop = core.create_order(
        BTC, "market", "sell", 0.1, None, {"stopLossPrice": 46_000, "reduceOnly": True}
    )
    core.on_price(BTC, 44_000, T0 + 60_000, gap=True)  # a gap past both
    assert len(core.liquidations) == 1
    assert core.fetch_order(stop["id"])["status"] == "canceled"
    assert core.trades[-1].reason == "liquidation"


def test_stop_beyond_liquidation_is_too_late() -> None:
    core = make()
    core.on_price(BTC, 50_000, T0)
    core.create_order(BTC, "market", "buy", 0.1)
    core.create_order(
        BTC, "market", "sell", 0.1, None, {"stopLossPrice": 45_000, "reduceOnly": True}
    )
    core.on_price(BTC, 49_000, T0 + 60_000)
    core.on_price(BTC, 44_000, T0 + 120_000)
    assert len(core.liquidations) == 1 and core.open_orders() == []


def test_reduce_only_never_flips_and_close_position_closes_all() -> None:
    core = make()
    core.on_price(BTC, 50_000, T0)
    core.create_order(BTC, "market", "buy", 0.1)
    out = core.create_order(BTC, "market", "sell", 0.5, params={"reduceOnly": True})
    assert out["filled"] == pytest.approx(0.1)
    assert core.positions() == []
    with pytest.raises(ccxt.InvalidOrder):
        core.create_order(BTC, "market", "sell", 0.1, params={"reduceOnly": True})
    core.create_order(BTC, "market", "sell", 0.2)
    stop = core.create_order(
        BTC, "market", "buy", 0, None, {"stopLossPrice": 51_000, "closePosition": True}
    )
    assert stop["amount"] == 0 and stop["reduceOnly"] is True
    core.on_price(BTC, 50_500, T0 + 60_000)
    core.on_price(BTC, 51_500, T0 + 120_000)
    assert core.fetch_order(stop["id"])["filled"] == pytest.approx(0.2)
    assert core.positions() == []


def test_non_reduce_order_flips_one_way_position() -> None:
    core = make()
    core.on_price(BTC, 50_000, T0)
    core.create_order(BTC, "market", "buy", 0.1)
    core.create_order(BTC, "market", "sell", 0.3)
    (pos,) = core.positions()
    assert pos["side"] == "short" and pos["contracts"] == pytest.approx(0.2)
    assert core.trades[-1].amount == pytest.approx(0.1)


def test_adding_averages_entry_and_partial_close_books_pro_rata_fees() -> None:
    core = make(taker_fee=0.001)
    core.on_price(BTC, 50_000, T0)
    core.create_order(BTC, "market", "buy", 0.1)  # fee 5
    core.on_price(BTC, 52_000, T0 + 60_000)
    core.create_order(BTC, "market", "buy", 0.1)  # fee 5.2
    (pos,) = core.positions()
    assert pos["entryPrice"] == pytest.approx(51_000)  # (5000 + 5200) / 0.2
    assert pos["info"]["adds"] == 1
    core.create_order(BTC, "market", "sell", 0.05, params={"reason": "guard", "tag": "cap"})
    trade = core.trades[-1]
    # pnl 0.05 * (52000 - 51000) = 50; fees: a quarter of 10.2 + 0.05 * 52000 * 0.001 = 5.15
    assert trade.pnl == pytest.approx(50)
    assert trade.fees == pytest.approx(2.55 + 2.6)
    assert trade.reason == "guard" and trade.tag == "cap"


def test_reduce_only_orders_cancelled_when_flat() -> None:
    core = make()
    core.on_price(BTC, 50_000, T0)
    core.create_order(BTC, "market", "buy", 0.1)
    stop = core.create_order(
        BTC, "market", "sell", 0.1, None, {"stopLossPrice": 49_000, "reduceOnly": True}
    )
    tp = core.create_order(
        BTC, "market", "sell", 0.1, None, {"takeProfitPrice": 52_000, "reduceOnly": True}
    )
    core.on_price(BTC, 51_000, T0 + 60_000)
    core.on_price(BTC, 52_500, T0 + 120_000)
    assert core.fetch_order(tp["id"])["status"] == "closed"
    assert core.fetch_order(stop["id"])["status"] == "canceled"
    assert core.open_orders() == []


def test_cancel_order_releases_reserved_margin() -> None:
    core = make()
    core.on_price(BTC, 50_000, T0)
    free = core.free_margin
    order = core.create_order(BTC, "limit", "buy", 0.1, 40_000)
    # reserved: 4000 / 10 + 4000 * 0.0002 = 400.8
    assert core.free_margin == pytest.approx(free - 400.8)
    core.cancel_order(order["id"])
    assert core.free_margin == pytest.approx(free)
    with pytest.raises(ccxt.OrderNotFound):
        core.cancel_order(order["id"])


def test_guards_view_of_position_and_account() -> None:
    core = make()
    core.on_price(BTC, 50_000, T0)
    core.create_order(BTC, "market", "buy", 0.1)
    core.create_order(
        BTC, "market", "sell", 0.1, None, {"stopLossPrice": 49_000, "reduceOnly": True}
    )
    acct = core.account()
    pos = acct.positions[BTC]
    assert pos.side == "long" and pos.stop_price == 49_000 and pos.take_profit is None
    assert pos.margin == pytest.approx(500) and pos.opened_at == T0 / 1000
    assert acct.wallet_balance == core.wallet_balance


# ---------------------------------------------------------------- funding


def test_auto_funding_at_the_8h_boundary_with_series_and_default() -> None:
    core = make(funding_rate=0.0001)
    core.on_price(BTC, 50_000, T0)
    core.create_order(BTC, "market", "buy", 0.1)  # wallet 9997.5
    core.set_funding_rates(BTC, [(NEXT_FUNDING + 17, 0.0003)])  # a few ms late, as in data
    core.on_price(BTC, 50_000, NEXT_FUNDING - 1)
    assert core.total_funding == 0
    core.on_price(BTC, 51_000, NEXT_FUNDING)
    # long pays 0.1 * 51000 * 0.0003 = 1.53
    assert core.total_funding == pytest.approx(-1.53)
    core.on_price(BTC, 51_000, NEXT_FUNDING + FUNDING_PERIOD_MS)
    # no series value: the configured 0.0001 -> 0.51
    assert core.total_funding == pytest.approx(-1.53 - 0.51)
    assert core.wallet_balance == pytest.approx(9_997.5 - 2.04)
    core.create_order(BTC, "market", "sell", 0.1)
    assert core.trades[-1].funding == pytest.approx(-2.04)


def test_short_receives_positive_funding() -> None:
    core = make()
    core.on_price(BTC, 50_000, T0)
    core.create_order(BTC, "market", "sell", 0.1)
    assert core.apply_funding(BTC, 0.0001, 50_000) == pytest.approx(0.5)


def test_no_funding_without_position() -> None:
    core = make()
    core.on_price(BTC, 50_000, NEXT_FUNDING)
    assert core.total_funding == 0


# ---------------------------------------------------------------- ledger identities


def test_wallet_identity_after_mixed_activity() -> None:
    core = make(slippage_bps=3)
    core.on_price(BTC, 50_000, T0)
    core.create_order(BTC, "market", "buy", 0.1)
    core.on_price(BTC, 50_700, T0 + 60_000)
    core.create_order(BTC, "market", "sell", 0.15)
    core.apply_funding(BTC, 0.0002)
    core.on_price(BTC, 49_900, T0 + 120_000)
    core.create_order(BTC, "market", "buy", 0.05, params={"reduceOnly": True})
    assert core.positions() == []
    pnl = sum(t.pnl for t in core.trades)
    assert core.wallet_balance == pytest.approx(
        10_000 + pnl - core.total_fees + core.total_funding, abs=1e-9
    )
    assert sum(t.fees for t in core.trades) == pytest.approx(core.total_fees)
    assert core.equity() == pytest.approx(core.wallet_balance)


# ---------------------------------------------------------------- determinism and snapshots


def _session(core: PaperCore) -> None:
    prices = [50_000, 50_400, 49_100, 48_700, 49_900, 51_200, 47_000, 45_500, 46_300]
    core.on_price(BTC, prices[0], T0)
    core.on_price(ETH, 2_500, T0)
    core.create_order(BTC, "market", "buy", 0.2, params={"clientOrderId": "e1"})
    core.create_order(
        BTC, "market", "sell", 0.2, None, {"stopLossPrice": 46_000, "reduceOnly": True}
    )
    core.create_order(BTC, "limit", "buy", 0.1, 48_800)
    core.create_order(ETH, "market", "sell", 1)
    for i, p in enumerate(prices[1:], 1):
        core.on_price(BTC, p, T0 + i * 3_600_000)
        core.on_price(ETH, 2_500 + 10 * i, T0 + i * 3_600_000)


def test_snapshot_is_json_safe_and_restores_identically() -> None:
    a = make()
    _session(a)
    snap = a.snapshot()
    restored = PaperCore.restore(json.loads(json.dumps(snap, allow_nan=False)))
    assert restored.snapshot() == snap
    for core in (a, restored):
        core.on_price(ETH, 2_900, T0 + 20 * 3_600_000)
        core.create_order(ETH, "market", "buy", 1, params={"reduceOnly": True})
        core.create_order(BTC, "market", "buy", 0.01)
    assert restored.snapshot() == a.snapshot()
    with pytest.raises(ccxt.InvalidOrder):
        restored.create_order(BTC, "market", "buy", 0.01, params={"clientOrderId": "e1"})


def test_same_inputs_same_result() -> None:
    a, b = make(), make()
    _session(a)
    _session(b)
    assert a.snapshot() == b.snapshot()
    assert a.trades  # the session did close something


# ---------------------------------------------------------------- speed


def test_entry_stop_opens_and_is_rejected_without_margin_at_trigger() -> None:
    core = make(1_000)
    core.on_price(BTC, 50_000, T0)
    breakout = core.create_order(BTC, "market", "buy", 0.1, None, {"triggerPrice": 51_000})
    assert breakout["type"] == "stop_market" and breakout["reduceOnly"] is False
    core.on_price(BTC, 50_500, T0 + 60_000)
    core.on_price(BTC, 51_200, T0 + 120_000)
    assert core.fetch_order(breakout["id"])["average"] == 51_000
    assert core.positions()[0]["contracts"] == 0.1
    # a second breakout order needs 0.2 * 52000 / 10 = 1040 margin: more than is free
    second = core.create_order(BTC, "market", "buy", 0.2, None, {"triggerPrice": 52_000})
    core.on_price(BTC, 52_100, T0 + 180_000)
    assert core.fetch_order(second["id"])["status"] == "rejected"
    assert core.positions()[0]["contracts"] == 0.1
