"""What a replay's log lines and its monitors share: the data clock and the early stop.

``DataClock`` is bound once as the structlog context value ``data_time`` and renders the
replay's current data time only when a line is written (zero cost per candle); ``StopReplay``
ends a replay from its ``monitor`` (a tuning trial that can no longer succeed).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


class StopReplay(Exception):
    """Raised by a ``monitor`` to end a replay early (a tuning trial that cannot recover)."""


class DataClock:
    """The replay's data time on every log line (bound as ``data_time``), rendered when a line
    is written: zero cost per candle. JSON logs call ``__structlog__``, the console ``repr``."""

    __slots__ = ("frozen", "run")

    def __init__(self, run: Any) -> None:
        self.run = run
        self.frozen: str | None = None

    def text(self) -> str:
        if self.frozen is not None:
            return self.frozen
        now = self.run.now_s
        if not now:
            return "start"
        return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def __structlog__(self) -> str:
        return self.text()

    __str__ = text
    __repr__ = text
