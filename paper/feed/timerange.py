"""Time windows in freqtrade's ``--timerange`` format: ``YYYYMMDD-YYYYMMDD``, either side open.

``20250401-20250410`` is 1 April 00:00 UTC up to (not including) 10 April 00:00 UTC;
``20250401-`` runs to the end of the data and ``-20250410`` from its start. As in freqtrade,
either side may also be epoch seconds (10 digits) or milliseconds (13 digits).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

_PART = re.compile(r"^(\d{8}|\d{10}|\d{13})?$")


class TimerangeError(ValueError):
    """A timerange that cannot be read; the message shows the accepted forms."""


@dataclass(frozen=True, slots=True)
class Timerange:
    """``start_ms <= candle open time < end_ms`` (None: open on that side)."""

    start_ms: int | None = None
    end_ms: int | None = None
    text: str = ""

    def __str__(self) -> str:
        return self.text or f"{_fmt(self.start_ms)}-{_fmt(self.end_ms)}"

    def contains(self, ts_ms: int) -> bool:
        if self.start_ms is not None and ts_ms < self.start_ms:
            return False
        return self.end_ms is None or ts_ms < self.end_ms

    def describe(self) -> str:
        """``2025-04-01 00:00 → 2025-04-10 00:00 UTC`` (``start of data`` / ``end of data``)."""
        a = _human(self.start_ms) if self.start_ms is not None else "start of data"
        b = _human(self.end_ms) if self.end_ms is not None else "end of data"
        return f"{a} → {b}"


def _fmt(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%d")


def _human(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _part_ms(part: str, text: str) -> int | None:
    if not part:
        return None
    if len(part) == 8:
        try:
            day = datetime.strptime(part, "%Y%m%d").replace(tzinfo=UTC)
        except ValueError:
            raise TimerangeError(f"timerange {text!r}: {part} is not a date (YYYYMMDD)") from None
        return int(day.timestamp() * 1000)
    return int(part) * (1000 if len(part) == 10 else 1)


def parse_timerange(text: str | None) -> Timerange | None:
    """``"20250401-20250410"`` → ``Timerange``; None or ``""`` → None (the whole data)."""
    if text is None or not text.strip() or text.strip() == "-":
        return None
    raw = text.strip()
    start, sep, end = raw.partition("-")
    if not sep or not _PART.match(start) or not _PART.match(end):
        raise TimerangeError(
            f"timerange {text!r} is not YYYYMMDD-YYYYMMDD (either side may be empty, e.g. "
            "20250401- or -20250410; epoch seconds or milliseconds also work)"
        )
    tr = Timerange(_part_ms(start, raw), _part_ms(end, raw), raw)
    if tr.start_ms is not None and tr.end_ms is not None and tr.start_ms >= tr.end_ms:
        raise TimerangeError(f"timerange {text!r}: the start is not before the end")
    return tr
