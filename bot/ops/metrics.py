"""Prometheus metrics of the running bot: one ``Metrics`` object on its own registry.

``Metrics`` owns a dedicated ``CollectorRegistry`` (never the process-global one, so tests and
two bots in one process do not collide) and every series below. Account and position gauges are
set from ``Engine.snapshot()`` (``update_from_snapshot``, called at scrape time by the HTTP
endpoint); counters are fed by ``bot.ops.observe`` from the bot's structlog events; the order
latency histogram by ``TimedOrderStore``; job counters and the heartbeat age are read at scrape
time.

Series (all prefixed ``guardbot_``):

- ``equity``, ``wallet_balance``, ``free_margin`` (quote currency), ``open_positions``,
  ``halted`` (0/1, any active guard halt or kill switch)
- per position, labelled ``symbol``: ``position_notional``, ``position_leverage``,
  ``position_liq_distance_pct`` (mark to liquidation price, % of mark; absent while unknown),
  ``position_stop_present`` (0/1), ``position_unrealized_pnl``; a closed position's series are
  removed
- ``guard_decisions_total{outcome, code}``: one per decision, labelled with the deciding code
- ``guard_verdicts_total{rule, verdict}``: every non-skipped rule verdict of every decision
- ``guard_actions_total{kind, rule}``: sweep actions (and seatbelt cuts, ``rule="seatbelt"``)
- ``realized_pnl{reason}``: net realised PnL of the round trips closed since the start, by why
  they closed (stop, take_profit, guard, strategy, manual, liquidation, adl)
- ``order_latency_seconds{role}``: order intent recorded → exchange acknowledgement
- ``exchange_errors_total{class}``: error reports carrying a ccxt exception, by its class
- ``job_runs_total{job}``, ``job_misfires_total{job}``, ``job_errors_total{job}``
- ``heartbeat_age_seconds``: seconds since the bot last wrote its heartbeat file
- health (the facts ``guardbot health`` judges, ages computed at scrape time):
  ``mark_age_seconds{symbol}`` (every traded symbol; absent before its first mark),
  ``exchange_reachable`` (0/1), ``exchange_unreachable_seconds``, ``seconds_since_sweep`` (the
  last completed scheduled sweep), ``position_unprotected_seconds{symbol}`` (0 while it has a
  stop), ``store_writable`` (0/1), ``healthy`` (0/1: the same verdict as ``/health``)
"""

from __future__ import annotations

import hmac
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from bot.state.heartbeat import FILENAME as HEARTBEAT_FILE

NAN = float("nan")
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Orders whose intent is remembered while waiting for an ack (older ones are forgotten).
MAX_PENDING_ORDERS = 1000


class JobCounters(Protocol):
    """What ``bot.trading.jobs.LiveScheduler`` keeps: cumulative counts per job name."""

    runs: dict[str, int]
    misfires: dict[str, int]
    errors: dict[str, int]


def _num(value: Any) -> float | None:
    """A finite float, or None for missing / non-numeric values."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    out = float(value)
    return out if math.isfinite(out) else None


class _JobCollector(Collector):
    """Reads a scheduler's counters at scrape time."""

    def __init__(self, source: JobCounters) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        for attr, name, doc in (
            ("runs", "guardbot_job_runs", "scheduled job runs that completed"),
            ("misfires", "guardbot_job_misfires", "scheduled job runs missed (misfire)"),
            ("errors", "guardbot_job_errors", "scheduled job runs that raised"),
        ):
            family = CounterMetricFamily(name, doc, labels=["job"])
            for job, count in sorted(getattr(self.source, attr, {}).items()):
                family.add_metric([job], float(count))
            yield family


class Metrics:
    """Every metric of one bot process (see the module docstring)."""

    def __init__(
        self,
        *,
        state_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.state_dir = state_dir
        self.clock = clock
        self._last_beat: float | None = None
        self._symbols: set[str] = set()
        self._jobs: _JobCollector | None = None
        r = self.registry
        self.equity = Gauge("guardbot_equity", "equity: wallet + unrealised PnL", registry=r)
        self.wallet = Gauge("guardbot_wallet_balance", "wallet balance (realised)", registry=r)
        self.free_margin = Gauge("guardbot_free_margin", "free margin (quote)", registry=r)
        self.open_positions = Gauge("guardbot_open_positions", "open positions", registry=r)
        self.halted = Gauge("guardbot_halted", "1 while entries are halted", registry=r)
        for gauge in (self.equity, self.wallet, self.free_margin):
            gauge.set(NAN)  # unknown until the first snapshot
        sym = ["symbol"]
        self.notional = Gauge(
            "guardbot_position_notional", "position notional at mark", sym, registry=r
        )
        self.leverage = Gauge("guardbot_position_leverage", "position leverage", sym, registry=r)
        self.liq_distance = Gauge(
            "guardbot_position_liq_distance_pct",
            "distance from mark to the liquidation price, % of mark",
            sym,
            registry=r,
        )
        self.stop_present = Gauge(
            "guardbot_position_stop_present", "1 if the position has a stop", sym, registry=r
        )
        self.upnl = Gauge(
            "guardbot_position_unrealized_pnl", "unrealised PnL at mark", sym, registry=r
        )
        self.decisions = Counter(
            "guardbot_guard_decisions",
            "guard decisions by outcome and deciding code",
            ["outcome", "code"],
            registry=r,
        )
        self.verdicts = Counter(
            "guardbot_guard_verdicts",
            "rule verdicts (skips excluded) of every guard decision",
            ["rule", "verdict"],
            registry=r,
        )
        self.actions = Counter(
            "guardbot_guard_actions", "guard sweep actions", ["kind", "rule"], registry=r
        )
        self.exchange_errors = Counter(
            "guardbot_exchange_errors",
            "error reports carrying a ccxt exception, by class",
            ["class"],
            registry=r,
        )
        self.order_latency = Histogram(
            "guardbot_order_latency_seconds",
            "order intent recorded to exchange acknowledgement",
            ["role"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.heartbeat_age = Gauge(
            "guardbot_heartbeat_age_seconds", "seconds since the last heartbeat", registry=r
        )
        self.heartbeat_age.set_function(self._heartbeat_age)
        self.mark_age = Gauge(
            "guardbot_mark_age_seconds", "seconds since the symbol's last mark", sym, registry=r
        )
        self.reachable = Gauge(
            "guardbot_exchange_reachable", "1 while the exchange answers", registry=r
        )
        self.unreachable_s = Gauge(
            "guardbot_exchange_unreachable_seconds",
            "seconds since the exchange last answered (0 while it does)",
            registry=r,
        )
        self.since_sweep = Gauge(
            "guardbot_seconds_since_sweep",
            "seconds since the last completed scheduled sweep",
            registry=r,
        )
        self.unprotected = Gauge(
            "guardbot_position_unprotected_seconds",
            "seconds the position has been without a stop (0 with one)",
            sym,
            registry=r,
        )
        self.store_writable = Gauge(
            "guardbot_store_writable", "1 while the state store can write", registry=r
        )
        self.healthy = Gauge("guardbot_healthy", "1 while /health says ok", registry=r)
        self.realized_pnl = Gauge(
            "guardbot_realized_pnl",
            "net realised PnL of the round trips closed since the bot started, by close reason",
            ["reason"],
            registry=r,
        )
        for gauge in (self.reachable, self.unreachable_s, self.since_sweep):
            gauge.set(NAN)
        self._marked: set[str] = set()

    # -- snapshot -----------------------------------------------------------------------------
    def update_from_snapshot(self, snapshot: Mapping[str, Any]) -> None:
        """Set the account and position gauges from ``Engine.snapshot()``.

        ``free_margin`` is read when the snapshot carries it (else left as it was). Positions no
        longer in the snapshot lose their series.
        """
        for gauge, key in ((self.equity, "equity"), (self.wallet, "wallet")):
            value = _num(snapshot.get(key))
            gauge.set(NAN if value is None else value)
        free = _num(snapshot.get("free_margin"))
        if free is not None:
            self.free_margin.set(free)
        positions = [p for p in snapshot.get("positions") or [] if isinstance(p, Mapping)]
        self.open_positions.set(len(positions))
        self.halted.set(1.0 if snapshot.get("halt") else 0.0)
        seen: set[str] = set()
        for p in positions:
            symbol = str(p.get("symbol"))
            seen.add(symbol)
            self._set(self.notional, symbol, _num(p.get("notional")))
            self._set(self.leverage, symbol, _num(p.get("leverage")))
            self._set(self.liq_distance, symbol, _num(p.get("liq_distance_pct")))
            self._set(self.upnl, symbol, _num(p.get("unrealized_pnl")))
            self.stop_present.labels(symbol).set(0.0 if p.get("stop") is None else 1.0)
        for symbol in self._symbols - seen:
            for gauge in self._position_gauges():
                self._drop(gauge, symbol)
        self._symbols = seen
        health = snapshot.get("health")
        if isinstance(health, Mapping):
            self._health(health, {str(p.get("symbol")) for p in positions})

    def _health(self, health: Mapping[str, Any], held: set[str]) -> None:
        now = self.clock()
        marks = health.get("marks")
        marked: set[str] = set()
        if isinstance(marks, Mapping):
            for symbol, ts in marks.items():
                at = _num(ts)
                if at is not None:
                    marked.add(str(symbol))
                    self.mark_age.labels(str(symbol)).set(max(0.0, now - at))
        for symbol in self._marked - marked:
            self._drop(self.mark_age, symbol)
        self._marked = marked
        since = _num(health.get("unreachable_since"))
        self.reachable.set(1.0 if since is None else 0.0)
        self.unreachable_s.set(0.0 if since is None else max(0.0, now - since))
        last = _num(health.get("last_sweep"))
        self.since_sweep.set(NAN if last is None else max(0.0, now - last))
        bare = health.get("unprotected")
        bare = bare if isinstance(bare, Mapping) else {}
        for symbol in held:
            at = _num(bare.get(symbol))
            self.unprotected.labels(symbol).set(0.0 if at is None else max(0.0, now - at))
        self.store_writable.set(0.0 if health.get("store_down") else 1.0)
        self.healthy.set(1.0 if health.get("ok") else 0.0)

    def _position_gauges(self) -> tuple[Gauge, ...]:
        return (
            self.notional,
            self.leverage,
            self.liq_distance,
            self.stop_present,
            self.upnl,
            self.unprotected,
        )

    def _set(self, gauge: Gauge, symbol: str, value: float | None) -> None:
        if value is None:
            self._drop(gauge, symbol)
        else:
            gauge.labels(symbol).set(value)

    @staticmethod
    def _drop(gauge: Gauge, symbol: str) -> None:
        gauge.remove(symbol)  # a no-op when the series does not exist

    # -- events -------------------------------------------------------------------------------
    def decision(self, outcome: str, code: str, verdicts: Mapping[str, Any] | None = None) -> None:
        """Count one guard decision and (when given, ``{rule: verdict}``) its rule verdicts."""
        self.decisions.labels(outcome, code).inc()
        for rule, verdict in (verdicts or {}).items():
            if verdict != "skip":
                self.verdicts.labels(str(rule), str(verdict)).inc()

    def action(self, kind: str, rule: str) -> None:
        self.actions.labels(kind, rule).inc()

    def realized(self, reason: str, net: float) -> None:
        """Add one round trip's net PnL (the exchange's realised PnL less fees) to its reason."""
        self.realized_pnl.labels(reason).inc(net)

    def exchange_error(self, error_class: str) -> None:
        self.exchange_errors.labels(error_class).inc()

    def order_acked(self, role: str, seconds: float) -> None:
        self.order_latency.labels(role).observe(max(0.0, seconds))

    # -- scheduler and heartbeat --------------------------------------------------------------
    def watch_jobs(self, scheduler: JobCounters) -> None:
        """Expose the scheduler's run / misfire / error counters (read at scrape time)."""
        if self._jobs is not None:
            self.registry.unregister(self._jobs)
        self._jobs = _JobCollector(scheduler)
        self.registry.register(self._jobs)

    def beat(self, ts: float | None = None) -> None:
        """Record a heartbeat now (or at ``ts``); overrides the heartbeat file when newer."""
        self._last_beat = self.clock() if ts is None else ts

    def _heartbeat_age(self) -> float:
        last = self._last_beat
        if self.state_dir is not None:
            try:
                beat = json.loads((self.state_dir / HEARTBEAT_FILE).read_text(encoding="utf-8"))
                file_ts = float(beat["ts"])
            except (OSError, ValueError, KeyError, TypeError):
                file_ts = None
            if file_ts is not None and (last is None or file_ts > last):
                last = file_ts
        return NAN if last is None else max(0.0, self.clock() - last)

    # -- exposition ---------------------------------------------------------------------------
    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)

    def make_app(
        self,
        snapshot: Callable[[], Mapping[str, Any]] | None = None,
        token: str | None = None,
    ) -> web.Application:
        """The ``GET /metrics`` app; ``snapshot`` is read on every scrape; with ``token`` a
        scrape needs ``Authorization: Bearer <token>``."""

        async def handle(request: web.Request) -> web.Response:
            if token and not _bearer_ok(request, token):
                return web.Response(
                    status=401, text="unauthorized", headers={"WWW-Authenticate": "Bearer"}
                )
            if snapshot is not None:
                self.update_from_snapshot(snapshot())
            return web.Response(body=self.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/metrics", handle)
        return app

    async def start_http(
        self,
        host: str,
        port: int,
        snapshot: Callable[[], Mapping[str, Any]] | None = None,
    ) -> MetricsServer:
        """Serve ``GET /metrics`` on the running loop; ``snapshot`` is read on every scrape.

        The running bot serves ``make_app`` on its HTTP thread instead (``bot.ops.http``).
        """
        app = self.make_app(snapshot)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        addresses = runner.addresses
        bound = int(addresses[0][1]) if addresses else port
        return MetricsServer(runner, host, bound)


@dataclass
class MetricsServer:
    """A running ``/metrics`` endpoint; ``await stop()`` closes it."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    async def stop(self) -> None:
        await self.runner.cleanup()


def _bearer_ok(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), token)


class OrderStoreLike(Protocol):
    """The two store methods the executor records orders with (``bot.state.store.Store`` fits)."""

    def order_intent(
        self,
        client_id: str,
        symbol: str,
        side: str,
        type: str,
        amount: float,
        price: float | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> object: ...

    def order_ack(self, client_id: str, order: Mapping[str, Any]) -> object: ...


class TimedOrderStore:
    """Wraps the executor's order store and times each order from intent to acknowledgement.

    Pass it as ``Executor(store=TimedOrderStore(store, metrics))``: the executor records the
    intent just before sending and the ack right after the exchange answered (retries and a
    look-up after an ambiguous failure included). The role label is the executor's own
    (``entry``, ``stop``, ``take_profit``, ``close``, ``reduce``).
    """

    def __init__(
        self,
        inner: OrderStoreLike | None,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.metrics = metrics
        self.clock = clock
        self._pending: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def order_intent(
        self,
        client_id: str,
        symbol: str,
        side: str,
        type: str,
        amount: float,
        price: float | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> object:
        role = str((params or {}).get("role") or "entry")
        self._pending[client_id] = (self.clock(), role)
        self._pending.move_to_end(client_id)
        while len(self._pending) > MAX_PENDING_ORDERS:
            self._pending.popitem(last=False)
        if self.inner is None:
            return None
        return self.inner.order_intent(client_id, symbol, side, type, amount, price, params)

    def order_ack(self, client_id: str, order: Mapping[str, Any]) -> object:
        started = self._pending.pop(client_id, None)
        if started is not None:
            self.metrics.order_acked(started[1], self.clock() - started[0])
        if self.inner is None:
            return None
        return self.inner.order_ack(client_id, order)

    @property
    def writable(self) -> bool:
        """The wrapped store's ``writable`` (a plain store always is)."""
        return bool(getattr(self.inner, "writable", True))

    def order_status(self, client_id: str, status: Any, note: str = "") -> object:
        inner = getattr(self.inner, "order_status", None)
        return None if inner is None else inner(client_id, status, note=note)
