"""Records of the paper core: what its history holds, and what its books hold.

Public (frozen, JSON-safe through ``to_dict``): ``Fill``, one execution as the exchange reports
it (``to_ccxt()``: ccxt's unified trade); ``FundingPayment``, one funding charge (``to_ccxt()``:
ccxt's funding-history entry); ``Trade``, one closed (part of a) round trip; and
``LiquidationEvent``, one action of the exchange's liquidation engine. ``CoreEvent`` is any of
them: what ``PaperCore.on_price`` returns. Internal: ``OrderRecord`` and ``PositionRecord``, the
mutable slotted records a symbol's book keeps, plus the order-type names, ccxt's ``iso8601``
and the step-grid ``snap``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal, TypeAlias

from guards import MarginMode, Side

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
OrderSide = Literal["buy", "sell"]
TakerOrMaker = Literal["taker", "maker"]
#: Order ids and client order ids of the liquidation engine's own orders start with these
#: (Binance marks its liquidation orders' client ids ``autoclose-``).
LIQUIDATION_ORDER_PREFIX: Final = "liquidation-"
LIQUIDATION_CLIENT_PREFIX: Final = "autoclose-"


def iso8601(ts_ms: int | None) -> str | None:
    """ccxt's datetime string for an epoch-ms timestamp."""
    if ts_ms is None:
        return None
    seconds, ms = divmod(ts_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


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
    #: Liquidation fee (insurance-fund share), part of ``margin_lost``: debited from the wallet
    #: (and counted in ``total_fees``) for a partial liquidation; for a whole one, what the
    #: position still had at the trigger, taken with the margin rather than on top of it.
    fee: float
    #: Margin balance at the trigger.
    margin_balance: float
    partial: bool
    margin_mode: MarginMode
    profile: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution on the account, as the exchange reports it (Binance's user trade).

    A fill is one order's execution at one price; a flip (closing a position and opening the
    other side) is one fill. ``fee`` is what the wallet was debited for it: the trading fee,
    or for a partial liquidation the liquidation fee. A whole liquidation closes at the
    bankruptcy price with ``fee`` 0: its liquidation fee is part of the margin lost (see
    ``LiquidationEvent``), not a debit on top.
    """

    #: Trade id: 1, 2, ... in execution order, per core.
    id: int
    order_id: str
    client_order_id: str | None
    symbol: str
    side: OrderSide
    amount: float
    price: float
    fee: float
    fee_currency: str
    #: Gross price PnL of the reducing part (Binance's ``realizedPnl``); 0 for an opening fill.
    realized_pnl: float
    timestamp: int
    #: The order's ``reason`` (``"liquidation"`` for the engine's own orders) and ``tag``.
    reason: str
    tag: str
    taker_or_maker: TakerOrMaker
    reduce_only: bool
    #: The position this fill reduced is gone after it (flat, or flipped to the other side).
    closed: bool

    @property
    def cost(self) -> float:
        return self.amount * self.price

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_ccxt(self) -> dict[str, Any]:
        """ccxt's unified trade structure; ``info`` is shaped like Binance's ``userTrades``."""
        fee = {"cost": self.fee, "currency": self.fee_currency}
        cost = self.amount * self.price
        return {
            "info": {
                "id": self.id,
                "orderId": self.order_id,
                "clientOrderId": self.client_order_id,
                "side": self.side.upper(),
                "price": self.price,
                "qty": self.amount,
                "quoteQty": cost,
                "realizedPnl": self.realized_pnl,
                "commission": self.fee,
                "commissionAsset": self.fee_currency,
                "time": self.timestamp,
                "positionSide": "BOTH",
                "buyer": self.side == "buy",
                "maker": self.taker_or_maker == "maker",
                "reduceOnly": self.reduce_only,
                "reason": self.reason,
                "tag": self.tag,
                "closed": self.closed,
            },
            "id": str(self.id),
            "order": self.order_id,
            "timestamp": self.timestamp,
            "datetime": iso8601(self.timestamp),
            "symbol": self.symbol,
            "type": None,
            "side": self.side,
            "takerOrMaker": self.taker_or_maker,
            "price": self.price,
            "amount": self.amount,
            "cost": cost,
            "fee": fee,
            "fees": [fee],
        }


@dataclass(frozen=True, slots=True)
class FundingPayment:
    """One funding charge on one position."""

    #: 1, 2, ... per core.
    id: int
    symbol: str
    #: The funding time it settles (or the time of a charge made by hand).
    timestamp: int
    rate: float
    #: The mark it was charged at.
    price: float
    #: Signed position amount (positive long).
    position: float
    #: Cash flow to the account: negative when paid (longs pay a positive rate).
    amount: float
    currency: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_ccxt(self) -> dict[str, Any]:
        """ccxt's funding-history entry (``fetch_funding_history``)."""
        return {
            "info": {
                "symbol": self.symbol,
                "incomeType": "FUNDING_FEE",
                "income": self.amount,
                "asset": self.currency,
                "time": self.timestamp,
                "tranId": self.id,
                "fundingRate": self.rate,
                "markPrice": self.price,
                "positionAmt": self.position,
            },
            "symbol": self.symbol,
            "code": self.currency,
            "timestamp": self.timestamp,
            "datetime": iso8601(self.timestamp),
            "id": str(self.id),
            "amount": self.amount,
        }


#: What one price point can cause, in the order it happened.
CoreEvent: TypeAlias = Fill | Trade | FundingPayment | LiquidationEvent


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
