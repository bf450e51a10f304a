"""Checks of a parsed candle table: times on a grid, consistent prices, the timeframe.

Every problem raises ``FeedError`` naming the file, the 1-based data row, the value and what
was expected: a timestamp out of range (before 1970 or from 2100 on), timestamps that do not
increase (unsorted or duplicate; checked over the whole file before any gap, so unsorted data is
named as such), a timestamp off the timeframe grid, a gap of missing candles (unless
``allow_gaps`` / ``--allow-gaps``: then the gaps are returned, for ``Candles.gaps`` and the
caller to warn about), and a malformed candle: a NaN or infinite price, a price ≤ 0, the high
below the open or close, the low above them, a negative volume. The timeframe is inferred as the
median spacing of the first rows, else from a ``-5m-`` token in the file name. Each column is
first tested whole at C speed (``map`` over the ``array``s); only a table that fails is walked
row by row to name its first bad row.
"""

from __future__ import annotations

import math
import re
from array import array
from itertools import islice, repeat
from operator import eq, gt, le, sub
from pathlib import Path

from paper.feed.containers import TF_UNITS_MS, FeedError, Gap, format_timeframe
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


#: Timestamps must lie in [1970-01-01, 2100-01-01) UTC, epoch ms.
MIN_TS_MS = 0
MAX_TS_MS = 4_102_444_800_000
TS_RANGE = "epoch milliseconds from 1970-01-01 to 2100-01-01 (seconds, µs and ns are recognised)"


def _utc(ts_ms: int) -> str:
    try:
        return (EPOCH + ts_ms * MS).strftime("%Y-%m-%d %H:%M:%S UTC")
    except OverflowError:
        return "out of range"


def order_problem(prev: int, t: int) -> str:
    """The message for a timestamp ``t`` that does not come after ``prev``."""
    what = "duplicate" if t == prev else "unsorted"
    return f"{what} timestamp {t} ({_utc(t)}) after {prev} ({_utc(prev)})"


def _times_regular(ts: array[int], tf: int) -> bool:
    """True when every spacing equals ``tf``, tested at C speed (``map`` over the columns);
    False: walk the rows to find and name the first that is not."""
    return all(map(eq, map(sub, islice(ts, 1, None), ts), repeat(tf)))


def _prices_consistent(c: dict[str, array[float]]) -> bool:
    """True when every candle has 0 < low <= open, close <= high < inf and a volume that is not
    negative (NaN volume passes, NaN prices fail: as in the row-by-row check), tested at C
    speed."""
    o, h, lo, cl, v = (c[k] for k in ("open", "high", "low", "close", "volume"))
    if len(lo) and not (min(lo) > 0.0 and max(h) < math.inf):
        return False
    return (
        all(map(le, lo, o))
        and all(map(le, o, h))
        and all(map(le, lo, cl))
        and all(map(le, cl, h))
        and not any(map(gt, repeat(0.0), v))
    )


def check_times(table: Table, tf: int, allow_gaps: bool) -> list[Gap]:
    ts = table.ts
    if len(ts) and not (min(ts) >= MIN_TS_MS and max(ts) < MAX_TS_MS):
        i = next(i for i, t in enumerate(ts) if not MIN_TS_MS <= t < MAX_TS_MS)
        raise table.error(i, f"timestamp {ts[i]} ({_utc(ts[i])}) out of range: expected {TS_RANGE}")
    if _times_regular(ts, tf):
        return []
    gaps: list[Gap] = []
    #: an off-grid time or a refused gap, raised once the whole file was found in order
    first_gap: FeedError | None = None
    prev = ts[0]
    for i in range(1, len(ts)):
        t = ts[i]
        d = t - prev
        if d != tf:
            if d <= 0:
                raise table.error(i, order_problem(prev, t))
            if d % tf:
                if first_gap is None:
                    first_gap = table.error(
                        i,
                        f"timestamp {t} ({_utc(t)}) is off the {format_timeframe(tf)} grid "
                        f"({d} ms after the previous candle)",
                    )
                prev = t
                continue
            missing = d // tf - 1
            if not allow_gaps and first_gap is None:
                first_gap = table.error(
                    i,
                    f"gap: {missing} missing {format_timeframe(tf)} candle(s) from "
                    f"{_utc(prev + tf)} to {_utc(t - tf)}; expected contiguous candles "
                    "(pass --allow-gaps, or set feed.allow_gaps = true, to replay it anyway)",
                )
            gaps.append(Gap(i, prev + tf, missing))
        prev = t
    if first_gap is not None:
        raise first_gap
    return gaps


def check_prices(table: Table) -> None:
    c = table.cols
    if _prices_consistent(c):
        return
    rows = zip(c["open"], c["high"], c["low"], c["close"], c["volume"], strict=True)
    inf = math.inf
    for i, (o, h, lo, cl, v) in enumerate(rows):
        # Chained comparisons are False for NaN, so NaN prices fail here too; NaN volume passes.
        if not (0.0 < lo <= o <= h < inf and lo <= cl <= h) or v < 0.0:
            raise table.error(i, _price_problem(o, h, lo, cl, v))


def _price_problem(o: float, h: float, lo: float, c: float, v: float) -> str:
    figures = f"open={o!r} high={h!r} low={lo!r} close={c!r} volume={v!r}"
    prices = (o, h, lo, c)
    if any(math.isnan(x) for x in prices):
        return f"malformed candle: NaN price ({figures}); expected numbers"
    if any(math.isinf(x) for x in prices):
        return f"malformed candle: infinite price ({figures}); expected finite numbers"
    if any(x <= 0.0 for x in prices):
        return f"malformed candle: price ≤ 0 ({figures}); expected positive prices"
    if v < 0:
        return f"malformed candle: negative volume ({figures}); expected volume ≥ 0"
    if h < max(o, c):
        return f"malformed candle: high below max(open, close) ({figures})"
    return f"malformed candle: low above min(open, close) ({figures})"
