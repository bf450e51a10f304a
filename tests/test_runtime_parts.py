"""The live runtime's parts, each on its own: the health judgement (table-driven), the state dir
lock, the store that keeps writes while SQLite reports "database or disk is full" (a real one:
``PRAGMA max_page_count``), the HTTP thread (its own loop, bounded concurrency, health from the
published snapshot), the coalesced account re-read and the per-symbol task queues.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web

from bot.ops.http import HttpThread, Published
from bot.ops.status import make_app, published_health
from bot.state.heartbeat import check_health, judge, write_heartbeat
from bot.state.lock import LockHeld, StateLock, in_use
from bot.state.safe import SafeStore
from bot.state.store import Store
from bot.trading.account import Coalesced
from bot.trading.tasks import Tasks
from guards.types import Action

NOW = 1_800_000_000.0
BTC = "BTC/USDT:USDT"

HEALTHY: dict[str, Any] = {
    "started": NOW - 600,
    "marks": {BTC: NOW - 1},
    "stale_price_s": 30,
    "unreachable_since": None,
    "unreachable_limit_s": 30,
    "last_sweep": NOW - 2,
    "sweep_s": 10,
    "unprotected": {},
    "unprotected_limit_s": 10,
    "store_down": None,
}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({}, None),
        ({"marks": {BTC: NOW - 31}}, f"{BTC} mark 31s old (limit 30s)"),
        ({"marks": {BTC: NOW - 29}}, None),
        ({"marks": {BTC: None}}, f"no mark yet for {BTC}"),
        ({"marks": {BTC: None}, "started": NOW - 5}, None),  # the first price is not due yet
        ({"unreachable_since": NOW - 31}, "exchange unreachable for 31s (limit 30s)"),
        ({"unreachable_since": NOW - 29}, None),
        ({"last_sweep": NOW - 31}, "no sweep completed for 31s (limit 30s)"),
        ({"last_sweep": NOW - 29}, None),
        ({"unprotected": {BTC: NOW - 11}}, f"{BTC} position without a stop for 11s (limit 10s)"),
        ({"unprotected": {BTC: NOW - 9}}, None),
        ({"store_down": "OperationalError: disk full"}, "state store cannot write"),
    ],
)
def test_health_judgement(change: dict[str, Any], reason: str | None) -> None:
    reasons = judge({**HEALTHY, **change}, NOW)
    if reason is None:
        assert reasons == []
    else:
        assert len(reasons) == 1 and reasons[0].startswith(reason)


def test_check_health_puts_every_reason_on_one_line(tmp_path: Path) -> None:
    now = time.time()
    facts = {
        **HEALTHY,
        "started": now - 600,
        "marks": {BTC: now - 100},
        "unreachable_since": now - 100,
        "last_sweep": now - 1,
    }
    write_heartbeat(tmp_path, status="running", **facts)
    health = check_health(tmp_path, 60)
    assert not health.ok and len(health.reasons) == 2
    assert "\n" not in health.detail and "mark" in health.detail and "unreachable" in health.detail
    write_heartbeat(
        tmp_path, status="running", **{**facts, "marks": {BTC: now}, "unreachable_since": None}
    )
    assert check_health(tmp_path, 60).ok


def test_one_lock_per_state_dir(tmp_path: Path) -> None:
    first = StateLock(tmp_path).acquire()
    try:
        with pytest.raises(LockHeld) as held:
            StateLock(tmp_path).acquire()
        assert held.value.pid is not None and f"pid {held.value.pid}" in str(held.value)
        assert in_use(tmp_path) == held.value.pid
    finally:
        first.release()
    assert in_use(tmp_path) is None
    with StateLock(tmp_path):  # free again: taken at once
        pass


def full(store: Store) -> None:
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages}")


def roomy(store: Store) -> None:
    store._conn.execute("PRAGMA max_page_count = 1073741823")


def test_safe_store_keeps_writes_while_the_database_is_full_and_catches_up(
    tmp_path: Path,
) -> None:
    events: list[dict[str, Any]] = []
    structlog.configure(processors=[lambda _, __, e: events.append(e) or ""])
    try:
        store = Store.open(tmp_path)
        safe = SafeStore(store)
        action = Action("close", BTC, "liquidation", "too_close", "too close")
        full(store)
        for i in range(200):  # fill what is left, then keep writing
            safe.write("action", lambda s, i=i: s.record_action(action, NOW + i, True, "x" * 500))
            safe.write("state", lambda s, i=i: s.save_guard_state({"n": i}, NOW), key="state")
        assert not safe.writable and "full" in (safe.down or "")
        assert [e["event"] for e in events].count("store_unwritable") == 1
        assert safe.catch_up() is False  # still full: nothing lost, still waiting
        roomy(store)
        assert safe.catch_up() is True and safe.writable and safe.backlog == 0
        rows = store.recent_actions(1000)
        assert len(rows) == 200  # every action, in order
        assert [r.ts for r in rows] == sorted((r.ts for r in rows), reverse=True)
        assert store.load_guard_state() == {"n": 199}  # the newest state only
        assert "store_recovered" in [e["event"] for e in events]
        store.close()
    finally:
        structlog.reset_defaults()


async def test_the_http_thread_has_its_own_loop_and_bounds_concurrency() -> None:
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(0.5)
        return web.Response(text="ok")

    def blocking_app() -> web.Application:
        app = web.Application()
        app.router.add_get("/slow", slow)

        async def block(_: web.Request) -> web.Response:
            time.sleep(0.3)  # would freeze the trading loop if it ran there
            return web.Response(text="done")

        app.router.add_get("/block", block)
        return app

    http = HttpThread(max_concurrency=2, queue_s=0.2)
    index = http.add(blocking_app, "127.0.0.1", 0)
    http.start()
    try:
        base = f"http://127.0.0.1:{http.port(index)}"
        ticks: list[float] = []

        async def ticker() -> None:
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        tick = asyncio.create_task(ticker())
        async with aiohttp.ClientSession() as session:

            async def get(path: str) -> int:
                async with session.get(base + path) as resp:
                    return resp.status

            statuses = await asyncio.gather(*(get("/slow") for _ in range(6)))
            await asyncio.gather(*(get("/block") for _ in range(2)))
        tick.cancel()
        assert statuses.count(200) == 2 and statuses.count(503) == 4  # two at a time, no queue
        gaps = [b - a for a, b in itertools.pairwise(ticks)]
        assert max(gaps) < 0.2  # this loop never waited on the HTTP thread's handlers
    finally:
        http.stop()


async def test_health_on_the_http_thread_judges_the_published_snapshot(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    published = Published()
    http = HttpThread()
    reader = Store.open_reader(tmp_path)
    index = http.add(
        lambda: make_app(published.get, reader, token=None, health=published_health(published, 5)),
        "127.0.0.1",
        0,
    )
    http.start()
    try:
        url = f"http://127.0.0.1:{http.port(index)}/health"
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as resp:
                assert resp.status == 503  # nothing published yet
            now = time.time()
            fresh = {**HEALTHY, "started": now - 60, "marks": {BTC: now}, "last_sweep": now}
            published.publish({"health": fresh, "positions": []})
            async with session.get(url) as resp:
                assert resp.status == 200
            published.publish({"health": {**fresh, "marks": {BTC: now - 100}}, "positions": []})
            async with session.get(url) as resp:
                body = json.loads(await resp.text())
                assert resp.status == 503 and "mark" in body["detail"]
            published.publish({"health": fresh, "positions": []}, at=now - 60)
            async with session.get(url) as resp:
                body = json.loads(await resp.text())
                assert resp.status == 503 and "stalled" in body["detail"]
    finally:
        http.stop()
        reader.close()


async def test_coalesced_runs_once_more_for_a_burst() -> None:
    runs = 0
    gate = asyncio.Event()

    async def read() -> None:
        nonlocal runs
        runs += 1
        await gate.wait()

    c = Coalesced(read, "read")
    c.request()
    c.request()  # before the read started: the read covers it
    await asyncio.sleep(0)
    assert runs == 1 and c.running
    for _ in range(10):  # while it runs: exactly one more read, after it
        c.request()
    assert not await c.wait(0.05)
    gate.set()
    await c.settle()
    assert runs == 2


async def test_a_ticket_is_covered_by_the_first_read_after_it_whatever_follows() -> None:
    """Reads requested back to back (a slow exchange, a sweep asking every period) never keep
    waiting the intents of a piece of work: its ticket is covered by the first read that
    started after it."""
    gates: list[asyncio.Event] = []

    async def read() -> None:
        gate = asyncio.Event()
        gates.append(gate)
        await gate.wait()

    c = Coalesced(read, "read")
    c.request()  # a sweep's read, in flight
    await asyncio.sleep(0)
    work = c.request()  # work finished meanwhile: needs a read that starts after it
    assert not c.covers(work)
    gates[0].set()  # the read in flight ends: it started before the work
    await asyncio.sleep(0)
    assert not c.covers(work) and len(gates) == 2
    c.request()  # the next sweep asks again while the read after the work runs
    gates[1].set()
    await asyncio.sleep(0)
    assert c.covers(work)  # covered although reads go on
    assert c.running and len(gates) == 3
    gates[2].set()
    await c.settle()


async def test_tasks_skip_a_duplicate_and_chain_in_order() -> None:
    tasks = Tasks(background=True)
    done: list[str] = []
    release = asyncio.Event()

    async def step(name: str, wait: bool = False) -> None:
        if wait:
            await release.wait()
        done.append(name)

    assert await tasks.run(("close", BTC), lambda: step("close-1", True))
    assert not await tasks.run(("close", BTC), lambda: step("close-2"))  # in flight already
    assert await tasks.run(("entry", BTC), lambda: step("entry-1", True), chain=True)
    assert await tasks.run(("entry", BTC), lambda: step("entry-2"), chain=True)
    assert await tasks.run(("close", "ETH"), lambda: step("eth"))
    await asyncio.sleep(0.01)
    assert done == ["eth"]  # another symbol is never held up
    assert tasks.busy(BTC) and not tasks.busy("ETH")
    release.set()
    await tasks.settle()
    assert done.index("entry-1") < done.index("entry-2") and "close-2" not in done
    assert not tasks.busy()
