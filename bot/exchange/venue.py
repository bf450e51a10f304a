"""The venue layer's face: the venue-neutral order, and how each exchange expresses it.

``OrderSpec`` is what ``bot.trading.planning`` asks for (an entry, a stop or take-profit on the
mark price, a reduce-only exit), in base units; a ``Venue`` turns one into the arguments of
ccxt's unified ``create_order`` for its exchange and says how the bot's own conditional orders
are listed, looked up and cancelled, how amounts convert to contracts, how a symbol and the
account are set up, what its demo mode is and what its refusals mean. Exchange-specific
parameters live in ``bot.exchange.venues`` and nowhere else:

- ``BinanceVenue`` (``binanceusdm``): ``stopLossPrice`` / ``takeProfitPrice`` with
  ``workingType=MARK_PRICE`` and ``closePosition`` or ``reduceOnly``; trigger orders fetched
  and cancelled with ``trigger=True`` (``bot.exchange.venues.binance``);
- ``BybitVenue`` (``bybit``): ``triggerBy=MarkPrice``, ``positionIdx=0``, ``closeOnTrigger``;
  ``orderFilter=StopOrder`` listings (``bot.exchange.venues.bybit``);
- ``OkxVenue`` (``okx``): contracts, ``tdMode``, ``posSide=net``, ``slTriggerPxType=mark``,
  ``closeFraction=1``, ``algoClOrdId``; ``ordType=conditional,oco`` listings
  (``bot.exchange.venues.okx``);
- ``PaperVenue``: Binance's parameters plus the paper exchange's round-trip labels.
"""

from __future__ import annotations

from bot.exchange.venues import (
    BinanceVenue,
    BybitVenue,
    ErrorKind,
    ExitReason,
    OkxVenue,
    OrderRequest,
    OrderSide,
    OrderSpec,
    PaperVenue,
    SetupCall,
    SpecKind,
    Venue,
)

#: The venue of each ccxt exchange id guardbot knows (any other id gets Binance's).
VENUES: dict[str, type[Venue]] = {
    "paper": PaperVenue,
    "binanceusdm": BinanceVenue,
    "bybit": BybitVenue,
    "okx": OkxVenue,
}


def venue_for(exchange_id: str) -> Venue:
    """The venue of a ccxt exchange id (``paper`` for the paper exchange).

    Bybit and OKX get their own; any other id gets Binance's parameters, as before.
    """
    return VENUES.get(exchange_id, BinanceVenue)()


__all__ = [
    "VENUES",
    "BinanceVenue",
    "BybitVenue",
    "ErrorKind",
    "ExitReason",
    "OkxVenue",
    "OrderRequest",
    "OrderSide",
    "OrderSpec",
    "PaperVenue",
    "SetupCall",
    "SpecKind",
    "Venue",
    "venue_for",
]
