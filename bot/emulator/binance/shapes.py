"""Binance USDⓈ-M shapes the emulator writes: numbers as decimal strings, errors by code.

Helpers every Binance endpoint uses (``_s`` writes a number as Binance does), the limits Binance
checks requests against, and ``_api_error``: the Binance error a paper-core refusal corresponds
to (code and message as the real exchange sends them).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from ccxt.base.errors import (
    BadSymbol,
    BaseError,
    DuplicateOrderId,
    InsufficientFunds,
    InvalidOrder,
    NotSupported,
    OperationRejected,
    OrderImmediatelyFillable,
    OrderNotFound,
)

from bot.emulator.server import ApiError

RECV_WINDOW_DEFAULT_MS: Final = 5_000

RECV_WINDOW_MAX_MS: Final = 60_000

FUTURE_TOLERANCE_MS: Final = 1_000

CLIENT_ID_RE: Final = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")

_SIGNATURE_RE: Final = re.compile(r"(^|&)signature=[^&]*")

_ALGO_TYPES: Final = frozenset(
    {"STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"}
)

_PENDING_BASE: Final = 900_000_000

#: Order ids of the matching engine's own orders: triggered stops, liquidations, ADL.
_ENGINE_BASE: Final = 800_000_000

_EPS: Final = 1e-9


@dataclass
class _Pending:
    """A MARKET order acknowledged as NEW that fills after a number of queries."""

    ext_id: str
    client_id: str
    symbol: str
    side: str
    qty: float
    params: dict[str, Any]
    polls: int
    time_ms: int


@dataclass
class _EngineOrder:
    """An order the exchange itself placed in its matching engine, filled at once.

    ``kind``: ``triggered`` (a conditional algo order reached its trigger: the order it placed,
    with the algo order's client id), ``liquidation`` (client id ``autoclose-...``) or ``adl``
    (client id ``adl_autoclose``).
    """

    ext_id: str
    kind: str
    symbol: str
    client_id: str
    side: str
    type: str
    orig_type: str
    time_in_force: str
    qty: float
    price: float
    avg: float
    time_ms: int
    fill_id: int
    stop_price: float = 0.0
    working_type: str = "CONTRACT_PRICE"
    close_position: bool = False
    reduce_only: bool = True
    #: The algo order (external id) that placed a ``triggered`` order.
    algo_ext: str | None = None


def _s(x: float | int | None) -> str:
    """A number as Binance writes it: a plain decimal string ("0" for None)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "0"
    text = format(Decimal(repr(float(x))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def _decimals(step: float) -> int:
    text = _s(step)
    return len(text.split(".")[1]) if "." in text else 0


def _bool(value: str | None) -> bool:
    return value is not None and value.lower() == "true"


def _missing(name: str) -> str:
    return f"Mandatory parameter '{name}' was not sent, was empty/null."


def _on_grid(value: float, step: float) -> bool:
    n = value / step
    return abs(n - round(n)) < 1e-6


def _api_error(exc: BaseError) -> ApiError:
    """The Binance error a paper-core refusal corresponds to."""
    text = str(exc).removeprefix("paper ")
    if isinstance(exc, DuplicateOrderId):
        return ApiError(-4116, "ClientOrderId is duplicated.")
    if isinstance(exc, InsufficientFunds):
        return ApiError(-2019, "Margin is insufficient.")
    if isinstance(exc, OrderImmediatelyFillable):
        return ApiError(-2021, "Order would immediately trigger.")
    if isinstance(exc, OrderNotFound):
        return ApiError(-2013, "Order does not exist.")
    if isinstance(exc, BadSymbol):
        return ApiError(-1121, "Invalid symbol.")
    if isinstance(exc, NotSupported):
        return ApiError(-1116, "Invalid orderType.")
    if isinstance(exc, InvalidOrder):
        if "notional" in text:
            return ApiError(-4164, text)
        if "ReduceOnly" in text:
            return ApiError(-2022, "ReduceOnly Order is rejected.")
        if "maximum allowable position" in text:
            return ApiError(-2027, "Exceeded the maximum allowable position at current leverage.")
        if "post-only" in text:
            return ApiError(
                -5022,
                "Due to the order could not be executed as maker, "
                "the Post Only order will be rejected.",
            )
        return ApiError(-2010, text)
    if isinstance(exc, OperationRejected):
        return ApiError(-4048, text)
    return ApiError(-1000, text)
