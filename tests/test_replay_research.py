"""Replay as a research tool: any symbol, --timerange, --export, the trader's report, --compare,
quiet timed logs, gap summaries and the crash demo of `make run`."""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.research import metrics
from bot.research.replay import ReplayError, run_replay
from bot.settings import ConfigError, load_settings
from paper.feed import load_candles, parse_timerange
from paper.feed.timerange import TimerangeError
from paper.markets import amount_step_for, price_step_of, resolve_market

REPO = Path(__file__).resolve().parents[1]
CRASH = REPO / "config" / "crash.toml"
runner = CliRunner()


def settings(overrides: dict[str, object] | None = None, config: Path | None = None):  # type: ignore[no-untyped-def]
    return load_settings(config, overrides or {}, env_file=None, secrets_dir=None)


def synthetic_csv(
    path: Path, n: int, start_ms: int, tf_ms: int, base: float, gaps: int = 0
) -> Path:
    """A made-up but well-formed series (a slow sine around ``base``), optionally with gaps."""
    lines = ["timestamp_ms,open,high,low,close,volume"]
    t = start_ms
    for i in range(n):
        mid = base * (1 + 0.05 * math.sin(i / 50))
        o = round(mid, 4)
        c = round(mid * (1 + 0.001 * math.cos(i)), 4)
        lines.append(f"{t},{o},{max(o, c) * 1.002:.4f},{min(o, c) * 0.998:.4f},{c},{100 + i}")
        t += tf_ms * (3 if i % 100 == 99 and i // 100 < gaps else 1)
    path.write_text("\n".join(lines) + "\n")
    return path


# ----------------------------------------------------------------------------- timerange
def test_timerange_reads_freqtrades_format() -> None:
    tr = parse_timerange("20250401-20250410")
    assert tr is not None
    assert (tr.start_ms, tr.end_ms) == (1_743_465_600_000, 1_744_243_200_000)  # date -u +%s
    assert parse_timerange("20250401-") == parse_timerange("20250401-")
    open_start = parse_timerange("-20250410")
    assert open_start is not None and open_start.start_ms is None
    assert parse_timerange("1743465600-1744243200") == type(tr)(
        1_743_465_600_000, 1_744_243_200_000, "1743465600-1744243200"
    )
    assert parse_timerange(None) is None
    for bad in ("2025-04-01", "20250410-20250401", "20251301-", "abc"):
        with pytest.raises(TimerangeError):
            parse_timerange(bad)


def test_a_bad_timerange_is_a_config_error_naming_the_key(clean_env: Path) -> None:
    with pytest.raises(ConfigError, match=r"feed\.timerange"):
        settings({"feed": {"timerange": "2025-04"}})


def test_replay_of_a_window_counts_only_its_candles(clean_env: Path) -> None:
    report = run_replay(settings({"feed": {"timerange": "20250401-20250410"}}), heartbeat=False)
    assert report.candles == 9 * 24 * 12  # nine days of 5-minute candles, no gaps in the data
    assert report.start == "2025-04-01 00:00" and report.end == "2025-04-10 00:00"
    assert any("timerange 20250401-20250410" in n for n in report.notes)


def test_an_empty_window_names_what_the_data_covers(clean_env: Path) -> None:
    with pytest.raises(ReplayError, match=r"covers 2025-03-06 10:30 → 2025-04-13 07:20"):
        run_replay(settings({"feed": {"timerange": "20240101-20240201"}}), heartbeat=False)


# ----------------------------------------------------------------------------- any symbol
def test_precision_derived_from_prices() -> None:
    assert price_step_of([0.16012, 0.1601, 0.16]) == 1e-5
    assert price_step_of([150.12, 151.3]) == 0.01
    assert price_step_of([80000.0, 80001.0]) == 1.0
    assert amount_step_for(150.0) == 0.001  # 0.15 USDT a step
    assert amount_step_for(0.16) == 1.0


def test_a_symbol_outside_the_five_replays_with_rules_derived_from_its_data(
    clean_env: Path,
) -> None:
    data = synthetic_csv(clean_env / "SOL_USDT_USDT-5m-futures.csv", 3000, 1_743_465_600_000,
                         300_000, 150.0)  # fmt: skip
    report = run_replay(settings({"feed": {"path": str(data)}}), heartbeat=False)
    assert report.symbol == "SOL/USDT:USDT"
    assert report.candles == 3000
    (note,) = [n for n in report.notes if n.startswith("market rules of SOL")]
    assert "derived from the data: tick 0.0001" in note  # the file's prices have 4 decimals


def test_a_markets_snapshot_gives_precision_and_limits(clean_env: Path) -> None:
    snap = {
        "version": 1,
        "exchange_id": "binanceusdm",
        "markets": {
            "SOL/USDT:USDT": {
                "id": "SOLUSDT", "symbol": "SOL/USDT:USDT", "base": "SOL", "quote": "USDT",
                "settle": "USDT", "swap": True, "linear": True, "taker": 0.0004, "maker": 0.0001,
                "precision": {"amount": 1.0, "price": 0.01},
                "limits": {"amount": {"min": 1.0, "max": 1e6}, "cost": {"min": 5.0},
                           "price": {"min": 0.42, "max": 6857.0}, "market": {"max": 1e5}},
            }
        },
        "tiers": {},
    }  # fmt: skip
    path = clean_env / "markets-binanceusdm.json"
    path.write_text(json.dumps(snap))
    data = synthetic_csv(clean_env / "SOL_USDT_USDT-5m-futures.csv", 500, 1_743_465_600_000,
                         300_000, 150.0)  # fmt: skip
    report = run_replay(settings({"feed": {"path": str(data)}}), heartbeat=False)
    (note,) = [n for n in report.notes if n.startswith("market rules of SOL")]
    assert f"markets snapshot {path}" in note and "tiers bundled" in note
    market, _ = resolve_market(
        "SOL/USDT:USDT",
        snapshot=(snap["markets"], {}),
        snapshot_name="x",  # type: ignore[arg-type]
    )
    r = market.rules
    assert (r.amount_step, r.price_step, r.min_notional, r.taker_fee) == (1.0, 0.01, 5.0, 0.0004)


def test_a_spot_file_is_refused_with_a_hint_before_any_gap_warning(
    clean_env: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spot = shared_data / "candles" / "mintanam_ftrade" / "BTC_USDT-1m.feather"
    result = runner.invoke(app, ["replay", "--data", str(spot), "--log-format", "json"])
    assert result.exit_code == 2  # bad input: exit 2 like every input error
    assert "BTC/USDT is a spot symbol" in result.output
    assert "--symbol BTC/USDT:USDT" in result.output
    gappy = shared_data / "candles" / "freqtrade_testdata" / "UNITTEST_BTC-1m.json"  # 717 gaps
    result = runner.invoke(app, ["replay", "--data", str(gappy), "--allow-gaps"])
    assert result.exit_code == 2
    assert "UNITTEST/BTC" in result.output and "data_gap" not in result.output


# ----------------------------------------------------------------------------- logs
def test_replay_logs_are_quiet_timed_and_gaps_summarised(clean_env: Path) -> None:
    data = synthetic_csv(clean_env / "BTC_USDT_USDT-5m-futures.csv", 2000, 1_743_465_600_000,
                         300_000, 80000.0, gaps=5)  # fmt: skip
    result = runner.invoke(
        app,
        ["replay", "--data", str(data), "--allow-gaps", "--log-format", "json", "--json"],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in result.output.splitlines() if x.startswith('{"')]
    events = [x for x in lines if "event" in x]
    report = next(x for x in lines if "candles" in x and "event" not in x)
    gaps = [e for e in events if e["event"] == "data_gaps"]
    assert len(gaps) == 1  # one summary, not one line per gap
    assert gaps[0]["gaps"] == 5 and gaps[0]["missing"] == 10 and len(gaps[0]["first"]) == 3
    assert not [e for e in events if e["event"] == "guard_decision"]  # debug only
    for e in events:  # every line carries the time in the data, not only the wall clock
        assert "data_time" in e
    assert report["candles"] == 2000


def test_replay_done_is_one_info_line_stamped_with_the_data_end(clean_env: Path) -> None:
    result = runner.invoke(app, ["replay", "--log-format", "json", "--log-level", "info"])
    assert result.exit_code == 0, result.output
    events = [json.loads(x) for x in result.output.splitlines() if x.startswith("{")]
    assert [e["event"] for e in events] == ["replay_done"]
    assert events[0]["data_time"] == "2025-04-13T07:20:00Z"  # the last candle's close


# ----------------------------------------------------------------------------- metrics
def test_ratio_definitions_against_hand_computed_numbers() -> None:
    returns = [0.01, -0.02, 0.03]
    # mean 0.00666..., sample sd sqrt(((0.00333)^2+(0.02666)^2+(0.02333)^2)/2) = 0.025166
    assert metrics.sharpe(returns) == pytest.approx(0.0066667 / 0.0251661 * math.sqrt(365), 1e-4)
    # downside deviation sqrt(0.02^2 / 3) = 0.011547
    assert metrics.sortino(returns) == pytest.approx(0.0066667 / 0.0115470 * math.sqrt(365), 1e-4)
    # +10 % in 365 days with a 5 % drawdown: Calmar 2
    assert metrics.calmar(100.0, 110.0, 365.0, 0.05) == pytest.approx(2.0)
    assert metrics.daily_returns([100.0, 110.0, 99.0]) == pytest.approx([0.1, -0.1])
    assert metrics.sharpe([0.01]) is None and metrics.calmar(1, 2, 10, 0) is None


def test_report_figures_agree_with_the_trade_list(clean_env: Path) -> None:
    report = run_replay(settings(), heartbeat=False)
    d = report.to_dict()
    nets = [t.pnl - t.fees + t.funding for t in report.closed_trades]
    won = sum(n for n in nets if n > 0)
    lost = -sum(n for n in nets if n < 0)
    assert d["profit_factor"] == pytest.approx(won / lost, abs=1e-3)
    assert d["expectancy"] == pytest.approx(sum(nets) / len(nets), abs=0.01)
    assert d["return_pct"] == pytest.approx((d["final_equity"] / 10_000 - 1) * 100, abs=0.01)
    assert d["currency"] == "USDT"
    assert sum(r["trades"] for r in d["per_exit_reason"].values()) == d["trades"]
    assert d["per_symbol"]["BTC/USDT:USDT"]["trades"] == d["trades"]
    # each refused order counted once, under one rule
    assert sum(d["refusals_by_rule"].values()) == d["orders_refused"]
    text = report.render_text()
    for words in ("amounts in USDT", "profit factor", "Sharpe / Sortino / Calmar",
                  "by symbol", "by exit reason", "counted once"):  # fmt: skip
        assert words in text


# ----------------------------------------------------------------------------- make run's demo
def test_the_crash_demo_shows_a_liquidation_the_guards_avoid(clean_env: Path) -> None:
    result = runner.invoke(app, ["replay", "--config", str(CRASH), "--compare", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    on, off = data["guards_on"], data["guards_off"]
    assert off["liquidations"] >= 1 and off["liquidation_loss"] > 0
    assert on["liquidations"] == 0
    assert on["final_equity"] > off["final_equity"]
    diff = {row["key"]: row for row in data["difference"]}
    assert diff["final_equity"]["diff"] == pytest.approx(on["final_equity"] - off["final_equity"])
    assert "liquidation(s) avoided" in data["verdict"]
    text = runner.invoke(app, ["replay", "--config", str(CRASH), "--compare"]).output
    assert "Margin lost to liquidation" in text and "on − off" in text
    assert "max_drawdown_pct" not in text  # readable labels, not snake_case keys


# ----------------------------------------------------------------------------- export, chart
def test_export_writes_every_file_consistent_with_the_report(clean_env: Path) -> None:
    out = clean_env / "out"
    result = runner.invoke(
        app, ["replay", "--config", str(CRASH), "--no-guards", "--export", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())

    def rows(name: str) -> list[dict[str, str]]:
        with (out / name).open() as fh:
            return list(csv.DictReader(fh))

    trades = rows("trades.csv")
    assert len(trades) == report["trades"]
    for t in trades:
        net = float(t["pnl"]) - float(t["fees"]) + float(t["funding"])
        assert float(t["net_pnl"]) == pytest.approx(net, abs=1e-6)
        assert t["open_time"] <= t["close_time"]
    liq = rows("liquidations.csv")
    assert len(liq) == report["liquidations"] >= 1
    assert sum(float(x["margin_lost"]) for x in liq) == pytest.approx(
        report["liquidation_loss"], abs=0.01
    )
    equity = rows("equity.csv")
    assert len(equity) == report["candles"]
    assert all(float(e["low_equity"]) <= float(e["equity"]) + 1e-9 for e in equity)
    assert float(equity[-1]["equity"]) == pytest.approx(report["final_equity"], abs=0.01)
    # the intrabar path goes below the closes: some candles' lowest equity is under their close
    assert any(float(e["low_equity"]) < float(e["equity"]) - 1.0 for e in equity)
    fills = rows("fills.csv")
    assert {f["reason"] for f in fills} >= {"liquidation"}
    decisions = rows("decisions.csv")  # guards off: every entry allowed, no rule acted
    assert len(decisions) == report["orders_checked"] > 0
    assert {(d["kind"], d["outcome"], d["rule"]) for d in decisions} == {("entry", "allow", "")}


def test_compare_export_and_chart_hold_both_runs(clean_env: Path) -> None:
    out = clean_env / "cmp"
    chart = clean_env / "chart.html"
    result = runner.invoke(
        app,
        ["replay", "--config", str(CRASH), "--compare", "--export", str(out), "--plot",
         str(chart), "--timerange", "20250306-20250320"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    both = json.loads((out / "report.json").read_text())
    assert set(both) == {"guards_on", "guards_off", "difference", "verdict"}
    assert json.loads((out / "guards_off" / "report.json").read_text()) == both["guards_off"]
    decisions = list(csv.DictReader((out / "decisions.csv").open()))
    on = both["guards_on"]
    entries = [d for d in decisions if d["kind"] == "entry"]
    assert len(entries) == on["orders_checked"]
    refused = [d for d in entries if d["outcome"] == "reject"]
    assert len(refused) == on["orders_refused"]
    assert all(d["rule"] and d["code"] and json.loads(d["figures"]) is not None for d in refused)
    html = chart.read_text()
    assert html.count("<polyline") >= 5  # equity on/off, intrabar low, drawdown on/off, price
    assert "guards off" in html and "drawdown from peak" in html and "BTC/USDT:USDT close" in html
    assert "liquidation (guards off)" in html  # the guards-off liquidation on the price panel
    for rule, n in on["guard_interventions"].items():
        assert html.count(f'class="lane {rule}"') == n
        assert f"{rule}: {n:,}" in html  # legend per rule with its count


def test_multi_symbol_example_of_the_readme_runs_and_reports_each_symbol(clean_env: Path) -> None:
    btc = REPO / "paper" / "data" / "BTC_USDT_USDT-5m-futures.csv.gz"
    eth = REPO / "paper" / "data" / "ETH_USDT_USDT-5m-futures.csv.gz"
    result = runner.invoke(app, ["replay", "--data", str(btc), "--data", str(eth), "--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.output.strip().splitlines()[-1])
    assert set(d["per_symbol"]) == {"BTC/USDT:USDT", "ETH/USDT:USDT"}
    assert any("ETH_USDT_USDT-8h-funding_rate" in n for n in d["notes"])  # found beside it


def test_a_file_ending_earlier_is_warned_about(clean_env: Path) -> None:
    btc = REPO / "paper" / "data" / "BTC_USDT_USDT-5m-futures.csv.gz"
    with gzip.open(REPO / "paper" / "data" / "ETH_USDT_USDT-5m-futures.csv.gz", "rt") as fh:
        head = "".join(fh.readline() for _ in range(1001))
    short = clean_env / "ETH_USDT_USDT-5m-futures.csv"
    short.write_text(head)
    s = settings({"feed": {"path": str(btc), "paths": [str(short)]}})
    report = run_replay(s, heartbeat=False)
    assert any(n.startswith("ETH/USDT:USDT data ends at") for n in report.notes)


# ----------------------------------------------------------------------------- fast checks
def test_large_files_are_checked_fast_and_still_name_the_bad_row(clean_env: Path) -> None:
    n = 60_000  # above the vectorised check's threshold
    buf = io.StringIO()
    buf.write("timestamp_ms,open,high,low,close,volume\n")
    for i in range(n):
        high = 99.0 if i == 54_321 else 101.0  # row 54,322: high below the open
        buf.write(f"{1_700_000_000_000 + i * 60_000},100.0,{high},99.5,100.5,1.0\n")
    path = clean_env / "X_USDT_USDT-1m-futures.csv"
    path.write_text(buf.getvalue())
    with pytest.raises(ValueError, match=r"row 54322 \(line 54323\): malformed candle: high"):
        load_candles(path)
    good = buf.getvalue().replace(",99.0,", ",101.0,")
    path.write_text(good)
    assert len(load_candles(path)) == n
    lines = good.splitlines()
    del lines[30_001]  # line 30,001 = data row 30,001: missing, so the next row shows the gap
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"row 30001 \(line 30002\): gap: 1 missing 1m"):
        load_candles(path)
    assert [g.missing for g in load_candles(path, allow_gaps=True).gaps] == [1]
