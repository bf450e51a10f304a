"""Exchange truth end to end: a live-mode bot (the real runner, the ccxt.pro client, the Recorder)
against the local exchange, which keeps its own book of every execution.

Every figure the bot records is checked against the exchange's side — the core's own fills (trade
ids, prices, fees, realised PnL) and its wallet — never against what the bot computed:

- fills are recorded once each across a dropped user-data stream, and a close made by hand on the
  exchange is recorded as ``manual``;
- a gap through a stop is recorded at the price it really filled at, and the round trip's net
  PnL is the wallet's change within 1 %; it counts as a stop-out;
- the bot's own position liquidated by the exchange is a liquidation with its loss (and a
  critical alert), an auto-deleverage is an ``adl`` close (not a stop-out);
- a bot killed with SIGKILL and restarted recognises its own position (not adopted) and records
  no fill twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest_live import API_KEY, API_SECRET, BTC, emulator, events, logs, secret_leaks
from test_live_session import start, until
from test_process import spawn

from bot.emulator import Emulator, Fault
from bot.settings import Settings, load_settings
from bot.state.store import Store
from bot.state.trips import round_trips
from bot.trading.engine import Engine

__all__ = ["emulator", "logs"]


def fills_settings(tmp: Path, emu: Emulator, amount: float = 0.01) -> Settings:
    """A live bot on BTC with the user-data stream (``feed.kind = "stream"``)."""
    flat_by = datetime.now(UTC) + timedelta(hours=3)
    return load_settings(
        None,
        {
            "mode": "live",
            "exchange": {
                "api_key": API_KEY,
                "api_secret": API_SECRET,
                "symbols": [BTC],
                "api_url": emu.url,
                "ws_url": emu.ws_url,
                "leverage": 3,
            },
            "feed": {"kind": "stream", "poll_s": 0.2, "timeframe": "1h"},
            "strategy": {
                "path": "strategies_for_tests:TickEnter",
                "params": {"symbol": BTC, "amount": amount, "leverage": 3},
            },
            "guards": {
                "sweep_s": 1,
                "no_overnight": {
                    "flat_by": flat_by.strftime("%H:%M"),
                    "resume_at": (flat_by + timedelta(minutes=30)).strftime("%H:%M"),
                },
            },
            "state": {"dir": str(tmp / "state"), "heartbeat_s": 0.5},
        },
        env_file=None,
        secrets_dir=None,
    )


@contextlib.asynccontextmanager
async def running(s: Settings, run_id: str) -> AsyncIterator[Engine]:
    """The bot running on ``s`` for the block, stopped (and its exit awaited) after it."""
    task, stop, box = await start(s, run_id)
    try:
        yield box[0]
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def exchange_fills(emu: Emulator) -> dict[str, Any]:
    """The exchange's executions by trade id (what ``userTrades`` reports)."""
    return {str(f.id): f for f in emu.core.fills}


def recorded(state: Path) -> list[Any]:
    with Store.open(state) as store:
        return store.fills_of()


def trade_ids(rows: list[Any]) -> list[str]:
    return [str(r.trade_id) for r in rows]


def named(buf: io.StringIO, name: str) -> list[dict[str, Any]]:
    return [e for e in events(buf) if e.get("event") == name]


def assert_statuses_follow(emu: Emulator, state: Path) -> None:
    """No order is open in the store that the exchange has ended (stops end closed, canceled or
    expired), and every ended one carries the exchange's final status."""
    exchange = {o["clientOrderId"]: o for o in emu.orders() if o.get("clientOrderId")}
    with Store.open(state) as store:
        rows = [r for r in store.orders() if r.client_id in exchange]
    assert rows, "the store knows the bot's orders"
    for row in rows:
        theirs = exchange[row.client_id]["status"]
        if theirs != "open":
            assert row.status not in ("acked", "open"), (row.client_id, row.status, theirs)


async def open_position(emu: Emulator, state: Path) -> None:
    """Wait for the strategy's entry, its stop on the exchange and the entry's fill recorded."""
    await until(lambda: emu.core.position(BTC) is not None, "the entry")
    await until(lambda: emu.core.position(BTC).stop_price is not None, "its stop")
    await until(lambda: any(r.role == "entry" for r in recorded(state)), "the entry's fill")


def assert_same_fills(emu: Emulator, rows: list[Any]) -> None:
    """Each of the exchange's executions recorded once, with the exchange's own figures."""
    ids = trade_ids(rows)
    assert len(ids) == len(set(ids)), f"a fill recorded twice: {ids}"
    truth = exchange_fills(emu)
    assert set(ids) == set(truth), (sorted(ids), sorted(truth))
    for row in rows:
        fill = truth[str(row.trade_id)]
        assert (row.side, row.amount) == (fill.side, pytest.approx(fill.amount))
        assert row.price == pytest.approx(fill.price, rel=1e-12)
        assert row.fee == pytest.approx(fill.fee, abs=1e-9)
        assert row.realized_pnl == pytest.approx(fill.realized_pnl, abs=1e-9)


async def test_fills_once_across_a_dropped_stream_and_a_manual_close_is_manual(
    tmp_path: Path, emulator: Emulator, logs: io.StringIO
) -> None:
    emu = emulator
    s = fills_settings(tmp_path, emu)
    state = s.state.dir
    async with running(s, "fills-1") as engine:
        await open_position(emu, state)
        # the stream goes down and reconnects are refused for 3 s; meanwhile the position is
        # closed by hand on the exchange (no client id of the bot's)
        emu.inject(Fault("drop_user_stream", refuse_s=3.0))
        emu.open_external_position(BTC, "sell", emu.core.position(BTC).amount)
        assert emu.core.position(BTC) is None

        def manual_recorded() -> bool:
            return any(r.role == "manual" for r in recorded(state))

        await until(manual_recorded, "the manual close recorded (REST, the stream being down)")
        # the stream comes back; a position opened by hand after that arrives once (the REST
        # reconciliation after the reconnect and the stream both report it)
        await until(lambda: engine.recorder.stream_failures > 0, "the stream to have dropped")
        await asyncio.sleep(3.5)
        emu.open_external_position(BTC, "buy", 0.01)
        await until(lambda: len(recorded(state)) >= len(exchange_fills(emu)), "the last fill")
        await asyncio.sleep(1.5)  # anything recorded twice would be by now
    rows = recorded(state)
    assert_same_fills(emu, rows)
    assert_statuses_follow(emu, state)
    trips = round_trips(rows)
    assert trips and trips[0].reason == "manual" and trips[0].closed
    closes = [e for e in named(logs, "round_trip") if e["reason"] == "manual"]
    assert closes, "the manual close drove the guards as manual"
    assert engine.guard.state.stopouts_today == 0  # a close by hand is not a stop-out
    assert secret_leaks(logs) == []


async def test_a_gap_through_the_stop_is_recorded_at_its_real_price_and_pnl(
    tmp_path: Path, emulator: Emulator, logs: io.StringIO
) -> None:
    emu = emulator
    s = fills_settings(tmp_path, emu, amount=0.05)
    state = s.state.dir
    wallet_before = emu.core.wallet_balance
    async with running(s, "fills-gap") as engine:
        await open_position(emu, state)
        stop_px = emu.core.position(BTC).stop_price
        assert stop_px is not None
        # the market gaps 3 % through the stop (no trading in between): it fills at the gap's
        # price, far from its trigger; then the price comes back before the bot looks
        gap_px = round(stop_px * 0.97, 1)
        emu.set_price(BTC, gap_px, gap=True)
        assert emu.core.position(BTC) is None
        emu.set_price(BTC, 60_000.0)
        await until(lambda: any(r.role == "stop" for r in recorded(state)), "the stop's fill")
        await until(lambda: engine.guard.state.stopouts_today == 1, "the stop-out counted")
    rows = recorded(state)
    assert_same_fills(emu, rows[:2])
    assert_statuses_follow(emu, state)
    stop_fill = next(r for r in rows if r.role == "stop")
    # the real fill: the exchange's price, at the gap (less slippage), not at the trigger
    assert stop_fill.price == exchange_fills(emu)[str(stop_fill.trade_id)].price
    assert gap_px * 0.999 < stop_fill.price <= gap_px
    assert abs(stop_fill.price - stop_px) > 0.02 * stop_px
    trip = round_trips(rows)[0]
    assert trip.reason == "stop"
    # the recorded loss is the wallet's: entry fee + stop fee + price loss, within 1 %
    first = exchange_fills(emu)
    wallet_after_trip = wallet_before + sum(
        f.realized_pnl - f.fee for f in first.values() if str(f.id) in trade_ids(rows[:2])
    )
    change = wallet_after_trip - wallet_before
    assert change < -50.0  # a real loss: 0.05 BTC through a ~3 % gap beyond the stop
    assert trip.net == pytest.approx(change, rel=0.01)
    event = next(e for e in named(logs, "round_trip") if e["reason"] == "stop")
    assert event["net"] == pytest.approx(change, rel=0.01)
    assert named(logs, "position_closed_estimated") == []  # not a guess at the mark


async def test_own_position_liquidated_is_a_liquidation_with_its_loss(
    tmp_path: Path, emulator: Emulator, logs: io.StringIO
) -> None:
    emu = emulator
    s = fills_settings(tmp_path, emu, amount=0.05)
    state = s.state.dir
    async with running(s, "fills-liq"):
        await open_position(emu, state)
        wallet_before = emu.core.wallet_balance
        liq = emu.core.liquidation_price(BTC)
        assert liq is not None
        # the bot's stop is gone (cancelled on the exchange) and, before its sweep can attach a
        # new one, the market gaps past the liquidation price: the exchange liquidates
        for order in emu.core.open_orders(BTC):
            emu.core.cancel_order(order["id"], BTC)
        emu.set_price(BTC, round(liq * 0.99, 1), gap=True)
        assert emu.core.position(BTC) is None
        assert emu.core.liquidations, "the exchange liquidated the position"
        wallet_after = emu.core.wallet_balance
        emu.set_price(BTC, 60_000.0)
        await until(
            lambda: any(r.role == "liquidation" for r in recorded(state)), "the liquidation fill"
        )
        await until(lambda: bool(named(logs, "position_liquidated")), "the critical alert")
    rows = recorded(state)
    liquidation = [r for r in rows if r.role == "liquidation"]
    assert len(liquidation) == 1
    trip = next(t for t in round_trips(rows) if t.reason == "liquidation")
    # its loss: the wallet's change at the liquidation (entry fee paid before wallet_before)
    assert trip.net - (-rows[0].fee) == pytest.approx(wallet_after - wallet_before, rel=0.01)
    assert wallet_after - wallet_before < -100.0
    [alert] = named(logs, "position_liquidated")
    assert alert["level"] == "critical" and alert["alert"] is True
    assert named(logs, "position_closed_estimated") == []


async def test_an_auto_deleverage_is_an_adl_close_and_not_a_stop_out(
    tmp_path: Path, emulator: Emulator, logs: io.StringIO
) -> None:
    emu = emulator
    s = fills_settings(tmp_path, emu)
    state = s.state.dir
    async with running(s, "fills-adl") as engine:
        await open_position(emu, state)
        wallet_before = emu.core.wallet_balance
        emu.emit_adl(BTC, 61_000.0)  # the exchange closes the (winning) long against a loser
        assert emu.core.position(BTC) is None
        gained = emu.core.wallet_balance - wallet_before
        await until(lambda: any(r.role == "adl" for r in recorded(state)), "the ADL fill")
        await until(lambda: bool(named(logs, "position_auto_deleveraged")), "the ADL alert")
    rows = recorded(state)
    trip = next(t for t in round_trips(rows) if t.reason == "adl")
    assert trip.exit_price == pytest.approx(61_000.0)
    assert trip.pnl == pytest.approx(gained + next(r for r in rows if r.role == "adl").fee)
    assert gained > 0
    assert engine.guard.state.stopouts_today == 0


# -- the bot as a process: SIGKILL and restart -----------------------------------------------


def write_live_config(tmp: Path, emu: Emulator) -> Path:
    flat_by = datetime.now(UTC) + timedelta(hours=3)
    cfg = tmp / "live.toml"
    cfg.write_text(
        f"""
mode = "live"
[exchange]
symbols = ["{BTC}"]
api_url = "{emu.url}"
ws_url = "{emu.ws_url}"
leverage = 3
[feed]
kind = "stream"
timeframe = "1h"
[strategy]
path = "strategies_for_tests:TickEnter"
params = {{ symbol = "{BTC}", amount = 0.01, leverage = 3 }}
[state]
dir = "{tmp / "state"}"
heartbeat_s = 0.5
[guards]
sweep_s = 1
[guards.no_overnight]
flat_by = "{flat_by:%H:%M}"
resume_at = "{flat_by + timedelta(minutes=30):%H:%M}"
""",
        encoding="utf-8",
    )
    return cfg


async def spawn_live(cfg: Path, tmp: Path) -> asyncio.subprocess.Process:
    """``guardbot run --live`` with the keys and the second confirmation from the environment."""
    extra = {
        "GUARDBOT_EXCHANGE__API_KEY": API_KEY,
        "GUARDBOT_EXCHANGE__API_SECRET": API_SECRET,
        "GUARDBOT_LIVE_CONFIRM": "yes",
    }
    return await spawn(cfg, tmp, "--live", env_extra=extra)


def log_events(tmp: Path) -> list[dict[str, Any]]:
    out = []
    for line in (tmp / "bot.log").read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


async def test_sigkill_and_restart_record_each_fill_once_and_recognise_the_own_position(
    tmp_path: Path, emulator: Emulator
) -> None:
    emu = emulator
    cfg = write_live_config(tmp_path, emu)
    state = tmp_path / "state"
    proc = await spawn_live(cfg, tmp_path)
    try:
        await until(lambda: emu.core.position(BTC) is not None, "the entry", 40)
        await until(lambda: emu.core.position(BTC).stop_price is not None, "its stop", 20)
        # killed right after the entry: whether its fill reached the store or not
        proc.kill()
        await proc.wait()
        # while it is down, half the position is closed by hand on the exchange
        emu.open_external_position(BTC, "sell", 0.005)
        proc = await spawn_live(cfg, tmp_path)

        def caught_up() -> bool:
            return {str(r.trade_id) for r in recorded(state)} >= set(exchange_fills(emu))

        await until(caught_up, "the fills missed while down", 40)
        proc.kill()  # and again, wherever its start-up had got to
        await proc.wait()

        def starts() -> int:
            return sum(e.get("event") == "bot_started" for e in log_events(tmp_path))

        before = starts()
        proc = await spawn_live(cfg, tmp_path)
        await until(lambda: starts() > before, "the third start", 40)
        await asyncio.sleep(2.0)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    rows = recorded(state)
    assert_same_fills(emu, rows)
    assert [r.role for r in rows][:2] == ["entry", "manual"]
    assert_statuses_follow(emu, state)
    # the restarts knew the position as the bot's own: never adopted
    adopted = [e for e in log_events(tmp_path) if e.get("event") == "position_adopted"]
    assert adopted == [], adopted
    assert emu.core.position(BTC) is not None and emu.core.position(BTC).stop_price is not None


# -- the same history from a paper session ---------------------------------------------------


async def test_a_paper_session_records_the_same_history(
    tmp_path: Path, emulator: Emulator, logs: io.StringIO
) -> None:
    """Paper trading on the local exchange's prices: the paper exchange's own fills are in the
    store once each with their roles, and the round trips show the strategy's exits."""
    from typer.testing import CliRunner

    from bot.cli import app

    emu = emulator
    tree: dict[str, Any] = {
        "mode": "paper",
        "exchange": {"symbols": [BTC], "api_url": emu.url},
        "feed": {"kind": "poll", "poll_s": 0.1, "timeframe": "1h"},
        "strategy": {"path": "strategies_for_tests:Churn", "params": {"amount": 0.01, "hold": 2}},
        "state": {"dir": str(tmp_path / "state"), "heartbeat_s": 0.5},
        "guards": {
            "sweep_s": 1,
            "no_overnight": {"enabled": False},
            "overtrading": {
                "max_entries_per_hour": 10_000,
                "max_entries_per_day": 100_000,
                "min_seconds_between_entries": 0,
            },
            "anti_top_up": {"cooldown_min": 0, "max_stopouts_per_day": 1_000},
        },
    }
    s = load_settings(None, tree, env_file=None, secrets_dir=None)
    price = 60_000.0
    async with running(s, "paper-fills") as engine:
        for step in range(400):
            price *= 1.0002 if step % 2 else 0.9999
            emu.set_price(BTC, round(price, 1))
            await asyncio.sleep(0.05)
            if len(round_trips(recorded(s.state.dir))) >= 3:
                break
    core = engine.executor.exchange.core
    rows = recorded(s.state.dir)
    assert len(round_trips(rows)) >= 3
    truth = {str(f.id): f for f in core.fills}
    assert sorted(trade_ids(rows), key=int) == sorted(truth, key=int)  # each once, none missed
    for row in rows:
        fill = truth[str(row.trade_id)]
        assert (row.price, row.amount, row.fee) == (fill.price, fill.amount, fill.fee)
    assert {r.role for r in rows} == {"entry", "strategy_exit"}
    result = CliRunner().invoke(
        app, ["history", "--json", "--kind", "trades", "--state-dir", str(s.state.dir)]
    )
    assert result.exit_code == 0, result.output
    trips = json.loads(result.output)["trades"]
    assert len(trips) == len(round_trips(rows))
    assert {t["reason"] for t in trips} == {"strategy"}
    # the paper wallet moved by exactly the round trips' net PnL
    assert sum(t["net"] for t in trips) == pytest.approx(
        core.wallet_balance - s.paper.starting_balance, abs=1e-6
    )


async def test_flatten_and_halt_closes_are_recorded_with_their_roles(
    tmp_path: Path, emulator: Emulator, logs: io.StringIO
) -> None:
    """The no-overnight flatten and ``guardbot halt`` close positions: their fills carry the
    roles ``flatten`` and ``halt``, and the closes are in the actions history."""
    from typer.testing import CliRunner

    from bot.cli import app

    emu = emulator
    s = fills_settings(tmp_path, emu)
    state = s.state.dir
    async with running(s, "fills-halt") as engine:
        await open_position(emu, state)
        assert await engine.job_flatten(tries=5, wait_s=0.2)
        assert emu.core.position(BTC) is None
        await until(lambda: any(r.role == "flatten" for r in recorded(state)), "the flatten fill")
        emu.open_external_position(BTC, "buy", 0.01)  # opened by hand: adopted and guarded
        await until(lambda: emu.core.position(BTC).stop_price is not None, "the adopted stop")
        result = CliRunner().invoke(app, ["halt", "--reason", "test", "--state-dir", str(state)])
        assert result.exit_code == 0, result.output
        await until(lambda: emu.core.position(BTC) is None, "the halt's close")
        await until(lambda: any(r.role == "halt" for r in recorded(state)), "the halt fill")
    rows = recorded(state)
    assert_same_fills(emu, rows)
    assert [r.role for r in rows] == ["entry", "flatten", "manual", "halt"]
    result = CliRunner().invoke(
        app, ["history", "--json", "--kind", "all", "--state-dir", str(state)]
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert [t["role"] for t in shown["trades"]] == ["halt", "flatten"]  # newest first
    closes = {(a["rule"], a["code"]) for a in shown["actions"] if a["kind"] == "close"}
    assert {("manual", "kill_switch"), ("no_overnight", "flatten")} <= closes, closes
