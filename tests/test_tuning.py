"""`replay --set` grids, `--compare`, and the equity-curve chart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app, parse_value
from bot.research.plot import downsample, render_html
from bot.research.replay import run_replay
from bot.research.tuning import combinations, parse_axes
from bot.settings import ConfigError, load_settings

runner = CliRunner()


def test_axes_and_combinations() -> None:
    axes = parse_axes(["a.b=1,2,3", "c=[1, 2]", "d=x"], parse_value)
    assert [a.values for a in axes] == [(1, 2, 3), ([1, 2],), ("x",)]
    combos = combinations(axes)
    assert len(combos) == 3
    assert combos[0] == {"a.b": 1, "c": [1, 2], "d": "x"}
    with pytest.raises(ConfigError, match="given twice"):
        parse_axes(["a=1", "a=2"], parse_value)


def test_grid_runs_every_combination_and_caps_bind(clean_env: Path) -> None:
    # the strategy asks for 10x; a 2x cap must shrink positions, a 10x cap must not
    result = runner.invoke(
        app,
        [
            "replay",
            "--json",
            "--workers",
            "2",
            "--set",
            "strategy.params={leverage=10, notional=20000}",
            "--set",
            "guards.position_cap.max_leverage=2,10",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output.strip().splitlines()[-1])["rows"]
    rows.sort(key=lambda r: r["set"]["guards.position_cap.max_leverage"])
    assert [r["set"]["guards.position_cap.max_leverage"] for r in rows] == [2, 10]
    capped, loose = rows
    assert capped["guard_interventions"].get("position_cap", 0) > loose["guard_interventions"].get(
        "position_cap", 0
    )
    for row in rows:
        assert {"liquidations", "max_drawdown_pct", "final_equity", "trades"} <= set(row)


def test_grid_with_a_bad_value_skips_it_and_says_why(clean_env: Path) -> None:
    result = runner.invoke(
        app, ["replay", "--set", "guards.position_cap.max_leverage=2,999", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    assert [r["set"] for r in data["rows"]] == [{"guards.position_cap.max_leverage": 2}]
    (skipped,) = data["skipped"]
    assert skipped["set"] == {"guards.position_cap.max_leverage": 999}
    assert "guards.position_cap.max_leverage = 999" in skipped["reason"]
    assert "less than or equal to 125" in skipped["reason"]
    everything_bad = runner.invoke(
        app, ["replay", "--set", "guards.position_cap.max_leverage=0,999"]
    )
    assert everything_bad.exit_code == 2
    assert "no valid combination" in everything_bad.output


def test_compare_json_has_both_runs(clean_env: Path) -> None:
    result = runner.invoke(app, ["replay", "--compare", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    assert data["guards_off"]["guards_enabled"] == []
    assert data["guards_on"]["guards_enabled"]
    assert data["guards_on"]["candles"] == data["guards_off"]["candles"]


def test_downsample_keeps_extremes() -> None:
    ts = [float(i) for i in range(10_000)]
    eq = [100.0] * 10_000
    eq[4321] = 50.0
    eq[777] = 150.0
    pts = downsample(ts, eq, 200)
    assert len(pts) <= 200
    values = [e for _, e in pts]
    assert min(values) == 50.0 and max(values) == 150.0
    assert [t for t, _ in pts] == sorted(t for t, _ in pts)


def test_plot_escapes_and_marks_interventions(clean_env: Path) -> None:
    report = run_replay(load_settings(secrets_dir=None), heartbeat=False, record_curve=True)
    assert report.curve is not None and len(report.curve.ts) == report.candles
    html = render_html(report, title="<script>alert(1)</script>")
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "<polyline" in html
    # a tick per refused order (under the rule that refused it first), per rule that resized
    # an order and per sweep action, in the rule's lane: the chart counts what the report counts
    for rule, n in report.guard_interventions.items():
        acts = sum(report.actions.get(rule, {}).values())
        assert n == report.refusals.get(rule, 0) + report.resizes.get(rule, 0) + acts
        assert html.count(f'class="lane {rule}"') == n
    assert sum(report.refusals.values()) == report.orders_refused > 0


USER_STRATEGY = '''
from bot.strategies.base import NO_INTENTS, BaseStrategy
from guards.types import OrderIntent


class LongEveryDay(BaseStrategy):
    """A user's own strategy, in a file outside any package: long every day at 12:00 UTC."""

    name = "long_every_day"

    def __init__(self, notional: float = 1000.0) -> None:
        self.notional = notional

    def on_candle(self, symbol, ts_ms, open, high, low, close, volume, position):
        if position is None and ts_ms % 86_400_000 == 43_200_000:
            return (OrderIntent(symbol, "long", self.notional / close, leverage=2,
                                stop_price=close * 0.99, take_profit=close * 1.01),)
        return NO_INTENTS
'''


def test_a_users_own_strategy_file_is_replayed_in_a_grid(clean_env: Path) -> None:
    path = clean_env / "my_strategy.py"
    path.write_text(USER_STRATEGY, encoding="utf-8")
    result = runner.invoke(
        app,
        [
            "replay",
            "--json",
            "--set",
            f'strategy.path="{path}:LongEveryDay"',
            "--set",
            "strategy.params.notional=500,1000",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output.strip().splitlines()[-1])["rows"]
    rows.sort(key=lambda r: r["set"]["strategy.params.notional"])
    assert [r["set"]["strategy.params.notional"] for r in rows] == [500, 1000]
    # one entry a day for ~38 days of bundled data: every day's trade closes by stop, take-profit
    # or the session flatten, so there are trades, and the bigger notional pays more fees
    assert all(r["trades"] > 10 for r in rows)
    assert rows[1]["fees"] > rows[0]["fees"]


def test_a_missing_strategy_file_is_a_clear_error(clean_env: Path) -> None:
    result = runner.invoke(app, ["replay", "--set", 'strategy.path="nowhere.py:X"'])
    assert result.exit_code == 2  # an input error
    assert "nowhere.py" in result.output and "cannot import" in result.output
