"""The protective stop of an open position: one source for where a missing stop goes.

``protective_stop`` is what the stop_loss sweep places for a position without a live stop, and
what ``GuardEngine.protective_stop`` / ``GuardEngine.missing_stops`` give the shell (attaching
stops to adopted positions, judging a manual one), whether or not the stop_loss rule is on:

- the planned stop of the symbol's last approved entry, if it is still on the losing side of
  the mark; else ``default_stop_pct`` % from the entry price, rounded to the market's price step
  away from entry (down for a long, up for a short);
- then moved no closer to liquidation than ``stop_buffer_pct`` % of the liquidation price
  (``guards.account.position_liquidation``): a long's stop ≥ liq × (1 + b), a short's
  ≤ liq × (1 − b), rounded to the step toward entry; without a liquidation price (none, or the
  market data to compute it is missing) the stop stands as it is;
- a ``place_stop`` action (code ``stop_missing``) with that stop, or ``close`` (``stop_passed``)
  when the mark is already at or past it. Actions are attributed to the stop_loss rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from guards.account import AccountView, LiquidationMemo, account_view, position_liquidation
from guards.state import GuardState
from guards.types import Action, Figure, GuardContext, Position

__all__ = [
    "STOP_LOSS",
    "StopPolicy",
    "default_stop_price",
    "missing_stops",
    "protective_stop",
    "round_price_away",
]

#: The rule stop actions are attributed to (its name and its ``GuardsConfig`` field).
STOP_LOSS = "stop_loss"


@dataclass(frozen=True, slots=True)
class StopPolicy:
    """The two settings a protective stop depends on."""

    #: ``stop_loss.default_stop_pct``: distance of a default stop from entry, %.
    default_stop_pct: float
    #: ``liquidation.stop_buffer_pct``: how far before liquidation the stop must trigger, %.
    stop_buffer_pct: float


def round_price_away(price: float, step: float, sign: int) -> float:
    """Round a stop price to ``step`` away from entry (down for a long's stop, up for a short)."""
    if step <= 0.0:
        return price
    units = math.floor(price / step + 1e-9) if sign > 0 else math.ceil(price / step - 1e-9)
    return round(units * step, 12)


def default_stop_price(entry: float, sign: int, default_stop_pct: float, step: float) -> float:
    """``default_stop_pct`` % from ``entry`` on the losing side, rounded away from entry."""
    return round_price_away(entry * (1.0 - sign * default_stop_pct / 100.0), step, sign)


def protective_stop(
    p: Position,
    ctx: GuardContext,
    policy: StopPolicy,
    planned_stop: float | None = None,
    memo: LiquidationMemo | None = None,
    view: AccountView | None = None,
) -> Action:
    """The ``place_stop`` (or ``close``) action for ``p`` at ``ctx`` (see the module docstring).

    Raises KeyError when ``ctx`` has no mark or no market rules for the position's symbol.
    """
    symbol = p.symbol
    mark = ctx.marks[symbol].price
    price_step = ctx.markets[symbol].price_step
    s = p.sign
    if planned_stop is not None and s * (mark - planned_stop) > 0:
        stop = planned_stop
    else:
        stop = default_stop_price(p.entry_price, s, policy.default_stop_pct, price_step)
    try:
        liq = position_liquidation(p, ctx, account_view(ctx) if view is None else view, memo)
    except (KeyError, ValueError):
        liq = None  # a stop without the liquidation bound still beats no stop
    if liq is not None:
        buffer = policy.stop_buffer_pct / 100.0
        limit = liq * (1.0 + s * buffer)
        if s * (stop - limit) < 0.0:
            stop = round_price_away(limit, price_step, -s)
    figures: dict[str, Figure] = {"mark": mark, "stop": stop, "liq_price": liq}
    if s * (mark - stop) <= 0.0:
        return Action(
            "close",
            symbol,
            STOP_LOSS,
            "stop_passed",
            f"no live stop and the mark {mark:g} is already past the stop {stop:g}",
            amount=p.amount,
            figures=figures,
        )
    return Action(
        "place_stop",
        symbol,
        STOP_LOSS,
        "stop_missing",
        f"no live stop: place one at {stop:g}",
        amount=p.amount,
        stop_price=stop,
        figures=figures,
    )


def missing_stops(
    ctx: GuardContext,
    policy: StopPolicy,
    state: GuardState,
    memo: LiquidationMemo | None = None,
) -> list[Action]:
    """``protective_stop`` for every open position without a live stop, in account order.

    A position without a mark or market rules is skipped (no data to place a stop at; the
    engine's sweep reports the missing data). ``state`` supplies the planned stops.
    """
    actions: list[Action] = []
    symbols = state.symbols
    marks = ctx.marks
    markets = ctx.markets
    for symbol, p in ctx.account.positions.items():
        if p.stop_price is not None or marks.get(symbol) is None or markets.get(symbol) is None:
            continue
        sub = symbols.get(symbol)
        planned = None if sub is None else sub.planned_stop
        actions.append(protective_stop(p, ctx, policy, planned, memo))
    return actions
