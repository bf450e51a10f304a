"""The glue from the bot's structlog events to metrics and alerts.

``Observer`` is a structlog processor: it looks at ``event_dict["event"]`` of every log event
and forwards the ones it knows to ``bot.ops.metrics.Metrics`` (decision, verdict, action and
exchange-error counters) and ``bot.ops.notify.Notifier`` (alerts, the refused-entry digest). It
never changes the event, never raises and never logs; with neither metrics nor notifier it returns
at once.

``install`` adds it to the running structlog configuration right after the secret redactor, so
alerts carry redacted values only. Allowed decisions are logged at debug level; when metrics
are on and the log level is above debug, ``install`` lets debug events through to the observer
and drops them right after it (``LevelGate``), so the log output is unchanged.

Exchange errors are counted from any event whose ``error`` (or ``after``) field names a ccxt
exception class (``"NetworkError: ..."`` or ``"NetworkError('...')"``): a failed request reported
by the retry layer and again by its caller counts twice, so the series is a rate of error
reports by class, not of requests.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from ccxt.base import errors as ccxt_errors
from structlog.typing import EventDict, Processor, WrappedLogger

from bot.ops.logging import REDACTOR
from bot.ops.metrics import Metrics
from bot.ops.notify import Notifier, alert_from_event

#: Every ccxt exception class name (``NetworkError``, ``InvalidOrder``, ...).
CCXT_ERRORS = frozenset(
    name
    for name, obj in vars(ccxt_errors).items()
    if isinstance(obj, type) and issubclass(obj, ccxt_errors.BaseError)
)
_CLASS = re.compile(r"(?:failed: )?([A-Za-z_][A-Za-z0-9_]*)\s*[:(]")
_LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


def error_class(value: Any) -> str | None:
    """The ccxt exception class an error text starts with, else None."""
    if not isinstance(value, str):
        return None
    match = _CLASS.match(value)
    if match is None or match.group(1) not in CCXT_ERRORS:
        return None
    return match.group(1)


class Observer:
    """A structlog processor feeding metrics and alerts (see the module docstring)."""

    def __init__(
        self,
        metrics: Metrics | None = None,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics
        self.notifier = notifier
        self.clock = clock
        #: Events the observer failed on (it swallows its own errors: logging must go on).
        self.errors = 0

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        if self.metrics is None and self.notifier is None:
            return event_dict
        try:
            self.observe(event_dict)
        except Exception:
            self.errors += 1
        return event_dict

    def observe(self, event: Mapping[str, Any]) -> None:
        """Forward one event dict to the metrics and the notifier."""
        name = event.get("event")
        metrics = self.metrics
        if metrics is not None:
            if name == "guard_decision":
                verdicts = event.get("verdicts")
                metrics.decision(
                    str(event.get("outcome")),
                    str(event.get("code")),
                    verdicts if isinstance(verdicts, Mapping) else None,
                )
            elif name == "guard_action":
                metrics.action(str(event.get("kind")), str(event.get("rule")))
            elif name == "seatbelt_cut":
                metrics.action("reduce", "seatbelt")
            elif name == "round_trip":
                net = event.get("net")
                if isinstance(net, int | float):
                    metrics.realized(str(event.get("reason")), float(net))
            if "error" in event or "after" in event:
                cls = error_class(event.get("error")) or error_class(event.get("after"))
                if cls is not None:
                    metrics.exchange_error(cls)
        notifier = self.notifier
        if notifier is not None:
            if name == "guard_decision":
                if event.get("outcome") == "reject":
                    notifier.refused(
                        str(event.get("symbol")),
                        str(event.get("code")),
                        str(event.get("reason") or ""),
                    )
                return
            alert = alert_from_event(event, self.clock())
            if alert is not None:
                notifier.notify(alert)


class LevelGate:
    """A processor dropping events below ``level`` (used when debug events are let through)."""

    def __init__(self, level: int) -> None:
        self.level = level

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        if _LEVELS.get(method_name, logging.CRITICAL) < self.level:
            raise structlog.DropEvent
        return event_dict


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    return logging.getLevelNamesMapping()[level.upper()]


def install(observer: Observer, *, level: str | int = "info") -> None:
    """Add ``observer`` to the current structlog configuration (replacing an earlier one).

    It goes right after ``bot.ops.logging.REDACTOR`` (or before the final renderer when that is
    absent). ``level`` is the log level ``configure_logging`` was given.
    """
    threshold = _level(level)
    procs = _without_observer(structlog.get_config()["processors"])
    at = procs.index(REDACTOR) + 1 if REDACTOR in procs else max(0, len(procs) - 1)
    added: list[Processor] = [observer]
    wrapper_level = threshold
    if observer.metrics is not None and threshold > logging.DEBUG:
        added.append(LevelGate(threshold))
        wrapper_level = logging.DEBUG
    structlog.configure(
        processors=[*procs[:at], *added, *procs[at:]],
        wrapper_class=structlog.make_filtering_bound_logger(wrapper_level),
    )


def uninstall(*, level: str | int = "info") -> None:
    """Take the observer out again (the log level filter back at ``level``)."""
    structlog.configure(
        processors=_without_observer(structlog.get_config()["processors"]),
        wrapper_class=structlog.make_filtering_bound_logger(_level(level)),
    )


def _without_observer(processors: Any) -> list[Processor]:
    return [p for p in processors if not isinstance(p, Observer | LevelGate)]
