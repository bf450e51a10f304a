"""Scheduled jobs: the same APScheduler triggers live (AsyncIOScheduler) and on a replay clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.trading.jobs import LiveScheduler, SimScheduler, job_specs, job_triggers
from guards.config import GuardsConfig

BERLIN = ZoneInfo("Europe/Berlin")


def guards(**no_overnight: object) -> GuardsConfig:
    return GuardsConfig.model_validate(
        {"no_overnight": {"timezone": "Europe/Berlin", **no_overnight}}
    )


async def test_flatten_fires_at_local_flat_by_across_dst() -> None:
    fired: list[datetime] = []
    start = datetime(2025, 3, 28, 12, 0, tzinfo=UTC)
    now = start

    async def flatten() -> None:
        fired.append(now)

    trig = job_triggers(guards(flat_by="22:00"), heartbeat_s=10, start=start)
    sim = SimScheduler(job_specs(trig, {"flatten": flatten}), start)
    while now < start + timedelta(days=4):
        now += timedelta(minutes=5)
        await sim.advance(now)
    local = [f.astimezone(BERLIN) for f in fired]
    # 28, 29 March (CET, UTC+1), 30, 31 March (CEST, UTC+2 after the spring-forward night)
    assert [(d.day, d.hour, d.minute) for d in local] == [
        (28, 22, 0),
        (29, 22, 0),
        (30, 22, 0),
        (31, 22, 0),
    ]
    assert [f.hour for f in fired] == [21, 21, 20, 20]


async def test_missed_runs_are_coalesced_into_one() -> None:
    calls = 0

    async def sweep() -> None:
        nonlocal calls
        calls += 1

    start = datetime(2025, 1, 1, tzinfo=UTC)
    g = GuardsConfig.model_validate({"sweep_s": 10})
    sim = SimScheduler(
        job_specs(job_triggers(g, heartbeat_s=10, start=start), {"sweep": sweep}), start
    )
    await sim.advance(start)  # first fire at the anchor
    await sim.advance(start + timedelta(seconds=95))  # nine intervals passed: one coalesced run
    assert calls == 2
    assert sim.next_fire("sweep") == start + timedelta(seconds=100)


async def test_a_failing_job_does_not_stop_the_others() -> None:
    ran: list[str] = []

    async def boom() -> None:
        raise RuntimeError("x")

    async def beat() -> None:
        ran.append("beat")

    start = datetime(2025, 1, 1, tzinfo=UTC)
    trig = job_triggers(GuardsConfig(), heartbeat_s=10, start=start)
    sim = SimScheduler(job_specs(trig, {"sweep": boom, "heartbeat": beat}), start)
    await sim.advance(start)
    assert ran == ["beat"]
    assert sim.errors == {"sweep": 1}


async def test_live_scheduler_runs_jobs_on_the_loop() -> None:
    done = asyncio.Event()
    count = 0

    async def beat() -> None:
        nonlocal count
        count += 1
        if count >= 2:
            done.set()

    trig = job_triggers(GuardsConfig(), heartbeat_s=0.05)
    live = LiveScheduler(job_specs(trig, {"heartbeat": beat}))
    live.start()
    try:
        job = live.scheduler.get_job("heartbeat")
        assert job.coalesce is True
        assert job.max_instances == 1
        assert job.misfire_grace_time == 30
        await asyncio.wait_for(done.wait(), timeout=10)
    finally:
        live.shutdown()
    assert live.runs.get("heartbeat", 0) >= 2


async def test_apscheduler_logs_go_through_structlog_as_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A failing job and a job still running at shutdown: APScheduler's own log records
    become structlog JSON events; nothing raw (no traceback) reaches stderr."""
    import io
    import json

    from bot.ops.logging import configure_logging

    out = io.StringIO()
    configure_logging(level="info", fmt="json", stream=out)
    started = asyncio.Event()
    failed = asyncio.Event()

    async def boom() -> None:
        failed.set()
        raise RuntimeError("job broke")

    async def slow() -> None:
        started.set()
        await asyncio.sleep(60)

    trig = job_triggers(GuardsConfig(), heartbeat_s=0.05, equity_s=0.05)
    live = LiveScheduler(job_specs(trig, {"heartbeat": boom, "equity_snapshot": slow}))
    live.start()
    try:
        await asyncio.wait_for(failed.wait(), timeout=10)
        await asyncio.wait_for(started.wait(), timeout=10)
        await asyncio.sleep(0.2)
    finally:
        live.shutdown()
        await asyncio.sleep(0.1)  # let the cancelled job report
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    errors = [e for e in events if e["event"] == "apscheduler" and e["level"] == "error"]
    assert errors and "job broke" in errors[0]["exception"]
    assert capsys.readouterr().err == ""
