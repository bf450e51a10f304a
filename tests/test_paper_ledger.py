"""The paper ledger reconciles with independent records, through whole and partial liquidations.

Every figure is compared with a different record than the one it comes from: the wallet with
the trades' nets, the fee accumulator with the fills' fees, the funding accumulator with the
funding payments, the trades with the fills. Hand-worked examples use Binance's BTC/USDT:USDT
leverage brackets as published in ``shared/data/binance_leverage_tiers.json`` (2024-10-24):
tier 1 [0, 50k) mmr 0.004 cum 0; tier 2 [50k, 600k) mmr 0.005 cum 50; tier 3 [600k, 3M) mmr
0.0065 cum 950. Taker fee 0.0005, maker 0.0002 (bundled market).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from paper.config import PaperConfig
from paper.core import Fill, LiquidationEvent, PaperCore, Trade
from paper.markets import load_markets

BTC = "BTC/USDT:USDT"
T0 = 1_700_000_100_000  # 2023-11-14 22:15:00 UTC
NEXT_FUNDING = 1_700_006_400_000  # 2023-11-15 00:00:00 UTC
CENT = 0.005


def make(balance: float, **cfg: Any) -> PaperCore:
    cfg.setdefault("slippage_bps", 0)
    config = PaperConfig(**cfg)
    return PaperCore(config, load_markets([BTC], config), balance)


def test_bundled_btc_tiers_are_binances_published_brackets(shared_data: Path) -> None:
    published = json.loads((shared_data / "binance_leverage_tiers.json").read_text())[BTC]
    tiers = load_markets([BTC])[BTC].rules.tiers
    assert len(tiers) == len(published)
    for tier, row in zip(tiers, published, strict=True):
        assert tier.min_notional == row["minNotional"]
        assert tier.max_notional == (row["maxNotional"] or math.inf)
        assert tier.mmr == row["maintenanceMarginRate"]
        assert tier.maint_amount == float(row["info"]["cum"])
        assert tier.max_leverage == row["maxLeverage"]


# ---------------------------------------------------------------- hand-worked


def test_binance_whole_liquidation_after_a_partial_close_and_funding() -> None:
    core = make(10_000, funding_rate=0.0001)
    core.set_leverage(10, BTC)
    core.on_price(BTC, 50_000, T0)
    core.create_order(BTC, "market", "buy", 0.1)  # fee 5000 * 0.0005 = 2.5; margin 500
    core.on_price(BTC, 51_000, T0 + 60_000)
    core.create_order(BTC, "market", "sell", 0.05, params={"reduceOnly": True})
    # pnl 0.05 * 1000 = 50; fee 0.05 * 51000 * 0.0005 = 1.275; margin left 250
    core.on_price(BTC, 50_000, NEXT_FUNDING)
    # funding: the long pays 0.05 * 50000 * 0.0001 = 0.25 from its margin -> 249.75
    # trigger (tier 1): 249.75 + 0.05 (P - 50000) = 0.05 P 0.004 -> 0.0498 P = 2250.25
    assert core.liquidation_price(BTC) == pytest.approx(2_250.25 / 0.0498, rel=1e-12)
    core.on_price(BTC, 45_190, NEXT_FUNDING + 60_000)  # 45185.74 not reached
    assert core.liquidations == []
    fill, trade, event = core.on_price(BTC, 45_100, NEXT_FUNDING + 120_000)
    assert isinstance(fill, Fill) and isinstance(trade, Trade)
    assert isinstance(event, LiquidationEvent)
    # bankruptcy: 249.75 + 0.05 (P - 50000) = 0 -> P = 45005; all 249.75 of margin lost
    assert fill.price == pytest.approx(45_005) and event.price == pytest.approx(45_005)
    assert trade.exit_price == fill.price and trade.funding == pytest.approx(-0.25)
    assert event.margin_lost == pytest.approx(249.75)
    assert fill.realized_pnl == pytest.approx(-249.75) and fill.fee == 0.0
    # recorded fee: the balance at the trigger, 249.75 + 0.05 (45100 - 50000) = 4.75, inside
    # the margin lost
    assert event.fee == pytest.approx(4.75)
    # wallet: 10000 - 2.5 + 50 - 1.275 - 0.25 - 249.75
    assert core.wallet_balance == pytest.approx(9_796.225, abs=1e-9)
    assert core.total_fees == pytest.approx(2.5 + 1.275)  # no liquidation fee debited
    # round trips: 50 - (1.25 + 1.275) = 47.475; -249.75 - 1.25 - 0.25 = -251.25
    assert [t.net for t in core.trades] == [pytest.approx(47.475), pytest.approx(-251.25)]


def test_tiered_partial_then_whole_liquidation_ledger() -> None:
    core = make(40_000, liquidation_profile="tiered", liquidation_fee_rate=0.005)
    core.set_leverage(20, BTC)
    core.on_price(BTC, 50_000, T0)
    core.create_order(BTC, "market", "buy", 13)
    # notional 650000 (tier 3): margin 32500, fee 325 -> wallet 39675
    partial_fill, _, partial = core.on_price(BTC, 48_050, T0 + 60_000)
    assert isinstance(partial_fill, Fill) and isinstance(partial, LiquidationEvent)
    # rate at 48050: (32500 - 13 * 1950) / 624650 = 0.01145 <= mmr3 + fee = 0.0115; keep
    # floor(600000 / 48050, 0.001) = 12.486, close 0.514 at the mark, fee 0.005 * 0.514 * 48050
    assert partial.partial and partial_fill.fee == pytest.approx(123.4885)
    assert core.wallet_balance == pytest.approx(39_675 - 1_002.3 - 123.4885)
    # the partial fee is a debit: it counts in the fees
    assert core.total_fees == pytest.approx(325 + 123.4885)
    fill, _, whole = core.on_price(BTC, 47_900, T0 + 120_000)
    assert isinstance(fill, Fill) and isinstance(whole, LiquidationEvent)
    # margin left 32500 - 1002.3 - 123.4885 = 31374.2115 on 12.486 BTC;
    # bankruptcy 31374.2115 + 12.486 (P - 50000) = 0 -> P = 50000 - 2512.7512...
    assert whole.price == pytest.approx(50_000 - 31_374.2115 / 12.486)
    assert fill.price == pytest.approx(whole.price)
    assert whole.margin_lost == pytest.approx(31_374.2115)
    assert -fill.realized_pnl == pytest.approx(31_374.2115) and fill.fee == 0.0
    # 40000 - 325 - 32500: the whole initial margin went, partial loss and fee included
    assert core.wallet_balance == pytest.approx(7_175, abs=1e-9)
    # realised: -1002.3 - 31374.2115 = -32376.5115; fees 448.4885
    assert core.realized_pnl == pytest.approx(-32_376.5115)
    assert core.wallet_balance == pytest.approx(
        40_000 + core.realized_pnl - core.total_fees + core.total_funding, abs=1e-9
    )
    assert core.stats()["liquidation_fees"] == pytest.approx(123.4885 + whole.fee)


# ---------------------------------------------------------------- identities, both profiles


def run_session(profile: str, mode: str) -> tuple[PaperCore, float]:
    """Round trips (market, maker limit, stop), funding, then a big position liquidated."""
    start = 40_000.0 if mode == "isolated" else 33_000.0
    core = make(
        start,
        slippage_bps=1,
        liquidation_profile=profile,
        liquidation_fee_rate=0.005,
        default_margin_mode=mode,
        funding_rate=0.0001,
    )
    core.set_leverage(20, BTC)
    core.on_price(BTC, 50_000, T0)
    core.create_order(BTC, "market", "buy", 0.5, params={"clientOrderId": "a"})
    core.create_order(BTC, "limit", "sell", 0.5, 50_500, {"reduceOnly": True})
    core.on_price(BTC, 50_300, T0 + 60_000)
    core.on_price(BTC, 50_600, T0 + 120_000)  # the limit fills as maker
    core.create_order(BTC, "market", "sell", 0.3)
    core.create_order(BTC, "market", "buy", 0.3, None, {"stopLossPrice": 50_900})
    core.on_price(BTC, 50_700, NEXT_FUNDING)  # funding on the short
    core.on_price(BTC, 51_000, NEXT_FUNDING + 60_000)  # the stop fills
    assert core.positions() == []
    core.on_price(BTC, 50_000, NEXT_FUNDING + 120_000)
    core.create_order(BTC, "market", "buy", 13)
    price, ts = 50_000.0, NEXT_FUNDING + 120_000
    while core.positions():  # drift down, through a funding time, into the engine
        price -= 50
        ts += 1_800_000
        core.on_price(BTC, price, ts)
    return core, start


@pytest.mark.parametrize("mode", ["isolated", "cross"])
@pytest.mark.parametrize("profile", ["binance", "tiered"])
def test_ledger_reconciles_with_the_records(profile: str, mode: str) -> None:
    core, start = run_session(profile, mode)
    kinds = {e.partial for e in core.liquidations}
    assert kinds == ({True, False} if profile == "tiered" else {False})
    assert len(core.funding_payments) >= 2 and len(core.trades) >= 3
    wallet = core.wallet_balance
    fill_fees = sum(f.fee for f in core.fills)
    payments = sum(p.amount for p in core.funding_payments)
    realised = sum(f.realized_pnl for f in core.fills)
    # flat: the wallet moved by exactly the round trips' nets
    assert wallet - start == pytest.approx(sum(t.net for t in core.trades), abs=CENT / 10)
    # accumulators against records
    assert core.total_fees == pytest.approx(fill_fees, abs=1e-9)
    assert core.total_funding == pytest.approx(payments, abs=1e-9)
    assert core.realized_pnl == pytest.approx(realised, abs=1e-9)
    # trades against fills and funding payments
    assert sum(t.fees for t in core.trades) == pytest.approx(fill_fees, abs=1e-9)
    assert sum(t.pnl for t in core.trades) == pytest.approx(realised, abs=1e-9)
    assert sum(t.funding for t in core.trades) == pytest.approx(payments, abs=1e-9)
    # the identity, from the records and from the accumulators
    assert wallet == pytest.approx(start + realised - fill_fees + payments, abs=1e-6)
    assert wallet == pytest.approx(
        start + core.realized_pnl - core.total_fees + core.total_funding, abs=1e-6
    )
    # liquidation fills against the engine's events
    liq_fills = [f for f in core.fills if f.reason == "liquidation"]
    assert len(liq_fills) == len(core.liquidations)
    for fill, event in zip(liq_fills, core.liquidations, strict=True):
        assert fill.amount == pytest.approx(event.amount) and fill.price == event.price
        if event.partial:
            assert fill.fee == pytest.approx(event.fee)
            assert event.margin_lost == pytest.approx(fill.fee - fill.realized_pnl)
        else:
            assert fill.fee == 0.0 and fill.closed
            assert event.margin_lost == pytest.approx(-fill.realized_pnl)
    partial_fees = sum(e.fee for e in core.liquidations if e.partial)
    trading_fees = sum(f.fee for f in core.fills if f.reason != "liquidation")
    assert core.total_fees == pytest.approx(trading_fees + partial_fees, abs=1e-9)
    assert core.total_liquidation_fees == pytest.approx(
        sum(e.fee for e in core.liquidations), abs=1e-9
    )


def test_version_1_snapshot_gets_its_partial_liquidation_fees_counted() -> None:
    core, start = run_session("tiered", "isolated")
    partial_fees = sum(e.fee for e in core.liquidations if e.partial)
    assert partial_fees > 0
    old = core.snapshot()
    for key in ("fills", "fill_seq", "funding_payments", "funding_seq"):
        del old[key]
    old["version"] = 1
    old["totals"]["fees"] -= partial_fees  # what version 1 counted
    restored = PaperCore.restore(old)
    assert restored.total_fees == pytest.approx(core.total_fees, abs=1e-9)
    assert restored.wallet_balance == pytest.approx(
        start + restored.realized_pnl - restored.total_fees + restored.total_funding, abs=1e-6
    )
