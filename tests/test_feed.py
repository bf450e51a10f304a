"""Replay feed: every shape of candle file in shared/data, the bundled series, errors naming file
and row, gaps, the intrabar path, the multi-symbol merge and funding lookups.

Expected figures come from /work/shared/data/README.md (computed upstream with pandas), from the
raw files read directly with pyarrow/json in the test, or are written out by hand here.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import subprocess
import sys
import tempfile
import zipfile
from array import array
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paper.feed import (
    Candles,
    FeedError,
    Gap,
    bundled_candles_path,
    bundled_funding_path,
    format_timeframe,
    infer_symbol,
    intrabar_path,
    load_candles,
    load_funding,
    merge,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CANDLES = DATA / "candles"
needs_shared = pytest.mark.skipif(
    not CANDLES.is_dir(), reason=f"shared reference data not found at {CANDLES}"
)

MIN5 = 5 * 60_000
HOUR = 3_600_000


def ms(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, tzinfo=UTC).timestamp()) * 1000


def lowest(c: Candles, start: int | None = None, end: int | None = None) -> tuple[float, int]:
    """(lowest low, its candle time) within [start, end)."""
    part = c.between(start, end)
    i = min(range(len(part)), key=lambda k: part.low[k])
    return part.low[i], part.ts[i]


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


HEADER = "timestamp_ms,open,high,low,close,volume"


def good_rows(n: int, start: int = ms(2025, 1, 1), step: int = MIN5) -> list[str]:
    return [f"{start + i * step},100.0,101.0,99.0,100.5,2.0" for i in range(n)]


# ------------------------------------------------------------------------------------------
# Real files: one test per shape


@needs_shared
def test_freqtrade_feather_futures_april_2025_crash() -> None:
    c = load_candles(CANDLES / "typhonun_DcaTpStrategy" / "BTC_USDT_USDT-5m-futures.feather")
    # README: 10,906 rows, 2025-03-06 10:30 → 04-13 07:15, 5m, no gaps.
    assert (len(c), c.ts[0], c.ts[-1]) == (10_906, ms(2025, 3, 6, 10, 30), ms(2025, 4, 13, 7, 15))
    assert (c.symbol, c.timeframe_ms, c.timeframe, c.gaps) == ("BTC/USDT:USDT", MIN5, "5m", ())
    # README: "BTC 83,506 (04-06 open) → 74,457 low 04-07 07:00".
    assert c.open[c.index_at(ms(2025, 4, 6)) or 0] == pytest.approx(83_506, abs=0.5)
    low, at = lowest(c)
    assert low == pytest.approx(74_457, abs=0.5) and at == ms(2025, 4, 7, 7, 0)


@needs_shared
def test_freqtrade_json_october_2025_crash() -> None:
    c = load_candles(CANDLES / "aminak58_RL-Trading-Validation" / "BTC_USDT_USDT-5m-futures.json")
    # README: 11,123 rows, 2025-09-19 00:00 → 10-27 14:50; 10-10 low 101,516.5 at 21:20,
    # the 20:00 candle opened at 116,605.2.
    assert (len(c), c.ts[0], c.ts[-1]) == (11_123, ms(2025, 9, 19), ms(2025, 10, 27, 14, 50))
    assert c.symbol == "BTC/USDT:USDT" and c.timeframe_ms == MIN5 and not c.gaps
    assert lowest(c, ms(2025, 10, 10), ms(2025, 10, 11)) == (101_516.5, ms(2025, 10, 10, 21, 20))
    assert c.open[c.index_at(ms(2025, 10, 10, 20)) or 0] == 116_605.2


@needs_shared
def test_freqtrade_json_gz_equals_its_feather() -> None:
    folder = CANDLES / "freqtrade_testdata" / "futures"
    gz = load_candles(folder / "XRP_USDT_USDT-1h-futures.json.gz")
    fe = load_candles(folder / "XRP_USDT_USDT-1h-futures.feather")
    # README: 100 rows, 2021-11-17 01:00 → 11-21 04:00, 1h.
    assert (len(gz), gz.ts[0], gz.ts[-1]) == (100, ms(2021, 11, 17, 1), ms(2021, 11, 21, 4))
    assert gz.timeframe_ms == HOUR and gz.symbol == "XRP/USDT:USDT"
    # Same candles; the upstream feather carries float noise (1.0854300000000001 vs 1.08543).
    assert list(gz.ts) == list(fe.ts)
    for col in ("open", "high", "low", "close", "volume"):
        assert list(getattr(gz, col)) == pytest.approx(list(getattr(fe, col)), rel=1e-12)


@needs_shared
def test_freqtrade_json_with_gaps_and_odd_name() -> None:
    path = CANDLES / "freqtrade_testdata" / "UNITTEST_BTC-1m.json"
    with pytest.raises(FeedError, match="gap") as err:
        load_candles(path)
    assert err.value.row is not None and "UNITTEST_BTC-1m.json" in str(err.value)
    c = load_candles(path, allow_gaps=True)
    # README: 13,681 rows, 2017-11-04 23:02 → 11-14 22:59, 717 missing candles.
    assert (len(c), c.ts[0], c.ts[-1]) == (13_681, ms(2017, 11, 4, 23, 2), ms(2017, 11, 14, 22, 59))
    assert c.missing == 717
    # Each gap accounts for the distance between its neighbours.
    for g in c.gaps:
        assert c.ts[g.next_index] - c.ts[g.next_index - 1] == (g.missing + 1) * 60_000
    # README: the "-8m" file holds the same 1m data; the timeframe comes from the spacing.
    odd = load_candles(CANDLES / "freqtrade_testdata" / "UNITTEST_BTC-8m.json.gz", allow_gaps=True)
    assert odd.timeframe_ms == 60_000 and list(odd.rows()) == list(c.rows())


@needs_shared
def test_feather_with_exchange_outages() -> None:
    path = CANDLES / "NIC-project-team_TradingStrategyGA" / "BTC_USDT-1h.feather"
    c = load_candles(path, allow_gaps=True)
    # README: 58,419 rows, 2017-08-17 04:00 → 2024-04-21 14:00, 128 gaps; 2020-03-13 low 3,782.13
    # at 02:00; spot pair name.
    assert (len(c), c.ts[0], c.ts[-1]) == (58_419, ms(2017, 8, 17, 4), ms(2024, 4, 21, 14))
    assert c.missing == 128 and c.symbol == "BTC/USDT"
    assert lowest(c, ms(2020, 3, 13), ms(2020, 3, 14)) == (3_782.13, ms(2020, 3, 13, 2))


@needs_shared
def test_pandas_column_json() -> None:
    c = load_candles(
        CANDLES / "freqtrade_testdata" / "orderflow" / "candles.json", symbol="BTC/USDT"
    )
    # README: 10,999 rows of 5m, 2023-01-02 16:45 → 02-09 21:15.
    assert (len(c), c.ts[0], c.ts[-1]) == (10_999, ms(2023, 1, 2, 16, 45), ms(2023, 2, 9, 21, 15))
    assert c.timeframe_ms == MIN5 and c.symbol == "BTC/USDT"
    raw = json.loads((CANDLES / "freqtrade_testdata" / "orderflow" / "candles.json").read_text())
    assert c.close[1234] == raw["close"]["1234"] and c.ts[1234] == raw["date"]["1234"]


@needs_shared
def test_binance_kline_zip() -> None:
    c = load_candles(CANDLES / "aaronwu2017_TheGlory" / "BTCUSD_PERP-1m-2025-10-10.zip")
    # README: 1,440 rows (a full day of 1m), 10-10 low 102,497.49 at 21:20; COIN-M perpetual.
    assert (len(c), c.ts[0], c.ts[-1]) == (1_440, ms(2025, 10, 10), ms(2025, 10, 10, 23, 59))
    assert c.symbol == "BTC/USD:BTC" and c.timeframe_ms == 60_000
    low, at = lowest(c)
    assert low == pytest.approx(102_497.49, abs=0.005) and at == ms(2025, 10, 10, 21, 20)
    # First data line of the CSV inside, read raw.
    with zipfile.ZipFile(CANDLES / "aaronwu2017_TheGlory" / "BTCUSD_PERP-1m-2025-10-10.zip") as z:
        first = z.read(z.namelist()[0]).decode().splitlines()[1].split(",")
    assert c.row(0)[:5] == (int(first[0]), *(float(x) for x in first[1:5]))


@needs_shared
def test_folder_of_daily_zips_with_a_missing_day() -> None:
    folder = CANDLES / "aaronwu2017_TheGlory" / "BTCUSDT-5m-markprice"
    # README: 10-04 is absent upstream → a gap of one day (288 5m candles) before 10-05.
    with pytest.raises(FeedError) as err:
        load_candles(folder)
    msg = str(err.value)
    assert "BTCUSDT-5m-2025-10-05" in msg and ": row 1 (line 2):" in msg and "288 missing" in msg
    assert err.value.row == 1
    c = load_candles(folder, allow_gaps=True)
    assert (len(c), c.ts[0], c.ts[-1]) == (30 * 288, ms(2025, 10, 1), ms(2025, 10, 31, 23, 55))
    assert c.gaps == (Gap(3 * 288, ms(2025, 10, 4), 288),)
    assert c.symbol == "BTC/USDT:USDT"
    # README: mark low on 10-10 is 101,877.69 at 21:20.
    low, at = lowest(c, ms(2025, 10, 10), ms(2025, 10, 11))
    assert low == pytest.approx(101_877.69, abs=0.005) and at == ms(2025, 10, 10, 21, 20)


@needs_shared
def test_nautilus_csv_with_iso_timestamps() -> None:
    c = load_candles(CANDLES / "nautilus_trader" / "btc-perp-20211231-20220201_1m.csv")
    # README: 45,031 rows, 2021-12-31 23:01 → 2022-02-01 05:31; low 32,837 on 2022-01-24 13:01.
    assert (len(c), c.ts[0], c.ts[-1]) == (45_031, ms(2021, 12, 31, 23, 1), ms(2022, 2, 1, 5, 31))
    assert c.timeframe_ms == 60_000 and not c.gaps
    assert lowest(c) == (32_837.0, ms(2022, 1, 24, 13, 1))
    # From the file's second line: "2021-12-31 23:01:00.000000,46319.0,46385.0,46319.0,46377.0,..."
    assert c.row(0)[:5] == (ms(2021, 12, 31, 23, 1), 46319.0, 46385.0, 46319.0, 46377.0)


@needs_shared
def test_mark_series_lookup() -> None:
    marks = load_candles(CANDLES / "typhonun_DcaTpStrategy" / "BTC_USDT_USDT-8h-mark.feather")
    assert marks.timeframe_ms == 8 * HOUR and len(marks) == 266  # README: 266 rows
    import pyarrow.feather as feather

    raw = feather.read_table(
        CANDLES / "typhonun_DcaTpStrategy" / "BTC_USDT_USDT-8h-mark.feather"
    ).to_pylist()
    # The first mark candle opens 2025-03-06 16:00; any time inside it reads its open.
    assert raw[0]["date"] == datetime(2025, 3, 6, 16, tzinfo=UTC)
    assert marks.mark_at(ms(2025, 3, 6, 16)) == raw[0]["open"]
    assert marks.mark_at(ms(2025, 3, 6, 23, 59)) == raw[0]["open"]
    assert marks.mark_at(ms(2025, 3, 7, 0)) == raw[1]["open"]
    assert marks.mark_at(ms(2025, 3, 6, 15, 59)) is None
    # Missing volume in freqtrade mark files reads as 0.
    xrp = load_candles(CANDLES / "freqtrade_testdata" / "futures" / "XRP_USDT_USDT-1h-mark.feather")
    assert set(xrp.volume) == {0.0}


# ------------------------------------------------------------------------------------------
# Bundled data


@needs_shared
def test_bundled_candles_equal_the_upstream_feather_value_for_value() -> None:
    import pyarrow.feather as feather

    src = CANDLES / "typhonun_DcaTpStrategy" / "BTC_USDT_USDT-5m-futures.feather"
    raw = feather.read_table(src).to_pydict()
    c = load_candles(bundled_candles_path())
    assert c.symbol == "BTC/USDT:USDT" and c.timeframe_ms == MIN5
    assert list(c.ts) == [int(d.timestamp() * 1000) for d in raw["date"]]
    for col in ("open", "high", "low", "close", "volume"):
        assert list(getattr(c, col)) == raw[col], col


@needs_shared
def test_bundled_funding_equals_the_upstream_feather() -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.feather as feather

    t = feather.read_table(
        CANDLES / "typhonun_DcaTpStrategy" / "BTC_USDT_USDT-8h-funding_rate.feather"
    )
    f = load_funding(bundled_funding_path())
    assert list(f.ts) == [ns // 1_000_000 for ns in pc.cast(t["date"], pa.int64()).to_pylist()]
    assert list(f.rate) == t["open"].to_pylist()


def test_bundled_files_load_without_shared_data() -> None:
    c = load_candles(bundled_candles_path())
    # Facts from paper/data/README.md (and the shared README for the upstream file).
    assert (len(c), c.ts[0], c.ts[-1]) == (10_906, ms(2025, 3, 6, 10, 30), ms(2025, 4, 13, 7, 15))
    assert lowest(c) == (74_457.0, ms(2025, 4, 7, 7))
    f = load_funding(bundled_funding_path())
    assert len(f) == 266 and f.symbol == "BTC/USDT:USDT"
    # 2025-03-07 08:00 is stamped 1 ms late upstream (1741334400001); the rate is -1.539e-05.
    assert f.rate_at(ms(2025, 3, 7, 8)) == -1.539e-05


def test_default_data_loads_without_pyarrow() -> None:
    code = (
        "import sys; from paper.feed import *; "
        "load_candles(bundled_candles_path()); load_funding(bundled_funding_path()); "
        "assert 'pyarrow' not in sys.modules, 'pyarrow imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------------------------------
# Funding


@needs_shared
def test_funding_files_with_millisecond_offsets() -> None:
    xrp = load_funding(
        CANDLES / "freqtrade_testdata" / "futures" / "XRP_USDT_USDT-8h-funding_rate.feather"
    )
    # README: 91 rows; median rate 0.0001; timestamps carry ms (00:00:00.017).
    assert len(xrp) == 91 and xrp.ts[0] == ms(2021, 11, 18) + 17
    assert xrp.rate_at(ms(2021, 11, 18)) == 0.0001
    aminak = load_funding(
        CANDLES / "aminak58_RL-Trading-Validation" / "BTC_USDT_USDT-8h-funding_rate.json"
    )
    # Raw JSON: [[1758240000000,-0.00000231,...],[1758268800005,0.00002109,...], ...]
    assert len(aminak) == 115  # README: 115 rows
    assert aminak.rate_at(ms(2025, 9, 19)) == -0.00000231
    assert aminak.rate_at(ms(2025, 9, 19, 8)) == 0.00002109
    assert aminak.rate_at(ms(2025, 9, 19, 4)) is None


def test_funding_plain_csv_and_lookup(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "rates.csv",
        [
            f"{ms(2025, 1, 1) + 17},0.0001",
            f"{ms(2025, 1, 1, 8) + 3},-0.00025",
            f"{ms(2025, 1, 1, 16)},0.0",
        ],
    )
    f = load_funding(path, symbol="ETH/USDT:USDT")
    assert f.symbol == "ETH/USDT:USDT" and len(f) == 3
    assert f.rate_at(ms(2025, 1, 1)) == 0.0001  # stamped 17 ms late
    assert f.rate_at(ms(2025, 1, 1, 8)) == -0.00025
    assert f.rate_at(ms(2025, 1, 1, 16)) == 0.0
    assert f.rate_at(ms(2025, 1, 1, 4)) is None
    assert f.rate_at(ms(2025, 1, 1) + 2_000) is None  # beyond the default 1 s tolerance
    assert f.between(ms(2025, 1, 1, 1), ms(2025, 1, 1, 16)) == [(ms(2025, 1, 1, 8) + 3, -0.00025)]
    # With a header and a named rate column (Binance fundingRate dump layout), zipped.
    body = "calc_time,funding_interval_hours,last_funding_rate\n"
    body += f"{ms(2025, 1, 1)},8,0.00010000\n{ms(2025, 1, 1, 8)},8,0.00005000\n"
    zpath = tmp_path / "BTCUSDT-fundingRate-2025-01.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("BTCUSDT-fundingRate-2025-01.csv", body)
    fz = load_funding(zpath)
    assert fz.symbol == "BTC/USDT:USDT" and list(fz.rate) == [0.0001, 0.00005]


def test_funding_errors_name_file_and_row(tmp_path: Path) -> None:
    bad = write_csv(tmp_path / "f.csv", ["timestamp_ms,rate", f"{ms(2025, 1, 1)},0.1", "x,0.2"])
    with pytest.raises(FeedError, match=r"f\.csv: row 2 \(line 3\): malformed"):
        load_funding(bad)
    unsorted = write_csv(tmp_path / "g.csv", [f"{ms(2025, 1, 2)},0.1", f"{ms(2025, 1, 1)},0.2"])
    with pytest.raises(FeedError, match=r"g\.csv: row 2: unsorted"):
        load_funding(unsorted)


# ------------------------------------------------------------------------------------------
# Small files: formats and errors


def test_csv_with_and_without_header_gz_and_zip(tmp_path: Path) -> None:
    rows = good_rows(4)
    plain = load_candles(write_csv(tmp_path / "a.csv", [HEADER, *rows]), symbol="X/USDT")
    bare = load_candles(write_csv(tmp_path / "b.csv", rows), symbol="X/USDT")
    gz = tmp_path / "c.csv.gz"
    gz.write_bytes(gzip.compress(("\n".join([HEADER, *rows]) + "\n").encode()))
    zpath = tmp_path / "ETHUSDT-5m-2025-01-01.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("ETHUSDT-5m-2025-01-01.csv", "\n".join(rows) + "\n")
    zipped = load_candles(zpath)
    expected = [(ms(2025, 1, 1) + i * MIN5, 100.0, 101.0, 99.0, 100.5, 2.0) for i in range(4)]
    for c in (plain, bare, load_candles(gz), zipped):
        assert list(c.rows()) == expected and c.timeframe_ms == MIN5
    assert zipped.symbol == "ETH/USDT:USDT"


def test_timestamp_units_and_iso_strings(tmp_path: Path) -> None:
    t0 = ms(2025, 1, 1)
    secs = [f"{t0 // 1000 + i * 60},1,2,0.5,1.5,0" for i in range(3)]
    micros = [f"{(t0 + i * 60_000) * 1000},1,2,0.5,1.5,0" for i in range(3)]
    iso = ["date,open,high,low,close,volume"] + [
        f"2025-01-01T00:0{i}:00Z,1,2,0.5,1.5,0" for i in range(3)
    ]
    for name, lines in (("s.csv", secs), ("us.csv", micros), ("iso.csv", iso)):
        c = load_candles(write_csv(tmp_path / name, lines))
        assert list(c.ts) == [t0, t0 + 60_000, t0 + 120_000], name


@pytest.mark.parametrize(
    ("row3", "problem"),
    [
        ("1735689600000+abc,1,2,0,1,1", "malformed value"),
        ("TS,1,2,0,1,1", "malformed value"),
        (f"{ms(2025, 1, 1) + 2 * MIN5},100,101", "too few columns"),
        (f"{ms(2025, 1, 1) + 2 * MIN5},100,101,99,x,1", "malformed value"),
    ],
)
def test_malformed_row_names_file_row_and_line(tmp_path: Path, row3: str, problem: str) -> None:
    path = write_csv(tmp_path / "bad.csv", [HEADER, *good_rows(2), row3, *good_rows(1)])
    with pytest.raises(FeedError) as err:
        load_candles(path)
    assert err.value.row == 3 and err.value.line == 4
    assert str(err.value).startswith(f"{path}: row 3 (line 4): {problem}")


@pytest.mark.parametrize(
    ("candle", "problem"),
    [
        ("100,99,98,100", "high below max(open, close)"),  # high 99 < open 100
        ("100,101,100.5,100.2", "low above min(open, close)"),  # low 100.5 > open 100
        ("nan,101,99,100", "NaN price"),
        ("100,101,99,100,-1", "negative volume"),
    ],
)
def test_inconsistent_candle_is_malformed(tmp_path: Path, candle: str, problem: str) -> None:
    bad = f"{ms(2025, 1, 1) + 2 * MIN5},{candle}" + ("" if candle.count(",") == 4 else ",1")
    path = write_csv(tmp_path / "ohlc.csv", [*good_rows(2), bad])
    with pytest.raises(
        FeedError, match=r"ohlc\.csv: row 3: malformed candle: " + re.escape(problem)
    ):
        load_candles(path)


def test_unsorted_duplicate_and_off_grid_rows(tmp_path: Path) -> None:
    t0 = ms(2025, 1, 1)
    rows = good_rows(3)
    cases = {
        "unsorted": [*rows, f"{t0 + MIN5},100,101,99,100,1"],  # row 4 goes back in time
        "duplicate": [*rows, f"{t0 + 2 * MIN5},100,101,99,100,1"],  # row 4 repeats row 3
        "off the 5m grid": [*rows, f"{t0 + 3 * MIN5 + 60_000},100,101,99,100,1"],
    }
    for problem, lines in cases.items():
        path = write_csv(tmp_path / "t.csv", lines)
        with pytest.raises(FeedError, match=problem) as err:
            load_candles(path, timeframe_ms=MIN5)
        assert err.value.row == 4 and str(tmp_path / "t.csv") in str(err.value), problem
        # Allowing gaps does not excuse disorder.
        with pytest.raises(FeedError, match=problem):
            load_candles(path, timeframe_ms=MIN5, allow_gaps=True)


def test_gap_is_an_error_unless_allowed(tmp_path: Path) -> None:
    t0 = ms(2025, 1, 1)
    # Rows at 00:00, 00:05, 00:10, then 00:25: the 00:15 and 00:20 candles are missing.
    lines = [HEADER, *good_rows(3), f"{t0 + 5 * MIN5},100,101,99,100,1"]
    path = write_csv(tmp_path / "g.csv", lines)
    with pytest.raises(FeedError) as err:
        load_candles(path)
    assert err.value.row == 4 and err.value.line == 5
    assert (
        "gap: 2 missing 5m candle(s) from 2025-01-01 00:15:00 UTC to 2025-01-01 00:20:00 UTC"
        in str(err.value)
    )
    c = load_candles(path, allow_gaps=True)
    assert len(c) == 4 and c.gaps == (Gap(3, t0 + 3 * MIN5, 2),) and c.missing == 2


def test_json_rows_and_errors(tmp_path: Path) -> None:
    t0 = ms(2025, 1, 1)
    good = [[t0 + i * MIN5, 1.0, 2.0, 0.5, 1.5, 3.0] for i in range(3)]
    path = tmp_path / "DOGE_USDT_USDT-5m-futures.json"
    path.write_text(json.dumps(good))
    c = load_candles(path)
    assert c.symbol == "DOGE/USDT:USDT" and list(c.rows()) == [tuple(r) for r in good]
    path.write_text(json.dumps([*good[:2], [t0 + 2 * MIN5, "x", 2, 0.5, 1.5, 3]]))
    with pytest.raises(FeedError, match=r"DOGE_USDT_USDT-5m-futures\.json: row 3: malformed"):
        load_candles(path)
    path.write_text(json.dumps([*good[:2], [t0 + 2 * MIN5, 1.0]]))
    with pytest.raises(FeedError, match="row 3: too few columns"):
        load_candles(path)


def test_error_inside_zip_in_folder_names_member_and_row(tmp_path: Path) -> None:
    t0 = ms(2025, 1, 1)
    day = 288 * MIN5
    folder = tmp_path / "klines"
    folder.mkdir()
    for d in (1, 0):  # written out of order: the folder is read in time order
        rows = [f"{t0 + d * day + i * MIN5},10,11,9,10,1" for i in range(288)]
        if d == 1:
            rows[7] = f"{t0 + day + 7 * MIN5},10,9,9,10,1"  # high 9 < open 10
        with zipfile.ZipFile(folder / f"SOLUSDT-5m-2025-01-0{d + 1}.zip", "w") as z:
            z.writestr(f"SOLUSDT-5m-2025-01-0{d + 1}.csv", "\n".join(rows) + "\n")
    with pytest.raises(FeedError) as err:
        load_candles(folder)
    assert "SOLUSDT-5m-2025-01-02.zip:SOLUSDT-5m-2025-01-02.csv: row 8: malformed candle" in str(
        err.value
    )


def test_single_row_needs_a_timeframe(tmp_path: Path) -> None:
    lone = write_csv(tmp_path / "lone.csv", good_rows(1))
    with pytest.raises(FeedError, match="timeframe"):
        load_candles(lone)
    assert load_candles(lone, timeframe_ms=MIN5).timeframe_ms == MIN5
    named = write_csv(tmp_path / "BTC_USDT_USDT-15m-futures.csv", good_rows(1))
    assert load_candles(named).timeframe_ms == 15 * 60_000


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(FeedError, match="no such file"):
        load_candles(tmp_path / "nope.csv")
    with pytest.raises(FeedError, match="no candles"):
        load_candles(write_csv(tmp_path / "empty.csv", [HEADER]))


@pytest.mark.parametrize(
    ("name", "symbol"),
    [
        ("BTC_USDT_USDT-5m-futures.feather", "BTC/USDT:USDT"),
        ("ETH_USDT_USDT-8h-funding_rate.json", "ETH/USDT:USDT"),
        ("BTC_USDT-1m.feather", "BTC/USDT"),
        ("BTCUSDT-5m-2025-10-10.zip", "BTC/USDT:USDT"),
        ("BTCUSDT-5m-markprice", "BTC/USDT:USDT"),
        ("BTCUSD_PERP-1m-2025-10-09.zip", "BTC/USD:BTC"),
        ("1000PEPEUSDC-1h-2025-01.zip", "1000PEPE/USDC:USDC"),
        ("candles.json", None),
    ],
)
def test_infer_symbol(name: str, symbol: str | None) -> None:
    assert infer_symbol(name) == symbol


def test_format_timeframe() -> None:
    assert [format_timeframe(x) for x in (60_000, MIN5, HOUR, 8 * HOUR, 86_400_000, 1_500)] == [
        "1m",
        "5m",
        "1h",
        "8h",
        "1d",
        "1500ms",
    ]


def test_index_at_and_between(tmp_path: Path) -> None:
    t0 = ms(2025, 1, 1)
    c = load_candles(write_csv(tmp_path / "x.csv", good_rows(10)))
    assert c.index_at(t0) == 0 and c.index_at(t0 + MIN5 - 1) == 0 and c.index_at(t0 + MIN5) == 1
    assert c.index_at(t0 - 1) is None and c.index_at(t0 + 10 * MIN5) is None
    part = c.between(t0 + 2 * MIN5, t0 + 5 * MIN5)
    assert list(part.ts) == [t0 + 2 * MIN5, t0 + 3 * MIN5, t0 + 4 * MIN5]


# ------------------------------------------------------------------------------------------
# Intrabar path and merge


def test_intrabar_path_hand_cases() -> None:
    # Open 100, high 103, low 99: the low is 1 away, the high 3 → low first.
    assert intrabar_path(100.0, 103.0, 99.0, 102.0) == (100.0, 99.0, 103.0, 102.0)
    # Open 100, high 101, low 95: the high is nearer → high first.
    assert intrabar_path(100.0, 101.0, 95.0, 96.0) == (100.0, 101.0, 95.0, 96.0)
    # Tie (2 each way): low first, by definition.
    assert intrabar_path(100.0, 102.0, 98.0, 101.0) == (100.0, 98.0, 102.0, 101.0)
    # Flat candle.
    assert intrabar_path(5.0, 5.0, 5.0, 5.0) == (5.0, 5.0, 5.0, 5.0)


prices = st.floats(min_value=1e-6, max_value=1e7, allow_nan=False, allow_infinity=False)


@given(prices, prices, prices, prices)
def test_intrabar_path_invariants(a: float, b: float, x: float, y: float) -> None:
    h, lo = max(a, b, x, y), min(a, b, x, y)
    o, c = x, y
    path = intrabar_path(o, h, lo, c)
    assert path[0] == o and path[3] == c and {path[1], path[2]} == {h, lo}
    # The first extreme visited is the nearer one (the low on a tie).
    assert abs(path[1] - o) <= abs(path[2] - o)
    if abs(h - o) == abs(o - lo):
        assert path[1] == lo


def _series(symbol: str, ts: list[int]) -> Candles:
    n = len(ts)
    one = array("d", [1.0] * n)
    return Candles(symbol, MIN5, array("q", ts), one, one, one, one, one)


def test_merge_time_order_stable_by_input() -> None:
    a = _series("A", [0, 300, 600, 900])
    b = _series("B", [300, 450, 900])
    assert list(merge(a, b)) == [
        (0, 0, 0),
        (300, 0, 1),
        (300, 1, 0),  # equal time: first argument first
        (450, 1, 1),
        (600, 0, 2),
        (900, 0, 3),
        (900, 1, 2),
    ]
    assert list(merge(b)) == [(300, 0, 0), (450, 0, 1), (900, 0, 2)]


@given(st.lists(st.lists(st.integers(0, 50), max_size=20), min_size=1, max_size=4))
def test_merge_invariants(raw: list[list[int]]) -> None:
    series = [_series(str(k), sorted(set(ts))) for k, ts in enumerate(raw)]
    out = list(merge(*series))
    assert len(out) == sum(len(s) for s in series)
    assert out == sorted(out)  # time, then input order, then row order
    assert all(series[k].ts[i] == t for t, k, i in out)


# ------------------------------------------------------------------------------------------
# Round trip and speed

finite = st.floats(min_value=0.01, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(st.lists(st.tuples(finite, finite, finite, finite, finite), min_size=2, max_size=30))
def test_csv_round_trip_is_exact(raw: list[tuple[float, float, float, float, float]]) -> None:
    t0 = ms(2024, 2, 29)
    lines = [HEADER]
    expected = []
    for i, (a, b, x, y, v) in enumerate(raw):
        row = (t0 + i * 60_000, x, max(a, b, x, y), min(a, b, x, y), y, v)
        expected.append(row)
        lines.append(",".join(repr(f) for f in row))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "round_trip.csv.gz"
        path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
        assert list(load_candles(path).rows()) == expected


def test_a_year_of_1m_candles_loads_compactly(tmp_path: Path) -> None:
    n = 525_600
    t0 = ms(2024, 1, 1)
    path = tmp_path / "BTC_USDT_USDT-1m-futures.csv"
    with path.open("w") as f:
        f.write(HEADER + "\n")
        f.writelines(
            f"{t0 + i * 60_000},{p}.5,{p + 7}.25,{p - 6}.75,{p + 1}.0,{i % 97}.125\n"
            for i in range(n)
            for p in (30_000 + (i * 7919) % 2000,)
        )
    c = load_candles(path)
    assert len(c) == n and c.timeframe_ms == 60_000 and not c.gaps
    # Row 123,456: 123456 * 7919 = 977,648,064 ≡ 64 (mod 2000), so p = 30,064;
    # 123456 = 97 * 1272 + 72, so volume 72.125.
    assert c.row(123_456) == (
        t0 + 123_456 * 60_000,
        30_064.5,
        30_071.25,
        30_058.75,
        30_065.0,
        72.125,
    )
    columns = (c.ts, c.open, c.high, c.low, c.close, c.volume)
    nbytes = sum(a.buffer_info()[1] * a.itemsize for a in columns)
    assert nbytes <= 6 * 8 * n  # 8 bytes per value: ~25 MB for a year of 1m candles
    assert math.isclose(sum(c.volume), sum(i % 97 + 0.125 for i in range(n)))


def test_the_pyarrow_fast_path_reads_what_the_python_reader_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain numeric CSVs (of 1 MiB and more) go through pyarrow.csv when it is installed; other
    files, and any file it cannot read whole, through the Python reader. Both give the same
    columns."""
    pytest.importorskip("pyarrow")
    import paper.feed.formats as formats

    monkeypatch.setattr(formats, "FAST_MIN_BYTES", 0)
    rows = ["timestamp_ms,open,high,low,close,volume"]
    rows += [
        f"{1_700_000_000_000 + i * 60_000},{100 + i * 0.1:.1f},{101 + i * 0.1:.1f},"
        f"{99 + i * 0.1:.1f},{100.05 + i * 0.1:.2f},{i * 1.5}"
        for i in range(500)
    ]
    plain = tmp_path / "AAA_USDT_USDT-1m-futures.csv"
    plain.write_text("\n".join(rows) + "\n", encoding="utf-8")
    headerless = tmp_path / "BBB_USDT_USDT-1m-futures.csv"
    headerless.write_text("\n".join(rows[1:]) + "\n", encoding="utf-8")
    for path in (plain, headerless, formats.Path(bundled_candles_path())):
        assert formats._read_csv_fast(path) is not None, path
        fast = load_candles(path, symbol="BTC/USDT:USDT")
        original = formats._read_csv_fast
        formats._read_csv_fast = lambda p: None  # type: ignore[assignment]
        try:
            slow = load_candles(path, symbol="BTC/USDT:USDT")
        finally:
            formats._read_csv_fast = original  # type: ignore[assignment]
        for column in ("ts", "open", "high", "low", "close", "volume"):
            assert getattr(fast, column) == getattr(slow, column), (path, column)
    # a malformed value: the fast path gives up, the Python reader names the row
    bad = tmp_path / "CCC_USDT_USDT-1m-futures.csv"
    bad.write_text("\n".join([*rows[:100], "1700005940000,1,x,1,1,1", *rows[101:]]) + "\n")
    assert formats._read_csv_fast(bad) is None
    with pytest.raises(FeedError, match="row 100"):
        load_candles(bad)
