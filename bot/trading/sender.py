"""``OrderSender``: the exchange side of the ``Executor`` (``bot.trading.executor``).

It sends one order idempotently (``_send``: a deterministic client order id, a look-up by that
id after an ambiguous failure before any re-send, only a definite "does not exist" allowing a
re-send within the retry budget), looks orders up, cancels them, reads positions and open
orders, sets symbols and the account up, and interprets the flows of ``bot.trading.flows``
against the exchange (``_drive``), within the deadlines of ``Deadlines``.

Everything exchange-specific comes from the exchange's venue (``bot.exchange.venue``): an
order's parameters (``Venue.request`` with the market's contract size and the symbol's margin
mode where the venue needs them, ``client_id_params``), the look-up, cancel and set-up
parameters, and what a refusal means (a set-up refusal the venue reads as ``no_change`` is
done). What the flows see is venue-neutral: orders and positions in **base units**
(``Venue.order_in_base``, ``contractSize``), so a stop "covers" a position the same way on
every venue.
"""

from __future__ import annotations

import asyncio
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
from bot.exchange.venue import OrderSpec, SetupCall, venue_for
from bot.exchange.venues import MarginModeName, contract_size
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
)
from bot.trading.results import OrderStore

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


class OrderSender:
    """Sends orders to one exchange and interprets flows; see the module docstring."""

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
        self._account_ready = False
        #: The margin mode of each symbol's position, as last read.
        self._held_mode: dict[str, MarginModeName] = {}
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
        """The order with ``client_id`` (in base units), or None when the exchange definitely
        has none."""
        params = self.venue.lookup_params(client_id, trigger)
        try:
            found: dict[str, Any] = await self._call(
                "lookup_order", lambda: self.exchange.fetch_order("", symbol, params), deadline
            )
        except OrderNotFound:
            return None
        return await self._in_base(found, symbol)

    async def _send(self, spec: OrderSpec, client_id: str) -> dict[str, Any]:
        """Send one order idempotently: on an ambiguous failure look it up before re-sending.

        The venue gives the order its parameters (``Venue.request``: the market's contracts and
        the symbol's margin mode where the venue needs them); the answer is in base units.
        """
        market = await self._market(spec.symbol)
        req = self.venue.request(spec, market, self._margin_mode(spec.symbol, spec.kind == "entry"))
        trigger = spec.trigger is not None
        full = {**req.params, **self.venue.client_id_params(spec, client_id)}
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
                "amount": spec.amount,
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
                order = await self._in_base(order, spec.symbol)
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
        """Poll a market order until it is no longer open (bounded by ``fill_timeout_s``); an
        answer without a status (Bybit's and OKX's create answers carry ids only) is read."""
        start = self._clock()
        current = order
        while current.get("status") in ("open", None):
            if self._clock() - start > self.fill_timeout_s:
                self.log.warning("order_not_filled_in_time", symbol=symbol, order_id=order["id"])
                return current
            await self._sleep(self.poll_s)
            oid = str(current.get("id") or order.get("id"))
            current = await self._call(
                "fetch_order", lambda oid=oid: self.exchange.fetch_order(oid, symbol)
            )
            current = await self._in_base(current, symbol)
        return current

    async def _position(self, symbol: str) -> dict[str, Any] | None:
        positions = await self._call(
            "fetch_positions", lambda: self.exchange.fetch_positions([symbol])
        )
        for p in positions:
            if p.get("symbol") == symbol and float(p.get("contracts") or 0.0) > 0.0:
                found: dict[str, Any] = p
                self._note_mode(found)
                return found
        self._held_mode.pop(symbol, None)
        return None

    async def _open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Open orders (ordinary and trigger), amounts in base units."""
        found: list[dict[str, Any]] = await self._call(
            "fetch_open_orders", lambda: self.exchange.fetch_open_orders(symbol)
        )
        if not self.venue.needs_market:
            return found
        return [await self._in_base(o, str(o.get("symbol"))) for o in found]

    async def _cancel(self, order: Mapping[str, Any]) -> bool:
        symbol = str(order.get("symbol"))
        params = self.venue.cancel_params(order)
        oid = str(order.get("id"))
        try:
            await self._call(
                "cancel_order", lambda: self.exchange.cancel_order(oid, symbol, params)
            )
        except OrderNotFound:
            return False
        return True

    async def _amount_step(self, symbol: str) -> float:
        """The amount step in base units (a contract venue's lot times its contract size)."""
        markets = await self.exchange.load_markets()
        market = markets.get(symbol) or {}
        step = (market.get("precision") or {}).get("amount")
        return self.venue.from_contracts(float(step), market) if step else 0.0

    async def _market(self, symbol: str) -> Mapping[str, Any] | None:
        """The symbol's ccxt market where the venue needs it (else None: Binance's)."""
        if not self.venue.needs_market:
            return None
        markets = await self.exchange.load_markets()
        market: Mapping[str, Any] | None = markets.get(symbol)
        return market

    async def _in_base(self, order: dict[str, Any], symbol: str) -> dict[str, Any]:
        """An order as the flows read it: amounts in base units (``Venue.order_in_base``)."""
        if not self.venue.needs_market:
            return order
        return self.venue.order_in_base(order, await self._market(symbol))

    def _note_mode(self, position: Mapping[str, Any]) -> None:
        """Remember the margin mode a position is held in (its exits and stops use it)."""
        mode = position.get("marginMode")
        if mode in ("isolated", "cross"):
            self._held_mode[str(position.get("symbol"))] = mode

    def _margin_mode(self, symbol: str, entry: bool = False) -> MarginModeName | None:
        """The margin mode an order of ``symbol`` goes out in (OKX: per order): an exit's or a
        stop's is the held position's, an entry's (or one of no known position) the mode the
        symbol was set up in."""
        held = self._held_mode.get(symbol)
        if held is not None and not entry:
            return held
        setup = self._setup.get(symbol)
        if setup is None:
            return None
        return "cross" if setup[0] == "cross" else "isolated"

    # ------------------------------------------------------------------ symbol settings

    async def prepare(
        self, symbols: Sequence[str], margin_mode: str, leverage: float
    ) -> dict[str, str]:
        """Set margin mode and leverage (capped at ``max_leverage``) on each symbol up front.

        A symbol that refuses (e.g. a position open in the other margin mode) is logged and
        returned as ``{symbol: error}``; its entries retry the set-up and fail until it works.
        """
        failed: dict[str, str] = {}
        try:
            await self._ensure_account()
        except Exception as exc:
            failed["account"] = describe(exc)
            self.log.error("account_setup_failed", error=describe(exc))
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
        await self._ensure_account()
        mode: MarginModeName = "cross" if margin_mode == "cross" else "isolated"
        for call in self.venue.setup_calls(symbol, mode, lev):
            await self._setup_call(call)
        self._setup[symbol] = (margin_mode, lev)
        self.log.info("symbol_setup", symbol=symbol, margin_mode=margin_mode, leverage=lev)

    async def _ensure_account(self) -> None:
        """The venue's account set-up (Bybit, OKX: one-way position mode), once."""
        if self._account_ready:
            return
        for call in self.venue.account_setup_calls():
            await self._setup_call(call)
        self._account_ready = True

    async def _setup_call(self, call: SetupCall) -> None:
        """One set-up call; "not modified" (``NoChange``, or the venue's ``no_change``) is done."""
        method = getattr(self.exchange, call.method)
        try:
            if call.params:
                await self._call(call.method, lambda: method(*call.args, call.params))
            else:
                await self._call(call.method, lambda: method(*call.args))
        except NoChange:
            return
        except Exception as exc:
            if self.venue.classify(exc) != "no_change":
                raise

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
            size = abs(float(pos.get("contracts") or 0.0)) * contract_size(pos)
            return Held(str(pos.get("side")), size)
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
