"""The bot as a real process: paper trading on live-like market data (the local exchange's public
endpoints), stopped with SIGTERM (clean exit within 10 s, state kept) and killed with SIGKILL at
random points and restarted (no lost fills, no duplicate orders, counters intact).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest_live import BTC, emulator

from bot.emulator import Emulator
from bot.exchange.paper import PAPER_SNAPSHOT_KEY
from bot.state.heartbeat import check_health
from bot.state.store import Store

__all__ = ["emulator"]

TESTS = Path(__file__).resolve().parent


def write_config(tmp: Path, emu: Emulator) -> Path:
    cfg = tmp / "paper.toml"
    cfg.write_text(
        f"""
mode = "paper"
[exchange]
symbols = ["{BTC}"]
api_url = "{emu.url}"
[feed]
kind = "poll"
poll_s = 0.1
timeframe = "1h"
[strategy]
path = "strategies_for_tests:Churn"
params = {{ amount = 0.01, hold = 2 }}
[state]
dir = "{tmp / "state"}"
heartbeat_s = 0.5
[guards]
sweep_s = 1
[guards.no_overnight]
enabled = false
[guards.overtrading]
max_entries_per_hour = 10000
max_entries_per_day = 100000
min_seconds_between_entries = 0
[guards.anti_top_up]
cooldown_min = 0
max_stopouts_per_day = 1000
""",
        encoding="utf-8",
    )
    return cfg


async def spawn(
    cfg: Path, tmp: Path, *args: str, env_extra: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    """``guardbot run --config cfg [args]`` as a process in ``tmp`` (JSON log in bot.log), with
    no GUARDBOT_ variable of the developer's shell (``env_extra`` adds some)."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("GUARDBOT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env.update(env_extra or {})
    log = (tmp / "bot.log").open("ab")
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from bot.cli import main; main()",
        "run",
        "--config",
        str(cfg),
        *args,
        "--log-format",
        "json",
        cwd=tmp,
        env=env,
        stdout=log,
        stderr=log,
    )


def beating(state: Path, proc: asyncio.subprocess.Process) -> Callable[[], bool]:
    """True once this very process has written a fresh heartbeat (not a killed predecessor)."""

    def check() -> bool:
        health = check_health(state, 5)
        return health.ok and health.beat.get("pid") == proc.pid

    return check


async def until(cond: Callable[[], bool], what: str, timeout: float = 40.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def store_view(state: Path) -> dict[str, Any]:
    if not (state / "guardbot.sqlite").exists():
        return {"filled": 0}
    with Store.open(state) as store:
        orders = store.orders()
        return {
            "filled": sum(1 for o in orders if o.status == "filled"),
            "orders": orders,
            "in_flight": store.orders_in_flight(),
            "snapshot": store.kv_get(PAPER_SNAPSHOT_KEY),
            "guard": store.load_guard_state(),
            "decisions": store.recent_decisions(100_000),
        }


async def move_prices(emu: Emulator, stop: asyncio.Event) -> None:
    rng = random.Random(7)
    price = 60_000.0
    while not stop.is_set():
        price *= 1 + rng.uniform(-0.0005, 0.0005)
        emu.set_price(BTC, round(price, 1))
        await asyncio.sleep(0.05)


async def test_sigterm_exits_cleanly_and_a_restart_resumes_the_paper_account(
    tmp_path: Path,
    emulator: Emulator,
) -> None:
    cfg = write_config(tmp_path, emulator)
    state = tmp_path / "state"
    stop_prices = asyncio.Event()
    mover = asyncio.create_task(move_prices(emulator, stop_prices))
    try:
        proc = await spawn(cfg, tmp_path)
        await until(beating(state, proc), "the first heartbeat")
        await until(lambda: store_view(state)["filled"] >= 3, "a few paper fills")
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 10)
        assert rc == 0, (tmp_path / "bot.log").read_text()[-3000:]
        health = check_health(state, 60)
        assert not health.ok and health.beat.get("status") == "stopped"
        before = store_view(state)
        assert before["in_flight"] == []
        wallet = before["snapshot"]["wallet_balance"]

        proc = await spawn(cfg, tmp_path)
        await until(beating(state, proc), "the heartbeat after restart")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        log = (tmp_path / "bot.log").read_text()
        resumed = [json.loads(x) for x in log.splitlines() if '"paper_resumed"' in x]
        assert resumed and resumed[-1]["wallet"] == wallet
    finally:
        stop_prices.set()
        await mover


async def test_sigkill_at_random_points_loses_nothing(tmp_path: Path, emulator: Emulator) -> None:
    cfg = write_config(tmp_path, emulator)
    state = tmp_path / "state"
    rng = random.Random(20251010)
    stop_prices = asyncio.Event()
    mover = asyncio.create_task(move_prices(emulator, stop_prices))
    try:
        for _ in range(3):
            proc = await spawn(cfg, tmp_path)
            await until(beating(state, proc), "a heartbeat")
            await asyncio.sleep(rng.uniform(0.2, 2.5))
            proc.kill()
            await proc.wait()
        proc = await spawn(cfg, tmp_path)
        await until(beating(state, proc), "the final heartbeat")
        await asyncio.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        stop_prices.set()
        await mover

    view = store_view(state)
    assert view["filled"] > 0
    assert view["in_flight"] == []  # every order a crash left in flight was resolved
    paper_orders: dict[str, dict[str, Any]] = {}
    for o in view["snapshot"]["orders"]:
        cid = o.get("client_id") or o.get("clientOrderId")
        if cid:
            assert cid not in paper_orders, f"client id {cid} sent twice"
            paper_orders[cid] = o
    # no lost fills: every fill the store acknowledged is in the paper account
    for row in view["orders"]:
        if row.status == "filled":
            assert row.client_id in paper_orders, f"acknowledged fill {row.client_id} lost"
    # counters intact: one counted entry per approved opening decision
    opening_allowed = [
        d for d in view["decisions"] if d.decision.allowed and not d.decision.intent.reduce_only
    ]
    assert len(view["guard"]["entries"]) == len(opening_allowed)


async def test_guardbot_reload_applies_a_new_config_and_rejects_a_bad_one(
    tmp_path: Path, emulator: Emulator
) -> None:
    from typer.testing import CliRunner

    from bot.cli import app

    cfg = write_config(tmp_path, emulator)
    state = tmp_path / "state"
    log_path = tmp_path / "bot.log"
    proc = await spawn(cfg, tmp_path)
    try:
        await until(beating(state, proc), "the heartbeat")
        text = cfg.read_text(encoding="utf-8")
        cfg.write_text(text + "[guards.position_cap]\nmax_leverage = 2\n", encoding="utf-8")
        result = CliRunner().invoke(app, ["reload", "--state-dir", str(state)])
        assert result.exit_code == 0, result.output
        await until(lambda: '"config_reloaded"' in log_path.read_text(), "the reload")
        reloaded = [
            json.loads(x) for x in log_path.read_text().splitlines() if "config_reloaded" in x
        ]
        assert reloaded[-1]["changes"] == {"position_cap.max_leverage": [5.0, 2.0]}

        cfg.write_text(text + "[guards.position_cap]\nmax_leverage = -3\n", encoding="utf-8")
        os.kill(proc.pid, signal.SIGHUP)
        await until(lambda: '"config_reload_rejected"' in log_path.read_text(), "the rejection")
        assert proc.returncode is None  # still running on the old parameters
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
