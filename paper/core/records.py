"""Records of the paper core: what its history holds, and what its books hold.

Public (history, JSON-safe through ``to_dict``): ``Trade``, one closed (part of a) round trip,
and ``LiquidationEvent``, one action of the exchange's liquidation engine. Internal:
``OrderRecord`` and ``PositionRecord``, the mutable slotted records a symbol's book keeps, plus
the order-type names, ccxt's ``iso8601`` and the step-grid ``snap``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from guards.types import MarginMode, Side

#: Funding every 8 h (00:00, 08:00, 16:00 UTC).
FUNDING_PERIOD_MS: Final = 8 * 3_600_000
LIMIT: Final = "limit"
MARKET: Final = "market"
STOP: Final = "stop_market"
TAKE: Final = "take_profit_market"
INF: Final = math.inf
#: Slack of money and amount comparisons (floats on the hot path).
EPS: Final = 1e-9

OrderStatus = Literal["open", "closed", "canceled", "rejected"]


def iso8601(ts_ms: int | None) -> str | None:
    """ccxt's datetime string for an epoch-ms timestamp."""
    if ts_ms is None:
        return None
    dt = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


def next_funding_time(ts_ms: int) -> int:
    """First funding time (00:00 / 08:00 / 16:00 UTC) strictly after ``ts_ms``."""
    return (ts_ms // FUNDING_PERIOD_MS + 1) * FUNDING_PERIOD_MS


def snap(amount: float, step: float) -> float:
    """``amount`` on the step grid (undoes float drift of sums and differences)."""
    return round(amount / step) * step


def default_reason(kind: str) -> str:
    """The ``reason`` of an order placed without one: by its type."""
    if kind == STOP:
        return "stop"
    if kind == TAKE:
        return "take_profit"
    return "strategy"


@dataclass(frozen=True, slots=True)
class Trade:
    """A closed (part of a) round trip: one closing fill against the position's entry."""

    symbol: str
    side: Side
    entry_price: float
    exit_price: float
    amount: float
    #: Gross price PnL ``s * amount * (exit - entry)``.
    pnl: float
    #: Entry fees (pro rata) + the closing fee (+ the liquidation fee of a partial liquidation).
    fees: float
    #: Funding received (negative when paid) while open, pro rata.
    funding: float
    opened_at: int
    closed_at: int
    reason: str
    tag: str = ""

    @property
    def net(self) -> float:
        return self.pnl - self.fees + self.funding

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class LiquidationEvent:
    """What the exchange's liquidation engine did to one position at one price."""

    symbol: str
    ts: int
    side: Side
    amount: float
    #: Mark price that triggered it.
    mark: float
    #: Execution price: the bankruptcy price (whole) or the mark (partial).
    price: float
    #: Margin the position lost to it (includes ``fee``).
    margin_lost: float
    #: Liquidation fee (insurance-fund share), part of ``margin_lost``.
    fee: float
    #: Margin balance at the trigger.
    margin_balance: float
    partial: bool
    margin_mode: MarginMode
    profile: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class OrderRecord:
    """One order as the core keeps it (open ones also sit in their book's ``orders``)."""

    __slots__ = (
        "amount",
        "armed_seq",
        "average",
        "client_id",
        "close_position",
        "fee",
        "filled",
        "id",
        "last_trade_ts",
        "on_mark",
        "price",
        "reason",
        "reduce_only",
        "reserved",
        "seq",
        "side",
        "sign",
        "status",
        "symbol",
        "tag",
        "timestamp",
        "trigger",
        "type",
    )

    def __init__(
        self,
        seq: int,
        client_id: str,
        symbol: str,
        type_: str,
        side: str,
        amount: float,
        price: float | None,
        trigger: float | None,
        on_mark: bool,
        reduce_only: bool,
        close_position: bool,
        reason: str,
        tag: str,
        timestamp: int,
    ) -> None:
        self.seq = seq
        self.id = str(seq)
        self.client_id = client_id
        self.symbol = symbol
        self.type = type_
        self.side = side
        self.sign = 1 if side == "buy" else -1
        self.amount = amount
        self.price = price
        self.trigger = trigger
        self.on_mark = on_mark
        self.reduce_only = reduce_only
        self.close_position = close_position
        self.reason = reason
        self.tag = tag
        self.timestamp = timestamp
        self.status: OrderStatus = "open"
        self.filled = 0.0
        self.average: float | None = None
        self.fee = 0.0
        #: Margin reserved for a resting limit entry (released when it fills or is cancelled).
        self.reserved = 0.0
        #: The book's price counter when the order was armed (a gap fills on the next price).
        self.armed_seq = 0
        self.last_trade_ts: int | None = None

    @property
    def reducing(self) -> bool:
        return self.reduce_only or self.close_position


class PositionRecord:
    """The open position of one symbol (one-way mode)."""

    __slots__ = (
        "adds",
        "amount",
        "entry",
        "entry_fees",
        "funding",
        "leverage",
        "liq",
        "margin",
        "margin_mode",
        "opened_at",
        "sign",
        "tag",
    )

    def __init__(
        self,
        sign: int,
        amount: float,
        entry: float,
        margin_mode: MarginMode,
        leverage: float,
        margin: float,
        opened_at: int,
        entry_fees: float,
        tag: str,
    ) -> None:
        self.sign = sign
        self.amount = amount
        self.entry = entry
        self.margin_mode: MarginMode = margin_mode
        self.leverage = leverage
        #: Isolated margin (notional / leverage per fill, plus add_margin, minus funding paid).
        self.margin = margin
        self.opened_at = opened_at
        #: Entry fees not yet booked to a trade.
        self.entry_fees = entry_fees
        #: Funding not yet booked to a trade (received positive).
        self.funding = 0.0
        self.adds = 0
        self.tag = tag
        #: The liquidation engine's trigger price (None: never liquidated).
        self.liq: float | None = None

    @property
    def side(self) -> Side:
        return "long" if self.sign > 0 else "short"
