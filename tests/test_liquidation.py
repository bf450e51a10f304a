"""Leverage tiers and liquidation prices against independent numbers.

Sources: freqtrade's liquidation vectors (tests/data/liq_reference.json, copied from
shared/data/liq_vectors.json with their ``source``), Binance's help pages (URLs below) and
arithmetic worked by hand on Binance's published BTC/USDT:USDT brackets (snapshot 2024-10-24):

    tier  notional [min, max)      mmr      cum (maintenance amount)
    1     [0, 50,000)              0.004    0
    2     [50,000, 600,000)        0.005    50
    3     [600,000, 3,000,000)     0.0065   950
    4     [3,000,000, 12,000,000)  0.01     11,450
    5     [12,000,000, 70,000,000) 0.02     131,450

Binance's formula (one position, one-way mode; https://www.binance.com/en/support/faq/
b3c689c1f50a44cabb3a84e663b81d93): ``LP = (W + cum - s*q*E) / (q*mmr - s*q)`` with W the isolated
margin or ``wallet - TMM + UPNL`` (cross), "calculated at the liquidation price" tier.
"""

from __future__ import annotations

import json
import math
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from guards.liquidation import (
    bankruptcy_price,
    liquidation_price,
    liquidation_stage,
    maintenance_margin,
    margin_balance,
    margin_rate,
    tiered_threshold,
    whole_liquidation_price,
)
from guards.tiers import tier_index, tiers_by_symbol, tiers_from_ccxt
from guards.types import Tier

REF: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "liq_reference.json").read_text(encoding="utf-8")
)
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BTC = tiers_from_ccxt(REF["btc_usdt_tiers"]["entries"])
FEE = 0.0005  # a liquidation fee rate for the tiered model's hand-worked cases


def _vectors(formula: str) -> list[dict[str, Any]]:
    return [v for v in REF["vectors"] if v["formula"] == formula]


def _unbuffered(vector: dict[str, Any]) -> float:
    """freqtrade's buffered = liq - (liq - entry) * buffer, solved for liq (see ``_about``)."""
    buffer = float(vector["liquidation_buffer"])
    buffered = float(vector["expected_liq_price"])
    return (buffered - buffer * float(vector["entry_price"])) / (1.0 - buffer)


# --- tiers ---------------------------------------------------------------------------------


def test_btc_tiers_parse_from_ccxt_shape() -> None:
    assert len(BTC) == 12
    assert BTC[0] == Tier(0.0, 50_000.0, 0.004, 0.0, 125.0)
    assert BTC[2] == Tier(600_000.0, 3_000_000.0, 0.0065, 950.0, 75.0)
    assert BTC[-1] == Tier(1_200_000_000.0, 1_800_000_000.0, 0.5, 421_481_450.0, 1.0)


def test_tiers_are_sorted_whatever_the_input_order() -> None:
    entries = REF["btc_usdt_tiers"]["entries"]
    assert tiers_from_ccxt(list(reversed(entries))) == BTC


def test_maint_amount_from_continuity_matches_binance_doc_example() -> None:
    # Binance FAQ b3c689c1...: "Maintenance Amount on Level 5 = 250,000 * (1% - 0.5%) + 50 USDT
    # = 1,300 USDT", on the BTC brackets of the time:
    # [0, 50k) 0.4 %, [50k, 250k) 0.5 %, [250k, 1M) 1 %.
    entries = [
        {
            "minNotional": 0,
            "maxNotional": 50_000,
            "maintenanceMarginRate": 0.004,
            "maxLeverage": 125,
        },
        {
            "minNotional": 50_000,
            "maxNotional": 250_000,
            "maintenanceMarginRate": 0.005,
            "maxLeverage": 100,
        },
        {
            "minNotional": 250_000,
            "maxNotional": 1_000_000,
            "maintenanceMarginRate": 0.01,
            "maxLeverage": 50,
        },
    ]
    tiers = tiers_from_ccxt(entries)
    assert [t.maint_amount for t in tiers] == pytest.approx([0.0, 50.0, 1_300.0])


def test_maint_amount_from_continuity_matches_published_btc_cum() -> None:
    stripped = [
        {k: v for k, v in e.items() if k != "info"} for e in REF["btc_usdt_tiers"]["entries"]
    ]
    derived = tiers_from_ccxt(stripped)
    published = [float(e["info"]["cum"]) for e in REF["btc_usdt_tiers"]["entries"]]
    assert [t.maint_amount for t in derived] == pytest.approx(published, rel=1e-12)


def test_maint_amt_key_is_read() -> None:
    # freqtrade conftest shape: maintAmt instead of info.cum (values here are freqtrade's BTC ones).
    entries = [
        {
            "minNotional": 0,
            "maxNotional": 50000,
            "maintenanceMarginRate": 0.004,
            "maxLeverage": 125,
            "maintAmt": 0.0,
        },
        {
            "minNotional": 50000,
            "maxNotional": 250000,
            "maintenanceMarginRate": 0.005,
            "maxLeverage": 100,
            "maintAmt": 50.0,
        },
    ]
    assert [t.maint_amount for t in tiers_from_ccxt(entries)] == [0.0, 50.0]


def test_open_ended_last_tier() -> None:
    entries = [
        {"minNotional": 0, "maxNotional": 100, "maintenanceMarginRate": 0.01, "maxLeverage": 50},
        {"minNotional": 100, "maxNotional": None, "maintenanceMarginRate": 0.02, "maxLeverage": 20},
    ]
    tiers = tiers_from_ccxt(entries)
    assert tiers[1].max_notional == math.inf
    assert tiers[1].maint_amount == pytest.approx(100 * (0.02 - 0.01))


def _entry(low: float, high: float, mmr: float, lev: float = 10.0) -> dict[str, float]:
    return {
        "minNotional": low,
        "maxNotional": high,
        "maintenanceMarginRate": mmr,
        "maxLeverage": lev,
    }


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([], "no leverage tiers"),
        ([_entry(0, 100, 0.01), _entry(120, 200, 0.02)], "not contiguous"),
        ([_entry(0, 100, 0.01), _entry(90, 200, 0.02)], "not contiguous"),
        ([_entry(0, 100, 0.0)], "not in \\(0, 1\\)"),
        ([_entry(0, 100, 1.0)], "not in \\(0, 1\\)"),
        ([_entry(0, 100, 0.02), _entry(100, 200, 0.01)], "falls"),
        ([_entry(0, 100, 0.01, lev=0.0)], "leverage"),
        ([_entry(100, 100, 0.01)], "empty tier"),
        ([{"minNotional": 0, "maxNotional": 100, "maxLeverage": 5}], "maintenanceMarginRate"),
    ],
)
def test_bad_tiers_are_refused(entries: list[dict[str, float]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiers_from_ccxt(entries)


def test_tiers_by_symbol_names_the_bad_symbol() -> None:
    data = {"OK/USDT:USDT": [_entry(0, 100, 0.01)], "BAD/USDT:USDT": [_entry(0, 100, -0.01)]}
    with pytest.raises(ValueError, match="BAD/USDT:USDT"):
        tiers_by_symbol(data)


def test_every_bundled_binance_symbol_parses_and_its_cum_is_continuous() -> None:
    path = SHARED / "binance_leverage_tiers.json"
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    data = json.loads(path.read_text(encoding="utf-8"))
    parsed = tiers_by_symbol(data)
    assert len(parsed) == 349
    for symbol, tiers in parsed.items():
        # Binance's published cum equals the continuity formula (so MM is continuous).
        for prev, cur in pairwise(tiers):
            expected = prev.maint_amount + cur.min_notional * (cur.mmr - prev.mmr)
            assert cur.maint_amount == pytest.approx(expected, rel=1e-9, abs=1e-6), symbol


@pytest.mark.parametrize(
    ("notional", "index"),
    [
        (-1.0, 0),
        (0.0, 0),
        (49_999.99, 0),
        (50_000.0, 1),
        (599_999.0, 1),
        (600_000.0, 2),
        (1_799_999_999.0, 11),
        (1e13, 11),
    ],
)
def test_tier_index(notional: float, index: int) -> None:
    assert tier_index(notional, BTC) == index
    assert tier_index(notional, list(BTC)) == index


@pytest.mark.parametrize(
    ("notional", "mm"),
    [
        (30_000.0, 30_000 * 0.004),  # tier 1: 120
        (50_000.0, 50_000 * 0.005 - 50),  # tier 2 at its floor: 200 = 50,000 * 0.004 (continuous)
        (1_000_000.0, 1_000_000 * 0.0065 - 950),  # tier 3: 5,550
        (20_000_000.0, 20_000_000 * 0.02 - 131_450),  # tier 5: 268,550
    ],
)
def test_maintenance_margin(notional: float, mm: float) -> None:
    assert maintenance_margin(notional, BTC) == pytest.approx(mm, rel=1e-12)


# --- reference vectors (freqtrade) -----------------------------------------------------------


def _single_tier(vector: dict[str, Any]) -> tuple[Tier, ...]:
    cum = vector["maintenance_amount"] or 0.0
    return (Tier(0.0, math.inf, float(vector["mm_ratio"]), float(cum), float(vector["leverage"])),)


@pytest.mark.parametrize("vector", _vectors("binance"), ids=lambda v: v["id"])
def test_freqtrade_binance_vectors(vector: dict[str, Any]) -> None:
    price = liquidation_price(
        side=vector["side"],
        amount=float(vector["amount"]),
        entry_price=float(vector["entry_price"]),
        margin_mode=vector["margin_mode"],
        wallet_balance=float(vector["wallet_balance"]),
        tiers=_single_tier(vector),
    )
    assert price == pytest.approx(_unbuffered(vector), rel=1e-6)


@pytest.mark.parametrize("vector", _vectors("gate_okx_freqtrade"), ids=lambda v: v["id"])
def test_freqtrade_gate_okx_vectors_match_the_tiered_model(vector: dict[str, Any]) -> None:
    # freqtrade's isolated gate/okx price is (E - W/q) / (1 - (mmr + fee)) for a long and
    # (E + W/q) / (1 + (mmr + fee)) for a short: margin rate = mmr + fee, i.e. the tiered
    # model's isolated tier-1 threshold with the taker fee rate as the liquidation fee rate.
    price = liquidation_price(
        side=vector["side"],
        amount=float(vector["amount"]),
        entry_price=float(vector["entry_price"]),
        margin_mode=vector["margin_mode"],
        wallet_balance=float(vector["wallet_balance"]),
        tiers=_single_tier(vector),
        liquidation_fee_rate=float(vector["taker_fee_rate"]),
    )
    assert price == pytest.approx(_unbuffered(vector), rel=1e-6)


def test_binance_faq_cross_long_example() -> None:
    doc = REF["doc_examples"][0]
    # 1,000 USDT at 50,000 is q = 0.02 BTC; tier 1 (N < 50k): LP = (500 + 0 - 0.02 * 50,000)
    # / (0.02 * 0.004 - 0.02) = -500 / -0.01992 = 25,100.4016...
    price = liquidation_price(
        side="long",
        amount=doc["notional"] / doc["entry_price"],
        entry_price=doc["entry_price"],
        margin_mode="cross",
        wallet_balance=doc["wallet_balance"],
        tiers=BTC,
    )
    assert price == pytest.approx(doc["expected_liq_price"], abs=doc["tolerance_abs"])


# --- Binance model on the real BTC brackets, worked by hand -----------------------------------


def _liq(**kwargs: Any) -> float | None:
    return liquidation_price(tiers=BTC, **kwargs)


def test_isolated_long_tier1() -> None:
    # 0.1 BTC at 60,000 (N = 6,000, tier 1), isolated margin 600 (10x).
    # LP = (600 + 0 - 6,000) / (0.1 * 0.004 - 0.1) = 5,400 / 0.0996 = 54,216.867...
    # N(LP) = 5,422: tier 1, consistent.
    price = _liq(
        side="long", amount=0.1, entry_price=60_000.0, margin_mode="isolated", wallet_balance=600.0
    )
    assert price == pytest.approx(54_216.8674699, rel=1e-9)


def test_isolated_short_tier1() -> None:
    # LP = (600 + 0 + 6,000) / (0.1 * 0.004 + 0.1) = 6,600 / 0.1004 = 65,737.051...
    price = _liq(
        side="short", amount=0.1, entry_price=60_000.0, margin_mode="isolated", wallet_balance=600.0
    )
    assert price == pytest.approx(65_737.0517928, rel=1e-9)


def test_isolated_long_entry_in_tier4_liquidates_in_tier3() -> None:
    # 80 BTC at 40,000: N = 3,200,000 (tier 4), margin 320,000 (10x).
    # tier 4: (320,000 + 11,450 - 3,200,000) / (80 * 0.01 - 80) = 2,868,550 / 79.2 = 36,219.07
    #   -> N = 2,897,525 < 3,000,000: not tier 4, recalculate with tier 3:
    # tier 3: (320,000 + 950 - 3,200,000) / (80 * 0.0065 - 80) = 2,879,050 / 79.48 = 36,223.578...
    #   -> N = 2,897,886 in [600k, 3M): consistent.
    price = _liq(
        side="long",
        amount=80.0,
        entry_price=40_000.0,
        margin_mode="isolated",
        wallet_balance=320_000.0,
    )
    assert price == pytest.approx(2_879_050 / 79.48, rel=1e-12)
    assert price == pytest.approx(36_223.578258, rel=1e-9)


def test_isolated_long_steps_two_tiers() -> None:
    # 60 BTC at 60,000: N = 3,600,000 (tier 4), margin 3,100,000.
    # tier 4: (3,100,000 + 11,450 - 3,600,000) / (60 * -0.99) = 488,550 / 59.4 = 8,224.7: N 493k
    # tier 3: (3,100,000 + 950 - 3,600,000) / (60 * -0.9935) = 499,050 / 59.61 = 8,372.0: N 502k
    # tier 2: (3,100,000 + 50 - 3,600,000) / (60 * -0.995) = 499,950 / 59.7 = 8,374.37
    #   -> N = 502,462 in [50k, 600k): consistent.
    price = _liq(
        side="long",
        amount=60.0,
        entry_price=60_000.0,
        margin_mode="isolated",
        wallet_balance=3_100_000.0,
    )
    assert price == pytest.approx(499_950 / 59.7, rel=1e-12)


def test_isolated_short_entry_in_tier2_liquidates_in_tier3() -> None:
    # 10 BTC short at 55,000: N = 550,000 (tier 2), margin 110,000 (5x).
    # tier 2: (110,000 + 50 + 550,000) / (10 * 0.005 + 10) = 660,050 / 10.05 = 65,676.6
    #   -> N = 656,766 >= 600,000: recalculate with tier 3:
    # tier 3: (110,000 + 950 + 550,000) / (10 * 0.0065 + 10) = 660,950 / 10.065 = 65,668.157
    price = _liq(
        side="short",
        amount=10.0,
        entry_price=55_000.0,
        margin_mode="isolated",
        wallet_balance=110_000.0,
    )
    assert price == pytest.approx(660_950 / 10.065, rel=1e-12)
    assert price == pytest.approx(65_668.15698, rel=1e-9)


def test_cross_short_with_other_positions() -> None:
    # W = 10,000 wallet - 200 other MM + (-300) other uPnL = 9,500; 1 BTC short at 60,000 (tier 2).
    # LP = (9,500 + 50 + 60,000) / (0.005 + 1) = 69,550 / 1.005 = 69,203.98; N = 69,204: tier 2.
    price = _liq(
        side="short",
        amount=1.0,
        entry_price=60_000.0,
        margin_mode="cross",
        wallet_balance=10_000.0,
        other_maint_margin=200.0,
        other_unrealized_pnl=-300.0,
    )
    assert price == pytest.approx(69_550 / 1.005, rel=1e-12)


def test_cross_long_with_other_positions() -> None:
    # W = 5,000 - 100 + 600 = 5,500; 2 BTC long at 60,000 (N = 120,000, tier 2).
    # LP = (5,500 + 50 - 120,000) / (2 * 0.005 - 2) = 114,450 / 1.99 = 57,512.56
    # N = 115,025: tier 2, consistent.
    price = _liq(
        side="long",
        amount=2.0,
        entry_price=60_000.0,
        margin_mode="cross",
        wallet_balance=5_000.0,
        other_maint_margin=100.0,
        other_unrealized_pnl=600.0,
    )
    assert price == pytest.approx(114_450 / 1.99, rel=1e-12)


def test_isolated_ignores_other_positions() -> None:
    plain = _liq(
        side="long", amount=0.1, entry_price=60_000.0, margin_mode="isolated", wallet_balance=600.0
    )
    noisy = _liq(
        side="long",
        amount=0.1,
        entry_price=60_000.0,
        margin_mode="isolated",
        wallet_balance=600.0,
        other_maint_margin=1e6,
        other_unrealized_pnl=-1e6,
    )
    assert noisy == plain


def test_fully_collateralised_long_cannot_be_liquidated() -> None:
    # 1x long: balance = q*P > MM = q*P*mmr - cum at every price.
    assert (
        _liq(
            side="long",
            amount=1.0,
            entry_price=60_000.0,
            margin_mode="isolated",
            wallet_balance=60_000.0,
        )
        is None
    )


def test_one_x_short_is_liquidated_near_double() -> None:
    # (60,000 + 50 + 60,000) / 1.005 = 119,452.74; N = 119,453: tier 2.
    price = _liq(
        side="short",
        amount=1.0,
        entry_price=60_000.0,
        margin_mode="isolated",
        wallet_balance=60_000.0,
    )
    assert price == pytest.approx(120_050 / 1.005, rel=1e-12)


def test_already_below_maintenance_at_entry_gives_price_on_wrong_side() -> None:
    # 1 BTC at 60,000 (tier 2): MM = 300 - 50 = 250 > W = 200, so it is liquidatable at entry.
    # long: root (200 + 50 - 60,000) / (0.005 - 1) = 59,750 / 0.995 = 60,050.25 > entry.
    long = _liq(
        side="long", amount=1.0, entry_price=60_000.0, margin_mode="cross", wallet_balance=200.0
    )
    assert long == pytest.approx(59_750 / 0.995, rel=1e-12)
    # short: (200 + 50 + 60,000) / 1.005 = 59,950.25 < entry.
    short = _liq(
        side="short", amount=1.0, entry_price=60_000.0, margin_mode="cross", wallet_balance=200.0
    )
    assert short == pytest.approx(60_250 / 1.005, rel=1e-12)


def test_short_liquidatable_at_every_price_gives_zero() -> None:
    # W = -70,000 < -q*E: balance W + q*(E - P) < 0 for every P > 0.
    assert (
        _liq(
            side="short",
            amount=1.0,
            entry_price=60_000.0,
            margin_mode="cross",
            wallet_balance=-70_000.0,
        )
        == 0.0
    )


# --- bankruptcy -----------------------------------------------------------------------------


def test_bankruptcy_prices() -> None:
    # E - s * W / q: 60,000 - 600 / 0.1 = 54,000 (long), 60,000 + 6,000 = 66,000 (short).
    kw: dict[str, Any] = {
        "amount": 0.1,
        "entry_price": 60_000.0,
        "margin_mode": "isolated",
        "wallet_balance": 600.0,
    }
    assert bankruptcy_price(side="long", **kw) == pytest.approx(54_000.0, rel=1e-12)
    assert bankruptcy_price(side="short", **kw) == pytest.approx(66_000.0, rel=1e-12)
    # cross: W = 10,000 - 200 - 300 = 9,500; short 1 at 60,000 -> 69,500.
    assert bankruptcy_price(
        side="short",
        amount=1.0,
        entry_price=60_000.0,
        margin_mode="cross",
        wallet_balance=10_000.0,
        other_maint_margin=200.0,
        other_unrealized_pnl=-300.0,
    ) == pytest.approx(69_500.0, rel=1e-12)
    assert (
        bankruptcy_price(
            side="long", amount=1.0, entry_price=100.0, margin_mode="isolated", wallet_balance=100.0
        )
        is None
    )


# --- tiered model (liquidation fee rate > 0), worked by hand ---------------------------------


@pytest.mark.parametrize(
    ("idx", "mode", "whole", "rate"),
    [
        (0, "isolated", False, 0.004 + FEE),
        (0, "cross", False, 0.004),
        (1, "isolated", False, 0.005 + FEE),
        (1, "cross", True, 0.005),
        (2, "isolated", False, 0.0065 + FEE),
        (2, "cross", False, 0.0065 + FEE),
        (2, "isolated", True, 0.004 + FEE),
        (4, "cross", True, 0.004 + FEE),
        (4, "cross", False, 0.02 + FEE),
    ],
)
def test_tiered_threshold_table(idx: int, mode: Any, whole: bool, rate: float) -> None:
    assert tiered_threshold(idx, BTC, FEE, mode, whole) == pytest.approx(rate, rel=1e-12)


def test_tiered_isolated_long_tier1() -> None:
    # threshold 0.004 + 0.0005 = 0.0045; margin rate (600 + 0.1 (P - 60,000)) / (0.1 P) = 0.0045
    # -> P = (600 - 6,000) / (0.1 * (0.0045 - 1)) = 5,400 / 0.09955 = 54,244.10
    price = _liq(
        side="long",
        amount=0.1,
        entry_price=60_000.0,
        margin_mode="isolated",
        wallet_balance=600.0,
        liquidation_fee_rate=FEE,
    )
    assert price == pytest.approx(5_400 / 0.09955, rel=1e-12)


def test_tiered_tier2_cross_has_no_fee_isolated_has() -> None:
    # 2 BTC long at 50,000 (N = 100,000, tier 2), W = 10,000.
    # cross: rate 0.005 -> P = 90,000 / (2 * 0.995) = 45,226.13 (N = 90,452: tier 2)
    # isolated: rate 0.0055 -> P = 90,000 / (2 * 0.9945) = 45,248.87
    kw: dict[str, Any] = {
        "side": "long",
        "amount": 2.0,
        "entry_price": 50_000.0,
        "wallet_balance": 10_000.0,
        "liquidation_fee_rate": FEE,
    }
    assert _liq(margin_mode="cross", **kw) == pytest.approx(90_000 / 1.99, rel=1e-12)
    assert _liq(margin_mode="isolated", **kw) == pytest.approx(90_000 / 1.989, rel=1e-12)
    # tier <= 2: the first reduction is the whole liquidation.
    assert whole_liquidation_price(tiers=BTC, margin_mode="cross", **kw) == pytest.approx(
        90_000 / 1.99, rel=1e-12
    )


def test_tiered_tier3_partial_then_whole() -> None:
    # 20 BTC long at 50,000 (N = 1,000,000, tier 3), isolated margin 100,000.
    # partial at rate 0.0065 + 0.0005 = 0.007: P = 900,000 / (20 * 0.993) = 45,317.22
    #   (N = 906k, tier 3)
    # whole at tier 1's 0.004 + 0.0005 = 0.0045: P = 900,000 / (20 * 0.9955) = 45,203.42 (N = 904k)
    kw: dict[str, Any] = {
        "side": "long",
        "amount": 20.0,
        "entry_price": 50_000.0,
        "margin_mode": "isolated",
        "wallet_balance": 100_000.0,
        "liquidation_fee_rate": FEE,
    }
    assert _liq(**kw) == pytest.approx(900_000 / 19.86, rel=1e-12)
    assert whole_liquidation_price(tiers=BTC, **kw) == pytest.approx(900_000 / 19.91, rel=1e-12)
    assert liquidation_stage(tiers=BTC, price=46_000.0, **kw) == "none"
    assert liquidation_stage(tiers=BTC, price=45_300.0, **kw) == "partial"
    assert liquidation_stage(tiers=BTC, price=45_100.0, **kw) == "whole"


def test_tiered_trigger_walks_down_a_tier() -> None:
    # 13 BTC long at 50,000 (N = 650,000, tier 3), isolated margin 65,000.
    # tier 3 rate 0.007: P = 585,000 / (13 * 0.993) = 45,317.2 -> N = 589k, below tier 3's floor
    #   (price 600,000 / 13 = 46,153.85, where the rate is 1 - 585,000/600,000 = 0.025 > 0.0055).
    # tier 2 rate 0.0055: P = 585,000 / (13 * 0.9945) = 45,248.87 -> N = 588,235: tier 2.
    price = _liq(
        side="long",
        amount=13.0,
        entry_price=50_000.0,
        margin_mode="isolated",
        wallet_balance=65_000.0,
        liquidation_fee_rate=FEE,
    )
    assert price == pytest.approx(585_000 / 12.9285, rel=1e-12)


def test_tiered_trigger_at_bracket_boundary() -> None:
    # 10 BTC short at 59,000 (N = 590,000, tier 2), cross W = 13,600.
    # margin rate (13,600 + 590,000) / (10 P) - 1; at P = 60,000 (N = 600,000) it is 0.006.
    # tier 2 (cross, no fee) rate 0.005 is reached only at 603,600 / 10.05 = 60,059.7, beyond the
    # tier; at 60,000 the tier-3 threshold 0.0065 + 0.0005 = 0.007 > 0.006 applies at once:
    # the first forced reduction begins exactly at the boundary, 60,000.
    kw: dict[str, Any] = {
        "side": "short",
        "amount": 10.0,
        "entry_price": 59_000.0,
        "margin_mode": "cross",
        "wallet_balance": 13_600.0,
    }
    assert _liq(liquidation_fee_rate=FEE, **kw) == pytest.approx(60_000.0, rel=1e-12)
    # Binance model for comparison: tier 2 gives 603,650 / 10.05 = 60,064.7 (N >= 600k), so
    # tier 3: (13,600 + 950 + 590,000) / 10.065 = 60,064.58.
    assert _liq(**kw) == pytest.approx(604_550 / 10.065, rel=1e-12)


def test_whole_price_equals_liquidation_price_in_binance_model() -> None:
    kw: dict[str, Any] = {
        "side": "long",
        "amount": 80.0,
        "entry_price": 40_000.0,
        "margin_mode": "isolated",
        "wallet_balance": 320_000.0,
    }
    assert whole_liquidation_price(tiers=BTC, **kw) == _liq(**kw)


def test_binance_stage() -> None:
    # liquidation price 36,223.578 (see the tier-4 -> tier-3 case)
    kw: dict[str, Any] = {
        "side": "long",
        "amount": 80.0,
        "entry_price": 40_000.0,
        "margin_mode": "isolated",
        "wallet_balance": 320_000.0,
    }
    assert liquidation_stage(tiers=BTC, price=36_300.0, **kw) == "none"
    assert liquidation_stage(tiers=BTC, price=36_200.0, **kw) == "whole"


def test_margin_rate_and_balance() -> None:
    # long 2 at 50,000, W = 10,000; at 47,500: balance = 10,000 + 2 * (47,500 - 50,000) = 5,000,
    # position value 2 * 47,500 = 95,000, rate = 5,000 / 95,000.
    kw: dict[str, Any] = {
        "side": "long",
        "amount": 2.0,
        "entry_price": 50_000.0,
        "price": 47_500.0,
        "margin_mode": "cross",
        "wallet_balance": 10_000.0,
    }
    assert margin_balance(**kw) == pytest.approx(5_000.0)
    assert margin_rate(**kw) == pytest.approx(5_000 / 95_000)


# --- argument checks ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override",
    [
        {"side": "both"},
        {"margin_mode": "portfolio"},
        {"amount": 0.0},
        {"amount": -1.0},
        {"entry_price": 0.0},
        {"wallet_balance": math.nan},
        {"liquidation_fee_rate": -0.001},
        {"liquidation_fee_rate": 0.6},  # 0.5 (last tier) + 0.6 >= 1
    ],
)
def test_bad_arguments_raise(override: dict[str, Any]) -> None:
    kw: dict[str, Any] = {
        "side": "long",
        "amount": 1.0,
        "entry_price": 100.0,
        "margin_mode": "isolated",
        "wallet_balance": 10.0,
        "tiers": BTC,
    }
    kw.update(override)
    with pytest.raises(ValueError):
        liquidation_price(**kw)
