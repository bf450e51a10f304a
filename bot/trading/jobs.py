"""The bot's scheduled jobs, on APScheduler triggers, live or on a simulated clock.

``job_specs`` names every job once, with its APScheduler 3 trigger: the guard sweep every
``guards.sweep_s``; the no-overnight flatten as a ``CronTrigger`` at ``flat_by`` in the configured
time zone; the daily counter reset at the loss-limit day boundary; market and leverage-tier
refresh; heartbeat; equity snapshot; the REST reconciliation of fills and order statuses.

``LiveScheduler`` runs them on an ``AsyncIOScheduler`` on the bot's own loop (every job with
``coalesce=True``, ``max_instances=1`` and a misfire grace time). ``SimScheduler`` runs the very
same triggers from a replay clock: ``advance(now)`` fires every job whose next fire time has
come, once (coalesced) however many were missed, so replay and live share one behaviour.

APScheduler logs through the standard library; ``route_apscheduler_logs`` (called by
``LiveScheduler``) sends its warnings and errors through structlog instead (event
``apscheduler``, its level, the logger name and message; an exception as structlog renders
exceptions, one JSON field in JSON mode), so no raw
line reaches stderr in JSON mode, and a job cancelled at shutdown is one ``job_cancelled``
event rather than a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from guards import GuardsConfig

log = structlog.get_logger("jobs")

#: A job: a coroutine function (live, replay engine) or a plain function (the sync replay loop).
JobFunc = Callable[[], Awaitable[None] | None]
MISFIRE_GRACE_S = 30


@dataclass(frozen=True)
class JobSpec:
    name: str
    trigger: BaseTrigger
    func: JobFunc


def _hh_mm(text: str) -> tuple[int, int]:
    hh, mm = text.split(":")
    return int(hh), int(mm)


def job_triggers(
    guards: GuardsConfig,
    *,
    heartbeat_s: float,
    equity_s: float = 60.0,
    markets_refresh_s: float = 6 * 3600.0,
    reconcile_s: float = 60.0,
    start: datetime | None = None,
) -> dict[str, BaseTrigger]:
    """Name → trigger for every scheduled job (interval triggers anchored at ``start``).

    In the order jobs due at the same instant run (``SimScheduler``): the flatten and the daily
    reset first, then the sweep, so a position at ``flat_by`` is closed by the flatten job
    itself in replay and in the running bot alike.
    """
    anchor = start or datetime.now(UTC)
    triggers: dict[str, BaseTrigger] = {}
    no = guards.no_overnight
    if no.enabled:
        hh, mm = _hh_mm(no.flat_by)
        triggers["flatten"] = CronTrigger(hour=hh, minute=mm, timezone=no.timezone)
    ll = guards.loss_limit
    hh, mm = _hh_mm(ll.day_reset)
    triggers["daily_reset"] = CronTrigger(hour=hh, minute=mm, timezone=ll.timezone)
    triggers["sweep"] = IntervalTrigger(seconds=guards.sweep_s, start_date=anchor, timezone=UTC)
    triggers["heartbeat"] = IntervalTrigger(seconds=heartbeat_s, start_date=anchor, timezone=UTC)
    triggers["equity_snapshot"] = IntervalTrigger(seconds=equity_s, start_date=anchor, timezone=UTC)
    triggers["markets_refresh"] = IntervalTrigger(
        seconds=markets_refresh_s, start_date=anchor, timezone=UTC
    )
    triggers["reconcile_fills"] = IntervalTrigger(
        seconds=reconcile_s, start_date=anchor, timezone=UTC
    )
    return triggers


def job_specs(triggers: dict[str, BaseTrigger], funcs: dict[str, JobFunc]) -> list[JobSpec]:
    """Pair triggers with the functions that exist (a job without a function is skipped)."""
    return [JobSpec(name, trig, funcs[name]) for name, trig in triggers.items() if name in funcs]


class _ToStructlog(logging.Handler):
    """A logging handler that re-emits each record as a structlog event."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            logger = structlog.get_logger(record.name)
            exc = record.exc_info
            if (
                exc is not None
                and exc[0] is not None
                and issubclass(exc[0], asyncio.CancelledError)
            ):
                logger.info("job_cancelled", message=record.getMessage())  # a shutdown
                return
            level = record.levelname.lower()
            method = getattr(logger, level if level != "critical" else "critical", logger.info)
            fields: dict[str, Any] = {"message": record.getMessage()}
            if exc is not None and exc[0] is not None:
                fields["exc_info"] = exc
            method("apscheduler", **fields)
        except Exception:  # logging must never raise into the scheduler
            self.handleError(record)


def route_apscheduler_logs() -> None:
    """Send APScheduler's standard-library logging through structlog (idempotent)."""
    logger = logging.getLogger("apscheduler")
    if not any(isinstance(h, _ToStructlog) for h in logger.handlers):
        logger.addHandler(_ToStructlog())
    logger.setLevel(logging.WARNING)  # its INFO lines ("Running job ...") would flood the log
    logger.propagate = False


class LiveScheduler:
    """APScheduler's ``AsyncIOScheduler`` on the running loop, with run/misfire counters."""

    def __init__(self, specs: list[JobSpec]) -> None:
        route_apscheduler_logs()
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.runs: dict[str, int] = {}
        self.misfires: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        for spec in specs:
            self.scheduler.add_job(
                spec.func,
                spec.trigger,
                id=spec.name,
                name=spec.name,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=MISFIRE_GRACE_S,
            )
        self.scheduler.add_listener(
            self._on_event, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED
        )

    def _on_event(self, event: JobEvent) -> None:
        name = str(event.job_id)
        if event.code == EVENT_JOB_MISSED:
            self.misfires[name] = self.misfires.get(name, 0) + 1
            log.warning("job_misfired", job=name)
        elif event.code == EVENT_JOB_ERROR and isinstance(
            getattr(event, "exception", None), asyncio.CancelledError
        ):
            log.info("job_cancelled", job=name)  # the scheduler is shutting down
        elif event.code == EVENT_JOB_ERROR:
            self.errors[name] = self.errors.get(name, 0) + 1
            log.error("job_failed", job=name, error=repr(getattr(event, "exception", None)))
        else:
            self.runs[name] = self.runs.get(name, 0) + 1

    def start(self) -> None:
        self.scheduler.start()

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)


class SimScheduler:
    """The same triggers driven by a simulated clock (replay)."""

    def __init__(self, specs: list[JobSpec], start: datetime) -> None:
        self.specs = specs
        self.runs: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self._next: dict[str, datetime | None] = {
            s.name: s.trigger.get_next_fire_time(None, start) for s in specs
        }
        #: Epoch seconds of the soonest fire time (inf when nothing is scheduled).
        self.next_due = self._min_next()

    def _min_next(self) -> float:
        times = [n.timestamp() for n in self._next.values() if n is not None]
        return min(times) if times else float("inf")

    def due(self, now: datetime) -> list[JobSpec]:
        return [s for s in self.specs if (n := self._next[s.name]) is not None and n <= now]

    def pop_due(self, now_ts: float) -> list[JobSpec]:
        """The jobs due at ``now_ts`` (epoch s), each rescheduled after it (coalesced).

        Cheap when nothing is due (one comparison), so a replay can ask on every candle.
        """
        if now_ts < self.next_due:
            return []
        now = datetime.fromtimestamp(now_ts, UTC)
        due = self.due(now)
        for spec in due:
            nxt = spec.trigger.get_next_fire_time(self._next[spec.name], now)
            while nxt is not None and nxt <= now:
                nxt = spec.trigger.get_next_fire_time(nxt, now)
            self._next[spec.name] = nxt
        self.next_due = self._min_next()
        return due

    def run_sync(self, now_ts: float) -> None:
        """Fire the due plain-function jobs (the sync replay loop)."""
        for spec in self.pop_due(now_ts):
            try:
                spec.func()
                self.runs[spec.name] = self.runs.get(spec.name, 0) + 1
            except Exception as exc:  # a failing job must not stop the replay
                self.errors[spec.name] = self.errors.get(spec.name, 0) + 1
                log.error("job_failed", job=spec.name, error=repr(exc))

    async def advance(self, now: datetime) -> None:
        """Fire every due job once (coalesced) and schedule its next run after ``now``."""
        for spec in self.pop_due(now.timestamp()):
            try:
                result = spec.func()
                if result is not None:
                    await result
                self.runs[spec.name] = self.runs.get(spec.name, 0) + 1
            except Exception as exc:  # a failing job must not stop the replay
                self.errors[spec.name] = self.errors.get(spec.name, 0) + 1
                log.error("job_failed", job=spec.name, error=repr(exc))

    def next_fire(self, name: str) -> datetime | None:
        return self._next.get(name)


def describe(specs: list[JobSpec]) -> list[dict[str, Any]]:
    return [{"job": s.name, "trigger": str(s.trigger)} for s in specs]
