"""The store's vocabulary: order statuses and their lifecycle, the row types readers get back,
``StoreError``, and the JSON helpers every table uses.

JSON columns are written with Python's ``json`` (non-finite floats as ``Infinity``/``NaN``, which
``json.loads`` reads back), so figures and guard state round-trip exactly; ``json_safe`` turns a
value into strict JSON for readers that need it (history, the status page).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, cast

from guards import Action, Decision, OrderIntent

OrderStatus = Literal[
    "intent", "sent", "acked", "open", "filled", "canceled", "rejected", "unknown"
]
#: Lifecycle rank: a status only moves to a higher rank (``sent`` <-> ``unknown`` share one);
#: terminal statuses (rank 4) never change again.
STATUS_RANK: Mapping[OrderStatus, int] = {
    "intent": 0,
    "sent": 1,
    "unknown": 1,
    "acked": 2,
    "open": 3,
    "filled": 4,
    "canceled": 4,
    "rejected": 4,
}
IN_FLIGHT: tuple[OrderStatus, ...] = ("intent", "sent", "unknown")
TERMINAL: tuple[OrderStatus, ...] = ("filled", "canceled", "rejected")
#: ccxt unified order status -> ours (anything else leaves the status as it is).
CCXT_STATUS: Mapping[str, OrderStatus] = {
    "open": "open",
    "closed": "filled",
    "canceled": "canceled",
    "cancelled": "canceled",
    "expired": "canceled",
    "rejected": "rejected",
}


def json_safe(value: Any) -> Any:
    """A copy strict JSON can hold (non-finite floats become ``"inf"``/``"-inf"``/``"nan"``).

    The store keeps such figures as Python JSON so they round-trip; what it hands to a reader
    that speaks strict JSON (history, the status page) goes through this first.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


class StoreError(Exception):
    """The state store cannot do what was asked (newer schema, client id reuse, bad row...)."""


# -- rows -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OrderRow:
    """One order the bot placed (or meant to place), as last recorded."""

    client_id: str
    exchange_id: str | None
    symbol: str
    side: str
    type: str
    amount: float
    price: float | None
    stop_price: float | None
    reduce_only: bool
    params: dict[str, Any]
    status: OrderStatus
    filled: float
    average: float | None
    note: str
    #: The exchange's last word on it: the ccxt unified order structure.
    order: dict[str, Any] | None
    intent_at: float
    acked_at: float | None
    updated_at: float
    decision_id: int | None

    @property
    def in_flight(self) -> bool:
        """Sent or about to be, with no answer recorded: look it up on the exchange."""
        return self.status in IN_FLIGHT

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True, slots=True)
class FillRow:
    """One execution (a ccxt trade): what ``recent_trades`` returns."""

    id: int
    client_id: str | None
    order_id: str | None
    trade_id: str
    symbol: str
    side: str
    amount: float
    price: float
    fee: float
    fee_currency: str | None
    ts: float
    info: dict[str, Any] | None
    #: Who sent the order and why (``bot.state.trips.ROLES``); None for fills recorded before.
    role: str | None = None
    #: The exchange's realised PnL of the fill (gross, before fees); None when not reported.
    realized_pnl: float | None = None


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """A recorded guard decision, rebuilt as the ``Decision`` it was (verdicts and figures)."""

    id: int
    ts: float
    run_id: str
    decision: Decision


@dataclass(frozen=True, slots=True)
class ActionRow:
    """A recorded sweep action and what came of it."""

    id: int
    ts: float
    run_id: str
    action: Action
    executed: bool
    result: str


@dataclass(frozen=True, slots=True)
class EquityRow:
    ts: float
    equity: float
    wallet: float | None
    free_margin: float | None
    upnl: float | None
    run_id: str


@dataclass(frozen=True, slots=True)
class RunRow:
    run_id: str
    started_at: float
    ended_at: float | None
    mode: str
    status: str
    config: dict[str, Any]


# -- schema ---------------------------------------------------------------------------------
def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _loads_obj(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    value = json.loads(text)
    if not isinstance(value, dict):
        raise StoreError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _opt_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _order_status(order: Mapping[str, Any]) -> OrderStatus | None:
    status = order.get("status")
    return CCXT_STATUS.get(status) if isinstance(status, str) else None


def advance_status(old: OrderStatus, new: OrderStatus | None) -> OrderStatus:
    """The status after ``new`` is reported for an order at ``old`` (never backwards)."""
    if new is None or old in TERMINAL:
        return old
    return new if STATUS_RANK[new] >= STATUS_RANK[old] else old


_INTENT_FIELDS = frozenset(f.name for f in fields(OrderIntent))


def _order_from(r: sqlite3.Row) -> OrderRow:
    return OrderRow(
        client_id=r["client_id"],
        exchange_id=r["exchange_id"],
        symbol=r["symbol"],
        side=r["side"],
        type=r["type"],
        amount=r["amount"],
        price=r["price"],
        stop_price=r["stop_price"],
        reduce_only=bool(r["reduce_only"]),
        params=_loads_obj(r["params_json"]) or {},
        status=cast(OrderStatus, r["status"]),
        filled=r["filled"],
        average=r["average"],
        note=r["note"],
        order=_loads_obj(r["order_json"]),
        intent_at=r["intent_at"],
        acked_at=r["acked_at"],
        updated_at=r["updated_at"],
        decision_id=r["decision_id"],
    )


def _fill_from(r: sqlite3.Row) -> FillRow:
    return FillRow(
        id=int(r["id"]),
        client_id=r["client_id"],
        order_id=r["order_id"],
        trade_id=r["trade_id"],
        symbol=r["symbol"],
        side=r["side"],
        amount=r["amount"],
        price=r["price"],
        fee=r["fee"],
        fee_currency=r["fee_currency"],
        ts=r["ts"],
        info=_loads_obj(r["info_json"]),
        role=r["role"],
        realized_pnl=r["realized_pnl"],
    )
