"""The loss budget: what is left of the daily loss and drawdown limits for new risk.

The worst case of an account at one context is its equity after every open position has been
closed at its stop: ``worst_equity = wallet + Σ stop_value(position)``, where a stop fill is the
trigger slipped by ``slippage_bps`` against the position and pays the market's taker fee
(``stop_value``). It depends on no mark: only on the wallet and the stops.

The loss limits put two floors under it: the day's floor ``day_start_equity × (1 −
max_daily_loss_pct / 100)`` and the drawdown floor ``equity_peak × (1 − max_drawdown_pct /
100)``. What is left of each budget is ``worst_equity − floor``. An entry whose loss at its stop
(``entry_loss``: entry slipped, stop slipped, taker fee on both fills) fits what is left keeps
``worst_equity`` at or above both floors, so a run of stop-outs cannot take the day or the
drawdown past its limit — except by slippage beyond ``slippage_bps`` and a gap past a stop
(see the README's "What the loss limits guarantee").

A position whose loss is not bounded by a stop makes the budget unknown (``unbounded``): an
isolated position without a stop counts as its whole margin lost (its liquidation); a cross
position without one, or one whose market rules are missing, cannot be bounded at all.

Pure arithmetic over plain data; the stop_loss rule sizes entries and tightens stops with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from guards.account import AccountView, account_view, position_margin
from guards.state import GuardState
from guards.types import GuardContext, Position

__all__ = [
    "DAILY_BUDGET",
    "DRAWDOWN_BUDGET",
    "BudgetTerms",
    "LossBudget",
    "StopValues",
    "budget_terms",
    "entry_loss",
    "exit_value",
    "loss_budget",
    "stop_value",
]

#: Codes of the budget that binds (verdicts and figures).
DAILY_BUDGET = "daily_loss_budget"
DRAWDOWN_BUDGET = "drawdown_budget"


def stop_value(
    sign: int, amount: float, entry: float, exit: float, fee: float, slip: float
) -> float:
    """What closing ``amount`` of a position (side ``sign``, entry ``entry``) at trigger ``exit``
    adds to the wallet: the PnL at the slipped fill ``exit * (1 - sign * slip)`` minus the taker
    fee on that fill. Negative for a loss."""
    fill = exit * (1.0 - sign * slip)
    return sign * amount * (fill - entry) - amount * fill * fee


def exit_value(p: Position, exit: float, fee: float, slip: float) -> float:
    """``stop_value`` of the whole position ``p`` closed at ``exit``."""
    return stop_value(p.sign, p.amount, p.entry_price, exit, fee, slip)


def entry_loss(sign: int, entry: float, stop: float, fee: float, slip: float) -> float:
    """Loss per unit of a new entry at ``entry`` stopped at ``stop``: the entry fills at
    ``entry * (1 + sign * slip)``, the stop at ``stop * (1 - sign * slip)``, both pay ``fee``.

    ``sign * (e - x) + fee * (e + x)`` with ``e``, ``x`` those fills; with ``slip = 0`` it is
    the familiar ``|E - S| + fee * (E + S)``.
    """
    e = entry * (1.0 + sign * slip)
    x = stop * (1.0 - sign * slip)
    return sign * (e - x) + fee * (e + x)


@dataclass(frozen=True, slots=True)
class LossBudget:
    """The account's worst case and the loss limits' floors at one context."""

    equity: float
    #: Wallet plus every open position (but the excluded one) closed at its stop.
    worst_equity: float
    day_start_equity: float
    daily_floor: float
    equity_peak: float
    drawdown_floor: float
    #: An open position whose loss no stop bounds (the budget cannot be judged), else None.
    unbounded: str | None = None

    @property
    def daily_left(self) -> float:
        """What is left of the daily loss budget (negative: the worst case is past it)."""
        return self.worst_equity - self.daily_floor

    @property
    def drawdown_left(self) -> float:
        """What is left of the drawdown budget (negative: the worst case is past it)."""
        return self.worst_equity - self.drawdown_floor

    @property
    def floor(self) -> float:
        """The higher of the two floors (the one the worst case must stay above)."""
        return max(self.daily_floor, self.drawdown_floor)

    @property
    def binding(self) -> str:
        """``DAILY_BUDGET`` or ``DRAWDOWN_BUDGET``: the one with less left (daily on a tie)."""
        return DAILY_BUDGET if self.daily_floor >= self.drawdown_floor else DRAWDOWN_BUDGET


#: ``budget_terms``: (equity, worst_equity, day_start_equity, daily_floor, equity_peak,
#: drawdown_floor, unbounded), the fields of a ``LossBudget`` in order.
BudgetTerms = tuple[float, float, float, float, float, float, str | None]


def budget_terms(
    ctx: GuardContext,
    state: GuardState,
    day_key: str,
    daily_keep: float,
    drawdown_keep: float,
    stops: StopValues,
    exclude: str | None = None,
    view: AccountView | None = None,
) -> BudgetTerms:
    """The fields of ``loss_budget`` as a tuple, for callers on a hot path that read a few.

    ``daily_keep`` is ``1 - max_daily_loss_pct / 100``, ``drawdown_keep`` ``1 -
    max_drawdown_pct / 100``; ``stops`` must fit ``ctx`` (``StopValues.fits``); ``view``: the
    context's ``account_view`` when the caller has it.
    """
    if view is None:
        view = account_view(ctx)
    equity = view.equity
    base = state.day_start_equity if state.day_key == day_key else None
    if base is None:
        base = equity
    peak = state.equity_peak
    if peak is None or equity > peak:
        peak = equity
    worst, unbounded = stops.worst_case(ctx, exclude, view)
    return (equity, worst, base, base * daily_keep, peak, peak * drawdown_keep, unbounded)


def loss_budget(
    ctx: GuardContext,
    state: GuardState,
    day_key: str,
    max_daily_loss_pct: float,
    max_drawdown_pct: float,
    slip: float,
    exclude: str | None = None,
    stops: StopValues | None = None,
) -> LossBudget:
    """The ``LossBudget`` of ``ctx``, leaving out the position of ``exclude`` (the symbol of the
    order being judged, whose position the order's own stop decides).

    The day's baseline is the state's ``day_start_equity`` when it belongs to ``day_key``, else
    the equity now (what the next sweep takes as the baseline); the peak is the state's
    ``equity_peak`` or the equity now, whichever is higher. ``stops``: the ``StopValues`` of
    this context's account, when the caller keeps them (else computed here).
    """
    if stops is None or not stops.fits(ctx, slip):
        account_view(ctx)  # the view first, as ever (its errors before the stop values')
        stops = StopValues(ctx, slip)
    return LossBudget(
        *budget_terms(
            ctx,
            state,
            day_key,
            1.0 - max_daily_loss_pct / 100.0,
            1.0 - max_drawdown_pct / 100.0,
            stops,
            exclude,
        )
    )


class StopValues:
    """What closing each open position of one account at its stop adds to the wallet.

    Depends on the account (wallet, positions and their stops), the markets' taker fees and the
    slippage only — not on any mark — so a caller may keep it while the account object is the
    same (``fits``); ``worst_case`` then looks only at the positions whose mark is already past
    their stop (``AccountView.past_stop``, found once per context: a gap the stop has not seen
    yet), whose exit is the mark instead.
    """

    __slots__ = ("account", "markets", "slip", "stopped", "total", "unbounded", "values")

    def __init__(self, ctx: GuardContext, slip: float) -> None:
        account = ctx.account
        markets = ctx.markets
        self.account = account
        self.markets = markets
        self.slip = slip
        values: dict[str, float] = {}
        stopped: set[str] = set()  # the positions a (finite, positive) stop bounds
        self.unbounded: list[str] = []
        total = account.wallet_balance
        down, up = 1.0 - slip, 1.0 + slip
        for symbol, p in account.positions.items():
            market = markets.get(symbol)
            stop = p.stop_price
            if market is None or stop is None or not 0.0 < stop < math.inf:
                if market is not None and stop is None and p.margin_mode == "isolated":
                    value = -position_margin(p)  # bounded by its liquidation: the margin
                    values[symbol] = value
                    total += value
                else:
                    self.unbounded.append(symbol)
                continue
            amount = p.amount
            if p.side == "long":  # stop_value, inlined: this runs for every position
                fill = stop * down
                value = amount * (fill - p.entry_price - fill * market.taker_fee)
                stopped.add(symbol)
            else:
                fill = stop * up
                value = amount * (p.entry_price - fill - fill * market.taker_fee)
                stopped.add(symbol)
            values[symbol] = value
            total += value
        self.values = values
        self.stopped = frozenset(stopped)
        self.total = total

    def fits(self, ctx: GuardContext, slip: float) -> bool:
        """Were these values computed for ``ctx``'s very account, markets and ``slip``?"""
        return self.account is ctx.account and self.markets is ctx.markets and self.slip == slip

    def worst_case(
        self, ctx: GuardContext, exclude: str | None = None, view: AccountView | None = None
    ) -> tuple[float, str | None]:
        """``(worst_equity, unbounded)``: the wallet plus every position but ``exclude`` closed
        at its stop, and the first position no stop bounds (None when all are bounded).
        ``view``: the context's ``account_view`` when the caller has it."""
        worst = self.total
        values = self.values
        if exclude is not None:
            worst -= values.get(exclude, 0.0)
        if view is None:
            view = account_view(ctx)
        # only the positions whose mark is past their stop differ (found once per context)
        for symbol in view.past_stop:
            value = values.get(symbol)
            if value is None or symbol == exclude or symbol not in self.stopped:
                continue
            p = self.account.positions[symbol]
            fee = self.markets[symbol].taker_fee
            worst += exit_value(p, ctx.marks[symbol].price, fee, self.slip) - value
        unbounded = self.unbounded
        if not unbounded:
            return worst, None
        return worst, next((s for s in unbounded if s != exclude), None)
