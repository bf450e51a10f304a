"""``Router``: replay's sender — the execution flows interpreted against a ``PaperCore``.

It takes the same approved decisions and sweep actions as the async
``bot.trading.executor.Executor``, plans them with the same planning functions and carries them
out with the very same flows (``bot.trading.flows``) and venue parameters
(``bot.exchange.venue.PaperVenue``), so replay places the same orders as paper and live. What it
leaves out is what only a network needs (look-ups by client id, re-sends, fill polling, locks):
the paper core answers every request at once and never ambiguously, which keeps replay fast.

The flows' notes are logged at debug level (critical ones at warning), so a replay stays quiet.
Orders the paper core refused are counted in ``rejects`` (the report's ``exchange_rejects``);
what the orders it sent caused (fills, the trades they closed) is handed on by ``take_events``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from typing import Any, TypeVar

import structlog
from ccxt.base.errors import BaseError as CcxtError
from ccxt.base.errors import OrderNotFound

from bot.exchange.venue import PaperVenue
from bot.trading.flows import (
    Cancel,
    Exclusive,
    Held,
    Note,
    Place,
    ReadOrders,
    ReadPosition,
    ReadStep,
    Request,
    Setup,
    cancel_entries_flow,
    entry_flow,
    exit_flow,
    stop_flow,
)
from bot.trading.planning import (
    CancelPlan,
    ExitPlan,
    Plan,
    StopPlan,
    client_order_id,
    plan_action,
    plan_decision,
)
from bot.trading.results import ExecResult
from guards import Action, ApprovedOrder
from paper.core import CoreEvent, PaperCore

log = structlog.get_logger("router")
T = TypeVar("T")


class Router:
    """Synchronous interpreter of the execution flows over one ``PaperCore``."""

    def __init__(
        self, core: PaperCore, *, run_id: str = "replay", allow_unprotected: bool = False
    ) -> None:
        self.core = core
        #: Send entries without a stop (a replay with the guards off shows an unguarded bot).
        self.allow_unprotected = allow_unprotected
        self.venue = PaperVenue()
        self.run_id = run_id
        #: Orders the paper core refused (the replay report's ``exchange_rejects``).
        self.rejects = 0
        self._seq = 0
        self._setup: dict[str, tuple[str, float]] = {}
        self._events: list[CoreEvent] = []
        #: The module logger bound once (the lazy proxy would rebuild it on every note).
        self._log = log.bind()
        #: Whether debug notes are logged at all (replay's notes are debug: skip building them).
        self._debug = self._log.is_enabled_for(logging.DEBUG)
        #: How each kind of request is answered (every member of ``Request``).
        self._answers: dict[type, Callable[[Any], Any]] = {
            Place: self._place,
            Cancel: self._cancel,
            ReadPosition: self._read_position,
            ReadOrders: self._read_orders,
            ReadStep: self._read_step,
            Setup: self._setup_symbol,
            Exclusive: self._exclusive,
            Note: self._note,
        }

    def take_events(self) -> tuple[CoreEvent, ...]:
        """What the orders sent since the last call caused (fills and the trades they closed),
        read once."""
        events = tuple(self._events)
        self._events.clear()
        return events

    def _next_seed(self) -> str:
        self._seq += 1
        return f"{self.run_id}:{self._seq}"

    # ------------------------------------------------------------------ the flows

    def _drive(self, flow: Generator[Request, Any, T]) -> T:
        answer: Any = None
        error: BaseException | None = None
        while True:
            try:
                request = flow.throw(error) if error is not None else flow.send(answer)
            except StopIteration as done:
                result: T = done.value
                return result
            error = None
            try:
                answer = self._answer(request)
            except CcxtError as exc:
                answer, error = None, exc
                if isinstance(request, Place):
                    self.rejects += 1

    def _answer(self, request: Request) -> Any:
        return self._answers[type(request)](request)

    def _place(self, request: Place) -> Any:
        core = self.core
        req = self.venue.request(request.spec)
        params = {**req.params, "clientOrderId": request.client_id}
        order = core.create_order(req.symbol, req.type, req.side, req.amount, req.price, params)
        events = core.order_events()
        if events:
            self._events.extend(events)
        return order

    def _cancel(self, request: Cancel) -> bool:
        standing = request.order
        try:
            self.core.cancel_order(str(standing["id"]), str(standing["symbol"]))
        except OrderNotFound:  # gone already (filled, or cancelled with its position)
            return False
        return True

    def _read_position(self, request: ReadPosition) -> Held | None:
        held = self.core.holding(request.symbol)
        return None if held is None else Held(*held)

    def _read_orders(self, request: ReadOrders) -> list[dict[str, Any]]:
        return self.core.open_orders(request.symbol)

    def _read_step(self, request: ReadStep) -> float:
        return self.core.market_rules(request.symbol).amount_step

    def _setup_symbol(self, request: Setup) -> None:
        wanted = (request.margin_mode, request.leverage)
        if self._setup.get(request.symbol) != wanted:
            self.core.set_margin_mode(request.margin_mode, request.symbol)
            self.core.set_leverage(request.leverage, request.symbol)
            self._setup[request.symbol] = wanted

    def _exclusive(self, request: Exclusive) -> None:
        return None  # one flow at a time here anyway

    def _note(self, request: Note) -> None:
        if request.level == "critical":
            self._log.warning(request.event, **request.fields)
        elif self._debug:
            self._log.debug(request.event, **request.fields)

    # ------------------------------------------------------------------ plans

    def submit(self, approved: ApprovedOrder) -> ExecResult:
        """Execute an approved order: a protected entry, or the exit a risk-reducing one is."""
        intent = approved.intent
        symbol = intent.symbol
        if intent.kind != "order":
            return ExecResult("refused", symbol, reason="only orders are executed")
        try:
            plan = plan_decision(approved, allow_unprotected=self.allow_unprotected)
        except ValueError as exc:
            return ExecResult("refused", symbol, reason=str(exc))
        if isinstance(plan, ExitPlan):
            return self.run(plan)
        seed = plan.client_id or self._next_seed()
        ids = {role: client_order_id(intent, seed=seed, role=role) for role in ("e", "s", "t")}
        return self._drive(entry_flow(plan, ids, self._next_seed()))

    def apply(self, action: Action) -> ExecResult | None:
        """Carry out one sweep action (``halt`` is a notice: nothing to send)."""
        result: ExecResult | None = None
        for plan in plan_action(action):
            result = self.run(plan)
        return result

    def run(self, plan: Plan) -> ExecResult:
        """Execute one exit, stop or cancel plan (entries come through ``submit``)."""
        if isinstance(plan, ExitPlan):
            return self._drive(exit_flow(plan, self._next_seed()))
        if isinstance(plan, StopPlan):
            return self._drive(
                stop_flow(
                    plan.symbol, plan.price, self._next_seed(), plan.tag, if_missing=plan.if_missing
                )
            )
        if isinstance(plan, CancelPlan):
            symbols = [plan.symbol] if plan.symbol is not None else list(self.core.symbols)
            count = sum(self.cancel_entries(s) for s in symbols)
            return ExecResult("noop", plan.symbol or "", reason=f"cancelled {count} entries")
        raise TypeError(f"entries are executed through submit(), not {type(plan).__name__}")

    def cancel_entries(self, symbol: str) -> int:
        """Cancel the symbol's resting entry orders; returns how many."""
        return self._drive(cancel_entries_flow(symbol))
