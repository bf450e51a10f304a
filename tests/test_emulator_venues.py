"""Bybit and OKX end to end: the real ccxt clients, through ``LiveExchange`` and the venue
layer, against the Bybit v5 and OKX v5 emulators (no network beyond 127.0.0.1).

Per venue: markets and tiers load into the guards' rules under the venue's model; a market
entry; a mark-price stop whose captured request carries the venue's trigger-price type (and
what ccxt would send without the venue layer); OKX's contract-sized amounts; position-mode
refusals and their handling; listing and cancelling the bot's own conditional orders;
refusal codes classified; signing, the demo environment and fault injection; and a
liquidation under the venue's profile that the guards saw coming at the right price.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from ccxt.base.errors import (
    AuthenticationError,
    BadRequest,
    ExchangeError,
    InvalidNonce,
    InvalidOrder,
    RateLimitExceeded,
)
from pydantic import SecretStr

from bot.emulator.bybit import BybitEmulator
from bot.emulator.okx import OkxEmulator
from bot.emulator.server import Fault
from bot.exchange.live import LiveExchange
from bot.exchange.retry import RetryPolicy
from bot.exchange.shapes import account_from_ccxt, position_from_ccxt
from bot.exchange.venue import BybitVenue, OkxVenue, OrderSpec, Venue
from bot.settings import ExchangeSettings
from guards import liquidation_price
from paper.config import PaperConfig

KEY = "gbTestKey0123456789abcdefABCDEF"
SECRET = "gbTestSecret-9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c"
PASSPHRASE = "gbPassphrase-1"
BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
FAST = RetryPolicy(attempts=4, base_s=0.01, max_delay_s=0.05, budget_s=5.0)


def live_for(url: str, venue: str, symbol: str, **kw: Any) -> LiveExchange:
    settings = ExchangeSettings(
        id=venue,
        api_key=SecretStr(KEY),
        api_secret=SecretStr(kw.pop("secret", SECRET)),
        password=SecretStr(kw.pop("password", PASSPHRASE)),
        symbols=(symbol,),
        demo=kw.pop("sandbox", False),
    )
    opts: dict[str, Any] = {"streams": False, "rate_limit": False, "timeout_ms": 5_000}
    opts.update({"retry": FAST, **kw})
    return LiveExchange(settings, api_url=url, **opts)


@pytest.fixture
async def bybit() -> AsyncIterator[BybitEmulator]:
    emu = BybitEmulator(
        api_key=KEY,
        api_secret=SECRET,
        config=PaperConfig(liquidation_profile="bybit", auto_funding=False),
    )
    emu.set_price(BTC, 60_000.0)
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()


@pytest.fixture
async def okx() -> AsyncIterator[OkxEmulator]:
    emu = OkxEmulator(
        api_key=KEY,
        api_secret=SECRET,
        passphrase=PASSPHRASE,
        config=PaperConfig(liquidation_profile="okx", auto_funding=False),
    )
    emu.set_price(ETH, 2_000.0)
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()


async def setup(live: LiveExchange, venue: Venue, symbol: str, mode: str, lev: float) -> None:
    """The venue's account and symbol set-up calls (what the executor will run)."""
    for call in venue.account_setup_calls() + venue.setup_calls(symbol, mode, lev):  # type: ignore[arg-type]
        try:
            await getattr(live.client, call.method)(*call.args, params=call.params)
        except Exception as exc:  # "already set" counts as done
            if venue.classify(exc) != "no_change":
                raise


async def send(
    live: LiveExchange,
    venue: Venue,
    spec: OrderSpec,
    cid: str,
    mode: str | None = None,
) -> dict[str, Any]:
    market = live.markets[spec.symbol]
    req = venue.request(spec, market, mode)  # type: ignore[arg-type]
    params = {**req.params, **venue.client_id_params(spec, cid)}
    return await live.create_order(req.symbol, req.type, req.side, req.amount, req.price, params)


def last(emu: Any, path: str) -> dict[str, str]:
    found = [r for r in emu.requests if r.path == path]
    assert found, path
    return dict(found[-1].params)


# -- Bybit ----------------------------------------------------------------------------------------


async def test_bybit_session_markets_entry_mark_stop_list_and_cancel(bybit: BybitEmulator) -> None:
    venue = BybitVenue()
    live = live_for(bybit.url, "bybit", BTC)
    try:
        await live.load_markets()
        rules = live.market_rules([BTC])[BTC]
        assert rules.model == "bybit" and rules.tiers[1].maint_amount == 1_200.0
        await setup(live, venue, BTC, "isolated", 5)
        await setup(live, venue, BTC, "isolated", 5)  # again: 110043 "not modified" is done
        assert bybit.account_margin_mode == "ISOLATED_MARGIN"
        await send(live, venue, OrderSpec("entry", BTC, "buy", 0.1), "gbe000000000000000000000001")
        entry = last(bybit, "/v5/order/create")
        assert entry["qty"] == "0.1" and entry["positionIdx"] == "0"
        assert entry["orderLinkId"] == "gbe000000000000000000000001"
        stop = OrderSpec("stop", BTC, "sell", 0.1, trigger=58_000.0, close_position=True)
        await send(live, venue, stop, "gbs000000000000000000000001")
        sent = last(bybit, "/v5/order/create")
        assert sent["triggerBy"] == "MarkPrice" and sent["triggerDirection"] == "2"
        assert sent["reduceOnly"] == "true" and sent["closeOnTrigger"] == "true"
        assert sent["triggerPrice"] == "58000" and sent["positionIdx"] == "0"
        assert "workingType" not in sent and "closePosition" not in sent
        # the bot's conditional orders: listed, read as a stop, found by client id
        listed = await live.fetch_open_orders(BTC, params=venue.trigger_params())
        assert last(bybit, "/v5/order/realtime")["orderFilter"] == "StopOrder"
        (order,) = listed
        (pos,) = await live.fetch_positions([BTC])
        guarded = position_from_ccxt(pos, listed)
        assert guarded.stop_price == 58_000.0 and guarded.margin_mode == "isolated"
        found = await live.client.fetch_order(
            "", BTC, venue.lookup_params("gbs000000000000000000000001", True)
        )
        assert found["id"] == order["id"] and found["status"] == "open"
        await live.cancel_order(order["id"], BTC, venue.cancel_params(order))
        assert "trigger" not in last(bybit, "/v5/order/cancel")
        assert await live.fetch_open_orders(BTC, params=venue.trigger_params()) == []
    finally:
        await live.close()


async def test_bybit_without_the_venue_layer_the_stop_would_trigger_on_last(
    bybit: BybitEmulator,
) -> None:
    """ccxt alone: ``stopLossPrice`` sends no ``triggerBy`` (Bybit's default: LastPrice)."""
    live = live_for(bybit.url, "bybit", BTC)
    try:
        await live.load_markets()
        await live.create_order(BTC, "market", "buy", 0.01, None, {"positionIdx": 0})
        await live.create_order(BTC, "market", "sell", 0.01, None, {"stopLossPrice": 58_000.0})
        sent = last(bybit, "/v5/order/create")
        assert "triggerBy" not in sent
        (order,) = await live.fetch_open_orders(BTC, params={"trigger": True})
        assert order["info"]["triggerBy"] == "LastPrice"
    finally:
        await live.close()


async def test_bybit_refusals_are_classified(bybit: BybitEmulator) -> None:
    venue = BybitVenue()
    live = live_for(bybit.url, "bybit", BTC)
    try:
        await live.load_markets()
        await setup(live, venue, BTC, "cross", 3)
        with pytest.raises(InvalidOrder) as reduce:
            await send(live, venue, OrderSpec("exit", BTC, "sell", 0.1, reduce_only=True), "gbr1")
        assert venue.classify(reduce.value) == "reduce_only_rejected"
        await send(live, venue, OrderSpec("entry", BTC, "buy", 0.1), "gbe1")
        above = OrderSpec("stop", BTC, "sell", 0.1, trigger=61_000.0, close_position=True)
        with pytest.raises(InvalidOrder) as passed:
            await send(live, venue, above, "gbs1")
        assert venue.classify(passed.value) == "would_trigger_immediately"
        # position mode: cannot switch with a position open
        with pytest.raises(BadRequest) as mode:
            await live.client.set_position_mode(True)
        assert venue.classify(mode.value) == "position_mode"
    finally:
        await live.close()


async def test_bybit_hedge_mode_is_refused_then_switched_to_one_way() -> None:
    venue = BybitVenue()
    emu = BybitEmulator(api_key=KEY, api_secret=SECRET, hedge_mode=True)
    emu.set_price(BTC, 60_000.0)
    await emu.start()
    live = live_for(emu.url, "bybit", BTC)
    try:
        await live.load_markets()
        with pytest.raises(BadRequest, match="position idx not match position mode"):
            await send(live, venue, OrderSpec("entry", BTC, "buy", 0.1), "gbe1")
        await setup(live, venue, BTC, "cross", 3)  # set_position_mode(False): one-way
        assert last(emu, "/v5/position/switch-mode") == {
            "mode": "0",
            "coin": "USDT",
            "category": "linear",
        }
        await send(live, venue, OrderSpec("entry", BTC, "buy", 0.1), "gbe2")
        assert emu.core.position(BTC) is not None
    finally:
        await live.close()
        await emu.stop()


async def test_bybit_liquidation_at_the_guards_price(bybit: BybitEmulator) -> None:
    venue = BybitVenue()
    live = live_for(bybit.url, "bybit", BTC)
    try:
        await live.load_markets()
        await setup(live, venue, BTC, "isolated", 50)
        await send(live, venue, OrderSpec("entry", BTC, "buy", 0.5), "gbe1")
        (pos,) = await live.fetch_positions([BTC])
        rules = live.market_rules([BTC])[BTC]
        guarded = position_from_ccxt(pos)
        ours = liquidation_price(
            side="long",
            amount=guarded.amount,
            entry_price=guarded.entry_price,
            margin_mode="isolated",
            wallet_balance=guarded.margin,
            tiers=rules.tiers,
            liquidation_fee_rate=rules.liquidation_fee_rate,
        )
        # Bybit's formula: LP = Entry - (IM - MM) / size, MM on the entry value
        entry, size = guarded.entry_price, guarded.amount
        assert ours == pytest.approx(entry - (guarded.margin - size * entry * 0.005) / size)
        assert float(pos["liquidationPrice"]) == pytest.approx(ours)
        bybit.set_price(BTC, ours + 5.0)
        assert bybit.core.position(BTC) is not None
        bybit.set_price(BTC, ours - 1.0)
        assert await live.fetch_positions([BTC]) == []
        (event,) = bybit.state()["liquidations"]
        assert event["profile"] == "bybit" and not event["partial"]
    finally:
        await live.close()


async def test_bybit_signing_and_demo(bybit: BybitEmulator) -> None:
    wrong = live_for(bybit.url, "bybit", BTC, secret="not-the-secret")
    try:
        with pytest.raises(AuthenticationError, match="10004"):
            await wrong.fetch_balance()
    finally:
        await wrong.close()
    bybit.clock_skew_ms = -60_000  # the server is a minute behind the client
    stale = live_for(bybit.url, "bybit", BTC, retry=RetryPolicy(attempts=1))
    try:
        with pytest.raises(InvalidNonce, match="10002"):
            await stale.fetch_balance()
    finally:
        await stale.close()
    bybit.clock_skew_ms = 0
    demo = live_for(bybit.url, "bybit", BTC, sandbox=True)
    try:
        assert demo.client.options["enableDemoTrading"] is True  # BybitVenue.demo
        assert (await demo.fetch_balance())["USDT"]["total"] == 10_000.0
    finally:
        await demo.close()


async def test_bybit_faults_and_control(bybit: BybitEmulator) -> None:
    live = live_for(bybit.url, "bybit", BTC)
    try:
        await live.load_markets()
        fault = bybit.inject(Fault("rate_limit", path="/v5/account/wallet-balance", method="GET"))
        assert (await live.fetch_balance())["USDT"]["total"] == 10_000.0  # retried
        assert fault.hits == 1
        bybit.inject(Fault("reject", path="/v5/order/create", code=110007, msg="ab not enough"))
        with pytest.raises(ExchangeError, match="110007"):
            await live.create_order(BTC, "market", "buy", 0.01, None, {"positionIdx": 0})
        bybit.inject(Fault("rate_limit", path="/v5/order/create", times=1))
        with pytest.raises(RateLimitExceeded):
            await live.create_order(BTC, "market", "buy", 0.01, None, {"positionIdx": 0})
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{bybit.url}/_control/price", data=json.dumps({"symbol": BTC, "last": 61_000})
            ) as resp:
                assert resp.status == 200
            async with http.get(f"{bybit.url}/_control/state") as resp:
                state = await resp.json()
        assert state["wallet_balance"] == 10_000.0
    finally:
        await live.close()


# -- OKX ------------------------------------------------------------------------------------------


async def test_okx_session_contracts_mark_stop_list_and_cancel(okx: OkxEmulator) -> None:
    venue = OkxVenue()
    live = live_for(okx.url, "okx", ETH)
    try:
        await live.load_markets()
        market = live.markets[ETH]
        assert market["contractSize"] == 0.1
        rules = live.market_rules([ETH])[ETH]
        assert rules.model == "okx" and rules.amount_step == 0.001
        assert rules.tiers[0].max_notional == 300.0  # 3,000 contracts of 0.1 ETH
        await setup(live, venue, ETH, "isolated", 10)
        assert last(okx, "/api/v5/account/set-leverage") == {
            "lever": "10",
            "mgnMode": "isolated",
            "instId": "ETH-USDT-SWAP",
            "posSide": "net",
        }
        await send(live, venue, OrderSpec("entry", ETH, "buy", 1.25), "gbe1", "isolated")
        entry = last(okx, "/api/v5/trade/batch-orders")
        assert entry["sz"] == "12.5"  # 1.25 ETH in contracts of 0.1 ETH
        assert entry["tdMode"] == "isolated" and entry["posSide"] == "net"
        assert okx.core.position(ETH).amount == pytest.approx(1.25)  # type: ignore[union-attr]
        (pos,) = await live.fetch_positions([ETH])
        assert pos["contracts"] == 12.5 and pos["contractSize"] == 0.1
        guarded = position_from_ccxt(pos)
        assert guarded.amount == pytest.approx(1.25) and guarded.margin_mode == "isolated"
        assert guarded.margin == pytest.approx(okx.core.position(ETH).margin)  # type: ignore[union-attr]
        stop = OrderSpec("stop", ETH, "sell", 1.25, trigger=1_900.0, close_position=True)
        await send(live, venue, stop, "gbs1", "isolated")
        sent = last(okx, "/api/v5/trade/order-algo")
        assert sent["ordType"] == "conditional" and sent["slTriggerPxType"] == "mark"
        assert sent["closeFraction"] == "1" and sent["reduceOnly"] == "true"
        assert sent["algoClOrdId"] == "gbs1" and "sz" not in sent
        # ccxt's own trigger listing asks for ordType=trigger and never sees a stop
        assert await live.fetch_open_orders(ETH, params={"trigger": True}) == []
        listed = await live.fetch_open_orders(ETH, params=venue.trigger_params())
        assert last(okx, "/api/v5/trade/orders-algo-pending")["ordType"] == "conditional,oco"
        (order,) = listed
        account = account_from_ccxt(await live.fetch_balance(), [pos], listed)
        assert account.positions[ETH].stop_price == 1_900.0
        assert account.wallet_balance == pytest.approx(okx.core.wallet_balance)
        found = await live.client.fetch_order("", ETH, venue.lookup_params("gbs1", True))
        assert found["id"] == order["id"]
        await live.cancel_order(order["id"], ETH, venue.cancel_params(order))
        assert await live.fetch_open_orders(ETH, params=venue.trigger_params()) == []
        base = venue.order_in_base(
            await live.client.fetch_order("", ETH, venue.lookup_params("gbe1", False)), market
        )
        assert base["amount"] == pytest.approx(1.25) and base["filled"] == pytest.approx(1.25)
    finally:
        await live.close()


async def test_okx_without_the_venue_layer(okx: OkxEmulator) -> None:
    """ccxt alone: base units sent as contracts (10x the size) and a last-price stop."""
    live = live_for(okx.url, "okx", ETH)
    try:
        await live.load_markets()
        await live.create_order(ETH, "market", "buy", 0.5, None, {"marginMode": "cross"})
        assert okx.core.position(ETH).amount == pytest.approx(0.05)  # type: ignore[union-attr]
        await live.create_order(
            ETH, "market", "sell", 0.5, None, {"stopLossPrice": 1_900.0, "marginMode": "cross"}
        )
        assert last(okx, "/api/v5/trade/order-algo")["slTriggerPxType"] == "last"
    finally:
        await live.close()


async def test_okx_refusals_and_position_mode() -> None:
    venue = OkxVenue()
    emu = OkxEmulator(api_key=KEY, api_secret=SECRET, passphrase=PASSPHRASE, long_short_mode=True)
    emu.set_price(ETH, 2_000.0)
    await emu.start()
    live = live_for(emu.url, "okx", ETH)
    try:
        await live.load_markets()
        with pytest.raises(BadRequest):  # long/short mode: net orders are not placed
            await send(live, venue, OrderSpec("entry", ETH, "buy", 1.0), "gbe1", "cross")
        await setup(live, venue, ETH, "cross", 5)  # net_mode
        assert emu.long_short_mode is False
        with pytest.raises(InvalidOrder) as reduce:
            await send(
                live, venue, OrderSpec("exit", ETH, "sell", 1.0, reduce_only=True), "gbr1", "cross"
            )
        assert venue.classify(reduce.value) == "reduce_only_rejected"
        await send(live, venue, OrderSpec("entry", ETH, "buy", 1.0), "gbe2", "cross")
        above = OrderSpec("stop", ETH, "sell", 1.0, trigger=2_050.0, close_position=True)
        with pytest.raises(InvalidOrder) as passed:
            await send(live, venue, above, "gbs1", "cross")
        assert venue.classify(passed.value) == "would_trigger_immediately"
        # 0.015 contracts: off the 0.01 lot (ccxt's amount_to_precision would truncate it,
        # so the raw endpoint is called)
        row = {
            "instId": "ETH-USDT-SWAP",
            "tdMode": "cross",
            "side": "buy",
            "ordType": "market",
            "sz": "0.015",
            "clOrdId": "gbe3",
        }
        with pytest.raises(InvalidOrder) as lot:
            await live.client.privatePostTradeBatchOrders([row])
        assert venue.classify(lot.value) == "min_notional"
        with pytest.raises(ExchangeError) as mode:
            await live.client.set_position_mode(True)
        assert venue.classify(mode.value) == "position_mode"
    finally:
        await live.close()
        await emu.stop()


async def test_okx_liquidation_at_the_guards_price(okx: OkxEmulator) -> None:
    venue = OkxVenue()
    live = live_for(okx.url, "okx", ETH)
    try:
        await live.load_markets()
        await setup(live, venue, ETH, "isolated", 20)
        await send(live, venue, OrderSpec("entry", ETH, "sell", 2.0), "gbe1", "isolated")
        (pos,) = await live.fetch_positions([ETH])
        rules = live.market_rules([ETH])[ETH]
        guarded = position_from_ccxt(pos)
        ours = liquidation_price(
            side="short",
            amount=guarded.amount,
            entry_price=guarded.entry_price,
            margin_mode="isolated",
            wallet_balance=guarded.margin,
            tiers=rules.tiers,
            liquidation_fee_rate=rules.liquidation_fee_rate,
        )
        assert ours is not None
        # OKX's isolated short: (E + M/q) / (1 + mmr + taker fee)
        e, m, q = guarded.entry_price, guarded.margin, guarded.amount
        assert ours == pytest.approx((e + m / q) / (1 + 0.004 + 0.0005))
        assert float(pos["liquidationPrice"]) == pytest.approx(ours)
        okx.set_price(ETH, ours - 0.5)
        assert okx.core.position(ETH) is not None
        okx.set_price(ETH, ours + 0.5)
        assert await live.fetch_positions([ETH]) == []
        (event,) = okx.state()["liquidations"]
        assert event["profile"] == "okx" and not event["partial"]
    finally:
        await live.close()


async def test_okx_signing_passphrase_and_simulated_trading(okx: OkxEmulator) -> None:
    for kw, match in (({"secret": "wrong"}, "50113"), ({"password": "wrong"}, "50105")):
        bad = live_for(okx.url, "okx", ETH, **kw)
        try:
            with pytest.raises(AuthenticationError, match=match):
                await bad.fetch_balance()
        finally:
            await bad.close()
    demo = live_for(okx.url, "okx", ETH, sandbox=True)  # x-simulated-trading: 1
    try:
        assert demo.client.headers.get("x-simulated-trading") == "1"
        with pytest.raises(AuthenticationError, match="50101"):
            await demo.fetch_balance()  # a live environment refuses the demo header
    finally:
        await demo.close()
    sim = OkxEmulator(api_key=KEY, api_secret=SECRET, passphrase=PASSPHRASE, simulated=True)
    sim.set_price(ETH, 2_000.0)
    await sim.start()
    demo = live_for(sim.url, "okx", ETH, sandbox=True)
    live = live_for(sim.url, "okx", ETH)
    try:
        assert (await demo.fetch_balance())["USDT"]["total"] == 10_000.0
        with pytest.raises(AuthenticationError, match="50101"):
            await live.fetch_balance()
    finally:
        await demo.close()
        await live.close()
        await sim.stop()
    okx.clock_skew_ms = 120_000
    stale = live_for(okx.url, "okx", ETH, retry=RetryPolicy(attempts=1))
    try:
        with pytest.raises(InvalidNonce, match="50102"):
            await stale.fetch_balance()
    finally:
        await stale.close()


# -- starting them by hand ------------------------------------------------------------------------


def test_emulator_venue_flag() -> None:
    from typer.testing import CliRunner

    from bot.cli import app
    from bot.emulator.binance import BinanceEmulator
    from bot.emulator.run import make_emulator

    assert type(make_emulator("binance", KEY, SECRET, None, 1_000.0)) is BinanceEmulator
    bybit = make_emulator("bybit", KEY, SECRET, None, 1_000.0)
    assert type(bybit) is BybitEmulator and bybit.core.symbols == (BTC,)
    okx = make_emulator("okx", KEY, SECRET, None, 1_000.0)
    assert type(okx) is OkxEmulator and okx.core.symbols == (ETH,)
    assert okx.core.market_rules(ETH).model == "okx"
    result = CliRunner().invoke(app, ["emulator", "--venue", "kraken"])
    assert result.exit_code != 0 and "binance, bybit, okx" in result.output
