"""A reckless dip buyer: the way the seed articles say retail perpetual accounts die. An example,
not advice; ``make run`` replays it with the guards on and off.

It buys every dip of ``dip_pct`` from the high of the last ``lookback`` candles, all in
(``notional``, by default 15x a 10,000 wallet) at high leverage, with **no stop**; while the
position is in loss it adds ``add_fraction`` of it at every candle (averaging down, up to
``max_adds`` times); it takes profit at ``take_profit_pct``. Without guards it is liquidated in the
first crash; with them its entries get a stop attached (``stop_loss.missing = "attach"``), are cut
to the leverage and margin caps, and its top-ups are refused.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bot.strategies.base import NO_INTENTS, BaseStrategy, exit_intent
from guards import OrderIntent, Position


class RecklessParams(BaseModel):
    """Parameters of ``Reckless``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lookback: int = Field(48, ge=2, le=10_000, description="candles of the high a dip is from")
    dip_pct: float = Field(2.0, gt=0, lt=100, description="buy when this % below that high")
    notional: float = Field(150_000.0, gt=0, description="entry size in quote currency (all in)")
    leverage: float = Field(20.0, ge=1, le=125, description="leverage asked for")
    add_fraction: float = Field(0.5, ge=0, le=10, description="top-up, fraction of the position")
    max_adds: int = Field(10, ge=0, le=1000, description="top-ups of one position")
    take_profit_pct: float = Field(1.5, gt=0, lt=1000, description="close at this % gain")


class Reckless(BaseStrategy):
    """All-in, high-leverage, stopless dip buying that averages down. See the module docstring."""

    name = "reckless"

    def __init__(self, **params: Any) -> None:
        self.params = RecklessParams(**params)
        self._highs: dict[str, deque[float]] = {}
        self._adds: dict[str, int] = {}

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
        p = self.params
        highs = self._highs.get(symbol)
        if highs is None:
            highs = self._highs[symbol] = deque(maxlen=p.lookback)
        highs.append(high)
        if position is not None:
            if close >= position.entry_price * (1 + p.take_profit_pct / 100):
                self._adds[symbol] = 0
                return (exit_intent(position, f"{self.name}:take_profit"),)
            if close < position.entry_price and self._adds.get(symbol, 0) < p.max_adds:
                self._adds[symbol] = self._adds.get(symbol, 0) + 1
                return (self._long(symbol, position.amount * p.add_fraction, "add"),)
            return NO_INTENTS
        self._adds[symbol] = 0
        if len(highs) < p.lookback or close > max(highs) * (1 - p.dip_pct / 100):
            return NO_INTENTS
        return (self._long(symbol, p.notional / close, "entry"),)

    def _long(self, symbol: str, amount: float, what: str) -> OrderIntent:
        return OrderIntent(
            symbol=symbol,
            side="long",
            amount=amount,
            leverage=self.params.leverage,
            margin_mode="isolated",
            tag=f"{self.name}:{what}",
        )
