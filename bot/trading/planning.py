"""Order planning: guard decisions and sweep actions become exchange orders here, and only here.

Pure functions over plain data (no I/O, no asyncio). Both senders use them: the async
``bot.trading.executor.Executor`` (paper and live) and the synchronous
``bot.trading.router.Router`` that replay drives against the paper core, so replay, paper and
live turn the same decision into the same orders.

- ``plan_decision(approved)``: an ``EntryPlan`` (a protected entry: the entry order, a stop that
  triggers on the mark price, an optional take-profit) or, when the decision only reduces risk
  (``is_risk_reducing``: a reduce-only order, or an opposite order no larger than the position,
  which closes it), an ``ExitPlan`` of the *position*, whatever side the intent named.
- ``plan_action(action)``: what carries out a sweep action (close and reduce: ``ExitPlan``;
  place_stop: ``StopPlan``; cancel_entries: ``CancelPlan``; halt: nothing, it is a notice).
- ``exit_order(plan, side, size, amount_step)``: the reduce-only market order of an exit.
- ``protection(...)``: how a stop or take-profit goes on the exchange given the protective
  orders already standing (keep one at that price; else a new one, position-wide unless such an
  order stands, and the old ones cancelled once the new one stands).
- ``client_order_id`` / ``action_client_id``: deterministic client order ids, so a re-send is
  recognised by the exchange.

``OrderSpec`` is venue-neutral; ``bot.exchange.venue`` turns it into one exchange's parameters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bot.exchange.shapes import closes_position, order_role, trigger_price
from bot.exchange.venue import ExitReason, OrderSide, OrderSpec
from guards import (
    RISK_REDUCING_CODES,
    Action,
    ApprovedOrder,
    Decision,
    MarginMode,
    OrderIntent,
    floor_to_step,
)

MAX_CLIENT_ID = 36


@dataclass(frozen=True, slots=True)
class EntryPlan:
    """A protected entry: the entry order, then its stop (always) and take-profit (optional)."""

    symbol: str
    margin_mode: MarginMode
    leverage: float
    entry: OrderSpec
    #: None only for an unprotected entry (a replay with the guards off).
    stop: float | None
    take_profit: float | None
    #: The intent's own name, when it has one (seeds its client ids across restarts).
    client_id: str

    @property
    def exit_side(self) -> OrderSide:
        return opposite(self.entry.side)


@dataclass(frozen=True, slots=True)
class ExitPlan:
    """Reduce a position by ``amount`` (None: close it) with a reduce-only market order."""

    symbol: str
    amount: float | None
    reason: ExitReason
    tag: str = ""


@dataclass(frozen=True, slots=True)
class StopPlan:
    """Put a stop at ``price`` on the symbol's position (replacing the one standing)."""

    symbol: str
    price: float
    tag: str = ""
    #: Only when no stop covers the position yet (the guards' "stop missing" seen on a view
    #: that may be a moment old): a stop placed since is left alone.
    if_missing: bool = False


@dataclass(frozen=True, slots=True)
class CancelPlan:
    """Cancel the resting entry orders of ``symbol`` (None: of every symbol)."""

    symbol: str | None
    tag: str = ""


Plan = EntryPlan | ExitPlan | StopPlan | CancelPlan


@dataclass(frozen=True, slots=True)
class Protection:
    """How to put one stop or take-profit on the exchange (see ``protection``)."""

    #: The order to place, or None when ``keep`` already stands at the price.
    place: OrderSpec | None
    #: A standing order that already is the wanted protection.
    keep: Mapping[str, Any] | None
    #: Standing orders of the same kind to cancel once ``place`` stands (or ``keep`` is kept).
    cancel: tuple[Mapping[str, Any], ...]


def opposite(side: OrderSide) -> OrderSide:
    return "sell" if side == "buy" else "buy"


def order_side(position_side: str) -> OrderSide:
    """The side of an order opening or adding to a ``long``/``short`` position."""
    return "buy" if position_side == "long" else "sell"


def exit_side(position_side: str) -> OrderSide:
    """The side of an order reducing a ``long``/``short`` position."""
    return "sell" if position_side == "long" else "buy"


def is_risk_reducing(decision: Decision) -> bool:
    """True when the decision only reduces exposure (reduce-only, or closing the position)."""
    return decision.intent.reduce_only or decision.code in RISK_REDUCING_CODES


def plan_decision(
    approved: ApprovedOrder, *, allow_unprotected: bool = False
) -> EntryPlan | ExitPlan:
    """The orders an approved decision becomes (see the module docstring).

    An entry without a stop is refused (``ValueError``) unless ``allow_unprotected``: only a
    replay with the guards switched off sends one, to show what an unguarded bot would do.
    """
    intent = approved.intent
    if is_risk_reducing(approved.decision):
        return ExitPlan(intent.symbol, approved.amount, "strategy", intent.tag or "strategy")
    if approved.stop_price is None and not allow_unprotected:
        raise ValueError(f"an entry on {intent.symbol} needs a stop (the guards attach one)")
    entry = OrderSpec(
        "entry",
        intent.symbol,
        order_side(intent.side),
        approved.amount,
        type=intent.order_type,
        price=intent.price if intent.order_type == "limit" else None,
        tag=intent.tag,
    )
    return EntryPlan(
        intent.symbol,
        intent.margin_mode,
        intent.leverage,
        entry,
        approved.stop_price,
        approved.take_profit,
        intent.client_id,
    )


def plan_action(action: Action) -> list[Plan]:
    """What carries out one sweep action (``halt`` is a notice the guard engine applied)."""
    tag = f"{action.rule}:{action.code}"
    symbol = action.symbol
    if action.kind == "halt":
        return []
    if action.kind == "cancel_entries":
        return [CancelPlan(symbol, tag)]
    if symbol is None:
        raise ValueError(f"a {action.kind} action needs a symbol ({tag})")
    if action.kind == "close":
        return [ExitPlan(symbol, None, "guard", tag)]
    if action.kind == "reduce":
        return [ExitPlan(symbol, action.amount, "guard", tag)] if action.amount else []
    if action.stop_price is None:
        raise ValueError(f"a place_stop action needs a stop price ({tag})")
    return [StopPlan(symbol, action.stop_price, tag, if_missing=action.code == "stop_missing")]


def exit_order(
    plan: ExitPlan, position_side: str, size: float, amount_step: float
) -> OrderSpec | None:
    """The reduce-only market order of ``plan`` on a position of ``size`` (None: nothing to do).

    A partial exit is rounded down to the amount step; an exit of the position's size or more
    closes it exactly.
    """
    if size <= 0.0:
        return None
    qty = size if plan.amount is None else min(plan.amount, size)
    if qty < size and amount_step > 0.0:
        qty = floor_to_step(qty, amount_step)
    if qty <= 0.0:
        return None
    return OrderSpec(
        "exit",
        plan.symbol,
        exit_side(position_side),
        qty,
        reduce_only=True,
        reason=plan.reason,
        tag=plan.tag,
    )


def protection(
    kind: Literal["stop", "take_profit"],
    symbol: str,
    side: OrderSide,
    price: float,
    size: float,
    standing: Sequence[Mapping[str, Any]],
    tag: str = "",
) -> Protection:
    """How to protect a position with a ``kind`` order at ``price`` (``side``: the exit side).

    ``standing``: the symbol's open orders (any kind; only this kind on this side counts). One
    already at ``price`` that covers the position (position-wide, or reduce-only for at least
    ``size``) is kept, the others of the kind cancelled. Else the
    new order protects the whole position (``close_position``) unless a position-wide one stands
    (exchanges allow one per kind and direction): then it is reduce-only for ``size``; either
    way the old ones are cancelled once it stands, so the position is never left bare.
    """
    same = tuple(o for o in standing if o.get("side") == side and order_role(o) == kind)
    for o in same:
        if trigger_price(o) == price and covers(o, size):
            return Protection(None, o, tuple(x for x in same if x is not o))
    wide = any(closes_position(o) for o in same)
    spec = OrderSpec(
        kind,
        symbol,
        side,
        size,
        trigger=price,
        reduce_only=wide,
        close_position=not wide,
        tag=tag,
    )
    return Protection(spec, None, same)


def covers(order: Mapping[str, Any], size: float, contract_size: float = 1.0) -> bool:
    """True when a protective order acts on the whole of a position of ``size`` (base units).

    ``contract_size``: base units per contract of the order's ``amount`` (OKX's orders count
    contracts; ``bot.exchange.venue.contract_size`` of the market).
    """
    if closes_position(order):
        return True
    amount = order.get("amount")
    return isinstance(amount, int | float) and amount * contract_size >= size * (1.0 - 1e-9)


def client_order_id(intent: OrderIntent, *, seed: str, role: str = "e") -> str:
    """A deterministic client order id for one order of ``intent``: ``gb<role><24 hex>``.

    A digest of the seed — the intent's own ``client_id`` when it has one, else a run id and a
    sequence number — with the symbol and side, so re-sending the same order (or replaying a
    named intent after a restart, whatever size the guards allow this time) reuses the id and
    is recognised. The role letter (``e`` entry, ``s`` stop, ``t`` take-profit) tells the orders
    of one intent apart. At most 36 characters from ``[.A-Z:/a-z0-9_-]``, as Binance requires.
    """
    return _cid(role, "|".join((seed, intent.symbol, intent.side)))


def action_client_id(seed: str, role: str, symbol: str, what: str) -> str:
    """The client id of one exit or stop order (``seed``: unique per call, e.g. run id + seq)."""
    return _cid(role, f"{seed}|{symbol}|{what}")


def _cid(role: str, payload: str) -> str:
    digest = hashlib.blake2b(payload.encode(), digest_size=12).hexdigest()
    if len(role) == 1 and role.isalnum():  # every caller's role ("e", "s", "t", ...)
        letter = role.lower()
    else:
        letter = "".join(c for c in role.lower() if c.isalnum())[:1] or "x"
    return f"gb{letter}{digest}"
