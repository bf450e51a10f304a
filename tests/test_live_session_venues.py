"""The full live session on Bybit and on OKX: ``run_bot`` through the real ccxt client
(``bybit`` / ``okx``) against the Bybit v5 and OKX v5 emulators, as ``test_live_session`` runs
it against Binance's.

Each emulator bundles one market (Bybit BTC/USDT:USDT; OKX ETH/USDT:USDT, 0.1 ETH a contract:
no BTC-USDT-SWAP tier table is bundled, see ``paper/data/README.md``), so the session runs on
one symbol: start → reconcile (adopt a 20x position opened by hand, attach its stop) → the
guard sweep reduces it near liquidation → no-overnight flatten → the strategy's entry with its
mark-price stop (it waits for a flat book and a price 1 % above the start) → restart (nothing
sent again). It ends with the invariants of Binance's session (no client id used twice, no
position without a stop, nothing beyond the caps, the API secret in no log line) and with the
captured requests: the venue's mark-price trigger (Bybit ``triggerBy=MarkPrice``, OKX
``slTriggerPxType=mark``) on every stop, and amounts in the venue's units (OKX: contracts).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from conftest_live import API_KEY, API_SECRET, events, logs, secret_leaks, violations
from test_live_session import hhmm, server_position, start, until

from bot.emulator.bybit import BybitEmulator
from bot.emulator.okx import OkxEmulator
from bot.emulator.server import EmulatorServer
from bot.settings import Settings, load_settings
from bot.state.store import Store
from paper.config import PaperConfig

__all__ = ["logs"]  # fixtures used by name

PASSPHRASE = "gbPassphrase-1"
#: Where ccxt ``okx`` sends an ordinary order (``create_order`` uses the batch endpoint).
OKX_ORDER_PATHS = ("/api/v5/trade/batch-orders", "/api/v5/trade/order")


@dataclass(frozen=True)
class Case:
    venue: str
    symbol: str
    price: float
    #: The hand-made position (base units) and the strategy's entry.
    outside: float
    entry: float
    #: Base units per contract (what the venue's order amounts count).
    contract: float


CASES = {
    "bybit": Case("bybit", "BTC/USDT:USDT", 60_000.0, 0.05, 0.01, 1.0),
    "okx": Case("okx", "ETH/USDT:USDT", 2_000.0, 1.5, 0.3, 0.1),
}


@pytest.fixture(params=sorted(CASES))
async def venue(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Case, EmulatorServer]]:
    case = CASES[request.param]
    config = PaperConfig(liquidation_profile=case.venue, auto_funding=False)  # type: ignore[arg-type]
    emu: EmulatorServer
    if case.venue == "bybit":
        emu = BybitEmulator(api_key=API_KEY, api_secret=API_SECRET, config=config)
    else:
        emu = OkxEmulator(
            api_key=API_KEY, api_secret=API_SECRET, passphrase=PASSPHRASE, config=config
        )
    emu.set_price(case.symbol, case.price)
    await emu.start()
    try:
        yield case, emu
    finally:
        await emu.stop()


def venue_settings(tmp: Path, case: Case, emu: EmulatorServer) -> Settings:
    now = datetime.now(UTC)
    flat_by = now + timedelta(hours=3)
    return load_settings(
        None,
        {
            "mode": "live",
            "exchange": {
                "id": case.venue,
                "api_key": API_KEY,
                "api_secret": API_SECRET,
                "password": PASSPHRASE,
                "symbols": [case.symbol],
                "api_url": emu.url,
                "leverage": 3,
            },
            # ccxt's throttle (on, as in production) spaces OKX's mark-price calls 220 ms
            # apart and an account read takes ~0.6 s: polls and sweeps a live bot can afford
            "feed": {"kind": "poll", "poll_s": 1.0, "timeframe": "1h"},
            "strategy": {
                "path": "strategies_for_tests:TickEnter",
                "params": {
                    "symbol": case.symbol,
                    "amount": case.entry,
                    "leverage": 3,
                    "min_price": case.price * 1.01,
                },
            },
            "guards": {
                "sweep_s": 2,
                # the entry follows the guard's close on the same symbol
                "anti_top_up": {"cooldown_min": 0},
                "no_overnight": {
                    "flat_by": hhmm(flat_by),
                    "resume_at": hhmm(flat_by + timedelta(minutes=30)),
                },
            },
            "state": {"dir": str(tmp / "state"), "heartbeat_s": 1},
        },
        env_file=None,
        secrets_dir=None,
    )


def creates(case: Case, emu: EmulatorServer) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The orders the bot sent (accepted ones): (stops, the others)."""
    stops: list[dict[str, str]] = []
    others: list[dict[str, str]] = []
    for r in emu.requests:
        if r.method != "POST" or r.status != 200:
            continue
        params = dict(r.params)
        if case.venue == "bybit" and r.path == "/v5/order/create":
            (stops if params.get("triggerPrice") else others).append(params)
        elif case.venue == "okx" and r.path == "/api/v5/trade/order-algo":
            stops.append(params)
        elif case.venue == "okx" and r.path in (
            "/api/v5/trade/batch-orders",
            "/api/v5/trade/order",
        ):
            others.append(params)
    return stops, others


async def test_full_live_session_on_bybit_and_okx(
    tmp_path: Path,
    venue: tuple[Case, EmulatorServer],
    logs: io.StringIO,
) -> None:
    case, emu = venue
    sym = case.symbol
    # a 20x isolated position opened by hand on the exchange, without a stop
    if isinstance(emu, BybitEmulator):  # a unified account's margin mode is the account's
        emu.account_margin_mode = "ISOLATED_MARGIN"
    emu.core.set_margin_mode("isolated", sym)
    emu.core.set_leverage(20, sym)
    emu.open_external_position(sym, "buy", case.outside)
    assert server_position(emu, sym).stop_price is None
    s = venue_settings(tmp_path, case, emu)

    task, stop, box = await start(s, f"{case.venue}-1")
    engine = box[0]
    # reconcile adopted the outside position and attached a stop on the exchange
    await until(lambda: server_position(emu, sym).stop_price is not None, "the adopted stop")
    assert "position_adopted" in {e.get("event") for e in events(logs)}

    # the mark walks towards the 20x position's liquidation price: the sweep acts first
    before = server_position(emu, sym).amount
    liq = emu.core.liquidation_price(sym)
    assert liq is not None
    stop_px = server_position(emu, sym).stop_price
    zone = liq / (1 - s.guards.liquidation.reduce_at_pct / 100)
    assert zone > stop_px
    emu.set_price(sym, (stop_px + zone) / 2)
    await until(
        lambda: server_position(emu, sym) is None or server_position(emu, sym).amount < before,
        "the guard sweep to reduce the position",
    )

    def acted_on_liquidation() -> bool:  # the action is recorded once its order is answered
        with Store.open(s.state.dir) as store:
            kinds = {(a.action.rule, a.action.kind) for a in store.recent_actions(50)}
        return ("liquidation", "reduce") in kinds or ("liquidation", "close") in kinds

    await until(acted_on_liquidation, "the liquidation guard's action in the store")

    # flat_by: the no-overnight flatten closes it
    assert await engine.job_flatten(tries=5, wait_s=0.2)
    assert server_position(emu, sym) is None

    # the price rises past the strategy's threshold: it enters, with its stop on the exchange
    emu.set_price(sym, case.price * 1.01)
    await until(lambda: server_position(emu, sym) is not None, "the strategy's entry")
    await until(lambda: server_position(emu, sym).stop_price is not None, "the entry's stop")
    held = server_position(emu, sym)
    assert held.amount == pytest.approx(case.entry)
    assert held.leverage <= s.guards.position_cap.max_leverage
    stop.set()
    await asyncio.wait_for(task, 10)

    # restart: reconcile finds the position protected and sends nothing
    orders_before = len(emu.orders())
    task2, stop2, _ = await start(s, f"{case.venue}-2")
    await asyncio.sleep(1.5)  # a sweep and a few ticks
    stop2.set()
    await asyncio.wait_for(task2, 10)
    assert len(emu.orders()) == orders_before
    assert server_position(emu, sym) is not None

    # the captured requests: every stop on the mark price, amounts in the venue's units
    stops, others = creates(case, emu)
    assert len(stops) >= 2  # the adopted position's and the entry's
    for sent in stops:
        if case.venue == "bybit":
            assert sent["triggerBy"] == "MarkPrice" and sent["reduceOnly"] == "true"
            assert sent["positionIdx"] == "0" and "workingType" not in sent
        else:
            assert sent["ordType"] == "conditional" and sent["slTriggerPxType"] == "mark"
            assert sent["reduceOnly"] == "true" and sent["tdMode"] == "isolated"
            assert sent["algoClOrdId"].startswith("gb")
    sizes = [Decimal(p["qty" if case.venue == "bybit" else "sz"]) for p in others]
    entry_size = Decimal(repr(case.entry)) / Decimal(repr(case.contract))
    assert entry_size in sizes  # the entry, in contracts on OKX (0.3 ETH = 3 contracts)
    reduce_only = [p for p in others if p.get("reduceOnly") == "true"]
    assert reduce_only  # the sweep's reduce and the flatten's close
    for p in reduce_only:
        size = Decimal(p["qty" if case.venue == "bybit" else "sz"]) * Decimal(repr(case.contract))
        assert size <= Decimal(repr(case.outside))

    # the fills were recorded in base units
    with Store.open(s.state.dir) as store:
        fills = list(store.fills_of())
    entry_fills = [f for f in fills if f.role == "entry"]
    assert entry_fills and sum(f.amount for f in entry_fills) == pytest.approx(case.entry)

    # set-up on restart: "not modified" (Bybit 110025 / 110043) counts as done
    names = {e.get("event") for e in events(logs)}
    assert not names & {"symbol_setup_failed", "account_setup_failed", "position_without_stop"}
    assert violations(emu, exempt=frozenset()) == []  # type: ignore[arg-type]
    assert secret_leaks(logs) == []
    assert API_SECRET not in logs.getvalue() and PASSPHRASE not in logs.getvalue()


async def test_download_markets_and_tiers_from_each_venue(
    tmp_path: Path, venue: tuple[Case, EmulatorServer]
) -> None:
    """``guardbot download``'s markets snapshot on Bybit and OKX: markets and the venue's own
    tiers (public there: fetched without keys). The emulators serve no candle history, so
    candles, mark candles and funding are not exercised here."""
    import json

    from bot.cli.research import _client
    from bot.research.download import download

    case, emu = venue
    client = _client(case.venue, emu.url)
    try:
        out = await download(
            client, [case.symbol], "5m", 0, 1, tmp_path, kinds=(), exchange_id=case.venue
        )
    finally:
        await client.close()
    how = "fetch_leverage_tiers" if case.venue == "bybit" else "fetch_market_leverage_tiers"
    assert out.tiers_source == f"fetched from {case.venue} ({how})"
    assert out.markets_path is not None
    snap = json.loads(out.markets_path.read_text())
    assert snap["markets"][case.symbol]["contractSize"] == case.contract
    assert snap["tiers"][case.symbol]  # the venue's risk limits / position tiers
