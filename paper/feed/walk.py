"""How a replay walks the data: the intrabar price path and the time-ordered merge of symbols."""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Iterator

from paper.feed.containers import Candles


def intrabar_path(o: float, h: float, low: float, c: float) -> tuple[float, float, float, float]:
    """The price path assumed inside a candle: open, nearer extreme, other extreme, close.

    When the open is equally far from both extremes the low comes first: for a long (the usual
    case) the adverse move is seen before the favourable one, so a stop below is checked before
    a take-profit above. Deterministic for the same four numbers.
    """
    if h - o < o - low:
        return (o, h, low, c)
    return (o, low, h, c)


def merge(*series: Candles) -> Iterator[tuple[int, int, int]]:
    """Walk several candle series in time order, yielding ``(ts_ms, series_index, row_index)``.

    Candles with equal times come in argument order (then row order), so the merge is stable.
    """
    if len(series) == 1:
        for i, t in enumerate(series[0].ts):
            yield (t, 0, i)
        return
    yield from heapq.merge(*(_keyed(k, s.ts) for k, s in enumerate(series)))


def _keyed(k: int, ts: array[int]) -> Iterator[tuple[int, int, int]]:
    for i, t in enumerate(ts):
        yield (t, k, i)
