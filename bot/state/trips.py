"""Fills and what they add up to: each fill's role, and round trips derived from the fills.

**Roles.** Every recorded fill says who sent its order and why:

- the bot's own orders, from the order the store recorded before sending it (its kind, exit
  reason and tag): ``entry``, ``stop``, ``take_profit``, ``guard_close`` / ``guard_reduce`` (a
  guard sweep, a seatbelt cut, a position closed because its stop was refused),
  ``strategy_exit``, ``flatten`` (the no-overnight flatten) and ``halt`` (the kill switch, or a
  shutdown with ``shutdown.flatten``);
- the exchange's own closes, as the venue marks them (``Venue.fill_origin``): ``liquidation``
  and ``adl`` (auto-deleverage);
- anything else is ``manual``: an order nobody on record sent (by hand, another tool).

**Round trips.** ``Lots`` follows one symbol's position fill by fill: opening fills grow it (the
average entry price, their fees kept), a reducing fill closes part of it as a ``RoundTrip``
whose gross PnL is the exchange's realised PnL when it reported one (else the price difference),
whose fees are the closing fee plus the entry fees pro rata, and whose reason is the closing
fill's (``close_reason``). A fill beyond the position flips it: the round trip closes the whole
position and the rest opens the other side. ``round_trips(fills)`` is the history of one account.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Role = Literal[
    "entry",
    "stop",
    "take_profit",
    "guard_close",
    "guard_reduce",
    "strategy_exit",
    "flatten",
    "halt",
    "manual",
    "liquidation",
    "adl",
]
ROLES: tuple[Role, ...] = (
    "entry",
    "stop",
    "take_profit",
    "guard_close",
    "guard_reduce",
    "strategy_exit",
    "flatten",
    "halt",
    "manual",
    "liquidation",
    "adl",
)
#: Why a round trip ended, as the guards count it (``guards.CloseReason`` plus ``adl``).
CloseKind = Literal["stop", "guard", "liquidation", "take_profit", "strategy", "manual", "adl"]
_CLOSE: Mapping[str, CloseKind] = {
    "stop": "stop",
    "take_profit": "take_profit",
    "guard_close": "guard",
    "guard_reduce": "guard",
    "flatten": "guard",
    "strategy_exit": "strategy",
    "entry": "strategy",
    "halt": "manual",
    "manual": "manual",
    "liquidation": "liquidation",
    "adl": "adl",
}
_EPS = 1e-9
#: Tags of the bot's exits that are not the guards' own sweep.
_HALT_TAGS = ("kill_switch", "shutdown:flatten")
_FLATTEN_TAG = "no_overnight:flatten"


def order_role(params: Mapping[str, Any], client_id: str = "") -> Role:
    """The role of the bot's own order from what the store recorded before sending it
    (``params``: its ``role`` = the order kind, ``reason`` and ``tag``)."""
    kind = params.get("role")
    if kind == "entry":
        return "entry"
    if kind == "stop":
        return "stop"
    if kind == "take_profit":
        return "take_profit"
    tag = str(params.get("tag") or "")
    if tag in _HALT_TAGS:
        return "halt"
    if tag == _FLATTEN_TAG:
        return "flatten"
    if params.get("reason") == "strategy":
        return "strategy_exit"
    if params.get("reason") == "manual":
        return "halt"
    # a guard exit: a whole close carries the role letter "c", a reduce "r" (planning)
    return "guard_reduce" if client_id[2:3] == "r" else "guard_close"


def close_reason(role: str | None) -> CloseKind:
    """How the guards count a round trip closed by a fill of ``role``."""
    return _CLOSE.get(role or "manual", "manual")


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution as ``Lots`` needs it (a ``FillRow`` fits)."""

    symbol: str
    side: str
    amount: float
    price: float
    fee: float
    ts: float
    role: str | None = None
    realized_pnl: float | None = None


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """A closed (part of a) position."""

    symbol: str
    side: Literal["long", "short"]
    amount: float
    entry_price: float
    exit_price: float
    opened_at: float
    closed_at: float
    #: Gross PnL: the exchange's realised PnL when reported, else the price difference.
    pnl: float
    #: The closing fee plus the entry fees pro rata.
    fees: float
    #: The closing fill's role and how the guards count it.
    role: str
    reason: CloseKind
    #: The position is flat (or flipped) after it: a close, not a reduction.
    closed: bool

    @property
    def net(self) -> float:
        return self.pnl - self.fees

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "side": self.side,
            "amount": self.amount,
            "entry_price": self.entry_price,
            "exit_price": self.exit_price,
            "opened_at": self.opened_at,
            "closed_at": self.closed_at,
            "pnl": self.pnl,
            "fees": self.fees,
            "net": self.net,
            "role": self.role,
            "reason": self.reason,
            "closed": self.closed,
        }


class Lots:
    """One symbol's position as its fills built it (see the module docstring)."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        #: Signed size: > 0 long, < 0 short.
        self.size = 0.0
        self.entry = 0.0
        self.fees = 0.0
        self.opened_at = 0.0

    def reset(self, size: float, entry: float, ts: float) -> None:
        """Take the position as the exchange has it (history before the record unknown)."""
        self.size, self.entry, self.fees, self.opened_at = size, entry, 0.0, ts

    def apply(self, fill: Fill) -> RoundTrip | None:
        signed = fill.amount if fill.side == "buy" else -fill.amount
        if abs(self.size) <= _EPS or self.size * signed > 0:  # opening or growing
            total = abs(self.size) + fill.amount
            if abs(self.size) <= _EPS:
                self.opened_at = fill.ts
                self.entry = fill.price
            else:
                self.entry = (self.entry * abs(self.size) + fill.price * fill.amount) / total
            self.size += signed
            self.fees += fill.fee
            return None
        held = abs(self.size)
        closing = min(held, fill.amount)
        share = closing / fill.amount if fill.amount > 0 else 1.0
        s = 1.0 if self.size > 0 else -1.0
        if fill.realized_pnl is not None:  # the exchange's, for the closing part only
            gross = fill.realized_pnl
        else:
            gross = s * closing * (fill.price - self.entry)
        entry_fees = self.fees * (closing / held)
        trip = RoundTrip(
            symbol=self.symbol,
            side="long" if s > 0 else "short",
            amount=closing,
            entry_price=self.entry,
            exit_price=fill.price,
            opened_at=self.opened_at,
            closed_at=fill.ts,
            pnl=gross,
            fees=entry_fees + fill.fee * share,
            role=fill.role or "manual",
            reason=close_reason(fill.role),
            closed=fill.amount >= held - _EPS,
        )
        self.fees -= entry_fees
        rest = fill.amount - closing
        self.size += signed if rest <= _EPS else -self.size
        if abs(self.size) <= _EPS:
            self.size, self.fees = 0.0, 0.0
        if rest > _EPS:  # flipped: the rest opens the other side
            self.size = rest if fill.side == "buy" else -rest
            self.entry = fill.price
            self.fees = fill.fee * (1.0 - share)
            self.opened_at = fill.ts
        return trip


def as_fill(row: Any) -> Fill:
    """A ``Fill`` from a ``FillRow`` (or anything with its fields)."""
    return Fill(
        symbol=str(row.symbol),
        side=str(row.side),
        amount=float(row.amount),
        price=float(row.price),
        fee=float(row.fee or 0.0),
        ts=float(row.ts),
        role=row.role,
        realized_pnl=row.realized_pnl,
    )


def round_trips(fills: Iterable[Any]) -> list[RoundTrip]:
    """Every round trip (closed or reduced part) of the fills, oldest first."""
    lots: dict[str, Lots] = {}
    out: list[RoundTrip] = []
    for row in fills:
        fill = row if isinstance(row, Fill) else as_fill(row)
        lot = lots.setdefault(fill.symbol, Lots(fill.symbol))
        trip = lot.apply(fill)
        if trip is not None:
            out.append(trip)
    return out
