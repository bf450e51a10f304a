"""The engine's operator controls and jobs: the kill switch, the seatbelt's confirmation
(``guardbot seatbelt apply``), the no-overnight flatten, the equity snapshot and the shutdown.

Every close they make is an action like a sweep's -- a ``guard_action`` event and a row in the
store (``close_as``) -- so ``guardbot history`` and the status page show what a halt or a
flatten closed. Functions over the running engine (``Controlled``: the part of
``bot.trading.engine.Engine`` they use), so the engine module stays the trading loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

import structlog

from bot.exchange.shapes import free_margin
from bot.exchange.venue import ExitReason
from bot.state.store import Store, StoreError
from bot.trading.account import AccountView, Execution
from bot.trading.results import describe_result, log_action
from bot.trading.seatbelt import SEATBELT_KEY
from bot.trading.tasks import Tasks
from guards import Action, CloseReason, GuardEngine, Mark

log = structlog.get_logger("engine")

CONTROL_KEY = "control.manual_halt"


class Controlled(Protocol):
    """What these routines use of the engine."""

    store: Any
    guard: GuardEngine
    executor: Execution
    exchange: Any
    tasks: Tasks
    symbols: tuple[str, ...]
    marks: dict[str, Mark]
    closing: dict[str, CloseReason]
    run_id: str
    actions: int
    entries_stopped: bool
    free_margin: float | None

    @property
    def view(self) -> AccountView: ...

    def clock(self) -> float: ...

    async def refresh_account(self) -> AccountView: ...

    async def refreshed(self) -> None: ...

    async def settle(self) -> None: ...

    def save_state(self) -> None: ...

    def record_action(self, action: Action, now: float, executed: bool, result: str) -> None: ...

    def write(self, what: str, fn: Callable[[Store], Any], key: str | None = None) -> Any: ...

    def catch_up(self) -> bool: ...

    def heartbeat(self, status: str = "running") -> None: ...


async def apply_control(engine: Controlled) -> None:
    """``guardbot halt`` / ``resume`` (and ``seatbelt apply``): the request the store holds,
    applied once."""
    apply_seatbelt(engine)
    try:
        request = engine.store.kv_get(CONTROL_KEY)
    except (StoreError, sqlite3.Error):
        return
    if not isinstance(request, dict):
        return
    halt = engine.guard.state.halt
    manual_active = halt is not None and halt.kind == "manual"
    if request.get("halted") and not manual_active:
        reason = str(request.get("reason") or "manual halt")
        engine.guard.halt(reason, None, ts=engine.clock())
        log.warning("kill_switch_on", reason=reason)
        for sym in list(engine.view.account.positions):
            engine.closing[sym] = "manual"
            await engine.tasks.run(("close", sym), partial(kill, engine, sym))
        if not engine.tasks.background:
            await engine.refresh_account()
    elif not request.get("halted") and manual_active:
        engine.guard.resume()
        log.warning("kill_switch_off")
    engine.save_state()


def apply_seatbelt(engine: Controlled) -> None:
    """``guardbot seatbelt apply``: a confirmation not yet applied lets the seatbelt act on the
    positions found at start (``Seatbelt.confirm``); marked applied in the store."""
    seatbelt = getattr(engine, "seatbelt", None)
    try:
        request = engine.store.kv_get(SEATBELT_KEY)
    except (StoreError, sqlite3.Error):
        return
    if seatbelt is None or not isinstance(request, dict) or request.get("applied"):
        return
    symbols = seatbelt.confirm()
    now = engine.clock()
    done = {**request, "applied": now, "symbols": symbols}
    engine.write("seatbelt_apply", lambda s: s.kv_set(SEATBELT_KEY, done))
    log.warning("seatbelt_confirmed", symbols=symbols)


async def kill(engine: Controlled, symbol: str) -> None:
    """The kill switch closes one position."""
    action = Action("close", symbol, "manual", "kill_switch", "kill switch: close everything")
    await close_as(engine, action, "manual", "kill_switch")
    if engine.tasks.background:
        await engine.refreshed()


async def close_as(engine: Controlled, action: Action, reason: ExitReason, tag: str) -> str:
    """Close ``action.symbol`` for the engine's own reason: an action row and event like a
    sweep's; returns the result as recorded."""
    now = engine.clock()
    engine.actions += 1
    try:
        outcome = await engine.executor.close(str(action.symbol), reason, tag)
        result, executed = describe_result(outcome), bool(getattr(outcome, "ok", False))
    except Exception as exc:
        result, executed = f"failed: {type(exc).__name__}: {exc}", False
    engine.record_action(action, now, executed, result)
    log_action(log, action, result)
    return result


async def flatten(engine: Controlled, tries: int = 5, wait_s: float = 2.0) -> bool:
    """At flat_by: cancel entry orders and close every position, retrying until flat."""
    for attempt in range(1, tries + 1):
        await engine.refresh_account()
        view = engine.view
        if not view.account.positions and not any(view.open_entry_orders.values()):
            return True
        for sym in engine.symbols:
            if view.open_entry_orders.get(sym):
                await engine.executor.cancel_entries(sym)
        for sym in list(view.account.positions):
            engine.closing[sym] = "guard"
            action = Action("close", sym, "no_overnight", "flatten", "flat_by reached")
            result = await close_as(engine, action, "guard", "no_overnight:flatten")
            if result.startswith("failed"):
                log.error("flatten_failed", symbol=sym, attempt=attempt, result=result)
        await asyncio.sleep(wait_s if attempt < tries else 0)
    await engine.refresh_account()
    flat = not engine.view.account.positions
    if not flat:
        log.critical(
            "not_flat_after_flatten", tries=tries, positions=list(engine.view.account.positions)
        )
    return flat


async def equity_snapshot(engine: Controlled) -> None:
    """One row of equity, wallet, free margin and unrealised PnL."""
    v = engine.view
    upnl = sum(
        p.unrealized_pnl(engine.marks[s].price)
        for s, p in v.account.positions.items()
        if s in engine.marks
    )
    balance = await engine.exchange.fetch_balance()
    free = free_margin(balance, v.account.currency)
    engine.free_margin = free
    row = (engine.clock(), v.account.wallet_balance + upnl, v.account.wallet_balance, free, upnl)
    run_id = engine.run_id
    engine.write("equity", lambda s: s.record_equity(*row, run_id))


async def shutdown(engine: Controlled, flatten: bool = False) -> None:
    """Stop entries, let work in flight finish, cancel resting entry orders, leave stops (or
    close everything, each close an action), flush state."""
    engine.entries_stopped = True
    try:
        await engine.settle()
        await engine.refresh_account()
        for sym in engine.symbols:
            if engine.view.open_entry_orders.get(sym):
                await engine.executor.cancel_entries(sym)
        if flatten:
            for sym in list(engine.view.account.positions):
                engine.closing[sym] = "manual"
                action = Action("close", sym, "manual", "shutdown", "shutdown.flatten")
                await close_as(engine, action, "manual", "shutdown:flatten")
    except Exception as exc:
        log.error("shutdown_step_failed", error=repr(exc))
    engine.save_state()
    now, run_id = engine.clock(), engine.run_id
    engine.write("end_run", lambda s: s.end_run(run_id, now))
    engine.catch_up()
    engine.heartbeat("stopped")
    log.info("engine_stopped", flatten=flatten)
