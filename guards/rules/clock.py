"""Local wall-clock arithmetic for the rules: HH:MM parsing, local minute of day, trading days.

Times come in as epoch seconds (UTC) and are read on the local wall clock of an IANA zone
(``zoneinfo``). Comparisons are wall-clock comparisons: "flat by 22:00" holds from the first
instant the local clock reads 22:00 or later. On a spring-forward day a skipped time takes effect
at the first instant after the gap; on a fall-back day a repeated time is matched on both passes.

Conversions are cached per UTC minute: every zone in use today has a whole-minute UTC offset, so
all instants of one UTC minute share one local minute.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

HHMM_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
_HHMM = re.compile(HHMM_PATTERN)
MINUTES_PER_DAY = 1440


def parse_hhmm(text: str) -> int:
    """'HH:MM' → minutes after local midnight."""
    if not _HHMM.match(text):
        raise ValueError(f"expected HH:MM (00:00-23:59), got {text!r}")
    return int(text[:2]) * 60 + int(text[3:])


def check_timezone(name: str) -> str:
    """Return ``name`` if it is a known IANA time zone, else raise ValueError."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc
    return name


def in_daily_window(minute: int, start: int, end: int) -> bool:
    """Is ``minute`` of day in [start, end), a window that may wrap past midnight?"""
    if start <= end:
        return start <= minute < end
    return minute >= start or minute < end


class LocalClock:
    """Local date and minute of day for epoch seconds, cached per UTC minute."""

    __slots__ = ("_bucket", "_minute", "_ordinal", "tz")

    def __init__(self, tz_name: str) -> None:
        self.tz = ZoneInfo(tz_name)
        self._bucket = -1
        self._ordinal = 0
        self._minute = 0

    def local(self, now: float) -> tuple[int, int]:
        """(proleptic ordinal of the local date, local minute of day) at ``now``."""
        bucket = int(now // 60)
        if bucket != self._bucket:
            dt = datetime.fromtimestamp(bucket * 60, self.tz)
            self._ordinal = dt.toordinal()
            self._minute = dt.hour * 60 + dt.minute
            self._bucket = bucket
        return self._ordinal, self._minute

    def minute_of_day(self, now: float) -> int:
        return self.local(now)[1]

    def instant(self, ordinal: int, minute: int) -> float:
        """Epoch seconds of local ``minute`` on local date ``ordinal`` (PEP 495 fold=0)."""
        day = date.fromordinal(ordinal)
        wall = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=self.tz)
        return wall.timestamp()


class DayClock:
    """Trading days that start at a local reset time (e.g. 00:00 Europe/Berlin).

    The day key is the ISO local date on which the trading day began. ``next_reset`` is the
    start of the following trading day (fold=0 where the reset time is ambiguous or skipped,
    which on a skipped time falls after the gap: a halt then lasts slightly longer, never less).
    """

    __slots__ = ("_clock", "_key", "_key_ordinal", "reset_minute")

    def __init__(self, tz_name: str, reset_hhmm: str) -> None:
        self._clock = LocalClock(tz_name)
        self.reset_minute = parse_hhmm(reset_hhmm)
        self._key_ordinal = -1
        self._key = ""

    def _ordinal(self, now: float) -> int:
        ordinal, minute = self._clock.local(now)
        return ordinal - 1 if minute < self.reset_minute else ordinal

    def key(self, now: float) -> str:
        ordinal = self._ordinal(now)
        if ordinal != self._key_ordinal:
            self._key = date.fromordinal(ordinal).isoformat()
            self._key_ordinal = ordinal
        return self._key

    def next_reset(self, now: float) -> float:
        ordinal = self._ordinal(now) + 1
        start = self._clock.instant(ordinal, self.reset_minute)
        if start <= now:  # only if the zone's rules make the computed instant look back
            start = self._clock.instant(ordinal + 1, self.reset_minute)
        return start


def local_text(tz: ZoneInfo, now: float) -> str:
    """Human local time for figures, e.g. '2024-03-31 03:00 CEST'."""
    return datetime.fromtimestamp(now, tz).strftime("%Y-%m-%d %H:%M %Z")


__all__ = [
    "HHMM_PATTERN",
    "MINUTES_PER_DAY",
    "DayClock",
    "LocalClock",
    "check_timezone",
    "in_daily_window",
    "local_text",
    "parse_hhmm",
]
