"""SMA cross: long when the fast simple moving average crosses above the slow one, short when it
crosses below; on a reversal, close the open position first, then enter the other way.

Every entry carries an ATR stop (``close ∓ atr_mult × ATR``) and, with ``take_profit_rr``, a
take-profit, so the stop-loss guard sees a bounded risk by construction. Signals are taken at the
candle close; no entries before both averages and the ATR are warm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field, model_validator

from bot.strategies.base import NO_INTENTS, BaseStrategy, EntryParams, entry_intent, exit_intent
from bot.strategies.indicators import Atr, Sma
from guards import OrderIntent, Position, Side


class SmaCrossParams(EntryParams):
    """Parameters of ``SmaCross``."""

    fast: int = Field(10, ge=1, le=10_000, description="fast SMA period, in candles")
    slow: int = Field(30, ge=2, le=10_000, description="slow SMA period, in candles")

    @model_validator(mode="after")
    def _fast_below_slow(self) -> SmaCrossParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be shorter than slow ({self.slow})")
        return self


class _State:
    __slots__ = ("atr", "fast", "prev_diff", "slow")

    def __init__(self, p: SmaCrossParams) -> None:
        self.fast = Sma(p.fast)
        self.slow = Sma(p.slow)
        self.atr = Atr(p.atr_period)
        self.prev_diff: float | None = None


class SmaCross(BaseStrategy):
    """Fast/slow SMA crossover with ATR stops. Keyword arguments are ``SmaCrossParams``."""

    name = "sma_cross"

    def __init__(self, **params: Any) -> None:
        self.params = SmaCrossParams(**params)
        self._states: dict[str, _State] = {}
        self._entry_tag = f"{self.name}:entry"
        self._exit_tag = f"{self.name}:exit"

    def on_candle(
        self,
        symbol: str,
        ts_ms: int,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
        position: Position | None,
    ) -> Sequence[OrderIntent]:
        st = self._states.get(symbol)
        if st is None:
            st = self._states[symbol] = _State(self.params)
        atr = st.atr.update(high, low, close)
        fast = st.fast.update(close)
        slow = st.slow.update(close)
        if fast is None or slow is None:
            return NO_INTENTS
        diff = fast - slow
        prev = st.prev_diff
        st.prev_diff = diff
        if prev is None or atr is None:
            return NO_INTENTS
        if prev <= 0.0 < diff:
            return self._go(symbol, "long", close, atr, position)
        if prev >= 0.0 > diff:
            return self._go(symbol, "short", close, atr, position)
        return NO_INTENTS

    def _go(
        self, symbol: str, side: Side, close: float, atr: float, position: Position | None
    ) -> Sequence[OrderIntent]:
        # No entry without a stop distance (a flat ATR would put the stop at the entry).
        enter = (side == "long" or self.params.allow_short) and atr > 0.0
        if position is None:
            if not enter:
                return NO_INTENTS
            return (entry_intent(symbol, side, close, atr, self.params, self._entry_tag),)
        if position.side == side:
            return NO_INTENTS
        close_it = exit_intent(position, self._exit_tag)
        if not enter:
            return (close_it,)
        return (close_it, entry_intent(symbol, side, close, atr, self.params, self._entry_tag))
