"""Prometheus metrics: gauges from an engine snapshot, counters, the order latency histogram,
scheduler counters, heartbeat age and the /metrics endpoint, read back through the Prometheus
text parser (what a Prometheus server would see)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobEvent
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client.parser import text_string_to_metric_families

from bot.ops.metrics import Metrics, TimedOrderStore
from bot.state.heartbeat import write_heartbeat
from bot.state.store import Store
from bot.trading.jobs import JobSpec, LiveScheduler

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` parsed from the text exposition."""
    text = metrics.render().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


# A snapshot in the shape of Engine.snapshot(), with hand-worked figures:
# BTC long 0.5 @ 60 000, mark 60 300: notional 0.5 * 60 300 = 30 150, uPnL 0.5 * 300 = 150,
#   liquidation 48 240 → distance (60 300 - 48 240) / 60 300 * 100 = 20.0 %.
# ETH short 2 @ 3 000, mark 3 030, no stop: notional 2 * 3 030 = 6 060, uPnL -2 * 30 = -60,
#   liquidation unknown (None) → no distance series.
# equity = wallet 10 000 + 150 - 60 = 10 090.
SNAPSHOT: dict[str, Any] = {
    "ts": 1_000.0,
    "wallet": 10_000.0,
    "equity": 10_090.0,
    "free_margin": 7_500.0,
    "halt": None,
    "positions": [
        {
            "symbol": BTC,
            "side": "long",
            "amount": 0.5,
            "entry": 60_000.0,
            "mark": 60_300.0,
            "stop": 59_000.0,
            "liquidation": 48_240.0,
            "liq_distance_pct": 20.0,
            "leverage": 5.0,
            "notional": 30_150.0,
            "unrealized_pnl": 150.0,
        },
        {
            "symbol": ETH,
            "side": "short",
            "amount": 2.0,
            "entry": 3_000.0,
            "mark": 3_030.0,
            "stop": None,
            "liquidation": None,
            "liq_distance_pct": None,
            "leverage": 3.0,
            "notional": 6_060.0,
            "unrealized_pnl": -60.0,
        },
    ],
}


def test_snapshot_sets_account_and_position_gauges() -> None:
    m = Metrics()
    m.update_from_snapshot(SNAPSHOT)
    assert value(m, "guardbot_equity") == 10_090.0
    assert value(m, "guardbot_wallet_balance") == 10_000.0
    assert value(m, "guardbot_free_margin") == 7_500.0
    assert value(m, "guardbot_open_positions") == 2.0
    assert value(m, "guardbot_halted") == 0.0
    assert value(m, "guardbot_position_notional", symbol=BTC) == 30_150.0
    assert value(m, "guardbot_position_notional", symbol=ETH) == 6_060.0
    assert value(m, "guardbot_position_leverage", symbol=BTC) == 5.0
    assert value(m, "guardbot_position_leverage", symbol=ETH) == 3.0
    assert value(m, "guardbot_position_liq_distance_pct", symbol=BTC) == 20.0
    assert value(m, "guardbot_position_liq_distance_pct", symbol=ETH) is None  # unknown: absent
    assert value(m, "guardbot_position_stop_present", symbol=BTC) == 1.0
    assert value(m, "guardbot_position_stop_present", symbol=ETH) == 0.0
    assert value(m, "guardbot_position_unrealized_pnl", symbol=ETH) == -60.0


def test_closed_positions_lose_their_series_and_halt_shows() -> None:
    m = Metrics()
    m.update_from_snapshot(SNAPSHOT)
    later = {
        **SNAPSHOT,
        "positions": [SNAPSHOT["positions"][0]],
        "halt": {"kind": "daily", "reason": "daily loss 3.1% beyond 3%"},
    }
    m.update_from_snapshot(later)
    got = samples(m)
    assert not any(dict(labels).get("symbol") == ETH for _, labels in got)
    assert value(m, "guardbot_position_notional", symbol=BTC) == 30_150.0
    assert value(m, "guardbot_open_positions") == 1.0
    assert value(m, "guardbot_halted") == 1.0


def test_account_gauges_are_nan_until_known() -> None:
    m = Metrics()
    equity = value(m, "guardbot_equity")
    assert equity is not None and math.isnan(equity)
    m.update_from_snapshot({"wallet": 5.0, "equity": 5.0, "positions": []})
    free = value(m, "guardbot_free_margin")  # not in this snapshot: still unknown
    assert free is not None and math.isnan(free)


def test_event_counters() -> None:
    m = Metrics()
    m.decision("reject", "stop_missing", {"halt": "allow", "stop_loss": "reject", "trend": "skip"})
    m.decision("reject", "stop_missing", {"halt": "allow", "stop_loss": "reject"})
    m.decision("allow", "ok")
    m.action("close", "liquidation")
    m.action("place_stop", "stop_loss")
    m.action("close", "liquidation")
    m.exchange_error("RequestTimeout")
    assert value(m, "guardbot_guard_decisions_total", outcome="reject", code="stop_missing") == 2
    assert value(m, "guardbot_guard_decisions_total", outcome="allow", code="ok") == 1
    assert value(m, "guardbot_guard_verdicts_total", rule="stop_loss", verdict="reject") == 2
    assert value(m, "guardbot_guard_verdicts_total", rule="halt", verdict="allow") == 2
    assert value(m, "guardbot_guard_verdicts_total", rule="trend", verdict="skip") is None
    assert value(m, "guardbot_guard_actions_total", kind="close", rule="liquidation") == 2
    assert value(m, "guardbot_guard_actions_total", kind="place_stop", rule="stop_loss") == 1
    assert value(m, "guardbot_exchange_errors_total", **{"class": "RequestTimeout"}) == 1


class StepClock:
    def __init__(self, *times: float) -> None:
        self.times = list(times)

    def __call__(self) -> float:
        return self.times.pop(0)


def test_order_latency_from_intent_to_ack_through_the_real_store(tmp_path: Path) -> None:
    m = Metrics()
    # intent at 100.0, ack at 100.3 → 0.3 s; a stop: intent 200.0, ack 201.5 → 1.5 s
    clock = StepClock(100.0, 100.3, 200.0, 201.5)
    with Store.open(tmp_path) as store:
        timed = TimedOrderStore(store, m, clock=clock)
        timed.order_intent("gbe1", BTC, "buy", "market", 0.01, None, {"role": "entry"})
        timed.order_ack("gbe1", {"id": "1", "status": "closed", "filled": 0.01})
        timed.order_intent("gbs1", BTC, "sell", "market", 0.01, None, {"role": "stop"})
        timed.order_ack("gbs1", {"id": "2", "status": "open"})
        rows = {r.client_id: r for r in store.orders()}
    # the wrapped store still got both calls
    assert rows["gbe1"].status == "filled" and rows["gbs1"].status == "open"
    name = "guardbot_order_latency_seconds"
    assert value(m, f"{name}_count", role="entry") == 1
    assert value(m, f"{name}_sum", role="entry") == pytest.approx(0.3)
    assert value(m, f"{name}_bucket", role="entry", le="0.25") == 0
    assert value(m, f"{name}_bucket", role="entry", le="0.5") == 1
    assert value(m, f"{name}_sum", role="stop") == pytest.approx(1.5)
    assert value(m, f"{name}_bucket", role="stop", le="1.0") == 0
    assert value(m, f"{name}_bucket", role="stop", le="2.5") == 1


def test_ack_without_intent_is_not_timed() -> None:
    m = Metrics()
    timed = TimedOrderStore(None, m, clock=StepClock(5.0))
    timed.order_ack("unknown", {"id": "9"})
    assert value(m, "guardbot_order_latency_seconds_count", role="entry") is None


def test_scheduler_counters_are_read_at_scrape_time() -> None:
    async def job() -> None:
        return None

    trigger = IntervalTrigger(seconds=60, start_date=datetime(2025, 1, 1, tzinfo=UTC))
    sched = LiveScheduler([JobSpec("sweep", trigger, job), JobSpec("heartbeat", trigger, job)])
    m = Metrics()
    m.watch_jobs(sched)
    for code, job_id in [
        (EVENT_JOB_EXECUTED, "sweep"),
        (EVENT_JOB_EXECUTED, "sweep"),
        (EVENT_JOB_EXECUTED, "heartbeat"),
        (EVENT_JOB_MISSED, "sweep"),
        (EVENT_JOB_ERROR, "heartbeat"),
    ]:
        sched._on_event(JobEvent(code, job_id, None))
    assert value(m, "guardbot_job_runs_total", job="sweep") == 2
    assert value(m, "guardbot_job_runs_total", job="heartbeat") == 1
    assert value(m, "guardbot_job_misfires_total", job="sweep") == 1
    assert value(m, "guardbot_job_errors_total", job="heartbeat") == 1
    sched._on_event(JobEvent(EVENT_JOB_EXECUTED, "sweep", None))
    assert value(m, "guardbot_job_runs_total", job="sweep") == 3


def test_heartbeat_age_from_the_heartbeat_file(tmp_path: Path) -> None:
    write_heartbeat(tmp_path, status="running")
    beat_ts = json.loads((tmp_path / "heartbeat.json").read_text())["ts"]
    now = {"t": beat_ts + 42.0}
    m = Metrics(state_dir=tmp_path, clock=lambda: now["t"])
    assert value(m, "guardbot_heartbeat_age_seconds") == pytest.approx(42.0)
    now["t"] += 100.0
    assert value(m, "guardbot_heartbeat_age_seconds") == pytest.approx(142.0)
    m.beat(now["t"] - 1.0)  # a newer explicit beat wins over the file
    assert value(m, "guardbot_heartbeat_age_seconds") == pytest.approx(1.0)


def test_heartbeat_age_unknown_without_any_beat(tmp_path: Path) -> None:
    m = Metrics(state_dir=tmp_path)
    age = value(m, "guardbot_heartbeat_age_seconds")
    assert age is not None and math.isnan(age)


def test_registries_are_isolated() -> None:
    a, b = Metrics(), Metrics()
    a.action("close", "liquidation")
    assert value(b, "guardbot_guard_actions_total", kind="close", rule="liquidation") is None


async def test_http_endpoint_serves_fresh_snapshot_values() -> None:
    m = Metrics()
    calls = {"n": 0}

    def snapshot() -> dict[str, Any]:
        calls["n"] += 1
        return SNAPSHOT

    server = await m.start_http("127.0.0.1", 0, snapshot=snapshot)
    try:
        assert server.port > 0
        async with (
            aiohttp.ClientSession() as session,
            session.get(server.url) as resp,
        ):
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
    finally:
        await server.stop()
    assert calls["n"] == 1
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert values[("guardbot_equity", ())] == 10_090.0
    assert values[("guardbot_position_stop_present", (("symbol", ETH),))] == 0.0
