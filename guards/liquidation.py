"""Liquidation math of linear USDT-margined perpetuals in one-way mode.

Four liquidation models. The tiers' own model (``Tiers.model``, set by the venue: ``bybit``,
``okx``) decides; tiers without one use Binance's model when the liquidation fee rate
(``MarketRules.liquidation_fee_rate``) is 0 and the tiered model otherwise:

* **Binance** (fee rate 0): the position is liquidated when its margin balance falls to its
  maintenance margin ``MM = N * mmr_i - cum_i`` (N the notional at the price, i its tier).
* **Tiered** (fee rate > 0, the model of the seed article and DESIGN.md): the trigger is the
  *margin rate* ``margin balance / (q * P)`` falling to a per-tier threshold (no ``cum``):

  ==========  ===========================  =====================================
  tier        first forced reduction       whole position to the engine
  ==========  ===========================  =====================================
  1-2 isol.   mmr(tier) + fee              same
  1-2 cross   mmr(tier)                    same
  >= 3        mmr(tier) + fee (partial)    mmr(tier 1) + fee
  ==========  ===========================  =====================================

* **Bybit** (``bybit``): liquidation when the margin balance falls to the maintenance margin
  of the position *at its entry value*, ``MM = q*E * mmr_i - deduction_i`` with ``i`` the risk
  limit tier of ``q*E``. Bybit's published formula "LP = Entry Price - [(Initial Margin -
  Maintenance Margin) / Position Size] - (Extra Margin Added / Position Size)" (long; short
  with + signs) and its worked examples (1 BTC at 20,000 USDT, 50x, MMR 0.5 %: IM 400, MM 100,
  LP 19,700) are this with M = IM + extra margin; no liquidation fee in the trigger; the whole
  position goes to the engine at the bankruptcy price. Cross: the same with the cross balance
  (Bybit's unified account: margin balance = cross wallet + uPnL against the total maintenance
  margin).
* **OKX** (``okx``): the tiered model's margin rate with OKX's rules: the trigger is the margin
  rate ``margin balance / (q * P)`` falling to ``mmr + fee`` (the liquidation fee is the taker
  fee rate; isolated *and* cross: "when the margin ratio is lower than the maintenance margin
  ratio + liquidation fee rate, full or partial liquidation will occur"), whole at ``mmr(tier
  1) + fee`` for tier 3 and up; and the tier is the one of the position *size* (OKX's tiers are
  numbers of contracts, held in base units), so it does not move with the price.

Margin balance at price P (side s = +1 long / -1 short, size q, entry E):
isolated ``M + s*q*(P - E)`` with M the isolated margin; cross
``wallet - other positions' MM + other positions' uPnL + s*q*(P - E)``.

Both models make "liquidatable" a half-line of prices inside each tier, so the liquidation price
is found by walking tiers from the entry in the loss direction and solving, in each tier,
``P = (W + c - s*q*E) / (q*k - s*q)`` (Binance: ``c = cum, k = mmr``; tiered: ``c = 0``,
``k = threshold``) until the solution lies in the tier's own price range (Binance's documented
"recalculate with the tier at the liquidation price"). Where the threshold steps up at a bracket
boundary the trigger can be the boundary itself. Bybit's and OKX's tiers do not move with the
price (the entry value, the size), so their price is one division.

**Already liquidatable at entry**: the functions then return the edge of the liquidatable
region around the entry, found by walking in the *profit* direction; it lies on the wrong side
of entry (at or above it for a long, at or below for a short). Callers compare against the mark:
a long with mark <= liquidation price (a short with mark >= it) is liquidatable now. A short
that is liquidatable at every price gets ``0.0``; a long that cannot be liquidated at any
positive price gets ``None``.

Pure and float-only; tier lookup data is kept on the market's ``Tiers`` (``tiers.tier_table``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from guards.tiers import TierTable, tier_table
from guards.types import LiquidationModel, MarginMode, Side, Tier

__all__ = [
    "LiquidationStage",
    "bankruptcy_price",
    "liquidation_price",
    "liquidation_stage",
    "maintenance_margin",
    "margin_balance",
    "margin_rate",
    "model_of",
    "position_maintenance_margin",
    "profile_maintenance_margin",
    "tiered_threshold",
    "whole_liquidation_price",
]

LiquidationStage = Literal["none", "partial", "whole"]


def _sign(side: Side) -> int:
    if side == "long":
        return 1
    if side == "short":
        return -1
    raise ValueError(f"side must be 'long' or 'short', not {side!r}")


def _balance_term(
    margin_mode: MarginMode,
    wallet_balance: float,
    other_maint_margin: float,
    other_unrealized_pnl: float,
) -> float:
    """W: the margin balance the position would have at its entry price."""
    if margin_mode == "isolated":
        return wallet_balance
    if margin_mode == "cross":
        return wallet_balance - other_maint_margin + other_unrealized_pnl
    raise ValueError(f"margin_mode must be 'isolated' or 'cross', not {margin_mode!r}")


def _check_position(amount: float, entry_price: float) -> None:
    if not (amount > 0.0 and math.isfinite(amount)):
        raise ValueError(f"amount must be positive and finite, not {amount}")
    if not (entry_price > 0.0 and math.isfinite(entry_price)):
        raise ValueError(f"entry_price must be positive and finite, not {entry_price}")


def _model(table: TierTable, fee_rate: float) -> LiquidationModel:
    model = table.model
    if model is not None:
        return model
    return "binance" if fee_rate == 0.0 else "tiered"


def model_of(tiers: Sequence[Tier], liquidation_fee_rate: float = 0.0) -> LiquidationModel:
    """The liquidation model ``tiers`` and the fee rate select (see the module docstring)."""
    return _model(tier_table(tiers), liquidation_fee_rate)


def _entry_mm(table: TierTable, amount: float, entry_price: float) -> float:
    """Bybit: ``q*E * mmr_i - deduction_i`` with ``i`` the tier of the entry value ``q*E``."""
    value = amount * entry_price
    i = table.index(value)
    return value * table.mmrs[i] - table.cums[i]


def maintenance_margin(notional: float, tiers: Sequence[Tier]) -> float:
    """Binance maintenance margin ``N * mmr_i - cum_i`` of a position of notional ``N``."""
    table = tier_table(tiers)
    i = table.index(notional)
    return notional * table.mmrs[i] - table.cums[i]


def profile_maintenance_margin(
    notional: float, tiers: Sequence[Tier], liquidation_fee_rate: float = 0.0
) -> float:
    """Maintenance margin of a position of notional ``N`` under the liquidation model in use.

    Fee rate 0 (Binance's model): ``N * mmr_i - cum_i``. Fee rate > 0 (the tiered margin-rate
    model): ``N * mmr_i``, no maintenance amount (the model's thresholds have none; the fee
    counts only in the position's own trigger). This is the figure a cross position contributes
    to the other cross positions' liquidation prices, in the guards and in the paper exchange.
    Bybit's and OKX's figures need the position, not its notional: ``ValueError`` here (use
    ``position_maintenance_margin``).
    """
    table = tier_table(tiers)
    model = _model(table, liquidation_fee_rate)
    i = table.index(notional)
    if model == "binance":
        return notional * table.mmrs[i] - table.cums[i]
    if model == "tiered":
        return notional * table.mmrs[i]
    raise ValueError(f"the {model} model needs the position: use position_maintenance_margin")


def position_maintenance_margin(
    amount: float,
    entry_price: float,
    price: float,
    tiers: Sequence[Tier],
    liquidation_fee_rate: float = 0.0,
) -> float:
    """What a position of ``amount`` entered at ``entry_price`` requires at ``price``.

    Binance: ``N * mmr_i - cum_i`` and tiered: ``N * mmr_i`` (``N = amount * price``, as
    ``profile_maintenance_margin``); Bybit: ``amount * entry * mmr_i - deduction_i`` (the entry
    value's tier); OKX: ``N * (mmr_i + fee)``, the maintenance margin plus the liquidation fee
    its margin ratio divides by (the size's tier). The figure a cross position contributes to
    the other cross positions' liquidation prices, in the guards and in the paper exchange.
    """
    table = tier_table(tiers)
    model = _model(table, liquidation_fee_rate)
    if model == "bybit":
        return _entry_mm(table, amount, entry_price)
    notional = amount * price
    if model == "okx":
        return notional * (table.mmrs[table.index(amount)] + liquidation_fee_rate)
    i = table.index(notional)
    if model == "binance":
        return notional * table.mmrs[i] - table.cums[i]
    return notional * table.mmrs[i]


def margin_balance(
    *,
    side: Side,
    amount: float,
    entry_price: float,
    price: float,
    margin_mode: MarginMode,
    wallet_balance: float,
    other_maint_margin: float = 0.0,
    other_unrealized_pnl: float = 0.0,
) -> float:
    """Margin balance of the position at ``price`` (see the module docstring for both modes)."""
    base = _balance_term(margin_mode, wallet_balance, other_maint_margin, other_unrealized_pnl)
    return base + _sign(side) * amount * (price - entry_price)


def margin_rate(
    *,
    side: Side,
    amount: float,
    entry_price: float,
    price: float,
    margin_mode: MarginMode,
    wallet_balance: float,
    other_maint_margin: float = 0.0,
    other_unrealized_pnl: float = 0.0,
) -> float:
    """Margin balance at ``price`` divided by the position value ``amount * price``."""
    if not price > 0.0:
        raise ValueError(f"price must be positive, not {price}")
    balance = margin_balance(
        side=side,
        amount=amount,
        entry_price=entry_price,
        price=price,
        margin_mode=margin_mode,
        wallet_balance=wallet_balance,
        other_maint_margin=other_maint_margin,
        other_unrealized_pnl=other_unrealized_pnl,
    )
    return balance / (amount * price)


def tiered_threshold(
    tier_idx: int,
    tiers: Sequence[Tier],
    fee_rate: float,
    margin_mode: MarginMode,
    whole: bool,
    model: LiquidationModel = "tiered",
) -> float:
    """Margin-rate threshold of the tiered model for a position in tier ``tier_idx`` (0-based).

    ``whole=False``: the rate below which the first forced reduction begins (whole liquidation
    for tiers 1-2, partial reduction for tier 3 and up). ``whole=True``: the rate below which the
    whole position goes to the liquidation engine at the bankruptcy price. ``model="okx"``:
    the fee counts in cross margin too.
    """
    mmr = tiers[tier_idx].mmr
    if model == "okx":
        if margin_mode not in ("isolated", "cross"):
            raise ValueError(f"margin_mode must be 'isolated' or 'cross', not {margin_mode!r}")
        return (tiers[0].mmr if whole and tier_idx >= 2 else mmr) + fee_rate
    if tier_idx <= 1:
        if margin_mode == "isolated":
            return mmr + fee_rate
        if margin_mode == "cross":
            return mmr
        raise ValueError(f"margin_mode must be 'isolated' or 'cross', not {margin_mode!r}")
    return (tiers[0].mmr if whole else mmr) + fee_rate


def _thresholds(
    table: TierTable, fee_rate: float, margin_mode: MarginMode, whole: bool
) -> tuple[float, ...]:
    key = (fee_rate, margin_mode, whole)
    found = table.memo.get(key)
    if found is not None:
        return found
    if not (0.0 <= fee_rate < 1.0):
        raise ValueError(f"liquidation fee rate must be in [0, 1), not {fee_rate}")
    model: LiquidationModel = "okx" if table.model == "okx" else "tiered"
    rates = tuple(
        tiered_threshold(i, table.tiers, fee_rate, margin_mode, whole, model)
        for i in range(len(table.tiers))
    )
    if max(rates) >= 1.0:
        raise ValueError("maintenance margin rate + liquidation fee rate must stay below 1")
    table.memo[key] = rates
    return rates


def _walk(
    s: int,
    q: float,
    entry: float,
    base: float,
    table: TierTable,
    adds: tuple[float, ...],
    rates: tuple[float, ...],
) -> float | None:
    """First price from ``entry`` toward loss where ``base + s*q*P <= q*P*k_j - c_j`` holds.

    ``base = W - s*q*E``; tier ``j`` uses ``c_j = adds[j]``, ``k_j = rates[j]``. Inside a tier
    the condition holds on a half-line ending at the tier's root ``(base + c_j)/(q*(k_j - s))``
    (at and below it for a long, at and above it for a short), so each tier is one division.
    """
    lows, highs = table.lows, table.highs
    last = len(rates) - 1
    j = table.index(q * entry)
    root = (base + adds[j]) / (q * (rates[j] - s))
    if s * root < s * entry:
        # Not liquidatable at entry: walk toward loss (down for a long, up for a short).
        start = entry
        while True:
            if s * root >= s * start:
                return start  # the threshold stepped up at this bracket boundary
            end = lows[j] / q if s > 0 else highs[j] / q
            if s * root > s * end:
                return root
            if (j == 0) if s > 0 else (j == last):
                return None  # only a long gets here: no liquidation at a positive price
            start = end
            j -= s
            root = (base + adds[j]) / (q * (rates[j] - s))
    # Already liquidatable at entry: walk toward profit to the edge of the region.
    start = entry
    while True:
        if s * root < s * start:
            return start  # the threshold stepped down at this bracket boundary
        end = highs[j] / q if s > 0 else lows[j] / q
        if s * root < s * end:
            return root
        if s < 0 and j == 0:
            return 0.0  # a short liquidatable at every positive price
        start = end
        j += s
        root = (base + adds[j]) / (q * (rates[j] - s))


def _solve(
    side: Side,
    amount: float,
    entry_price: float,
    margin_mode: MarginMode,
    wallet_balance: float,
    tiers: Sequence[Tier],
    other_maint_margin: float,
    other_unrealized_pnl: float,
    fee_rate: float,
    whole: bool,
) -> float | None:
    # _sign, _check_position and _balance_term inline on the hot path (they raise otherwise)
    s = 1 if side == "long" else -1 if side == "short" else _sign(side)
    isfinite = math.isfinite
    if not (amount > 0.0 and isfinite(amount) and entry_price > 0.0 and isfinite(entry_price)):
        _check_position(amount, entry_price)
    if margin_mode == "isolated":
        w = wallet_balance
    else:
        w = _balance_term(margin_mode, wallet_balance, other_maint_margin, other_unrealized_pnl)
    base = w - s * amount * entry_price
    if not math.isfinite(base):
        raise ValueError("wallet balance and other positions' figures must be finite")
    table = tier_table(tiers)
    model = table.model
    if model is None:
        if fee_rate == 0.0:
            return _walk(s, amount, entry_price, base, table, table.cums, table.mmrs)
        rates = _thresholds(table, fee_rate, margin_mode, whole)
        return _walk(s, amount, entry_price, base, table, table.zeros, rates)
    if model == "binance":
        return _walk(s, amount, entry_price, base, table, table.cums, table.mmrs)
    if model == "tiered":
        rates = _thresholds(table, fee_rate, margin_mode, whole)
        return _walk(s, amount, entry_price, base, table, table.zeros, rates)
    if model == "bybit":
        # w + s*q*(P - E) <= MM(entry value): P = E - s*(w - MM)/q, a half-line from there
        root = entry_price - s * (w - _entry_mm(table, amount, entry_price)) / amount
    else:  # okx: the size's tier, k = mmr + fee: base + s*q*P <= q*P*k
        k = _thresholds(table, fee_rate, margin_mode, whole)[table.index(amount)]
        root = base / (amount * (k - s))
    if root > 0.0:
        return root
    return None if s > 0 else 0.0


def liquidation_price(
    *,
    side: Side,
    amount: float,
    entry_price: float,
    margin_mode: MarginMode,
    wallet_balance: float,
    tiers: Sequence[Tier],
    other_maint_margin: float = 0.0,
    other_unrealized_pnl: float = 0.0,
    liquidation_fee_rate: float = 0.0,
) -> float | None:
    """Price at which the first forced reduction of the position begins.

    ``wallet_balance`` is the isolated margin (isolated) or the account's wallet balance (cross,
    where ``other_maint_margin`` and ``other_unrealized_pnl`` of the other positions count too;
    they are ignored for isolated). Fee rate 0 selects Binance's model, > 0 the tiered model.
    ``None``: a long that no positive price liquidates. Positions already liquidatable at entry
    get a price on the wrong side of entry (see the module docstring).
    """
    return _solve(
        side,
        amount,
        entry_price,
        margin_mode,
        wallet_balance,
        tiers,
        other_maint_margin,
        other_unrealized_pnl,
        liquidation_fee_rate,
        whole=False,
    )


def whole_liquidation_price(
    *,
    side: Side,
    amount: float,
    entry_price: float,
    margin_mode: MarginMode,
    wallet_balance: float,
    tiers: Sequence[Tier],
    other_maint_margin: float = 0.0,
    other_unrealized_pnl: float = 0.0,
    liquidation_fee_rate: float = 0.0,
) -> float | None:
    """Price at which the whole position goes to the liquidation engine (no partial step left).

    Tiered model: below tier 1's mmr + fee for a position in tier 3 and up, its own tier's rule
    for tiers 1-2. With fee rate 0 (Binance's model, no partial liquidation) this equals
    ``liquidation_price``. Same arguments and conventions as ``liquidation_price``.
    """
    return _solve(
        side,
        amount,
        entry_price,
        margin_mode,
        wallet_balance,
        tiers,
        other_maint_margin,
        other_unrealized_pnl,
        liquidation_fee_rate,
        whole=True,
    )


def bankruptcy_price(
    *,
    side: Side,
    amount: float,
    entry_price: float,
    margin_mode: MarginMode,
    wallet_balance: float,
    other_maint_margin: float = 0.0,
    other_unrealized_pnl: float = 0.0,
) -> float | None:
    """Price where the margin balance is 0: ``E - s * W / q``.

    ``None`` for a long whose bankruptcy price would be <= 0 (fully collateralised); ``0.0``
    for a short whose balance is already <= 0 at every positive price.
    """
    s = _sign(side)
    _check_position(amount, entry_price)
    w = _balance_term(margin_mode, wallet_balance, other_maint_margin, other_unrealized_pnl)
    price = entry_price - s * w / amount
    if price > 0.0:
        return price
    return None if s > 0 else 0.0


def liquidation_stage(
    *,
    side: Side,
    amount: float,
    entry_price: float,
    price: float,
    margin_mode: MarginMode,
    wallet_balance: float,
    tiers: Sequence[Tier],
    other_maint_margin: float = 0.0,
    other_unrealized_pnl: float = 0.0,
    liquidation_fee_rate: float = 0.0,
) -> LiquidationStage:
    """What the exchange's liquidation engine does to the position at ``price``.

    Binance model (fee 0): ``"whole"`` when margin balance <= MM, else ``"none"``; Bybit the
    same with MM at the entry value. Tiered and OKX models: ``"whole"`` when the margin rate is
    <= the whole threshold of the position's tier, ``"partial"`` when only the first-reduction
    threshold is reached (tier 3 and up), else ``"none"``. At equality the engine acts,
    matching the prices the solvers return.
    """
    _check_position(amount, entry_price)
    balance = margin_balance(
        side=side,
        amount=amount,
        entry_price=entry_price,
        price=price,
        margin_mode=margin_mode,
        wallet_balance=wallet_balance,
        other_maint_margin=other_maint_margin,
        other_unrealized_pnl=other_unrealized_pnl,
    )
    notional = amount * price
    table = tier_table(tiers)
    model = _model(table, liquidation_fee_rate)
    if model == "bybit":
        return "whole" if balance <= _entry_mm(table, amount, entry_price) else "none"
    j = table.index(amount if model == "okx" else notional)
    if model == "binance":
        return "whole" if balance <= notional * table.mmrs[j] - table.cums[j] else "none"
    if balance <= notional * _thresholds(table, liquidation_fee_rate, margin_mode, True)[j]:
        return "whole"
    if balance <= notional * _thresholds(table, liquidation_fee_rate, margin_mode, False)[j]:
        return "partial"
    return "none"
