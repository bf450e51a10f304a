"""The venue layer: the venue-neutral order, and how one exchange expresses it.

``OrderSpec`` is what ``bot.trading.planning`` asks for (an entry, a stop or take-profit on the
mark price, a reduce-only exit); a venue turns one into the arguments of ccxt's unified
``create_order`` for its exchange and says how the bot's own conditional orders are looked up
and cancelled. Exchange-specific parameters live here and nowhere else.

- ``BinanceVenue`` (``binanceusdm``): a stop is ``stopLossPrice`` and a take-profit
  ``takeProfitPrice`` (ccxt sends both to ``POST /fapi/v1/algoOrder`` as ``algoType=CONDITIONAL``
  ``STOP_MARKET`` / ``TAKE_PROFIT_MARKET``) with ``workingType=MARK_PRICE``, and either
  ``closePosition=true`` (the whole position) or ``reduceOnly=true`` with a quantity; exits are
  ``reduceOnly`` market orders. Trigger orders are fetched and cancelled with ``trigger=True``.
- ``PaperVenue``: the paper exchange speaks Binance's parameters and also takes the round-trip
  labels ``reason`` and ``tag``, which its ledger books each close under.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

OrderSide = Literal["buy", "sell"]
SpecKind = Literal["entry", "stop", "take_profit", "exit"]
#: Round-trip labels of an exit (what the paper exchange books a close as).
ExitReason = Literal["strategy", "guard", "manual"]


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """One exchange order, venue-neutral (``bot.exchange.venue`` gives it its parameters)."""

    kind: SpecKind
    symbol: str
    side: OrderSide
    amount: float
    type: Literal["market", "limit"] = "market"
    #: Limit price (``type == "limit"``).
    price: float | None = None
    #: Trigger price of a stop or take-profit; triggers on the mark price.
    trigger: float | None = None
    reduce_only: bool = False
    #: Protects (or closes) the whole position whatever its size (stops and take-profits).
    close_position: bool = False
    #: Why an exit closes (labels the round trip): strategy, guard or manual.
    reason: ExitReason | None = None
    #: Free detail kept with the order (the rule or cause), e.g. ``no_overnight:session_flat``.
    tag: str = ""


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """The arguments of one ccxt ``create_order`` call (without the client order id)."""

    symbol: str
    type: str
    side: str
    amount: float
    price: float | None
    params: dict[str, Any]


class BinanceVenue:
    """Binance USDⓈ-M futures through ccxt ``binanceusdm`` (see the module docstring)."""

    id = "binanceusdm"

    def request(self, spec: OrderSpec) -> OrderRequest:
        params: dict[str, Any] = {}
        if spec.kind in ("stop", "take_profit"):
            key = "stopLossPrice" if spec.kind == "stop" else "takeProfitPrice"
            params[key] = spec.trigger
            params["workingType"] = "MARK_PRICE"
        if spec.close_position:
            params["closePosition"] = True
        elif spec.reduce_only:
            params["reduceOnly"] = True
        return OrderRequest(spec.symbol, spec.type, spec.side, spec.amount, spec.price, params)

    def trigger_params(self) -> dict[str, Any]:
        """Parameters that address the trigger (conditional) order book in fetch / cancel."""
        return {"trigger": True}


class PaperVenue(BinanceVenue):
    """guardbot's paper exchange: Binance's parameters plus its round-trip labels."""

    id = "paper"

    def request(self, spec: OrderSpec) -> OrderRequest:
        req = super().request(spec)
        if spec.reason is not None:
            req.params["reason"] = spec.reason
        if spec.tag:
            req.params["tag"] = spec.tag
        return req


def venue_for(exchange_id: str) -> BinanceVenue:
    """The venue of a ccxt exchange id (``paper`` for the paper exchange)."""
    if exchange_id == "paper":
        return PaperVenue()
    return BinanceVenue()
