"""The strategy protocol: what the engine calls, and what a strategy hands back.

A strategy sees each closed candle (``on_candle``) and optionally each price update inside a
candle (``on_tick``) and answers with ``OrderIntent``s. It never sends orders: every intent goes
through the guard engine first, which may resize or refuse it. An opening intent carries its
``stop_price`` (and optionally ``take_profit``); an exit is ``reduce_only`` with the side and
amount of the position it closes. Intents returned at a candle close execute at the next price
the driver sees (the next candle's open in a replay).

Nothing to do is answered with ``NO_INTENTS``, a shared empty tuple, so the hot path allocates
nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from guards import OrderIntent, Position, Side

#: The shared answer for "nothing to do".
NO_INTENTS: tuple[OrderIntent, ...] = ()


@runtime_checkable
class Strategy(Protocol):
    """What the engine needs from a strategy."""

    name: str

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
        """Called once per closed candle (``ts_ms`` is its open time); returns intents."""
        ...

    def on_tick(
        self, symbol: str, ts_ms: int, price: float, position: Position | None
    ) -> Sequence[OrderIntent]:
        """Called on price updates between candle closes; returns intents."""
        ...


class BaseStrategy:
    """Convenience base: both callbacks do nothing; override what the strategy needs."""

    name: str = "base"

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
        return NO_INTENTS

    def on_tick(
        self, symbol: str, ts_ms: int, price: float, position: Position | None
    ) -> Sequence[OrderIntent]:
        return NO_INTENTS


def exit_intent(position: Position, tag: str) -> OrderIntent:
    """A market order closing the whole ``position`` (reduce-only, same side and amount)."""
    return OrderIntent(
        symbol=position.symbol,
        side=position.side,
        amount=position.amount,
        reduce_only=True,
        margin_mode=position.margin_mode,
        leverage=position.leverage,
        tag=tag,
    )


class EntryParams(BaseModel):
    """Sizing and protection shared by the built-in strategies (``strategy.params``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    atr_period: int = Field(14, ge=1, le=1000, description="ATR period (Wilder), in candles")
    atr_mult: float = Field(2.0, gt=0, le=50, description="stop distance from entry, in ATRs")
    stop_pct: float | None = Field(
        None,
        gt=0,
        lt=100,
        description="fixed stop distance, % of the signal close (replaces the ATR stop when set)",
    )
    take_profit_rr: float | None = Field(
        None, gt=0, le=50, description="take-profit at this many stop distances (none: no TP)"
    )
    notional: float = Field(1000.0, gt=0, description="entry size in quote currency (USDT)")
    amount: float | None = Field(
        None, gt=0, description="entry size in base units; overrides notional when set"
    )
    leverage: float = Field(3.0, ge=1, le=125, description="leverage asked for on entries")
    margin_mode: Literal["isolated", "cross"] = Field("isolated", description="margin mode")
    allow_short: bool = Field(True, description="take short entries too (else long only)")


def entry_intent(
    symbol: str, side: Side, close: float, atr: float, params: EntryParams, tag: str
) -> OrderIntent:
    """A market entry at about ``close`` with an ATR (or fixed %) stop and an optional take-profit.

    Stop: ``close ∓ atr_mult × atr`` (below for a long, above for a short), or, when
    ``stop_pct`` is set, ``close ∓ close × stop_pct / 100`` (``atr`` is then unused). Take-profit
    (when ``take_profit_rr`` is set): ``take_profit_rr`` times the stop distance on the winning
    side. Size: ``amount`` base units, or ``notional / close``. The guard layer may still resize.
    """
    sign = 1.0 if side == "long" else -1.0
    pct = params.stop_pct
    distance = close * pct / 100.0 if pct is not None else params.atr_mult * atr
    rr = params.take_profit_rr
    return OrderIntent(
        symbol=symbol,
        side=side,
        amount=params.amount if params.amount is not None else params.notional / close,
        leverage=params.leverage,
        margin_mode=params.margin_mode,
        stop_price=close - sign * distance,
        take_profit=close + sign * rr * distance if rr is not None else None,
        tag=tag,
    )
