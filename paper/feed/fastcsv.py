"""The fast path for plain numeric candle CSVs: ``pyarrow.csv`` when pyarrow is installed.

A year of 1-minute candles is 525,600 rows; Python's own parsing takes about 2 s for them,
``pyarrow.csv`` a fraction of that. ``read_fast`` reads a ``.csv`` / ``.csv.gz`` whose time
column holds integer epoch milliseconds straight into the columns replay uses, and gives up
(None) on anything else — another time format, a missing or malformed value, a blank line, no
pyarrow — so the Python reader (``paper.feed.formats``) handles the file and names the file,
row and line of any problem, as always. Both read the same numbers (both parse correctly
rounded), and the same checks (times, prices) run on the result.
"""

from __future__ import annotations

from array import array
from pathlib import Path
from typing import Any

from paper.feed.table import OHLCV, Segment, Table, _scale_for


def read_fast(
    path: Path,
    source: str,
    columns: tuple[int, int, int, int, int, int | None],
    header_lines: int,
    width: int,
    sample: str,
) -> Table | None:
    """The OHLCV table of ``path`` (columns: time, open, high, low, close, volume or None), or
    None when the fast path does not apply (see the module docstring)."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
    except ImportError:
        return None
    try:
        if _scale_for(int(sample)) != 1:
            return None  # seconds or micro/nanoseconds: the Python reader converts them
    except ValueError:
        return None
    ti, oi, hi, li, ci, vi = columns
    names = [f"c{i}" for i in range(width)]
    wanted = [ti, oi, hi, li, ci] + ([vi] if vi is not None else [])
    types: dict[str, Any] = {names[ti]: pa.int64()}
    for i in wanted[1:]:
        types[names[i]] = pa.float64()
    ts: array[int] = array("q")
    where: tuple[int | None, ...] = (oi, hi, li, ci, vi)
    cols: dict[str, array[float]] = {role: array("d") for role in OHLCV}
    try:
        # streamed in blocks into the arrays: no second copy of the whole file in memory
        reader = pacsv.open_csv(
            str(path),
            read_options=pacsv.ReadOptions(
                skip_rows=header_lines, column_names=names, block_size=1 << 16, use_threads=False
            ),
            parse_options=pacsv.ParseOptions(ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types=types, include_columns=[names[i] for i in wanted]
            ),
            memory_pool=pa.system_memory_pool(),
        )
        for batch in reader:
            if not _fill(ts, batch.column(names[ti])):
                return None
            for role, index in zip(OHLCV, where, strict=True):
                if index is not None and not _fill(cols[role], batch.column(names[index])):
                    return None
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, ValueError):
        return None
    if vi is None:  # no volume column: zeros (0.0 is all-zero bytes)
        cols["volume"].frombytes(bytes(8 * len(ts)))
    return Table(ts, cols, [Segment(source, 0, header_lines)])


def _fill(target: array[Any], column: Any) -> bool:
    """Append an arrow array without nulls to ``target`` (False: it has nulls)."""
    if column.null_count:
        return False
    size = target.itemsize
    data = column.buffers()[1]
    start = column.offset * size
    target.frombytes(memoryview(data)[start : start + len(column) * size])
    return True
