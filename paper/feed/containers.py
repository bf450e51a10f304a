"""The replay feed's containers: ``Candles``, ``FundingSeries``, ``Gap`` and ``FeedError``.

``Candles`` holds one symbol's candles as parallel columns (``array``s: open times in epoch ms
UTC, prices and volume as floats), compact enough for millions of rows; ``FundingSeries`` a
funding history (times as published, a few ms late, and rates). ``FeedError`` is the one
exception of the feed: it names the file and the 1-based data row (and the text line when
header lines make them differ). ``format_timeframe`` writes a timeframe in ms as ``5m``.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

TF_UNITS_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


class FeedError(ValueError):
    """A data file that cannot be replayed; the message names the file and the row."""

    def __init__(self, source: str, row: int | None, problem: str, line: int | None = None) -> None:
        where = source
        if row is not None:
            where += f": row {row}"
            if line is not None and line != row:
                where += f" (line {line})"
        super().__init__(f"{where}: {problem}")
        self.source = source
        #: 1-based data row (header lines not counted), None when the file as a whole is wrong.
        self.row = row
        #: 1-based line of a text file, counting header lines.
        self.line = line
        self.problem = problem


class Gap(NamedTuple):
    """``missing`` candles from ``start_ms`` are absent just before row ``next_index`` (0-based)."""

    next_index: int
    start_ms: int
    missing: int


@dataclass(slots=True, eq=False)
class Candles:
    """One symbol's candles as parallel columns (open times in epoch ms, prices as floats)."""

    symbol: str
    timeframe_ms: int
    ts: array[int]
    open: array[float]
    high: array[float]
    low: array[float]
    close: array[float]
    volume: array[float]
    gaps: tuple[Gap, ...] = ()
    source: str = ""

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def timeframe(self) -> str:
        return format_timeframe(self.timeframe_ms)

    @property
    def missing(self) -> int:
        """Total number of missing candles across all gaps."""
        return sum(g.missing for g in self.gaps)

    def row(self, i: int) -> tuple[int, float, float, float, float, float]:
        return (self.ts[i], self.open[i], self.high[i], self.low[i], self.close[i], self.volume[i])

    def rows(self) -> Iterator[tuple[int, float, float, float, float, float]]:
        return zip(self.ts, self.open, self.high, self.low, self.close, self.volume, strict=True)

    def index_at(self, ts_ms: int) -> int | None:
        """Index of the candle whose interval ``[open time, open time + timeframe)`` holds ts."""
        i = bisect.bisect_right(self.ts, ts_ms) - 1
        if i < 0 or ts_ms >= self.ts[i] + self.timeframe_ms:
            return None
        return i

    def mark_at(self, ts_ms: int) -> float | None:
        """For a mark-price series: the OPEN of the candle covering ``ts_ms``, None outside.

        The open is the last mark known at the candle's start, so using it never looks ahead;
        with coarse marks (8 h) it is a step function. A driver wanting the mark's movement inside
        the candle can walk ``intrabar_path`` over the row at ``index_at(ts_ms)``.
        """
        i = self.index_at(ts_ms)
        return None if i is None else self.open[i]

    def between(self, start_ms: int | None = None, end_ms: int | None = None) -> Candles:
        """The candles with ``start_ms <= ts < end_ms`` (either bound optional), as a copy."""
        lo = 0 if start_ms is None else bisect.bisect_left(self.ts, start_ms)
        hi = len(self.ts) if end_ms is None else bisect.bisect_left(self.ts, end_ms)
        gaps = tuple(
            Gap(g.next_index - lo, g.start_ms, g.missing)
            for g in self.gaps
            if lo < g.next_index < hi
        )
        return Candles(
            self.symbol,
            self.timeframe_ms,
            self.ts[lo:hi],
            self.open[lo:hi],
            self.high[lo:hi],
            self.low[lo:hi],
            self.close[lo:hi],
            self.volume[lo:hi],
            gaps,
            self.source,
        )


@dataclass(slots=True, eq=False)
class FundingSeries:
    """Funding events: times (epoch ms, as published, e.g. 00:00:00.017) and rates."""

    symbol: str
    ts: array[int]
    rate: array[float]
    source: str = ""

    def __len__(self) -> int:
        return len(self.ts)

    def rate_at(self, ts_ms: int, tolerance_ms: int = 1_000) -> float | None:
        """The rate of the funding event within ``tolerance_ms`` of ``ts_ms`` (nearest), or None.

        Exchanges stamp funding a few milliseconds after the hour (00:00:00.017); the tolerance
        lets a driver ask at the exact funding time.
        """
        i = bisect.bisect_left(self.ts, ts_ms - tolerance_ms)
        best: int | None = None
        while i < len(self.ts) and self.ts[i] <= ts_ms + tolerance_ms:
            if best is None or abs(self.ts[i] - ts_ms) < abs(self.ts[best] - ts_ms):
                best = i
            i += 1
        return None if best is None else self.rate[best]

    def between(self, start_ms: int, end_ms: int) -> list[tuple[int, float]]:
        """Funding events with ``start_ms <= ts < end_ms`` as ``(ts_ms, rate)``, in time order."""
        lo = bisect.bisect_left(self.ts, start_ms)
        hi = bisect.bisect_left(self.ts, end_ms)
        return list(zip(self.ts[lo:hi], self.rate[lo:hi], strict=True))


def format_timeframe(timeframe_ms: int) -> str:
    """``300000`` → ``"5m"``; the largest unit that divides evenly (ms as a fallback)."""
    for unit, size in sorted(TF_UNITS_MS.items(), key=lambda kv: -kv[1]):
        if timeframe_ms > 0 and timeframe_ms % size == 0:
            return f"{timeframe_ms // size}{unit}"
    return f"{timeframe_ms}ms"
