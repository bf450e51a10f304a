"""Local wall-clock arithmetic for the rules: HH:MM parsing, local minute of day, trading days.

Times come in as epoch seconds (UTC) and are read on the local wall clock of an IANA zone
(``zoneinfo``). Comparisons are wall-clock comparisons: "flat by 22:00" holds from the first
instant the local clock reads 22:00 or later. On a spring-forward day a skipped time takes effect
at the first instant after the gap; on a fall-back day a repeated time is matched on both passes.

Every answer is the one for the start of the UTC minute holding the instant (every zone in use
today has a whole-minute UTC offset, so all instants of one UTC minute share one local minute).
``LocalClock`` caches its conversion per UTC minute. ``WallSegments`` goes further for answers
that only change at a few wall-clock times a day (the trading-day key, a session window): it
keeps the UTC interval over which the part of the local day stays the same — up to the next
edge on the wall clock, or the next change of the zone's UTC offset (found with ``zoneinfo``),
whichever comes first — so asking again until then is one comparison. It assumes a zone's
offset does not change and change back within the day up to the next edge (true of tzdata).
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Iterable
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


class WallSegments:
    """Which part of the local day an instant is in, the parts cut at fixed wall-clock minutes.

    ``edges`` are minutes after local midnight (midnight is always one, so a part never spans
    two local dates). ``at(now)`` is ``(ordinal of the local date, the edge that starts the
    part)``, the same for every instant of the part; ``lo <= now < hi`` is the UTC interval over
    which the last answer holds, so callers that derive something from it may keep that too.
    """

    __slots__ = ("_answer", "edges", "hi", "lo", "tz")

    def __init__(self, tz_name: str, edges: Iterable[int]) -> None:
        self.tz = ZoneInfo(tz_name)
        self.edges = tuple(sorted({0, *edges}))
        if not (self.edges[0] >= 0 and self.edges[-1] < MINUTES_PER_DAY):
            raise ValueError(f"edges must be minutes of the day, got {self.edges}")
        self.lo = math.inf  # empty interval: the first call computes
        self.hi = -math.inf
        self._answer = (0, 0)

    def at(self, now: float) -> tuple[int, int]:
        if self.lo <= now < self.hi:
            return self._answer
        return self.refresh(now)

    def refresh(self, now: float) -> tuple[int, int]:
        """Compute the answer at ``now`` and the interval it holds over."""
        tz = self.tz
        start = int(now // 60) * 60
        dt = datetime.fromtimestamp(start, tz)
        wall_s = (dt.hour * 60 + dt.minute) * 60 + dt.second
        edges = self.edges
        i = bisect_right(edges, wall_s // 60) - 1
        following = edges[i + 1] if i + 1 < len(edges) else MINUTES_PER_DAY
        # the first UTC minute whose wall clock reads the next edge, at the current offset
        end = start + math.ceil((following * 60 - wall_s) / 60) * 60
        offset = dt.utcoffset()
        if datetime.fromtimestamp(end - 60, tz).utcoffset() != offset:
            end = self._offset_change(start, end - 60, offset)
        self.lo = start
        self.hi = end
        self._answer = (dt.toordinal(), edges[i])
        return self._answer

    def _offset_change(self, start: int, last: int, offset: object) -> int:
        """The first UTC minute in (start, last] whose UTC offset is not ``offset``."""
        tz = self.tz
        low, high = start // 60, last // 60  # offset(low) == offset, offset(high) != offset
        while high - low > 1:
            mid = (low + high) // 2
            if datetime.fromtimestamp(mid * 60, tz).utcoffset() == offset:
                low = mid
            else:
                high = mid
        return high * 60


class DayClock:
    """Trading days that start at a local reset time (e.g. 00:00 Europe/Berlin).

    The day key is the ISO local date on which the trading day began; it is kept until the
    next reset (or change of UTC offset), so ``key`` is one comparison nearly always.
    ``next_reset`` is the start of the following trading day (fold=0 where the reset time is
    ambiguous or skipped, which on a skipped time falls after the gap: a halt then lasts
    slightly longer, never less).
    """

    __slots__ = ("_clock", "_hi", "_key", "_lo", "_wall", "reset_minute")

    def __init__(self, tz_name: str, reset_hhmm: str) -> None:
        self._clock = LocalClock(tz_name)
        self.reset_minute = parse_hhmm(reset_hhmm)
        self._wall = WallSegments(tz_name, (self.reset_minute,))
        self._lo = math.inf
        self._hi = -math.inf
        self._key = ""

    def _ordinal(self, now: float) -> int:
        ordinal, part = self._wall.at(now)
        return ordinal - 1 if part < self.reset_minute else ordinal

    def key(self, now: float) -> str:
        if self._lo <= now < self._hi:
            return self._key
        self._key = date.fromordinal(self._ordinal(now)).isoformat()
        wall = self._wall
        self._lo = wall.lo
        self._hi = wall.hi
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
    "WallSegments",
    "check_timezone",
    "in_daily_window",
    "local_text",
    "parse_hhmm",
]
