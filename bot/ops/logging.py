"""structlog set-up: JSON lines or coloured console, bound context, and secret redaction.

Every event carries ``timestamp`` (ISO 8601 UTC), ``level`` and ``event``, plus whatever context is
bound with ``structlog.contextvars.bind_contextvars`` (run_id, mode, symbol, order_id, rule).
``Redactor`` masks the values of secret-looking keys and every registered secret string wherever
it appears in an event, including inside nested values and exception text.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

MASK = "**********"
_SECRET_KEY_PARTS = ("secret", "api_key", "apikey", "password", "passphrase", "token", "signature")


class Redactor:
    """A structlog processor that masks secrets by key name and by value."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        for s in secrets:
            if s and len(s) >= 4 and s not in self._secrets:
                self._secrets.append(s)
        self._secrets.sort(key=len, reverse=True)

    def _clean(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            for s in self._secrets:
                if s in value:
                    value = value.replace(s, MASK)
            return value
        if depth > 6:
            return value
        if isinstance(value, dict):
            return {
                k: MASK if _secret_key(k) else self._clean(v, depth + 1) for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return type(value)(self._clean(v, depth + 1) for v in value)
        if isinstance(value, BaseException):
            return self._clean(repr(value), depth + 1)
        return value

    def __call__(self, logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
        for key in list(event):
            if _secret_key(key):
                event[key] = MASK
            else:
                event[key] = self._clean(event[key])
        return event


def _secret_key(key: object) -> bool:
    k = str(key).lower()
    return any(part in k for part in _SECRET_KEY_PARTS)


REDACTOR = Redactor()


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at write time (it may be swapped after set-up)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


class _FileSink:
    """A processor that appends each (already redacted) event as one JSON line to a file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("a", encoding="utf-8", buffering=1)

    def __call__(self, logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
        self._fh.write(json.dumps(event, default=str) + "\n")
        return event


def configure_logging(
    *,
    level: str = "info",
    fmt: str = "auto",
    file: Path | None = None,
    stream: TextIO | None = None,
    secrets: Iterable[str] = (),
) -> None:
    """Configure structlog for this process (idempotent)."""
    out: TextIO = stream or _CurrentStderr()  # type: ignore[assignment]
    REDACTOR.add(secrets)
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        REDACTOR,
    ]
    renderer: Processor
    if use_json:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    if file is not None:
        shared.append(_FileSink(file))
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def bind(**context: Any) -> None:
    """Bind context (run_id, mode, symbol, ...) to every later event of this task."""
    structlog.contextvars.bind_contextvars(**context)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)


def redact_mapping(data: MutableMapping[str, Any]) -> Any:
    """Redact a plain mapping with the process-wide redactor (e.g. before printing it)."""
    return REDACTOR._clean(dict(data))
