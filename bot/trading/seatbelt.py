"""Seatbelt mode: guarding an account a person trades by hand.

With no strategy (``strategy.path = "none"``) the bot opens nothing itself. Each sweep it
compares the positions with the ones it judged last: a position opened or enlarged by hand is
run through the guards as if it had been an order of the amount it grew by, on the account as
it was before, with the stop it has — or, for a position without one, the stop the sweep is
about to attach (``GuardEngine.protective_stop``, the same stop, rounded to the tick and pushed
clear of liquidation). What the guards would not have allowed is cut back with a reduce-only
market order, and the decision and the cut are recorded like any other.

A refusal about the data rather than the position (no fresh mark yet, no market rules, a rule
that raised) cuts nothing: the symbol is judged again at the next sweep. A position whose mark
is already past its protective stop is left to the sweep, which closes it.

**Positions found at start** are not cut by surprise: unless ``seatbelt.act_on_existing`` is
true they are only reported (an ``existing_position`` event with what the guards would do, and
the status page's ``seatbelt_existing``) until ``guardbot seatbelt apply`` records a
confirmation in the store (``SEATBELT_KEY``), which the running bot picks up at its next sweep
(``confirm``) and then judges them like a position just opened. What a person adds after the
start — a new position or a top-up of an existing one — is judged at once. The sweep still
attaches a missing stop to every position (that only reduces risk) and still acts on the
liquidation distance, the daily loss and the session end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

import structlog

from guards import (
    Account,
    Action,
    Decision,
    GuardContext,
    GuardEngine,
    Mark,
    MarketRules,
    OrderIntent,
    Position,
)


class View(Protocol):
    """The account as the engine last read it (``bot.trading.engine.AccountView``)."""

    @property
    def account(self) -> Account: ...

    @property
    def open_entry_orders(self) -> dict[str, int]: ...


class Engine(Protocol):
    """What the seatbelt needs of ``bot.trading.engine.Engine``."""

    @property
    def view(self) -> View: ...

    @property
    def markets(self) -> dict[str, MarketRules]: ...

    @property
    def marks(self) -> dict[str, Mark]: ...

    @property
    def guard(self) -> GuardEngine: ...

    @property
    def executor(self) -> Any: ...

    def record(self, decision: Decision, now: float) -> int | None: ...

    def record_action(self, action: Action, now: float, executed: bool, result: str) -> None: ...


log = structlog.get_logger("seatbelt")

#: Refusals that say nothing about a position (data missing or a rule failing): seatbelt mode
#: waits rather than cutting a position a person opened.
UNJUDGED = frozenset({"stale_price", "missing_market", "rule_error", "invalid_intent"})
#: Store key of ``guardbot seatbelt apply``: {"requested": ts, "applied": ts | None, ...}.
SEATBELT_KEY = "control.seatbelt_apply"


class Seatbelt:
    """The positions as last judged, and the judging of what changed by hand since."""

    def __init__(self, act_on_existing: bool = False) -> None:
        #: Judge the positions found at start at once (else: report, wait for ``confirm``).
        self.act_on_existing = act_on_existing
        #: Positions found at start awaiting confirmation: symbol -> what the guards would do
        #: ("" until it could be judged: no mark yet).
        self.existing: dict[str, str] = {}
        self._started = False
        #: The positions as last judged (a change by hand shows against this).
        self.seen: dict[str, Position] = {}
        #: Symbols whose judgement waits for data (kept at their last judged size).
        self.deferred: set[str] = set()
        #: The positions of the view the last judgement read, less what it cut.
        self.judged: dict[str, Position] = {}

    def confirm(self) -> list[str]:
        """``guardbot seatbelt apply``: the positions found at start are judged at the next
        sweep like positions just opened; returns their symbols."""
        if not self._started:
            self.act_on_existing = True  # confirmed before the first judgement
        symbols = sorted(self.existing)
        for sym in symbols:
            self.seen.pop(sym, None)
        self.existing.clear()
        return symbols

    def _found_at_start(self, positions: Mapping[str, Position]) -> None:
        self._started = True
        if self.act_on_existing or not positions:
            return
        for sym, pos in positions.items():
            self.existing[sym] = ""
            self.seen[sym] = pos
        log.warning(
            "existing_positions_found",
            symbols=sorted(positions),
            hint="left as they are (a missing stop is attached) until `guardbot seatbelt apply` "
            "or seatbelt.act_on_existing = true",
        )

    async def judge(self, engine: Engine, now: float) -> None:
        """Run every position that grew since it was last judged through the guards; cut back
        what they would not have allowed (positions found at start: see the module docstring)."""
        view = engine.view
        if not self._started:
            self._found_at_start(view.account.positions)
        before = self.seen
        self.deferred = set()
        self.judged = dict(view.account.positions)
        for sym in [s for s in self.existing if s not in view.account.positions]:
            del self.existing[sym]  # closed: what opens there now is judged as new
        for sym, pos in view.account.positions.items():
            if self.existing.get(sym) == "":
                self._report_existing(engine, sym, pos, now)
            old = before.get(sym)
            grown = pos.amount - (old.amount if old is not None and old.side == pos.side else 0.0)
            if grown <= 1e-12 or sym not in engine.markets:
                continue
            verdict = self._verdict(engine, sym, pos, old, grown, now)
            if verdict is None:
                continue
            decision = verdict
            engine.record(decision, now)
            if decision.code in UNJUDGED:
                self.deferred.add(sym)
                log.warning("seatbelt_deferred", symbol=sym, code=decision.code)
                continue
            cut = grown - (decision.amount if decision.allowed else 0.0)
            if cut > 1e-12:
                self.judged[sym] = replace(pos, amount=max(0.0, pos.amount - cut))
                await engine.executor.reduce(sym, cut, "guard", f"seatbelt:{decision.code}")
                engine.record_action(
                    Action("reduce", sym, "seatbelt", decision.code, decision.reason, cut),
                    now,
                    True,
                    f"cut {cut:g} of a manual {grown:g}",
                )
                log.warning(
                    "seatbelt_cut",
                    symbol=sym,
                    amount=cut,
                    code=decision.code,
                    reason=decision.reason,
                )
            elif decision.allowed:
                engine.guard.approve(decision, now)

    def _verdict(
        self,
        engine: Engine,
        sym: str,
        pos: Position,
        old: Position | None,
        grown: float,
        now: float,
        dry: bool = False,
    ) -> Decision | None:
        """The guards' decision on ``grown`` of ``pos`` as if just ordered (None: nothing to
        decide now — no data for the protective stop (deferred), or the mark is past it)."""
        view = engine.view
        others = {k: v for k, v in view.account.positions.items() if k != sym}
        if old is not None and old.side == pos.side:
            others[sym] = old
        prior = replace(view.account, positions=others)
        ctx = GuardContext(prior, engine.markets, engine.marks, now, view.open_entry_orders)
        stop = pos.stop_price
        if stop is None:  # judge it with the stop the sweep is about to attach
            action = self._protective(engine, pos, ctx, now)
            if action is None:
                if not dry:
                    self.deferred.add(sym)
                return None
            if action.kind == "close":
                return None  # the mark is past that stop: the sweep closes the position
            stop = action.stop_price
        intent = OrderIntent(
            symbol=sym,
            side=pos.side,
            amount=grown,
            price=engine.marks[sym].price if sym in engine.marks else pos.entry_price,
            leverage=pos.leverage,
            margin_mode=pos.margin_mode,
            stop_price=stop,
            tag="seatbelt:manual",
        )
        return engine.guard.check(intent, ctx)

    def _report_existing(self, engine: Engine, sym: str, pos: Position, now: float) -> None:
        """What the guards would do to a position found at start (logged once it is known)."""
        if sym not in engine.markets or sym not in engine.marks:
            return
        decision = self._verdict(engine, sym, pos, None, pos.amount, now, dry=True)
        if decision is None:
            would = "the sweep closes it if the mark is past its protective stop"
        elif decision.code in UNJUDGED:
            return
        else:
            cut = pos.amount - (decision.amount if decision.allowed else 0.0)
            would = (
                f"would cut {cut:g} of {pos.amount:g} ({decision.code}: {decision.reason})"
                if cut > 1e-12
                else "within the guards: nothing to cut"
            )
        self.existing[sym] = would
        log.warning(
            "existing_position",
            symbol=sym,
            side=pos.side,
            amount=pos.amount,
            would=would,
            hint="guardbot seatbelt apply (or seatbelt.act_on_existing = true) to let it act",
        )

    @staticmethod
    def _protective(engine: Engine, pos: Position, ctx: GuardContext, now: float) -> Action | None:
        """The stop the sweep would attach, with the position in the account (None: no data)."""
        full = GuardContext(
            engine.view.account, engine.markets, engine.marks, now, engine.view.open_entry_orders
        )
        try:
            return engine.guard.protective_stop(pos, full)
        except (KeyError, ValueError) as exc:
            log.warning("seatbelt_deferred", symbol=pos.symbol, code="stale_price", error=repr(exc))
            return None

    def seen_now(self, positions: Mapping[str, Position]) -> None:
        """Remember the positions as judged, from ``positions`` read after the judgement.

        A position that grew (or turned) between the view the judgement read and this read is
        remembered at its judged size, so the growth is judged next time; one that appeared in
        between is not remembered at all. Deferred symbols keep their last judged size.
        """
        seen: dict[str, Position] = {}
        for sym, p in positions.items():
            if sym in self.deferred:
                continue
            judged = self.judged.get(sym)
            if judged is None:
                continue  # opened after the view the judgement read: judged next time
            grew = judged.side != p.side or p.amount > judged.amount + 1e-12
            seen[sym] = judged if grew else p
        seen.update({s: self.seen[s] for s in self.deferred if s in self.seen})
        self.seen = seen
