"""``Executor``: sends the plans of ``bot.trading.planning`` to an exchange, safely.

Works over any ``bot.exchange.protocol.Exchange`` (paper or live); the orders themselves come
from the planning layer and their parameters from the exchange's venue (``bot.exchange.venue``).
What it guarantees:

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
  never above ``max_leverage`` (the guards' cap).
- **Reconcile.** ``reconcile`` fetches positions and open orders, adopts positions the bot did
  not open, lets the guard sweep act on them at once and attaches the guards' protective stop
  (``GuardEngine.missing_stops``) to every position still without one.

- **Deadlines, no global lock.** Every exchange call has a deadline that fits its job
  (``Deadlines``): an entry's POST and its look-up are short, so a hung entry costs its own
  symbol at most about 1.7 s before the position it may have opened is read and protected; an
  entry still unknown after that is resolved in the background by its client id. Flows of one
  symbol are serialised only over their protective steps (``flows.Exclusive``); nothing waits on
  another symbol.

Every send is recorded through the optional ``store`` (``order_intent`` before, ``order_ack``
after). An entry is refused while the store cannot write (``writable`` false): an order that
could not be recorded first could not be recovered after a crash. Exits and stops go out anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from ccxt.base.errors import (
    DuplicateOrderId,
    InvalidOrder,
    NoChange,
    OrderNotFound,
    RequestTimeout,
)

from bot.exchange.protocol import Exchange
from bot.exchange.retry import Backoff, RetryPolicy, describe, is_auth_error, is_retryable
from bot.exchange.shapes import account_from_ccxt, trigger_price
from bot.exchange.venue import ExitReason, OrderSpec, venue_for
from bot.trading.flows import (
    Cancel,
    Exclusive,
    Held,
    OutcomeUnknown,
    Place,
    ReadOrders,
    ReadPosition,
    ReadStep,
    Request,
    Setup,
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
    action_client_id,
    client_order_id,
    plan_action,
    plan_decision,
)
from bot.trading.reconcile import reconcile
from bot.trading.results import (
    ExecResult,
    OrderStore,
    ReconcileReport,
)
from guards import (
    Account,
    Action,
    ApprovedOrder,
    GuardEngine,
    GuardsConfig,
    Mark,
    MarketRules,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Seconds one exchange call may take before it counts as unanswered.

    ``entry_s`` + ``lookup_s`` + one position read and the stop's POST stay under 2 s: a hung
    entry's position gets its stop within 2 s of the fill.
    """

    #: One entry POST (no answer: look the order up by client id).
    entry_s: float = 1.2
    #: One look-up of an entry by client id after an unanswered POST.
    lookup_s: float = 0.4
    #: One stop, take-profit or exit POST, or its look-up (then retried within the budget).
    protect_s: float = 3.0
    #: One read: balance, positions, open orders, an order's status.
    read_s: float = 5.0
    #: How long an entry of unknown outcome is looked up in the background before giving up
    #: (a restart resolves it again from the store).
    resolve_s: float = 600.0


class Executor:
    """Places and manages orders on one exchange; see the module docstring."""

    def __init__(
        self,
        exchange: Exchange,
        *,
        log: Any = None,
        store: OrderStore | None = None,
        run_id: str | None = None,
        retry: RetryPolicy | None = None,
        max_leverage: float | None = None,
        fill_timeout_s: float = 15.0,
        poll_s: float = 0.5,
        sleep: Any = asyncio.sleep,
        clock: Any = time.monotonic,
        rng: random.Random | None = None,
        deadlines: Deadlines | None = None,
    ) -> None:
        self.exchange = exchange
        self.venue = venue_for(str(getattr(exchange, "id", "")))
        self.log = log if log is not None else structlog.get_logger("bot.trading.executor")
        self.store = store
        #: Seeds the client ids of unnamed intents: unique per process unless given.
        self.run_id = run_id if run_id is not None else uuid.uuid4().hex[:12]
        #: Budget for re-sending an order the exchange definitely did not get.
        self.retry = retry if retry is not None else RetryPolicy()
        self.max_leverage = max_leverage
        self.fill_timeout_s = fill_timeout_s
        self.poll_s = poll_s
        #: Why entries are refused (an authentication failure), else None.
        self.halted: str | None = None
        #: Symbols whose positions this executor opened or adopted.
        self.owned: set[str] = set()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._seq = 0
        self._setup: dict[str, tuple[str, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.deadlines = deadlines if deadlines is not None else Deadlines()
        #: Background look-ups of entries whose outcome is unknown.
        self._resolving: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ plumbing

    def _lock(self, symbol: str) -> asyncio.Lock:
        lock = self._locks.get(symbol)
        if lock is None:
            lock = self._locks[symbol] = asyncio.Lock()
        return lock

    def _next_seed(self) -> str:
        self._seq += 1
        return f"{self.run_id}:{self._seq}"

    def _action_cid(self, role: str, symbol: str, what: str) -> str:
        return action_client_id(self._next_seed(), role, symbol, what)

    def _retry_after(self, exc: BaseException) -> float | None:
        hint = getattr(self.exchange, "retry_after_s", None)
        if hint is None:
            return None
        value: float | None = hint(exc)
        return value

    async def _call(self, op: str, fn: Any, deadline: float | None = None) -> Any:
        """One exchange call within ``deadline`` (default: a read's); an authentication error
        stops trading."""
        try:
            return await within(self.deadlines.read_s if deadline is None else deadline, op, fn)
        except Exception as exc:
            self._check_auth(exc, op)
            raise

    @property
    def store_writable(self) -> bool:
        return bool(getattr(self.store, "writable", True))

    def _check_auth(self, exc: BaseException, op: str) -> None:
        if is_auth_error(exc) and self.halted is None:
            self.halted = f"authentication failed during {op}: {describe(exc)}"
            self.log.critical(
                "exchange_auth_failed",
                op=op,
                error=describe(exc),
                alert=True,
                consequence="trading stopped: check the API key, its permissions and IP whitelist",
            )

    async def _record(self, method: str, client_id: str, payload: Any) -> None:
        store = self.store
        if store is None:
            return
        try:
            if method == "intent":
                result = store.order_intent(client_id, **payload)
            else:
                result = store.order_ack(client_id, payload)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # the store is for audit: never block trading on it
            self.log.error("store_write_failed", client_id=client_id, error=describe(exc))

    async def _lookup(
        self, symbol: str, client_id: str, trigger: bool, deadline: float | None = None
    ) -> dict[str, Any] | None:
        """The order with ``client_id``, or None when the exchange definitely has none."""
        params: dict[str, Any] = {"clientOrderId": client_id}
        if trigger:
            params.update(self.venue.trigger_params())
        try:
            found: dict[str, Any] = await self._call(
                "lookup_order", lambda: self.exchange.fetch_order("", symbol, params), deadline
            )
        except OrderNotFound:
            return None
        return found

    async def _send(self, spec: OrderSpec, client_id: str) -> dict[str, Any]:
        """Send one order idempotently: on an ambiguous failure look it up before re-sending."""
        req = self.venue.request(spec)
        trigger = spec.trigger is not None
        full = {**req.params, "clientOrderId": client_id}
        entry = spec.kind == "entry"
        if entry and not self.store_writable:
            raise StoreUnwritable("the state store cannot write: entries are refused")
        post_s = self.deadlines.entry_s if entry else self.deadlines.protect_s
        lookup_s = self.deadlines.lookup_s if entry else self.deadlines.protect_s
        await self._record(
            "intent",
            client_id,
            {
                "symbol": req.symbol,
                "side": req.side,
                "type": req.type,
                "amount": req.amount,
                "price": req.price,
                "params": {
                    **req.params,
                    "role": spec.kind,
                    "reason": spec.reason,
                    "tag": spec.tag,
                },
            },
        )
        if entry and not self.store_writable:  # the intent itself could not be recorded
            raise StoreUnwritable("the state store cannot write: entries are refused")
        backoff = Backoff(
            self.retry,
            sleep=self._sleep,
            clock=self._clock,
            rng=self._rng,
            retry_after=self._retry_after,
        )
        while True:
            try:
                order = await within(
                    post_s,
                    "create_order",
                    lambda: self.exchange.create_order(
                        req.symbol, req.type, req.side, req.amount, req.price, full
                    ),
                )
                break
            except Exception as exc:
                self._check_auth(exc, "create_order")
                duplicate = isinstance(exc, DuplicateOrderId) or (
                    isinstance(exc, InvalidOrder) and "uplicate" in str(exc)
                )
                if not duplicate and not is_retryable(exc):
                    raise
                try:
                    found = await self._lookup(req.symbol, client_id, trigger, lookup_s)
                except Exception as lookup_exc:
                    if not entry or not is_retryable(lookup_exc):
                        raise
                    raise OutcomeUnknown(
                        f"{describe(exc)}; look-up by client id: {describe(lookup_exc)}"
                    ) from exc
                if found is not None:
                    self.log.warning(
                        "order_recovered",
                        symbol=req.symbol,
                        client_id=client_id,
                        order_id=found.get("id"),
                        after=describe(exc),
                    )
                    order = found
                    break
                if duplicate or not await backoff.wait(exc):
                    raise
                self.log.warning(
                    "order_resend",
                    symbol=req.symbol,
                    client_id=client_id,
                    attempt=backoff.retries + 1,
                    after=describe(exc),
                )
        await self._record("ack", client_id, order)
        return order

    async def _await_fill(self, order: dict[str, Any], symbol: str) -> dict[str, Any]:
        """Poll a market order until it is no longer open (bounded by ``fill_timeout_s``)."""
        start = self._clock()
        current = order
        while current.get("status") == "open":
            if self._clock() - start > self.fill_timeout_s:
                self.log.warning("order_not_filled_in_time", symbol=symbol, order_id=order["id"])
                return current
            await self._sleep(self.poll_s)
            oid = str(current.get("id") or order.get("id"))
            current = await self._call(
                "fetch_order", lambda oid=oid: self.exchange.fetch_order(oid, symbol)
            )
        return current

    async def _position(self, symbol: str) -> dict[str, Any] | None:
        positions = await self._call(
            "fetch_positions", lambda: self.exchange.fetch_positions([symbol])
        )
        for p in positions:
            if p.get("symbol") == symbol and float(p.get("contracts") or 0.0) > 0.0:
                found: dict[str, Any] = p
                return found
        return None

    async def _open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self._call(
            "fetch_open_orders", lambda: self.exchange.fetch_open_orders(symbol)
        )
        return found

    async def _cancel(self, order: Mapping[str, Any]) -> bool:
        symbol = str(order.get("symbol"))
        params = self.venue.trigger_params() if trigger_price(order) is not None else {}
        oid = str(order.get("id"))
        try:
            await self._call(
                "cancel_order", lambda: self.exchange.cancel_order(oid, symbol, params)
            )
        except OrderNotFound:
            return False
        return True

    async def _amount_step(self, symbol: str) -> float:
        markets = await self.exchange.load_markets()
        precision = (markets.get(symbol) or {}).get("precision") or {}
        step = precision.get("amount")
        return float(step) if step else 0.0

    # ------------------------------------------------------------------ symbol settings

    async def prepare(
        self, symbols: Sequence[str], margin_mode: str, leverage: float
    ) -> dict[str, str]:
        """Set margin mode and leverage (capped at ``max_leverage``) on each symbol up front.

        A symbol that refuses (e.g. a position open in the other margin mode) is logged and
        returned as ``{symbol: error}``; its entries retry the set-up and fail until it works.
        """
        failed: dict[str, str] = {}
        for symbol in symbols:
            try:
                await self._ensure_setup(symbol, margin_mode, leverage)
            except Exception as exc:
                failed[symbol] = describe(exc)
                self.log.error("symbol_setup_failed", symbol=symbol, error=describe(exc))
        return failed

    async def _ensure_setup(self, symbol: str, margin_mode: str, leverage: float) -> None:
        lev = leverage
        if self.max_leverage is not None and lev > self.max_leverage:
            lev = self.max_leverage
        if self._setup.get(symbol) == (margin_mode, lev):
            return
        with contextlib.suppress(NoChange):
            await self._call(
                "set_margin_mode", lambda: self.exchange.set_margin_mode(margin_mode, symbol)
            )
        await self._call("set_leverage", lambda: self.exchange.set_leverage(lev, symbol))
        self._setup[symbol] = (margin_mode, lev)
        self.log.info("symbol_setup", symbol=symbol, margin_mode=margin_mode, leverage=lev)

    # ------------------------------------------------------------------ the flows

    async def _drive(self, flow: Generator[Request, Any, T], hold: str | None = None) -> T:
        """Interpret one ``bot.trading.flows`` flow against the exchange.

        ``hold``: take the symbol's lock from the start (exits and stops); an entry flow asks
        for it itself (``Exclusive``) once its own order is answered.
        """
        held: asyncio.Lock | None = None
        if hold is not None:
            held = self._lock(hold)
            await held.acquire()
        try:
            answer: Any = None
            error: BaseException | None = None
            while True:
                try:
                    request = flow.throw(error) if error is not None else flow.send(answer)
                except StopIteration as done:
                    result: T = done.value
                    return result
                error = None
                if isinstance(request, Exclusive):
                    if held is None:
                        held = self._lock(request.symbol)
                        await held.acquire()
                    answer = None
                    continue
                try:
                    answer = await self._answer(request)
                except Exception as exc:
                    answer, error = None, exc
        finally:
            if held is not None:
                held.release()

    async def _answer(self, request: Request) -> Any:
        if isinstance(request, Place):
            return await self._place(request.spec, request.client_id)
        if isinstance(request, Cancel):
            return await self._cancel(request.order)
        if isinstance(request, ReadPosition):
            pos = await self._position(request.symbol)
            if pos is None:
                return None
            return Held(str(pos.get("side")), abs(float(pos.get("contracts") or 0.0)))
        if isinstance(request, ReadOrders):
            return await self._open_orders(request.symbol)
        if isinstance(request, ReadStep):
            return await self._amount_step(request.symbol)
        if isinstance(request, Setup):
            await self._ensure_setup(request.symbol, request.margin_mode, request.leverage)
            return None
        if isinstance(request, Exclusive):  # taken by _drive
            return None
        getattr(self.log, request.level)(request.event, **request.fields)
        return None

    async def _place(self, spec: OrderSpec, client_id: str) -> dict[str, Any]:
        """Send an order; a market order is awaited until filled (``fill_timeout_s``)."""
        order = await self._send(spec, client_id)
        if spec.type != "market" or spec.trigger is not None:
            return order
        try:
            return await self._await_fill(order, spec.symbol)
        except Exception as exc:
            if spec.kind == "exit":
                raise
            self.log.error("entry_status_unknown", symbol=spec.symbol, error=describe(exc))
            return order

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
        wanted |= set(symbols) | set(self._setup) | self.owned
        orders: list[dict[str, Any]] = []
        for symbol in sorted(wanted):
            orders.extend(await self._open_orders(symbol))
        return account_from_ccxt(balance, positions, orders, currency), orders

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


class StoreUnwritable(Exception):
    """The state store cannot record an entry's intent: the entry is not sent."""


async def within(seconds: float, op: str, fn: Callable[[], Awaitable[T]]) -> T:
    """``await fn()`` within ``seconds``; no answer in time is ccxt's ``RequestTimeout`` (a
    transient failure: the caller's idempotent re-send or look-up applies)."""
    try:
        async with asyncio.timeout(seconds):
            return await fn()
    except TimeoutError:
        raise RequestTimeout(f"{op}: no answer within {seconds:g} s") from None
