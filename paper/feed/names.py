"""File names: the symbol a freqtrade or Binance file name implies, and the bundled data files."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SUFFIXES = (".csv", ".csv.gz", ".txt", ".zip", ".json", ".json.gz", ".feather", ".arrow")

_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USD")


def infer_symbol(path: str | Path) -> str | None:
    """The ccxt symbol a file or folder name implies, or None.

    freqtrade names: ``BTC_USDT_USDT-5m-futures`` → ``BTC/USDT:USDT``, ``BTC_USDT-1m`` →
    ``BTC/USDT``. Binance dump names: ``BTCUSDT-5m-2025-10-10`` → ``BTC/USDT:USDT`` (USDⓈ-M
    perpetual), ``BTCUSD_PERP-1m-…`` → ``BTC/USD:BTC`` (COIN-M perpetual).
    """
    name = Path(path).name
    for suffix in SUFFIXES:
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


def _split_pair(s: str) -> tuple[str, str] | None:
    for q in _QUOTES:
        if s.endswith(q) and len(s) > len(q):
            return (s[: -len(q)], q)
    return None


def stem(p: Path) -> str:
    name = p.name
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return p.stem


def bundled_candles_path() -> Path:
    """The BTC/USDT:USDT 5m perpetual candles shipped with the package (April 2025 crash)."""
    return _bundled("BTC_USDT_USDT-5m-futures.csv.gz")


def bundled_funding_path() -> Path:
    """The 8 h funding rates that go with ``bundled_candles_path()``."""
    return _bundled("BTC_USDT_USDT-8h-funding_rate.csv.gz")


def _bundled(name: str) -> Path:
    ref = resources.files("paper").joinpath("data", name)
    if isinstance(ref, Path):
        return ref
    # Only a zip-imported package lands here; its data must be extracted to a real file.
    with resources.as_file(ref) as path:  # pragma: no cover
        return Path(path)
