"""Binance USDⓈ-M market history: klines, mark-price klines and funding-rate history.

``GET /fapi/v1/klines`` and ``GET /fapi/v1/markPriceKlines`` (``symbol``, ``interval``,
``startTime``, ``endTime``, ``limit`` 1-1500, default 500) and ``GET /fapi/v1/fundingRate``
(``symbol`` optional, ``startTime``, ``endTime``, ``limit`` 1-1000, default 100), answered from
the history loaded with ``load_history`` (``guardbot download`` is tested against them).

As Binance: with ``startTime`` the rows from the first open time at or after it, up to
``limit``; with only ``endTime`` the last ``limit`` rows up to it; with neither the latest
``limit``; rows in ascending time. Refused as Binance refuses: a missing ``symbol`` or
``interval`` (-1102), an unknown symbol (-1121), an interval Binance does not have (-1120), a
``limit`` out of range (-1130), a non-numeric time (-1100) and a start after the end (-1023).
Coarser intervals than the loaded candles are aggregated from them; a finer one is an error
(-1120, "no history at that interval"), since the emulator cannot invent it. A symbol with no
history loaded serves the bundled data where the package has it (BTC and ETH: 5m candles and
8 h funding, March-April 2025), so ``guardbot emulator`` answers ``guardbot download`` by hand.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final

from bot.emulator.binance.base import BinanceBase
from bot.emulator.binance.shapes import _missing, _s
from bot.emulator.server import ApiError, Fault
from paper.feed import Candles, load_candles, load_funding
from paper.markets import PaperMarket

#: Binance's kline intervals (ms); ``1M`` (a calendar month) is listed but not served.
INTERVALS_MS: Final = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
    "1M": 0,
}
KLINES_LIMIT: Final = (500, 1500)
FUNDING_LIMIT: Final = (100, 1000)

Row = tuple[int, float, float, float, float, float]


@dataclass
class _History:
    """One symbol's loaded history."""

    candles: Candles | None = None
    marks: Candles | None = None
    funding: list[tuple[int, float]] = field(default_factory=list)


class BinanceHistory(BinanceBase):
    """Market-history endpoints of the Binance emulator (see the module docstring)."""

    def load_history(
        self,
        symbol: str,
        candles: Candles | None = None,
        marks: Candles | None = None,
        funding: Sequence[tuple[int, float]] = (),
    ) -> None:
        """Serve these candles, mark candles and funding events for ``symbol`` (a market of
        the emulator's core)."""
        self.core.market(symbol)  # KeyError for a market the emulator does not have
        book = self._histories()
        book[symbol] = _History(candles, marks, sorted(funding))

    def _histories(self) -> dict[str, _History]:
        book: dict[str, _History] | None = getattr(self, "_history_book", None)
        if book is None:
            book = {}
            self._history_book = book
        return book

    def _history_of(self, symbol: str) -> _History:
        """The loaded history of ``symbol``, else the bundled files' (read once), else none."""
        book = self._histories()
        hist = book.get(symbol)
        if hist is None:
            hist = book[symbol] = _bundled(symbol)
        return hist

    def _interval(self, params: dict[str, str]) -> int:
        raw = params.get("interval")
        if not raw:
            raise ApiError(-1102, _missing("interval"))
        if raw not in INTERVALS_MS:
            raise ApiError(-1120, "Invalid interval.")
        if not INTERVALS_MS[raw]:
            raise ApiError(-1120, "Invalid interval: the emulator serves no calendar months.")
        return INTERVALS_MS[raw]

    # -- endpoints ----------------------------------------------------------------------------
    def ep_klines(self, params: dict[str, str], fault: Fault | None) -> Any:
        return self._klines(params, mark=False)

    def ep_mark_price_klines(self, params: dict[str, str], fault: Fault | None) -> Any:
        return self._klines(params, mark=True)

    def _klines(self, params: dict[str, str], *, mark: bool) -> Any:
        market = self._market(params)
        assert market is not None
        tf = self._interval(params)
        limit = self._limit(params, KLINES_LIMIT)
        start, end = self._window(params)
        hist = self._history_of(market.symbol)
        source = (hist.marks or hist.candles) if mark else hist.candles
        if source is None or len(source) == 0:
            return []
        rows = _resample(source, tf)
        times = [r[0] for r in rows]
        if start is not None:
            lo = bisect.bisect_left(times, start)
            hi = len(rows) if end is None else bisect.bisect_right(times, end)
            chosen = rows[lo : min(hi, lo + limit)]
        else:
            hi = len(rows) if end is None else bisect.bisect_right(times, end)
            chosen = rows[max(0, hi - limit) : hi]
        return [_kline(r, tf, mark, market) for r in chosen]

    def ep_funding_rate(self, params: dict[str, str], fault: Fault | None) -> Any:
        market = self._market(params, required=False)
        limit = self._limit(params, FUNDING_LIMIT)
        start, end = self._window(params)
        book = self._histories()
        symbols = (
            [market.symbol] if market is not None else sorted(set(book) | set(self.core.symbols))
        )
        out: list[dict[str, Any]] = []
        for symbol in symbols:
            hist = self._history_of(symbol)
            m = self.core.market(symbol)
            events = hist.funding
            times = [t for t, _ in events]
            if start is not None:
                lo = bisect.bisect_left(times, start)
                hi = len(events) if end is None else bisect.bisect_right(times, end)
                chosen = events[lo : min(hi, lo + limit)]
            else:
                hi = len(events) if end is None else bisect.bisect_right(times, end)
                chosen = events[max(0, hi - limit) : hi]
            marks = hist.marks or hist.candles
            for t, rate in chosen:
                price = marks.mark_at(t) if marks is not None else None
                out.append(
                    {
                        "symbol": m.id,
                        "fundingTime": t,
                        "fundingRate": f"{rate:.8f}",
                        "markPrice": _s(price) if price is not None else "",
                    }
                )
        out.sort(key=lambda row: row["fundingTime"])
        return out[:limit] if market is None else out


def _bundled(symbol: str) -> _History:
    stem = symbol.replace("/", "_").replace(":", "_")
    folder = resources.files("paper").joinpath("data")
    candles_ref = folder.joinpath(f"{stem}-5m-futures.csv.gz")
    funding_ref = folder.joinpath(f"{stem}-8h-funding_rate.csv.gz")
    if not candles_ref.is_file():
        return _History()
    with resources.as_file(candles_ref) as path:
        candles = load_candles(path, symbol=symbol)
    funding: list[tuple[int, float]] = []
    if funding_ref.is_file():
        with resources.as_file(funding_ref) as path:
            series = load_funding(path, symbol=symbol)
            funding = list(zip(series.ts, series.rate, strict=True))
    return _History(candles, None, funding)


def _resample(source: Candles, tf: int) -> list[Row]:
    """The candles at interval ``tf`` (the loaded ones, or aggregated from finer ones)."""
    base = source.timeframe_ms
    if tf == base:
        return list(source.rows())
    if tf < base or tf % base:
        raise ApiError(
            -1120, f"Invalid interval: the emulator holds {source.timeframe} history only."
        )
    out: list[Row] = []
    for t, o, h, lo, c, v in source.rows():
        bucket = t - t % tf
        if out and out[-1][0] == bucket:
            pt, po, ph, pl, _, pv = out[-1]
            out[-1] = (pt, po, max(ph, h), min(pl, lo), c, pv + v)
        else:
            out.append((bucket, o, h, lo, c, v))
    return out


def _kline(row: Row, tf: int, mark: bool, market: PaperMarket) -> list[Any]:
    t, o, h, lo, c, v = row
    if mark:
        return [t, _s(o), _s(h), _s(lo), _s(c), "0", t + tf - 1, "0", tf // 1000, "0", "0", "0"]
    return [
        t,
        _s(o),
        _s(h),
        _s(lo),
        _s(c),
        _s(v),
        t + tf - 1,
        _s(round(v * c, 8)),
        0,
        "0",
        "0",
        "0",
    ]
