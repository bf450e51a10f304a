"""Reconcile: at start (and after a restart), rebuild the picture from the exchange and put
every position under guard.

Positions this executor did not open are adopted (logged ``position_adopted``); the guard sweep
runs on them at once (when an engine is given) and its actions are carried out; then the
guards' protective stop (``GuardEngine.missing_stops``: the stop_loss rule's distance, never
closer to liquidation than its buffer; a close if the mark is already past it) is attached to
every position still without one, whether or not the stop_loss rule is enabled. A position that
is still without a stop afterwards raises a critical ``position_without_stop``.

``resolve_in_flight``: before that, orders the store has as intent/sent (a crash between the
record and the exchange's answer) are looked up by client id and recorded as the exchange has
them, or as rejected when it has none.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import structlog

from bot.exchange.protocol import Exchange, fetch_marks
from bot.exchange.retry import describe
from bot.exchange.venue import venue_for
from bot.trading.results import ExecResult, ReconcileReport, describe_result, log_action
from guards import Account, Action, GuardContext, GuardEngine, GuardsConfig, Mark, MarketRules


class Executor(Protocol):
    """What reconcile needs of ``bot.trading.executor.Executor``."""

    exchange: Exchange
    log: Any
    owned: set[str]

    async def account(
        self, currency: str = "USDT", symbols: Sequence[str] = ()
    ) -> tuple[Account, list[dict[str, Any]]]: ...

    async def apply(self, action: Action) -> ExecResult | None: ...


async def reconcile(
    executor: Executor,
    markets: Mapping[str, MarketRules],
    engine: GuardEngine | None = None,
    *,
    config: GuardsConfig | None = None,
    now: float | None = None,
    marks: Mapping[str, Mark] | None = None,
) -> ReconcileReport:
    """Rebuild the picture from the exchange and put every position under guard.

    Adopts positions this executor did not open, runs the guard sweep on them (when
    ``engine`` is given) and carries out its actions, then attaches the guards' protective
    stop (``GuardEngine.missing_stops``: the stop_loss rule's distance, never closer to
    liquidation than its buffer; a close if the mark is already past it) to every position
    still without one, whether or not the stop_loss rule is enabled. ``config`` (default:
    the engine's) builds an engine when none is given, ``now`` defaults to the wall clock,
    ``marks`` to the exchange's current marks.
    """
    if now is None:
        now = time.time()
    report = ReconcileReport()
    account, orders = await executor.account()
    report.open_orders = len(orders)
    report.positions = dict(account.positions)
    for symbol, pos in account.positions.items():
        if symbol not in executor.owned:
            report.adopted.append(symbol)
            executor.owned.add(symbol)
            executor.log.warning(
                "position_adopted",
                symbol=symbol,
                side=pos.side,
                amount=pos.amount,
                entry=pos.entry_price,
                stop=pos.stop_price,
            )
        if pos.stop_price is None:
            report.unprotected.append(symbol)
    if not account.positions:
        return report
    symbols = sorted(set(account.positions) | set(marks or {}))
    live_marks = dict(marks) if marks is not None else {}
    missing = [s for s in symbols if s not in live_marks]
    if missing:
        live_marks.update(await fetch_marks(executor.exchange, missing, now))
    if engine is not None:
        ctx = GuardContext(account, markets, live_marks, now)
        for action in engine.sweep(ctx):
            await _reconcile_action(executor, action, report)
        account, _ = await executor.account()
    else:
        engine = GuardEngine(config if config is not None else GuardsConfig())
    ctx = GuardContext(account, markets, live_marks, now)
    for action in engine.missing_stops(ctx):
        await _reconcile_action(executor, action, report)
    account, _ = await executor.account()
    for symbol, pos in account.positions.items():
        if pos.stop_price is None:
            report.errors.append(f"{symbol}: still without a stop after reconcile")
            executor.log.critical("position_without_stop", symbol=symbol, alert=True)
    report.positions = dict(account.positions)
    executor.log.info("reconciled", **report.to_dict())
    return report


async def _reconcile_action(executor: Executor, action: Action, report: ReconcileReport) -> None:
    report.actions.append(action)
    try:
        result = await executor.apply(action)
    except Exception as exc:
        report.errors.append(f"{action.kind} {action.symbol}: {describe(exc)}")
        executor.log.error("reconcile_action_failed", kind=action.kind, error=describe(exc))
        log_action(executor.log, action, f"failed: {describe(exc)}")
        return
    log_action(executor.log, action, describe_result(result))
    if result is None:
        return
    if result.status == "stop_placed" and action.stop_price is not None:
        report.stops_placed[result.symbol] = action.stop_price
    elif result.status in ("closed", "closed_unprotected"):
        report.closed.append(result.symbol)
    elif not result.ok:
        report.errors.append(f"{action.kind} {result.symbol}: {result.reason}")


async def resolve_in_flight(store: Any, exchange: Exchange) -> list[str]:
    """Orders recorded as intent/sent before a crash: look each up by client id."""
    log = structlog.get_logger("engine")
    venue = venue_for(str(getattr(exchange, "id", "")))
    resolved = []
    for row in store.orders_in_flight():
        # the ordinary book, then (``LiveExchange.fetch_order``) the trigger book
        params = venue.lookup_params(row.client_id, False)
        try:
            order = await exchange.fetch_order(row.exchange_id or "", row.symbol, params)
        except Exception as exc:  # not found (never reached the exchange) or unreachable
            name = type(exc).__name__
            if name in ("OrderNotFound", "InvalidOrder", "BadRequest"):
                store.order_status(row.client_id, "rejected", note=f"not found: {name}")
                resolved.append(f"{row.client_id}: never reached the exchange")
            else:
                log.error("in_flight_unresolved", client_id=row.client_id, error=repr(exc))
            continue
        store.order_ack(row.client_id, order)
        resolved.append(f"{row.client_id}: {order.get('status')}")
    if resolved:
        log.warning("in_flight_resolved", orders=resolved)
    return resolved
