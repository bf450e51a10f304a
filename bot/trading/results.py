"""What the senders report: one ``ExecResult`` per executed plan, the ``ReconcileReport`` of a
start-up reconcile, and the one log line of a sweep action (``log_action``).

Shared by the async ``Executor`` and the replay ``Router`` so a result reads the same whichever
sent the orders. ``OrderStore`` is the part of the state store the executor writes to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from guards import Action, Position

ExecStatus = Literal[
    "filled",
    "partial",
    "open",
    "not_filled",
    "closed",
    "reduced",
    "stop_placed",
    "closed_unprotected",
    "noop",
    "refused",
    "failed",
    "unknown",
]


class OrderStore(Protocol):
    """What the executor needs from the state store (``bot.state.store.Store``; sync or async)."""

    def order_intent(
        self,
        client_id: str,
        symbol: str,
        side: str,
        type: str,
        amount: float,
        price: float | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> object: ...

    def order_ack(self, client_id: str, order: Mapping[str, Any]) -> object: ...


@dataclass(frozen=True, slots=True)
class ExecResult:
    """What one executed plan did."""

    status: ExecStatus
    symbol: str
    client_id: str = ""
    filled: float = 0.0
    average: float | None = None
    entry: Mapping[str, Any] | None = None
    stop: Mapping[str, Any] | None = None
    take_profit: Mapping[str, Any] | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status not in ("refused", "failed", "closed_unprotected")

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "symbol": self.symbol,
            "client_id": self.client_id,
            "filled": self.filled,
            "average": self.average,
            "entry_id": None if self.entry is None else self.entry.get("id"),
            "stop_id": None if self.stop is None else self.stop.get("id"),
            "take_profit_id": None if self.take_profit is None else self.take_profit.get("id"),
            "reason": self.reason,
        }


@dataclass
class ReconcileReport:
    """What ``Executor.reconcile`` found on the exchange and what it did about it."""

    positions: dict[str, Position] = field(default_factory=dict)
    adopted: list[str] = field(default_factory=list)
    unprotected: list[str] = field(default_factory=list)
    stops_placed: dict[str, float] = field(default_factory=dict)
    closed: list[str] = field(default_factory=list)
    open_orders: int = 0
    actions: list[Action] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "positions": sorted(self.positions),
            "adopted": self.adopted,
            "unprotected": self.unprotected,
            "stops_placed": self.stops_placed,
            "closed": self.closed,
            "open_orders": self.open_orders,
            "actions": [f"{a.kind}:{a.symbol}:{a.rule}:{a.code}" for a in self.actions],
            "errors": self.errors,
        }


def describe_result(result: ExecResult | None) -> str:
    """A one-line outcome of an executed plan for logs and the store ("noted" for a notice)."""
    if result is None:
        return "noted"
    text = result.status if not result.reason else f"{result.status}: {result.reason}"
    return text if result.ok else f"failed: {text}"


def log_action(log: Any, action: Action, result: str) -> None:
    """The one ``guard_action`` event of a sweep action, with what came of it."""
    level = log.warning if action.kind in ("close", "reduce", "halt") else log.info
    level(
        "guard_action",
        kind=action.kind,
        symbol=action.symbol,
        rule=action.rule,
        code=action.code,
        reason=action.reason,
        result=result,
        figures=dict(action.figures),
    )
