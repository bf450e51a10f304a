"""Candles built from a stream of price updates (live and paper-on-live-data modes).

``BarBuilder`` aggregates prices into OHLC bars on a fixed UTC grid of ``timeframe_ms`` and hands
back each bar once it has closed: the first price of the next period closes it (``update``), or
the clock passing the period's end (``close_due``), whichever comes first. Volume is not known
from mark updates and is reported as 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def timeframe_ms(text: str) -> int:
    """``"5m"`` → 300,000; accepts s, m, h, d units."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", text)
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"bad timeframe {text!r} (use e.g. 1m, 5m, 1h)")
    return int(m.group(1)) * _UNITS[m.group(2)]


@dataclass(frozen=True, slots=True)
class Bar:
    ts_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0


class BarBuilder:
    """OHLC bars of one symbol from price updates."""

    __slots__ = ("_close", "_done", "_high", "_low", "_open", "_start", "tf")

    def __init__(self, tf_ms: int) -> None:
        self.tf = tf_ms
        self._start: int | None = None
        #: Start of the last bar closed by the clock (its late prices are ignored).
        self._done: int | None = None
        self._open = self._high = self._low = self._close = 0.0

    def update(self, price: float, ts_ms: int) -> Bar | None:
        """Feed one price; returns the bar that this price closed, if any."""
        start = ts_ms - ts_ms % self.tf
        if self._start is None:
            if self._done is not None and start <= self._done:
                return None  # a late price of a bar the clock has closed
            self._begin(start, price)
            return None
        if start < self._start:  # out-of-order update: belongs to a closed bar, ignore
            return None
        if start == self._start:
            if price > self._high:
                self._high = price
            if price < self._low:
                self._low = price
            self._close = price
            return None
        bar = Bar(self._start, self._open, self._high, self._low, self._close)
        self._begin(start, price)
        return bar

    def close_due(self, now_ms: int) -> Bar | None:
        """The open bar, closed, if its period has ended by ``now_ms`` (else None).

        The next price then starts a new bar; a late price of the closed period is ignored.
        """
        start = self._start
        if start is None or now_ms < start + self.tf:
            return None
        bar = Bar(start, self._open, self._high, self._low, self._close)
        self._start = None
        self._done = start
        return bar

    def _begin(self, start: int, price: float) -> None:
        self._start = start
        self._open = self._high = self._low = self._close = price
