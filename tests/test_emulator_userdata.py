"""The local exchange speaks Binance USDⓈ-M's user-data stream and the REST calls that reconcile
fills: the listen key, ``watch_orders`` / ``watch_my_trades`` / ``watch_balance`` /
``watch_positions`` of the real ccxt.pro client (pointed at it by ``point_at``, as the bot does),
the exchange's liquidation and ADL orders, ``fetch_my_trades`` and its refusals, order history
with final statuses, and a dropped stream the bot must reconnect to.

Fees and PnL are checked against arithmetic on the reported prices (taker rate from the paper
markets, PnL = (exit - entry) x quantity), with no slippage so entry and exit prices are exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from ccxt.base.errors import BadRequest, NetworkError
from conftest_live import API_KEY, API_SECRET, BTC, ETH, make_live

from bot.emulator import Emulator
from paper.config import PaperConfig
from paper.markets import load_markets

TAKER = load_markets([BTC])[BTC].rules.taker_fee
MAKER = load_markets([BTC])[BTC].rules.maker_fee
WEEK_MS = 7 * 86_400_000


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def new_emulator(**kwargs: Any) -> Emulator:
    emu = Emulator(
        api_key=API_KEY,
        api_secret=API_SECRET,
        symbols=[BTC, ETH],
        config=PaperConfig(auto_funding=False, slippage_bps=0.0),
        **kwargs,
    )
    emu.set_price(BTC, 60_000.0)
    emu.set_price(ETH, 3_000.0)
    return emu


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    emulator = new_emulator()
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
async def pro(emu: Emulator) -> AsyncIterator[Any]:
    """The bot's own ccxt.pro client: ``LiveExchange`` pointed at the emulator."""
    live = make_live(emu)
    await live.load_markets()
    try:
        yield live.client
    finally:
        await live.close()


class Watch:
    """A ccxt.pro ``watch_*`` call run in a loop, as a bot runs it, keeping a snapshot of every
    item it returned (ccxt updates its cached dicts in place) and every error it raised."""

    def __init__(self, call: Callable[[], Awaitable[list[dict[str, Any]]]]) -> None:
        self.call = call
        self.items: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            try:
                got = await self.call()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.errors.append(exc)
                await asyncio.sleep(0.05)
                continue
            self.items.extend(json.loads(json.dumps(item, default=str)) for item in got)

    async def until(
        self, pred: Callable[[list[dict[str, Any]]], bool], timeout: float = 5.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while not pred(self.items):
            if time.monotonic() > deadline:
                raise AssertionError(f"not seen in {timeout}s; got {self.items} {self.errors}")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def raw_events(client: Any) -> list[dict[str, Any]]:
    """Record every message the ccxt client handles (the exchange's events, in order)."""
    seen: list[dict[str, Any]] = []
    handle = client.handle_message

    def spy(ws_client: Any, message: Any) -> Any:
        if isinstance(message, dict) and "e" in message:
            seen.append(json.loads(json.dumps(message)))
        return handle(ws_client, message)

    client.handle_message = spy
    return seen


async def connected(emu: Emulator, count: int = 1) -> None:
    deadline = time.monotonic() + 5
    while len(emu._user_streams) < count:
        assert time.monotonic() < deadline, "the user-data stream did not connect"
        await asyncio.sleep(0.02)


async def http(
    emu: Emulator, method: str, path: str, key: str | None = API_KEY, **json_body: Any
) -> tuple[int, Any]:
    headers = {} if key is None else {"X-MBX-APIKEY": key}
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, f"{emu.url}{path}", headers=headers, json=json_body or None
        ) as resp,
    ):
        return resp.status, await resp.json()


def statuses(items: list[dict[str, Any]], cid: str) -> list[str]:
    """The statuses the updates of client id ``cid`` went through, repeats dropped."""
    out: list[str] = []
    for item in items:
        if item["clientOrderId"] == cid and (not out or out[-1] != item["status"]):
            out.append(item["status"])
    return out


# ---------------------------------------------------------------------- the listen key


async def test_listen_key_needs_the_api_key_and_no_signature(emu: Emulator) -> None:
    assert (await http(emu, "POST", "/fapi/v1/listenKey", key=None)) == (
        401,
        {"code": -2014, "msg": "API-key format invalid."},
    )
    status, body = await http(emu, "POST", "/fapi/v1/listenKey", key="someone-else")
    assert (status, body["code"]) == (401, -2015)
    status, body = await http(emu, "POST", "/fapi/v1/listenKey")
    assert status == 200 and len(body["listenKey"]) == 64
    key = body["listenKey"]
    # while valid, creating again returns the same key; keep-alive returns it too
    assert (await http(emu, "POST", "/fapi/v1/listenKey"))[1] == {"listenKey": key}
    assert (await http(emu, "PUT", "/fapi/v1/listenKey"))[1] == {"listenKey": key}
    assert (await http(emu, "DELETE", "/fapi/v1/listenKey")) == (200, {})
    gone = (400, {"code": -1125, "msg": "This listenKey does not exist."})
    assert await http(emu, "PUT", "/fapi/v1/listenKey") == gone
    assert await http(emu, "DELETE", "/fapi/v1/listenKey") == gone
    fresh = (await http(emu, "POST", "/fapi/v1/listenKey"))[1]["listenKey"]
    assert fresh != key


async def test_ccxt_gets_the_listen_key_unsigned(emu: Emulator, pro: Any) -> None:
    first = await pro.fapiPrivatePostListenKey()
    assert await pro.fapiPrivatePutListenKey() == first
    sent = [r for r in emu.requests if r.path == "/fapi/v1/listenKey"]
    assert [r.method for r in sent] == ["POST", "PUT"]
    assert all("timestamp" not in r.params for r in sent)


async def test_an_expired_listen_key_stream_says_so_and_then_goes_quiet() -> None:
    clock = Clock(1_750_000_000.0)
    emulator = new_emulator(clock=clock)
    await emulator.start()
    try:
        key = (await http(emulator, "POST", "/fapi/v1/listenKey"))[1]["listenKey"]
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"{emulator.ws_url[:-3]}/private/ws?listenKey={key}") as ws,
        ):
            await connected(emulator)
            clock.now += 50 * 60  # kept alive at 50 min: good until 110 min
            assert (await http(emulator, "PUT", "/fapi/v1/listenKey"))[0] == 200
            clock.now += 59 * 60
            emulator.open_external_position(BTC, "buy", 0.01)
            first = json.loads((await ws.receive(timeout=5)).data)
            assert first["e"] == "ORDER_TRADE_UPDATE" and first["o"]["X"] == "NEW"
            while (json.loads((await ws.receive(timeout=5)).data))["e"] != "ACCOUNT_UPDATE":
                pass
            clock.now += 2 * 60  # 111 min: expired
            expired = json.loads((await ws.receive(timeout=5)).data)  # housekeeping sees it
            assert expired == {
                "e": "listenKeyExpired",
                "E": str(int(clock.now * 1000)),
                "listenKey": key,
            }
            emulator.open_external_position(BTC, "sell", 0.01)
            with pytest.raises(asyncio.TimeoutError):
                await ws.receive(timeout=0.5)  # no more user data on an expired key
            assert not ws.closed  # "not related to the websocket disconnection"
        assert (await http(emulator, "PUT", "/fapi/v1/listenKey"))[1]["code"] == -1125
        assert (await http(emulator, "POST", "/fapi/v1/listenKey"))[1]["listenKey"] != key
    finally:
        await emulator.stop()


async def test_the_stream_filters_events_and_the_legacy_path_carries_nothing(
    emu: Emulator,
) -> None:
    key = (await http(emu, "POST", "/fapi/v1/listenKey"))[1]["listenKey"]
    base = emu.ws_url[:-3]
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{base}/private/ws?listenKey={key}&events=ACCOUNT_UPDATE") as only,
        session.ws_connect(f"{base}/private/ws/{key}") as path_form,
        session.ws_connect(f"{base}/ws/{key}") as legacy,
    ):
        await connected(emu, 2)
        emu.open_external_position(BTC, "buy", 0.01)
        got = json.loads((await only.receive(timeout=5)).data)
        assert got["e"] == "ACCOUNT_UPDATE" and got["a"]["m"] == "ORDER"
        assert json.loads((await path_form.receive(timeout=5)).data)["e"] == "ORDER_TRADE_UPDATE"
        with pytest.raises(asyncio.TimeoutError):
            await only.receive(timeout=0.3)  # the order events were filtered out
        with pytest.raises(asyncio.TimeoutError):
            await legacy.receive(timeout=0.3)


# ---------------------------------------------------------------------- orders


async def test_watch_orders_sees_an_entry_and_a_triggered_stop_with_the_bots_client_ids(
    emu: Emulator, pro: Any
) -> None:
    events = raw_events(pro)
    watch = Watch(pro.watch_orders)
    try:
        await connected(emu)
        entry = await pro.create_order(
            BTC, "limit", "buy", 0.01, 59_000.0, {"clientOrderId": "e-1"}
        )
        await watch.until(lambda items: statuses(items, "e-1") == ["open"])
        emu.set_price(BTC, 58_990.0)  # the resting limit fills as maker at its price
        await watch.until(lambda items: statuses(items, "e-1") == ["open", "closed"])
        filled = [i for i in watch.items if i["clientOrderId"] == "e-1"][-1]
        assert (filled["id"], filled["filled"], filled["average"]) == (entry["id"], 0.01, 59_000.0)
        stop = await pro.create_order(
            BTC, "market", "sell", 0.01, None, {"stopLossPrice": 58_000.0, "clientOrderId": "s-1"}
        )
        await watch.until(lambda items: statuses(items, "s-1") == ["open"])
        emu.set_price(BTC, 58_500.0)  # not a gap: the next price crosses the trigger
        emu.set_price(BTC, 57_990.0)
        await watch.until(
            lambda items: (
                len({i["id"] for i in items if i["clientOrderId"] == "s-1"}) == 2
                and all(i["status"] == "closed" for i in items[-2:])
            )
        )
    finally:
        await watch.stop()
    by_id = {i["id"]: i for i in watch.items if i["clientOrderId"] == "s-1"}
    algo = by_id.pop(stop["id"])  # the conditional order: closed once triggered
    assert (algo["status"], algo["triggerPrice"], algo["type"]) == ("closed", 58_000.0, "market")
    (child,) = by_id.values()  # the order it placed in the matching engine, same client id
    assert child["status"] == "closed" and child["filled"] == 0.01
    assert child["average"] == 58_000.0  # fills at its trigger (no slippage here)
    stop_events = [
        (e["e"], e["o"]["X"])
        for e in events
        if "o" in e and e["o"].get("caid", e["o"].get("c")) == "s-1"
    ]
    assert stop_events == [
        ("ALGO_UPDATE", "NEW"),
        ("ALGO_UPDATE", "TRIGGERED"),
        ("ORDER_TRADE_UPDATE", "NEW"),
        ("ORDER_TRADE_UPDATE", "FILLED"),
        ("ALGO_UPDATE", "FINISHED"),
    ]
    triggered = next(e["o"] for e in events if "o" in e and e["o"].get("X") == "TRIGGERED")
    assert triggered["ai"] == child["id"] and triggered["act"] == "MARKET"
    # REST agrees: the algo order FINISHED with the order it placed, that order FILLED
    algo_rest = await pro.fetch_order(stop["id"], BTC, {"trigger": True})
    assert algo_rest["info"]["algoStatus"] == "FINISHED"
    assert algo_rest["info"]["actualOrderId"] == child["id"]
    assert algo_rest["info"]["actualQty"] == "0.01"
    child_rest = await pro.fetch_order(child["id"], BTC)
    assert (child_rest["status"], child_rest["clientOrderId"]) == ("closed", "s-1")
    assert child_rest["info"]["origType"] == "STOP_MARKET"
    by_cid = await pro.fetch_order("", BTC, {"clientOrderId": "s-1"})
    assert by_cid["id"] == child["id"]  # the ordinary book finds the triggered order


async def test_a_canceled_stop_and_a_stop_the_exchange_expired(emu: Emulator, pro: Any) -> None:
    watch = Watch(pro.watch_orders)
    try:
        await connected(emu)
        await pro.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "e-2"})
        stop = await pro.create_order(
            BTC, "market", "sell", 0.01, None, {"stopLossPrice": 58_000.0, "clientOrderId": "s-2"}
        )
        await watch.until(lambda items: statuses(items, "s-2") == ["open"])
        await pro.cancel_order(stop["id"], BTC, {"trigger": True})
        await watch.until(lambda items: statuses(items, "s-2") == ["open", "canceled"])
        # a reduce-only stop outlives its position: the exchange expires it
        await pro.create_order(
            BTC,
            "market",
            "sell",
            0.01,
            None,
            {"stopLossPrice": 58_000.0, "reduceOnly": True, "clientOrderId": "s-3"},
        )
        await watch.until(lambda items: statuses(items, "s-3") == ["open"])
        await pro.create_order(
            BTC, "market", "sell", 0.01, None, {"reduceOnly": True, "clientOrderId": "x-2"}
        )
        await watch.until(lambda items: statuses(items, "s-3") == ["open", "expired"])
        assert statuses(watch.items, "x-2")[-1] == "closed"
    finally:
        await watch.stop()
    history = await pro.fetch_orders(BTC, None, None, {"trigger": True})
    assert {o["clientOrderId"]: o["info"]["algoStatus"] for o in history} == {
        "s-2": "CANCELED",
        "s-3": "EXPIRED",
    }
    ordinary = await pro.fetch_orders(BTC)
    assert [(o["clientOrderId"], o["status"]) for o in ordinary] == [
        ("e-2", "closed"),
        ("x-2", "closed"),
    ]


# ---------------------------------------------------------------------- fills


async def test_watch_my_trades_yields_each_fill_once_with_fee_and_realized_pnl(
    emu: Emulator, pro: Any
) -> None:
    trades = Watch(pro.watch_my_trades)
    balance = Watch(lambda: _as_list(pro.watch_balance()))
    positions = Watch(pro.watch_positions)
    try:
        await connected(emu)
        await pro.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "t-1"})
        await trades.until(lambda items: len(items) == 1)
        await positions.until(lambda items: any(p["contracts"] == 0.01 for p in items))
        emu.set_price(BTC, 61_000.0)
        await pro.create_order(
            BTC, "market", "sell", 0.01, None, {"reduceOnly": True, "clientOrderId": "t-2"}
        )
        await trades.until(lambda items: len(items) >= 2)
        await balance.until(lambda items: len(items) >= 2)
        await positions.until(lambda items: items[-1]["contracts"] == 0)
        await asyncio.sleep(0.3)  # nothing else comes: each fill once
    finally:
        for w in (trades, balance, positions):
            await w.stop()
    entry, exit_ = trades.items
    assert len({entry["id"], exit_["id"]}) == 2
    assert (entry["side"], entry["price"], entry["amount"]) == ("buy", 60_000.0, 0.01)
    assert (exit_["side"], exit_["price"], exit_["amount"]) == ("sell", 61_000.0, 0.01)
    for t in (entry, exit_):
        assert t["symbol"] == BTC and t["takerOrMaker"] == "taker"
        assert t["fee"]["currency"] == "USDT"
        assert t["fee"]["cost"] == pytest.approx(t["price"] * t["amount"] * TAKER)
    assert entry["info"]["c"] == "t-1" and exit_["info"]["c"] == "t-2"
    assert float(entry["info"]["rp"]) == 0.0
    assert float(exit_["info"]["rp"]) == pytest.approx((61_000.0 - 60_000.0) * 0.01)
    fees = (60_000.0 + 61_000.0) * 0.01 * TAKER
    wallet = 10_000.0 + (61_000.0 - 60_000.0) * 0.01 - fees
    assert balance.items[-1]["USDT"]["total"] == pytest.approx(wallet)
    long = next(p for p in positions.items if p["contracts"] == 0.01)
    assert (long["side"], long["entryPrice"]) == ("long", 60_000.0)


async def _as_list(balance: Awaitable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [await balance]


async def test_fetch_my_trades_returns_the_streamed_fills_and_refuses_what_binance_refuses(
    emu: Emulator, pro: Any
) -> None:
    watch = Watch(pro.watch_my_trades)
    try:
        await connected(emu)
        for side, amount, extra in (
            ("buy", 0.01, {}),
            ("buy", 0.01, {}),
            ("sell", 0.02, {"reduceOnly": True}),
        ):
            await pro.create_order(BTC, "market", side, amount, None, extra)
            await asyncio.sleep(0.01)  # distinct fill times
        await watch.until(lambda items: len(items) == 3)
    finally:
        await watch.stop()
    streamed = [(t["id"], t["order"], t["price"], t["amount"]) for t in watch.items]
    rest = await pro.fetch_my_trades(BTC)
    assert [(t["id"], t["order"], t["price"], t["amount"]) for t in rest] == streamed
    first, second, third = (t["id"] for t in rest)
    assert float(rest[2]["info"]["realizedPnl"]) == 0.0  # closed at its entry price
    assert rest[2]["fee"]["cost"] == pytest.approx(60_000.0 * 0.02 * TAKER)
    since = [t["id"] for t in await pro.fetch_my_trades(BTC, rest[1]["timestamp"])]
    assert since == [second, third]
    assert [t["id"] for t in await pro.fetch_my_trades(BTC, None, None, {"fromId": second})] == [
        second,
        third,
    ]
    assert [t["id"] for t in await pro.fetch_my_trades(BTC, None, 1)] == [third]  # the latest
    assert [t["id"] for t in await pro.fetch_my_trades(BTC, rest[0]["timestamp"], 1)] == [first]
    # ccxt keeps an old ``since`` to Binance's 7-day window itself: nothing there
    month_ago = int(time.time() * 1000) - 30 * 86_400_000
    assert await pro.fetch_my_trades(BTC, month_ago) == []
    now = int(time.time() * 1000)
    refused = {
        -1102: {},
        -1128: {"symbol": "BTCUSDT", "fromId": first, "startTime": now - 60_000},
        -1127: {"symbol": "BTCUSDT", "startTime": now - WEEK_MS - 1, "endTime": now},
        -1023: {"symbol": "BTCUSDT", "startTime": now, "endTime": now - 1},
        -1130: {"symbol": "BTCUSDT", "limit": 1001},
        -1100: {"symbol": "BTCUSDT", "fromId": "x"},
    }
    for code, params in refused.items():
        with pytest.raises(BadRequest, match=f'"code": ?{code},'):
            await pro.fapiPrivateGetUserTrades(params)
    by_order = await pro.fapiPrivateGetUserTrades(
        {"symbol": "BTCUSDT", "orderId": rest[1]["order"]}
    )
    assert [t["id"] for t in by_order] == [int(second)]
    assert set(by_order[0]) == {
        "symbol",
        "id",
        "orderId",
        "side",
        "price",
        "qty",
        "realizedPnl",
        "quoteQty",
        "commission",
        "commissionAsset",
        "time",
        "positionSide",
        "buyer",
        "maker",
    }


async def test_a_maker_fill_pays_the_maker_rate(emu: Emulator, pro: Any) -> None:
    await pro.create_order(BTC, "limit", "buy", 0.01, 59_500.0)
    emu.set_price(BTC, 59_400.0)
    (trade,) = await pro.fetch_my_trades(BTC)
    assert (trade["takerOrMaker"], trade["price"]) == ("maker", 59_500.0)
    assert trade["fee"]["cost"] == pytest.approx(59_500.0 * 0.01 * MAKER)
    assert trade["info"]["maker"] is True and trade["info"]["buyer"] is True


# ---------------------------------------------------------------------- the exchange's orders


async def test_a_liquidation_shows_its_autoclose_order_and_the_stops_it_took(
    emu: Emulator, pro: Any
) -> None:
    events = raw_events(pro)
    orders = Watch(pro.watch_orders)
    mine = Watch(lambda: pro.watch_my_liquidations(BTC))
    try:
        await connected(emu)
        await pro.set_leverage(20, BTC)
        await pro.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "lev-1"})
        await pro.create_order(
            BTC, "market", "sell", 0.01, None, {"stopLossPrice": 50_000.0, "clientOrderId": "far"}
        )
        liq = emu.core.liquidation_price(BTC)
        assert liq is not None and 50_000.0 < liq < 60_000.0
        emu.set_price(BTC, liq - 50.0)
        await orders.until(
            lambda items: (
                any(i["clientOrderId"].startswith("autoclose-") for i in items)
                and statuses(items, "far")[-1:] == ["expired"]
            )
        )
        await mine.until(lambda items: len(items) >= 1)
    finally:
        await orders.stop()
        await mine.stop()
    forced = [i for i in orders.items if i["clientOrderId"].startswith("autoclose-")][-1]
    assert (forced["status"], forced["side"], forced["filled"]) == ("closed", "sell", 0.01)
    assert forced["type"] == "liquidation"
    # ccxt's watch_my_liquidations resolves each LIQUIDATION event alone: the NEW one (nothing
    # filled yet) comes first, and an execution right behind it finds no waiter. The fill's
    # figures are watch_orders' (and userTrades').
    assert mine.items[0]["info"]["c"] == forced["clientOrderId"]
    assert (mine.items[0]["symbol"], mine.items[0]["side"]) == (BTC, "sell")
    execution = [e["o"]["x"] for e in events if e.get("o", {}).get("c") == forced["clientOrderId"]]
    assert execution == ["NEW", "CALCULATED"]  # Binance: CALCULATED = liquidation execution
    (liq_trade,) = [t for t in await pro.fetch_my_trades(BTC) if t["order"] == forced["id"]]
    entry = 60_000.0
    assert float(liq_trade["info"]["realizedPnl"]) == pytest.approx(
        (liq_trade["price"] - entry) * 0.01
    )
    forced_rest = await pro.fetch_order(forced["id"], BTC)
    assert forced_rest["info"]["type"] == "LIMIT" and forced_rest["info"]["timeInForce"] == "IOC"
    assert forced_rest["clientOrderId"] == forced["clientOrderId"]


async def test_an_adl_closes_the_position_as_adl_autoclose(emu: Emulator, pro: Any) -> None:
    orders = Watch(pro.watch_orders)
    try:
        await connected(emu)
        await pro.create_order(ETH, "market", "buy", 0.1, None, {"clientOrderId": "eth-1"})
        await pro.create_order(
            ETH,
            "market",
            "sell",
            0.1,
            None,
            {"stopLossPrice": 2_900.0, "reduceOnly": True, "clientOrderId": "eth-stop"},
        )
        await orders.until(lambda items: statuses(items, "eth-stop") == ["open"])
        status, body = await http(emu, "POST", "/_control/adl", symbol=ETH, price=3_100.0)
        assert status == 200 and body["fill"]["client_order_id"] == "adl_autoclose"
        await orders.until(
            lambda items: (
                statuses(items, "adl_autoclose")[-1:] == ["closed"]
                and statuses(items, "eth-stop")[-1:] == ["expired"]
            )
        )
    finally:
        await orders.stop()
    adl = [i for i in orders.items if i["clientOrderId"] == "adl_autoclose"][-1]
    assert (adl["side"], adl["filled"], adl["average"], adl["symbol"]) == (
        "sell",
        0.1,
        3_100.0,
        ETH,
    )
    trade = (await pro.fetch_my_trades(ETH))[-1]
    assert (trade["order"], trade["price"], trade["amount"]) == (adl["id"], 3_100.0, 0.1)
    assert float(trade["info"]["realizedPnl"]) == pytest.approx((3_100.0 - 3_000.0) * 0.1)
    assert trade["fee"]["cost"] == 0.0
    assert await pro.fetch_positions([ETH]) == []
    forced = await pro.fapiPrivateGetForceOrders({"autoCloseType": "ADL"})
    assert [(o["clientOrderId"], o["status"]) for o in forced] == [("adl_autoclose", "FILLED")]
    assert await pro.fapiPrivateGetForceOrders({"autoCloseType": "LIQUIDATION"}) == []
    status, body = await http(emu, "POST", "/_control/adl", symbol=ETH, price=3_100.0)
    assert status == 400 and "no position" in body["error"]


# ---------------------------------------------------------------------- the account


async def test_funding_and_fills_push_account_updates_with_their_reason() -> None:
    clock = Clock(1_750_000_000.0)  # 2025-06-15 15:06:40 UTC: funding at 16:00
    emulator = Emulator(
        api_key=API_KEY,
        api_secret=API_SECRET,
        symbols=[BTC],
        config=PaperConfig(auto_funding=True, slippage_bps=0.0, funding_rate=0.0001),
        clock=clock,
    )
    emulator.set_price(BTC, 60_000.0)
    await emulator.start()
    try:
        key = (await http(emulator, "POST", "/fapi/v1/listenKey"))[1]["listenKey"]
        url = f"{emulator.ws_url[:-3]}/private/ws?listenKey={key}&events=ACCOUNT_UPDATE"
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            await connected(emulator)
            emulator.open_external_position(BTC, "buy", 0.01)
            order = json.loads((await ws.receive(timeout=5)).data)["a"]
            assert order["m"] == "ORDER"
            (pos,) = order["P"]
            assert (pos["s"], pos["pa"], pos["ep"], pos["mt"], pos["ps"]) == (
                "BTCUSDT",
                "0.01",
                "60000",
                "isolated",
                "BOTH",
            )
            clock.now = 1_750_003_200.0  # 16:00:00
            emulator.set_price(BTC, 60_000.0)
            funding = json.loads((await ws.receive(timeout=5)).data)["a"]
        assert funding["m"] == "FUNDING_FEE"
        assert float(funding["B"][0]["bc"]) == pytest.approx(-0.01 * 60_000.0 * 0.0001)
        wallet = 10_000.0 - 600.0 * TAKER - 0.01 * 60_000.0 * 0.0001
        assert float(funding["B"][0]["wb"]) == pytest.approx(wallet)
        assert [p["s"] for p in funding["P"]] == ["BTCUSDT"]  # isolated: its position too
    finally:
        await emulator.stop()


# ---------------------------------------------------------------------- a dropped stream


async def test_a_dropped_user_stream_is_refused_for_a_while_then_reconnects(
    emu: Emulator, pro: Any
) -> None:
    watch = Watch(pro.watch_orders)
    try:
        await connected(emu)
        await pro.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "d-1"})
        await watch.until(lambda items: statuses(items, "d-1")[-1:] == ["closed"])
        status, _ = await http(
            emu, "POST", "/_control/fault", kind="drop_user_stream", refuse_s=1.0
        )
        assert status == 200 and emu.faults[-1].hits == 1
        await watch.until(lambda items: bool(watch.errors))
        assert isinstance(watch.errors[0], NetworkError)
        # filled while the stream is down: only REST can tell
        missed = await pro.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "d-2"})
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{emu.ws_url[:-3]}/private/ws?listenKey=x") as refused,
        ):
            assert refused.status == 503 and refused.headers["Retry-After"] == "1"
        await connected(emu)  # the bot's watch loop got back in after the refusal
        await pro.create_order(BTC, "market", "sell", 0.02, None, {"clientOrderId": "d-3"})
        await watch.until(lambda items: statuses(items, "d-3")[-1:] == ["closed"])
    finally:
        await watch.stop()
    assert statuses(watch.items, "d-2") == []
    reconciled = await pro.fetch_my_trades(BTC)
    assert missed["id"] in [t["order"] for t in reconciled]
    assert (await pro.fetch_order("", BTC, {"clientOrderId": "d-2"}))["status"] == "closed"
