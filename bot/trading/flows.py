"""Execution flows: the step-by-step carrying out of a plan, written once for every sender.

A flow is a generator over plain data (no I/O, no asyncio): it yields requests — set up a
symbol, place an order, read the position or the open orders, cancel an order, note an event —
and receives each answer (or has the request's exception thrown into it), deciding the next
step from it; it returns the plan's ``ExecResult``. The async ``Executor`` (paper and live) and
the synchronous replay ``Router`` are thin interpreters of the same flows, so a decision becomes
the same orders, in the same order, with the same failure handling, in replay, paper and live.

- ``entry_flow``: set up margin mode and leverage, send the entry, then protect it: the stop on
  the mark price for the whole position (``planning.protection``; none only for the unprotected
  entries of a replay with the guards off), then the take-profit. A stop
  that cannot be placed cancels a resting entry and closes what filled (``naked``), unless a
  position-wide stop already stands and still covers it. Any unexpected failure while
  protecting does the same: a filled entry is never left without its stop.
- ``exit_flow``: a reduce-only market exit of the position (a close first cancels the symbol's
  resting entries and afterwards its stops and take-profits).
- ``stop_flow``: place (or move) the position's stop; if none can be placed and none stands,
  close the position.
- ``cancel_entries_flow``: cancel the symbol's resting entry orders.

Requests an interpreter must answer: ``Setup`` (None), ``Place`` (the exchange's order dict,
filled when it is a market order), ``Cancel`` (True, or False when the order was gone),
``ReadPosition`` (``Held`` or None), ``ReadOrders`` (the symbol's open orders as ccxt dicts),
``ReadStep`` (the amount step), ``Note`` (None: log it), ``Exclusive`` (None: from here on the
flow has the symbol to itself -- the live executor serialises protective steps per symbol, and
an entry asks for it only once its own order is answered, so a hung entry never holds up the
stop of a position; replay ignores it).

An entry whose outcome stays unknown (no answer within its deadline, and no answer to the look-up
by client id either) has ``OutcomeUnknown`` thrown into the flow: the flow reads the position, and
protects it at once if it holds the entry's side; otherwise it returns the status ``unknown`` and
the executor resolves the order in the background by its client id.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.exchange.shapes import closes_position, order_role, trigger_price
from bot.exchange.venue import OrderSpec
from bot.trading.planning import (
    EntryPlan,
    ExitPlan,
    Protection,
    action_client_id,
    covers,
    exit_order,
    exit_side,
    protection,
)
from bot.trading.results import ExecResult, ExecStatus
from guards import MarginMode

_FILL_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Setup:
    """Margin mode and leverage of ``symbol`` before an entry."""

    symbol: str
    margin_mode: MarginMode
    leverage: float


@dataclass(frozen=True, slots=True)
class Place:
    """Send one order with this client id (idempotently, where the network needs it)."""

    spec: OrderSpec
    client_id: str


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel one open order (a ccxt order dict)."""

    order: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ReadPosition:
    symbol: str


@dataclass(frozen=True, slots=True)
class ReadOrders:
    symbol: str


@dataclass(frozen=True, slots=True)
class ReadStep:
    symbol: str


@dataclass(frozen=True, slots=True)
class Note:
    """An event to log: ``level`` is a structlog method name."""

    level: str
    event: str
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Exclusive:
    """From here on, no other flow works on ``symbol`` until this one ends."""

    symbol: str


class OutcomeUnknown(Exception):
    """An order may or may not be on the exchange (no answer, and none to its look-up)."""


@dataclass(frozen=True, slots=True)
class Held:
    """A position as a flow needs it: its side and size."""

    side: str
    size: float


Request = Setup | Place | Cancel | ReadPosition | ReadOrders | ReadStep | Note | Exclusive
Flow = Generator[Request, Any, ExecResult]


def entry_flow(plan: EntryPlan, ids: Mapping[str, str], seed: str) -> Flow:
    """Set up, send the entry, protect it (see the module docstring).

    ``ids``: the client ids of the entry (``e``), its stop (``s``) and take-profit (``t``);
    ``seed`` makes the client id of a naked close.
    """
    symbol = plan.symbol
    cid = ids["e"]
    try:
        yield Setup(symbol, plan.margin_mode, plan.leverage)
    except Exception as exc:
        yield Note("error", "symbol_setup_failed", {"symbol": symbol, "error": _describe(exc)})
        return ExecResult("failed", symbol, cid, reason=f"setup: {_describe(exc)}")
    entry: Mapping[str, Any] | None
    try:
        entry = yield Place(plan.entry, cid)
    except OutcomeUnknown as exc:
        entry = yield from _unknown_entry(plan, cid, exc)
        if entry is None:
            return ExecResult("unknown", symbol, cid, reason=f"entry: {_describe(exc)}")
    except Exception as exc:
        yield Note("error", "entry_failed", {"symbol": symbol, "error": _describe(exc)})
        return ExecResult("failed", symbol, cid, reason=f"entry: {_describe(exc)}")
    yield Exclusive(symbol)
    try:
        return (yield from protect_entry(plan, entry, ids, seed))
    except Exception as exc:  # a filled entry is never left without its stop
        yield Note(
            "critical",
            "entry_protection_error",
            {"symbol": symbol, "error": _describe(exc), "alert": True},
        )
        return (yield from _unprotected(plan, entry, cid, seed, exc))


def _unknown_entry(
    plan: EntryPlan, cid: str, exc: BaseException
) -> Generator[Request, Any, Mapping[str, Any] | None]:
    """The entry's outcome is unknown: a position on its side is what it filled (or what it
    added to): that is protected now. None: nothing to protect yet (resolved in the background).
    """
    symbol = plan.symbol
    yield Exclusive(symbol)
    try:
        held: Held | None = yield ReadPosition(symbol)
    except Exception:
        held = None
    side = "long" if plan.entry.side == "buy" else "short"
    fields = {"symbol": symbol, "client_id": cid, "error": _describe(exc)}
    if held is None or held.side != side:
        yield Note("error", "entry_outcome_unknown", {**fields, "position": None})
        return None
    yield Note("error", "entry_outcome_unknown", {**fields, "position": held.size})
    return {"id": None, "clientOrderId": cid, "status": "unknown", "filled": held.size}


def protect_entry(
    plan: EntryPlan, entry: Mapping[str, Any], ids: Mapping[str, str], seed: str
) -> Flow:
    """Protect what an entry filled (and what its resting remainder will add): stop first, then
    the take-profit; a stop that cannot be placed closes the position (``_unprotected``)."""
    symbol = plan.symbol
    cid = ids["e"]
    filled = float(entry.get("filled") or 0.0)
    resting = entry.get("status") == "open"
    if filled <= _FILL_EPS and not resting:
        yield Note("warning", "entry_not_filled", {"symbol": symbol, "status": entry.get("status")})
        return ExecResult("not_filled", symbol, cid, entry=entry, reason="no fill")
    standing = [o for o in (yield ReadOrders(symbol)) if o.get("id") != entry.get("id")]
    held: Held | None = yield ReadPosition(symbol)
    size = held.size if held is not None else 0.0
    if resting:  # a reduce-only stop must also cover what the resting entry will add
        size += float(entry.get("remaining") or plan.entry.amount - filled)
    side = plan.exit_side
    stop_order: Mapping[str, Any] | None = None
    if plan.stop is not None:
        stop = protection("stop", symbol, side, plan.stop, size, standing)
        try:
            stop_order = yield from _protect(stop, ids["s"])
        except Exception as exc:
            if not any(closes_position(o) for o in stop.cancel):
                return (yield from _unprotected(plan, entry, cid, seed, exc))
            # the position-wide stop already standing still covers everything
            fields = {"symbol": symbol, "stop": plan.stop, "error": _describe(exc)}
            yield Note("error", "stop_not_moved", fields)
    take_order = None
    if plan.take_profit is not None:
        take = protection("take_profit", symbol, side, plan.take_profit, size, standing)
        try:
            take_order = yield from _protect(take, ids["t"])
        except Exception as exc:
            yield Note(
                "warning",
                "take_profit_failed",
                {"symbol": symbol, "error": _describe(exc), "stop": plan.stop},
            )
    status: ExecStatus
    if entry.get("status") == "unknown":
        status = "unknown"
    elif resting and filled <= _FILL_EPS:
        status = "open"
    elif filled >= plan.entry.amount * (1 - 1e-9):
        status = "filled"
    else:
        status = "partial"
    yield Note(
        "info",
        "entry_protected",
        {
            "symbol": symbol,
            "client_id": cid,
            "status": status,
            "filled": filled,
            "average": entry.get("average"),
            "stop": plan.stop,
            "take_profit": plan.take_profit,
        },
    )
    return ExecResult(
        status,
        symbol,
        cid,
        filled=filled,
        average=entry.get("average"),
        entry=entry,
        stop=stop_order,
        take_profit=take_order,
    )


def _protect(plan: Protection, client_id: str) -> Generator[Request, Any, Mapping[str, Any] | None]:
    """Carry out a ``Protection``: place the new order first, then cancel the old ones."""
    if plan.place is None:
        for other in plan.cancel:
            yield Cancel(other)
        return plan.keep
    order: Mapping[str, Any] = yield Place(plan.place, client_id)
    for other in plan.cancel:
        if other.get("id") != order.get("id"):
            yield Cancel(other)
    return order


def _unprotected(
    plan: EntryPlan, entry: Mapping[str, Any], cid: str, seed: str, exc: BaseException
) -> Flow:
    """The stop could not be placed: cancel a resting entry and close whatever filled."""
    symbol = plan.symbol
    if entry.get("status") == "open":
        try:
            yield Cancel(entry)
        except Exception as cancel_exc:
            yield Note(
                "error", "entry_cancel_failed", {"symbol": symbol, "error": _describe(cancel_exc)}
            )
    held: Held | None
    try:
        held = yield ReadPosition(symbol)
    except Exception:  # cannot see the position: close what the entry filled
        filled = float(entry.get("filled") or 0.0)
        side = "long" if entry.get("side") == "buy" else "short"
        held = Held(side, filled) if filled > 0.0 else None
    if held is None:
        yield Note(
            "error",
            "entry_cancelled_stop_failed",
            {"symbol": symbol, "client_id": cid, "error": _describe(exc)},
        )
        return ExecResult("failed", symbol, cid, entry=entry, reason=f"stop: {_describe(exc)}")
    yield from _close_naked(symbol, held, exc, cid, seed)
    return ExecResult(
        "closed_unprotected",
        symbol,
        cid,
        filled=float(entry.get("filled") or 0.0),
        average=entry.get("average"),
        entry=entry,
        reason=f"stop could not be placed ({_describe(exc)}); position closed",
    )


def _close_naked(symbol: str, held: Held, exc: BaseException, cid: str, seed: str) -> Flow:
    """A position whose stop could not be placed: close it now and raise the alarm."""
    result = yield from _exit(ExitPlan(symbol, None, "guard", "naked"), held, seed, 0.0)
    yield Note(
        "critical",
        "naked_position_closed",
        {
            "symbol": symbol,
            "client_id": cid,
            "error": _describe(exc),
            "closed": result.status == "closed",
            "alert": True,
        },
    )
    return result


def exit_flow(plan: ExitPlan, seed: str) -> Flow:
    """Reduce or close the position (a close first cancels the symbol's resting entries)."""
    symbol = plan.symbol
    if plan.amount is None:
        yield from cancel_entries_flow(symbol)
    held: Held | None = yield ReadPosition(symbol)
    if held is None:
        if plan.amount is None:
            yield from _cancel_protection(symbol)
        return ExecResult("noop", symbol, reason="no position")
    step = 0.0 if plan.amount is None else float((yield ReadStep(symbol)))
    return (yield from _exit(plan, held, seed, step))


def _exit(plan: ExitPlan, held: Held, seed: str, step: float) -> Flow:
    symbol = plan.symbol
    spec = exit_order(plan, held.side, held.size, step)
    if spec is None:
        return ExecResult("noop", symbol, reason=f"amount {plan.amount:g} rounds to zero")
    whole = spec.amount >= held.size
    what = f"{'close' if whole else 'reduce'}:{plan.tag}:{held.size}"
    cid = action_client_id(seed, "c" if whole else "r", symbol, what)
    try:
        order: Mapping[str, Any] = yield Place(spec, cid)
    except Exception as exc:
        if whole:
            yield Note(
                "critical",
                "close_failed",
                {"symbol": symbol, "reason": plan.tag, "error": _describe(exc), "alert": True},
            )
            return ExecResult("failed", symbol, cid, reason=f"close: {_describe(exc)}")
        yield Note("error", "reduce_failed", {"symbol": symbol, "error": _describe(exc)})
        return ExecResult("failed", symbol, cid, reason=f"reduce: {_describe(exc)}")
    filled = float(order.get("filled") or 0.0)
    if not whole:
        yield Note(
            "info",
            "position_reduced",
            {"symbol": symbol, "amount": spec.amount, "reason": plan.tag},
        )
        return ExecResult(
            "reduced",
            symbol,
            cid,
            filled=filled,
            average=order.get("average"),
            entry=order,
            reason=plan.tag,
        )
    try:
        if (yield ReadPosition(symbol)) is None:
            yield from _cancel_protection(symbol)
    except Exception as exc:
        yield Note(
            "warning", "protection_cleanup_failed", {"symbol": symbol, "error": _describe(exc)}
        )
    yield Note(
        "info",
        "position_closed",
        {
            "symbol": symbol,
            "reason": plan.tag,
            "amount": spec.amount,
            "average": order.get("average"),
        },
    )
    return ExecResult(
        "closed",
        symbol,
        cid,
        filled=filled,
        average=order.get("average"),
        entry=order,
        reason=plan.tag,
    )


def _cancel_protection(symbol: str) -> Generator[Request, Any, None]:
    """Cancel stop / take-profit orders left on a flat symbol."""
    for o in (yield ReadOrders(symbol)):
        if order_role(o) in ("stop", "take_profit"):
            yield Cancel(o)


def stop_flow(
    symbol: str, price: float, seed: str, tag: str = "guard", *, if_missing: bool = False
) -> Flow:
    """Place (or move) the position's stop; old stops are cancelled once the new one stands.

    If no stop can be placed and none is left standing, the position is closed. ``if_missing``:
    a stop that already covers the position is left as it is.
    """
    held: Held | None = yield ReadPosition(symbol)
    if held is None:
        return ExecResult("noop", symbol, reason="no position")
    standing = yield ReadOrders(symbol)
    side = exit_side(held.side)
    if if_missing:
        cover = [
            o
            for o in standing
            if o.get("side") == side and order_role(o) == "stop" and covers(o, held.size)
        ]
        if cover:
            return ExecResult("noop", symbol, stop=cover[0], reason="a stop stands already")
    plan = protection("stop", symbol, side, price, held.size, standing)
    if plan.place is None and not plan.cancel:
        return ExecResult("noop", symbol, stop=plan.keep, reason="stop already there")
    cid = action_client_id(seed, "s", symbol, f"stop:{price}")
    try:
        order = yield from _protect(plan, cid)
    except Exception as exc:
        if plan.cancel:
            yield Note(
                "error",
                "stop_move_failed",
                {
                    "symbol": symbol,
                    "stop": price,
                    "kept": trigger_price(plan.cancel[0]),
                    "error": _describe(exc),
                },
            )
            return ExecResult("failed", symbol, cid, reason=f"stop: {_describe(exc)}")
        yield from _close_naked(symbol, held, exc, cid, seed)
        return ExecResult(
            "closed_unprotected",
            symbol,
            cid,
            reason=f"stop could not be placed ({_describe(exc)}); position closed",
        )
    yield Note("info", "stop_placed", {"symbol": symbol, "stop": price, "reason": tag})
    return ExecResult("stop_placed", symbol, cid, stop=order, reason=tag)


def cancel_entries_flow(symbol: str) -> Generator[Request, Any, int]:
    """Cancel the symbol's resting entry orders; returns how many were cancelled."""
    count = 0
    for o in (yield ReadOrders(symbol)):
        if order_role(o) == "entry" and (yield Cancel(o)):
            count += 1
    if count:
        yield Note("info", "entries_cancelled", {"symbol": symbol, "count": count})
    return count


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
