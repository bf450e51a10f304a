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


class TickEnter(BaseStrategy):
    """Goes long once on the first price update of ``symbol`` (no waiting for a closed bar),
    when flat and, given ``min_price``, once the price is at least that."""

    name = "tick_enter"

    def __init__(
        self, symbol: str, amount: float, leverage: float = 3.0, min_price: float = 0.0
    ) -> None:
        self.symbol = symbol
        self.amount = amount
        self.leverage = leverage
        self.min_price = min_price
        self.entered = False

    def on_tick(
        self, symbol: str, ts_ms: int, price: float, position: Position | None
    ) -> Sequence[OrderIntent]:
        if symbol != self.symbol or self.entered or position is not None:
            return NO_INTENTS
        if price < self.min_price:
            return NO_INTENTS
        self.entered = True
        return (
            OrderIntent(
                symbol, "long", self.amount, leverage=self.leverage, stop_price=price * 0.98
            ),
        )


class Churn(BaseStrategy):
    """Enters on a tick when flat (2 % stop) and exits after ``hold`` further ticks: many orders."""

    name = "churn"

    def __init__(self, amount: float = 0.01, hold: int = 2, leverage: float = 3.0) -> None:
        self.amount = amount
        self.hold = hold
        self.leverage = leverage
        self.held = 0

    def on_tick(
        self, symbol: str, ts_ms: int, price: float, position: Position | None
    ) -> Sequence[OrderIntent]:
        if position is None:
            self.held = 0
            return (
                OrderIntent(
                    symbol, "long", self.amount, leverage=self.leverage, stop_price=price * 0.98
                ),
            )
        self.held += 1
        if self.held > self.hold:
            self.held = 0
            return (OrderIntent(symbol, "long", position.amount, reduce_only=True),)
        return NO_INTENTS


class OnlyOn(BaseStrategy):
    """The built-in SMA cross, trading one symbol only (the others are watched, not traded)."""

    name = "only_on"

    def __init__(self, symbol: str, **params: object) -> None:
        from bot.strategies.sma_cross import SmaCross

        self.symbol = symbol
        self.inner = SmaCross(**params)

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
        if symbol != self.symbol:
            return NO_INTENTS
        return self.inner.on_candle(symbol, ts_ms, open, high, low, close, volume, position)


class Scripted(BaseStrategy):
    """Acts at given candle open times (UTC ``HH:MM``), deciding only from the candle and the
    position it is shown, so two drivers that show it the same positions get the same intents.

    Steps: ``("long", stop_pct)`` a long entry of ``amount`` with a stop ``stop_pct`` % below the
    close; ``("short_close", 0)`` a *short market order* of the position's size (not
    reduce-only): the opposite order that closes it.
    """

    name = "scripted"

    def __init__(self, steps: dict[str, tuple[str, float]], amount: float = 0.01) -> None:
        self.steps = steps
        self.amount = amount

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
        import time

        step = self.steps.get(time.strftime("%H:%M", time.gmtime(ts_ms / 1000)))
        if step is None:
            return NO_INTENTS
        what, pct = step
        if what == "long":
            stop = close * (1 - pct / 100.0)
            return (OrderIntent(symbol, "long", self.amount, leverage=3.0, stop_price=stop),)
        if what == "short_close" and position is not None:
            return (OrderIntent(symbol, "short", position.amount, leverage=3.0),)
        return NO_INTENTS


class OpenThenOppose(BaseStrategy):
    """Opens a small long with a 2 % stop when flat, and ``hold`` candles later sends a *short*
    market order of the same amount (not reduce-only): the opposite order that closes it."""

    name = "open_then_oppose"

    def __init__(self, amount: float = 0.002, hold: int = 6) -> None:
        self.amount = amount
        self.hold = hold
        self.held = 0

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
        if position is None:
            self.held = 0
            return (
                OrderIntent(symbol, "long", self.amount, leverage=2.0, stop_price=close * 0.98),
            )
        self.held += 1
        if self.held < self.hold:
            return NO_INTENTS
        self.held = 0
        return (OrderIntent(symbol, "short", position.amount, leverage=2.0),)
