"""The venue layer by exchange: ``base`` (the venue-neutral ``OrderSpec``, a ccxt
``OrderRequest``, ``SetupCall`` and the ``Venue`` interface with Binance's behaviour),
``binance`` (``BinanceVenue``, ``PaperVenue``), ``bybit`` (``BybitVenue``) and ``okx``
(``OkxVenue``). ``bot.exchange.venue`` is the face the rest of the bot imports.
"""

from bot.exchange.venues.base import (
    ErrorKind,
    ExitReason,
    MarginModeName,
    OrderRequest,
    OrderSide,
    OrderSpec,
    SetupCall,
    SpecKind,
    Venue,
    contract_size,
)
from bot.exchange.venues.binance import BinanceVenue, PaperVenue
from bot.exchange.venues.bybit import BybitVenue
from bot.exchange.venues.okx import OkxVenue

__all__ = [
    "BinanceVenue",
    "BybitVenue",
    "ErrorKind",
    "ExitReason",
    "MarginModeName",
    "OkxVenue",
    "OrderRequest",
    "OrderSide",
    "OrderSpec",
    "PaperVenue",
    "SetupCall",
    "SpecKind",
    "Venue",
    "contract_size",
]
