"""The running bot keeps guarding while the exchange misbehaves (issue: the guard loop never
stalls). A live-mode bot (the real runner, ccxt client and engine) against the local exchange
with injected faults:

- an entry the exchange accepts but never answers: the position gets its stop within 2 s of the
  fill, no scheduled sweep is skipped, marks stay fresh;
- the same with order look-ups hanging as well (the entry's outcome stays unknown): the same;
- health goes red with a one-line reason while the exchange does not answer, and green again.

Times are measured on the exchange side: the test watches the emulator's book every 10 ms.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest_live import API_KEY, API_SECRET, BTC, emulator, violations
from test_live_session import start, until

from bot.emulator import Emulator, Fault
from bot.settings import Settings, load_settings
from bot.state.heartbeat import check_health
from bot.trading.engine import Engine

__all__ = ["emulator"]

SWEEP_S = 1.0


def runtime_settings(tmp: Path, emu: Emulator, **extra: Any) -> Settings:
    now = datetime.now(UTC)
    flat_by = now + timedelta(hours=3)
    tree: dict[str, Any] = {
        "mode": "live",
        "exchange": {
            "api_key": API_KEY,
            "api_secret": API_SECRET,
            "symbols": [BTC],
            "api_url": emu.url,
            "ws_url": emu.ws_url,
            "leverage": 3,
        },
        "feed": {"kind": "poll", "poll_s": 0.2, "timeframe": "1h"},
        "strategy": {
            "path": "strategies_for_tests:TickEnter",
            "params": {"symbol": BTC, "amount": 0.01, "leverage": 3},
        },
        "guards": {
            "sweep_s": SWEEP_S,
            "no_overnight": {
                "flat_by": flat_by.strftime("%H:%M"),
                "resume_at": (flat_by + timedelta(minutes=30)).strftime("%H:%M"),
            },
        },
        "state": {"dir": str(tmp / "state"), "heartbeat_s": 0.5},
    }
    for key, value in extra.items():
        tree.setdefault(key, {}).update(value)
    return load_settings(None, tree, env_file=None, secrets_dir=None)


class Watch:
    """Samples the exchange's book and the engine every 10 ms."""

    def __init__(self, emu: Emulator, engine: Engine) -> None:
        self.emu = emu
        self.engine = engine
        self.filled_at: float | None = None
        self.stopped_at: float | None = None
        self.sweeps: list[float] = []
        self.worst_mark_age = 0.0

    async def run(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            now = loop.time()
            pos = self.emu.core.position(BTC)
            if pos is not None and self.filled_at is None:
                self.filled_at = now
            if pos is not None and pos.stop_price is not None and self.stopped_at is None:
                self.stopped_at = now
            last = self.engine.last_sweep
            if last is not None and (not self.sweeps or last != self.sweeps[-1]):
                self.sweeps.append(last)
            mark = self.engine.marks.get(BTC)
            if mark is not None and self.filled_at is not None:
                self.worst_mark_age = max(self.worst_mark_age, self.engine.clock() - mark.ts)
            await asyncio.sleep(0.01)

    def max_sweep_gap(self) -> float:
        gaps = [b - a for a, b in itertools.pairwise(self.sweeps)]
        return max(gaps) if gaps else float("inf")


async def _hung_entry(tmp_path: Path, emu: Emulator, *, slow_lookups: bool) -> Watch:
    # the entry is accepted (and fills) but its answer is held far beyond any deadline
    emu.inject(Fault("timeout", when={"type": "MARKET"}, delay_s=60.0))
    if slow_lookups:
        emu.inject(Fault("timeout", path="/fapi/v1/order", method="GET", times=100, delay_s=60.0))
    task, stop, box = await start(runtime_settings(tmp_path, emu), "hung")
    try:
        watch = Watch(emu, box[0])
        await watch.run(8.0)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    return watch


@pytest.mark.parametrize("slow_lookups", [False, True], ids=["hung-entry", "slow-lookups"])
async def test_a_hung_entry_gets_its_stop_within_2s_and_no_sweep_is_skipped(
    tmp_path: Path,
    emulator: Emulator,
    caplog: pytest.LogCaptureFixture,
    slow_lookups: bool,
) -> None:
    caplog.set_level(logging.WARNING, logger="apscheduler")
    watch = await _hung_entry(tmp_path, emulator, slow_lookups=slow_lookups)
    assert watch.filled_at is not None, "the entry never reached the exchange"
    assert watch.stopped_at is not None, "the position never got a stop"
    unprotected = watch.stopped_at - watch.filled_at
    assert unprotected < 2.0, f"position without a stop for {unprotected:.2f}s"
    # every scheduled sweep ran: a skipped one would leave two periods between completions
    assert len(watch.sweeps) >= 7
    assert watch.max_sweep_gap() < 2.0 * SWEEP_S
    assert "maximum number of running instances" not in caplog.text
    assert watch.worst_mark_age < 1.0  # prices kept flowing
    assert violations(emulator) == []  # one entry, one stop, no duplicate client id


async def test_health_goes_red_while_the_exchange_is_unreachable_and_green_after(
    tmp_path: Path, emulator: Emulator
) -> None:
    emu = emulator
    s = runtime_settings(
        tmp_path,
        emu,
        guards={"stale_price_s": 3},
        health={"unreachable_s": 2},
        exchange={"read_deadline_s": 1},
    )
    state = s.state.dir
    task, stop, _ = await start(s, "health")
    try:
        await until(lambda: check_health(state, 5).ok, "health to be green", 15)
        await emu.stop()  # the exchange goes away (connection refused)
        await until(lambda: not check_health(state, 5).ok, "health to go red", 15)
        red = check_health(state, 5)
        assert "\n" not in red.detail
        assert "mark" in red.detail or "unreachable" in red.detail
        await until(
            lambda: any("unreachable" in r for r in check_health(state, 5).reasons),
            "the unreachable exchange to be named",
            15,
        )
        await emu.start(port=int(emu.url.rsplit(":", 1)[1]))
        await until(lambda: check_health(state, 5).ok, "health to be green again", 20)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
