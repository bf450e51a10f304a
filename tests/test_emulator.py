"""The local exchange speaks Binance USDⓈ-M's REST protocol: signatures, timestamps, endpoints the
real ccxt client uses, Binance's order semantics, injected faults, streams and the command line.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro
import pytest
from ccxt.base.errors import (
    AuthenticationError,
    BadRequest,
    DDoSProtection,
    ExchangeError,
    ExchangeNotAvailable,
    InvalidOrder,
    OperationFailed,
    OrderImmediatelyFillable,
    RequestTimeout,
)
from conftest_live import API_KEY, API_SECRET, BTC, ETH, emulator  # noqa: F401

from bot.emulator import Emulator, Fault
from bot.exchange.live import point_at

REPO = Path(__file__).resolve().parents[1]
SHARED_TIERS = REPO.parent / "shared" / "data" / "binance_leverage_tiers.json"

# Binance's documented signing example (API docs, "SIGNED Endpoint Examples for POST
# /api/v3/order"): this key/secret signs the query below to the signature below.
DOC_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DOC_QUERY = (
    "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
    "&recvWindow=5000&timestamp=1499827319559"
)
DOC_SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
# example 2: part of the parameters in the query string, the rest in the body
DOC_QUERY_PART = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC"
DOC_BODY_PART = "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
DOC_MIXED_SIGNATURE = "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"


def client(emu: Emulator, **config: Any) -> Any:
    """A bare ccxt binanceusdm client pointed at ``emu``."""
    ex = ccxt_async.binanceusdm(
        {
            "apiKey": API_KEY,
            "secret": API_SECRET,
            "enableRateLimit": False,
            "options": {"fetchCurrencies": False},
            **config,
        }
    )
    point_at(ex, emu.url, emu.ws_url)
    return ex


@pytest.fixture
async def cx(emulator: Emulator) -> AsyncIterator[Any]:  # noqa: F811
    ex = client(emulator)
    await ex.load_markets()
    try:
        yield ex
    finally:
        await ex.close()


def sign(params: dict[str, Any], secret: str = API_SECRET) -> str:
    query = urlencode(params)
    return (
        query
        + "&signature="
        + hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    )


async def raw(
    emu: Emulator,
    method: str,
    path: str,
    query: str = "",
    body: str = "",
    key: str | None = API_KEY,
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if key is not None:
        headers["X-MBX-APIKEY"] = key
    url = f"{emu.url}{path}" + (f"?{query}" if query else "")
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, data=body or None, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


# ---------------------------------------------------------------------- authentication


async def doc_emulator() -> Emulator:
    emu = Emulator(
        api_key=DOC_KEY,
        api_secret=DOC_SECRET,
        symbols=[BTC],
        clock=lambda: 1499827319.559 + 1.0,  # one second after the example's timestamp
    )
    await emu.start()
    return emu


async def test_signature_is_checked_as_binance_documents_it() -> None:
    emu = await doc_emulator()
    try:
        # valid signature: authentication passes, then the (spot) symbol is unknown here
        status, body = await raw(
            emu, "POST", "/fapi/v1/order", DOC_QUERY + "&signature=" + DOC_SIGNATURE, key=DOC_KEY
        )
        assert (status, body["code"]) == (400, -1121)
        tampered = DOC_SIGNATURE[:-1] + ("0" if DOC_SIGNATURE[-1] != "0" else "1")
        status, body = await raw(
            emu, "POST", "/fapi/v1/order", DOC_QUERY + "&signature=" + tampered, key=DOC_KEY
        )
        assert (status, body["code"]) == (400, -1022)
        # query string and body are concatenated (no "&" between them) before signing
        status, body = await raw(
            emu,
            "POST",
            "/fapi/v1/order",
            DOC_QUERY_PART,
            DOC_BODY_PART + "&signature=" + DOC_MIXED_SIGNATURE,
            key=DOC_KEY,
        )
        assert body["code"] == -1121
    finally:
        await emu.stop()


async def test_timestamp_must_fall_inside_recv_window(emulator: Emulator) -> None:  # noqa: F811
    now = emulator.now_ms()
    stale = sign({"timestamp": now - 6_000, "recvWindow": 5_000})
    status, body = await raw(emulator, "GET", "/fapi/v3/account", stale)
    assert (status, body["code"]) == (400, -1021)
    future = sign({"timestamp": now + 5_000, "recvWindow": 5_000})
    assert (await raw(emulator, "GET", "/fapi/v3/account", future))[1]["code"] == -1021
    fresh = sign({"timestamp": now, "recvWindow": 5_000})
    status, body = await raw(emulator, "GET", "/fapi/v3/account", fresh)
    assert status == 200 and body["assets"][0]["asset"] == "USDT"


async def test_api_key_is_checked(emulator: Emulator) -> None:  # noqa: F811
    query = sign({"timestamp": emulator.now_ms()})
    assert await raw(emulator, "GET", "/fapi/v3/account", query, key=None) == (
        401,
        {"code": -2014, "msg": "API-key format invalid."},
    )
    status, body = await raw(emulator, "GET", "/fapi/v3/account", query, key="someone-else")
    assert (status, body["code"]) == (401, -2015)


async def test_ccxt_with_a_wrong_secret_gets_an_authentication_error(
    emulator: Emulator,  # noqa: F811
) -> None:
    ex = client(emulator, secret="not-the-secret")
    try:
        await ex.load_markets()  # public: fine
        with pytest.raises(AuthenticationError, match="-1022"):
            await ex.fetch_balance()
    finally:
        await ex.close()


# ---------------------------------------------------------------------- what ccxt reads


async def test_ccxt_loads_markets_with_binance_filters(cx: Any) -> None:
    m = cx.markets[BTC]
    # Binance USDⓈ-M exchangeInfo BTCUSDT: tickSize 0.10, stepSize 0.001, minQty 0.001,
    # MIN_NOTIONAL 100, MARKET_LOT_SIZE maxQty 120
    assert m["id"] == "BTCUSDT" and m["swap"] and m["linear"] and m["settle"] == "USDT"
    assert m["precision"] == {"amount": 0.001, "price": 0.1, "base": 1e-08, "quote": 1e-08}
    assert m["limits"]["amount"]["min"] == 0.001
    assert m["limits"]["cost"]["min"] == 100.0
    assert m["limits"]["market"]["max"] == 120.0
    assert cx.markets[ETH]["precision"]["price"] == 0.01


async def test_ccxt_reads_the_published_leverage_brackets(cx: Any) -> None:
    if not SHARED_TIERS.is_file():
        pytest.skip(f"shared tier snapshot not found at {SHARED_TIERS}")
    published = json.loads(SHARED_TIERS.read_text())[BTC]
    tiers = (await cx.fetch_leverage_tiers([BTC]))[BTC]
    assert len(tiers) == len(published)
    for got, want in zip(tiers, published, strict=True):
        assert got["maintenanceMarginRate"] == want["maintenanceMarginRate"]
        assert got["maxLeverage"] == want["maxLeverage"]
        assert got["minNotional"] == want["minNotional"]
        assert float(got["info"]["cum"]) == float(want["info"]["cum"])


async def test_market_entry_position_and_balance_through_ccxt(
    emulator: Emulator,  # noqa: F811
    cx: Any,
) -> None:
    await cx.set_leverage(5, BTC)
    order = await cx.create_order(BTC, "market", "buy", 0.01)
    # paper fill: last 60000 plus 2 bps adverse slippage = 60012; taker fee 0.05 % of
    # 0.01 * 60012 = 0.30006 USDT
    assert order["status"] == "closed" and order["filled"] == 0.01
    assert order["average"] == pytest.approx(60_012.0)
    positions = await cx.fetch_positions()
    assert [(p["symbol"], p["side"], p["contracts"]) for p in positions] == [(BTC, "long", 0.01)]
    p = positions[0]
    assert p["entryPrice"] == pytest.approx(60_012.0)
    assert p["marginMode"] == "isolated"
    assert p["initialMargin"] == pytest.approx(0.01 * 60_000.0 / 5)  # at the 60000 mark
    balance = await cx.fetch_balance()
    wallet = float(balance["info"]["assets"][0]["walletBalance"])
    assert wallet == pytest.approx(10_000.0 - 0.30006)
    assert (await cx.fetch_mark_price(BTC))["markPrice"] == 60_000.0
    assert (await cx.fetch_ticker(BTC))["last"] == 60_000.0
    assert abs(await cx.fetch_time() - time.time() * 1000) < 5_000


async def test_stops_live_in_the_algo_book(emulator: Emulator, cx: Any) -> None:  # noqa: F811
    await cx.create_order(BTC, "market", "buy", 0.01)
    stop = await cx.create_order(
        BTC,
        "market",
        "sell",
        0.01,
        None,
        {"stopLossPrice": 58_000, "closePosition": True, "workingType": "MARK_PRICE"},
    )
    posted = [r for r in emulator.requests if r.method == "POST" and r.path == "/fapi/v1/algoOrder"]
    assert len(posted) == 1
    sent = posted[0].params
    assert sent["type"] == "STOP_MARKET" and sent["algoType"] == "CONDITIONAL"
    assert sent["triggerPrice"] == "58000" and sent["closePosition"] == "true"
    assert sent["workingType"] == "MARK_PRICE" and "quantity" not in sent
    assert await cx.fetch_open_orders(BTC) == []
    algo = await cx.fetch_open_orders(BTC, None, None, {"trigger": True})
    assert [o["id"] for o in algo] == [stop["id"]]
    assert algo[0]["triggerPrice"] == 58_000.0 and algo[0]["reduceOnly"] is True
    canceled = await cx.cancel_order(stop["id"], BTC, {"trigger": True})
    assert canceled["id"] == stop["id"]
    assert await cx.fetch_open_orders(BTC, None, None, {"trigger": True}) == []


async def test_conditional_types_on_the_plain_order_endpoint_are_refused(
    emulator: Emulator,  # noqa: F811
) -> None:
    query = sign(
        {
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "STOP_MARKET",
            "stopPrice": "58000",
            "closePosition": "true",
            "timestamp": emulator.now_ms(),
        }
    )
    status, body = await raw(emulator, "POST", "/fapi/v1/order", "", query)
    assert (status, body["code"]) == (400, -4120)


async def test_close_position_with_reduce_only_is_refused(cx: Any) -> None:
    await cx.create_order(BTC, "market", "buy", 0.01)
    with pytest.raises(BadRequest, match="-1106"):
        await cx.create_order(
            BTC,
            "market",
            "sell",
            0.01,
            None,
            {"stopLossPrice": 58_000, "closePosition": True, "reduceOnly": True},
        )


async def test_one_close_position_stop_per_direction(cx: Any) -> None:
    await cx.create_order(BTC, "market", "buy", 0.01)
    params = {"stopLossPrice": 58_000, "closePosition": True}
    await cx.create_order(BTC, "market", "sell", 0.01, None, params)
    with pytest.raises(ExchangeError, match="-4130"):
        await cx.create_order(
            BTC, "market", "sell", 0.01, None, {**params, "stopLossPrice": 59_000}
        )
    # a reduce-only stop for a quantity may stand beside it, and so may a take-profit
    await cx.create_order(
        BTC, "market", "sell", 0.01, None, {"stopLossPrice": 59_000, "reduceOnly": True}
    )
    await cx.create_order(
        BTC, "market", "sell", 0.01, None, {"takeProfitPrice": 62_000, "closePosition": True}
    )
    assert len(await cx.fetch_open_orders(BTC, None, None, {"trigger": True})) == 3


async def test_a_stop_that_would_trigger_at_once_is_refused(cx: Any) -> None:
    await cx.create_order(BTC, "market", "buy", 0.01)
    with pytest.raises(OrderImmediatelyFillable):
        await cx.create_order(
            BTC, "market", "sell", 0.01, None, {"stopLossPrice": 61_000, "closePosition": True}
        )


async def test_client_ids_must_be_unique_among_open_orders_only(
    emulator: Emulator,  # noqa: F811
    cx: Any,
) -> None:
    await cx.create_order(BTC, "limit", "buy", 0.01, 50_000, {"clientOrderId": "resting-1"})
    with pytest.raises(InvalidOrder, match="-4116"):
        await cx.create_order(BTC, "limit", "buy", 0.01, 50_000, {"clientOrderId": "resting-1"})
    # like Binance, a filled order's client id can be used again: a blind re-send of a
    # market order that timed out WOULD double the position (hence look-up-before-resend)
    await cx.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "again"})
    await cx.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "again"})
    assert len(emulator.client_ids()["again"]) == 2
    assert emulator.core.position(BTC).amount == pytest.approx(0.02)  # type: ignore[union-attr]


async def test_leverage_must_be_a_whole_number(emulator: Emulator, cx: Any) -> None:  # noqa: F811
    with pytest.raises(BadRequest):
        await cx.set_leverage(2.5, BTC)
    await cx.set_leverage(7, BTC)
    assert emulator.core.leverage(BTC) == 7.0


# ---------------------------------------------------------------------- faults


async def test_rate_limit_fault_answers_429_with_retry_after(
    emulator: Emulator,  # noqa: F811
    cx: Any,
) -> None:
    emulator.inject(Fault("rate_limit", retry_after_s=2))
    with pytest.raises(DDoSProtection, match="429"):
        await cx.create_order(BTC, "market", "buy", 0.01)
    assert cx.last_response_headers["Retry-After"] == "2"
    assert emulator.core.position(BTC) is None  # refused, not processed


async def test_server_error_fault_before_and_after_accepting(
    emulator: Emulator,  # noqa: F811
    cx: Any,
) -> None:
    emulator.inject(Fault("server_error"))
    with pytest.raises(OperationFailed, match="-1001"):
        await cx.create_order(BTC, "market", "buy", 0.01)
    assert emulator.core.position(BTC) is None
    emulator.inject(Fault("server_error", after_accept=True, status=503, code=-1000))
    with pytest.raises(OperationFailed):
        await cx.create_order(BTC, "market", "buy", 0.01)
    assert emulator.core.position(BTC) is not None  # the execution status was "unknown"


async def test_timeout_fault_holds_the_answer_of_an_accepted_order(
    emulator: Emulator,  # noqa: F811
) -> None:
    ex = client(emulator, timeout=800)
    try:
        await ex.load_markets()
        emulator.inject(Fault("timeout", delay_s=30.0))
        with pytest.raises(RequestTimeout):
            await ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "slow"})
        found = await ex.fetch_order("", BTC, {"clientOrderId": "slow"})
        assert found["status"] == "closed" and found["filled"] == 0.01
    finally:
        await ex.close()


async def test_disconnect_fault_drops_the_answer_of_an_accepted_order(
    emulator: Emulator,  # noqa: F811
    cx: Any,
) -> None:
    emulator.inject(Fault("disconnect"))
    with pytest.raises(ExchangeNotAvailable):
        await cx.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "dropped"})
    assert (await cx.fetch_order("", BTC, {"clientOrderId": "dropped"}))["filled"] == 0.01


async def test_reject_fault_refuses_a_stop_with_the_given_code(
    emulator: Emulator,  # noqa: F811
    cx: Any,
) -> None:
    await cx.create_order(BTC, "market", "buy", 0.01)
    emulator.inject(
        Fault(
            "reject", path="/fapi/v1/algoOrder", code=-2021, msg="Order would immediately trigger."
        )
    )
    with pytest.raises(OrderImmediatelyFillable):
        await cx.create_order(
            BTC, "market", "sell", 0.01, None, {"stopLossPrice": 58_000, "closePosition": True}
        )
    assert await cx.fetch_open_orders(BTC, None, None, {"trigger": True}) == []


async def test_partial_fill_fault(emulator: Emulator, cx: Any) -> None:  # noqa: F811
    emulator.inject(Fault("partial_fill", fill_ratio=0.5))
    order = await cx.create_order(BTC, "market", "buy", 0.011)
    # half of 0.011 is 0.0055, floored to the 0.001 step: 0.005 filled, the rest expired
    assert (order["status"], order["amount"], order["filled"]) == ("expired", 0.011, 0.005)
    assert emulator.core.position(BTC).amount == pytest.approx(0.005)  # type: ignore[union-attr]


async def test_open_then_filled_fault(emulator: Emulator, cx: Any) -> None:  # noqa: F811
    emulator.inject(Fault("open_then_filled", polls=2))
    order = await cx.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "later"})
    assert (order["status"], order["filled"]) == ("open", 0.0)
    assert emulator.core.position(BTC) is None
    assert [o["id"] for o in await cx.fetch_open_orders(BTC)] == [order["id"]]
    first = await cx.fetch_order(order["id"], BTC)
    assert first["status"] == "open"
    second = await cx.fetch_order(order["id"], BTC)
    assert (second["id"], second["status"], second["filled"]) == (order["id"], "closed", 0.01)
    assert (await cx.fetch_order("", BTC, {"clientOrderId": "later"}))["status"] == "closed"
    assert emulator.core.position(BTC) is not None


# ---------------------------------------------------------------------- liquidation and streams


async def pro_client(emu: Emulator) -> Any:
    ex = ccxt_pro.binanceusdm(
        {
            "apiKey": API_KEY,
            "secret": API_SECRET,
            "enableRateLimit": False,
            "options": {"fetchCurrencies": False},
        }
    )
    point_at(ex, emu.url, emu.ws_url)
    await ex.load_markets()
    return ex


async def test_mark_price_and_liquidations_stream_through_ccxt_pro(
    emulator: Emulator,  # noqa: F811
) -> None:
    ex = await pro_client(emulator)
    try:
        marks = asyncio.ensure_future(ex.watch_mark_price(BTC))
        liqs = asyncio.ensure_future(ex.watch_liquidations_for_symbols([BTC]))
        await _until(lambda: len(emulator._streams) > 0 and _subscribed(emulator, 2))
        emulator.set_price(BTC, 60_500.0)
        ticker = await asyncio.wait_for(marks, 10)
        assert ticker["symbol"] == BTC and ticker["markPrice"] == 60_500.0
        emulator.emit_liquidation(BTC, "sell", 2.5, 60_100.0)
        found = await asyncio.wait_for(liqs, 10)
        assert [(x["symbol"], x["contracts"], x["price"]) for x in found] == [(BTC, 2.5, 60_100.0)]
    finally:
        await ex.close()


async def test_the_emulator_liquidates_like_paper_and_says_so_on_the_stream(
    emulator: Emulator,  # noqa: F811
) -> None:
    ex = await pro_client(emulator)
    try:
        await ex.set_leverage(20, BTC)
        await ex.create_order(BTC, "market", "buy", 0.1)
        liq_price = float((await ex.fetch_positions())[0]["liquidationPrice"])
        # 20x isolated long at 60012: margin 0.1 * 60012 / 20 = 300.06;
        # liq = (300.06 - 6001.2) / (0.1 * 0.004 - 0.1) = 57240.36 (bracket 1, cum 0)
        assert liq_price == pytest.approx(57_240.36, abs=0.01)
        liqs = asyncio.ensure_future(ex.watch_liquidations_for_symbols([BTC]))
        await _until(lambda: _subscribed(emulator, 1))
        emulator.set_price(BTC, 57_000.0)
        found = await asyncio.wait_for(liqs, 10)
        assert found[0]["symbol"] == BTC and found[0]["contracts"] == 0.1
        assert found[0]["info"]["S"] == "SELL"
        assert await ex.fetch_positions() == []
    finally:
        await ex.close()


def _subscribed(emu: Emulator, n: int) -> bool:
    return sum(len(s.topics) for s in emu._streams) >= n


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------------- dress-rehearsal mode


async def test_control_endpoints_drive_the_market(emulator: Emulator) -> None:  # noqa: F811
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{emulator.url}/_control/price", json={"symbol": BTC, "last": 61_000, "mark": 60_990}
        ) as resp:
            assert (await resp.json())["mark"] == 60_990
        async with session.post(
            f"{emulator.url}/_control/position",
            json={"symbol": BTC, "side": "sell", "amount": 0.01},
        ) as resp:
            assert (await resp.json())["ok"] is True
        async with session.post(
            f"{emulator.url}/_control/fault", json={"kind": "rate_limit", "times": 2}
        ) as resp:
            assert (await resp.json())["kind"] == "rate_limit"
        async with session.get(f"{emulator.url}/_control/state") as resp:
            state = await resp.json()
    assert [(p["symbol"], p["side"]) for p in state["positions"]] == [(BTC, "short")]
    assert emulator.faults[-1].times == 2


async def test_control_state_audits_every_order_and_each_position_stop(
    emulator: Emulator,  # noqa: F811
    cx: Any,
) -> None:
    """A rehearsal can be audited over HTTP: orders with client id and status, stops per
    position (None when a position has none)."""
    await cx.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "entry-1"})
    await cx.create_order(
        BTC,
        "market",
        "sell",
        0.01,
        None,
        {"stopLossPrice": 58_000, "closePosition": True, "clientOrderId": "stop-1"},
    )
    await cx.create_order(ETH, "market", "buy", 0.1, None, {"clientOrderId": "naked-eth"})
    limit = await cx.create_order(ETH, "limit", "buy", 0.1, 2_000.0, {"clientOrderId": "limit-eth"})
    await cx.cancel_order(limit["id"], ETH)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{emulator.url}/_control/state") as resp,
    ):
        state = await resp.json()
    stops = {p["symbol"]: p["stop"] for p in state["positions"]}
    assert stops == {BTC: 58_000.0, ETH: None}
    by_cid = {o["clientOrderId"]: o["status"] for o in state["orders"]}
    assert by_cid == {
        "entry-1": "closed",
        "stop-1": "open",
        "naked-eth": "closed",
        "limit-eth": "canceled",
    }


def test_guardbot_emulator_command_serves_until_stopped(tmp_path: Path) -> None:
    guardbot = Path(sys.executable).parent / "guardbot"
    env = {**os.environ, "GUARDBOT_EXCHANGE__API_KEY": "k", "GUARDBOT_EXCHANGE__API_SECRET": "s"}
    proc = subprocess.Popen(
        [str(guardbot), "emulator", "--port", "0", "--price", f"{ETH}=3000"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "guardbot emulator" in first, proc.stderr.read() if proc.poll() is not None else ""
        url = first.strip().rsplit(" ", 1)[-1]

        async def probe() -> dict[str, Any]:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{url}/fapi/v1/premiumIndex?symbol=ETHUSDT") as resp,
            ):
                data: dict[str, Any] = await resp.json()
                return data

        assert asyncio.run(probe())["markPrice"] == "3000"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_guardbot_emulator_refuses_a_malformed_price() -> None:
    from typer.testing import CliRunner

    from bot.cli import app

    result = CliRunner().invoke(app, ["emulator", "--price", "BTC/USDT:USDT"])
    assert result.exit_code == 2
    assert "SYMBOL=PRICE" in result.output


def test_python_m_bot_emulator_serves_until_stopped(tmp_path: Path) -> None:
    env = {**os.environ, "GUARDBOT_EXCHANGE__API_KEY": "k", "GUARDBOT_EXCHANGE__API_SECRET": "s"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.emulator", "--port", "0", "--price", f"{BTC}=60000"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "guardbot emulator" in first, proc.stderr.read() if proc.poll() is not None else ""
        url = first.strip().rsplit(" ", 1)[-1]

        async def probe() -> dict[str, Any]:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{url}/fapi/v1/premiumIndex?symbol=BTCUSDT") as resp,
            ):
                data: dict[str, Any] = await resp.json()
                return data

        assert asyncio.run(probe())["markPrice"] == "60000"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
