"""Incremental indicators for strategies: SMA, EMA, ATR (Wilder) and the Donchian channel.

Each indicator takes one value (or candle) per ``update`` in O(1) amortised time and constant
memory, and reports ``None`` until it has seen enough data (its warm-up).
"""

from __future__ import annotations

import math
from collections import deque


def _check_period(period: int) -> int:
    if isinstance(period, bool) or not isinstance(period, int) or period < 1:
        raise ValueError(f"period must be a positive integer, got {period!r}")
    return period


class Sma:
    """Simple moving average over the last ``period`` values.

    A running sum over a ring buffer; the sum is recomputed exactly (``math.fsum``) each time
    the buffer wraps, so rounding error cannot build up over long replays.
    """

    __slots__ = ("_buf", "_i", "_n", "_sum", "period", "value")

    def __init__(self, period: int) -> None:
        self.period = _check_period(period)
        self._buf = [0.0] * period
        self._i = 0
        self._n = 0
        self._sum = 0.0
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        i = self._i
        self._sum += x - self._buf[i]
        self._buf[i] = x
        i += 1
        if i == self.period:
            i = 0
            self._sum = math.fsum(self._buf)
        self._i = i
        if self._n < self.period:
            self._n += 1
            if self._n < self.period:
                return None
        self.value = self._sum / self.period
        return self.value


class Ema:
    """Exponential moving average, alpha = 2 / (period + 1), seeded with the SMA of the first
    ``period`` values (so the first value comes with the ``period``-th update)."""

    __slots__ = ("_alpha", "_seed", "period", "value")

    def __init__(self, period: int) -> None:
        self.period = _check_period(period)
        self._alpha = 2.0 / (period + 1)
        self._seed = Sma(period)
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        if self.value is None:
            self.value = self._seed.update(x)
        else:
            self.value += self._alpha * (x - self.value)
        return self.value


class Atr:
    """Average true range with Wilder's smoothing.

    True range = max(high - low, |high - previous close|, |low - previous close|); the first
    candle has no previous close, so its true range is high - low. The ATR is the mean of the
    first ``period`` true ranges, then ``atr = (atr * (period - 1) + tr) / period``.
    """

    __slots__ = ("_count", "_prev_close", "_sum", "period", "value")

    def __init__(self, period: int = 14) -> None:
        self.period = _check_period(period)
        self._prev_close: float | None = None
        self._count = 0
        self._sum = 0.0
        self.value: float | None = None

    def update(self, high: float, low: float, close: float) -> float | None:
        pc = self._prev_close
        tr = high - low
        if pc is not None:
            up = high - pc if high > pc else pc - high
            down = low - pc if low > pc else pc - low
            if up > tr:
                tr = up
            if down > tr:
                tr = down
        self._prev_close = close
        if self.value is not None:
            self.value = (self.value * (self.period - 1) + tr) / self.period
            return self.value
        self._count += 1
        self._sum += tr
        if self._count == self.period:
            self.value = self._sum / self.period
        return self.value


class RollingExtreme:
    """Maximum (or minimum) of the last ``period`` values, by a monotonic deque of indices."""

    __slots__ = ("_buf", "_idx", "_is_max", "_n", "period", "value")

    def __init__(self, period: int, *, maximum: bool) -> None:
        self.period = _check_period(period)
        self._is_max = maximum
        self._buf = [0.0] * period
        self._idx: deque[int] = deque()
        self._n = 0
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        n = self._n
        buf, idx, period = self._buf, self._idx, self.period
        if self._is_max:
            while idx and buf[idx[-1] % period] <= x:
                idx.pop()
        else:
            while idx and buf[idx[-1] % period] >= x:
                idx.pop()
        buf[n % period] = x
        idx.append(n)
        if idx[0] <= n - period:
            idx.popleft()
        self._n = n + 1
        if self._n >= period:
            self.value = buf[idx[0] % period]
        return self.value


class DonchianChannel:
    """Donchian channel: highest high and lowest low of the last ``period`` candles.

    ``upper``/``lower`` include the latest update; a breakout rule compares a close with the
    channel *before* updating it with that candle.
    """

    __slots__ = ("_hi", "_lo", "period")

    def __init__(self, period: int = 20) -> None:
        self.period = _check_period(period)
        self._hi = RollingExtreme(period, maximum=True)
        self._lo = RollingExtreme(period, maximum=False)

    @property
    def upper(self) -> float | None:
        return self._hi.value

    @property
    def lower(self) -> float | None:
        return self._lo.value

    def update(self, high: float, low: float) -> None:
        self._hi.update(high)
        self._lo.update(low)
