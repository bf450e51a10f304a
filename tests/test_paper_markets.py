"""Bundled market data: values agree with their named sources; config knobs are honoured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from paper.config import PaperConfig
from paper.markets import bundled_symbols, bundled_tier_entries, load_market, load_markets

SHARED = Path(__file__).resolve().parents[2] / "shared"
BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


def test_btc_matches_binance_exchange_info_excerpt() -> None:
    path = SHARED / "bench" / "freqtrade" / "binance_exchangeinfo_btcusdt.json"
    if not path.is_file():
        pytest.skip(f"shared bench data not found at {path}")
    (info,) = json.loads(path.read_text())["linear"]["symbols"]
    filters = {f["filterType"]: f for f in info["filters"]}
    m = load_market(BTC)
    assert m.id == info["symbol"] == "BTCUSDT"
    assert m.rules.price_step == float(filters["PRICE_FILTER"]["tickSize"])
    assert m.min_price == float(filters["PRICE_FILTER"]["minPrice"])
    assert m.rules.amount_step == float(filters["LOT_SIZE"]["stepSize"])
    assert m.rules.min_amount == float(filters["LOT_SIZE"]["minQty"])
    assert m.max_amount == float(filters["LOT_SIZE"]["maxQty"])
    assert m.max_market_amount == float(filters["MARKET_LOT_SIZE"]["maxQty"])
    assert m.rules.min_notional == float(filters["MIN_NOTIONAL"]["notional"])


def test_eth_values_from_the_brief() -> None:
    r = load_market(ETH).rules
    assert (r.price_step, r.amount_step, r.min_amount, r.min_notional) == (0.01, 0.001, 0.001, 20)


def test_every_market_names_its_source_and_has_tiers() -> None:
    raw = json.loads(
        (Path(__file__).resolve().parents[1] / "paper" / "data" / "markets.json").read_text()
    )
    assert set(raw["markets"]) == set(bundled_symbols())
    for symbol, spec in raw["markets"].items():
        assert spec["_source"], symbol
        m = load_market(symbol)
        assert m.rules.tiers[0].min_notional == 0
        assert m.rules.max_leverage == bundled_tier_entries()[symbol][0]["maxLeverage"]


def test_bundled_tiers_equal_the_shared_copy() -> None:
    path = SHARED / "data" / "binance_leverage_tiers.json"
    if not path.is_file():
        pytest.skip(f"shared data not found at {path}")
    shared = json.loads(path.read_text())
    assert {s: list(e) for s, e in bundled_tier_entries().items()} == shared
    # BTC tier 2: [50k, 600k), mmr 0.5 %, cum 50, 100x (Binance brackets, 2024-10-24)
    t2 = load_market(BTC).rules.tiers[1]
    assert (t2.min_notional, t2.max_notional, t2.mmr, t2.maint_amount, t2.max_leverage) == (
        50_000,
        600_000,
        0.005,
        50,
        100,
    )


def test_config_sets_fees_and_the_tiered_fee_rate() -> None:
    cfg = PaperConfig(
        taker_fee=0.0004, liquidation_profiles={ETH: "tiered"}, liquidation_fee_rate=0.01
    )
    markets = load_markets([BTC, ETH], cfg)
    assert markets[BTC].rules.taker_fee == 0.0004
    assert markets[BTC].rules.maker_fee == 0.0002
    assert markets[BTC].rules.liquidation_fee_rate == 0.0
    assert markets[ETH].rules.liquidation_fee_rate == 0.01


def test_config_is_frozen_bounded_and_strict() -> None:
    cfg = PaperConfig()
    assert (cfg.starting_balance, cfg.slippage_bps, cfg.funding_rate) == (10_000, 2, 0.0001)
    assert cfg.trigger_price == "mark" and cfg.liquidation_profile == "binance"
    assert cfg.liquidation_fee_rate == 0.005
    with pytest.raises(ValidationError):
        PaperConfig(slippage_bps=-1)
    with pytest.raises(ValidationError):
        PaperConfig.model_validate({"unknown": 1})
    with pytest.raises(ValidationError):
        PaperConfig.model_validate({"liquidation_profile": "kraken"})
    with pytest.raises(ValidationError):
        cfg.slippage_bps = 3  # type: ignore[misc]
    for name, field in PaperConfig.model_fields.items():
        assert field.description, name
