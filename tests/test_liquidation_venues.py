"""Bybit's and OKX's liquidation models against their published numbers.

Sources (every figure is in tests/data/liq_bybit.json and tests/data/liq_okx.json with the URL
it was read from; nothing below is derived from the code under test):

- Bybit "Liquidation Price (USDT Contract)": its worked examples (1 BTC at 20,000 USDT, 50x,
  MMR 0.5 %: IM 400, MM 100, LP 19,700; and the shorter restated ones), the older help-centre
  examples in shared/data (1 BTC at 10,000 / 8,000) and freqtrade's Bybit vectors;
- Bybit "Margin Parameters" for BTCUSDT: the 20 risk-limit tiers with their published
  maintenance-margin deductions (bundled in paper/data/bybit.json);
- OKX: freqtrade's OKX vectors (OKX's isolated formula, mmr + taker fee), OKX's forced partial
  liquidation example (15,000 contracts, 13,000 closed) and the ETHUSDT perpetual position tiers
  (bundled in paper/data/okx.json, in contracts of 0.1 ETH).
"""

from __future__ import annotations

import json
import math
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from guards import (
    MarketRules,
    Tier,
    Tiers,
    bankruptcy_price,
    liquidation_price,
    liquidation_stage,
    model_of,
    position_maintenance_margin,
    position_tier_index,
    profile_maintenance_margin,
    tier_index,
    tiered_threshold,
    tiers_from_ccxt,
    whole_liquidation_price,
)
from paper.config import PaperConfig
from paper.core import PaperCore
from paper.markets import PaperMarket, load_markets
from paper.venues import ccxt_tier_entries, contract_size, raw_tiers, venue_market

DATA = Path(__file__).parent / "data"
BYBIT: dict[str, Any] = json.loads((DATA / "liq_bybit.json").read_text(encoding="utf-8"))
OKX: dict[str, Any] = json.loads((DATA / "liq_okx.json").read_text(encoding="utf-8"))
T0 = 1_700_000_100_000


def one_tier(model: str, mmr: float, leverage: float = 125.0) -> Tiers:
    return Tiers([Tier(0.0, math.inf, mmr, 0.0, leverage)], model)  # type: ignore[arg-type]


# -- Bybit ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("ex", BYBIT["doc_examples"], ids=lambda e: str(e["id"]))
def test_bybit_published_examples(ex: dict[str, Any]) -> None:
    q, entry, lev = float(ex["amount"]), float(ex["entry_price"]), float(ex["leverage"])
    tiers = one_tier("bybit", float(ex["mmr"]))
    im = q * entry / lev
    assert im == pytest.approx(ex["initial_margin"], rel=1e-12)
    # the maintenance margin is on the entry value, whatever the price
    for price in (entry, entry * 0.9, entry * 1.1):
        mm = position_maintenance_margin(q, entry, price, tiers)
        assert mm == pytest.approx(ex["maintenance_margin"], rel=1e-12)
    liq = liquidation_price(
        side=ex["side"],
        amount=q,
        entry_price=entry,
        margin_mode="isolated",
        wallet_balance=im + float(ex["extra_margin"]),
        tiers=tiers,
    )
    assert liq == pytest.approx(ex["expected_liq_price"], rel=1e-12)


def test_bybit_example_on_the_bundled_btcusdt_tiers() -> None:
    """Example 1 on Bybit's real BTCUSDT table (20,000 USDT is in the 0.5 % tier)."""
    ex = BYBIT["doc_examples"][0]
    rules, _ = venue_market("bybit", "BTC/USDT:USDT")
    assert rules.model == "bybit"
    liq = liquidation_price(
        side="long",
        amount=1.0,
        entry_price=20_000.0,
        margin_mode="isolated",
        wallet_balance=400.0,
        tiers=rules.tiers,
    )
    assert liq == pytest.approx(ex["expected_liq_price"], rel=1e-12)
    assert whole_liquidation_price(
        side="long",
        amount=1.0,
        entry_price=20_000.0,
        margin_mode="isolated",
        wallet_balance=400.0,
        tiers=rules.tiers,
    ) == pytest.approx(liq)


@pytest.mark.parametrize("v", BYBIT["freqtrade_vectors"], ids=lambda v: str(v["id"]))
def test_bybit_freqtrade_vectors(v: dict[str, Any]) -> None:
    assert v["liquidation_buffer"] == 0.0 and v["maintenance_amount"] is None
    liq = liquidation_price(
        side=v["side"],
        amount=float(v["amount"]),
        entry_price=float(v["entry_price"]),
        margin_mode="isolated",
        wallet_balance=float(v["wallet_balance"]),
        tiers=one_tier("bybit", float(v["mm_ratio"])),
    )
    assert liq == pytest.approx(v["expected_liq_price"], rel=1e-6)


def test_bybit_btcusdt_table_is_bundled_as_published() -> None:
    table = BYBIT["btcusdt_margin_parameters"]["rows"]
    tiers = tiers_from_ccxt(ccxt_tier_entries("bybit", "BTC/USDT:USDT"), model="bybit")
    assert len(tiers) == len(table) == len(raw_tiers("bybit", "BTC/USDT:USDT"))
    low = 0.0
    for tier, (_, limit, lev, mmr_pct, deduction) in zip(tiers, table, strict=True):
        assert (tier.min_notional, tier.max_notional) == (low, float(limit))
        assert tier.mmr == pytest.approx(mmr_pct / 100.0, rel=1e-12)
        assert tier.max_leverage == lev
        assert tier.maint_amount == pytest.approx(deduction, abs=1e-9)
        low = float(limit)


def test_bybit_published_deductions_follow_bybits_own_formula() -> None:
    """Deduction_n = limit_(n-1) * (mmr_n - mmr_(n-1)) + deduction_(n-1), all 20 tiers."""
    rows = BYBIT["btcusdt_margin_parameters"]["rows"]
    derived = 0.0
    for prev, cur in pairwise(rows):
        derived += prev[1] * (cur[3] - prev[3]) / 100.0
        assert derived == pytest.approx(cur[4], abs=1e-6), cur
    # and with no deduction column, tiers_from_ccxt derives the same (the continuity rule)
    bare = [
        {k: v for k, v in e.items() if k != "info"}
        for e in ccxt_tier_entries("bybit", "BTC/USDT:USDT")
    ]
    for tier, row in zip(tiers_from_ccxt(bare, model="bybit"), rows, strict=True):
        assert tier.maint_amount == pytest.approx(row[4], abs=1e-6)


def test_bybit_tier_bounds_hold_their_upper_value() -> None:
    """ "2,000,000 USDT or below ... 0.5 %; increases to 2,600,000 USDT ... 0.56 %"."""
    rules, _ = venue_market("bybit", "BTC/USDT:USDT")
    for value, mmr in BYBIT["btcusdt_mmr_statement"]["cases"]:
        assert rules.tiers[tier_index(float(value), rules.tiers)].mmr == pytest.approx(mmr)
    # Binance's brackets start the next tier at the bound (unchanged)
    binance = Tiers([Tier(0.0, 50_000.0, 0.004, 0.0, 125.0), Tier(50_000.0, 1e9, 0.005, 50, 100)])
    assert tier_index(50_000.0, binance) == 1


def test_bybit_mm_uses_the_deduction_of_the_entry_value_tier() -> None:
    """3 BTC at 1,000,000 USDT = 3,000,000 value: tier 3 (0.63 %, deduction 3,020)."""
    rules, _ = venue_market("bybit", "BTC/USDT:USDT")
    mm = position_maintenance_margin(3.0, 1_000_000.0, 900_000.0, rules.tiers)
    assert mm == pytest.approx(3_000_000 * 0.0063 - 3_020)
    with pytest.raises(ValueError, match="position_maintenance_margin"):
        profile_maintenance_margin(3_000_000.0, rules.tiers)


def test_bybit_lone_cross_position_is_the_isolated_formula_on_the_wallet() -> None:
    """Bybit's cross LP, Entry - (Available Balance + IM - MM) / Size: AB + IM is the wallet."""
    tiers = one_tier("bybit", 0.005)
    kw: dict[str, Any] = {"amount": 1.0, "entry_price": 20_000.0, "tiers": tiers}
    for side in ("long", "short"):
        cross = liquidation_price(side=side, margin_mode="cross", wallet_balance=1_000.0, **kw)
        iso = liquidation_price(side=side, margin_mode="isolated", wallet_balance=1_000.0, **kw)
        assert cross == pytest.approx(iso)


def test_bybit_stage_and_bankruptcy() -> None:
    tiers = one_tier("bybit", 0.005)
    kw: dict[str, Any] = {
        "side": "long",
        "amount": 1.0,
        "entry_price": 20_000.0,
        "margin_mode": "isolated",
        "wallet_balance": 400.0,
    }
    assert liquidation_stage(price=19_700.0, tiers=tiers, **kw) == "whole"
    assert liquidation_stage(price=19_700.5, tiers=tiers, **kw) == "none"
    assert bankruptcy_price(**kw) == pytest.approx(19_600.0)
    assert model_of(tiers) == "bybit" and model_of(tiers, 0.01) == "bybit"


def test_paper_bybit_profile_liquidates_at_the_published_price() -> None:
    """The paper exchange's bybit profile: example 1's position goes at 19,700, margin lost."""
    config = PaperConfig(liquidation_profile="bybit", slippage_bps=0.0, taker_fee=0.0)
    core = PaperCore(config, load_markets(None, config), 10_000.0)
    symbol = "BTC/USDT:USDT"
    core.on_price(symbol, 20_000.0, T0)
    core.set_leverage(50, symbol)
    core.create_order(symbol, "market", "buy", 1.0)
    assert core.liquidation_price(symbol) == pytest.approx(19_700.0)
    core.on_price(symbol, 19_700.5, T0 + 60_000)
    assert core.positions()
    core.on_price(symbol, 19_700.0, T0 + 120_000)
    assert not core.positions()
    (event,) = core.liquidations
    assert not event.partial and event.price == pytest.approx(19_600.0)  # bankruptcy price
    assert core.wallet_balance == pytest.approx(10_000.0 - 400.0)
    assert event.profile == "bybit"


# -- OKX -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("v", OKX["freqtrade_vectors"], ids=lambda v: str(v["id"]))
def test_okx_freqtrade_vectors(v: dict[str, Any]) -> None:
    assert v["liquidation_buffer"] == 0.0
    liq = liquidation_price(
        side=v["side"],
        amount=float(v["amount"]),
        entry_price=float(v["entry_price"]),
        margin_mode="isolated",
        wallet_balance=float(v["wallet_balance"]),
        tiers=one_tier("okx", float(v["mm_ratio"])),
        liquidation_fee_rate=float(v["taker_fee_rate"]),
    )
    assert liq == pytest.approx(v["expected_liq_price"], rel=1e-6)


def test_okx_trigger_includes_the_fee_in_cross_too() -> None:
    """OKX: 'lower than the Maintenance Margin Ratio + Liquidation Fee Rate' (both modes)."""
    tiers = Tiers(
        [
            Tier(0.0, 10.0, 0.004, 0.0, 125.0),
            Tier(10.0, 20.0, 0.005, 0.0, 100.0),
            Tier(20.0, 40.0, 0.01, 0.0, 50.0),
        ],
        "okx",
    )
    for mode in ("isolated", "cross"):
        assert tiered_threshold(0, tiers, 0.0005, mode, False, "okx") == pytest.approx(0.0045)
        assert tiered_threshold(2, tiers, 0.0005, mode, False, "okx") == pytest.approx(0.0105)
        assert tiered_threshold(2, tiers, 0.0005, mode, True, "okx") == pytest.approx(0.0045)
    # the seed article's tiered model leaves it out in cross for tiers 1-2 (unchanged)
    assert tiered_threshold(0, tiers, 0.0005, "cross", False) == pytest.approx(0.004)


def test_okx_tier_is_the_size_not_the_notional() -> None:
    """'the number of contracts, tier, and the Maintenance Margin Ratio ... the position'."""
    rules, _ = venue_market("okx", "ETH/USDT:USDT")
    tiers = rules.tiers
    # 300 ETH = 3,000 contracts is tier 1 at any price; 300.1 ETH is tier 2
    for price in (100.0, 3_000.0, 1e6):
        assert position_tier_index(300.0, price, tiers) == 0
        assert position_tier_index(300.1, price, tiers) == 1
    mm = position_maintenance_margin(10.0, 2_000.0, 1_500.0, tiers, 0.0005)
    assert mm == pytest.approx(10.0 * 1_500.0 * (0.004 + 0.0005))


def test_okx_eth_tiers_are_bundled_as_published_in_contracts_of_0_1_eth() -> None:
    spec = OKX["eth_usdt_swap_position_tiers"]
    size = contract_size("okx", "ETH/USDT:USDT")
    assert size == spec["contract_value"]["value"]
    raw = raw_tiers("okx", "ETH/USDT:USDT")
    for row, (_, low, high, mmr_pct, imr_pct, lev) in zip(raw, spec["rows"], strict=False):
        assert (int(row["minSz"]), int(row["maxSz"])) == (low, high)
        assert float(row["mmr"]) == pytest.approx(mmr_pct / 100.0)
        assert float(row["imr"]) == pytest.approx(imr_pct / 100.0)
        assert float(row["maxLever"]) == lev
    # tier 4 and up: +12,000 contracts, +0.5 % mmr and imr from the previous tier
    for prev, cur in pairwise(raw[2:]):
        assert int(cur["maxSz"]) - int(prev["maxSz"]) == 12_000
        assert float(cur["mmr"]) - float(prev["mmr"]) == pytest.approx(0.005)
        assert float(cur["imr"]) - float(prev["imr"]) == pytest.approx(0.005)
    entries = ccxt_tier_entries("okx", "ETH/USDT:USDT")
    tiers = tiers_from_ccxt(entries, model="okx", contract_size=size)
    assert [(t.min_notional, t.max_notional) for t in tiers[:3]] == [
        (0.0, 300.0),
        (300.0, 600.0),
        (600.0, 1_200.0),
    ]
    assert all(t.maint_amount == 0.0 for t in tiers)


def okx_example_core() -> tuple[PaperCore, str]:
    """A market with the example's tiers (contracts of 1 unit): tier 1 <= 2,000, tier 3 from
    12,001 at 2 %; the other rates and leverages are not in the example (placeholders)."""
    symbol = "XYZ/USDT:USDT"
    tiers = Tiers(
        [
            Tier(0.0, 2_000.0, 0.01, 0.0, 50.0),
            Tier(2_000.0, 12_000.0, 0.015, 0.0, 40.0),
            Tier(12_000.0, 22_000.0, 0.02, 0.0, 25.0),
            Tier(22_000.0, math.inf, 0.025, 0.0, 20.0),
        ],
        "okx",
    )
    rules = MarketRules(
        symbol=symbol,
        tiers=tiers,
        amount_step=1.0,
        price_step=0.0001,
        min_amount=1.0,
        taker_fee=0.0005,
        maker_fee=0.0002,
        liquidation_model="okx",
    )
    config = PaperConfig(liquidation_profile="okx", slippage_bps=0.0, auto_funding=False)
    core = PaperCore(config, {symbol: PaperMarket.from_rules(rules)}, 1_000_000.0)
    return core, symbol


def test_okx_partial_liquidation_closes_what_the_published_example_closes() -> None:
    ex = OKX["partial_liquidation_example"]
    core, symbol = okx_example_core()
    core.on_price(symbol, 10.0, T0)
    core.set_leverage(25, symbol)
    core.create_order(symbol, "market", "buy", float(ex["position_contracts"]))
    price, ts = 10.0, T0
    while not core.liquidations:
        price = round(price * 0.999, 4)
        ts += 60_000
        core.on_price(symbol, price, ts)
    first = core.liquidations[0]
    assert first.partial
    assert first.amount == pytest.approx(ex["closed_contracts"])
    (pos,) = core.positions()
    assert pos["contracts"] == pytest.approx(ex["tier1_max_contracts"])


def test_paper_okx_profile_matches_the_guards_on_the_bundled_eth_market() -> None:
    config = PaperConfig(liquidation_profile="okx")
    core = PaperCore(config, load_markets(None, config), 50_000.0)
    symbol = "ETH/USDT:USDT"
    rules = core.market_rules(symbol)
    assert rules.model == "okx" and rules.liquidation_fee_rate == rules.taker_fee == 0.0005
    core.on_price(symbol, 2_000.0, T0)
    core.set_leverage(20, symbol)
    core.create_order(symbol, "market", "sell", 10.0)
    (pos,) = core.positions()
    ours = liquidation_price(
        side="short",
        amount=10.0,
        entry_price=pos["entryPrice"],
        margin_mode="isolated",
        wallet_balance=pos["collateral"],
        tiers=rules.tiers,
        liquidation_fee_rate=rules.liquidation_fee_rate,
    )
    assert core.liquidation_price(symbol) == pytest.approx(ours)
    # (E + M/q) / (1 + mmr + fee), OKX's formula as freqtrade writes it
    margin = pos["collateral"]
    assert ours == pytest.approx((pos["entryPrice"] + margin / 10.0) / (1 + 0.004 + 0.0005))


def test_venue_profiles_refuse_other_venues_tiers() -> None:
    from paper.markets import load_market

    binance_btc = load_market("BTC/USDT:USDT")
    with pytest.raises(ValueError, match="okx's tiers"):
        PaperCore(PaperConfig(liquidation_profile="okx"), {"BTC/USDT:USDT": binance_btc})
    with pytest.raises(KeyError, match="no bundled okx market"):
        load_markets(["BTC/USDT:USDT"], PaperConfig(liquidation_profile="okx"))
