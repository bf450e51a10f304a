"""Checks of a parsed candle table: times on a grid, consistent prices, the timeframe.

Every problem raises ``FeedError`` naming the file and the 1-based data row: a timestamp that
does not increase (unsorted or duplicate), a timestamp off the timeframe grid, a gap of missing
candles (unless ``allow_gaps``: then the gaps are returned, for ``Candles.gaps`` and the caller
to warn about), and an inconsistent candle (high below the open or close, low above them, NaN
prices, negative volume). Each column is first tested whole at C speed (``map`` over the
``array``s); only a table that fails is walked row by row to name its first bad row. The
timeframe is inferred as the median spacing of the first rows, else from a ``-5m-`` token in the
file name.
"""

from __future__ import annotations

import math
import re
from array import array
from itertools import islice, repeat
from operator import eq, gt, le, sub
from pathlib import Path

from paper.feed.containers import TF_UNITS_MS, Gap, format_timeframe
from paper.feed.table import EPOCH, MS, Table

_TF_RE = re.compile(r"^(\d+)([smhdwM])$")
#: How many leading spacings the timeframe is inferred from (median).
_TF_SAMPLE = 2001


def infer_timeframe(ts: array[int]) -> int | None:
    """The median spacing of the first rows, None with fewer than two (or no positive one)."""
    n = min(len(ts), _TF_SAMPLE)
    if n < 2:
        return None
    deltas = sorted(ts[i] - ts[i - 1] for i in range(1, n))
    median = deltas[len(deltas) // 2]
    return median if median > 0 else None


def timeframe_from_name(p: Path) -> int | None:
    """The timeframe a ``-5m-`` token of the file name gives (months are not timeframes)."""
    for token in p.name.split("-"):
        m = _TF_RE.match(token)
        if m and m.group(2) != "M":
            return int(m.group(1)) * TF_UNITS_MS[m.group(2)]
    return None


def _utc(ts_ms: int) -> str:
    return (EPOCH + ts_ms * MS).strftime("%Y-%m-%d %H:%M:%S UTC")


def order_problem(prev: int, t: int) -> str:
    """The message for a timestamp ``t`` that does not come after ``prev``."""
    what = "duplicate" if t == prev else "unsorted"
    return f"{what} timestamp {t} ({_utc(t)}) after {prev} ({_utc(prev)})"


def _times_regular(ts: array[int], tf: int) -> bool:
    """True when every spacing equals ``tf``, tested at C speed (``map`` over the columns);
    False: walk the rows to find and name the first that is not."""
    return all(map(eq, map(sub, islice(ts, 1, None), ts), repeat(tf)))


def _prices_consistent(c: dict[str, array[float]]) -> bool:
    """True when every candle has low <= open, close <= high and a volume that is not negative
    (NaN volume passes, NaN prices fail: as in the row-by-row check), tested at C speed."""
    o, h, lo, cl, v = (c[k] for k in ("open", "high", "low", "close", "volume"))
    return (
        all(map(le, lo, o))
        and all(map(le, o, h))
        and all(map(le, lo, cl))
        and all(map(le, cl, h))
        and not any(map(gt, repeat(0.0), v))
    )


def check_times(table: Table, tf: int, allow_gaps: bool) -> list[Gap]:
    ts = table.ts
    if _times_regular(ts, tf):
        return []
    gaps: list[Gap] = []
    prev = ts[0]
    for i in range(1, len(ts)):
        t = ts[i]
        d = t - prev
        if d != tf:
            if d <= 0:
                raise table.error(i, order_problem(prev, t))
            if d % tf:
                raise table.error(
                    i,
                    f"timestamp {t} ({_utc(t)}) is off the {format_timeframe(tf)} grid "
                    f"({d} ms after the previous candle)",
                )
            missing = d // tf - 1
            if not allow_gaps:
                raise table.error(
                    i,
                    f"gap: {missing} missing {format_timeframe(tf)} candle(s) from "
                    f"{_utc(prev + tf)} to {_utc(t - tf)} (pass allow_gaps to accept)",
                )
            gaps.append(Gap(i, prev + tf, missing))
        prev = t
    return gaps


def check_prices(table: Table) -> None:
    c = table.cols
    if _prices_consistent(c):
        return
    rows = zip(c["open"], c["high"], c["low"], c["close"], c["volume"], strict=True)
    for i, (o, h, lo, cl, v) in enumerate(rows):
        # Chained comparisons are False for NaN, so NaN prices fail here too; NaN volume passes.
        if not (lo <= o <= h and lo <= cl <= h) or v < 0.0:
            raise table.error(i, _price_problem(o, h, lo, cl, v))


def _price_problem(o: float, h: float, lo: float, c: float, v: float) -> str:
    figures = f"open={o!r} high={h!r} low={lo!r} close={c!r} volume={v!r}"
    if any(math.isnan(x) for x in (o, h, lo, c)):
        return f"malformed candle: NaN price ({figures})"
    if v < 0:
        return f"malformed candle: negative volume ({figures})"
    if h < max(o, c):
        return f"malformed candle: high below max(open, close) ({figures})"
    return f"malformed candle: low above min(open, close) ({figures})"
