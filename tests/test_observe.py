"""The structlog glue: events become metric updates and alerts, after redaction, without
changing the log output; and end to end with the real engine on the paper exchange."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families
from strategies_for_tests import EnterOnce

from bot.exchange.paper import paper_exchange
from bot.ops.logging import MASK, configure_logging
from bot.ops.metrics import Metrics, TimedOrderStore
from bot.ops.notify import Alert, Notifier
from bot.ops.observe import LevelGate, Observer, error_class, install, uninstall
from bot.runner import request_halt
from bot.settings import load_settings
from bot.state.store import Store
from bot.trading.engine import Engine
from bot.trading.executor import Executor
from guards.engine import GuardEngine
from guards.types import OrderIntent

BTC = "BTC/USDT:USDT"
NOON = 1_743_508_800.0  # 2025-04-01 12:00 UTC, inside the default trading session


@dataclass
class Recorder:
    name: str = "recorder"
    alerts: list[Alert] = field(default_factory=list)

    async def send(self, alert: Alert) -> bool:
        self.alerts.append(alert)
        return True

    async def close(self) -> None:
        return None


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream, level="info")
    yield stream
    uninstall(level="info")


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_error_class_reads_ccxt_classes_only() -> None:
    assert error_class("RequestTimeout: binanceusdm GET timed out") == "RequestTimeout"
    assert error_class("InsufficientFunds('margin is insufficient')") == "InsufficientFunds"
    assert error_class("failed: InvalidOrder: bad qty") == "InvalidOrder"
    assert error_class("ValueError: nope") is None
    assert error_class(None) is None


def test_events_feed_metrics_and_alerts_and_the_log_is_unchanged(out: io.StringIO) -> None:
    metrics = Metrics()
    notifier = Notifier([Recorder()], clock=lambda: 50.0)
    install(Observer(metrics, notifier, clock=lambda: 50.0), level="info")
    log = structlog.get_logger("engine")
    verdicts = {"halt": "allow", "stop_loss": "allow", "position_cap": "resize"}
    log.debug("guard_decision", symbol=BTC, outcome="resize", code="cap_margin", verdicts=verdicts)
    log.info("guard_decision", symbol=BTC, outcome="reject", code="stop_missing", reason="no stop")
    log.warning("guard_action", kind="close", symbol=BTC, rule="liquidation", code="liq_close")
    log.warning("seatbelt_cut", symbol=BTC, amount=0.1, code="cap_leverage", reason="too big")
    log.warning("exchange_retry", op="fetch_positions", error="RequestTimeout: timed out")
    log.error("execution_failed", symbol=BTC, error="InsufficientFunds('margin')")
    log.error("job_failed", job="sweep", error="ValueError('bug')")
    log.debug("markets_cached", path="/tmp/x")

    assert (
        value(metrics, "guardbot_guard_decisions_total", outcome="resize", code="cap_margin") == 1
    )
    assert (
        value(metrics, "guardbot_guard_decisions_total", outcome="reject", code="stop_missing") == 1
    )
    assert (
        value(metrics, "guardbot_guard_verdicts_total", rule="position_cap", verdict="resize") == 1
    )
    assert value(metrics, "guardbot_guard_actions_total", kind="close", rule="liquidation") == 1
    assert value(metrics, "guardbot_guard_actions_total", kind="reduce", rule="seatbelt") == 1
    errors = "guardbot_exchange_errors_total"
    assert value(metrics, errors, **{"class": "RequestTimeout"}) == 1
    assert value(metrics, errors, **{"class": "InsufficientFunds"}) == 1
    assert value(metrics, errors, **{"class": "ValueError"}) is None

    # debug events were observed but not written: the output is what level=info gives
    names = [e["event"] for e in lines(out)]
    assert names == [
        "guard_decision",
        "guard_action",
        "seatbelt_cut",
        "exchange_retry",
        "execution_failed",
        "job_failed",
    ]
    queued = list(notifier.lanes[0].queue._queue)  # type: ignore[attr-defined]
    assert [a.kind for a in queued] == ["guard_close", "guard_reduce"]
    assert notifier.refusals == {("stop_missing", BTC): [1, "no stop"]}


def test_round_trips_feed_realised_pnl_by_reason_and_a_liquidation_alerts(
    out: io.StringIO,
) -> None:
    metrics = Metrics()
    notifier = Notifier([Recorder()], clock=lambda: 50.0)
    install(Observer(metrics, notifier, clock=lambda: 50.0), level="info")
    log = structlog.get_logger("engine")
    log.info("round_trip", symbol=BTC, reason="stop", net=-12.5, closed=True)
    log.info("round_trip", symbol=BTC, reason="stop", net=-2.25, closed=True)
    log.info("round_trip", symbol=BTC, reason="strategy", net=30.0, closed=True)
    log.info("round_trip", symbol=BTC, reason="liquidation", net=-1001.7, closed=True)
    log.critical("position_liquidated", alert=True, symbol=BTC, net=-1001.7)
    pnl = "guardbot_realized_pnl"
    assert value(metrics, pnl, reason="stop") == pytest.approx(-14.75)
    assert value(metrics, pnl, reason="strategy") == pytest.approx(30.0)
    assert value(metrics, pnl, reason="liquidation") == pytest.approx(-1001.7)
    assert value(metrics, pnl, reason="manual") is None
    queued = list(notifier.lanes[0].queue._queue)  # type: ignore[attr-defined]
    assert [a.kind for a in queued] == ["position_liquidated"]


def test_alerts_carry_redacted_values(out: io.StringIO) -> None:
    secret = "sk-live-0123456789abcdef"
    configure_logging(fmt="json", stream=out, level="info", secrets=[secret])
    notifier = Notifier([Recorder()])
    install(Observer(None, notifier), level="info")
    structlog.get_logger().warning("kill_switch_on", reason=f"halt for key {secret}")
    (alert,) = list(notifier.lanes[0].queue._queue)  # type: ignore[attr-defined]
    assert alert.kind == "kill_switch_on"
    assert secret not in alert.text and MASK in alert.text


def test_without_metrics_debug_stays_filtered_and_nothing_is_inserted_twice(
    out: io.StringIO,
) -> None:
    notifier = Notifier([Recorder()])
    observer = Observer(None, notifier)
    install(observer, level="info")
    install(observer, level="info")
    procs = structlog.get_config()["processors"]
    assert sum(isinstance(p, Observer) for p in procs) == 1
    assert not any(isinstance(p, LevelGate) for p in procs)
    structlog.get_logger().debug("guard_decision", outcome="reject", code="x", symbol=BTC)
    assert notifier.refusals == {}  # the filtering logger never built the event
    uninstall(level="info")
    assert not any(isinstance(p, Observer) for p in structlog.get_config()["processors"])


def test_observer_off_is_a_pass_through() -> None:
    event = {"event": "guard_action", "kind": "close"}
    assert Observer()(None, "info", event) is event
    assert event == {"event": "guard_action", "kind": "close"}


def test_observer_errors_never_break_logging(out: io.StringIO) -> None:
    class Broken(Metrics):
        def action(self, kind: str, rule: str) -> None:
            raise RuntimeError("boom")

    observer = Observer(Broken())
    install(observer, level="info")
    structlog.get_logger().warning("guard_action", kind="close", rule="liquidation")
    assert observer.errors == 1
    assert [e["event"] for e in lines(out)] == ["guard_action"]


# ------------------------------------------------------------------ end to end


class Clock:
    def __init__(self, t: float = NOON) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def test_engine_on_paper_feeds_metrics_and_alerts(tmp_path: Path, out: io.StringIO) -> None:
    s = load_settings(
        None, {"state": {"dir": str(tmp_path / "state")}, "mode": "paper"}, env_file=None
    )
    clock = Clock()
    metrics = Metrics(state_dir=s.state.dir, clock=clock)
    sink = Recorder()
    notifier = Notifier([sink], clock=clock)
    install(Observer(metrics, notifier, clock=clock), level="info")
    await notifier.start()
    with Store.open(s.state.dir) as store:
        exchange = paper_exchange(s, store)
        executor = Executor(
            exchange, store=TimedOrderStore(store, metrics), run_id="t", max_leverage=5.0
        )
        await executor.prepare([BTC], "isolated", 3.0)
        engine = Engine(
            exchange=exchange,
            executor=executor,
            store=store,
            guard=GuardEngine(s.guards),
            markets={BTC: exchange.core.market_rules(BTC)},
            strategy=EnterOnce(),
            symbols=(BTC,),
            timeframe_ms=60_000,
            run_id="t",
            state_dir=s.state.dir,
            clock=clock,
            on_price_hook=lambda sym, p, ts: exchange.on_price(sym, p, ts),
        )
        await engine.start()
        for _ in range(5):  # the first bar closes on the 4th price: EnterOnce goes long
            clock.t += 20.0
            await engine.on_price(BTC, 60_000.0, clock.t)
        assert exchange.core.position(BTC) is not None
        # a second entry right away, without a stop: refused (entry spacing comes first)
        refused = await engine.handle(OrderIntent(BTC, "long", 0.01, leverage=3))
        assert refused is not None and not refused.allowed

        metrics.update_from_snapshot(engine.snapshot())
        core_liq = exchange.core.liquidation_price(BTC)
        assert core_liq is not None
        # distance from the paper exchange's own liquidation price, mark 60 000
        expected = (60_000.0 - core_liq) / 60_000.0 * 100.0
        got = value(metrics, "guardbot_position_liq_distance_pct", symbol=BTC)
        assert got == pytest.approx(expected, rel=1e-9)
        assert value(metrics, "guardbot_position_stop_present", symbol=BTC) == 1.0
        # notional = amount * mark = 0.01 * 60 000 (EnterOnce buys 0.01)
        assert value(metrics, "guardbot_position_notional", symbol=BTC) == pytest.approx(600.0)
        # the entry and its stop were each timed from intent to ack
        latency = "guardbot_order_latency_seconds_count"
        assert value(metrics, latency, role="entry") == 1
        assert value(metrics, latency, role="stop") == 1
        # every decision the engine made was counted (allowed ones are debug events)
        total = sum(
            sample.value
            for family in text_string_to_metric_families(metrics.render().decode())
            if family.name == "guardbot_guard_decisions"
            for sample in family.samples
            if sample.name.endswith("_total")
        )
        assert total == engine.decisions == 2
        rejected = value(
            metrics, "guardbot_guard_decisions_total", outcome="reject", code=refused.code
        )
        assert rejected == 1

        request_halt(s.state.dir, True, "going to bed")
        await engine.sweep("job")
        assert exchange.core.position(BTC) is None
        await engine.shutdown()
    notifier.flush_digest()
    await asyncio.wait_for(notifier.lanes[0].queue.join(), 5.0)
    await notifier.stop()
    kinds = [a.kind for a in sink.alerts]
    assert "kill_switch_on" in kinds and "process_stop" in kinds
    digest = next(a for a in sink.alerts if a.kind == "entries_refused")
    assert digest.fields["counts"] == [
        {"code": refused.code, "symbol": BTC, "count": 1, "last_reason": refused.reason}
    ]
