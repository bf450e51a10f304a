"""Historical market data for replay: candles, mark prices and funding rates.

This module owns reading candle files into a compact columnar ``Candles`` container, funding
histories into a ``FundingSeries``, the intrabar path a replay walks inside each candle, and the
time-ordered merge of several symbols.

Formats (detected by extension, then by content):

- CSV, optionally gzipped (``.csv``, ``.csv.gz``): ``timestamp_ms,open,high,low,close,volume``
  with or without a header. With a header, columns are found by name (``open_time``,
  ``timestamp``, ``date``, ... for the time), so Binance kline dumps and nautilus bar CSVs
  (``timestamp`` as a naive UTC string) load too. Without one, the first six columns are taken
  in that order.
- data.binance.vision kline zips (one CSV inside), and a folder of such files (e.g. daily zips),
  concatenated in time order.
- freqtrade feather (``date`` timestamp column; needs pyarrow, imported only for these files),
  freqtrade json (array of ``[ts_ms, open, high, low, close, volume]``, ``.json`` or
  ``.json.gz``) and pandas ``to_json`` column layout (``{"date": {"0": ts_ms, ...}, ...}``).

Numeric timestamps are read as milliseconds; seconds, microseconds (Binance spot dumps since
2025) and nanoseconds are recognised by magnitude from the first row. Times are candle OPEN times,
epoch milliseconds UTC. A missing volume (mark-price files) reads as 0.

Every problem raises ``FeedError`` naming the file and the 1-based data row: a malformed number or
too few columns, a timestamp that does not increase (unsorted or duplicate), a timestamp off the
timeframe grid, a gap of missing candles (unless ``allow_gaps``: then the gaps are listed on
``Candles.gaps`` for the caller to warn about), and an inconsistent candle (high below the open or
close, low above them, NaN prices, negative volume).
"""

from __future__ import annotations

import bisect
import gzip
import heapq
import io
import json
import math
import re
import zipfile
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import IO, Any, NamedTuple

__all__ = [
    "Candles",
    "FeedError",
    "FundingSeries",
    "Gap",
    "bundled_candles_path",
    "bundled_funding_path",
    "format_timeframe",
    "infer_symbol",
    "intrabar_path",
    "load_candles",
    "load_funding",
    "merge",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_SUFFIXES = (".csv", ".csv.gz", ".txt", ".zip", ".json", ".json.gz", ".feather", ".arrow")
_TF_UNITS_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_TF_RE = re.compile(r"^(\d+)([smhdwM])$")
_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USD")
#: How many leading spacings the timeframe is inferred from (median).
_TF_SAMPLE = 2001

# Column names by role, compared after lower-casing and dropping "_", " " and "-".
_TS_NAMES = (
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
_RATE_NAMES = ("fundingrate", "lastfundingrate", "rate", "open")
_OHLCV = ("open", "high", "low", "close", "volume")


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


# --------------------------------------------------------------------------------------------
# Public helpers


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


def format_timeframe(timeframe_ms: int) -> str:
    """``300000`` → ``"5m"``; the largest unit that divides evenly (ms as a fallback)."""
    for unit, size in sorted(_TF_UNITS_MS.items(), key=lambda kv: -kv[1]):
        if timeframe_ms > 0 and timeframe_ms % size == 0:
            return f"{timeframe_ms // size}{unit}"
    return f"{timeframe_ms}ms"


def infer_symbol(path: str | Path) -> str | None:
    """The ccxt symbol a file or folder name implies, or None.

    freqtrade names: ``BTC_USDT_USDT-5m-futures`` → ``BTC/USDT:USDT``, ``BTC_USDT-1m`` →
    ``BTC/USDT``. Binance dump names: ``BTCUSDT-5m-2025-10-10`` → ``BTC/USDT:USDT`` (USDⓈ-M
    perpetual), ``BTCUSD_PERP-1m-…`` → ``BTC/USD:BTC`` (COIN-M perpetual).
    """
    name = Path(path).name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    head = name.split("-", 1)[0]
    if "-" not in name or not head:
        return None
    parts = head.split("_")
    if len(parts) == 2 and parts[1] == "PERP":
        base = _split_pair(parts[0])
        return f"{base[0]}/{base[1]}:{base[0]}" if base else None
    if len(parts) == 3 and all(parts):
        return f"{parts[0]}/{parts[1]}:{parts[2]}"
    if len(parts) == 2 and all(parts):
        return f"{parts[0]}/{parts[1]}"
    if len(parts) == 1 and head.isupper():
        pair = _split_pair(head)
        if pair:
            return f"{pair[0]}/{pair[1]}:{pair[1]}"
    return None


def bundled_candles_path() -> Path:
    """The BTC/USDT:USDT 5m perpetual candles shipped with the package (April 2025 crash)."""
    return _bundled("BTC_USDT_USDT-5m-futures.csv.gz")


def bundled_funding_path() -> Path:
    """The 8 h funding rates that go with ``bundled_candles_path()``."""
    return _bundled("BTC_USDT_USDT-8h-funding_rate.csv.gz")


# --------------------------------------------------------------------------------------------
# Loading


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
    tables = [_read_candle_table(f) for f in _files(p)]
    tables = [t for t in tables if len(t.ts)] or tables[:1]
    tables.sort(key=lambda t: t.ts[0] if len(t.ts) else 0)
    table = tables[0] if len(tables) == 1 else _concat(tables)
    if not len(table.ts):
        raise FeedError(str(p), None, "no candles")
    tf = timeframe_ms or _infer_timeframe(table.ts) or _timeframe_from_name(p)
    if not tf:
        raise FeedError(str(p), None, "cannot infer the timeframe from one row; pass timeframe_ms")
    if tf <= 0:
        raise FeedError(str(p), None, f"timeframe must be positive, got {tf} ms")
    _check_prices(table)
    gaps = _check_times(table, tf, allow_gaps)
    o, h, lo, c, v = (table.cols[k] for k in _OHLCV)
    return Candles(
        symbol=symbol or infer_symbol(p) or _stem(p),
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
    tables = [_read_funding_table(f) for f in _files(p)]
    tables.sort(key=lambda t: t.ts[0] if len(t.ts) else 0)
    table = tables[0] if len(tables) == 1 else _concat(tables)
    rate = table.cols["rate"]
    for i, r in enumerate(rate):
        if not math.isfinite(r):
            raise table.error(i, f"funding rate is {r}")
    for i in range(1, len(table.ts)):
        if table.ts[i] <= table.ts[i - 1]:
            raise table.error(i, _order_problem(table.ts[i - 1], table.ts[i]))
    return FundingSeries(symbol or infer_symbol(p) or _stem(p), table.ts, rate, str(p))


# --------------------------------------------------------------------------------------------
# Internals: a parsed table, before checks


@dataclass(slots=True)
class _Segment:
    """Rows ``[start, ...)`` of a table came from ``source``; ``header`` lines precede them."""

    source: str
    start: int
    header: int = 0


@dataclass(slots=True)
class _Table:
    ts: array[int]
    cols: dict[str, array[float]]
    segments: list[_Segment] = field(default_factory=list)

    def error(self, index: int, problem: str) -> FeedError:
        """A FeedError for 0-based row ``index`` of the table, located in its source file."""
        seg = self.segments[0]
        for s in self.segments:
            if s.start <= index:
                seg = s
        row = index - seg.start + 1
        return FeedError(seg.source, row, problem, row + seg.header if seg.header else None)


def _concat(tables: list[_Table]) -> _Table:
    ts: array[int] = array("q")
    cols: dict[str, array[float]] = {k: array("d") for k in tables[0].cols}
    segments: list[_Segment] = []
    for t in tables:
        offset = len(ts)
        segments.extend(_Segment(s.source, s.start + offset, s.header) for s in t.segments)
        ts.extend(t.ts)
        for k, col in cols.items():
            col.extend(t.cols[k])
    return _Table(ts, cols, segments)


def _files(p: Path) -> list[Path]:
    if p.is_dir():
        files = sorted(
            f
            for f in p.iterdir()
            if f.is_file()
            and not f.name.startswith(".")
            and any(f.name.lower().endswith(s) for s in _SUFFIXES)
        )
        if not files:
            raise FeedError(str(p), None, "folder holds no candle files")
        return files
    if not p.exists():
        raise FeedError(str(p), None, "no such file")
    return [p]


def _kind(p: Path) -> str:
    name = p.name.lower()
    for suffix, kind in (
        (".feather", "feather"),
        (".arrow", "feather"),
        (".zip", "zip"),
        (".json.gz", "json"),
        (".json", "json"),
        (".csv.gz", "csv"),
        (".csv", "csv"),
    ):
        if name.endswith(suffix):
            return kind
    with p.open("rb") as f:
        head = f.read(8)
    if head.startswith(b"\x1f\x8b"):
        with gzip.open(p, "rb") as g:
            head = g.read(8)
    if head.startswith(b"ARROW1"):
        return "feather"
    if head.startswith(b"PK"):
        return "zip"
    return "json" if head.lstrip()[:1] in (b"[", b"{") else "csv"


def _open_text(p: Path) -> IO[str]:
    with p.open("rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    if gz:
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8", newline="")
    return p.open("r", encoding="utf-8", newline="")


def _read_candle_table(p: Path) -> _Table:
    return _read_table(p, _OHLCV, _read_csv_ohlcv)


def _read_funding_table(p: Path) -> _Table:
    return _read_table(p, ("rate",), _read_csv_rate)


_CsvReader = Callable[[Iterable[str], str], _Table]


def _read_table(p: Path, roles: Sequence[str], csv_reader: _CsvReader) -> _Table:
    kind = _kind(p)
    source = str(p)
    try:
        if kind == "feather":
            return _read_feather(p, roles)
        if kind == "json":
            with _open_text(p) as f:
                data = json.load(f)
            return _from_json(data, source, roles)
        if kind == "zip":
            with zipfile.ZipFile(p) as z:
                members = [n for n in z.namelist() if not n.endswith("/")]
                if len(members) != 1:
                    raise FeedError(source, None, f"zip must hold one file, holds {members}")
                with z.open(members[0]) as raw:
                    text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
                    return csv_reader(text, f"{source}:{members[0]}")
        with _open_text(p) as f:
            return csv_reader(f, source)
    except FeedError:
        raise
    except (OSError, UnicodeDecodeError, zipfile.BadZipFile, json.JSONDecodeError, EOFError) as e:
        raise FeedError(source, None, f"cannot read {kind} file: {e}") from e


def _norm(name: str) -> str:
    return name.strip().strip('"').lower().replace("_", "").replace(" ", "").replace("-", "")


def _find(names: list[str], wanted: Sequence[str]) -> int | None:
    for w in wanted:
        if w in names:
            return names.index(w)
    return None


# --- timestamps ---


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
    return (dt - _EPOCH) // _MS


def _ts_parser(sample: str) -> Callable[[str], int]:
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


def _ts_value(value: Any) -> int:
    """A JSON/feather value → epoch ms (used per value in the slower non-CSV paths)."""
    if isinstance(value, bool):
        raise ValueError("boolean timestamp")
    if isinstance(value, int | float):
        scale = _scale_for(value)
        return round(value * -scale) if scale < 0 else int(value // scale)
    if isinstance(value, str):
        return _ts_parser(value)(value)
    raise ValueError(f"timestamp of type {type(value).__name__}")


# --- CSV ---


def _csv_start(lines: Iterator[str]) -> tuple[list[str] | None, str | None, int]:
    """Skip blank lines; return (header names or None, first data line or None, header lines)."""
    skipped = 0
    for line in lines:
        if not line.strip():
            skipped += 1
            continue
        first = line.split(",")[0].strip().strip('"')
        try:
            _ts_parser(first)(first)
        except ValueError:
            return [_norm(n) for n in line.split(",")], None, skipped + 1
        return None, line, skipped
    return None, None, skipped


def _bad_row(source: str, row: int, line_no: int, line: str, e: Exception) -> FeedError:
    problem = "too few columns" if isinstance(e, IndexError) else f"malformed value ({e})"
    return FeedError(source, row, f"{problem}: {line.strip()[:120]!r}", line_no)


def _read_csv_ohlcv(lines_in: Iterable[str], source: str) -> _Table:
    lines = iter(lines_in)
    names, first, header_lines = _csv_start(lines)
    if names is not None:
        ti = _find(names, _TS_NAMES)
        idx = [_find(names, (k,)) for k in _OHLCV]
        if ti is None or any(i is None for i in idx[:4]):
            raise FeedError(source, None, f"header needs a time and open/high/low/close: {names}")
        oi, hi, li, ci = (i for i in idx[:4] if i is not None)
        vi = idx[4]
        first = next(lines, None)
    else:
        ti, oi, hi, li, ci, vi = 0, 1, 2, 3, 4, 5
    ts: array[int] = array("q")
    o: array[float] = array("d")
    h: array[float] = array("d")
    lo: array[float] = array("d")
    c: array[float] = array("d")
    v: array[float] = array("d")
    table = _Table(ts, {"open": o, "high": h, "low": lo, "close": c, "volume": v})
    table.segments.append(_Segment(source, 0, header_lines))
    if first is None:
        return table
    parse_ts = _ts_parser(_field(first, ti))
    ts_add, o_add, h_add, l_add, c_add, v_add = (
        ts.append,
        o.append,
        h.append,
        lo.append,
        c.append,
        v.append,
    )
    # Volume is optional (some mark-price CSVs stop at close); a missing column reads as 0.
    has_volume = vi is not None and len(first.split(",")) > vi
    vcol = vi if vi is not None else 0
    row = 0
    blank = 0
    for line in _chain_first(first, lines):
        try:
            parts = line.split(",")
            t = parse_ts(parts[ti])
            oo, hh, ll, cc = float(parts[oi]), float(parts[hi]), float(parts[li]), float(parts[ci])
            vv = float(parts[vcol]) if has_volume else 0.0
        except (ValueError, IndexError) as e:
            if not line.strip():
                blank += 1
                continue
            raise _bad_row(source, row + 1, row + 1 + header_lines + blank, line, e) from None
        if blank:
            # Blank lines are allowed only at the end: rows map to lines by a fixed offset.
            raise FeedError(
                source, row + 1, "blank line inside the data", row + 1 + header_lines + blank
            )
        ts_add(t)
        o_add(oo)
        h_add(hh)
        l_add(ll)
        c_add(cc)
        v_add(vv)
        row += 1
    return table


def _read_csv_rate(lines_in: Iterable[str], source: str) -> _Table:
    lines = iter(lines_in)
    names, first, header = _csv_start(lines)
    if names is not None:
        ti = _find(names, _TS_NAMES)
        ri = _find(names, _RATE_NAMES)
        if ti is None or ri is None:
            raise FeedError(source, None, f"header needs a time and a funding rate: {names}")
        first = next(lines, None)
    else:
        ti, ri = 0, 1
    ts: array[int] = array("q")
    rate: array[float] = array("d")
    table = _Table(ts, {"rate": rate}, [_Segment(source, 0, header)])
    if first is None:
        return table
    parse_ts = _ts_parser(_field(first, ti))
    row = 0
    for line_no, line in enumerate(_chain_first(first, lines), start=header + 1):
        if not line.strip():
            continue
        row += 1
        try:
            parts = line.split(",")
            t = parse_ts(parts[ti])
            r = float(parts[ri])
        except (ValueError, IndexError) as e:
            raise _bad_row(source, row, line_no, line, e) from None
        ts.append(t)
        rate.append(r)
    return table


def _field(line: str, i: int) -> str:
    """Field ``i`` of a CSV line ("" when missing), to pick the timestamp parser from."""
    parts = line.split(",")
    return parts[i].strip().strip('"') if i < len(parts) else ""


def _chain_first(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


# --- JSON ---


def _from_json(data: Any, source: str, roles: Sequence[str]) -> _Table:
    if isinstance(data, dict):
        return _from_json_columns(data, source, roles)
    if not isinstance(data, list):
        raise FeedError(source, None, "JSON must be an array of rows or a column object")
    # freqtrade layout: [ts, open, high, low, close, volume]; funding files carry the rate in open.
    positions = {"open": 1, "high": 2, "low": 3, "close": 4, "volume": 5, "rate": 1}
    ts: array[int] = array("q")
    cols = {k: array("d") for k in roles}
    for n, item in enumerate(data, start=1):
        try:
            ts.append(_ts_value(item[0]))
            for k, col in cols.items():
                pos = positions[k]
                if k == "volume" and len(item) <= pos:
                    col.append(0.0)
                else:
                    col.append(_num(item[pos]))
        except (ValueError, IndexError, TypeError, KeyError) as e:
            problem = "too few columns" if isinstance(e, IndexError) else f"malformed value ({e})"
            raise FeedError(source, n, f"{problem}: {str(item)[:120]}") from None
    return _Table(ts, cols, [_Segment(source, 0)])


def _from_json_columns(data: dict[str, Any], source: str, roles: Sequence[str]) -> _Table:
    names = {_norm(k): k for k in data}
    tkey = next((names[n] for n in _TS_NAMES if n in names), None)
    if tkey is None or not isinstance(data[tkey], dict):
        raise FeedError(source, None, f"JSON columns need a time column: {list(data)}")
    keys = sorted(data[tkey], key=int)
    ts: array[int] = array("q")
    cols = {k: array("d") for k in roles}
    src = {}
    for k in roles:
        wanted = _RATE_NAMES if k == "rate" else (k,)
        key = next((names[n] for n in wanted if n in names), None)
        if key is None and k != "volume":
            raise FeedError(source, None, f"JSON columns lack {k!r}: {list(data)}")
        src[k] = data[key] if key is not None else {}
    for n, key in enumerate(keys, start=1):
        try:
            ts.append(_ts_value(data[tkey][key]))
            for k, col in cols.items():
                col.append(_num(src[k].get(key, 0.0 if k == "volume" else None)))
        except (ValueError, TypeError) as e:
            raise FeedError(source, n, f"malformed value ({e})") from None
    return _Table(ts, cols, [_Segment(source, 0)])


def _num(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"not a number: {value!r}")
    return float(value)


# --- feather ---


def _read_feather(p: Path, roles: Sequence[str]) -> _Table:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.feather as feather

    source = str(p)
    try:
        table = feather.read_table(p)
    except (pa.ArrowInvalid, OSError) as e:
        raise FeedError(source, None, f"cannot read feather file: {e}") from e
    names = {_norm(n): n for n in table.column_names}
    tname = next((names[n] for n in _TS_NAMES if n in names), None)
    if tname is None:
        raise FeedError(source, None, f"no time column in {table.column_names}")
    tcol = table.column(tname)
    if pa.types.is_timestamp(tcol.type):
        per_ms = {"s": -1_000, "ms": 1, "us": 1_000, "ns": 1_000_000}[tcol.type.unit]
        raw = pc.cast(tcol, pa.int64()).to_pylist()
        if per_ms < 0:
            ts = array("q", (x * -per_ms for x in raw))
        else:
            ts = array("q", (x // per_ms for x in raw))
    else:
        try:
            ts = array("q", (_ts_value(x) for x in tcol.to_pylist()))
        except (ValueError, TypeError) as e:
            raise FeedError(source, None, f"malformed time column ({e})") from None
    cols: dict[str, array[float]] = {}
    for k in roles:
        wanted = _RATE_NAMES if k == "rate" else (k,)
        name = next((names[n] for n in wanted if n in names), None)
        if name is None:
            if k == "volume":
                cols[k] = array("d", bytes(8 * len(ts)))
                continue
            raise FeedError(source, None, f"no {k!r} column in {table.column_names}")
        col = table.column(name)
        if k == "volume":
            col = pc.fill_null(col, 0.0)
        try:
            values = pc.cast(col, pa.float64()).to_pylist()
        except pa.ArrowInvalid as e:
            raise FeedError(source, None, f"column {name!r} is not numeric ({e})") from None
        cols[k] = array("d", (math.nan if x is None else x for x in values))
    return _Table(ts, cols, [_Segment(source, 0)])


# --- checks ---


def _infer_timeframe(ts: array[int]) -> int | None:
    n = min(len(ts), _TF_SAMPLE)
    if n < 2:
        return None
    deltas = sorted(ts[i] - ts[i - 1] for i in range(1, n))
    median = deltas[len(deltas) // 2]
    return median if median > 0 else None


def _timeframe_from_name(p: Path) -> int | None:
    for token in p.name.split("-"):
        m = _TF_RE.match(token)
        if m and m.group(2) != "M":
            return int(m.group(1)) * _TF_UNITS_MS[m.group(2)]
    return None


def _utc(ts_ms: int) -> str:
    return (_EPOCH + ts_ms * _MS).strftime("%Y-%m-%d %H:%M:%S UTC")


def _order_problem(prev: int, t: int) -> str:
    what = "duplicate" if t == prev else "unsorted"
    return f"{what} timestamp {t} ({_utc(t)}) after {prev} ({_utc(prev)})"


def _check_times(table: _Table, tf: int, allow_gaps: bool) -> list[Gap]:
    ts = table.ts
    gaps: list[Gap] = []
    prev = ts[0]
    for i in range(1, len(ts)):
        t = ts[i]
        d = t - prev
        if d != tf:
            if d <= 0:
                raise table.error(i, _order_problem(prev, t))
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


def _check_prices(table: _Table) -> None:
    c = table.cols
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


# --- names and bundled files ---


def _split_pair(s: str) -> tuple[str, str] | None:
    for q in _QUOTES:
        if s.endswith(q) and len(s) > len(q):
            return (s[: -len(q)], q)
    return None


def _stem(p: Path) -> str:
    name = p.name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return p.stem


def _bundled(name: str) -> Path:
    ref = resources.files("paper").joinpath("data", name)
    if isinstance(ref, Path):
        return ref
    # Only a zip-imported package lands here; its data must be extracted to a real file.
    with resources.as_file(ref) as path:  # pragma: no cover
        return Path(path)
