"""A full live session through the real ccxt client against the local Binance emulator:
start → reconcile (adopt an outside position, attach its stop) → entry with its stop → the guard
sweep acts near liquidation → no-overnight flatten → restart, with the server-side invariants
checked at the end: no client id used twice, no position without a stop, nothing beyond the
caps, the API secret in no log line.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest_live import API_KEY, API_SECRET, BTC, ETH, emulator, logs, secret_leaks, violations

from bot.emulator import Emulator
from bot.runner import run_bot
from bot.settings import Settings, load_settings
from bot.state.store import Store
from bot.trading.engine import Engine

__all__ = ["emulator", "logs"]  # fixtures used by name


def hhmm(dt: datetime) -> str:
    return dt.strftime("%H:%M")


def live_settings(tmp: Path, emu: Emulator) -> Settings:
    now = datetime.now(UTC)
    # a session window that is open now, wherever in the day the test runs
    flat_by = now + timedelta(hours=3)
    return load_settings(
        None,
        {
            "mode": "live",
            "exchange": {
                "api_key": API_KEY,
                "api_secret": API_SECRET,
                "symbols": [BTC, ETH],
                "api_url": emu.url,
                "ws_url": emu.ws_url,
                "leverage": 3,
            },
            "feed": {"kind": "poll", "poll_s": 0.2, "timeframe": "1h"},
            "strategy": {
                "path": "strategies_for_tests:TickEnter",
                "params": {"symbol": ETH, "amount": 0.1, "leverage": 3},
            },
            "guards": {
                "sweep_s": 1,
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


async def until(cond: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def start(
    settings: Settings, run_id: str
) -> tuple[asyncio.Task[Engine], asyncio.Event, list[Engine]]:
    stop = asyncio.Event()
    box: list[Engine] = []
    task = asyncio.create_task(
        run_bot(settings, run_id, stop=stop, install_signals=False, started=box.append)
    )
    await until(lambda: bool(box) or task.done(), "the bot to start")
    if task.done():
        task.result()  # re-raise a start-up failure
    return task, stop, box


def server_position(emu: Emulator, symbol: str) -> Any:
    return emu.core.position(symbol)


async def test_full_live_session_against_the_local_exchange(
    tmp_path: Path,
    emulator: Emulator,
    logs: io.StringIO,
) -> None:
    emu = emulator
    # a 20x position opened by hand on the exchange, without a stop
    emu.core.set_leverage(20, BTC)
    emu.open_external_position(BTC, "buy", 0.05)
    assert server_position(emu, BTC).stop_price is None
    s = live_settings(tmp_path, emu)

    task, stop, box = await start(s, "e2e-1")
    engine = box[0]
    # reconcile adopted the outside position and attached a stop on the exchange
    await until(lambda: server_position(emu, BTC).stop_price is not None, "a stop on BTC")
    # the strategy's entry went out through the guards with its exchange-side stop
    await until(lambda: server_position(emu, ETH) is not None, "the ETH entry")
    await until(lambda: server_position(emu, ETH).stop_price is not None, "the ETH stop")
    eth = server_position(emu, ETH)
    assert eth.leverage <= s.guards.position_cap.max_leverage

    # the mark walks towards the 20x position's liquidation price: the sweep acts first
    btc_before = server_position(emu, BTC).amount
    liq = emu.core.liquidation_price(BTC)
    assert liq is not None
    stop_px = server_position(emu, BTC).stop_price
    zone = liq / (1 - s.guards.liquidation.reduce_at_pct / 100)  # mark at reduce_at_pct from liq
    assert zone > stop_px
    near = (stop_px + zone) / 2  # inside the reduce zone, above the attached stop
    emu.set_price(BTC, near)
    await until(
        lambda: server_position(emu, BTC) is None or server_position(emu, BTC).amount < btc_before,
        "the guard sweep to reduce BTC",
    )
    with Store.open(s.state.dir) as store:
        kinds = {(a.action.rule, a.action.kind) for a in store.recent_actions(50)}
    assert ("liquidation", "reduce") in kinds or ("liquidation", "close") in kinds

    # flat_by: the no-overnight flatten closes everything and cancels entries
    assert await engine.job_flatten(tries=5, wait_s=0.2)
    assert server_position(emu, BTC) is None and server_position(emu, ETH) is None
    entries_before = list(engine.guard.state.entries)

    stop.set()
    await asyncio.wait_for(task, 10)

    # restart: counters and the cooldown of the guard close are restored, so the strategy's
    # fresh attempt to enter is refused (and recorded), and nothing is sent
    orders_before = len(emu.orders())
    task2, stop2, box2 = await start(s, "e2e-2")
    engine2 = box2[0]
    assert engine2.guard.state.entries == entries_before
    assert engine2.guard.state.symbol(ETH).cooldown_until > datetime.now(UTC).timestamp()

    def refused_by_restored_state() -> bool:
        # overtrading's spacing is evaluated before anti_top_up's cooldown: either refusal
        # comes from counters that survived the restart
        with Store.open(s.state.dir) as store:
            return any(
                d.decision.code in ("rate_spacing", "cooldown")
                for d in store.recent_decisions(20, ETH)
            )

    await until(refused_by_restored_state, "the refusal after restart")
    stop2.set()
    await asyncio.wait_for(task2, 10)
    assert len(emu.orders()) == orders_before

    assert violations(emu, exempt=frozenset()) == []
    assert secret_leaks(logs) == []
    assert API_SECRET not in logs.getvalue()


@pytest.mark.parametrize("confirm", ["flag", "env"])
def test_live_mode_with_both_confirmations_runs_the_engine(
    confirm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Covered end to end above; here only that the CLI reaches the engine (a closed port)."""
    from typer.testing import CliRunner

    from bot.cli import app

    for key in ("GUARDBOT_LIVE_CONFIRM",):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GUARDBOT_EXCHANGE__API_KEY", API_KEY)
    monkeypatch.setenv("GUARDBOT_EXCHANGE__API_SECRET", API_SECRET)
    monkeypatch.setenv("GUARDBOT_EXCHANGE__API_URL", "http://127.0.0.1:9")  # nothing listens
    args = ["run", "--set", 'mode="live"', "--set", f'state.dir="{tmp_path / "st"}"']
    if confirm == "flag":
        args.append("--live")
    else:
        monkeypatch.setenv("GUARDBOT_LIVE_CONFIRM", "yes")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output  # the start gate: preflight failed
    assert "second confirmation" not in result.output
    assert "[FAIL] connectivity: cannot reach the exchange" in result.output
    assert "preflight FAILED" in result.output
    assert API_SECRET not in result.output


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_running_bot_serves_metrics_status_and_sends_alerts(
    tmp_path: Path,
    emulator: Emulator,
) -> None:
    """Paper on live-like data with every operating surface on: /metrics, the status page's
    /health and /api/status, and a webhook receiving the process start/stop alerts."""
    from aiohttp import ClientSession, web

    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    runner = web.AppRunner(receiver)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    metrics_port, status_port = free_port(), free_port()
    s = load_settings(
        None,
        {
            "mode": "paper",
            "exchange": {"symbols": [BTC], "api_url": emulator.url},
            "feed": {"kind": "poll", "poll_s": 0.2, "timeframe": "1h"},
            "strategy": {
                "path": "strategies_for_tests:TickEnter",
                "params": {"symbol": BTC, "amount": 0.01},
            },
            "guards": {"no_overnight": {"enabled": False}},
            "state": {"dir": str(tmp_path / "state"), "heartbeat_s": 1},
            "metrics": {"enabled": True, "port": metrics_port},
            "status": {"enabled": True, "port": status_port, "token": "s3cret-status-token"},
            "notify": {"webhook_url": f"http://127.0.0.1:{hook_port}/hook"},
        },
        env_file=None,
        secrets_dir=None,
    )
    try:
        task, stop, box = await start(s, "ops-1")
        engine = box[0]
        await until(lambda: bool(engine.view.account.positions), "the paper entry")
        async with ClientSession() as http:
            # the HTTP thread serves what the trading loop last published (once a second)
            text = ""
            for _ in range(50):
                async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
                    text = await resp.text()
                assert resp.status == 200
                if 'guardbot_position_stop_present{symbol="BTC/USDT:USDT"} 1.0' in text:
                    break
                await asyncio.sleep(0.1)
            assert 'guardbot_position_stop_present{symbol="BTC/USDT:USDT"} 1.0' in text
            assert 'guardbot_mark_age_seconds{symbol="BTC/USDT:USDT"}' in text
            assert "guardbot_exchange_reachable 1.0" in text
            assert "guardbot_guard_decisions_total" in text
            async with http.get(f"http://127.0.0.1:{status_port}/health") as resp:
                assert resp.status == 200
            async with http.get(f"http://127.0.0.1:{status_port}/api/status") as resp:
                assert resp.status == 401  # the token is required
            headers = {"Authorization": "Bearer s3cret-status-token"}
            async with http.get(
                f"http://127.0.0.1:{status_port}/api/status", headers=headers
            ) as resp:
                status = await resp.json()
            assert status["positions"][0]["symbol"] == BTC
            assert status["positions"][0]["stop"] is not None
        stop.set()
        await asyncio.wait_for(task, 10)
    finally:
        await runner.cleanup()
    kinds = [a.get("kind") for a in received]
    assert "process_start" in kinds and "process_stop" in kinds


async def test_seatbelt_guards_an_account_traded_by_hand_on_the_exchange(
    tmp_path: Path,
    emulator: Emulator,
) -> None:
    """strategy = "none": the bot trades nothing; what a person does on the exchange is cut back
    to the caps, gets a stop, and a top-up of a loser is reduced again."""
    emu = emulator
    base = live_settings(tmp_path, emu)
    s = base.model_copy(update={"strategy": base.strategy.model_copy(update={"path": "none"})})
    task, stop, _ = await start(s, "belt-1")
    try:
        # by hand: 0.5 BTC at 20x (30,000 notional on a 10,000 account), no stop
        emu.core.set_leverage(20, BTC)
        emu.open_external_position(BTC, "buy", 0.5)

        def cut_and_protected() -> bool:
            p = server_position(emu, BTC)
            return p is not None and p.amount < 0.5 and p.stop_price is not None

        await until(cut_and_protected, "the seatbelt to cut the position and attach a stop")
        pos = server_position(emu, BTC)
        # risk at the default 2 % stop must fit 1 % of equity: ≈ 100 / 1,200 ≈ 0.08 BTC
        assert pos.amount <= 0.1
        # a top-up of the (now losing) position by hand is reduced back
        emu.set_price(BTC, 59_600.0)
        await asyncio.sleep(1.5)  # a sweep sees the loss
        held = server_position(emu, BTC).amount
        emu.open_external_position(BTC, "buy", 0.02)
        await until(
            lambda: abs(server_position(emu, BTC).amount - held) < 1e-9, "the top-up to be cut"
        )
        with Store.open(s.state.dir) as store:
            codes = {a.action.code for a in store.recent_actions(50) if a.action.rule == "seatbelt"}
        assert "top_up_losing" in codes
        assert "resized" in codes  # the first cut: resized to the risk and leverage caps
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    # The person chose 20x: the seatbelt cut the size to the risk cap and protected it, but the
    # leverage of an open isolated position is not something it can change (that would mean
    # adding isolated margin), so the leverage cap is exempt for this hand-made position.
    assert violations(emu, exempt=frozenset({BTC})) == []
    held = server_position(emu, BTC)
    assert held is not None and held.stop_price is not None
