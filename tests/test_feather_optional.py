"""pyarrow is the optional extra ``guardbot[feather]``: without it, feather files give one clear
error naming the extra, and everything else (the bundled CSV replay data, CSV downloads) works.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bot.research.download import DownloadError, _write_feather
from paper.feed import bundled_candles_path
from paper.feed.containers import FeedError
from paper.feed.formats import read_candle_table

pa = pytest.importorskip("pyarrow")  # the dev extra has it: used to write the file first


@pytest.fixture
def no_pyarrow(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import pyarrow`` raises ImportError, as on an install without the extra."""
    for name in list(sys.modules):
        if name == "pyarrow" or name.startswith("pyarrow."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "pyarrow", None)


@pytest.fixture
def feather_file(tmp_path: Path) -> Path:
    import pyarrow.feather as feather

    path = tmp_path / "BTC_USDT_USDT-5m-futures.feather"
    table = pa.table(
        {
            "date": pa.array([1_700_000_000_000, 1_700_000_300_000], pa.timestamp("ms", "UTC")),
            "open": [1.0, 2.0],
            "high": [1.5, 2.5],
            "low": [0.5, 1.5],
            "close": [1.2, 2.2],
            "volume": [10.0, 20.0],
        }
    )
    feather.write_feather(table, str(path))
    return path


def test_feather_reads_with_pyarrow(feather_file: Path) -> None:
    assert len(read_candle_table(feather_file).ts) == 2


def test_feather_without_pyarrow_names_the_extra(feather_file: Path, no_pyarrow: None) -> None:
    with pytest.raises(FeedError, match=r"install guardbot\[feather\]") as info:
        read_candle_table(feather_file)
    assert str(feather_file) in str(info.value)


def test_feather_download_without_pyarrow_names_the_extra(tmp_path: Path, no_pyarrow: None) -> None:
    with pytest.raises(DownloadError, match=r"guardbot\[feather\].*--format csv"):
        _write_feather(tmp_path / "x.feather", [(1.0, 1.0, 1.0, 1.0, 1.0, 1.0)], "candles")


def test_the_bundled_replay_data_needs_no_pyarrow(no_pyarrow: None) -> None:
    table = read_candle_table(bundled_candles_path())
    assert len(table.ts) == 10_906  # paper/data/README.md
