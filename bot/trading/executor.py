"""``Executor``: turns approved orders and guard actions into exchange orders, safely.

Works over any ``bot.exchange.protocol.Exchange`` (paper or live). What it guarantees:

- **Protected entries.** An entry goes out only with a stop: after the entry (market, or a
  resting limit) a stop-market ``closePosition`` order triggered by the *mark* price
  (``workingType=MARK_PRICE``) and, if given, a take-profit of the same kind. If the stop cannot
  be placed the position is closed at once with a reduce-only market order and a critical
  ``naked_position_closed`` event is logged: there is never a position without a stop.
- **Idempotent orders.** Every order carries a client order id derived from the intent
  (``client_order_id``). After an ambiguous failure (timeout, dropped connection, 5xx) the order
  is looked up by that id before anything is re-sent; only a definite "order does not exist"
  allows a re-send, within the retry budget. A retry therefore never doubles a position.
- **Refusals are final.** ``InvalidOrder``, ``InsufficientFunds`` and the like are not retried.
  An authentication or permission error logs a critical ``exchange_auth_failed`` event and sets
  ``halted``: no further entries.
- **Leverage and margin mode** are set per symbol before the first entry (and when they change),
  never above ``max_leverage`` (the guards' cap).
- **Reconcile.** ``reconcile`` fetches positions and open orders, adopts positions the bot did
  not open, lets the guard sweep act on them at once and attaches a stop to every position still
  without one (the stop_loss rule's default distance, never beyond liquidation).

Every send is recorded through the optional ``store`` (``order_intent`` before, ``order_ack``
after). The ccxt-structure helpers ``position_from_ccxt`` / ``account_from_ccxt`` build the
guards' ``Position`` / ``Account`` from what an exchange returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import random
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ccxt.base.errors import DuplicateOrderId, InvalidOrder, NoChange, OrderNotFound

from bot.exchange.protocol import Exchange
from bot.exchange.retry import (
    Backoff,
    RetryPolicy,
    describe,
    is_auth_error,
    is_retryable,
    retry_call,
)
from bot.ops.logging import get_logger
from guards.config import GuardsConfig
from guards.engine import RISK_REDUCING_CODES, GuardEngine
from guards.rules.base import RuleEnv, floor_to_step
from guards.rules.clock import DayClock
from guards.rules.stop_loss import StopLoss
from guards.state import GuardState
from guards.types import (
    Account,
    Action,
    ApprovedOrder,
    GuardContext,
    MarginMode,
    Mark,
    MarketRules,
    OrderIntent,
    Position,
    Side,
)

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
]
OrderRole = Literal["entry", "reduce", "stop", "take_profit"]
MAX_CLIENT_ID = 36
_FILL_EPS = 1e-9


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
    """What one executor call did."""

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
    """What ``reconcile`` found on the exchange and what it did about it."""

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


# ---------------------------------------------------------------------- client ids


def client_order_id(intent: OrderIntent, *, seed: str, role: str = "e") -> str:
    """A deterministic client order id for one order of ``intent``: ``gb<role><24 hex>``.

    It is a digest of the seed — the intent's own ``client_id`` when it has one, else the run
    id and a sequence number — with the symbol and side, so re-sending the same order (or
    replaying a named intent after a restart, whatever size the guards allow this time) reuses
    the id and is recognised. The role letter (``e`` entry, ``s`` stop, ``t`` take-profit) tells
    the orders of one intent apart while they share the digest. At most 36 characters from
    ``[.A-Z:/a-z0-9_-]``, as Binance requires.
    """
    return _cid(role, "|".join((seed, intent.symbol, intent.side)))


def _cid(role: str, payload: str) -> str:
    digest = hashlib.blake2b(payload.encode(), digest_size=12).hexdigest()
    letter = "".join(c for c in role.lower() if c.isalnum())[:1] or "x"
    return f"gb{letter}{digest}"


# ---------------------------------------------------------------------- ccxt structures


def _info(order: Mapping[str, Any]) -> Mapping[str, Any]:
    info = order.get("info")
    return info if isinstance(info, Mapping) else {}


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def _closes_position(order: Mapping[str, Any]) -> bool:
    return _truthy(_info(order).get("closePosition"))


def trigger_price(order: Mapping[str, Any]) -> float | None:
    for key in ("triggerPrice", "stopPrice", "stopLossPrice", "takeProfitPrice"):
        value = order.get(key)
        if value:
            return float(value)
    return None


def order_role(order: Mapping[str, Any]) -> OrderRole:
    """Entry, reduce, stop or take-profit, from a ccxt order structure."""
    info = _info(order)
    reducing = _truthy(order.get("reduceOnly")) or _truthy(info.get("closePosition"))
    trigger = trigger_price(order)
    if trigger is not None and reducing:
        kind = str(order.get("type") or "") + str(info.get("orderType") or info.get("type") or "")
        tp = order.get("takeProfitPrice")
        if (tp and float(tp) == trigger) or "take_profit" in kind.lower():
            return "take_profit"
        return "stop"
    return "reduce" if reducing else "entry"


def wallet_balance(balance: Mapping[str, Any], currency: str = "USDT") -> float:
    """Wallet balance (realised, without unrealised PnL) from a ccxt balance structure."""
    info = balance.get("info")
    if isinstance(info, Mapping):
        for key in ("totalWalletBalance", "walletBalance"):
            if info.get(key) is not None:
                return float(info[key])
        for asset in info.get("assets") or []:
            if (
                isinstance(asset, Mapping)
                and asset.get("asset") == currency
                and asset.get("walletBalance") is not None
            ):
                return float(asset["walletBalance"])
    account = balance.get(currency)
    if isinstance(account, Mapping) and account.get("total") is not None:
        return float(account["total"])
    return 0.0


def position_from_ccxt(p: Mapping[str, Any], orders: Sequence[Mapping[str, Any]] = ()) -> Position:
    """The guards' ``Position`` from a ccxt position and the symbol's open orders."""
    symbol = str(p["symbol"])
    side: Side = "short" if str(p.get("side")) == "short" else "long"
    amount = abs(float(p.get("contracts") or 0.0)) * float(p.get("contractSize") or 1.0)
    entry = float(p.get("entryPrice") or 0.0)
    mode: MarginMode = "cross" if str(p.get("marginMode") or "isolated") == "cross" else "isolated"
    notional = abs(float(p.get("notional") or amount * entry))
    leverage = p.get("leverage")
    if not leverage:
        initial = float(p.get("initialMargin") or 0.0)
        leverage = notional / initial if initial > 0 else 1.0
    lev = float(leverage)
    info = _info(p)
    margin_raw = info.get("isolatedWallet") if mode == "isolated" else None
    if margin_raw is None or float(margin_raw) == 0.0:
        margin_raw = p.get("positionMargin") if mode == "isolated" else None
    margin = float(margin_raw) if margin_raw else notional / lev
    stop = take = None
    exit_side = "sell" if side == "long" else "buy"
    for o in orders:
        if o.get("symbol") != symbol or str(o.get("side")) != exit_side:
            continue
        role = order_role(o)
        if role == "stop" and stop is None:
            stop = trigger_price(o)
        elif role == "take_profit" and take is None:
            take = trigger_price(o)
    stamp = p.get("timestamp")
    return Position(
        symbol=symbol,
        side=side,
        amount=amount,
        entry_price=entry,
        margin_mode=mode,
        leverage=lev,
        margin=margin,
        stop_price=stop,
        take_profit=take,
        opened_at=float(stamp) / 1000.0 if stamp else 0.0,
    )


def account_from_ccxt(
    balance: Mapping[str, Any],
    positions: Sequence[Mapping[str, Any]],
    orders: Sequence[Mapping[str, Any]] = (),
    currency: str = "USDT",
) -> Account:
    """The guards' ``Account`` from ccxt balance, positions and open orders."""
    found: dict[str, Position] = {}
    for p in positions:
        if float(p.get("contracts") or 0.0) > 0.0:
            pos = position_from_ccxt(p, orders)
            found[pos.symbol] = pos
    return Account(wallet_balance(balance, currency), found, currency)


async def fetch_marks(exchange: Exchange, symbols: Sequence[str], now: float) -> dict[str, Mark]:
    """Current marks of ``symbols`` (stamped ``now``), skipping those that cannot be read."""
    marks: dict[str, Mark] = {}
    fetch = getattr(exchange, "fetch_mark", None)
    for symbol in symbols:
        try:
            if fetch is not None:
                value = await fetch(symbol)
            else:
                ticker = await exchange.fetch_ticker(symbol)
                value = ticker.get("markPrice") or ticker.get("last")
        except Exception:
            continue
        if value:
            marks[symbol] = Mark(float(value), now)
    return marks


def describe_result(result: ExecResult | None) -> str:
    """A one-line outcome of an executor call for logs and the store ("noted" for a notice)."""
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


# ---------------------------------------------------------------------- the executor


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
    ) -> None:
        self.exchange = exchange
        self.log = log if log is not None else get_logger("bot.trading.executor")
        self.store = store
        #: Seeds the client ids of unnamed intents: unique per process unless given.
        self.run_id = run_id if run_id is not None else uuid.uuid4().hex[:12]
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
        self._paper = getattr(exchange, "id", "") == "paper"
        #: LiveExchange retries its reads and cancels itself: do not multiply its budget.
        self._exchange_retries = bool(getattr(exchange, "retries_reads", False))

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
        return _cid(role, f"{self._next_seed()}|{symbol}|{what}")

    def _retry_after(self, exc: BaseException) -> float | None:
        hint = getattr(self.exchange, "retry_after_s", None)
        if hint is None:
            return None
        value: float | None = hint(exc)
        return value

    def _backoff(self) -> Backoff:
        return Backoff(
            self.retry,
            sleep=self._sleep,
            clock=self._clock,
            rng=self._rng,
            retry_after=self._retry_after,
        )

    async def _retry(self, op: str, fn: Any) -> Any:
        """A safe-to-repeat call, retried here unless the exchange retries it itself."""
        try:
            if self._exchange_retries:
                return await fn()
            return await retry_call(
                fn,
                op=op,
                policy=self.retry,
                log=self.log,
                sleep=self._sleep,
                clock=self._clock,
                rng=self._rng,
                retry_after=self._retry_after,
            )
        except Exception as exc:
            self._check_auth(exc, op)
            raise

    def _check_auth(self, exc: BaseException, op: str) -> None:
        if is_auth_error(exc) and self.halted is None:
            self.halted = f"authentication failed during {op}: {describe(exc)}"
            self.log.critical(
                "exchange_auth_failed",
                op=op,
                error=describe(exc),
                alert=True,
                consequence="trading stopped: no further entries",
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

    def _exit_params(self, reason: str) -> dict[str, Any]:
        """The paper exchange labels round trips by why they closed (not sent to real ones)."""
        if not self._paper:
            return {}
        return {"reason": "strategy" if reason.startswith("strategy") else "guard"}

    async def _lookup(self, symbol: str, client_id: str, trigger: bool) -> dict[str, Any] | None:
        """The order with ``client_id``, or None when the exchange definitely has none."""
        params: dict[str, Any] = {"clientOrderId": client_id}
        if trigger:
            params["trigger"] = True
        try:
            found: dict[str, Any] = await self._retry(
                "lookup_order", lambda: self.exchange.fetch_order("", symbol, params)
            )
        except OrderNotFound:
            return None
        return found

    async def _place(
        self,
        symbol: str,
        type_: str,
        side: str,
        amount: float,
        price: float | None,
        params: Mapping[str, Any],
        *,
        client_id: str,
        trigger: bool = False,
        role: str = "entry",
    ) -> dict[str, Any]:
        """Send one order idempotently: on an ambiguous failure look it up before re-sending."""
        full = {**params, "clientOrderId": client_id}
        await self._record(
            "intent",
            client_id,
            {
                "symbol": symbol,
                "side": side,
                "type": type_,
                "amount": amount,
                "price": price,
                "params": {**params, "role": role},
            },
        )
        backoff = self._backoff()
        while True:
            try:
                order = await self.exchange.create_order(symbol, type_, side, amount, price, full)
                break
            except Exception as exc:
                self._check_auth(exc, "create_order")
                duplicate = isinstance(exc, DuplicateOrderId) or (
                    isinstance(exc, InvalidOrder) and "uplicate" in str(exc)
                )
                if not duplicate and not is_retryable(exc):
                    raise
                found = await self._lookup(symbol, client_id, trigger)
                if found is not None:
                    self.log.warning(
                        "order_recovered",
                        symbol=symbol,
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
                    symbol=symbol,
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
            current = await self._retry(
                "fetch_order", lambda oid=oid: self.exchange.fetch_order(oid, symbol)
            )
        return current

    async def _position(self, symbol: str) -> dict[str, Any] | None:
        positions = await self._retry(
            "fetch_positions", lambda: self.exchange.fetch_positions([symbol])
        )
        for p in positions:
            if p.get("symbol") == symbol and float(p.get("contracts") or 0.0) > 0.0:
                found: dict[str, Any] = p
                return found
        return None

    async def _open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self._retry(
            "fetch_open_orders", lambda: self.exchange.fetch_open_orders(symbol)
        )
        return found

    async def _cancel(self, order: Mapping[str, Any]) -> bool:
        symbol = str(order.get("symbol"))
        params = {"trigger": True} if trigger_price(order) is not None else {}
        oid = str(order.get("id"))
        try:
            await self._retry(
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
            await self._retry(
                "set_margin_mode", lambda: self.exchange.set_margin_mode(margin_mode, symbol)
            )
        await self._retry("set_leverage", lambda: self.exchange.set_leverage(lev, symbol))
        self._setup[symbol] = (margin_mode, lev)
        self.log.info("symbol_setup", symbol=symbol, margin_mode=margin_mode, leverage=lev)

    # ------------------------------------------------------------------ entries

    async def submit(self, approved: ApprovedOrder) -> ExecResult:
        """Execute an approved order: a protected entry, or a risk-reducing order."""
        intent = approved.intent
        symbol = intent.symbol
        if intent.kind != "order":
            return ExecResult("refused", symbol, reason="only orders are executed")
        if intent.reduce_only or approved.decision.code in RISK_REDUCING_CODES:
            return await self.reduce(symbol, approved.amount, intent.tag or "strategy")
        if self.halted is not None:
            return ExecResult("refused", symbol, reason=f"trading halted: {self.halted}")
        if approved.stop_price is None:
            return ExecResult(
                "refused", symbol, reason="an entry needs a stop-loss (the guards attach one)"
            )
        if self.max_leverage is not None and intent.leverage > self.max_leverage + 1e-9:
            return ExecResult(
                "refused",
                symbol,
                reason=f"leverage {intent.leverage:g} above the cap {self.max_leverage:g}",
            )
        async with self._lock(symbol):
            return await self._enter(approved)

    async def _enter(self, approved: ApprovedOrder) -> ExecResult:
        intent = approved.intent
        symbol = intent.symbol
        stop = approved.stop_price
        assert stop is not None
        seed = intent.client_id or self._next_seed()
        ids = {role: client_order_id(intent, seed=seed, role=role) for role in ("e", "s", "t")}
        log = self.log.bind(symbol=symbol, client_id=ids["e"])
        side = "buy" if intent.side == "long" else "sell"
        exit_side = "sell" if side == "buy" else "buy"
        if intent.client_id:
            # the caller named this intent: if its entry exists already (a replay after a
            # restart), do not send it again (Binance accepts a filled order's id twice)
            try:
                earlier = await self._lookup(symbol, ids["e"], trigger=False)
            except Exception as exc:
                log.error("entry_lookup_failed", error=describe(exc))
                return ExecResult("failed", symbol, ids["e"], reason=f"lookup: {describe(exc)}")
            if earlier is not None:
                log.warning("entry_already_sent", order_id=earlier.get("id"))
                return ExecResult(
                    "noop",
                    symbol,
                    ids["e"],
                    filled=float(earlier.get("filled") or 0.0),
                    average=earlier.get("average"),
                    entry=earlier,
                    reason="this intent was executed before",
                )
        try:
            await self._ensure_setup(symbol, intent.margin_mode, intent.leverage)
        except Exception as exc:
            log.error("symbol_setup_failed", error=describe(exc))
            return ExecResult("failed", symbol, ids["e"], reason=f"setup: {describe(exc)}")
        price = intent.price if intent.order_type == "limit" else None
        try:
            entry = await self._place(
                symbol,
                intent.order_type,
                side,
                approved.amount,
                price,
                {"tag": intent.tag} if self._paper and intent.tag else {},
                client_id=ids["e"],
            )
        except Exception as exc:
            log.error("entry_failed", error=describe(exc))
            return ExecResult("failed", symbol, ids["e"], reason=f"entry: {describe(exc)}")
        if intent.order_type == "market":
            try:
                entry = await self._await_fill(entry, symbol)
            except Exception as exc:
                log.error("entry_status_unknown", error=describe(exc))
        self.owned.add(symbol)
        try:
            return await self._protect_entry(approved, entry, ids, exit_side)
        except Exception as exc:  # a filled entry is never left without its stop
            log.critical("entry_protection_error", error=describe(exc), alert=True)
            resting = entry.get("status") == "open"
            return await self._unprotected(entry, symbol, ids["e"], exc, resting)

    async def _protect_entry(
        self,
        approved: ApprovedOrder,
        entry: dict[str, Any],
        ids: Mapping[str, str],
        exit_side: str,
    ) -> ExecResult:
        """Put the stop (and take-profit) of a placed entry on the exchange."""
        symbol = approved.intent.symbol
        stop = approved.stop_price
        assert stop is not None
        log = self.log.bind(symbol=symbol, client_id=ids["e"])
        filled = float(entry.get("filled") or 0.0)
        resting = entry.get("status") == "open"
        if filled <= _FILL_EPS and not resting:
            log.warning("entry_not_filled", status=entry.get("status"))
            return ExecResult("not_filled", symbol, ids["e"], entry=entry, reason="no fill")
        standing = [
            o
            for o in await self._open_orders(symbol)
            if o.get("side") == exit_side and o.get("id") != entry.get("id")
        ]
        pos = await self._position(symbol)
        size = abs(float(pos.get("contracts") or 0.0)) if pos is not None else 0.0
        if resting:  # a reduce-only stop must also cover what the resting entry will add
            size += float(entry.get("remaining") or approved.amount - filled)
        old_stops = [o for o in standing if order_role(o) == "stop"]
        try:
            stop_order = await self._protect(
                symbol, exit_side, "stopLossPrice", stop, size, ids["s"], old_stops
            )
        except Exception as exc:
            if any(_closes_position(o) for o in old_stops):
                # the position-wide stop already standing still covers everything
                log.error("stop_not_moved", stop=stop, error=describe(exc))
                stop_order = None
            else:
                return await self._unprotected(entry, symbol, ids["e"], exc, resting)
        take_order = None
        if approved.take_profit is not None:
            old_takes = [o for o in standing if order_role(o) == "take_profit"]
            try:
                take_order = await self._protect(
                    symbol,
                    exit_side,
                    "takeProfitPrice",
                    approved.take_profit,
                    size,
                    ids["t"],
                    old_takes,
                )
            except Exception as exc:
                log.warning("take_profit_failed", error=describe(exc), stop=stop)
        if resting and filled <= _FILL_EPS:
            status: ExecStatus = "open"
        elif filled >= approved.amount * (1 - 1e-9):
            status = "filled"
        else:
            status = "partial"
        log.info(
            "entry_protected",
            status=status,
            filled=filled,
            average=entry.get("average"),
            stop=stop,
            take_profit=approved.take_profit,
        )
        return ExecResult(
            status,
            symbol,
            ids["e"],
            filled=filled,
            average=entry.get("average"),
            entry=entry,
            stop=stop_order,
            take_profit=take_order,
        )

    async def _protect(
        self,
        symbol: str,
        exit_side: str,
        key: str,
        price: float,
        size: float,
        client_id: str,
        old: Sequence[Mapping[str, Any]],
    ) -> dict[str, Any] | None:
        """Place a stop (``key="stopLossPrice"``) or take-profit on the mark price and cancel
        the ``old`` ones of that kind once it stands.

        It closes the whole position (``closePosition``) unless such an order already stands:
        Binance allows one per kind and direction, so the new one is then reduce-only for
        ``size``. A position-wide order already at ``price`` is kept as it is.
        """
        for o in old:
            if _closes_position(o) and trigger_price(o) == price:
                for other in old:
                    if other is not o:
                        await self._cancel(other)
                return dict(o)
        params: dict[str, Any] = {key: price, "workingType": "MARK_PRICE"}
        if any(_closes_position(o) for o in old):
            params["reduceOnly"] = True
        else:
            params["closePosition"] = True
        role = "stop" if key == "stopLossPrice" else "take_profit"
        order = await self._place(
            symbol,
            "market",
            exit_side,
            size,
            None,
            params,
            client_id=client_id,
            trigger=True,
            role=role,
        )
        for o in old:
            if o.get("id") != order.get("id"):
                await self._cancel(o)
        return order

    async def _unprotected(
        self,
        entry: Mapping[str, Any],
        symbol: str,
        client_id: str,
        exc: BaseException,
        resting: bool,
    ) -> ExecResult:
        """The stop could not be placed: cancel a resting entry and close whatever filled."""
        if resting:
            try:
                await self._cancel(entry)
            except Exception as cancel_exc:
                self.log.error("entry_cancel_failed", symbol=symbol, error=describe(cancel_exc))
        pos: Mapping[str, Any] | None
        try:
            pos = await self._position(symbol)
        except Exception:  # cannot see the position: close what the entry filled
            filled = float(entry.get("filled") or 0.0)
            side = "long" if entry.get("side") == "buy" else "short"
            pos = {"contracts": filled, "side": side} if filled > 0.0 else None
        if pos is None:
            self.log.error(
                "entry_cancelled_stop_failed",
                symbol=symbol,
                client_id=client_id,
                error=describe(exc),
            )
            return ExecResult(
                "failed", symbol, client_id, entry=entry, reason=f"stop: {describe(exc)}"
            )
        await self._close_naked(symbol, pos, exc, client_id)
        return ExecResult(
            "closed_unprotected",
            symbol,
            client_id,
            filled=float(entry.get("filled") or 0.0),
            average=entry.get("average"),
            entry=entry,
            reason=f"stop could not be placed ({describe(exc)}); position closed",
        )

    # ------------------------------------------------------------------ exits

    async def close(self, symbol: str, reason: str = "guard") -> ExecResult:
        """Cancel the symbol's entry orders and close its position with a reduce-only market."""
        async with self._lock(symbol):
            await self.cancel_entries(symbol)
            pos = await self._position(symbol)
            if pos is None:
                await self._cancel_protection(symbol)
                return ExecResult("noop", symbol, reason="no position")
            return await self._close_position(symbol, pos, reason)

    async def _close_position(self, symbol: str, pos: Mapping[str, Any], reason: str) -> ExecResult:
        amount = abs(float(pos.get("contracts") or 0.0))
        side = "sell" if pos.get("side") == "long" else "buy"
        cid = self._action_cid("c", symbol, f"close:{reason}:{amount}")
        try:
            order = await self._market_exit(symbol, side, amount, reason, cid=cid, role="close")
        except Exception as exc:
            self.log.critical(
                "close_failed", symbol=symbol, reason=reason, error=describe(exc), alert=True
            )
            return ExecResult("failed", symbol, cid, reason=f"close: {describe(exc)}")
        try:
            if await self._position(symbol) is None:
                await self._cancel_protection(symbol)
        except Exception as exc:
            self.log.warning("protection_cleanup_failed", symbol=symbol, error=describe(exc))
        self.log.info(
            "position_closed",
            symbol=symbol,
            reason=reason,
            amount=amount,
            average=order.get("average"),
        )
        return ExecResult(
            "closed",
            symbol,
            cid,
            filled=float(order.get("filled") or 0.0),
            average=order.get("average"),
            entry=order,
            reason=reason,
        )

    async def _close_naked(
        self, symbol: str, pos: Mapping[str, Any], exc: BaseException, client_id: str
    ) -> ExecResult:
        """A position whose stop could not be placed: close it now and raise the alarm."""
        result = await self._close_position(symbol, pos, "naked")
        self.log.critical(
            "naked_position_closed",
            symbol=symbol,
            client_id=client_id,
            error=describe(exc),
            closed=result.status == "closed",
            alert=True,
        )
        return result

    async def _market_exit(
        self, symbol: str, side: str, amount: float, reason: str, *, cid: str, role: str
    ) -> Mapping[str, Any]:
        """A reduce-only market order, waited on until filled (raises on failure)."""
        order = await self._place(
            symbol,
            "market",
            side,
            amount,
            None,
            {"reduceOnly": True, **self._exit_params(reason)},
            client_id=cid,
            role=role,
        )
        return await self._await_fill(order, symbol)

    async def _cancel_protection(self, symbol: str) -> None:
        """Cancel stop / take-profit orders left on a flat symbol."""
        for o in await self._open_orders(symbol):
            if order_role(o) in ("stop", "take_profit"):
                await self._cancel(o)

    async def reduce(self, symbol: str, amount: float, reason: str = "guard") -> ExecResult:
        """Reduce the position by ``amount`` (rounded down to the step; all of it at most)."""
        async with self._lock(symbol):
            pos = await self._position(symbol)
            if pos is None:
                return ExecResult("noop", symbol, reason="no position")
            size = abs(float(pos.get("contracts") or 0.0))
            step = await self._amount_step(symbol)
            qty = min(amount, size)
            if step > 0.0 and qty < size:
                qty = floor_to_step(qty, step)
            if qty <= 0.0:
                return ExecResult("noop", symbol, reason=f"amount {amount:g} rounds to zero")
            if qty >= size:
                return await self._close_position(symbol, pos, reason)
            side = "sell" if pos.get("side") == "long" else "buy"
            cid = self._action_cid("r", symbol, f"reduce:{reason}:{qty}")
            try:
                order = await self._market_exit(symbol, side, qty, reason, cid=cid, role="reduce")
            except Exception as exc:
                self.log.error("reduce_failed", symbol=symbol, error=describe(exc))
                return ExecResult("failed", symbol, cid, reason=f"reduce: {describe(exc)}")
            self.log.info("position_reduced", symbol=symbol, amount=qty, reason=reason)
            return ExecResult(
                "reduced",
                symbol,
                cid,
                filled=float(order.get("filled") or 0.0),
                average=order.get("average"),
                entry=order,
                reason=reason,
            )

    async def place_stop(self, symbol: str, stop_price: float, reason: str = "guard") -> ExecResult:
        """Place (or move) the position's stop; old stops are cancelled after the new one stands.

        If no stop can be placed and none is left standing, the position is closed.
        """
        async with self._lock(symbol):
            pos = await self._position(symbol)
            if pos is None:
                return ExecResult("noop", symbol, reason="no position")
            existing = [o for o in await self._open_orders(symbol) if order_role(o) == "stop"]
            for o in existing:
                if trigger_price(o) == stop_price:
                    return ExecResult("noop", symbol, stop=o, reason="stop already there")
            side = "sell" if pos.get("side") == "long" else "buy"
            size = abs(float(pos.get("contracts") or 0.0))
            cid = self._action_cid("s", symbol, f"stop:{stop_price}")
            try:
                order = await self._protect(
                    symbol, side, "stopLossPrice", stop_price, size, cid, existing
                )
            except Exception as exc:
                if existing:
                    self.log.error(
                        "stop_move_failed",
                        symbol=symbol,
                        stop=stop_price,
                        kept=trigger_price(existing[0]),
                        error=describe(exc),
                    )
                    return ExecResult("failed", symbol, cid, reason=f"stop: {describe(exc)}")
                await self._close_naked(symbol, pos, exc, cid)
                return ExecResult(
                    "closed_unprotected",
                    symbol,
                    cid,
                    reason=f"stop could not be placed ({describe(exc)}); position closed",
                )
            self.log.info("stop_placed", symbol=symbol, stop=stop_price, reason=reason)
            return ExecResult("stop_placed", symbol, cid, stop=order, reason=reason)

    async def cancel_entries(self, symbol: str | None = None) -> int:
        """Cancel resting entry orders (of ``symbol``); returns how many were cancelled."""
        count = 0
        for o in await self._open_orders(symbol):
            if order_role(o) == "entry" and await self._cancel(o):
                count += 1
        if count:
            self.log.info("entries_cancelled", symbol=symbol, count=count)
        return count

    async def apply(self, action: Action) -> ExecResult | None:
        """Carry out one guard sweep action; ``halt`` is a notice (the guard engine applied it).

        The caller logs the ``guard_action`` event with the result (see ``log_action``).
        """
        reason = f"{action.rule}:{action.code}"
        if action.kind == "halt":
            return None
        symbols = [action.symbol] if action.symbol is not None else await self._position_symbols()
        result: ExecResult | None = None
        for symbol in symbols:
            if action.kind == "close":
                result = await self.close(symbol, reason)
            elif action.kind == "reduce" and action.amount:
                result = await self.reduce(symbol, action.amount, reason)
            elif action.kind == "place_stop" and action.stop_price is not None:
                result = await self.place_stop(symbol, action.stop_price, reason)
            elif action.kind == "cancel_entries":
                count = await self.cancel_entries(symbol)
                result = ExecResult("noop", symbol, reason=f"cancelled {count} entries")
        return result

    async def _position_symbols(self) -> list[str]:
        positions = await self._retry("fetch_positions", lambda: self.exchange.fetch_positions())
        return [str(p["symbol"]) for p in positions if float(p.get("contracts") or 0.0) > 0.0]

    # ------------------------------------------------------------------ state and reconcile

    async def account(
        self, currency: str = "USDT", symbols: Sequence[str] = ()
    ) -> tuple[Account, list[dict[str, Any]]]:
        """The guards' ``Account`` as the exchange sees it, and the open orders.

        Open orders are read per symbol (cheap on Binance: a symbol-less query weighs 40):
        those of the positions, of ``symbols``, and of every symbol this executor set up or
        traded.
        """
        balance = await self._retry("fetch_balance", lambda: self.exchange.fetch_balance())
        positions = await self._retry("fetch_positions", lambda: self.exchange.fetch_positions())
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
        """Rebuild the picture from the exchange and put every position under guard.

        Adopts positions this executor did not open, runs the guard sweep on them (when
        ``engine`` is given) and carries out its actions, then attaches a stop to every
        position still without one, as the stop_loss rule places it (``default_stop_pct`` from
        entry, moved no closer to liquidation than ``liquidation.stop_buffer_pct``; closed if
        the mark is already past it). ``config`` defaults to the engine's, ``now`` to the wall
        clock, ``marks`` to the exchange's current marks.
        """
        if config is None:
            config = engine.config if engine is not None else GuardsConfig()
        if now is None:
            now = time.time()
        report = ReconcileReport()
        account, orders = await self.account()
        report.open_orders = len(orders)
        report.positions = dict(account.positions)
        for symbol, pos in account.positions.items():
            if symbol not in self.owned:
                report.adopted.append(symbol)
                self.owned.add(symbol)
                self.log.warning(
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
            live_marks.update(await fetch_marks(self.exchange, missing, now))
        if engine is not None:
            ctx = GuardContext(account, markets, live_marks, now)
            for action in engine.sweep(ctx):
                await self._reconcile_action(action, report)
            account, _ = await self.account()
        state = engine.state if engine is not None else GuardState()
        rule = StopLoss(
            config.stop_loss,
            RuleEnv(
                settings=config,
                state=state,
                day=DayClock(config.loss_limit.timezone, config.loss_limit.day_reset),
            ),
        )
        ctx = GuardContext(account, markets, live_marks, now)
        for action in rule.sweep(ctx):
            await self._reconcile_action(action, report)
        account, _ = await self.account()
        for symbol, pos in account.positions.items():
            if pos.stop_price is None:
                report.errors.append(f"{symbol}: still without a stop after reconcile")
                self.log.critical("position_without_stop", symbol=symbol, alert=True)
        report.positions = dict(account.positions)
        self.log.info("reconciled", **report.to_dict())
        return report

    async def _reconcile_action(self, action: Action, report: ReconcileReport) -> None:
        report.actions.append(action)
        try:
            result = await self.apply(action)
        except Exception as exc:
            report.errors.append(f"{action.kind} {action.symbol}: {describe(exc)}")
            self.log.error("reconcile_action_failed", kind=action.kind, error=describe(exc))
            log_action(self.log, action, f"failed: {describe(exc)}")
            return
        log_action(self.log, action, describe_result(result))
        if result is None:
            return
        if result.status == "stop_placed" and action.stop_price is not None:
            report.stops_placed[result.symbol] = action.stop_price
        elif result.status in ("closed", "closed_unprotected"):
            report.closed.append(result.symbol)
        elif not result.ok:
            report.errors.append(f"{action.kind} {result.symbol}: {result.reason}")
