"""The paper exchange's own liquidation engine: both profiles, both margin modes.

Expected numbers are worked by hand below (or come from shared/data/liq_vectors.json), never
from the code under test. BTC/USDT:USDT tiers used (bundled Binance data, 2024-10-24):
tier 1 [0, 50k) mmr 0.004 cum 0; tier 2 [50k, 600k) mmr 0.005 cum 50;
tier 3 [600k, 3M) mmr 0.0065 cum 950. Taker fee 0.0005 unless a test sets it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import ccxt
import pytest

from guards.types import MarketRules, Tier
from paper.config import PaperConfig
from paper.core import PaperCore
from paper.markets import load_markets

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
T0 = 1_700_000_100_000  # 2023-11-14 22:15:00 UTC, far from a funding time


def make(balance: float, *, mode: str = "isolated", **cfg: Any) -> PaperCore:
    config = PaperConfig(slippage_bps=0, auto_funding=False, default_margin_mode=mode, **cfg)
    return PaperCore(config, load_markets([BTC, ETH], config), balance)


def open_position(core: PaperCore, symbol: str, side: str, amount: float, price: float) -> None:
    core.on_price(symbol, price, T0)
    core.create_order(symbol, "market", side, amount)


# ---------------------------------------------------------------- binance profile, isolated


def test_binance_isolated_long_whole_liquidation_at_bankruptcy_price() -> None:
    core = make(10_000)
    core.set_leverage(10, BTC)
    open_position(core, BTC, "buy", 0.1, 50_000)
    # margin M = 0.1 * 50000 / 10 = 500; entry fee 5000 * 0.0005 = 2.5 from the wallet
    assert core.positions()[0]["collateral"] == pytest.approx(500)
    assert core.wallet_balance == pytest.approx(9_997.5)
    # liquidation: 500 + 0.1 (P - 50000) = 0.1 P 0.004  ->  0.0996 P = 4500
    liq = 4_500 / 0.0996
    assert core.liquidation_price(BTC) == pytest.approx(liq, rel=1e-12)
    core.on_price(BTC, 45_200, T0 + 60_000)  # above the liquidation price: nothing
    assert core.liquidations == []
    core.on_price(BTC, 45_180, T0 + 120_000)
    (event,) = core.liquidations
    # bankruptcy: 500 + 0.1 (P - 50000) = 0  ->  P = 45000
    assert event.price == pytest.approx(45_000)
    assert event.margin_lost == pytest.approx(500)
    # fee = what the position still had at the trigger: 500 + 0.1 (45180 - 50000) = 18
    assert event.fee == pytest.approx(18)
    assert event.margin_balance == pytest.approx(18)
    assert not event.partial and event.profile == "binance"
    assert core.positions() == []
    assert core.wallet_balance == pytest.approx(10_000 - 2.5 - 500)
    trade = core.trades[-1]
    assert trade.reason == "liquidation"
    assert trade.exit_price == pytest.approx(45_000)
    assert trade.pnl == pytest.approx(-500)


def test_binance_isolated_short_uses_tier_of_the_liquidation_notional() -> None:
    core = make(10_000)
    core.set_leverage(20, BTC)
    open_position(core, BTC, "sell", 1.2, 50_000)
    # notional 60000 is tier 2 (mmr 0.005, cum 50); M = 60000 / 20 = 3000
    # 3000 - 1.2 (P - 50000) = 1.2 P 0.005 - 50  ->  1.206 P = 63050
    liq = 63_050 / 1.206
    assert 1.2 * liq >= 50_000  # consistent: still tier 2 at that price
    assert core.liquidation_price(BTC) == pytest.approx(liq, rel=1e-12)
    core.on_price(BTC, liq - 1, T0 + 60_000)
    assert core.liquidations == []
    core.on_price(BTC, liq + 0.01, T0 + 120_000)
    (event,) = core.liquidations
    # bankruptcy: 3000 - 1.2 (P - 50000) = 0  ->  P = 52500
    assert event.price == pytest.approx(52_500)
    assert event.margin_lost == pytest.approx(3_000)


def test_isolated_funding_and_add_margin_move_the_liquidation_price() -> None:
    core = make(10_000)
    core.set_leverage(10, BTC)
    open_position(core, BTC, "buy", 0.1, 50_000)
    paid = core.apply_funding(BTC, 0.001, mark=50_000)
    # long pays 0.1 * 50000 * 0.001 = 5 from its isolated margin: M = 495
    assert paid == pytest.approx(-5)
    assert core.liquidation_price(BTC) == pytest.approx(4_505 / 0.0996, rel=1e-12)
    core.add_margin(BTC, 105)  # M = 600: 0.0996 P = 5000 - 600
    assert core.liquidation_price(BTC) == pytest.approx(4_400 / 0.0996, rel=1e-12)
    core.on_price(BTC, 44_500, T0 + 60_000)
    assert core.liquidations == []


# ---------------------------------------------------------------- binance profile, cross


def test_binance_cross_single_position_uses_the_wallet() -> None:
    core = make(1_000, mode="cross")
    core.set_leverage(20, BTC)
    open_position(core, BTC, "buy", 0.2, 50_000)
    # fee 10000 * 0.0005 = 5 -> wallet 995, all of it backs the cross position
    # 995 + 0.2 (P - 50000) = 0.2 P 0.004  ->  0.1992 P = 9005
    liq = 9_005 / 0.1992
    assert core.liquidation_price(BTC) == pytest.approx(liq, rel=1e-12)
    core.on_price(BTC, 45_210, T0 + 60_000)
    assert core.liquidations == []
    core.on_price(BTC, 45_200, T0 + 120_000)
    (event,) = core.liquidations
    # bankruptcy 995 + 0.2 (P - 50000) = 0 -> 45025; balance at 45200: 995 - 960 = 35
    assert event.price == pytest.approx(45_025)
    assert event.fee == pytest.approx(35)
    assert event.margin_lost == pytest.approx(995)
    assert core.wallet_balance == pytest.approx(0, abs=1e-9)


def test_binance_cross_counts_other_positions_mm_and_upnl() -> None:
    core = make(2_000, mode="cross")
    core.set_leverage(20, BTC)
    core.set_leverage(20, ETH)
    open_position(core, BTC, "buy", 0.2, 50_000)  # fee 5
    open_position(core, ETH, "sell", 2, 2_500)  # fee 2.5 -> wallet 1992.5
    core.on_price(ETH, 2_600, T0 + 60_000)
    # ETH short: uPnL -2 * 100 = -200; MM 2 * 2600 * 0.004 = 20.8 (tier 1, cum 0)
    # BTC: 1992.5 - 20.8 - 200 + 0.2 (P - 50000) = 0.0008 P  ->  0.1992 P = 8228.3
    liq = 8_228.3 / 0.1992
    core.on_price(BTC, 49_000, T0 + 60_000)  # any BTC price re-solves with ETH's new mark
    assert core.liquidation_price(BTC) == pytest.approx(liq, rel=1e-9)
    core.on_price(BTC, liq + 5, T0 + 120_000)
    assert core.liquidations == []
    core.on_price(BTC, liq - 5, T0 + 180_000)
    (event,) = core.liquidations
    # bankruptcy: 1771.7 + 0.2 (P - 50000) = 0  ->  P = 41141.5
    assert event.symbol == BTC
    assert event.price == pytest.approx(41_141.5)
    # what is left is exactly ETH's MM minus its uPnL: 20.8 + 200
    assert core.wallet_balance == pytest.approx(220.8)
    assert [p["symbol"] for p in core.positions()] == [ETH]


# ---------------------------------------------------------------- tiered profile


def test_tiered_isolated_tier1_whole_with_fee_in_threshold() -> None:
    core = make(10_000, liquidation_profile="tiered", liquidation_fee_rate=0.005)
    core.set_leverage(10, BTC)
    open_position(core, BTC, "buy", 0.1, 50_000)
    # margin rate <= mmr1 + fee = 0.009: 500 + 0.1 (P - 50000) = 0.1 P 0.009 -> 0.0991 P = 4500
    liq = 4_500 / 0.0991
    assert core.liquidation_price(BTC) == pytest.approx(liq, rel=1e-12)
    assert core.market_rules(BTC).liquidation_fee_rate == 0.005
    core.on_price(BTC, 45_410, T0 + 60_000)
    assert core.liquidations == []
    core.on_price(BTC, 45_400, T0 + 120_000)
    (event,) = core.liquidations
    # whole, at the bankruptcy price 45000; fee = min(0.005 * 4540, balance 500 - 460 = 40)
    assert event.price == pytest.approx(45_000)
    assert event.fee == pytest.approx(22.7)
    assert event.margin_lost == pytest.approx(500)
    assert not event.partial and event.profile == "tiered"


def test_tiered_isolated_tier3_partial_then_whole() -> None:
    core = make(40_000, liquidation_profiles={BTC: "tiered"}, liquidation_fee_rate=0.005)
    core.set_leverage(20, BTC)
    open_position(core, BTC, "buy", 13, 50_000)
    # notional 650000: tier 3. M = 32500, fee 325 -> wallet 39675
    # first reduction at rate <= mmr3 + fee = 0.0115:
    # 32500 + 13 (P - 50000) = 13 P 0.0115  ->  12.8505 P = 617500 (13 P = 624684 still tier 3)
    liq = 617_500 / 12.8505
    assert core.liquidation_price(BTC) == pytest.approx(liq, rel=1e-12)
    core.on_price(BTC, 48_060, T0 + 60_000)
    assert core.liquidations == []
    core.on_price(BTC, 48_050, T0 + 120_000)
    (partial,) = core.liquidations
    # at 48050: balance 32500 - 13 * 1950 = 7150, rate 7150 / 624650 = 0.01145 (> 0.009: no
    # whole). Reduce to the top of tier 2: keep floor(600000 / 48050, 0.001) = 12.486
    assert partial.partial
    assert partial.amount == pytest.approx(0.514)
    assert partial.price == pytest.approx(48_050)
    assert partial.fee == pytest.approx(0.005 * 0.514 * 48_050)  # 123.4885
    pos = core.positions()[0]
    assert pos["contracts"] == pytest.approx(12.486)
    # margin stays: 32500 + 0.514 * (48050 - 50000) - 123.4885 = 31374.2115
    assert pos["collateral"] == pytest.approx(31_374.2115)
    assert core.wallet_balance == pytest.approx(39_675 - 1_002.3 - 123.4885)
    # tier 2 now (rate 7026.5115 / 599952.3 = 0.0117 > 0.010): next trigger at mmr2 + fee:
    # 31374.2115 + 12.486 (P - 50000) = 12.486 P 0.01  ->  12.36114 P = 592925.7885
    nxt = 592_925.7885 / 12.36114
    assert core.liquidation_price(BTC) == pytest.approx(nxt, rel=1e-9)
    core.on_price(BTC, 47_900, T0 + 180_000)
    whole = core.liquidations[-1]
    # whole (tier 2), bankruptcy: 31374.2115 + 12.486 (P - 50000) = 0
    assert not whole.partial
    assert whole.price == pytest.approx(50_000 - 31_374.2115 / 12.486)
    # all of the original margin is gone, partial losses and the fee included
    assert core.wallet_balance == pytest.approx(40_000 - 325 - 32_500)
    assert core.positions() == []


def test_tiered_cross_tier3_partial_and_tier2_without_fee() -> None:
    core = make(33_000, mode="cross", liquidation_profile="tiered", liquidation_fee_rate=0.005)
    core.set_leverage(20, BTC)
    open_position(core, BTC, "buy", 13, 50_000)  # fee 325 -> wallet 32675
    # tier 3 (cross keeps the fee from tier 3 up): 32675 + 13 (P - 50000) = 0.1495 P
    liq = 617_325 / 12.8505
    assert core.liquidation_price(BTC) == pytest.approx(liq, rel=1e-12)
    core.on_price(BTC, 48_030, T0 + 60_000)
    (partial,) = core.liquidations
    # keep floor(600000 / 48030, 0.001) = 12.492 -> reduce 0.508 at 48030
    assert partial.amount == pytest.approx(0.508)
    assert partial.fee == pytest.approx(0.005 * 0.508 * 48_030)  # 121.9962
    assert core.wallet_balance == pytest.approx(32_675 - 0.508 * 1_970 - 121.9962)
    # tier 2, cross: threshold mmr2 = 0.005 without the fee:
    # 31552.2438 + 12.492 (P - 50000) = 12.492 P 0.005 -> 12.42954 P = 593047.7562
    nxt = (12.492 * 50_000 - 31_552.2438) / (12.492 * 0.995)
    assert core.liquidation_price(BTC) == pytest.approx(nxt, rel=1e-9)
    core.on_price(BTC, nxt + 1, T0 + 120_000)
    assert len(core.liquidations) == 1


def test_tiered_partial_steps_tier_by_tier_within_one_price() -> None:
    core = make(80_000, liquidation_profile="tiered", liquidation_fee_rate=0.005)
    core.set_leverage(50, BTC)
    open_position(core, BTC, "buy", 70, 50_000)
    # notional 3.5M: tier 4 (mmr 0.01, max 50x). M = 70000, fee 1750.
    # first reduction at rate <= 0.015: 70000 + 70 (P - 50000) = 1.05 P -> 68.95 P = 3430000
    assert core.liquidation_price(BTC) == pytest.approx(3_430_000 / 68.95, rel=1e-12)
    core.on_price(BTC, 49_500, T0 + 60_000)
    first, second = core.liquidations
    # at 49500: balance 70000 - 70 * 500 = 35000, rate 35000 / 3465000 = 0.0101 (> 0.009)
    # step 1: to the top of tier 3, keep floor(3000000 / 49500, 0.001) = 60.606 -> close 9.394
    assert first.partial and first.amount == pytest.approx(9.394)
    assert first.fee == pytest.approx(0.005 * 9.394 * 49_500)  # 2325.015
    # balance 35000 - 2325.015 = 32674.985 on 60.606 * 49500 = 2999997: rate 0.01089 <= 0.0115
    # step 2: to the top of tier 2, keep floor(600000 / 49500, 0.001) = 12.121 -> close 48.485
    assert second.partial and second.amount == pytest.approx(48.485)
    assert second.fee == pytest.approx(0.005 * 48.485 * 49_500)  # 12000.0375
    # balance 32674.985 - 12000.0375 = 20674.9475 on 599989.5: rate 0.0345 > 0.010: stop
    pos = core.positions()[0]
    assert pos["contracts"] == pytest.approx(12.121)
    # margin: 70000 - 9.394 * 500 - 2325.015 - 48.485 * 500 - 12000.0375
    assert pos["collateral"] == pytest.approx(26_735.4475)
    assert core.wallet_balance == pytest.approx(78_250 - 4_697 - 2_325.015 - 24_242.5 - 12_000.0375)
    assert [t.reason for t in core.trades] == ["liquidation", "liquidation"]


# ---------------------------------------------------------------- reference vectors


def _vectors(formula: str) -> list[dict[str, Any]]:
    path = SHARED / "liq_vectors.json"
    if not path.is_file():
        pytest.skip(f"shared data not found at {path}")
    data = json.loads(path.read_text())["vectors"]
    return [
        v
        for v in data
        if v.get("formula") == formula
        and v.get("liquidation_buffer") == 0.0
        and v.get("margin_mode") == "isolated"
    ]


def _one_tier_core(vector: dict[str, Any], profile: str) -> PaperCore:
    cum = vector.get("maintenance_amount") or 0.0
    rules = MarketRules(
        symbol=ETH,
        tiers=(Tier(0.0, math.inf, vector["mm_ratio"], cum, 125.0),),
        amount_step=0.001,
        price_step=0.001,
        taker_fee=0.0,
        maker_fee=0.0,
    )
    fee = vector.get("taker_fee_rate") or 0.005
    config = PaperConfig(
        slippage_bps=0, auto_funding=False, liquidation_profile=profile, liquidation_fee_rate=fee
    )
    return PaperCore(config, {ETH: rules}, 1_000.0)


@pytest.mark.parametrize(
    "formula,profile", [("binance", "binance"), ("gate_okx_freqtrade", "tiered")]
)
def test_engine_liquidates_at_reference_prices(formula: str, profile: str) -> None:
    vectors = _vectors(formula)
    assert vectors
    for v in vectors:
        core = _one_tier_core(v, profile)
        core.set_leverage(v["leverage"], ETH)
        side = "buy" if v["side"] == "long" else "sell"
        open_position(core, ETH, side, v["amount"], v["entry_price"])
        # isolated margin = notional / leverage is the vector's wallet balance
        assert core.positions()[0]["collateral"] == pytest.approx(v["wallet_balance"]), v["id"]
        expected = v["expected_liq_price"]
        assert core.liquidation_price(ETH) == pytest.approx(expected, rel=1e-6), v["id"]
        s = 1 if v["side"] == "long" else -1
        core.on_price(ETH, expected * (1 + s * 1e-5), T0 + 60_000)
        assert core.liquidations == [], v["id"]
        core.on_price(ETH, expected * (1 - s * 1e-5), T0 + 120_000)
        (event,) = core.liquidations
        bankrupt = v["entry_price"] - s * v["wallet_balance"] / v["amount"]
        assert event.price == pytest.approx(bankrupt), v["id"]
        assert event.margin_lost == pytest.approx(v["wallet_balance"]), v["id"]


# ---------------------------------------------------------------- replay of a real crash


def _path(o: float, h: float, low: float, c: float) -> tuple[float, float, float, float]:
    """open -> nearer extreme -> other extreme -> close (the replay's intrabar path)."""
    return (o, h, low, c) if h - o <= o - low else (o, low, h, c)


def test_april_2025_crash_liquidates_an_unguarded_20x_long() -> None:
    """Binance BTC perp 5m candles, 2025-04-06: a 20x long opened at the day's open dies."""
    feather = pytest.importorskip("pyarrow.feather")
    path = SHARED / "candles" / "typhonun_DcaTpStrategy" / "BTC_USDT_USDT-5m-futures.feather"
    if not path.is_file():
        pytest.skip(f"shared data not found at {path}")
    data = feather.read_table(path).to_pydict()
    stamps = [int(d.timestamp() * 1000) for d in data["date"]]
    start = stamps.index(1_743_897_600_000)  # 2025-04-06 00:00 UTC
    entry = data["open"][start]
    assert entry == 83_506.1
    # isolated 20x, tier 1: q E / 20 + q (P - E) = 0.004 q P  ->  P = 0.95 E / 0.996
    liq = 0.95 * entry / 0.996
    first_below = next(k for k in range(start, len(stamps)) if data["low"][k] <= liq)

    def replay(with_stop: bool) -> PaperCore:
        core = make(10_000)
        core.set_leverage(20, BTC)
        core.on_price(BTC, entry, stamps[start])
        core.create_order(BTC, "market", "buy", 0.1)
        if with_stop:
            core.create_order(
                BTC,
                "market",
                "sell",
                0.1,
                None,
                {"stopLossPrice": entry * 0.97, "reduceOnly": True},
            )
        for k in range(start, first_below + 1):
            o, h, low, c = (data[x][k] for x in ("open", "high", "low", "close"))
            for price in _path(o, h, low, c)[1 if k == start else 0 :]:
                core.on_price(BTC, price, stamps[k])
        return core

    naked = replay(with_stop=False)
    (event,) = naked.liquidations
    assert event.ts == stamps[first_below]
    assert event.mark == data["low"][first_below]
    assert event.price == pytest.approx(0.95 * entry)  # bankruptcy: E - M / q = E - E / 20
    assert event.margin_lost == pytest.approx(0.1 * entry / 20)

    guarded = replay(with_stop=True)
    assert guarded.liquidations == []
    assert guarded.trades[-1].reason == "stop"
    assert guarded.trades[-1].exit_price == pytest.approx(81_000.9)  # 83506.1 * 0.97 on the tick


def test_order_that_would_be_liquidated_at_once_is_refused() -> None:
    # 1 BTC at 50000 = tier 2 (from 50000 on), 100x: margin 500, margin rate 0.010.
    # tiered isolated tier 2 threshold: mmr2 + fee = 0.005 + 0.005 = 0.010 -> liquidatable now
    tiered = make(10_000, liquidation_profile="tiered", liquidation_fee_rate=0.005)
    tiered.set_leverage(100, BTC)
    tiered.on_price(BTC, 50_000, T0)
    with pytest.raises(ccxt.InsufficientFunds):
        tiered.create_order(BTC, "market", "buy", 1)
    assert tiered.positions() == [] and tiered.wallet_balance == 10_000
    # binance profile: MM = 50000 * 0.005 - 50 = 200 < 500 -> accepted
    binance = make(10_000)
    binance.set_leverage(100, BTC)
    binance.on_price(BTC, 50_000, T0)
    binance.create_order(BTC, "market", "buy", 1)
    assert binance.positions()[0]["contracts"] == 1
