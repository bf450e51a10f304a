"""Reckless strategies on real crash data stay within 3 % a day and 10 % drawdown, plus the
slippage their fills paid (``tests/reckless.py``: the strategies, the series and the measure;
``python tests/reckless.py`` prints all 12 series × 7 strategies × 2 guard configs).

This runs the three series where the old tripwires went furthest past the limits (March 2020
and May 2021 on 1-hour data, October 2025 on 5-minute ETH) with every strategy, guarded with
both configurations, and once unguarded to show the strategies are deadly without the guards.
The limits are the default ``max_daily_loss_pct = 3`` and ``max_drawdown_pct = 10``; the worst
day is measured from the equity the day began with, the worst drawdown from the highest close,
both to the lowest equity at any price point of the intrabar walk.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from reckless import CONFIGS, STRATEGIES, load_series, measure

from paper.feed import Candles

SERIES = ("btc-1h-2020-03", "btc-1h-2021-05", "eth-5m-2025-10")
DAILY, DRAWDOWN = 3.0, 10.0


_LOADED: dict[str, Candles] = {}


@pytest.fixture
def series(shared_data: Path) -> dict[str, Candles]:
    """The three series, loaded once for the module (``shared_data`` skips without them)."""
    if not _LOADED:
        _LOADED.update({name: load_series(name) for name in SERIES})
    return _LOADED


@pytest.mark.parametrize("name", SERIES)
def test_reckless_strategies_stay_within_the_loss_limits(
    name: str, series: dict[str, Candles], clean_env: Path
) -> None:
    worst_day = worst_dd = 0.0
    traded = 0
    for strategy in STRATEGIES:
        for config in CONFIGS.values():
            o = measure(series[name], strategy, config)
            assert o.liquidations == 0, (strategy, config)
            assert o.worst_day <= DAILY + o.day_slippage + 1e-9, (strategy, config, o)
            assert o.worst_dd <= DRAWDOWN + o.dd_slippage + 1e-9, (strategy, config, o)
            worst_day = max(worst_day, o.worst_day)
            worst_dd = max(worst_dd, o.worst_dd)
            traded += o.trades
    assert traded > 0
    if name == "btc-1h-2020-03":  # the budgets were really used up: the limits bound
        assert worst_day > DAILY - 0.1 and worst_dd > DRAWDOWN - 0.1


def test_unguarded_the_same_strategies_are_liquidated(
    series: dict[str, Candles], clean_env: Path
) -> None:
    liquidated = [
        strategy
        for strategy in STRATEGIES
        if measure(series["btc-1h-2020-03"], strategy, None).liquidations > 0
    ]
    assert {"all_in_long", "average_down", "bottom_fisher"} <= set(liquidated)
