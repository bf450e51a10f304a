"""The running bot: price updates → strategy → guard decision → exchange, plus sweeps and jobs.

``Engine`` is exchange-agnostic: it talks to an ``Executor`` over the one exchange protocol (paper
or live). Per price update of a symbol it feeds the guards (breaker window), runs the guard sweep
when the symbol has a position, builds candles and hands closed ones (or the tick) to the
strategy, whose intents go through ``GuardEngine.check`` one at a time under a lock, so a guard
reload or a manual halt switches atomically between two evaluations.

Evidence and state: every decision and action is a structlog event and a row in the store; guard
counters and halts are saved after every change and restored at start (a daily-loss halt and a
manual kill switch survive restarts). Start-up resolves orders left in flight by a crash (looked
up by client id), reconciles with the exchange, then sweeps at once.

Seatbelt mode (no strategy): the engine trades nothing itself; it guards positions opened by hand
(stops attached, caps enforced by cutting back, liquidation distance, flatten, and an opened or
enlarged position that breaks anti-top-up or overtrading is reduced back, with the reason kept).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from bot.exchange.protocol import Exchange
from bot.exchange.shapes import order_role
from bot.exchange.venue import ExitReason
from bot.state.heartbeat import write_heartbeat
from bot.state.store import Store, StoreError
from bot.strategies.base import Strategy
from bot.trading.bars import Bar, BarBuilder
from bot.trading.planning import is_risk_reducing
from bot.trading.results import ExecResult, describe_result, log_action
from bot.trading.seatbelt import Seatbelt
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
)

log = structlog.get_logger("engine")

CONTROL_KEY = "control.manual_halt"


class Execution(Protocol):
    """What the engine needs from ``bot.trading.executor.Executor`` (paper or live alike)."""

    async def submit(self, approved: ApprovedOrder) -> Any: ...

    async def close(self, symbol: str, reason: ExitReason, tag: str) -> Any: ...

    async def reduce(self, symbol: str, amount: float, reason: ExitReason, tag: str) -> Any: ...

    async def place_stop(self, symbol: str, stop_price: float) -> Any: ...

    async def cancel_entries(self, symbol: str) -> Any: ...

    async def apply(self, action: Action) -> ExecResult | None: ...

    async def account(
        self, currency: str = "USDT", symbols: Sequence[str] = ()
    ) -> tuple[Account, list[dict[str, Any]]]: ...


@dataclass(frozen=True)
class AccountView:
    """What the engine knows about the account after one refresh."""

    account: Account
    #: Resting entry (not reduce-only) orders per symbol.
    open_entry_orders: dict[str, int] = field(default_factory=dict)


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
        store: Store,
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
        self.lock = asyncio.Lock()
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

    # -- state ------------------------------------------------------------------------------
    def save_state(self) -> None:
        """Persist the guard state when it changed since the last save (a durable write each)."""
        data = self.guard.state.to_dict()
        text = json.dumps(data, sort_keys=True, default=str)
        if text != self._saved_state:
            self.store.save_guard_state(data, self.clock())
            self._saved_state = text

    async def refresh_account(self) -> AccountView:
        """Re-read balance, positions and open orders; keep the store's positions in step.

        A position that is gone since the last read was closed: the guards hear of it (cooldown,
        stop-out count) with the reason the engine expected, else as a stop on the exchange.
        """
        before = self.view.account.positions
        account, orders = await self.executor.account(self.view.account.currency, self.symbols)
        entries: dict[str, int] = {}
        for order in orders:
            if order_role(order) == "entry":
                sym = str(order.get("symbol"))
                entries[sym] = entries.get(sym, 0) + 1
        self.view = AccountView(account, entries)
        now = self.clock()
        for sym, old in before.items():
            new = self.view.account.positions.get(sym)
            if new is not None and new.side == old.side:
                continue
            reason = self.closing.pop(sym, "stop")
            mark = self.marks[sym].price if sym in self.marks else old.entry_price
            pnl = old.unrealized_pnl(mark)
            self.guard.on_position_closed(sym, reason, pnl, now)
            log.info("position_closed", symbol=sym, reason=reason, pnl=round(pnl, 2))
        self.store.replace_positions(self.view.account.positions.values(), now)
        return self.view

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
        resolved = []
        for row in self.store.orders_in_flight():
            try:
                order = await self.exchange.fetch_order(
                    row.exchange_id or "", row.symbol, {"clientOrderId": row.client_id}
                )
            except Exception as exc:  # not found (never reached the exchange) or unreachable
                name = type(exc).__name__
                if name in ("OrderNotFound", "InvalidOrder", "BadRequest"):
                    self.store.order_status(row.client_id, "rejected", note=f"not found: {name}")
                    resolved.append(f"{row.client_id}: never reached the exchange")
                else:
                    log.error("in_flight_unresolved", client_id=row.client_id, error=repr(exc))
                continue
            self.store.order_ack(row.client_id, order)
            resolved.append(f"{row.client_id}: {order.get('status')}")
        if resolved:
            log.warning("in_flight_resolved", orders=resolved)
        return resolved

    async def start(self) -> None:
        """Resolve in-flight orders, reconcile, sweep once."""
        await self.resolve_in_flight()
        reconcile = getattr(self.executor, "reconcile", None)
        if reconcile is not None:
            report = await reconcile(self.markets, self.guard)
            log.info("reconciled", report=str(report))
        await self.refresh_account()
        self.heartbeat("running")
        if self.strategy is None:  # seatbelt: adopted positions are judged as if just opened
            async with self.lock:
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
        if not queued:
            return
        self.pending[symbol] = []
        for intent in queued:
            await self.handle(intent)

    # -- decisions --------------------------------------------------------------------------
    def record(self, decision: Decision, now: float) -> int:
        """Record a guard decision: a row in the store and a ``guard_decision`` event."""
        self.decisions += 1
        did = self.store.record_decision(decision, now, self.run_id)
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
        return did

    async def handle(self, intent: OrderIntent) -> Decision | None:
        """Check one intent with the guards and, if allowed, execute it."""
        async with self.lock:
            now = self.clock()
            opening = not intent.reduce_only
            if opening and self.entries_stopped:
                log.info("entry_skipped_shutting_down", symbol=intent.symbol)
                return None
            decision = self.guard.check(intent, self.ctx(now))
            # the decision, the counters it moves and the saved guard state commit together
            with self.store.transaction():
                self.record(decision, now)
                if not decision.allowed:
                    return decision
                approved = self.guard.approve(decision)
                self.save_state()
            if is_risk_reducing(decision):
                self.closing[intent.symbol] = "strategy"
            try:
                await self.executor.submit(approved)
            except Exception as exc:
                log.error("execution_failed", symbol=intent.symbol, error=repr(exc))
            await self.refresh_account()
            return decision

    # -- sweep ------------------------------------------------------------------------------
    async def sweep(self, why: str = "job", symbol: str | None = None) -> list[Action]:
        """Run the guard sweep and carry out its actions (most urgent first)."""
        async with self.lock:
            await self._apply_control()
            now = self.clock()
            if self.strategy is None and why != "price":
                await self.refresh_account()
                await self._seatbelt(now)
            actions = self.guard.sweep(self.ctx(now))
            if symbol is not None:
                actions = [a for a in actions if a.symbol in (None, symbol)]
            for action in actions:
                await self._act(action, now)
            if actions:
                await self.refresh_account()
            self.save_state()
            return actions

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
        self.store.record_action(action, now, executed, result, self.run_id)
        log_action(log, action, result)

    # -- seatbelt ---------------------------------------------------------------------------
    async def _seatbelt(self, now: float) -> None:
        """Seatbelt mode: positions opened or enlarged by hand go through the guards."""
        await self.seatbelt.judge(self, now)
        await self.refresh_account()
        self.seatbelt.seen_now(self.view.account.positions)

    # -- control: manual halt / resume through the store -------------------------------------
    async def _apply_control(self) -> None:
        try:
            request = self.store.kv_get(CONTROL_KEY)
        except StoreError:
            return
        if not isinstance(request, dict):
            return
        halt = self.guard.state.halt
        manual_active = halt is not None and halt.kind == "manual"
        if request.get("halted") and not manual_active:
            reason = str(request.get("reason") or "manual halt")
            self.guard.halt(reason, None, ts=self.clock())
            log.warning("kill_switch_on", reason=reason)
            for sym in list(self.view.account.positions):
                self.closing[sym] = "manual"
                await self.executor.close(sym, "manual", "kill_switch")
            await self.refresh_account()
        elif not request.get("halted") and manual_active:
            self.guard.resume()
            log.warning("kill_switch_off")
        self.save_state()

    # -- jobs -------------------------------------------------------------------------------
    async def job_sweep(self) -> None:
        await self.refresh_account()
        await self.sweep("job")

    async def job_flatten(self, tries: int = 5, wait_s: float = 2.0) -> bool:
        """At flat_by: cancel entry orders and close every position, retrying until flat."""
        for attempt in range(1, tries + 1):
            await self.refresh_account()
            if not self.view.account.positions and not any(self.view.open_entry_orders.values()):
                return True
            async with self.lock:
                for sym in self.symbols:
                    if self.view.open_entry_orders.get(sym):
                        await self.executor.cancel_entries(sym)
                for sym in list(self.view.account.positions):
                    self.closing[sym] = "guard"
                    try:
                        await self.executor.close(sym, "guard", "no_overnight:flatten")
                    except Exception as exc:
                        log.error("flatten_failed", symbol=sym, attempt=attempt, error=repr(exc))
            await asyncio.sleep(wait_s if attempt < tries else 0)
        await self.refresh_account()
        flat = not self.view.account.positions
        if not flat:
            log.critical(
                "not_flat_after_flatten", tries=tries, positions=list(self.view.account.positions)
            )
        return flat

    async def job_daily_reset(self) -> None:
        self.save_state()
        log.info("daily_reset", day=self.guard.state.day_key)

    async def job_equity(self) -> None:
        v = self.view
        upnl = sum(
            p.unrealized_pnl(self.marks[s].price)
            for s, p in v.account.positions.items()
            if s in self.marks
        )
        balance = await self.exchange.fetch_balance()
        free = float((balance.get(v.account.currency) or {}).get("free") or 0.0)
        self.free_margin = free
        self.store.record_equity(
            self.clock(),
            v.account.wallet_balance + upnl,
            v.account.wallet_balance,
            free,
            upnl,
            self.run_id,
        )

    def heartbeat(self, status: str = "running") -> None:
        if self.state_dir is None:
            return
        halt = self.guard.state.halt
        write_heartbeat(
            self.state_dir,
            status=status,
            run_id=self.run_id,
            positions=len(self.view.account.positions),
            halted=None if halt is None else halt.kind,
            decisions=self.decisions,
            actions=self.actions,
            interval_s=self.heartbeat_s,
        )

    async def job_heartbeat(self) -> None:
        self.heartbeat("running")

    # -- observation -----------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """A JSON-safe picture of the running bot for the status page and metrics.

        Positions with entry, mark, stop, liquidation price and distance; guard state (halt,
        cooldowns, breaker, counters against their limits); equity and decision/action counts.
        """
        now = self.clock()
        ctx = self.ctx(now)
        cfg = self.guard.config
        state = self.guard.state
        positions = []
        upnl = 0.0
        for sym, p in sorted(self.view.account.positions.items()):
            mark = self.marks.get(sym)
            liq = None
            if sym in self.markets and mark is not None:
                liq = self.guard.liquidation_price(p, ctx)
            price = mark.price if mark is not None else None
            pnl = p.unrealized_pnl(price) if price is not None else None
            upnl += pnl or 0.0
            positions.append(
                {
                    "symbol": sym,
                    "side": p.side,
                    "amount": p.amount,
                    "entry": p.entry_price,
                    "mark": price,
                    "mark_age_s": None if mark is None else now - mark.ts,
                    "stop": p.stop_price,
                    "take_profit": p.take_profit,
                    "liquidation": liq,
                    "liq_distance_pct": (
                        None
                        if liq is None or price is None or price <= 0
                        else abs(price - liq) / price * 100.0
                    ),
                    "leverage": p.leverage,
                    "margin_mode": p.margin_mode,
                    "notional": p.amount * (price if price is not None else p.entry_price),
                    "unrealized_pnl": pnl,
                }
            )
        hour = sum(1 for t in state.entries if t > now - 3600.0)
        day = sum(1 for t in state.entries if t > now - 86400.0)
        halt = state.active_halt(now)
        return {
            "ts": now,
            "run_id": self.run_id,
            "mode": getattr(self.exchange, "id", ""),
            "wallet": self.view.account.wallet_balance,
            "free_margin": self.free_margin,
            "equity": self.view.account.wallet_balance + upnl,
            "positions": positions,
            "halt": None if halt is None else halt.to_dict(),
            "entries_stopped": self.entries_stopped,
            "counters": {
                "entries_last_hour": [hour, cfg.overtrading.max_entries_per_hour],
                "entries_last_day": [day, cfg.overtrading.max_entries_per_day],
                "stopouts_today": [state.stopouts_today, cfg.anti_top_up.max_stopouts_per_day],
            },
            "cooldowns": {
                s: {"until": sub.cooldown_until, "reason": sub.cooldown_reason}
                for s, sub in state.symbols.items()
                if sub.cooldown_until > now
            },
            "breakers": {
                s: {"until": sub.breaker_until, "reason": sub.breaker_reason}
                for s, sub in state.symbols.items()
                if sub.breaker_until > now
            },
            "equity_peak": state.equity_peak,
            "day_start_equity": state.day_start_equity,
            "decisions": self.decisions,
            "actions": self.actions,
            "guards_enabled": [
                n for n in type(cfg).model_fields if getattr(getattr(cfg, n), "enabled", False)
            ],
        }

    # -- reload and shutdown ------------------------------------------------------------------
    async def reload(self, new: GuardsConfig) -> dict[str, Any]:
        """Swap guard parameters between two evaluations; returns the changed keys."""
        async with self.lock:
            changes = diff_keys(
                self.guard.config.model_dump(mode="json"), new.model_dump(mode="json")
            )
            self.guard.reload(new)
        log.warning("config_reloaded", changes=changes)
        return changes

    async def shutdown(self, flatten: bool = False) -> None:
        """Stop entries, cancel resting entry orders, leave stops (or flatten), flush state."""
        self.entries_stopped = True
        async with self.lock:
            try:
                await self.refresh_account()
                for sym in self.symbols:
                    if self.view.open_entry_orders.get(sym):
                        await self.executor.cancel_entries(sym)
                if flatten:
                    for sym in list(self.view.account.positions):
                        self.closing[sym] = "manual"
                        await self.executor.close(sym, "manual", "shutdown:flatten")
            except Exception as exc:
                log.error("shutdown_step_failed", error=repr(exc))
            self.save_state()
            self.store.end_run(self.run_id, self.clock())
        self.heartbeat("stopped")
        log.info("engine_stopped", flatten=flatten)
