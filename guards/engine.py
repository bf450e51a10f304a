"""``GuardEngine``: composes the rules from config, judges orders, sweeps, and owns the state.

``check(intent, ctx) -> Decision`` evaluates in a fixed order — the engine's halt check (manual,
daily and drawdown halts), then the registry's rules with the engine's data check after
loss_limit: loss_limit, data freshness, no_overnight, overtrading, anti_top_up, trend,
circuit_breaker, stop_loss, position_cap (resize) and liquidation on the final size. The first
refusal decides but every rule's verdict is recorded (rules after a data failure are recorded
as ``not_evaluated``). A ``resize`` verdict adjusts the order the later rules see (amount, an
attached stop, a capped leverage); the allowed ``Decision.intent`` is that adjusted order, with
``Decision.amount``/``stop_price`` equal to its amount and stop, and ``Decision.reason`` names
every rule whose resize changed the size or the leverage, in evaluation order.

Fail closed: an exception in a rule → ``rule_error`` naming the rule; no market rules for the
symbol → ``missing_market``; a missing mark, or one older than ``stale_price_s`` (for the
symbol or any open position) → ``stale_price``; a non-positive or non-finite amount, price or
leverage → ``invalid_intent`` (the data check, ``guards.datacheck``).

Risk-reducing orders always pass, before any check: ``reduce_only=True``, or the opposite side
of an open position with an amount ≤ its size (``Decision.code`` ``reduce_only``/``closing``,
every verdict ``skip``). An opposite order larger than the position (a flip) is refused
(``flip_refused``): close first, then open through the guards.

A margin top-up (``kind="add_margin"``) is judged by the halt and data checks and the rules
that declare ``handles_add_margin`` (anti_top_up); the other rules record ``skip``.

The context is treated as immutable: figures derived from it (equity, margins, cross totals)
are computed once per ``GuardContext`` object and shared by the rules.

``approve(decision)`` seals an allowed decision into an ``ApprovedOrder`` and records the entry
(time of the check, or ``ts``) for the rate limits and the planned stop for the stop sweep: an
approved entry that later fails to fill still counts (conservative).

``sweep(ctx)`` first expires halts and feeds the context's equity to the state (peak, daily
baseline, day roll), then runs the sweep of every enabled rule that has one. Actions are
de-duplicated per symbol (a close supersedes a reduce and a place_stop; the largest reduce wins)
and sorted by urgency. An exception in one rule's sweep does not stop the others: it becomes a
``halt`` action with code ``rule_error`` and an entry in ``last_sweep_errors``. ``halt`` actions
are notices for the shell (log, alert); the engine has already applied any halt to its state.
Missing or stale marks of open positions are reported the same way (code ``stale_price``).

For the shell, with the sweep's own code: ``protective_stop(position, ctx)`` (the stop the
stop_loss sweep would place, or the close when the mark is past it), ``missing_stops(ctx)``
(that for every position without a live stop; both work with the stop_loss rule disabled) and
``liquidation_price(position, ctx)``.

``on_price``, ``on_candle`` and ``on_liquidations`` feed market data to the enabled rules that
override the matching observe hook of ``Rule``. Which rules override which hook (and which have
a sweep) is worked out once per config, a capability list like freqtrade's protections' flags;
the engine names no concrete rule.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from guards.account import LiquidationMemo, account_view, position_liquidation
from guards.actions import order_actions
from guards.calm import Calm, above_floors, calm_of
from guards.config import GuardsConfig
from guards.datacheck import data_verdict
from guards.intents import adjusted
from guards.rules import REGISTRY
from guards.rules.base import STOP_ONLY_CODES, Rule, RuleEnv, overrides
from guards.rules.clock import DayClock
from guards.state import GuardState, Halt
from guards.stops import StopPolicy, missing_stops, protective_stop
from guards.types import (
    Account,
    Action,
    ApprovedOrder,
    Decision,
    Figure,
    GuardContext,
    OrderIntent,
    Position,
    Verdict,
    approve,
    new_decision,
)

__all__ = ["RISK_REDUCING_CODES", "CloseReason", "GuardEngine", "order_actions"]

CloseReason = Literal["stop", "guard", "liquidation", "take_profit", "strategy", "manual", "adl"]
RISK_REDUCING_CODES = frozenset({"reduce_only", "closing"})
#: The rule after which the engine checks data freshness (halts first, then data).
_DATA_AFTER = "loss_limit"
_SIZE_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class _Setup:
    """Everything built from one config; swapped in one assignment by ``reload``."""

    config: GuardsConfig
    day: DayClock
    #: Where a missing stop goes (stop_loss and liquidation settings, enabled or not).
    stops: StopPolicy
    before_data: tuple[Rule[Any], ...]
    after_data: tuple[Rule[Any], ...]
    skipped: tuple[Verdict, ...]
    not_evaluated: tuple[Verdict, ...]
    #: Capabilities: the enabled rules, in evaluation order, that override each hook.
    sweepers: tuple[Rule[Any], ...]
    price_observers: tuple[Rule[Any], ...]
    candle_observers: tuple[Rule[Any], ...]
    liquidation_observers: tuple[Rule[Any], ...]


class GuardEngine:
    """Pure guard engine: no I/O, no clock (time comes from ``ctx.now`` or ``ts``)."""

    HALT_OK = Verdict("halt", "allow", "ok", "")
    HALT_SKIP = Verdict("halt", "skip", "skip", "risk-reducing order")
    DATA_SKIP = Verdict("data", "skip", "skip", "risk-reducing order")

    def __init__(self, config: GuardsConfig, state: GuardState | None = None) -> None:
        self.state = state if state is not None else GuardState()
        self.last_sweep_errors: list[str] = []
        #: Isolated liquidation prices, kept across sweeps and reloads (they depend on no config).
        self.liquidations = LiquidationMemo()
        self._setup = self._build(config)

    # -- configuration ------------------------------------------------------------------
    def _build(self, config: GuardsConfig) -> _Setup:
        day = DayClock(config.loss_limit.timezone, config.loss_limit.day_reset)
        env = RuleEnv(settings=config, state=self.state, day=day, liquidations=self.liquidations)
        rules: list[Rule[Any]] = []
        for name, cls in REGISTRY.items():
            rule_config = config.rule_config(name)
            if rule_config.enabled:
                rules.append(cls(rule_config, env))
        split = next((i + 1 for i, r in enumerate(rules) if r.name == _DATA_AFTER), 0)

        def having(hook: str) -> tuple[Rule[Any], ...]:
            return tuple(r for r in rules if overrides(type(r), hook))

        return _Setup(
            config=config,
            day=day,
            stops=StopPolicy(
                default_stop_pct=config.stop_loss.default_stop_pct,
                stop_buffer_pct=config.liquidation.stop_buffer_pct,
            ),
            before_data=tuple(rules[:split]),
            after_data=tuple(rules[split:]),
            skipped=(
                self.HALT_SKIP,
                self.DATA_SKIP,
                *(Verdict(r.name, "skip", "skip", "risk-reducing order") for r in rules),
            ),
            not_evaluated=tuple(r.not_evaluated for r in rules[split:]),
            sweepers=having("sweep"),
            price_observers=having("observe_price"),
            candle_observers=having("observe_candle"),
            liquidation_observers=having("observe_liquidations"),
        )

    @property
    def config(self) -> GuardsConfig:
        return self._setup.config

    @property
    def rule_names(self) -> tuple[str, ...]:
        """Enabled rules in evaluation order."""
        setup = self._setup
        return tuple(r.name for r in (*setup.before_data, *setup.after_data))

    def reload(self, config: GuardsConfig) -> None:
        """Swap in a new config atomically (the state is kept)."""
        self._setup = self._build(config)

    # -- pre-trade ------------------------------------------------------------------------
    def check(self, intent: OrderIntent, ctx: GuardContext) -> Decision:
        """Judge one order against every enabled rule. Never raises: errors refuse."""
        setup = self._setup
        try:
            return self._check(setup, intent, ctx)
        except Exception as exc:
            verdict = Verdict(
                "engine",
                "reject",
                "rule_error",
                f"engine error {type(exc).__name__}: {exc}",
                None,
                {"error": type(exc).__name__},
            )
            return Decision("reject", intent, 0.0, "rule_error", verdict.reason, (verdict,), None)

    def _check(self, setup: _Setup, intent: OrderIntent, ctx: GuardContext) -> Decision:
        is_order = intent.kind == "order"
        if is_order:
            if intent.reduce_only:
                return self._pass(setup, intent, "reduce_only", "reduce-only order")
            pos = ctx.account.positions.get(intent.symbol)
            if pos is not None and pos.side != intent.side:
                if intent.amount <= pos.amount * (1.0 + _SIZE_EPS):
                    return self._pass(setup, intent, "closing", "closes the open position")
                verdict = Verdict(
                    "engine",
                    "reject",
                    "flip_refused",
                    f"order of {intent.amount:g} would flip the {pos.side} position of "
                    f"{pos.amount:g}: close it first",
                    None,
                    {"position_amount": pos.amount, "order_amount": intent.amount},
                )
                return Decision(
                    "reject", intent, 0.0, verdict.code, verdict.reason, (verdict,), None
                )
        now = ctx.now
        first: Verdict | None = None
        halt = self.state.active_halt(now)
        if halt is None:
            verdicts: list[Verdict] = [self.HALT_OK]
        else:
            first = Verdict(
                "halt",
                "reject",
                "halted",
                f"entries halted ({halt.kind}): {halt.reason}",
                None,
                {
                    "kind": halt.kind,
                    "until": halt.until,
                    "since": halt.since,
                    "reason": halt.reason,
                },
            )
            verdicts = [first]
        cur = intent
        for rule in setup.before_data:
            if is_order or rule.handles_add_margin:
                try:
                    verdict = rule.check(cur, ctx)
                except Exception as exc:
                    verdict = _rule_error(rule, exc)
            else:
                verdict = rule.skip
            verdicts.append(verdict)
            if verdict.outcome == "reject" and first is None:
                first = verdict
        data = data_verdict(intent, ctx, setup.config.stale_price_s)
        verdicts.append(data)
        if data.outcome == "reject":
            verdicts.extend(setup.not_evaluated)
            return self._refuse(intent, first or data, verdicts, cur)
        resized: list[Verdict] = []  # every resize that changed the size or the leverage
        stop_source: Verdict | None = None
        for rule in setup.after_data:
            if is_order or rule.handles_add_margin:
                try:
                    verdict = rule.check(cur, ctx)
                except Exception as exc:
                    verdict = _rule_error(rule, exc)
            else:
                verdict = rule.skip
            verdicts.append(verdict)
            outcome = verdict.outcome
            if outcome == "reject":
                if first is None:
                    first = verdict
            elif outcome == "resize":
                before = cur
                cur = adjusted(cur, verdict)
                if verdict.code in STOP_ONLY_CODES:
                    stop_source = verdict
                elif cur.amount != before.amount or cur.leverage != before.leverage:
                    resized.append(verdict)
        if first is not None:
            return self._refuse(intent, first, verdicts, cur)
        if cur.amount != intent.amount or cur.leverage != intent.leverage:
            assert resized
            return Decision(
                "resize",
                cur,
                cur.amount,
                "resized",
                "; ".join(f"{v.rule}: {v.reason}" for v in resized),  # each resize credited
                tuple(verdicts),
                cur.stop_price,
            )
        if stop_source is not None:
            reason = f"{stop_source.rule}: {stop_source.reason}"
            return Decision(
                "allow", cur, cur.amount, stop_source.code, reason, tuple(verdicts), cur.stop_price
            )
        return new_decision(
            "allow", cur, cur.amount, "ok", "all guards passed", tuple(verdicts), cur.stop_price
        )

    def _pass(self, setup: _Setup, intent: OrderIntent, code: str, reason: str) -> Decision:
        return Decision(
            "allow", intent, intent.amount, code, reason, setup.skipped, intent.stop_price
        )

    @staticmethod
    def _refuse(
        intent: OrderIntent, first: Verdict, verdicts: list[Verdict], cur: OrderIntent
    ) -> Decision:
        return Decision(
            "reject",
            intent,
            0.0,
            first.code,
            f"{first.rule}: {first.reason}",
            tuple(verdicts),
            cur.stop_price,
        )

    def approve(self, decision: Decision, ts: float | None = None) -> ApprovedOrder:
        """Seal an allowed decision; record an opening order as an entry at ``ts``.

        ``ts`` defaults to the ``now`` of the check that made the decision. Raises ValueError
        for a refused decision.
        """
        approved = approve(decision)
        intent = decision.intent
        if decision.code not in RISK_REDUCING_CODES and intent.kind == "order":
            when = ts if ts is not None else _checked_at(decision)
            self.state.record_entry(when)
            if decision.stop_price is not None:
                self.state.symbol(intent.symbol).planned_stop = decision.stop_price
        return approved

    # -- sweep ----------------------------------------------------------------------------
    def sweep(self, ctx: GuardContext) -> list[Action]:
        """What must be done now, most urgent first (see the module docstring)."""
        setup = self._setup
        now = ctx.now
        state = self.state
        actions: list[Action] = []
        errors: list[str] = []
        if state.halt is not None and not state.halt.active(now):
            state.halt = None
        try:
            view = account_view(ctx)
            if view.missing_mark is None:
                self.on_equity(view.equity, now)
                stale = now - view.oldest_mark_ts
                if stale > setup.config.stale_price_s:
                    actions.append(
                        Action(
                            "halt",
                            view.oldest_symbol,
                            "data",
                            "stale_price",
                            f"mark of {view.oldest_symbol} is {stale:.1f} s old",
                            figures={"age_s": stale},
                        )
                    )
            else:
                actions.append(
                    Action(
                        "halt",
                        view.missing_mark,
                        "data",
                        "stale_price",
                        f"no mark price for open position {view.missing_mark}",
                    )
                )
        except Exception as exc:
            errors.append(f"engine: {type(exc).__name__}: {exc}")
            actions.append(
                Action("halt", None, "engine", "rule_error", f"engine: {type(exc).__name__}: {exc}")
            )
        for rule in setup.sweepers:
            try:
                actions.extend(rule.sweep(ctx))
            except Exception as exc:
                message = f"{rule.name} sweep raised {type(exc).__name__}: {exc}"
                errors.append(message)
                actions.append(Action("halt", None, rule.name, "rule_error", message))
        self.last_sweep_errors = errors
        return order_actions(actions) if actions else []  # (a new empty list either way)

    # -- skipping what cannot change a decision -----------------------------------------------
    def calm(self, ctx: GuardContext, refreshed: Collection[str] = ()) -> Calm | None:
        """How far things may move before a sweep at ``ctx`` could act (``guards.calm``).

        Ask it after a sweep that returned no action. ``refreshed``: symbols whose mark the
        driver renews at every check (their age cannot make them stale). None when any
        sweeping rule cannot promise anything, or a position's mark is missing.
        """
        setup = self._setup
        return calm_of(ctx, setup.sweepers, self.state, setup.config.stale_price_s, refreshed)

    def still_calm(
        self, calm: Calm, account: Account, now: float, symbol: str, mark: float, equity: float
    ) -> bool:
        """May the sweep at ``now`` be skipped? ``account`` the guards' account now (the very
        object ``calm`` was made for, or it changed), ``symbol``'s mark just renewed, ``equity``
        the account's. The equity is fed to the state as the sweep would (peak, day)."""
        if calm.account is not account or now >= calm.until:
            return False
        band = calm.bands.get(symbol)
        if band is not None and not band[0] < mark < band[1]:
            return False
        self.on_equity(equity, now)
        return above_floors(calm, self.state, equity)

    # -- figures for the shell --------------------------------------------------------------
    def protective_stop(self, position: Position, ctx: GuardContext) -> Action:
        """The stop the stop_loss sweep would place for ``position`` at ``ctx``.

        A ``place_stop`` action with the stop price (the planned stop of its last approved
        entry if still on the losing side of the mark, else ``stop_loss.default_stop_pct`` from
        entry, rounded to the tick away from entry and pushed clear of liquidation by
        ``liquidation.stop_buffer_pct``), or the ``close`` action when the mark is already past
        it; ``guards.stops.protective_stop``, the very code of the sweep. Works whether or not
        the stop_loss rule is enabled (attaching a stop only reduces risk). Ignores any live
        stop the position has. Raises KeyError without a mark or market rules for its symbol.
        """
        sub = self.state.symbols.get(position.symbol)
        planned = None if sub is None else sub.planned_stop
        return protective_stop(position, ctx, self._setup.stops, planned, self.liquidations)

    def missing_stops(self, ctx: GuardContext) -> list[Action]:
        """``protective_stop`` for every open position of ``ctx`` without a live stop.

        In the account's position order; positions without a mark or market rules are skipped.
        Works whether or not the stop_loss rule is enabled.
        """
        return missing_stops(ctx, self._setup.stops, self.state, self.liquidations)

    def liquidation_price(self, position: Position, ctx: GuardContext) -> float | None:
        """Liquidation price of an open position at ``ctx``, as the liquidation rule sees it.

        ``None`` for a long that no positive price liquidates. Raises KeyError without the
        position's market rules or, for cross, a cross position's mark.
        """
        return position_liquidation(position, ctx, account_view(ctx), self.liquidations)

    # -- state feeds (pure state mutations) -------------------------------------------------
    def on_equity(self, equity: float, ts: float) -> None:
        """Track the equity peak and the trading day's baseline (rolling the day if needed)."""
        state = self.state
        key = self._setup.day.key(ts)
        if key != state.day_key:  # GuardState.roll_day's own test, asked first
            state.roll_day(key)
        if state.day_start_equity is None:
            state.day_start_equity = equity
        peak = state.equity_peak
        if peak is None or equity > peak:
            state.equity_peak = equity

    def on_position_closed(self, symbol: str, reason: CloseReason, pnl: float, ts: float) -> None:
        """Count stop-outs and start the symbol's cooldown.

        Stop-outs: ``guard`` and ``liquidation`` closes, and ``stop`` closes at a loss
        (``pnl`` ≤ 0; a stop that locked in profit is not a stop-out). An auto-deleverage
        (``adl``: the exchange closing a winning position to cover others' losses) is not.
        """
        setup = self._setup
        state = self.state
        state.roll_day(setup.day.key(ts))
        sub = state.symbol(symbol)
        sub.planned_stop = None
        if reason in ("guard", "liquidation") or (reason == "stop" and pnl <= 0.0):
            state.stopouts_today += 1
            until = ts + setup.config.anti_top_up.cooldown_min * 60.0
            if until > sub.cooldown_until:
                sub.cooldown_until = until
                sub.cooldown_reason = f"{reason} close"

    def on_price(self, symbol: str, price: float, ts: float) -> None:
        """Feed a price to the enabled rules that observe prices (the circuit breaker)."""
        observers = self._setup.price_observers
        if observers:
            sub = self.state.symbol(symbol)
            for rule in observers:
                rule.observe_price(sub, price, ts)

    def on_liquidations(self, symbol: str, notional: float, ts: float) -> None:
        """Feed market-wide liquidated notional to the rules that observe it (the breaker)."""
        observers = self._setup.liquidation_observers
        if observers:
            sub = self.state.symbol(symbol)
            for rule in observers:
                rule.observe_liquidations(sub, notional, ts)

    def on_candle(
        self, symbol: str, open: float, high: float, low: float, close: float, ts: float
    ) -> None:
        """Feed one closed candle (``ts`` = its close time) to the rules that observe candles."""
        observers = self._setup.candle_observers
        if observers:
            sub = self.state.symbol(symbol)
            for rule in observers:
                rule.observe_candle(sub, open, high, low, close, ts)

    def on_close(
        self, symbol: str, open: float, high: float, low: float, close: float, ts: float
    ) -> None:
        """A candle closed at ``ts``: ``on_candle`` with it, then ``on_price`` with its close."""
        setup = self._setup
        candles = setup.candle_observers
        prices = setup.price_observers
        if candles or prices:
            sub = self.state.symbols.get(symbol)
            if sub is None:
                sub = self.state.symbol(symbol)
            for rule in candles:
                rule.observe_candle(sub, open, high, low, close, ts)
            for rule in prices:
                rule.observe_price(sub, close, ts)

    def halt(self, reason: str, until: float | None = None, *, ts: float = 0.0) -> bool:
        """Manual kill switch: refuse entries until ``until`` (None: until ``resume()``).

        Positions are left alone (close them deliberately). Returns False if a stronger halt
        (one that needs ``resume()``) is already active.
        """
        return self.state.set_halt(Halt("manual", reason, ts, until))

    def resume(self) -> Halt | None:
        """Lift any halt; returns the lifted one.

        Lifting a drawdown halt restarts the peak, lifting a daily halt restarts the day's
        baseline, at the next equity seen (otherwise the next sweep would halt again).
        """
        state = self.state
        lifted, state.halt = state.halt, None
        if lifted is not None:
            if lifted.kind == "drawdown":
                state.equity_peak = None
            elif lifted.kind == "daily":
                state.day_start_equity = None
        return lifted


def _rule_error(rule: Rule[Any], exc: Exception) -> Verdict:
    """The refusal of a rule whose check raised (fail closed)."""
    return Verdict(
        rule.name,
        "reject",
        "rule_error",
        f"{rule.name} raised {type(exc).__name__}: {exc}",
        None,
        {"error": type(exc).__name__},
    )


def _checked_at(decision: Decision) -> float:
    for verdict in decision.verdicts:
        if verdict.rule == "data":
            now: Figure = verdict.figures.get("now")
            if isinstance(now, int | float) and not isinstance(now, bool):
                return float(now)
    raise ValueError("decision carries no check time: pass ts to approve()")
