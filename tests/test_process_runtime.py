"""The bot as a real process, on the ways a running bot used to stop guarding:

- two bots on one state dir: the second exits 2 at once, naming the pid that holds it, while
  ``halt``, ``resume``, ``history`` and ``health`` keep working beside the first;
- a state dir that cannot be written (the process's file-size limit set to one byte while it
  runs, with ``prlimit``): closes still go out, entries are refused, one critical event and no
  traceback; when writing works again the bot catches up and trades on;
- started on a state dir that cannot be written: exit 2 with one line.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest_live import emulator
from test_process import TESTS, beating, move_prices, spawn, until, write_config

from bot.emulator import Emulator
from bot.state.store import Store

__all__ = ["emulator"]


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("GUARDBOT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    return env


def cli(*args: str, cwd: Path, limit_bytes: int | None = None) -> subprocess.CompletedProcess[str]:
    def limited() -> None:
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [sys.executable, "-c", "from bot.cli import main; main()", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limited,
    )


async def spawn_piped(
    cfg: Path, tmp: Path
) -> tuple[asyncio.subprocess.Process, asyncio.Task[None]]:
    """``guardbot run`` with its log on a pipe (a file-size limit on the bot does not touch
    it), copied to ``tmp/bot.log`` by the test."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from bot.cli import main; main()",
        "run",
        "--config",
        str(cfg),
        "--log-format",
        "json",
        cwd=tmp,
        env=cli_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )

    async def copy() -> None:
        assert proc.stdout is not None
        with (tmp / "bot.log").open("ab") as out:
            async for line in proc.stdout:
                out.write(line)
                out.flush()

    return proc, asyncio.create_task(copy())


def log_events(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


async def test_a_second_bot_on_the_same_state_dir_exits_2_naming_the_first(
    tmp_path: Path, emulator: Emulator
) -> None:
    cfg = write_config(tmp_path, emulator)
    state = tmp_path / "state"
    proc = await spawn(cfg, tmp_path)
    try:
        await until(beating(state, proc), "the first bot's heartbeat")
        second = await asyncio.to_thread(cli, "run", "--config", str(cfg), cwd=tmp_path)
        assert second.returncode == 2, second.stderr
        lines = [x for x in second.stderr.splitlines() if x.strip()]
        assert len(lines) == 1, second.stderr
        assert f"pid {proc.pid}" in lines[0] and "one exchange account" in lines[0]
        assert "Traceback" not in second.stdout + second.stderr
        for args in (
            ("halt", "--reason", "test"),
            ("resume",),
            ("history", "--limit", "3"),
            ("health",),
        ):
            done = await asyncio.to_thread(cli, *args, "--config", str(cfg), cwd=tmp_path)
            assert done.returncode == 0, (args, done.stdout, done.stderr)
        assert proc.returncode is None  # the first bot still runs
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_a_full_disk_blocks_entries_but_never_a_close_and_the_bot_catches_up(
    tmp_path: Path, emulator: Emulator
) -> None:
    cfg = write_config(tmp_path, emulator)
    state = tmp_path / "state"
    log = tmp_path / "bot.log"
    moving = asyncio.Event()
    mover = asyncio.create_task(move_prices(emulator, moving))
    proc, copier = await spawn_piped(cfg, tmp_path)
    try:
        await until(beating(state, proc), "the heartbeat")

        def entries_protected() -> int:
            return sum(1 for e in log_events(log) if e.get("event") == "entry_protected")

        await until(lambda: entries_protected() >= 2, "a few paper round trips")
        # the disk is "full" for the bot from now on: every file write past one byte fails
        _, hard = resource.prlimit(proc.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (1, hard))
        await until(
            lambda: any(e.get("event") == "store_unwritable" for e in log_events(log)),
            "the bot to notice",
        )
        await asyncio.sleep(4.0)  # trading goes on: the strategy keeps closing and entering
        events = log_events(log)
        down = next(i for i, e in enumerate(events) if e.get("event") == "store_unwritable")
        during = events[down:]
        assert sum(1 for e in events if e.get("event") == "store_unwritable") == 1
        assert events[down]["level"] == "critical" and events[down].get("alert") is True
        refused = [
            e
            for e in during
            if e.get("event") == "guard_decision" and e.get("code") == "store_unwritable"
        ]
        assert refused, "no entry was refused while the store could not write"
        assert not any(e.get("event") == "entry_protected" for e in during)
        closes = [e for e in during if e.get("event") == "position_closed"]
        assert closes, "no close went out while the store could not write"
        assert "Traceback" not in log.read_text(errors="replace")

        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (hard, hard))  # space again
        await until(
            lambda: any(e.get("event") == "store_recovered" for e in log_events(log)),
            "the catch-up",
        )
        after = len(log_events(log))
        await until(
            lambda: any(e.get("event") == "entry_protected" for e in log_events(log)[after:]),
            "entries to resume",
        )
        await until(beating(state, proc), "a fresh heartbeat again")
    finally:
        moving.set()
        await mover
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 10)
        await copier
    assert rc == 0, log.read_text()[-3000:]
    with Store.open(state) as store:  # what happened during the outage was written after it
        codes = [d.decision.code for d in store.recent_decisions(100_000)]
        assert "store_unwritable" in codes
        assert store.integrity_check() == "ok"


def test_starting_on_a_state_dir_that_cannot_be_written_exits_2_with_one_line(
    tmp_path: Path,
) -> None:
    # a fresh state dir, and one with a store in it already
    for attempt in ("fresh", "existing"):
        state = tmp_path / attempt / "state"
        cfg = tmp_path / f"{attempt}.toml"
        cfg.write_text(f'[state]\ndir = "{state}"\n', encoding="utf-8")
        if attempt == "existing":
            Store.open(state).close()
        done = cli(
            "run", "--config", str(cfg), "--set", "feed.kind=poll", cwd=tmp_path, limit_bytes=1
        )
        lines = [x for x in done.stderr.splitlines() if x.strip()]
        assert done.returncode == 2, (attempt, done.stderr)
        assert len(lines) == 1 and "cannot be written" in lines[0], (attempt, done.stderr)
        assert "Traceback" not in done.stdout + done.stderr
        if attempt == "fresh":  # nothing half-made is left to block the next start
            assert not (state / "guardbot.sqlite").exists()
        else:
            with Store.open(state) as store:  # the existing store is untouched and opens
                assert store.integrity_check() == "ok"
