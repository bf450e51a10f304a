"""Strategies used by the tests (loaded by dotted path, e.g. "strategies_for_tests:EnterOnce")."""

from __future__ import annotations

from collections.abc import Sequence

from bot.strategies.base import NO_INTENTS, BaseStrategy
from guards.types import OrderIntent, Position


class EnterOnce(BaseStrategy):
    """Goes long once on the first closed bar, with a 2 % stop; exits when told to."""

    name = "enter_once"

    def __init__(self, amount: float = 0.01, leverage: float = 3.0) -> None:
        self.amount = amount
        self.leverage = leverage
        self.entered = False
        self.exit_next = False

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
        if position is not None and self.exit_next:
            self.exit_next = False
            return (OrderIntent(symbol, "long", position.amount, reduce_only=True),)
        if self.entered or position is not None:
            return NO_INTENTS
        self.entered = True
        return (
            OrderIntent(
                symbol, "long", self.amount, leverage=self.leverage, stop_price=close * 0.98
            ),
        )
