"""``guardbot history``: recent decisions, fills, round-trip trades and actions from the store."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.state.store import Store
from guards.config import GuardsConfig
from guards.engine import GuardEngine
from guards.types import Account, Action, GuardContext, Mark, OrderIntent
from paper.markets import load_market

runner = CliRunner()
SYM = "BTC/USDT:USDT"
T0 = 1_718_100_000.0  # 2024-06-11T10:00:00Z


def strict_json(text: str) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def state_dir(clean_env: Path) -> Path:
    """A state folder with two decisions, two fills and an action, and a config naming it."""
    folder = clean_env / "state"
    ctx = GuardContext(
        Account(10_000.0, {}), {SYM: load_market(SYM).rules}, {SYM: Mark(60_000.0, T0)}, T0
    )
    engine = GuardEngine(GuardsConfig())
    no_stop = engine.check(OrderIntent(SYM, "long", 0.05, 60_000.0, "limit", 3.0), ctx)
    ok = engine.check(
        OrderIntent(SYM, "long", 0.01, 60_000.0, "limit", 3.0, stop_price=59_500.0, client_id="c1"),
        ctx,
    )
    assert (no_stop.code, ok.code) == ("stop_missing", "ok")
    with Store.open(folder) as s:
        s.record_decision(no_stop, T0, "run-1")
        s.record_decision(ok, T0 + 60, "run-1")
        s.order_intent("c1", SYM, "buy", "limit", 0.01, 60_000.0, ts=T0 + 60)
        s.order_ack("c1", {"id": "X1", "status": "open"}, ts=T0 + 61)
        s.record_fill(
            trade_id="t1", symbol=SYM, side="buy", amount=0.004, price=60_010.5, ts=T0 + 62,
            client_id="c1", fee=0.12, fee_currency="USDT",
        )  # fmt: skip
        s.record_fill(
            trade_id="t2", symbol=SYM, side="buy", amount=0.006, price=60_020.0, ts=T0 + 63,
            client_id="c1", fee=0.18, fee_currency="USDT",
        )  # fmt: skip
        s.record_action(
            Action(
                "reduce",
                SYM,
                "liquidation",
                "liq_reduce",
                "mark within 3% of liquidation",
                0.005,
                figures={"distance_pct": 2.5, "far": math.inf},
            ),
            T0 + 120,
            True,
            "order X2",
        )
    (clean_env / "bot.toml").write_text(f'[state]\ndir = "{folder}"\n', encoding="utf-8")
    return folder


def test_history_help() -> None:
    result = runner.invoke(app, ["history", "--help"])
    assert result.exit_code == 0
    assert "--kind" in result.output and "--json" in result.output


def test_json_output_holds_what_was_recorded(state_dir: Path) -> None:
    result = runner.invoke(app, ["history", "--json", "--config", "bot.toml"])
    assert result.exit_code == 0, result.output
    data = strict_json(result.output)
    assert data["store"] == str(state_dir / "guardbot.sqlite")
    decisions = data["decisions"]
    assert [d["code"] for d in decisions] == ["ok", "stop_missing"]  # newest first
    assert decisions[0]["time"] == "2024-06-11T10:01:00Z"
    assert decisions[0]["client_id"] == "c1"
    assert decisions[1]["outcome"] == "reject" and decisions[1]["allowed"] is False
    rules = [v["rule"] for v in decisions[1]["verdicts"]]
    assert "stop_loss" in rules and "liquidation" in rules
    liq = next(v for v in decisions[0]["verdicts"] if v["rule"] == "liquidation")
    assert liq["figures"]["stop"] == 59_500.0 and liq["figures"]["mark"] == 60_000.0
    fills = data["fills"]
    assert [(t["trade_id"], t["amount"], t["price"], t["fee"]) for t in fills] == [
        ("t2", 0.006, 60_020.0, 0.18),
        ("t1", 0.004, 60_010.5, 0.12),
    ]
    assert fills[0]["order_id"] is None and fills[0]["client_id"] == "c1"
    assert data["trades"] == []  # an open position: no round trip yet
    (action,) = data["actions"]
    assert (action["kind"], action["code"], action["amount"], action["executed"]) == (
        "reduce",
        "liq_reduce",
        0.005,
        True,
    )
    assert action["figures"] == {"distance_pct": 2.5, "far": "inf"}  # strict JSON


def test_kind_and_limit_select_rows(state_dir: Path) -> None:
    result = runner.invoke(
        app, ["history", "--json", "--kind", "fills", "-n", "1", "--state-dir", str(state_dir)]
    )
    assert result.exit_code == 0, result.output
    data = strict_json(result.output)
    assert set(data) == {"store", "fills"}
    assert [t["trade_id"] for t in data["fills"]] == ["t2"]
    other = runner.invoke(
        app, ["history", "--json", "--symbol", "ETH/USDT:USDT", "--state-dir", str(state_dir)]
    )
    assert strict_json(other.output)["decisions"] == []


def test_table_output(state_dir: Path) -> None:
    result = runner.invoke(app, ["history", "--config", "bot.toml"])
    assert result.exit_code == 0, result.output
    out = result.output
    for title in ("recent decisions", "recent fills", "recent actions"):
        assert title in out
    assert "stop_missing" in out and "2024-06-11T10:00:00Z" in out
    assert "60,010.5" in out and "0.004" in out  # the first fill's price and amount
    assert "liq_reduce" in out and "yes: order X2" in out
    assert "distance_pct=2.5" in out


def test_table_with_nothing_recorded(clean_env: Path) -> None:
    Store.open(clean_env / "empty").close()
    result = runner.invoke(
        app, ["history", "--kind", "actions", "--state-dir", str(clean_env / "empty")]
    )
    assert result.exit_code == 0, result.output
    assert "no actions recorded" in result.output


def test_no_store_is_not_an_error(clean_env: Path) -> None:
    result = runner.invoke(app, ["history", "--state-dir", str(clean_env / "nothing")])
    assert result.exit_code == 0
    assert f"no state store at {clean_env / 'nothing' / 'guardbot.sqlite'}" in result.output
    assert not (clean_env / "nothing").exists()  # history never creates one
    as_json = runner.invoke(app, ["history", "--json", "--state-dir", str(clean_env / "x")])
    assert as_json.exit_code == 0
    data = strict_json(as_json.output)
    assert data["decisions"] == [] and "no state store" in data["note"]


def test_default_state_dir_comes_from_settings(clean_env: Path) -> None:
    # the bundled default is state.dir = "state", relative to the working folder
    result = runner.invoke(app, ["history"])
    assert result.exit_code == 0
    assert "no state store at state/guardbot.sqlite" in result.output


def test_bad_arguments_exit_2(state_dir: Path) -> None:
    bad = runner.invoke(app, ["history", "--kind", "orders", "--state-dir", str(state_dir)])
    assert bad.exit_code == 2
    assert "--kind must be one of decisions, fills, trades, actions, all" in bad.output
    zero = runner.invoke(app, ["history", "--limit", "0", "--state-dir", str(state_dir)])
    assert zero.exit_code == 2


def test_trades_are_round_trips_derived_from_the_fills(state_dir: Path) -> None:
    """Two entry fills and one closing stop fill make one round trip: the entry price is the
    fills' volume-weighted average, the PnL the exchange's realised PnL, the fees all three."""
    with Store.open(state_dir) as s:
        s.order_intent(
            "gbs1", SYM, "sell", "market", 0.01, None, {"role": "stop", "reduceOnly": True}
        )
        s.order_ack("gbs1", {"id": "X3", "status": "closed"})
        s.record_fill(
            trade_id="t3", symbol=SYM, side="sell", amount=0.01, price=59_400.0, ts=T0 + 900,
            client_id="gbs1", order_id="X3", fee=0.297, fee_currency="USDT", role="stop",
            realized_pnl=-6.162,
        )  # fmt: skip
    result = runner.invoke(app, ["history", "--json", "--kind", "trades", "--config", "bot.toml"])
    assert result.exit_code == 0, result.output
    (trip,) = strict_json(result.output)["trades"]
    entry = (0.004 * 60_010.5 + 0.006 * 60_020.0) / 0.01
    assert trip["entry_price"] == pytest.approx(entry)
    assert trip["exit_price"] == 59_400.0 and trip["amount"] == pytest.approx(0.01)
    assert trip["pnl"] == pytest.approx(-6.162)  # as the exchange reported it
    assert trip["fees"] == pytest.approx(0.12 + 0.18 + 0.297)
    assert trip["net"] == pytest.approx(-6.162 - 0.597)
    assert (trip["role"], trip["reason"], trip["closed"]) == ("stop", "stop", True)
    table = runner.invoke(app, ["history", "--kind", "trades", "--config", "bot.toml"])
    assert "recent trades" in table.output and "59,400" in table.output
