"""Donchian breakout (the turtle rule): long when a candle closes above the highest high of the
previous ``period`` candles, short when it closes below their lowest low; a long exits when a
close breaks below the lowest low of the previous ``exit_period`` candles (a short: above their
highest high), and reverses if that close also breaks the entry channel.

Every entry carries an ATR stop (``close ∓ atr_mult × ATR``) and, with ``take_profit_rr``, a
take-profit. Signals are taken at the candle close; nothing happens before the channels and the
ATR are warm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from bot.strategies.base import NO_INTENTS, BaseStrategy, EntryParams, entry_intent, exit_intent
from bot.strategies.indicators import Atr, DonchianChannel
from guards import OrderIntent, Position


class DonchianParams(EntryParams):
    """Parameters of ``Donchian``."""

    period: int = Field(20, ge=1, le=10_000, description="entry channel length, in candles")
    exit_period: int = Field(10, ge=1, le=10_000, description="exit channel length, in candles")


class _State:
    __slots__ = ("atr", "entry", "exit")

    def __init__(self, p: DonchianParams) -> None:
        self.entry = DonchianChannel(p.period)
        self.exit = DonchianChannel(p.exit_period)
        self.atr = Atr(p.atr_period)


class Donchian(BaseStrategy):
    """Channel breakout with ATR stops. Keyword arguments are ``DonchianParams``."""

    name = "donchian"

    def __init__(self, **params: Any) -> None:
        self.params = DonchianParams(**params)
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
        # The channels of the candles BEFORE this one; then add this candle.
        upper, lower = st.entry.upper, st.entry.lower
        exit_upper, exit_lower = st.exit.upper, st.exit.lower
        atr = st.atr.update(high, low, close)
        st.entry.update(high, low)
        st.exit.update(high, low)
        if upper is None or lower is None or exit_upper is None or exit_lower is None:
            return NO_INTENTS
        if atr is None:
            return NO_INTENTS
        p = self.params
        # No entry without a stop distance (a flat ATR would put the stop at the entry).
        go_long = close > upper and atr > 0.0
        go_short = close < lower and p.allow_short and atr > 0.0
        if position is None:
            if go_long:
                return (entry_intent(symbol, "long", close, atr, p, self._entry_tag),)
            if go_short:
                return (entry_intent(symbol, "short", close, atr, p, self._entry_tag),)
            return NO_INTENTS
        if position.side == "long":
            if close >= exit_lower:
                return NO_INTENTS
            if go_short:
                short = entry_intent(symbol, "short", close, atr, p, self._entry_tag)
                return (exit_intent(position, self._exit_tag), short)
            return (exit_intent(position, self._exit_tag),)
        if close <= exit_upper:
            return NO_INTENTS
        if go_long:
            long = entry_intent(symbol, "long", close, atr, p, self._entry_tag)
            return (exit_intent(position, self._exit_tag), long)
        return (exit_intent(position, self._exit_tag),)
