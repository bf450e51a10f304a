"""Skipping what cannot change a decision changes nothing: replay with the guards' calm
(``GuardEngine.calm`` / ``still_calm``) gives the very report, trades and decisions of a replay
that sweeps at every candle close — on scenarios where the sweep acts: near-liquidation
reduces and closes, a tiered-profile run, and tight loss limits (entries sized to what is left
of the budgets, stops tightened as the peak rises).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_headline_october import END_MS, START_MS, Reckless

from bot.research.replay import run_replay
from bot.settings import load_settings
from guards import GuardEngine
from paper.feed import Candles, load_candles


def replay(overrides: dict[str, Any], candles: Candles | None, calm: bool) -> Any:
    s = load_settings(None, overrides, env_file=None, secrets_dir=None)
    strategy = Reckless() if candles is not None else None
    original = GuardEngine.calm
    if not calm:
        GuardEngine.calm = lambda self, ctx, refreshed=(): None  # type: ignore[method-assign]
    try:
        report = run_replay(
            s, strategy=strategy, candles=candles, heartbeat=False, record_decisions=True
        )
    finally:
        GuardEngine.calm = original  # type: ignore[method-assign]
    out = report.to_dict()
    out.pop("elapsed_s")
    out.pop("load_s")
    trades = [t.to_dict() for t in report.closed_trades]
    decisions = [(d.code, d.outcome, d.amount, d.stop_price) for d in report.decisions]
    return out, trades, decisions


@pytest.fixture
def october(shared_data: Path) -> Candles:
    path = (
        shared_data / "candles" / "aminak58_RL-Trading-Validation" / "BTC_USDT_USDT-5m-futures.json"
    )
    return load_candles(path).between(START_MS, END_MS)


SCENARIOS = {
    "bundled data, defaults": ({}, False),
    # attached 2 % stops at up to 5x cut back: the liquidation rule reduces and closes
    "reckless, near liquidation": (
        {
            "guards": {
                "stop_loss": {"missing": "attach", "default_stop_pct": 20.0, "max_risk_pct": 50},
                "position_cap": {"max_leverage": 20, "max_margin_pct": 100},
                "liquidation": {"min_distance_pct": 5.0, "stop_buffer_pct": 0.1},
            }
        },
        True,
    ),
    "reckless, tiered profile": (
        {
            "guards": {"stop_loss": {"missing": "attach"}},
            "paper": {"liquidation_profile": "tiered"},
        },
        True,
    ),
    "reckless, tight loss limits": (
        {
            "guards": {
                "stop_loss": {"missing": "attach", "max_risk_pct": 2.0},
                "loss_limit": {"max_daily_loss_pct": 0.5, "max_drawdown_pct": 2.0},
            }
        },
        True,
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_calm_skips_nothing_that_matters(name: str, clean_env: Path, october: Candles) -> None:
    overrides, reckless = SCENARIOS[name]
    candles = october if reckless else None
    with_calm = replay(overrides, candles, calm=True)
    every_candle = replay(overrides, candles, calm=False)
    assert with_calm == every_candle
    report = with_calm[0]
    if name == "reckless, near liquidation":
        assert report["guard_interventions"].get("liquidation", 0) > 0
    if name == "reckless, tight loss limits":
        # the loss limits bind through the budgets: entries sized to (or refused for) what is
        # left of them, so the drawdown stops at its 2 % limit instead of halting past it
        codes = {code for code, *_ in with_calm[2]}
        assert {"daily_loss_budget", "drawdown_budget"} <= codes
        assert report["max_drawdown_pct"] <= 2.0
