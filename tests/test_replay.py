"""The replay driver and its report: determinism, accounting identities, guards on and off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.research.replay import guards_off, run_replay
from bot.settings import load_settings

REQUIRED = {
    "candles",
    "trades",
    "fees",
    "funding",
    "final_equity",
    "max_drawdown_pct",
    "liquidations",
    "guard_interventions",
    "guards_enabled",
}


def test_replay_json_has_every_promised_key(clean_env: Path) -> None:
    result = CliRunner().invoke(app, ["replay", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    assert set(data) >= REQUIRED
    assert data["candles"] == 10_906  # rows of the bundled series (paper/data/README.md)
    assert "stop_loss" in data["guards_enabled"]


def test_same_data_and_config_give_the_same_report_to_the_cent(clean_env: Path) -> None:
    s = load_settings(secrets_dir=None)
    a = run_replay(s, heartbeat=False).to_dict()
    b = run_replay(s, heartbeat=False).to_dict()
    a.pop("elapsed_s")
    a.pop("load_s")
    b.pop("elapsed_s")
    b.pop("load_s")
    assert a == b


def test_ledger_identity_equity_is_start_plus_pnl_minus_fees_plus_funding(clean_env: Path) -> None:
    s = load_settings(secrets_dir=None)
    for guards_on in (True, False):
        r = run_replay(s, guards_on=guards_on, heartbeat=False)
        # the wallet holds realised PnL, fees and funding (no unrealised PnL): to the cent
        wallet = r.starting_balance + r.realized_pnl - r.fees + r.funding
        assert r.trades > 0
        assert r.final_wallet == pytest.approx(wallet, abs=0.005)


def test_no_guards_enables_nothing_and_trades_more(clean_env: Path) -> None:
    s = load_settings(secrets_dir=None)
    on = run_replay(s, heartbeat=False)
    off = run_replay(s, guards_on=False, heartbeat=False)
    assert off.guards_enabled == []
    assert off.guard_interventions == {}
    assert off.orders_refused == 0
    assert on.orders_refused > 0
    assert sum(on.guard_interventions.values()) > 0
    assert off.trades > on.trades
    assert guards_off(s.guards).stop_loss.enabled is False


def test_bad_data_file_is_a_clear_error(clean_env: Path) -> None:
    bad = clean_env / "BTC_USDT_USDT-5m-futures.csv"
    bad.write_text("1,2,3\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["replay", "--data", str(bad)])
    assert result.exit_code == 2  # an input error
    assert str(bad) in result.output


def test_replay_runs_the_live_flatten_job_on_its_clock_across_dst(clean_env: Path) -> None:
    """The flatten is the same CronTrigger as live: 22:00 Berlin time, which is 21:00 UTC
    before the 30 March 2025 DST switch and 20:00 UTC after it."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    s = load_settings(
        None,
        {"guards": {"no_overnight": {"timezone": "Europe/Berlin", "flat_by": "22:00"}}},
        env_file=None,
        secrets_dir=None,
    )
    report = run_replay(s, heartbeat=False, record_curve=True)
    assert report.curve is not None
    closes = [
        datetime.fromtimestamp(t, UTC)
        for t, kind, rule in report.curve.markers
        if kind == "close" and rule == "no_overnight"
    ]
    assert closes, "the strategy held positions into some evenings"
    berlin = ZoneInfo("Europe/Berlin")
    assert {(c.astimezone(berlin).hour, c.astimezone(berlin).minute) for c in closes} == {(22, 0)}
    utc_hours = {c.date().isoformat(): c.hour for c in closes}
    assert {h for d, h in utc_hours.items() if d < "2025-03-30"} <= {21}
    assert {h for d, h in utc_hours.items() if d > "2025-03-30"} <= {20}
    assert any(d < "2025-03-30" for d in utc_hours) and any(d > "2025-03-30" for d in utc_hours)


def test_several_symbols_replay_merged_in_time_order(clean_env: Path, shared_data: Path) -> None:
    folder = shared_data / "candles" / "typhonun_DcaTpStrategy"
    btc = folder / "BTC_USDT_USDT-5m-futures.feather"
    eth = folder / "ETH_USDT_USDT-5m-futures.feather"
    both = {"feed": {"path": str(btc), "paths": [str(eth)]}}
    s = load_settings(None, both, env_file=None, secrets_dir=None)
    report = run_replay(s, heartbeat=False)
    assert report.symbol == "BTC/USDT:USDT,ETH/USDT:USDT"
    assert report.candles == 10_906 * 2  # both files' rows (shared/data/README.md)
    assert {t.symbol for t in report.closed_trades} == {"BTC/USDT:USDT", "ETH/USDT:USDT"}
    again = run_replay(s, heartbeat=False).to_dict()
    first = report.to_dict()
    first.pop("elapsed_s")
    first.pop("load_s")
    again.pop("elapsed_s")
    again.pop("load_s")
    assert first == again

    # A strategy trading BTC only must do exactly the same with ETH merged in as alone.
    only_btc = {"path": "strategies_for_tests:OnlyOn", "params": {"symbol": "BTC/USDT:USDT"}}
    alone = run_replay(
        load_settings(
            None,
            {"feed": {"path": str(btc)}, "strategy": only_btc},
            env_file=None,
            secrets_dir=None,
        ),
        heartbeat=False,
    ).to_dict()
    merged = run_replay(
        load_settings(None, {**both, "strategy": only_btc}, env_file=None, secrets_dir=None),
        heartbeat=False,
    ).to_dict()
    for key in ("trades", "fees", "funding", "final_equity", "max_drawdown_pct", "orders_checked"):
        assert merged[key] == alone[key], key


def test_two_files_of_one_symbol_are_refused(clean_env: Path, shared_data: Path) -> None:
    btc = shared_data / "candles" / "typhonun_DcaTpStrategy" / "BTC_USDT_USDT-5m-futures.feather"
    result = CliRunner().invoke(app, ["replay", "--data", str(btc), "--data", str(btc)])
    assert result.exit_code == 2  # an input error
    assert "same symbol" in result.output


@pytest.mark.parametrize("guards", ["--no-guards", "--compare"])
def test_an_opposite_order_closes_the_position_in_replay(
    clean_env: Path, shared_data: Path, guards: str
) -> None:
    """A strategy's short market order of the long's size closes it (the guards call it
    ``closing``), in replay as in the running bot: the closes are booked as strategy exits."""
    data = shared_data / "candles" / "typhonun_DcaTpStrategy" / "BTC_USDT_USDT-5m-futures.feather"
    args = ["replay", "--data", str(data), "--json", "--set"]
    args.append("strategy.path=strategies_for_tests:OpenThenOppose")
    result = CliRunner().invoke(app, [*args, guards])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    reports = [out] if guards == "--no-guards" else [out["guards_on"], out["guards_off"]]
    for report in reports:
        exits = report["exit_reasons"]
        assert exits.get("strategy", 0) > 100, exits  # ~2,900 candles / 7 per round trip
        assert exits.get("stop", 0) < exits["strategy"]
