"""Loading: a file or folder of any supported format into checked ``Candles``/``FundingSeries``.

Read every file (``formats``), concatenate a folder's files in time order, check (``validation``)
and name the series (``names``).
"""

from __future__ import annotations

import math
from pathlib import Path

from paper.feed.containers import Candles, FeedError, FundingSeries
from paper.feed.formats import find_files, read_candle_table, read_funding_table
from paper.feed.names import infer_symbol, stem
from paper.feed.table import OHLCV, concat_tables
from paper.feed.validation import (
    check_prices,
    check_times,
    infer_timeframe,
    order_problem,
    timeframe_from_name,
)


def load_candles(
    path: str | Path,
    *,
    symbol: str | None = None,
    allow_gaps: bool = False,
    timeframe_ms: int | None = None,
) -> Candles:
    """Load and check a candle file (or a folder of them) of any supported format.

    ``symbol`` defaults to the one the name implies (else the file stem); ``timeframe_ms`` to
    the median spacing of the first rows (else the name's ``-5m-`` token).
    """
    p = Path(path)
    tables = [read_candle_table(f) for f in find_files(p)]
    tables = [t for t in tables if len(t.ts)] or tables[:1]
    tables.sort(key=lambda t: t.ts[0] if len(t.ts) else 0)
    table = tables[0] if len(tables) == 1 else concat_tables(tables)
    if not len(table.ts):
        raise FeedError(str(p), None, "no candles")
    tf = timeframe_ms or infer_timeframe(table.ts) or timeframe_from_name(p)
    if not tf:
        raise FeedError(str(p), None, "cannot infer the timeframe from one row; pass timeframe_ms")
    if tf <= 0:
        raise FeedError(str(p), None, f"timeframe must be positive, got {tf} ms")
    check_prices(table)
    gaps = check_times(table, tf, allow_gaps)
    o, h, lo, c, v = (table.cols[k] for k in OHLCV)
    return Candles(
        symbol=symbol or infer_symbol(p) or stem(p),
        timeframe_ms=tf,
        ts=table.ts,
        open=o,
        high=h,
        low=lo,
        close=c,
        volume=v,
        gaps=tuple(gaps),
        source=str(p),
    )


def load_funding(path: str | Path, *, symbol: str | None = None) -> FundingSeries:
    """Load a funding-rate history.

    Accepts freqtrade ``-funding_rate`` files (the rate in ``open``, or a ``funding_rate``
    column), Binance ``fundingRate`` dumps (``calc_time``, ``last_funding_rate``) and a plain CSV
    ``timestamp_ms,rate`` with or without a header. Times must strictly increase; they need not
    sit on a grid (exchanges stamp a few ms late).
    """
    p = Path(path)
    tables = [read_funding_table(f) for f in find_files(p)]
    tables.sort(key=lambda t: t.ts[0] if len(t.ts) else 0)
    table = tables[0] if len(tables) == 1 else concat_tables(tables)
    rate = table.cols["rate"]
    for i, r in enumerate(rate):
        if not math.isfinite(r):
            raise table.error(i, f"funding rate is {r}")
    for i in range(1, len(table.ts)):
        if table.ts[i] <= table.ts[i - 1]:
            raise table.error(i, order_problem(table.ts[i - 1], table.ts[i]))
    return FundingSeries(symbol or infer_symbol(p) or stem(p), table.ts, rate, str(p))
