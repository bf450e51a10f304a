"""The venue layer: each exchange's parameters, amounts, set-up calls and refusal codes.

Binance's requests are pinned to what the bot sent before the venues were split (byte for
byte); Bybit's and OKX's are checked against what ccxt 4.5's ``bybit.py`` / ``okx.py`` need
(see their module docstrings); the end-to-end proof through the real ccxt clients and the
emulators is in tests/test_emulator_venues.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from ccxt.base.errors import BadRequest, InvalidOrder

from bot.exchange.shapes import closes_position, market_rules, order_role, wallet_balance
from bot.exchange.venue import (
    BinanceVenue,
    BybitVenue,
    OkxVenue,
    OrderSpec,
    PaperVenue,
    SetupCall,
    venue_for,
)
from bot.trading.planning import covers
from paper.venues import ccxt_tier_entries

STOP = OrderSpec("stop", "BTC/USDT:USDT", "sell", 0.5, trigger=59_000.0, close_position=True)
PARTIAL_STOP = OrderSpec("stop", "BTC/USDT:USDT", "sell", 0.5, trigger=59_000.0, reduce_only=True)
TAKE = OrderSpec("take_profit", "BTC/USDT:USDT", "sell", 0.5, trigger=65_000.0, close_position=True)
ENTRY = OrderSpec("entry", "BTC/USDT:USDT", "buy", 0.5)
LIMIT = OrderSpec("entry", "BTC/USDT:USDT", "buy", 0.5, type="limit", price=60_000.0)
EXIT = OrderSpec("exit", "BTC/USDT:USDT", "sell", 0.25, reduce_only=True, reason="guard", tag="x")
OKX_ETH: dict[str, Any] = {
    "symbol": "ETH/USDT:USDT",
    "contractSize": 0.1,
    "precision": {"amount": 0.01, "price": 0.01},
    "limits": {"amount": {"min": 0.01, "max": None}, "cost": {"min": None}},
    "taker": 0.0005,
    "maker": 0.0002,
}


def test_venue_for_each_exchange() -> None:
    assert type(venue_for("binanceusdm")) is BinanceVenue
    assert type(venue_for("paper")) is PaperVenue
    assert type(venue_for("bybit")) is BybitVenue
    assert type(venue_for("okx")) is OkxVenue
    assert type(venue_for("kraken")) is BinanceVenue  # unknown ids keep Binance's, as before


def test_binance_requests_are_unchanged() -> None:
    v = BinanceVenue()
    got = [v.request(s) for s in (STOP, PARTIAL_STOP, TAKE, ENTRY, LIMIT, EXIT)]
    assert [(r.type, r.side, r.amount, r.price, r.params) for r in got] == [
        (
            "market",
            "sell",
            0.5,
            None,
            {"stopLossPrice": 59_000.0, "workingType": "MARK_PRICE", "closePosition": True},
        ),
        (
            "market",
            "sell",
            0.5,
            None,
            {"stopLossPrice": 59_000.0, "workingType": "MARK_PRICE", "reduceOnly": True},
        ),
        (
            "market",
            "sell",
            0.5,
            None,
            {"takeProfitPrice": 65_000.0, "workingType": "MARK_PRICE", "closePosition": True},
        ),
        ("market", "buy", 0.5, None, {}),
        ("limit", "buy", 0.5, 60_000.0, {}),
        ("market", "sell", 0.25, None, {"reduceOnly": True}),
    ]
    assert list(got[0].params) == ["stopLossPrice", "workingType", "closePosition"]
    assert v.trigger_params() == {"trigger": True}
    assert v.cancel_params({"triggerPrice": 59_000.0}) == {"trigger": True}
    assert v.cancel_params({"price": 1.0}) == {}
    assert v.lookup_params("gbs1", True) == {"clientOrderId": "gbs1", "trigger": True}
    assert v.client_id_params(STOP, "gbs1") == {"clientOrderId": "gbs1"}
    assert v.setup_calls("BTC/USDT:USDT", "isolated", 5) == [
        SetupCall("set_margin_mode", ("isolated", "BTC/USDT:USDT")),
        SetupCall("set_leverage", (5, "BTC/USDT:USDT")),
    ]
    assert v.to_contracts(0.123, {"contractSize": 1.0}) == 0.123
    paper = PaperVenue().request(EXIT)
    assert paper.params == {"reduceOnly": True, "reason": "guard", "tag": "x"}


def test_bybit_requests() -> None:
    v = BybitVenue()
    stop = v.request(STOP)
    assert stop.params == {
        "positionIdx": 0,
        "stopLossPrice": 59_000.0,
        "triggerBy": "MarkPrice",
        "reduceOnly": True,
        "closeOnTrigger": True,
    }
    assert stop.amount == 0.5  # the position's size: ccxt cannot send qty 0
    assert "workingType" not in stop.params and "closePosition" not in stop.params
    take = v.request(TAKE).params
    assert take["takeProfitPrice"] == 65_000.0 and take["triggerBy"] == "MarkPrice"
    assert v.request(PARTIAL_STOP).params.get("closeOnTrigger") is None
    assert v.request(ENTRY).params == {"positionIdx": 0}
    assert v.request(EXIT).params == {"positionIdx": 0, "reduceOnly": True}
    assert v.trigger_params() == {"trigger": True}
    assert v.cancel_params({"triggerPrice": 1.0}) == {}  # trigger is spot-only in ccxt's cancel
    assert v.lookup_params("gbs1", True) == {
        "orderLinkId": "gbs1",
        "acknowledged": True,
        "trigger": True,
    }
    assert v.account_setup_calls() == [SetupCall("set_position_mode", (False,))]
    assert v.client_options()["fetchMarkets"] == {"types": ["linear"]}


def test_okx_requests_count_contracts_and_carry_the_margin_mode() -> None:
    v = OkxVenue()
    spec = OrderSpec("entry", "ETH/USDT:USDT", "buy", 1.234)
    req = v.request(spec, OKX_ETH, "isolated")
    assert req.amount == pytest.approx(12.34)  # 0.1 ETH a contract, lot 0.01 contract
    assert req.params == {"marginMode": "isolated", "positionSide": "net"}
    stop = v.request(
        OrderSpec("stop", "ETH/USDT:USDT", "sell", 1.0, trigger=1_900.0, close_position=True),
        OKX_ETH,
        "cross",
    )
    assert stop.amount == pytest.approx(10.0)
    assert stop.params == {
        "marginMode": "cross",
        "positionSide": "net",
        "stopLossPrice": 1_900.0,
        "slTriggerPxType": "mark",
        "reduceOnly": True,
        "closeFraction": "1",
    }
    take = v.request(
        OrderSpec("take_profit", "ETH/USDT:USDT", "sell", 1.0, trigger=2_100.0), OKX_ETH, "cross"
    )
    assert take.params["tpTriggerPxType"] == "mark" and "closeFraction" not in take.params
    with pytest.raises(ValueError, match="market"):
        v.request(spec)
    with pytest.raises(ValueError, match="margin mode"):
        v.request(spec, OKX_ETH)
    algo = OrderSpec("stop", "ETH/USDT:USDT", "sell", 1.0, trigger=1.0)
    assert v.client_id_params(algo, "a") == {"algoClOrdId": "a"}
    assert v.client_id_params(spec, "a") == {"clientOrderId": "a"}
    assert v.trigger_params() == {"trigger": True, "ordType": "conditional,oco"}
    assert v.cancel_params({"info": {"algoId": "7"}}) == {"trigger": True}
    assert v.cancel_params({"info": {"ordId": "7"}, "price": 1.0}) == {}
    assert v.lookup_params("gbs1", True) == {"clientOrderId": "gbs1", "trigger": True}
    assert v.setup_calls("ETH/USDT:USDT", "isolated", 5) == [
        SetupCall("set_leverage", (5, "ETH/USDT:USDT"), {"marginMode": "isolated"})
    ]


def test_okx_contracts_round_down_to_the_lot_and_convert_back() -> None:
    v = OkxVenue()
    assert v.to_contracts(0.3, OKX_ETH) == 3.0
    assert v.to_contracts(0.30000000000000004, OKX_ETH) == 3.0
    assert v.to_contracts(0.0009, OKX_ETH) == 0.0  # below one lot (0.001 ETH)
    assert v.from_contracts(12.34, OKX_ETH) == 1.234
    order = {"amount": 10.0, "filled": 2.5, "remaining": 7.5, "price": 2_000.0}
    assert v.order_in_base(order, OKX_ETH) == {
        "amount": 1.0,
        "filled": 0.25,
        "remaining": 0.75,
        "price": 2_000.0,
    }
    assert BinanceVenue().order_in_base(order, {"contractSize": 1}) == order


@pytest.mark.parametrize(
    ("venue", "text", "kind"),
    [
        (
            BinanceVenue(),
            'binanceusdm {"code":-2021,"msg":"Order would immediately trigger."}',
            "would_trigger_immediately",
        ),
        (
            BinanceVenue(),
            'binanceusdm {"code":-2022,"msg":"ReduceOnly Order is rejected."}',
            "reduce_only_rejected",
        ),
        (
            BybitVenue(),
            'bybit {"retCode":110093,"retMsg":"expect Falling, but trigger_price'
            '[59000] >= current[58000]","result":{}}',
            "would_trigger_immediately",
        ),
        (
            BybitVenue(),
            'bybit {"retCode":110094,"retMsg":"Order notional value below the lower limit"}',
            "min_notional",
        ),
        (
            BybitVenue(),
            'bybit {"retCode":110017,"retMsg":"Reduce-only rule not satisfied"}',
            "reduce_only_rejected",
        ),
        (
            BybitVenue(),
            'bybit {"retCode":110043,"retMsg":"Set leverage not modified"}',
            "no_change",
        ),
        (
            OkxVenue(),
            'okx {"code":"1","data":[{"sCode":"51278","sMsg":"SL trigger price can not'
            ' be lower than the last price"}],"msg":""}',
            "would_trigger_immediately",
        ),
        (
            OkxVenue(),
            'okx {"code":"1","data":[{"sCode":"51205","sMsg":"Reduce-Only is not '
            'available"}],"msg":""}',
            "reduce_only_rejected",
        ),
        (
            OkxVenue(),
            'okx {"code":"59000","data":[],"msg":"Your settings failed as you have '
            'positions or open orders"}',
            "position_mode",
        ),
        (
            OkxVenue(),
            'okx {"code":"1","data":[{"sCode":"51121","sMsg":"Order count should be '
            'the integer multiples of the lot size"}],"msg":""}',
            "min_notional",
        ),
    ],
)
def test_refusals_are_classified(venue: Any, text: str, kind: str) -> None:
    assert venue.classify(InvalidOrder(text)) == kind


def test_unknown_refusals_are_not_classified() -> None:
    assert BybitVenue().classify(BadRequest('bybit {"retCode":10001,"retMsg":"params"}')) is None
    assert OkxVenue().classify(BadRequest("okx timeout")) is None


def test_covers_counts_contracts() -> None:
    stop = {"amount": 5.0, "info": {}}  # 5 OKX contracts of 0.1 ETH = 0.5 ETH
    assert not covers(stop, 1.0, contract_size=0.1)
    assert covers(stop, 0.5, contract_size=0.1)
    assert covers(stop, 1.0)  # read as base units: the old behaviour
    assert covers({"info": {"closeFraction": "1"}}, 100.0, contract_size=0.1)


def test_okx_algo_orders_read_as_stops_and_take_profits() -> None:
    whole = {
        "side": "sell",
        "type": "conditional",
        "reduceOnly": True,
        "stopLossPrice": 1_900.0,
        "takeProfitPrice": None,
        "triggerPrice": None,
        "info": {"algoId": "1", "closeFraction": "1", "ordType": "conditional"},
    }
    assert closes_position(whole) and order_role(whole) == "stop"
    take = dict(whole, stopLossPrice=None, takeProfitPrice=2_100.0)
    assert order_role(take) == "take_profit"


def test_okx_wallet_is_the_cash_balance() -> None:
    balance = {
        "info": {
            "code": "0",
            "data": [{"details": [{"ccy": "USDT", "cashBal": "1000", "eq": "1200"}]}],
        },
        "USDT": {"total": 1200.0},
    }
    assert wallet_balance(balance) == 1000.0
    assert wallet_balance({"info": {}, "USDT": {"total": 7.0}}) == 7.0


def test_market_rules_per_venue() -> None:
    okx = market_rules(OKX_ETH, ccxt_tier_entries("okx", "ETH/USDT:USDT"), venue="okx")
    assert okx.model == "okx" and okx.amount_step == 0.001 and okx.min_amount == 0.001
    assert okx.tiers[0].max_notional == 300.0  # 3,000 contracts of 0.1 ETH
    assert okx.liquidation_fee_rate == okx.taker_fee == 0.0005
    bybit_market = {
        "symbol": "BTC/USDT:USDT",
        "precision": {"amount": 0.001, "price": 0.5},
        "limits": {"amount": {"min": 0.001}},
        "taker": 0.00055,
        "maker": 0.0002,
    }
    bybit = market_rules(bybit_market, ccxt_tier_entries("bybit", "BTC/USDT:USDT"), venue="bybit")
    assert bybit.model == "bybit" and bybit.liquidation_fee_rate == 0.0
    assert bybit.tiers[1].maint_amount == 1_200.0  # Bybit's published mmDeduction
    binance = market_rules(bybit_market, ccxt_tier_entries("bybit", "BTC/USDT:USDT"))
    assert binance.model == "binance"


def test_what_the_running_bot_asks_each_venue() -> None:
    """The venue answers the executor, the live adapter and the recorder: Binance's answers
    change nothing (no market needed, no extra look-up or mark parameters)."""
    binance, bybit, okx = BinanceVenue(), BybitVenue(), OkxVenue()
    assert not binance.needs_market and bybit.needs_market and okx.needs_market
    assert binance.fetch_order_params() == {} and binance.mark_params() == {}
    assert bybit.fetch_order_params() == {"acknowledged": True}  # ccxt refuses without it
    assert okx.mark_params() == {"instType": "SWAP"}  # OKX: 50014 without it
    assert (binance.trades_page, bybit.trades_page, okx.trades_page) == (1000, 100, 100)
    assert bybit.account_wide_margin and not okx.account_wide_margin
    assert not binance.account_wide_margin


def test_okx_orders_and_fills_in_base_units_and_the_algo_client_id() -> None:
    okx = OkxVenue()
    # ccxt's parse_order reads clOrdId only; an algo order's client id is algoClOrdId
    algo = {
        "id": "7",
        "clientOrderId": None,
        "amount": 12.5,
        "filled": 0.0,
        "remaining": 12.5,
        "info": {"algoId": "7", "algoClOrdId": "gbs1"},
    }
    got = okx.order_in_base(algo, OKX_ETH)
    assert got["clientOrderId"] == "gbs1" and got["amount"] == pytest.approx(1.25)
    assert algo["amount"] == 12.5  # the ccxt dict is left alone
    trade = {"id": "1", "amount": 3.0, "price": 2_000.0, "info": {"clOrdId": "gbe1"}}
    assert okx.trade_in_base(trade, OKX_ETH)["amount"] == pytest.approx(0.3)
    assert okx.trade_client_id(trade) == "gbe1"
    assert BinanceVenue().trade_in_base(trade, None)["amount"] == 3.0
    bybit_fill = {"id": "x", "amount": 0.01, "info": {"orderLinkId": "gbe2"}}
    assert BybitVenue().trade_client_id(bybit_fill) == "gbe2"
    assert BybitVenue().trade_in_base(bybit_fill, {"contractSize": 1})["amount"] == 0.01
