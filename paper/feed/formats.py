"""The file formats of the replay feed, detected by extension, then by content.

- CSV, optionally gzipped (``.csv``, ``.csv.gz``): ``timestamp_ms,open,high,low,close,volume``
  with or without a header. With a header, columns are found by name (``open_time``,
  ``timestamp``, ``date``, ... for the time), so Binance kline dumps and nautilus bar CSVs
  (``timestamp`` as a naive UTC string) load too. Without one, the first six columns are taken
  in that order. Blank lines are allowed only at the end of a candle file.
- data.binance.vision kline zips (one CSV inside), and a folder of such files (e.g. daily zips),
  concatenated in time order.
- freqtrade feather (``date`` timestamp column; needs pyarrow — the ``guardbot[feather]`` extra —,
  imported only for these files),
  freqtrade json (array of ``[ts_ms, open, high, low, close, volume]``, ``.json`` or
  ``.json.gz``) and pandas ``to_json`` column layout (``{"date": {"0": ts_ms, ...}, ...}``).

Times are candle OPEN times, epoch milliseconds UTC. A missing volume (mark-price files) reads
as 0. Funding files: the rate in a ``funding_rate`` / ``last_funding_rate`` / ``rate`` column,
or in ``open`` (freqtrade). A malformed number, a timestamp beyond any date, too few columns or a
line longer than ``MAX_LINE`` characters (read no further: memory stays bounded) raises
``FeedError`` naming the file and the row; so does a file that cannot be read at all. Values
quoted in messages are cut to a short excerpt.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import zipfile
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from paper.feed.containers import FeedError
from paper.feed.fastcsv import read_fast
from paper.feed.names import SUFFIXES
from paper.feed.table import (
    OHLCV,
    RATE_NAMES,
    TS_NAMES,
    Segment,
    Table,
    find_column,
    norm_name,
    to_float,
    ts_parser,
    ts_value,
)
from paper.feed.validation import TS_RANGE


def find_files(p: Path) -> list[Path]:
    """The data files of ``p``: itself, or a folder's files with a known suffix, sorted."""
    if p.is_dir():
        files = sorted(
            f
            for f in p.iterdir()
            if f.is_file()
            and not f.name.startswith(".")
            and any(f.name.lower().endswith(s) for s in SUFFIXES)
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


#: The longest line a candle CSV may have (a row is well under 200 characters).
MAX_LINE = 1 << 16


def _bounded(f: Iterable[str], source: str) -> Iterator[str]:
    """The lines of ``f``, each read with at most ``MAX_LINE + 1`` characters: a longer line
    (a file that is not a candle CSV) is refused before it is read whole."""
    readline = getattr(f, "readline", None)
    if readline is None:
        yield from f
        return
    n = 0
    while True:
        line = readline(MAX_LINE + 1)
        if not line:
            return
        n += 1
        if len(line) > MAX_LINE:
            raise FeedError(
                source,
                None,
                f"line {n} is longer than {MAX_LINE:,} characters ({_excerpt(line)}); expected "
                "a candle CSV (timestamp_ms,open,high,low,close,volume per line)",
            )
        yield line


def _excerpt(text: str, limit: int = 60) -> str:
    """A short quote of ``text`` for a message."""
    text = text.strip()
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}…"


def _names(names: list[str]) -> str:
    """Header names for a message: the first few, cut short."""
    shown = [n[:40] for n in names[:8]]
    more = f" … ({len(names)} columns)" if len(names) > 8 else ""
    return f"{shown}{more}"


def _open_text(p: Path) -> IO[str]:
    with p.open("rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    if gz:
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8", newline="")
    return p.open("r", encoding="utf-8", newline="")


def read_candle_table(p: Path) -> Table:
    """An OHLCV table from one file of any supported format (plain numeric CSVs through
    ``pyarrow.csv`` when it is installed, see ``paper.feed.fastcsv``)."""
    if _kind(p) == "csv":
        fast = _read_csv_fast(p)
        if fast is not None:
            return fast
    return _read_table(p, OHLCV, _read_csv_ohlcv)


#: Beyond this an epoch-ms timestamp does not fit the int64 column (validation names the range).
_TS_LIMIT = 1 << 62

#: Files smaller than this are read by Python alone (importing pyarrow costs more than it saves).
FAST_MIN_BYTES = 1 << 20


def _read_csv_fast(p: Path) -> Table | None:
    """The fast path's arguments, found the way ``_read_csv_ohlcv`` finds them."""
    try:
        if p.stat().st_size < FAST_MIN_BYTES:
            return None
        with _open_text(p) as f:
            lines = _bounded(f, str(p))
            names, first, header_lines = _csv_start(lines)
            if names is not None:
                first = next(lines, None)
    except (OSError, UnicodeDecodeError, EOFError, FeedError):
        return None  # the Python reader reads it again and names the problem
    if first is None:
        return None
    if names is not None:
        ti = find_column(names, TS_NAMES)
        idx = [find_column(names, (k,)) for k in OHLCV]
        if ti is None or any(i is None for i in idx[:4]):
            return None
        oi, hi, li, ci = (i for i in idx[:4] if i is not None)
        vi = idx[4]
    else:
        ti, oi, hi, li, ci, vi = 0, 1, 2, 3, 4, 5
    width = len(first.split(","))
    if vi is not None and vi >= width:
        vi = None
    if max(ti, oi, hi, li, ci) >= width:
        return None
    sample = _field(first, ti)
    return read_fast(p, str(p), (ti, oi, hi, li, ci, vi), header_lines, width, sample)


def read_funding_table(p: Path) -> Table:
    """A funding-rate table (column ``rate``) from one file of any supported format."""
    return _read_table(p, ("rate",), _read_csv_rate)


_CsvReader = Callable[[Iterable[str], str], Table]


def _read_table(p: Path, roles: Sequence[str], csv_reader: _CsvReader) -> Table:
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
                    inner = f"{source}:{members[0]}"
                    return csv_reader(_bounded(text, inner), inner)
        with _open_text(p) as f:
            return csv_reader(_bounded(f, source), source)
    except FeedError:
        raise
    except (OSError, UnicodeDecodeError, zipfile.BadZipFile, json.JSONDecodeError, EOFError) as e:
        raise FeedError(source, None, f"cannot read {kind} file: {e}") from e


def _csv_start(lines: Iterator[str]) -> tuple[list[str] | None, str | None, int]:
    """Skip blank lines; return (header names or None, first data line or None, header lines)."""
    skipped = 0
    for line in lines:
        if not line.strip():
            skipped += 1
            continue
        first = line.split(",")[0].strip().strip('"')
        try:
            ts_parser(first)(first)
        except ValueError:
            return [norm_name(n) for n in line.split(",")], None, skipped + 1
        return None, line, skipped
    return None, None, skipped


def _bad_row(source: str, row: int, line_no: int, line: str, e: Exception) -> FeedError:
    if isinstance(e, IndexError):
        problem = "too few columns; expected timestamp_ms,open,high,low,close[,volume]"
    elif isinstance(e, OverflowError):
        problem = f"timestamp out of range; expected {TS_RANGE}"
    else:
        problem = f"malformed value ({_excerpt(str(e), 80)}); expected numbers"
    return FeedError(source, row, f"{problem}: {_excerpt(line, 120)}", line_no)


def _read_csv_ohlcv(lines_in: Iterable[str], source: str) -> Table:
    lines = iter(lines_in)
    names, first, header_lines = _csv_start(lines)
    if names is not None:
        ti = find_column(names, TS_NAMES)
        idx = [find_column(names, (k,)) for k in OHLCV]
        if ti is None or any(i is None for i in idx[:4]):
            raise FeedError(
                source, None, f"header needs a time and open/high/low/close: {_names(names)}"
            )
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
    table = Table(ts, {"open": o, "high": h, "low": lo, "close": c, "volume": v})
    table.segments.append(Segment(source, 0, header_lines))
    if first is None:
        return table
    parse_ts = ts_parser(_field(first, ti))
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
            if not -_TS_LIMIT < t < _TS_LIMIT:
                raise OverflowError(t)
        except (ValueError, IndexError, OverflowError) as e:
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


def _read_csv_rate(lines_in: Iterable[str], source: str) -> Table:
    lines = iter(lines_in)
    names, first, header = _csv_start(lines)
    if names is not None:
        ti = find_column(names, TS_NAMES)
        ri = find_column(names, RATE_NAMES)
        if ti is None or ri is None:
            raise FeedError(
                source, None, f"header needs a time and a funding rate: {_names(names)}"
            )
        first = next(lines, None)
    else:
        ti, ri = 0, 1
    ts: array[int] = array("q")
    rate: array[float] = array("d")
    table = Table(ts, {"rate": rate}, [Segment(source, 0, header)])
    if first is None:
        return table
    parse_ts = ts_parser(_field(first, ti))
    row = 0
    for line_no, line in enumerate(_chain_first(first, lines), start=header + 1):
        if not line.strip():
            continue
        row += 1
        try:
            parts = line.split(",")
            t = parse_ts(parts[ti])
            r = float(parts[ri])
            if not -_TS_LIMIT < t < _TS_LIMIT:
                raise OverflowError(t)
        except (ValueError, IndexError, OverflowError) as e:
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


def _from_json(data: Any, source: str, roles: Sequence[str]) -> Table:
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
            ts.append(ts_value(item[0]))
            for k, col in cols.items():
                pos = positions[k]
                if k == "volume" and len(item) <= pos:
                    col.append(0.0)
                else:
                    col.append(to_float(item[pos]))
        except (ValueError, IndexError, TypeError, KeyError, OverflowError) as e:
            if isinstance(e, IndexError):
                problem = "too few columns"
            elif isinstance(e, OverflowError):
                problem = f"timestamp out of range; expected {TS_RANGE}"
            else:
                problem = f"malformed value ({_excerpt(str(e), 80)})"
            raise FeedError(source, n, f"{problem}: {_excerpt(str(item), 120)}") from None
    return Table(ts, cols, [Segment(source, 0)])


def _from_json_columns(data: dict[str, Any], source: str, roles: Sequence[str]) -> Table:
    names = {norm_name(k): k for k in data}
    tkey = next((names[n] for n in TS_NAMES if n in names), None)
    if tkey is None or not isinstance(data[tkey], dict):
        raise FeedError(source, None, f"JSON columns need a time column: {list(data)}")
    keys = sorted(data[tkey], key=int)
    ts: array[int] = array("q")
    cols = {k: array("d") for k in roles}
    src = {}
    for k in roles:
        wanted = RATE_NAMES if k == "rate" else (k,)
        key = next((names[n] for n in wanted if n in names), None)
        if key is None and k != "volume":
            raise FeedError(source, None, f"JSON columns lack {k!r}: {list(data)}")
        src[k] = data[key] if key is not None else {}
    for n, key in enumerate(keys, start=1):
        try:
            ts.append(ts_value(data[tkey][key]))
            for k, col in cols.items():
                col.append(to_float(src[k].get(key, 0.0 if k == "volume" else None)))
        except (ValueError, TypeError, OverflowError) as e:
            raise FeedError(source, n, f"malformed value ({_excerpt(str(e), 80)})") from None
    return Table(ts, cols, [Segment(source, 0)])


#: What reading or writing a feather file without pyarrow says (pyarrow is an optional extra).
FEATHER_NEEDS = (
    "feather files need pyarrow: install guardbot[feather] (pip install 'guardbot[feather]')"
)


def _read_feather(p: Path, roles: Sequence[str]) -> Table:
    source = str(p)
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.feather as feather
    except ImportError:
        raise FeedError(source, None, FEATHER_NEEDS) from None
    try:
        table = feather.read_table(p)
    except (pa.ArrowInvalid, OSError) as e:
        raise FeedError(source, None, f"cannot read feather file: {e}") from e
    names = {norm_name(n): n for n in table.column_names}
    tname = next((names[n] for n in TS_NAMES if n in names), None)
    if tname is None:
        raise FeedError(source, None, f"no time column in {table.column_names}")
    tcol = table.column(tname)
    if pa.types.is_timestamp(tcol.type):
        per_ms = {"s": -1_000, "ms": 1, "us": 1_000, "ns": 1_000_000}[tcol.type.unit]
        raw = pc.cast(tcol, pa.int64()).to_pylist()
        try:
            if per_ms < 0:
                ts = array("q", (x * -per_ms for x in raw))
            else:
                ts = array("q", (x // per_ms for x in raw))
        except OverflowError:
            raise FeedError(source, None, "timestamp out of range in the time column") from None
    else:
        try:
            ts = array("q", (ts_value(x) for x in tcol.to_pylist()))
        except (ValueError, TypeError, OverflowError) as e:
            raise FeedError(
                source, None, f"malformed time column ({_excerpt(str(e), 80)})"
            ) from None
    cols: dict[str, array[float]] = {}
    for k in roles:
        wanted = RATE_NAMES if k == "rate" else (k,)
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
    return Table(ts, cols, [Segment(source, 0)])
