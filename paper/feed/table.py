"""A parsed table before its checks: timestamp columns, float columns, where each row came from.

The format readers all produce a ``Table`` (``ts`` plus named float columns, and ``Segment``s
mapping rows back to their source file and header lines, so that an error can name the file
and the row); several tables (a folder of daily files) concatenate. Also here: the column
names each role is recognised by, and the timestamp parsing shared by the formats.

Numeric timestamps are read as milliseconds; seconds, microseconds (Binance spot dumps since
2025) and nanoseconds are recognised by magnitude from the first value. ISO date strings
(naive ones as UTC) are read too.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from paper.feed.containers import FeedError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)

# Column names by role, compared after lower-casing and dropping "_", " " and "-".
TS_NAMES = (
    "timestampms",
    "timestamp",
    "opentime",
    "date",
    "datetime",
    "time",
    "ts",
    "calctime",
    "fundingtime",
)

RATE_NAMES = ("fundingrate", "lastfundingrate", "rate", "open")

OHLCV = ("open", "high", "low", "close", "volume")


@dataclass(slots=True)
class Segment:
    """Rows ``[start, ...)`` of a table came from ``source``; ``header`` lines precede them."""

    source: str
    start: int
    header: int = 0


@dataclass(slots=True)
class Table:
    ts: array[int]
    cols: dict[str, array[float]]
    segments: list[Segment] = field(default_factory=list)

    def error(self, index: int, problem: str) -> FeedError:
        """A FeedError for 0-based row ``index`` of the table, located in its source file."""
        seg = self.segments[0]
        for s in self.segments:
            if s.start <= index:
                seg = s
        row = index - seg.start + 1
        return FeedError(seg.source, row, problem, row + seg.header if seg.header else None)


def concat_tables(tables: list[Table]) -> Table:
    """One table of several, in the given order, each row still located in its file."""
    ts: array[int] = array("q")
    cols: dict[str, array[float]] = {k: array("d") for k in tables[0].cols}
    segments: list[Segment] = []
    for t in tables:
        offset = len(ts)
        segments.extend(Segment(s.source, s.start + offset, s.header) for s in t.segments)
        ts.extend(t.ts)
        for k, col in cols.items():
            col.extend(t.cols[k])
    return Table(ts, cols, segments)


def norm_name(name: str) -> str:
    return name.strip().strip('"').lower().replace("_", "").replace(" ", "").replace("-", "")


def find_column(names: list[str], wanted: Sequence[str]) -> int | None:
    for w in wanted:
        if w in names:
            return names.index(w)
    return None


def to_float(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"not a number: {value!r}")
    return float(value)


def _scale_for(value: float) -> int:
    """Divisor (negative: multiplier) turning a numeric timestamp into ms, by its magnitude."""
    a = abs(value)
    if a < 1e11:
        return -1_000  # seconds
    if a < 1e14:
        return 1  # milliseconds
    if a < 1e17:
        return 1_000  # microseconds
    return 1_000_000  # nanoseconds


def _iso_ms(text: str) -> int:
    dt = datetime.fromisoformat(text.strip().strip('"').replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - EPOCH) // MS


def ts_parser(sample: str) -> Callable[[str], int]:
    """A str → epoch-ms parser chosen from the first value (int, float or ISO date string)."""
    try:
        first: float = int(sample)
        numeric: Callable[[str], float | int] = int
    except ValueError:
        try:
            first = float(sample)
            numeric = float
        except ValueError:
            return _iso_ms
    scale = _scale_for(first)
    if scale == 1 and numeric is int:
        return int
    if scale < 0:
        return lambda s: round(numeric(s) * -scale)
    return lambda s: int(numeric(s) // scale)


def ts_value(value: Any) -> int:
    """A JSON/feather value → epoch ms (used per value in the slower non-CSV paths)."""
    if isinstance(value, bool):
        raise ValueError("boolean timestamp")
    if isinstance(value, int | float):
        scale = _scale_for(value)
        return round(value * -scale) if scale < 0 else int(value // scale)
    if isinstance(value, str):
        return ts_parser(value)(value)
    raise ValueError(f"timestamp of type {type(value).__name__}")
