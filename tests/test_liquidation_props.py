"""Invariants of the liquidation math, checked with hypothesis.

The oracles here are independent of ``guards.liquidation``: a linear scan for the tier, a
bisection on the margin balance minus maintenance margin for Binance's model, and a direct
"is any forced reduction due at this price" predicate for the tiered model, written from the
rule table in DESIGN.md.
"""

from __future__ import annotations

import json
import math
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guards.liquidation import bankruptcy_price, liquidation_price, whole_liquidation_price
from guards.tiers import tiers_from_ccxt
from guards.types import Tier

REF: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "liq_reference.json").read_text(encoding="utf-8")
)
BTC = tiers_from_ccxt(REF["btc_usdt_tiers"]["entries"])
FEES = st.sampled_from([0.0005, 0.001, 0.005, 0.01])
MODES = st.sampled_from(["isolated", "cross"])
SIDES = st.sampled_from(["long", "short"])


# --- independent oracles ---------------------------------------------------------------------


def ref_tier(notional: float, tiers: tuple[Tier, ...]) -> int:
    for i, tier in enumerate(tiers):
        if notional < tier.max_notional:
            return i
    return len(tiers) - 1


def ref_mm(notional: float, tiers: tuple[Tier, ...]) -> float:
    tier = tiers[ref_tier(notional, tiers)]
    return notional * tier.mmr - tier.maint_amount


def ref_binance_liq(side: str, q: float, entry: float, w: float, tiers: tuple[Tier, ...]) -> float:
    """Bisection on f(P) = balance(P) - MM(q*P), monotone in P, for a position that is not
    liquidatable at entry (so the root lies on the loss side of entry)."""
    s = 1 if side == "long" else -1

    def f(p: float) -> float:
        return w + s * q * (p - entry) - ref_mm(q * p, tiers)

    if s > 0:
        lo, hi = 0.0, entry  # f(lo) <= 0 < f(hi)
    else:
        lo, hi = entry, entry * 2.0
        while f(hi) > 0:
            hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if (f(mid) > 0) == (s > 0):
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def ref_threshold(j: int, tiers: tuple[Tier, ...], fee: float, mode: str, whole: bool) -> float:
    if j <= 1:  # tiers 1-2
        return tiers[j].mmr + (fee if mode == "isolated" else 0.0)
    return (tiers[0].mmr if whole else tiers[j].mmr) + fee


def ref_triggered(
    p: float,
    side: str,
    q: float,
    entry: float,
    w: float,
    tiers: tuple[Tier, ...],
    fee: float,
    mode: str,
    whole: bool = False,
) -> bool:
    s = 1 if side == "long" else -1
    balance = w + s * q * (p - entry)
    return balance <= ref_threshold(ref_tier(q * p, tiers), tiers, fee, mode, whole) * q * p


# --- strategies --------------------------------------------------------------------------------


@st.composite
def tier_tables(draw: st.DrawFn) -> tuple[Tier, ...]:
    """Random contiguous brackets, rates non-decreasing, cum from continuity."""
    n = draw(st.integers(1, 6))
    widths = draw(st.lists(st.floats(1e3, 1e7), min_size=n - 1, max_size=n - 1))
    steps = draw(st.lists(st.floats(0.0, 0.05), min_size=n - 1, max_size=n - 1))
    mmr = draw(st.floats(0.001, 0.05))
    tiers = [Tier(0.0, math.inf, mmr, 0.0, 1.0 / (2 * mmr))]
    for width, step in zip(widths, steps, strict=True):
        prev = tiers[-1]
        bound = prev.min_notional + width
        tiers[-1] = Tier(prev.min_notional, bound, prev.mmr, prev.maint_amount, prev.max_leverage)
        rate = prev.mmr + step
        cum = prev.maint_amount + bound * (rate - prev.mmr)
        tiers.append(Tier(bound, math.inf, rate, cum, 1.0 / (2 * rate)))
    return tuple(tiers)


TIER_TABLES = st.one_of(st.just(BTC), tier_tables())


@st.composite
def positions(draw: st.DrawFn, extra_rate: float = 0.0) -> dict[str, Any]:
    """A position that is NOT liquidatable at entry: margin fraction > mmr(entry) + extra."""
    tiers = draw(TIER_TABLES)
    top = tiers[-1].min_notional
    entry = draw(st.floats(0.5, 200_000.0))
    notional = draw(st.floats(10.0, max(top * 1.5, 1e5)))
    floor = tiers[ref_tier(notional, tiers)].mmr + extra_rate
    # (exactly 1x longs sit on the edge of "never liquidated" and only test float noise)
    fraction = draw(st.floats(floor * 1.001 + 1e-6, 1.3).filter(lambda f: abs(f - 1) > 1e-6))
    return {
        "side": draw(SIDES),
        "amount": notional / entry,
        "entry_price": entry,
        "wallet_balance": notional * fraction,
        "tiers": tiers,
    }


def _closer_or_equal(side: str, a: float | None, b: float | None, rel: float = 1e-12) -> bool:
    """Is liquidation price ``a`` at least as close to entry (on the loss side) as ``b``?"""
    if b is None:
        return True
    if a is None:
        return False
    return a >= b * (1 - rel) if side == "long" else a <= b * (1 + rel)


# --- Binance model (fee 0) --------------------------------------------------------------------


@settings(max_examples=300)
@given(pos=positions(), mode=MODES)
def test_binance_price_is_the_root_of_balance_minus_mm(pos: dict[str, Any], mode: str) -> None:
    price = liquidation_price(margin_mode=mode, **pos)
    side, q, e, w, tiers = (
        pos[k] for k in ("side", "amount", "entry_price", "wallet_balance", "tiers")
    )
    if side == "long" and w - q * e >= 0:
        assert price is None  # fully collateralised
        return
    assert price is not None
    assert price == pytest.approx(ref_binance_liq(side, q, e, w, tiers), rel=1e-9, abs=1e-9 * e)
    # margin balance at the price equals MM of the tier that holds q*P (tier consistency)
    s = 1 if side == "long" else -1
    balance = w + s * q * (price - e)
    assert math.isclose(balance, ref_mm(q * price, tiers), rel_tol=1e-9, abs_tol=1e-9 * q * e)


@given(pos=positions(extra_rate=0.01), mode=MODES, fee=st.sampled_from([0.0, 0.0005, 0.005]))
def test_long_liq_below_entry_below_short_liq(pos: dict[str, Any], mode: str, fee: float) -> None:
    price = liquidation_price(margin_mode=mode, liquidation_fee_rate=fee, **pos)
    bankrupt = bankruptcy_price(
        side=pos["side"],
        amount=pos["amount"],
        entry_price=pos["entry_price"],
        margin_mode=mode,
        wallet_balance=pos["wallet_balance"],
    )
    if pos["side"] == "long":
        if price is not None:
            assert price < pos["entry_price"]
            assert bankrupt is None or bankrupt < price
    else:
        assert price is not None
        assert pos["entry_price"] < price
        assert bankrupt is not None and price < bankrupt


@given(pos=positions(), mode=MODES, fee=st.sampled_from([0.0, 0.0005]), less=st.floats(0.01, 0.99))
def test_less_margin_is_closer(pos: dict[str, Any], mode: str, fee: float, less: float) -> None:
    # Higher leverage = less margin for the same position: liquidation no farther from entry.
    rich = liquidation_price(margin_mode=mode, liquidation_fee_rate=fee, **pos)
    pos_poor = {**pos, "wallet_balance": pos["wallet_balance"] * less}
    poor = liquidation_price(margin_mode=mode, liquidation_fee_rate=fee, **pos_poor)
    assert _closer_or_equal(pos["side"], poor, rich)


@given(pos=positions(), fee=st.sampled_from([0.0, 0.0005, 0.005]), extra=st.floats(0.0, 1e6))
def test_cross_with_extra_balance_never_closer_than_isolated(
    pos: dict[str, Any], fee: float, extra: float
) -> None:
    isolated = liquidation_price(margin_mode="isolated", liquidation_fee_rate=fee, **pos)
    pos_cross = {**pos, "wallet_balance": pos["wallet_balance"] + extra}
    cross = liquidation_price(margin_mode="cross", liquidation_fee_rate=fee, **pos_cross)
    assert _closer_or_equal(pos["side"], isolated, cross)


@given(pos=positions(), mm=st.floats(0.0, 1e5), upnl=st.floats(-1e5, 1e5))
def test_cross_other_positions_shift_the_balance(
    pos: dict[str, Any], mm: float, upnl: float
) -> None:
    # other MM and uPnL enter only through W = wallet - MM + uPnL
    shifted = liquidation_price(
        margin_mode="cross", other_maint_margin=mm, other_unrealized_pnl=upnl, **pos
    )
    pos_plain = {**pos, "wallet_balance": pos["wallet_balance"] - mm + upnl}
    plain = liquidation_price(margin_mode="cross", **pos_plain)
    if plain is None or shifted is None:
        assert plain is shifted
    else:
        assert math.isclose(shifted, plain, rel_tol=1e-9)


@given(pos=positions(), mode=MODES, cut=st.floats(0.0, 0.99))
def test_already_liquidatable_at_entry_is_on_the_wrong_side(
    pos: dict[str, Any], mode: str, cut: float
) -> None:
    # Margin below MM at entry: the price returned is at/above entry for a long, at/below for a
    # short, and it is still where balance = MM (the edge of the liquidatable region).
    q, e, tiers = pos["amount"], pos["entry_price"], pos["tiers"]
    w = ref_mm(q * e, tiers) * cut
    price = liquidation_price(margin_mode=mode, **{**pos, "wallet_balance": w})
    assert price is not None
    s = 1 if pos["side"] == "long" else -1
    assert s * price >= s * e * (1 - 1e-12)
    balance = w + s * q * (price - e)
    assert math.isclose(balance, ref_mm(q * price, tiers), rel_tol=1e-9, abs_tol=1e-9 * q * e)


# --- tiered model (fee > 0) -------------------------------------------------------------------


@given(pos=positions(), mode=MODES, fee=FEES)
def test_fee_model_never_farther_than_binance(pos: dict[str, Any], mode: str, fee: float) -> None:
    binance = liquidation_price(margin_mode=mode, **pos)
    tiered = liquidation_price(margin_mode=mode, liquidation_fee_rate=fee, **pos)
    assert _closer_or_equal(pos["side"], tiered, binance)


@settings(max_examples=300)
@given(pos=positions(extra_rate=0.01), mode=MODES, fee=FEES, whole=st.booleans())
def test_fee_model_price_is_the_first_trigger(
    pos: dict[str, Any], mode: str, fee: float, whole: bool
) -> None:
    side, q, e, w, tiers = (
        pos[k] for k in ("side", "amount", "entry_price", "wallet_balance", "tiers")
    )
    solve = whole_liquidation_price if whole else liquidation_price
    price = solve(margin_mode=mode, liquidation_fee_rate=fee, **pos)

    def due(p: float) -> bool:
        return ref_triggered(p, side, q, e, w, tiers, fee, mode, whole)

    s = 1 if side == "long" else -1
    end = price if price is not None else 0.0  # a long never liquidated: check down to 0
    # no trigger on the way from entry to the price: a grid plus both sides of every bracket
    # boundary in between (the threshold only changes there)
    probes = [e + (end - e) * k / 64 for k in range(64)]
    for tier in tiers[1:]:
        b = tier.min_notional / q
        probes += [b * (1 - 1e-9), b * (1 + 1e-9)]
    if s > 0:
        between = [p for p in probes if max(end * (1 + 1e-9), 0.0) < p <= e]
    else:
        between = [p for p in probes if e <= p < end * (1 - 1e-9)]
    for p in between:
        assert not due(p), (p, price)
    if price is not None:
        assert due(price * (1 - s * 1e-9))  # just past it toward loss, the engine acts


@given(pos=positions(extra_rate=0.01), mode=MODES, fee=FEES)
def test_whole_liquidation_never_before_first_reduction(
    pos: dict[str, Any], mode: str, fee: float
) -> None:
    first = liquidation_price(margin_mode=mode, liquidation_fee_rate=fee, **pos)
    whole = whole_liquidation_price(margin_mode=mode, liquidation_fee_rate=fee, **pos)
    assert _closer_or_equal(pos["side"], first, whole)
    bankrupt = bankruptcy_price(
        side=pos["side"],
        amount=pos["amount"],
        entry_price=pos["entry_price"],
        margin_mode=mode,
        wallet_balance=pos["wallet_balance"],
    )
    assert _closer_or_equal(pos["side"], whole, bankrupt)


# --- tiers ------------------------------------------------------------------------------------


@given(
    rates=st.lists(st.floats(0.001, 0.2), min_size=2, max_size=8).map(sorted),
    widths=st.lists(st.floats(1.0, 1e8), min_size=8, max_size=8),
)
def test_continuity_cum_makes_mm_continuous(rates: list[float], widths: list[float]) -> None:
    bounds = [0.0]
    for width in widths[: len(rates)]:
        bounds.append(bounds[-1] + width)
    entries = [
        {"minNotional": lo, "maxNotional": hi, "maintenanceMarginRate": r, "maxLeverage": 1 / r}
        for lo, hi, r in zip(bounds, bounds[1:], rates, strict=False)
    ]
    tiers = tiers_from_ccxt(entries)
    for lower, upper in pairwise(tiers):
        n = upper.min_notional
        left = n * lower.mmr - lower.maint_amount
        right = n * upper.mmr - upper.maint_amount
        assert math.isclose(left, right, rel_tol=1e-9, abs_tol=1e-6)
