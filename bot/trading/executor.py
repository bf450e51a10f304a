"""``Executor``: sends the plans of ``bot.trading.planning`` to an exchange, safely.

Works over any ``bot.exchange.protocol.Exchange`` (paper or live); the orders themselves come
from the planning layer, their parameters from the exchange's venue (``bot.exchange.venue``)
and their sending, look-up and cancelling from ``bot.trading.sender.OrderSender``, which this
class extends with the plans. What it guarantees:

- **Protected entries.** An entry goes out only with a stop: after the entry (market, or a
  resting limit) a stop on the *mark* price for the whole position and, if given, a take-profit
  of the same kind. If the stop cannot be placed the position is closed at once with a
  reduce-only market order and a critical ``naked_position_closed`` event is logged: there is
  never a position without a stop.
- **Idempotent orders.** Every order carries a deterministic client order id
  (``planning.client_order_id``). After an ambiguous failure (timeout, dropped connection, 5xx)
  the order is looked up by that id before anything is re-sent; only a definite "order does not
  exist" allows a re-send, within the retry budget. A retry therefore never doubles a position.
- **Refusals are final.** ``InvalidOrder``, ``InsufficientFunds`` and the like are not retried.
  An authentication or permission error logs a critical ``exchange_auth_failed`` event and sets
  ``halted``: no further entries (this is the one place trading stops for it; transient read
  failures are retried by the exchange adapter, ``bot.exchange.live``).
- **Leverage and margin mode** are set per symbol before the first entry (and when they change),
  never above ``max_leverage`` (the guards' cap), and the account's position mode once (one-way,
  where the venue has a call for it).
- **Reconcile.** ``reconcile`` fetches positions and open orders, adopts positions the bot did
  not open, lets the guard sweep act on them at once and attaches the guards' protective stop
  (``GuardEngine.missing_stops``) to every position still without one.
- **Deadlines, no global lock.** Every exchange call has a deadline that fits its job
  (``Deadlines``): an entry's POST and its look-up are short, so a hung entry costs its own
  symbol at most about 1.7 s before the position it may have opened is read and protected; an
  entry still unknown after that is resolved in the background by its client id
  (``_resolve``). Flows of one symbol are serialised only over their protective steps
  (``flows.Exclusive``); nothing waits on another symbol.

Every send is recorded through the optional ``store`` (``order_intent`` before, ``order_ack``
after). An entry is refused while the store cannot write (``writable`` false): an order that
could not be recorded first could not be recovered after a crash. Exits and stops go out anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from bot.exchange.retry import describe
from bot.exchange.shapes import account_from_ccxt
from bot.exchange.venue import ExitReason
from bot.trading.flows import (
    cancel_entries_flow,
    entry_flow,
    exit_flow,
    protect_entry,
    stop_flow,
)
from bot.trading.planning import (
    CancelPlan,
    EntryPlan,
    ExitPlan,
    Plan,
    StopPlan,
    client_order_id,
    plan_action,
    plan_decision,
)
from bot.trading.reconcile import reconcile
from bot.trading.results import ExecResult, ReconcileReport
from bot.trading.sender import Deadlines, OrderSender, StoreUnwritable, within
from guards import (
    Account,
    Action,
    ApprovedOrder,
    GuardEngine,
    GuardsConfig,
    MarginMode,
    Mark,
    MarketRules,
)

__all__ = ["Deadlines", "Executor", "StoreUnwritable", "within"]


class Executor(OrderSender):
    """Places and manages orders on one exchange; see the module docstring."""

    # ------------------------------------------------------------------ plans

    async def submit(self, approved: ApprovedOrder) -> ExecResult:
        """Execute an approved order: a protected entry, or the exit a risk-reducing one is."""
        intent = approved.intent
        symbol = intent.symbol
        if intent.kind != "order":
            return ExecResult("refused", symbol, reason="only orders are executed")
        try:
            plan = plan_decision(approved)
        except ValueError as exc:
            return ExecResult("refused", symbol, reason=str(exc))
        if isinstance(plan, ExitPlan):
            return await self.exit(plan)
        if self.halted is not None:
            return ExecResult("refused", symbol, reason=f"trading halted: {self.halted}")
        if self.max_leverage is not None and plan.leverage > self.max_leverage + 1e-9:
            return ExecResult(
                "refused",
                symbol,
                reason=f"leverage {plan.leverage:g} above the cap {self.max_leverage:g}",
            )
        if not self.store_writable:
            return ExecResult("refused", symbol, reason="the state store cannot write")
        seed = plan.client_id or self._next_seed()
        ids = {role: client_order_id(intent, seed=seed, role=role) for role in ("e", "s", "t")}
        if plan.client_id:
            earlier = await self._sent_before(symbol, ids["e"])
            if earlier is not None:
                return earlier
        flow_seed = self._next_seed()
        result = await self._drive(entry_flow(plan, ids, flow_seed))
        if result.status not in ("failed", "refused", "not_filled"):
            self.owned.add(symbol)
        if result.status == "unknown":
            task = asyncio.create_task(self._resolve(plan, ids, flow_seed))
            self._resolving.add(task)
            task.add_done_callback(self._resolving.discard)
        return result

    async def _resolve(self, plan: EntryPlan, ids: Mapping[str, str], seed: str) -> None:
        """An entry of unknown outcome: look it up by client id until the exchange answers,
        record what it says, and protect what it filled or will fill."""
        cid = ids["e"]
        log = self.log.bind(symbol=plan.symbol, client_id=cid)
        wait, give_up = 0.2, self._clock() + self.deadlines.resolve_s
        while True:
            try:
                found = await self._lookup(plan.symbol, cid, trigger=False)
                break
            except Exception as exc:
                if self._clock() > give_up:
                    log.critical("entry_unresolved", error=describe(exc), alert=True)
                    return
                await self._sleep(wait)
                wait = min(wait * 2, 5.0)
        if found is None:
            log.warning("entry_resolved", outcome="never reached the exchange")
            status = getattr(self.store, "order_status", None)
            if status is not None:
                with contextlib.suppress(Exception):
                    status(cid, "rejected", note="not found after an unanswered send")
            return
        await self._record("ack", cid, found)
        log.warning("entry_resolved", status=found.get("status"), filled=found.get("filled") or 0.0)
        if float(found.get("filled") or 0.0) > 0.0 or found.get("status") == "open":
            self.owned.add(plan.symbol)
            await self._drive(protect_entry(plan, found, ids, seed), hold=plan.symbol)

    async def settle(self) -> None:
        """Wait for the background look-ups of entries of unknown outcome."""
        while self._resolving:
            await asyncio.gather(*self._resolving, return_exceptions=True)

    async def _sent_before(self, symbol: str, client_id: str) -> ExecResult | None:
        """A named intent replayed after a restart: its entry, if the exchange has it already
        (Binance accepts a filled order's client id twice, so it must not be sent again)."""
        log = self.log.bind(symbol=symbol, client_id=client_id)
        try:
            earlier = await self._lookup(symbol, client_id, trigger=False)
        except Exception as exc:
            log.error("entry_lookup_failed", error=describe(exc))
            return ExecResult("failed", symbol, client_id, reason=f"lookup: {describe(exc)}")
        if earlier is None:
            return None
        log.warning("entry_already_sent", order_id=earlier.get("id"))
        return ExecResult(
            "noop",
            symbol,
            client_id,
            filled=float(earlier.get("filled") or 0.0),
            average=earlier.get("average"),
            entry=earlier,
            reason="this intent was executed before",
        )

    async def apply(self, action: Action) -> ExecResult | None:
        """Carry out one guard sweep action; ``halt`` is a notice (the guard engine applied it).

        The caller logs the ``guard_action`` event with the result (see ``log_action``).
        """
        result: ExecResult | None = None
        for plan in plan_action(action):
            result = await self.run(plan)
        return result

    async def run(self, plan: Plan) -> ExecResult:
        """Execute one exit, stop or cancel plan (entries come through ``submit``)."""
        if isinstance(plan, ExitPlan):
            return await self.exit(plan)
        if isinstance(plan, StopPlan):
            return await self.place_stop(
                plan.symbol, plan.price, plan.tag, if_missing=plan.if_missing
            )
        if isinstance(plan, CancelPlan):
            symbols = [plan.symbol] if plan.symbol is not None else await self._position_symbols()
            count = 0
            for symbol in symbols:
                count += await self.cancel_entries(symbol)
            return ExecResult("noop", plan.symbol or "", reason=f"cancelled {count} entries")
        raise TypeError(f"entries are executed through submit(), not {type(plan).__name__}")

    async def _position_symbols(self) -> list[str]:
        positions = await self._call("fetch_positions", lambda: self.exchange.fetch_positions())
        return [str(p["symbol"]) for p in positions if float(p.get("contracts") or 0.0) > 0.0]

    async def close(
        self, symbol: str, reason: ExitReason = "guard", tag: str = "guard"
    ) -> ExecResult:
        """Cancel the symbol's entry orders and close its position (a reduce-only market)."""
        return await self.exit(ExitPlan(symbol, None, reason, tag))

    async def reduce(
        self, symbol: str, amount: float, reason: ExitReason = "guard", tag: str = "guard"
    ) -> ExecResult:
        """Reduce the position by ``amount`` (rounded down to the step; all of it at most)."""
        return await self.exit(ExitPlan(symbol, amount, reason, tag))

    async def exit(self, plan: ExitPlan) -> ExecResult:
        """Carry out an ``ExitPlan`` (``flows.exit_flow``)."""
        return await self._drive(exit_flow(plan, self._next_seed()), hold=plan.symbol)

    async def place_stop(
        self, symbol: str, stop_price: float, tag: str = "guard", *, if_missing: bool = False
    ) -> ExecResult:
        """Place (or move) the position's stop (``flows.stop_flow``)."""
        flow = stop_flow(symbol, stop_price, self._next_seed(), tag, if_missing=if_missing)
        return await self._drive(flow, hold=symbol)

    async def cancel_entries(self, symbol: str) -> int:
        """Cancel the symbol's resting entry orders (``flows.cancel_entries_flow``)."""
        return await self._drive(cancel_entries_flow(symbol))

    # ------------------------------------------------------------------ state and reconcile

    async def account(
        self, currency: str = "USDT", symbols: Sequence[str] = ()
    ) -> tuple[Account, list[dict[str, Any]]]:
        """The guards' ``Account`` as the exchange sees it, and the open orders.

        Open orders are read per symbol (cheap on Binance: a symbol-less query weighs 40):
        those of the positions, of ``symbols``, and of every symbol this executor set up or
        traded.
        """
        balance = await self._call("fetch_balance", lambda: self.exchange.fetch_balance())
        positions = await self._call("fetch_positions", lambda: self.exchange.fetch_positions())
        wanted = {str(p["symbol"]) for p in positions if float(p.get("contracts") or 0.0) > 0.0}
        for p in positions:
            self._note_mode(p)
        wanted |= set(symbols) | set(self._setup) | self.owned
        orders: list[dict[str, Any]] = []
        for symbol in sorted(wanted):
            orders.extend(await self._open_orders(symbol))
        mode = self._account_margin_mode()
        return account_from_ccxt(balance, positions, orders, currency, mode), orders

    def _account_margin_mode(self) -> MarginMode | None:
        """The margin mode positions are in where the venue sets it account-wide (Bybit's
        unified account: the mode the bot set up), else None (each position says)."""
        if not self.venue.account_wide_margin:
            return None
        modes = {mode for mode, _ in self._setup.values()}
        if len(modes) != 1:
            return None
        return "cross" if modes.pop() == "cross" else "isolated"

    async def reconcile(
        self,
        markets: Mapping[str, MarketRules],
        engine: GuardEngine | None = None,
        *,
        config: GuardsConfig | None = None,
        now: float | None = None,
        marks: Mapping[str, Mark] | None = None,
    ) -> ReconcileReport:
        """Rebuild the picture from the exchange and put every position under guard
        (``bot.trading.reconcile.reconcile``)."""
        return await reconcile(self, markets, engine, config=config, now=now, marks=marks)
