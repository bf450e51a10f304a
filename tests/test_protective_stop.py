"""Engine calls ``protective_stop`` and ``missing_stops``: the stop the sweep places, one source.

Worked examples on Binance's published BTCUSDT brackets (``shared/data``): tier 1 below 50,000
notional, mmr 0.004, cum 0; tier 2 to 600,000, mmr 0.005, cum 50. Price step 0.1 (Binance's
BTCUSDT tick). Liquidation price, Binance's documented form for one position:
``P = (W + cum - s*q*E) / (q*mmr - s*q)`` (W = isolated margin, or the wallet for cross).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from guards.config import GuardsConfig
from guards.engine import GuardEngine
from guards.state import GuardState
from guards.tiers import tiers_from_ccxt
from guards.types import Account, Action, GuardContext, Mark, MarketRules, Position

BTC = "BTC/USDT:USDT"
NOW = 1_717_243_200.0  # 2024-06-01 12:00 UTC, inside the no_overnight session


@pytest.fixture
def btc(shared_data: Path) -> MarketRules:
    raw = json.loads((shared_data / "binance_leverage_tiers.json").read_text())
    return MarketRules(BTC, tiers_from_ccxt(raw[BTC]), price_step=0.1, amount_step=0.001)


def context(
    market: MarketRules, pos: Position, mark: float, wallet: float = 10_000.0
) -> GuardContext:
    return GuardContext(
        Account(wallet, {pos.symbol: pos}), {pos.symbol: market}, {pos.symbol: Mark(mark, NOW)}, NOW
    )


def config(**tables: Any) -> GuardsConfig:
    return GuardsConfig.model_validate(tables)


def swept_stop(engine: GuardEngine, ctx: GuardContext) -> Action:
    (action,) = [a for a in engine.sweep(ctx) if a.rule == "stop_loss"]
    return action


# -- worked examples, by hand -------------------------------------------------------------------


def test_long_stop_pushed_clear_of_liquidation(btc: MarketRules) -> None:
    # isolated long 0.1 @ 60,000 with margin 120 (50x): notional 6,000 → tier 1
    # liq = (120 + 0 - 0.1*60,000) / (0.1*0.004 - 0.1) = -5,880 / -0.0996 = 59,036.1445783
    # the 2 % default stop 58,800.0 is below liq * 1.01 = 59,626.5060241 → pushed there and
    # rounded up (toward entry) to the tick: 59,626.6
    pos = Position(BTC, "long", 0.1, 60_000.0, leverage=50.0, margin=120.0)
    ctx = context(btc, pos, 60_000.0)
    engine = GuardEngine(GuardsConfig())
    stop = engine.protective_stop(pos, ctx)
    assert (stop.kind, stop.code, stop.rule) == ("place_stop", "stop_missing", "stop_loss")
    assert stop.stop_price == pytest.approx(59_626.6, abs=1e-9)
    assert stop.amount == 0.1
    assert stop.figures["liq_price"] == pytest.approx(59_036.1445783, rel=1e-10)
    assert engine.liquidation_price(pos, ctx) == pytest.approx(59_036.1445783, rel=1e-10)
    assert stop == swept_stop(engine, ctx)


@pytest.mark.parametrize(
    ("side", "expected"),
    [
        # 60,012.34 * 0.98 = 58,812.0932 → down (away from entry) to 58,812.0;
        # liq (1,200.2468 - 6,001.234)/(0.0004 - 0.1) = 48,202.68, * 1.01 = 48,684.71 < stop
        ("long", 58_812.0),
        # 60,012.34 * 1.02 = 61,212.5868 → up (away from entry) to 61,212.6;
        # liq (1,200.2468 + 6,001.234)/(0.0004 + 0.1) = 71,727.90, * 0.99 = 71,010.62 > stop
        ("short", 61_212.6),
    ],
)
def test_default_stop_rounded_away_from_entry(btc: MarketRules, side: str, expected: float) -> None:
    # isolated 0.1 @ 60,012.34, 5x: margin 6,001.234 / 5 = 1,200.2468
    pos = Position(BTC, side, 0.1, 60_012.34, leverage=5.0, margin=1_200.2468)  # type: ignore[arg-type]
    ctx = context(btc, pos, 60_012.34)
    engine = GuardEngine(GuardsConfig())
    stop = engine.protective_stop(pos, ctx)
    assert stop.kind == "place_stop" and stop.stop_price == pytest.approx(expected, abs=1e-9)
    assert stop == swept_stop(engine, ctx)


def test_cross_stop_uses_the_wallet_and_the_tier_at_liquidation(btc: MarketRules) -> None:
    # cross long 1 @ 60,000, wallet 1,000: notional 60,000 → tier 2 (mmr 0.005, cum 50)
    # liq = (1,000 + 50 - 60,000) / (0.005 - 1) = 59,246.2311558 (notional there still tier 2)
    # * 1.01 = 59,838.6934673 → up to the tick: 59,838.7 (beats the 2 % default 58,800)
    pos = Position(BTC, "long", 1.0, 60_000.0, margin_mode="cross", leverage=60.0)
    ctx = context(btc, pos, 60_000.0, wallet=1_000.0)
    engine = GuardEngine(GuardsConfig())
    stop = engine.protective_stop(pos, ctx)
    assert stop.kind == "place_stop" and stop.stop_price == pytest.approx(59_838.7, abs=1e-9)
    assert stop.figures["liq_price"] == pytest.approx(59_246.2311558, rel=1e-10)
    # the liquidation rule would close this one (1.26 % from liquidation), which supersedes the
    # stop in the sweep's result: compare with the sweep of an engine without that rule
    assert stop == swept_stop(GuardEngine(config(liquidation={"enabled": False})), ctx)


def test_mark_past_the_stop_closes(btc: MarketRules) -> None:
    # short 0.1 @ 60,000, 5x: default stop 60,000 * 1.02 = 61,200.0; the mark 61,300 is past it
    pos = Position(BTC, "short", 0.1, 60_000.0, leverage=5.0, margin=1_200.0)
    ctx = context(btc, pos, 61_300.0)
    engine = GuardEngine(GuardsConfig())
    action = engine.protective_stop(pos, ctx)
    assert (action.kind, action.code, action.amount) == ("close", "stop_passed", 0.1)
    assert action.stop_price is None and action.figures["stop"] == pytest.approx(61_200.0)
    assert action == swept_stop(engine, ctx)


def test_planned_stop_of_the_last_entry_is_kept_while_on_the_losing_side(
    btc: MarketRules,
) -> None:
    state = GuardState()
    state.symbol(BTC).planned_stop = 58_000.0
    engine = GuardEngine(GuardsConfig(), state)
    pos = Position(BTC, "long", 0.1, 60_000.0, leverage=5.0, margin=1_200.0)
    assert engine.protective_stop(pos, context(btc, pos, 59_000.0)).stop_price == 58_000.0
    # the mark fell through the planned stop: the default 58,800.0 instead, which it is past too
    below = engine.protective_stop(pos, context(btc, pos, 57_900.0))
    assert below.kind == "close" and below.figures["stop"] == pytest.approx(58_800.0)


# -- engine calls work without the stop_loss rule -------------------------------------------------


def test_missing_stops_works_with_the_stop_loss_rule_disabled(btc: MarketRules) -> None:
    eth = MarketRules("ETH/USDT:USDT", btc.tiers, price_step=0.01)
    naked = Position(BTC, "long", 0.1, 60_000.0, leverage=5.0, margin=1_200.0)
    covered = Position("ETH/USDT:USDT", "long", 1.0, 3_000.0, margin=600.0, stop_price=2_900.0)
    unpriced = Position("SOL/USDT:USDT", "short", 5.0, 150.0, margin=150.0)
    ctx = GuardContext(
        Account(10_000.0, {p.symbol: p for p in (naked, covered, unpriced)}),
        {BTC: btc, eth.symbol: eth},
        {BTC: Mark(60_000.0, NOW), eth.symbol: Mark(3_000.0, NOW)},
        NOW,
    )
    tables = {"stop_loss": {"default_stop_pct": 3.0}, "liquidation": {"stop_buffer_pct": 2.0}}
    on = GuardEngine(config(**tables))
    off_tables = {
        "stop_loss": {"enabled": False, "default_stop_pct": 3.0},
        "liquidation": {"enabled": False, "stop_buffer_pct": 2.0},
    }
    off = GuardEngine(config(**off_tables))
    assert all(a.rule != "stop_loss" for a in off.sweep(ctx))  # the rule itself is off
    # 3 % below 60,000 = 58,200.0, far from liquidation: (1,200 - 6,000)/(0.0004 - 0.1) = 48,192.8
    (stop,) = off.missing_stops(ctx)
    assert stop.symbol == BTC and stop.stop_price == pytest.approx(58_200.0)
    assert off.missing_stops(ctx) == on.missing_stops(ctx) == [swept_stop(on, ctx)]
    assert off.protective_stop(naked, ctx) == stop
    with pytest.raises(KeyError):
        off.protective_stop(unpriced, ctx)  # no mark, no market: nothing to place a stop at


def test_disabled_stop_loss_still_respects_the_liquidation_buffer(btc: MarketRules) -> None:
    # the 50x long of the first example with a 2 % buffer: liq 59,036.1445783 * 1.02 =
    # 60,216.8674699 → above the mark 60,000: the stop cannot be placed, the position closes
    pos = Position(BTC, "long", 0.1, 60_000.0, leverage=50.0, margin=120.0)
    tables = {"stop_loss": {"enabled": False}, "liquidation": {"stop_buffer_pct": 2.0}}
    action = GuardEngine(config(**tables)).protective_stop(pos, context(btc, pos, 60_000.0))
    assert action.kind == "close" and action.figures["stop"] == pytest.approx(60_216.9)


def test_a_live_stop_is_not_missing_but_protective_stop_ignores_it(btc: MarketRules) -> None:
    pos = Position(BTC, "long", 0.1, 60_000.0, leverage=5.0, margin=1_200.0, stop_price=59_000.0)
    ctx = context(btc, pos, 60_000.0)
    engine = GuardEngine(GuardsConfig())
    assert engine.missing_stops(ctx) == []
    assert engine.protective_stop(pos, ctx).stop_price == pytest.approx(58_800.0)


def test_isolated_liquidation_without_tiers_still_gets_the_default_stop() -> None:
    market = MarketRules("X", (), price_step=0.5)  # no tiers: no liquidation price to respect
    pos = Position("X", "long", 1.0, 101.0, leverage=2.0, margin=50.5)
    ctx = GuardContext(Account(1_000.0, {"X": pos}), {"X": market}, {"X": Mark(100.0, NOW)}, NOW)
    action = GuardEngine(GuardsConfig()).protective_stop(pos, ctx)
    # 101 * 0.98 = 98.98 → down to the 0.5 tick: 98.5
    assert action.kind == "place_stop" and action.stop_price == 98.5
    assert action.figures["liq_price"] is None and math.isfinite(action.stop_price)
