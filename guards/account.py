"""Figures of one account at one context: equity, margins, cross totals, liquidation prices.

``account_view(ctx)`` gives the ``AccountView`` of a ``GuardContext``: equity, total margin,
open-position count, the oldest mark and the cross-margin totals, computed once per context
object and kept on the context itself (a non-init field), so nine rules looking at the same
context pay for one pass over the positions.

``position_liquidation(p, ctx, view, memo)`` is the liquidation price of an open position at a
context, from ``guards.liquidation`` with the market's tiers and liquidation fee rate (cross: the
cross wallet and the other cross positions' maintenance margin and uPnL at their marks). An
isolated position's price does not depend on any mark, so a ``LiquidationMemo`` — one per
``GuardEngine``, handed to the rules in their ``RuleEnv`` — keeps it between sweeps.

No module-level state: every memo here belongs to an object (the context, the engine's memo).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from guards.liquidation import liquidation_price, position_maintenance_margin
from guards.types import GuardContext, Mark, MarketRules, Position

__all__ = [
    "AccountView",
    "LiquidationMemo",
    "account_view",
    "isolated_liquidation",
    "liq_distance_pct",
    "position_liquidation",
    "position_margin",
]


def position_margin(p: Position) -> float:
    """Margin a position holds: its recorded margin, else notional at entry / leverage."""
    if p.margin > 0.0:
        return p.margin
    return p.amount * p.entry_price / (p.leverage if p.leverage > 0.0 else 1.0)


class AccountView:
    """Figures derived from one ``GuardContext``'s account and marks, computed once."""

    __slots__ = (
        "_cross",
        "_markets",
        "_marks",
        "_positions",
        "equity",
        "missing_mark",
        "oldest_mark_ts",
        "oldest_symbol",
        "open_count",
        "past_stop",
        "total_margin",
        "upnl",
        "wallet_balance",
    )

    def __init__(self, ctx: GuardContext) -> None:
        marks = ctx.marks
        upnl = 0.0
        margin = 0.0
        oldest = math.inf
        oldest_symbol: str | None = None
        missing: str | None = None
        past: list[str] = []
        positions = ctx.account.positions
        for symbol, p in positions.items():
            m = marks.get(symbol)
            if p.margin > 0.0:
                margin += p.margin
            else:
                margin += p.amount * p.entry_price / (p.leverage if p.leverage > 0.0 else 1.0)
            if m is None:
                if missing is None:
                    missing = symbol
                continue
            stop = p.stop_price
            if p.side == "long":
                upnl += p.amount * (m.price - p.entry_price)
                if stop is not None and m.price < stop:
                    past.append(symbol)
            else:
                upnl += p.amount * (p.entry_price - m.price)
                if stop is not None and m.price > stop:
                    past.append(symbol)
            if m.ts < oldest:
                oldest = m.ts
                oldest_symbol = symbol
        wallet = ctx.account.wallet_balance
        self.wallet_balance = wallet
        self.upnl = upnl
        self.equity = wallet + upnl
        self.total_margin = margin
        self.open_count = len(positions)
        self.missing_mark = missing
        #: Positions whose mark is already past their stop (a gap the stop has not filled yet).
        self.past_stop: tuple[str, ...] = tuple(past)
        self.oldest_mark_ts = oldest
        self.oldest_symbol = oldest_symbol
        # The context's parts, not the context: the context holds this view (no ref cycle).
        self._positions: Mapping[str, Position] = positions
        self._marks: Mapping[str, Mark] = marks
        self._markets: Mapping[str, MarketRules] = ctx.markets
        self._cross: tuple[float, float, float] | None = None

    def cross_totals(self) -> tuple[float, float, float]:
        """(maintenance margin of cross positions, their uPnL, isolated margin held elsewhere).

        Raises KeyError if a cross position has no market rules or mark.
        """
        totals = self._cross
        if totals is None:
            mm = 0.0
            upnl = 0.0
            isolated = 0.0
            marks = self._marks
            markets = self._markets
            for symbol, p in self._positions.items():
                if p.margin_mode == "isolated":
                    isolated += position_margin(p)
                    continue
                mark = marks[symbol].price
                market = markets[symbol]
                mm += position_maintenance_margin(
                    p.amount, p.entry_price, mark, market.tiers, market.liquidation_fee_rate
                )
                upnl += p.unrealized_pnl(mark)
            totals = self._cross = (mm, upnl, isolated)
        return totals


def account_view(ctx: GuardContext) -> AccountView:
    """The ``AccountView`` of ``ctx``, built on first use and kept on the context."""
    view = ctx._view
    if type(view) is AccountView:
        return view
    view = AccountView(ctx)
    object.__setattr__(ctx, "_view", view)  # the frozen context's one memo slot
    return view


# -- liquidation price of an open position -------------------------------------------------


def isolated_liquidation(p: Position, market: MarketRules) -> float | None:
    """Liquidation price of an isolated position (its margin, the market's tiers and fee)."""
    return liquidation_price(
        side=p.side,
        amount=p.amount,
        entry_price=p.entry_price,
        margin_mode="isolated",
        wallet_balance=position_margin(p),
        tiers=market.tiers,
        liquidation_fee_rate=market.liquidation_fee_rate,
    )


class LiquidationMemo:
    """Isolated liquidation prices by the position's figures and its market's tiers, bounded.

    One per ``GuardEngine``: an isolated position's price depends only on its side, amount,
    entry, margin, tiers and liquidation fee rate, so sweeps after the first cost a dict hit.
    The key holds the tiers' identity, checked on every hit (an id can be reused).
    """

    __slots__ = ("_prices", "limit")

    def __init__(self, limit: int = 8192) -> None:
        self.limit = limit
        self._prices: dict[tuple[object, ...], tuple[object, float | None]] = {}

    def __len__(self) -> int:
        return len(self._prices)

    def clear(self) -> None:
        self._prices.clear()

    def isolated(self, p: Position, market: MarketRules) -> float | None:
        """``isolated_liquidation(p, market)``, remembered."""
        tiers = market.tiers
        fee = market.liquidation_fee_rate
        margin = p.margin if p.margin > 0.0 else position_margin(p)
        key = (p.side, p.amount, p.entry_price, margin, id(tiers), fee)
        prices = self._prices
        hit = prices.get(key)
        if hit is not None and hit[0] is tiers:
            return hit[1]
        liq = isolated_liquidation(p, market)
        if len(prices) >= self.limit:
            prices.clear()
        prices[key] = (tiers, liq)
        return liq


def position_liquidation(
    p: Position,
    ctx: GuardContext,
    view: AccountView | None = None,
    memo: LiquidationMemo | None = None,
) -> float | None:
    """Liquidation price of an open position at this context.

    Isolated: from its own margin (through ``memo`` when given). Cross: from the cross wallet
    (wallet minus isolated margins) and the other cross positions' maintenance margin and uPnL
    at their marks (``view`` defaults to ``account_view(ctx)``). Raises KeyError when the
    position's market rules or (cross) a cross position's mark are missing.
    """
    market = ctx.markets[p.symbol]
    if p.margin_mode == "isolated":
        if memo is not None:
            return memo.isolated(p, market)
        return isolated_liquidation(p, market)
    if view is None:
        view = account_view(ctx)
    tiers = market.tiers
    fee = market.liquidation_fee_rate
    mark = ctx.marks[p.symbol].price
    mm_all, upnl_all, isolated = view.cross_totals()
    own_mm = position_maintenance_margin(p.amount, p.entry_price, mark, tiers, fee)
    return liquidation_price(
        side=p.side,
        amount=p.amount,
        entry_price=p.entry_price,
        margin_mode="cross",
        wallet_balance=ctx.account.wallet_balance - isolated,
        tiers=tiers,
        other_maint_margin=mm_all - own_mm,
        other_unrealized_pnl=upnl_all - p.unrealized_pnl(mark),
        liquidation_fee_rate=fee,
    )


def liq_distance_pct(side_sign: int, mark: float, liq: float) -> float:
    """How far the mark is from the liquidation price, % of mark (negative once past it)."""
    return side_sign * (mark - liq) / mark * 100.0
