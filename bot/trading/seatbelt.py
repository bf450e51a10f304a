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


class Seatbelt:
    """The positions as last judged, and the judging of what changed by hand since."""

    def __init__(self) -> None:
        #: The positions as last judged (a change by hand shows against this).
        self.seen: dict[str, Position] = {}
        #: Symbols whose judgement waits for data (kept at their last judged size).
        self.deferred: set[str] = set()
        #: The positions of the view the last judgement read, less what it cut.
        self.judged: dict[str, Position] = {}

    async def judge(self, engine: Engine, now: float) -> None:
        """Run every position that grew since it was last judged through the guards; cut back
        what they would not have allowed."""
        before = self.seen
        self.deferred = set()
        view = engine.view
        self.judged = dict(view.account.positions)
        for sym, pos in view.account.positions.items():
            old = before.get(sym)
            grown = pos.amount - (old.amount if old is not None and old.side == pos.side else 0.0)
            if grown <= 1e-12 or sym not in engine.markets:
                continue
            others = {k: v for k, v in view.account.positions.items() if k != sym}
            if old is not None and old.side == pos.side:
                others[sym] = old
            prior = replace(view.account, positions=others)
            ctx = GuardContext(prior, engine.markets, engine.marks, now, view.open_entry_orders)
            stop = pos.stop_price
            if stop is None:  # judge it with the stop the sweep is about to attach
                action = self._protective(engine, pos, ctx, now)
                if action is None:
                    self.deferred.add(sym)
                    continue
                if action.kind == "close":
                    continue  # the mark is past that stop: the sweep closes the position
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
            decision = engine.guard.check(intent, ctx)
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
