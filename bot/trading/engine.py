"""The running bot: price updates → strategy → guard decision → exchange, plus sweeps and jobs.

``Engine`` is exchange-agnostic: it talks to an ``Executor`` over the one exchange protocol (paper
or live). Per price update of a symbol it feeds the guards (breaker window), runs the guard sweep
when the symbol has a position, builds candles and hands closed ones (or the tick) to the
strategy, whose intents go through ``GuardEngine.check`` one at a time. Decisions are plain
synchronous code, so a guard reload or a manual halt lands between two evaluations.

No lock is held across a network wait. With ``background=True`` (the running bot) the exchange
work a decision or a sweep action needs runs as a task per symbol (``bot.trading.tasks``): a
slow or hung call delays only its own symbol's queue, never price handling, the sweep, or
another symbol; a symbol with work in flight keeps its next intents until its view is fresh.
The account is re-read in the background after each piece of work (coalesced; an older read
never overwrites a newer one). With ``background=False`` every step is awaited in place
(tests and the parity check against replay).

Bookkeeping never blocks risk reduction: the store is a ``SafeStore`` when it is one; while it
cannot write, entries are refused (code ``store_unwritable``) and everything else goes on.

Evidence and state: every decision and action is a structlog event and a row in the store; guard
counters and halts are saved after every change and restored at start (a daily-loss halt and a
manual kill switch survive restarts). Start-up resolves orders left in flight by a crash (looked
up by client id), reconciles with the exchange, then sweeps at once.

Seatbelt mode (no strategy): the engine trades nothing itself; it guards positions opened by hand
(stops attached, caps enforced by cutting back, liquidation distance, flatten, and an opened or
enlarged position that breaks anti-top-up or overtrading is reduced back, with the reason kept).
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import structlog

from bot.exchange.protocol import Exchange
from bot.exchange.reach import Reachability
from bot.exchange.shapes import order_role
from bot.state.heartbeat import HealthLimits
from bot.state.safe import SafeStore
from bot.state.store import Store
from bot.state.trips import RoundTrip
from bot.strategies.base import Strategy
from bot.trading import routines
from bot.trading.account import AccountView, Coalesced, Execution
from bot.trading.bars import Bar, BarBuilder
from bot.trading.closes import Closes
from bot.trading.planning import is_risk_reducing
from bot.trading.reconcile import resolve_in_flight
from bot.trading.recorder import Recorder
from bot.trading.results import describe_result, log_action
from bot.trading.seatbelt import Seatbelt
from bot.trading.snapshot import beat, snapshot, track_unprotected
from bot.trading.tasks import Tasks
from guards import (
    Account,
    Action,
    ApprovedOrder,
    CloseReason,
    Decision,
    GuardContext,
    GuardEngine,
    GuardsConfig,
    Mark,
    MarketRules,
    OrderIntent,
    Position,
)

log = structlog.get_logger("engine")


def diff_keys(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{dotted key: [old, new]}`` for every leaf that differs."""
    out: dict[str, Any] = {}
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        path = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out.update(diff_keys(a, b, path + "."))
        elif a != b:
            out[path] = [a, b]
    return out


class Engine:
    """One bot process's trading loop (see the module docstring)."""

    def __init__(
        self,
        *,
        exchange: Exchange,
        executor: Execution,
        store: Store | SafeStore,
        guard: GuardEngine,
        markets: Mapping[str, MarketRules],
        strategy: Strategy | None,
        symbols: tuple[str, ...],
        timeframe_ms: int,
        run_id: str,
        state_dir: Any = None,
        clock: Callable[[], float] = time.time,
        on_price_hook: Callable[[str, float, float], object] | None = None,
        heartbeat_s: float | None = None,
        background: bool = False,
        reach: Sequence[Reachability] = (),
        limits: HealthLimits | None = None,
    ) -> None:
        self.exchange = exchange
        self.executor = executor
        self.store = store
        self.guard = guard
        self.markets = dict(markets)
        self.strategy = strategy
        self.symbols = symbols
        self.run_id = run_id
        self.state_dir = state_dir
        self.clock = clock
        self.on_price_hook = on_price_hook
        self.marks: dict[str, Mark] = {}
        self.bars = {s: BarBuilder(timeframe_ms) for s in symbols}
        #: Intents decided at a bar close, executed at the symbol's next price.
        self.pending: dict[str, list[OrderIntent]] = {s: [] for s in symbols}
        self.view = AccountView(Account(0.0, {}))
        self.entries_stopped = False
        self.tasks = Tasks(background)
        self.decisions = 0
        self.actions = 0
        self._saved_state = ""
        #: Seatbelt mode: judges positions opened or enlarged by hand.
        self.seatbelt = Seatbelt()
        #: Free margin as of the last equity snapshot (None until then).
        self.free_margin: float | None = None
        #: Heartbeat interval, written into the heartbeat so `guardbot health` knows its limit.
        self.heartbeat_s = heartbeat_s
        #: Why the engine itself is closing a symbol (for the guards' stop-out accounting).
        self.closing: dict[str, CloseReason] = {}
        #: The exchange connections whose answers health is judged on.
        self.reach = tuple(reach)
        self.limits = limits or HealthLimits(
            stale_price_s=guard.config.stale_price_s, sweep_s=guard.config.sweep_s
        )
        #: When the last start-up or scheduled sweep completed (epoch s).
        self.last_sweep: float | None = None
        #: When ``start`` began (epoch s).
        self.started_at: float | None = None
        #: ``{symbol: since when}`` for positions seen without a stop.
        self.unprotected_since: dict[str, float] = {}
        self._reads = 0  # account reads started
        self._applied = 0  # the newest read applied
        self._rereads = Coalesced(self._reread, "refresh_account")
        self._after_work = 0  # the re-read ticket of the latest piece of work
        self._recorder: Recorder | None = None
        #: How closes are learnt and counted (from the fills once ``recorder`` is set).
        self.closes = Closes(self)
        self._beat_failed = False

    @property
    def recorder(self) -> Recorder | None:
        """The fills' record (``bot.trading.recorder``); closes come from it when set."""
        return self._recorder

    @recorder.setter
    def recorder(self, recorder: Recorder | None) -> None:
        self._recorder = recorder
        self.closes.from_fills = recorder is not None

    @property
    def store_down(self) -> str | None:
        """Why the store cannot write (None while it can, or when it is a plain ``Store``)."""
        return self.store.down if isinstance(self.store, SafeStore) else None

    @property
    def store_writable(self) -> bool:
        return self.store_down is None

    def write(self, what: str, fn: Callable[[Store], Any], key: str | None = None) -> Any:
        """One write through the ``SafeStore`` (kept for later when it cannot write), or
        straight to a plain store."""
        if isinstance(self.store, SafeStore):
            return self.store.write(what, fn, key)
        return fn(self.store)

    # -- state ------------------------------------------------------------------------------
    def save_state(self) -> None:
        """Persist the guard state when it changed since the last save (a durable write each)."""
        data = self.guard.state.to_dict()
        text = json.dumps(data, sort_keys=True, default=str)
        if text != self._saved_state:
            now = self.clock()
            self.write("guard_state", lambda s: s.save_guard_state(data, now), "guard_state")
            self._saved_state = text

    async def refresh_account(self) -> AccountView:
        """Re-read balance, positions and open orders; keep the store's positions in step.

        A position that is gone since the last read was closed: the guards hear of it (cooldown,
        stop-out count) with the reason the engine expected, else as a stop on the exchange.
        """
        self._reads += 1
        seq = self._reads
        account, orders = await self.executor.account(self.view.account.currency, self.symbols)
        if seq < self._applied:  # a newer read has landed meanwhile
            return self.view
        self._applied = seq
        before = self.view.account.positions
        entries: dict[str, int] = {}
        for order in orders:
            if order_role(order) == "entry":
                sym = str(order.get("symbol"))
                entries[sym] = entries.get(sym, 0) + 1
        self.view = AccountView(account, entries)
        now = self.clock()
        gone = self.closes.gone(before, self.view.account.positions, now)
        held = list(self.view.account.positions.values())
        self.write("positions", lambda s: s.replace_positions(held, now), "positions")
        track_unprotected(self.unprotected_since, self.view.account.positions, now)
        for sym, old in gone:
            await self.tasks.run(("close_fills", sym), partial(self._confirm_close, sym, old, now))
        return self.view

    async def _confirm_close(self, symbol: str, old: Position, now: float) -> None:
        recorder = self.recorder
        assert recorder is not None
        await self.closes.confirm(symbol, old, now, partial(recorder.sync, [symbol]))

    def on_round_trip(self, trip: RoundTrip) -> None:
        """A fill closed (part of) a position (``bot.trading.closes``)."""
        self.closes.on_round_trip(trip)

    async def refreshed(self) -> None:
        """Re-read the account after a piece of work: at once inline; in the background one
        read at a time, with one more queued while one runs (``Coalesced``)."""
        if not self.tasks.background:
            await self.refresh_account()
        else:
            self._after_work = self._rereads.request()

    async def _reread(self) -> None:
        try:
            await self.refresh_account()
        except Exception as exc:
            log.warning("account_refresh_failed", error=f"{type(exc).__name__}: {exc}")

    def busy(self, symbol: str) -> bool:
        """True while the symbol has exchange work in flight or the account read after the
        latest work (of any symbol: the caps count the whole account) is still to land: its
        next intents wait (they would be decided on an old view). Reads asked for later, such
        as the sweep's, do not hold them up."""
        return self.tasks.busy(symbol) or not self._rereads.covers(self._after_work)

    async def settle(self) -> None:
        """Wait for all work in flight and the account reads after it (tests, shutdown)."""
        while True:
            await self.tasks.settle()
            settle = getattr(self.executor, "settle", None)
            if settle is not None:
                await settle()
            await self._rereads.settle()
            if not self.tasks.busy() and not self._rereads.running:
                return

    def ctx(self, now: float | None = None) -> GuardContext:
        return GuardContext(
            account=self.view.account,
            markets=self.markets,
            marks=self.marks,
            now=self.clock() if now is None else now,
            open_entry_orders=self.view.open_entry_orders,
        )

    # -- start ------------------------------------------------------------------------------
    async def resolve_in_flight(self) -> list[str]:
        """Orders recorded as intent/sent before a crash: look each up by client id."""
        return await resolve_in_flight(self.store, self.exchange)

    async def start(self) -> None:
        """Resolve in-flight orders, reconcile, sweep once."""
        self.started_at = self.clock()
        await self.resolve_in_flight()
        reconcile = getattr(self.executor, "reconcile", None)
        if reconcile is not None:
            report = await reconcile(self.markets, self.guard)
            log.info("reconciled", report=str(report))
        await self.refresh_account()
        if self.recorder is not None:  # fills missed while down, then the record set straight
            try:
                await self.recorder.sync()
                await self.recorder.sync_orders()  # how the orders left open ended meanwhile
            except Exception as exc:
                log.warning("fills_reconcile_failed", error=f"{type(exc).__name__}: {exc}")
            self.recorder.align(self.view.account.positions)
        self.heartbeat("running")
        if self.strategy is None:  # seatbelt: adopted positions are judged as if just opened
            await self._seatbelt(self.clock())
        await self.sweep("start")

    # -- prices -----------------------------------------------------------------------------
    async def on_price(self, symbol: str, price: float, ts: float) -> None:
        """One price update (mark) of ``symbol`` at ``ts`` (epoch s).

        In order: the mark is kept and handed to the paper book (when paper) and the guards;
        a bar this price closes goes to the strategy; intents decided at a bar close are
        executed at this price; the guard sweep runs when the symbol has a position; the
        strategy sees the tick.
        """
        if symbol not in self.bars:
            return
        self.marks[symbol] = Mark(price, ts)
        if self.on_price_hook is not None:
            res = self.on_price_hook(symbol, price, ts)
            if inspect.isawaitable(res):
                await res
        self.guard.on_price(symbol, price, ts)
        bar = self.bars[symbol].update(price, int(ts * 1000))
        if bar is not None:
            await self.on_bar(symbol, bar)
        await self._execute_pending(symbol)
        if symbol in self.view.account.positions or self.strategy is None:
            await self.sweep("price", symbol=symbol)
        if bar is None and self.strategy is not None:
            pos = self.view.account.positions.get(symbol)
            for intent in self.strategy.on_tick(symbol, int(ts * 1000), price, pos):
                if self.busy(symbol):  # decided at the next price, on a fresh view
                    self.pending[symbol].append(intent)
                else:
                    await self.handle(intent)

    async def on_clock(self, now: float) -> None:
        """The clock at ``now`` (epoch s): bars whose period has ended close (``on_bar``)."""
        now_ms = int(now * 1000)
        for symbol, builder in self.bars.items():
            bar = builder.close_due(now_ms)
            if bar is not None:
                await self.on_bar(symbol, bar)

    async def on_liquidations(self, symbol: str, notional: float, ts: float) -> None:
        self.guard.on_liquidations(symbol, notional, ts)

    async def on_bar(self, symbol: str, bar: Bar) -> None:
        """A closed bar: the guards' candle feed, then the strategy, whose intents wait for
        the symbol's next price (the moment an order can go out)."""
        close_s = (bar.ts_ms + self.bars[symbol].tf) / 1000.0
        self.guard.on_candle(symbol, bar.open, bar.high, bar.low, bar.close, close_s)
        if self.strategy is None:
            return
        pos = self.view.account.positions.get(symbol)
        intents = self.strategy.on_candle(
            symbol, bar.ts_ms, bar.open, bar.high, bar.low, bar.close, bar.volume, pos
        )
        if intents:
            self.pending[symbol].extend(intents)

    async def _execute_pending(self, symbol: str) -> None:
        queued = self.pending.get(symbol)
        if not queued or self.busy(symbol):
            return
        self.pending[symbol] = []
        for intent in queued:
            await self.handle(intent)

    # -- decisions --------------------------------------------------------------------------
    def record(self, decision: Decision, now: float) -> int | None:
        """Record a guard decision: a row in the store and a ``guard_decision`` event."""
        did = self.write("decision", lambda s: s.record_decision(decision, now, self.run_id))
        self._log_decision(decision, did)
        return did if isinstance(did, int) else None

    def _log_decision(self, decision: Decision, did: int | None) -> None:
        self.decisions += 1
        event = log.info if decision.outcome != "allow" else log.debug
        event(
            "guard_decision",
            symbol=decision.intent.symbol,
            outcome=decision.outcome,
            code=decision.code,
            reason=decision.reason,
            amount=decision.amount,
            decision_id=did,
            verdicts={v.rule: v.outcome for v in decision.verdicts if v.outcome != "skip"},
            figures={v.rule: dict(v.figures) for v in decision.verdicts if v.outcome != "skip"},
        )

    async def handle(self, intent: OrderIntent) -> Decision | None:
        """Check one intent with the guards and, if allowed, execute it (``tasks``)."""
        now = self.clock()
        opening = not intent.reduce_only
        if opening and self.entries_stopped:
            log.info("entry_skipped_shutting_down", symbol=intent.symbol)
            return None
        decision = self.guard.check(intent, self.ctx(now))
        if opening and decision.allowed and not self.store_writable:
            decision = Decision(
                "reject",
                intent,
                0.0,
                "store_unwritable",
                f"the state store cannot write ({self.store_down}): no entries until it can",
                decision.verdicts,
            )
        if not decision.allowed:
            self.write("decision", lambda s: s.record_decision(decision, now, self.run_id))
            self._log_decision(decision, None)
            return decision
        approved = self.guard.approve(decision)
        data = self.guard.state.to_dict()
        # the decision, the counters it moves and the saved guard state commit together
        did = self.write(
            "decision", lambda s: s.record_decision(decision, now, self.run_id, guard_state=data)
        )
        self._saved_state = json.dumps(data, sort_keys=True, default=str)
        self._log_decision(decision, did)
        if opening and not self.store_writable:  # this very write failed: fail closed
            log.warning("entry_not_sent", symbol=intent.symbol, code="store_unwritable")
            return decision
        kind = "exit" if is_risk_reducing(decision) else "entry"
        if kind == "exit":
            self.closing[intent.symbol] = "strategy"
        await self.tasks.run((kind, intent.symbol), partial(self._submit, approved), chain=True)
        return decision

    async def _submit(self, approved: ApprovedOrder) -> None:
        try:
            await self.executor.submit(approved)
        except Exception as exc:
            log.error("execution_failed", symbol=approved.intent.symbol, error=repr(exc))
        await self.refreshed()

    # -- sweep ------------------------------------------------------------------------------
    async def sweep(self, why: str = "job", symbol: str | None = None) -> list[Action]:
        """Run the guard sweep and carry out its actions (most urgent first).

        In the background each action is a task of its symbol; an action already in flight
        for the symbol is not started twice (the next sweep decides again on fresh data).
        """
        await self._apply_control()
        now = self.clock()
        if self.strategy is None and why != "price":
            await self.refresh_account()
            await self._seatbelt(now)
        actions = self.guard.sweep(self.ctx(now))
        if symbol is not None:
            actions = [a for a in actions if a.symbol in (None, symbol)]
        if self.tasks.background:
            for action in actions:
                await self.tasks.run(
                    (action.kind, action.symbol), partial(self._act_alone, action, now)
                )
        else:
            for action in actions:
                await self._act(action, now)
            if actions:
                await self.refresh_account()
        self.save_state()
        if why in ("job", "start"):
            self.last_sweep = self.clock()
        return actions

    async def _act_alone(self, action: Action, now: float) -> None:
        await self._act(action, now)
        await self.refreshed()

    async def _act(self, action: Action, now: float) -> None:
        """Carry out one sweep action through the executor; record and log what came of it."""
        self.actions += 1
        if action.kind == "close" and action.symbol is not None:
            self.closing[action.symbol] = "guard"
        try:
            outcome = await self.executor.apply(action)
            result = describe_result(outcome)
            executed = outcome is not None and outcome.ok
        except Exception as exc:
            result, executed = f"failed: {type(exc).__name__}: {exc}", False
        self.record_action(action, now, executed, result)
        log_action(log, action, result)

    def record_action(self, action: Action, now: float, executed: bool, result: str) -> None:
        """A row for one action (kept for later while the store cannot write)."""
        run_id = self.run_id
        self.write("action", lambda s: s.record_action(action, now, executed, result, run_id))

    # -- seatbelt ---------------------------------------------------------------------------
    async def _seatbelt(self, now: float) -> None:
        """Seatbelt mode: positions opened or enlarged by hand go through the guards."""
        await self.seatbelt.judge(self, now)
        await self.refresh_account()
        self.seatbelt.seen_now(self.view.account.positions)

    # -- control: manual halt / resume through the store -------------------------------------
    # -- control, jobs and shutdown (``bot.trading.routines``) -------------------------------
    async def _apply_control(self) -> None:
        await routines.apply_control(self)

    async def job_flatten(self, tries: int = 5, wait_s: float = 2.0) -> bool:
        """At flat_by: cancel entry orders and close every position, retrying until flat."""
        return await routines.flatten(self, tries, wait_s)

    async def job_equity(self) -> None:
        await routines.equity_snapshot(self)

    async def shutdown(self, flatten: bool = False) -> None:
        """Stop entries, let work in flight finish, cancel resting entry orders, leave stops
        (or flatten), flush state."""
        await routines.shutdown(self, flatten)

    async def job_sweep(self) -> None:
        """The scheduled sweep: on a fresh read of the account when the exchange answers in
        time (half a sweep period in the background), else on the last one -- marks are fresh
        either way, and the read goes on for the next sweep. A slow exchange never makes a
        sweep miss its slot."""
        if self.tasks.background:
            self._rereads.request()
            await self._rereads.wait(0.5 * self.guard.config.sweep_s)
        else:
            try:
                await self.refresh_account()
            except Exception as exc:
                log.warning("account_refresh_failed", error=f"{type(exc).__name__}: {exc}")
        await self.sweep("job")

    async def job_daily_reset(self) -> None:
        self.save_state()
        log.info("daily_reset", day=self.guard.state.day_key)

    def catch_up(self) -> bool:
        """Write what the store could not take when it failed (``SafeStore.catch_up``)."""
        return self.store.catch_up() if isinstance(self.store, SafeStore) else True

    def heartbeat(self, status: str = "running") -> None:
        """Write the heartbeat file with the health facts; a failure is logged once, not per
        beat, and never stops the bot."""
        if self.state_dir is None:
            return
        ok = beat(self, self.state_dir, status, self._beat_failed)
        self._beat_failed = not ok

    async def job_heartbeat(self) -> None:
        self.catch_up()
        self.heartbeat("running")

    # -- observation -----------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """A JSON-safe picture for the status page and metrics (``bot.trading.snapshot``)."""
        return snapshot(self)

    # -- reload and shutdown ------------------------------------------------------------------
    async def reload(self, new: GuardsConfig) -> dict[str, Any]:
        """Swap guard parameters between two evaluations; returns the changed keys."""
        changes = diff_keys(self.guard.config.model_dump(mode="json"), new.model_dump(mode="json"))
        self.guard.reload(new)
        self.limits = HealthLimits(
            stale_price_s=new.stale_price_s,
            sweep_s=new.sweep_s,
            unreachable_s=self.limits.unreachable_s,
            unprotected_s=self.limits.unprotected_s,
        )
        log.warning("config_reloaded", changes=changes)
        return changes
