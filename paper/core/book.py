"""One symbol's book: its market and fees, prices, open orders, position and crossing thresholds.

The hot path (``PaperCore.on_price``) reads only a book's plain attributes: it compares the new
last and mark prices with four thresholds (``hi_last``, ``lo_last``, ``hi_mark``, ``lo_mark``)
and does nothing more unless one is crossed. ``rearm`` recomputes them whenever the orders or
the position change: the nearest resting limit on each side (last price), the nearest trigger
of each direction on its basis price (mark or last), and the position's liquidation trigger
(mark). A book with no position and no order is inactive and skipped entirely.

Amounts are truncated to the amount step and prices rounded to the tick with ccxt's
``decimal_to_precision`` (as ccxt's ``amount_to_precision`` / ``price_to_precision`` do for
TICK_SIZE markets); below the step, the minimum amount or above the maximum -> ``InvalidOrder``.
"""

from __future__ import annotations

import math

from ccxt.base.decimal_to_precision import ROUND, TICK_SIZE, TRUNCATE, decimal_to_precision
from ccxt.base.errors import InvalidOrder

from guards import (
    MarginMode,
    MarketRules,
    Tier,
    position_maintenance_margin,
    position_tier_index,
    tier_index,
)
from paper.config import PaperConfig
from paper.core.records import EPS, INF, LIMIT, STOP, OrderRecord, PositionRecord
from paper.markets import PaperMarket


class Book:
    """Everything about one symbol; the hot path reads only its plain attributes."""

    __slots__ = (
        "_amounts",
        "_prices",
        "active",
        "amount_step",
        "dynamic",
        "funding_rates",
        "hi_last",
        "hi_mark",
        "last",
        "leverage",
        "liq_fee",
        "lo_last",
        "lo_mark",
        "maker",
        "margin_mode",
        "mark",
        "market",
        "next_funding",
        "orders",
        "pos",
        "prev_last",
        "prev_mark",
        "price_step",
        "profile",
        "rules",
        "seq",
        "symbol",
        "taker",
        "tiers",
        "volume",
    )

    def __init__(self, market: PaperMarket, config: PaperConfig) -> None:
        symbol = market.symbol
        self.profile = config.profile_for(symbol)
        r = market.rules
        self.taker = r.taker_fee if config.taker_fee is None else config.taker_fee
        self.maker = r.maker_fee if config.maker_fee is None else config.maker_fee
        self.liq_fee = config.liquidation_fee_rate if self.profile == "tiered" else 0.0
        venue = self.profile if self.profile in ("bybit", "okx") else None
        if venue is not None:
            if r.model != venue:
                raise ValueError(
                    f"the {venue} liquidation profile of {symbol} needs {venue}'s tiers "
                    f"(paper.venues), not {r.model} ones"
                )
            if venue == "okx":
                self.liq_fee = self.taker  # OKX's liquidation fee: the taker fee rate
        #: The guards' view: fees as charged and the profile's liquidation fee rate.
        self.rules = MarketRules(
            symbol=r.symbol,
            tiers=r.tiers,
            amount_step=r.amount_step,
            price_step=r.price_step,
            min_amount=r.min_amount,
            min_notional=r.min_notional,
            taker_fee=self.taker,
            maker_fee=self.maker,
            liquidation_fee_rate=self.liq_fee,
            liquidation_model=venue,
        )
        self.market = market
        self.symbol = symbol
        self.tiers: tuple[Tier, ...] = self.rules.tiers
        self.amount_step = r.amount_step
        self.price_step = r.price_step
        #: ccxt's rounding of each amount and price seen (orders of one position repeat them).
        self._amounts: dict[float, float] = {}
        self._prices: dict[float, float] = {}
        self.leverage = config.default_leverage
        self.margin_mode: MarginMode = config.default_margin_mode
        self.last = math.nan
        self.mark = math.nan
        self.prev_last = math.nan
        self.prev_mark = math.nan
        #: Counts the price points seen while active (a trigger armed at seq n gaps at n + 1).
        self.seq = 0
        self.pos: PositionRecord | None = None
        #: Open orders, oldest first.
        self.orders: list[OrderRecord] = []
        #: A position or an order: the price must be looked at.
        self.active = False
        #: Two or more cross positions: the liquidation trigger is re-solved on every price.
        self.dynamic = False
        self.hi_last = INF
        self.lo_last = -INF
        self.hi_mark = INF
        self.lo_mark = -INF
        self.next_funding = 0
        self.volume = 0.0
        self.funding_rates: dict[int, float] = {}

    def rearm(self, multi_cross: bool) -> None:
        """Recompute the crossing thresholds (only when the orders or the position change).

        ``multi_cross``: the account holds two or more cross positions.
        """
        hi_l = hi_m = INF
        lo_l = lo_m = -INF
        for o in self.orders:
            if o.type == LIMIT:
                assert o.price is not None
                if o.sign > 0:
                    lo_l = max(lo_l, o.price)
                else:
                    hi_l = min(hi_l, o.price)
                continue
            assert o.trigger is not None
            up = (o.sign > 0) == (o.type == STOP)
            if o.on_mark:
                if up:
                    hi_m = min(hi_m, o.trigger)
                else:
                    lo_m = max(lo_m, o.trigger)
            elif up:
                hi_l = min(hi_l, o.trigger)
            else:
                lo_l = max(lo_l, o.trigger)
        pos = self.pos
        if pos is not None and pos.liq is not None:
            if pos.sign > 0:
                lo_m = max(lo_m, pos.liq)
            else:
                hi_m = min(hi_m, pos.liq)
        self.hi_last, self.lo_last, self.hi_mark, self.lo_mark = hi_l, lo_l, hi_m, lo_m
        self.active = pos is not None or bool(self.orders)
        self.dynamic = pos is not None and pos.margin_mode == "cross" and multi_cross

    def ref_price(self) -> float:
        """The mark, else (before any price) the position's entry, else NaN."""
        if not math.isnan(self.mark):
            return self.mark
        pos = self.pos
        return pos.entry if pos is not None else math.nan

    def maint(self, price: float) -> float:
        """Maintenance margin of the book's position at ``price`` under its profile.

        The guards' ``position_maintenance_margin``: what the position contributes to the other
        cross positions' liquidation prices.
        """
        pos = self.pos
        assert pos is not None
        return position_maintenance_margin(pos.amount, pos.entry, price, self.tiers, self.liq_fee)

    def max_leverage(self, notional: float, amount: float | None = None) -> float:
        """The leverage the tier of ``notional`` allows.

        Under the okx profile the tier is the position size's: ``amount`` (base units), else
        ``notional`` at the reference price.
        """
        if self.profile == "okx":
            if amount is None:
                ref = self.ref_price()
                amount = notional / ref if ref > 0.0 else 0.0
            return self.tiers[position_tier_index(amount, 1.0, self.tiers)].max_leverage
        return self.tiers[tier_index(notional, self.tiers)].max_leverage

    def funding_rate(self, ts_ms: int, default: float) -> float:
        """Rate charged at funding time ``ts_ms``: the series' value there, else ``default``."""
        rate = self.funding_rates.get(round(ts_ms / 60_000) * 60_000)
        return default if rate is None else rate

    def amount_to_precision(self, amount: float) -> float:
        """``amount`` truncated to the step as ccxt does; below step or minimum -> InvalidOrder."""
        qty = self._amounts.get(amount)
        if qty is None:
            if not (amount > 0 and math.isfinite(amount)):
                raise InvalidOrder(f"paper amount must be positive, not {amount}")
            qty = float(decimal_to_precision(amount, TRUNCATE, self.amount_step, TICK_SIZE))
            _remember(self._amounts, amount, qty)
        if qty <= 0.0:
            raise InvalidOrder(
                f"paper amount of {self.symbol} must be greater than minimum amount precision of "
                f"{self.amount_step}"
            )
        if qty < self.rules.min_amount - EPS * self.amount_step:
            raise InvalidOrder(f"paper amount of {self.symbol} must be >= {self.rules.min_amount}")
        mx = self.market.max_amount
        if mx is not None and qty > mx:
            raise InvalidOrder(f"paper amount of {self.symbol} must be <= {mx}")
        return qty

    def price_to_precision(self, price: float) -> float:
        """``price`` rounded to the tick as ccxt does; zero after rounding -> InvalidOrder."""
        px = self._prices.get(price)
        if px is None:
            if not (price > 0 and math.isfinite(price)):
                raise InvalidOrder(f"paper price must be positive, not {price}")
            px = float(decimal_to_precision(price, ROUND, self.price_step, TICK_SIZE))
            _remember(self._prices, price, px)
        if px <= 0.0:
            raise InvalidOrder(
                f"paper price of {self.symbol} must be greater than minimum price precision of "
                f"{self.price_step}"
            )
        return px


#: Values a book's rounding memo keeps before it starts afresh (bounds its memory).
_MEMO_LIMIT = 4096


def _remember(memo: dict[float, float], key: float, value: float) -> None:
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[key] = value
