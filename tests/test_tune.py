"""`guardbot tune` (Optuna studies: objectives, constraints, resume, importances, best config,
out-of-sample) and the improved `replay --set` grid; the Ray backend against the local one."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

pytest.importorskip("optuna", reason="guardbot tune needs the tune extra (optuna)")

from bot.cli import app, parse_value
from bot.research.objectives import objectives
from bot.research.replay import run_replay
from bot.research.space import parse_param
from bot.research.trials import Limits, LocalBackend, Outcome, Task
from bot.research.tune import StudySpec, best_config_text, run_study
from bot.settings import ConfigError, load_settings

runner = CliRunner()

#: The reckless dip buyer through a stop-attaching, leverage-capping guard set on the crash
#: (other rules off, so only the leverage cap decides): on this window a low cap gains and 20x
#: loses most of the wallet (the first study test checks 20x with its own replay).
LEVERAGE_CONFIG = """
mode = "paper"
[feed]
kind = "replay"
timerange = "20250401-20250412"
[strategy]
path = "bot.strategies.reckless:Reckless"
params = { notional = 30000, leverage = 20, dip_pct = 2.0, lookback = 48 }
[guards.stop_loss]
missing = "attach"
max_risk_pct = 50
[guards.liquidation]
enabled = false
[guards.anti_top_up]
enabled = false
[guards.no_overnight]
enabled = false
[guards.overtrading]
enabled = false
[guards.loss_limit]
enabled = false
[guards.circuit_breaker]
enabled = false
[guards.position_cap]
max_margin_pct = 100
max_total_margin_pct = 100
"""


@pytest.fixture
def lev_config(clean_env: Path) -> Path:
    path = clean_env / "lev.toml"
    path.write_text(LEVERAGE_CONFIG)
    return path


def spec(tmp: Path, config: Path | None, **kw: Any) -> StudySpec:
    base: dict[str, Any] = {
        "name": "t",
        "storage": f"sqlite:///{tmp / 'study.db'}",
        "space": [parse_param("guards.position_cap.max_leverage=int:1..20", parse_value)],
        "objectives": objectives(["return"]),
        "trials": 8,
        "config": config,
        "seed": 3,
        "results": tmp / "results.jsonl",
    }
    base.update(kw)
    return StudySpec(**base)


def test_space_specs_parse_and_bad_ones_are_clear() -> None:
    p = parse_param("a.b=float:0.5..3:step=0.5", parse_value)
    assert (p.kind, p.low, p.high, p.step) == ("float", 0.5, 3.0, 0.5)
    p = parse_param("a.b=float:0.01..1:log", parse_value)
    assert p.log
    p = parse_param("g.s.missing=choice:reject,attach", parse_value)
    assert p.choices == ("reject", "attach")
    for bad in ("a=int:5..1", "a=float:0..1:log", "a=int:1.5..3", "a=range:1..2", "a=int:x..y"):
        with pytest.raises(ConfigError):
            parse_param(bad, parse_value)
    with pytest.raises(ConfigError, match="unknown objective"):
        objectives(["profit"])


def test_a_study_finds_the_leverage_cap_that_is_known_better(
    lev_config: Path, clean_env: Path
) -> None:
    s = spec(clean_env, lev_config, trials=10, prune=False)
    result = run_study(s, LocalBackend(1))
    (best,) = result.best
    # independent check: the 20x cap replayed on its own loses most of the wallet
    at20 = run_replay(
        load_settings(lev_config, {"guards": {"position_cap": {"max_leverage": 20}}},
                      env_file=None, secrets_dir=None),
        heartbeat=False,
    )  # fmt: skip
    assert at20.return_pct < -50
    assert best.params["guards.position_cap.max_leverage"] <= 3
    assert best.figures["return_pct"] > 0 > at20.return_pct
    assert best.values == [best.figures["return_pct"]]
    # the best configuration reproduces the best trial through `guardbot run`
    path = clean_env / "best.toml"
    path.write_text(best_config_text(s, best))
    assert (
        tomllib.loads(path.read_text())["guards"]["position_cap"]["max_leverage"]
        == (best.params["guards.position_cap.max_leverage"])
    )
    out = runner.invoke(app, ["run", "--config", str(path), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output.strip().splitlines()[-1])["return_pct"] == pytest.approx(
        best.figures["return_pct"]
    )


class Fake:
    """A backend whose trials' figures are a known function of the leverage cap: return = cap,
    a liquidation from cap 6 up (so unconstrained, 20 is best; constrained, 5)."""

    name = "fake"
    workers = 2

    def __init__(self) -> None:
        self.ran: list[int] = []

    def run(self, tasks: Sequence[Task], data: Mapping[str, Any]) -> Iterator[Outcome]:
        for t in tasks:
            self.ran.append(t.number)
            lev = t.settings.guards.position_cap.max_leverage
            report = {"return_pct": lev, "max_drawdown_pct": lev * 2.0,
                      "liquidations": int(lev >= 6), "final_equity": 1.0, "trades": 1}  # fmt: skip
            yield Outcome(t.number, "complete", report, [(10, lev)], "", 0.0, t.window)

    def close(self) -> None:
        pass


def test_constraints_exclude_liquidated_trials(clean_env: Path) -> None:
    s = spec(clean_env, None, trials=16, no_liquidation=True, prune=False)
    result = run_study(s, Fake())
    (best,) = result.best
    assert best.params["guards.position_cap.max_leverage"] <= 5 and best.feasible
    assert all(r.feasible == (r.figures["liquidations"] == 0) for r in result.rows)
    assert any(not r.feasible for r in result.rows)  # some were liquidated and are marked so
    # without the constraint the highest cap wins
    free = run_study(spec(clean_env, None, name="free", trials=16, prune=False), Fake())
    assert free.best[0].params["guards.position_cap.max_leverage"] > 5


def test_a_resumed_study_continues_its_trial_count(clean_env: Path) -> None:
    first = Fake()
    run_study(spec(clean_env, None, trials=4), first)
    assert first.ran == [0, 1, 2, 3]
    again = Fake()
    result = run_study(spec(clean_env, None, trials=3), again)
    assert again.ran == [4, 5, 6]
    assert result.n_trials == 7
    lines = [json.loads(x) for x in (clean_env / "results.jsonl").read_text().splitlines()]
    assert sorted(x["number"] for x in lines) == list(range(7))  # one line per finished trial


def test_trials_a_crash_left_running_are_told_from_the_results_file(clean_env: Path) -> None:
    import optuna

    s = spec(clean_env, None, trials=2)
    run_study(s, Fake())
    study = optuna.load_study(study_name="t", storage=s.storage)
    stale = study.ask(
        {"guards.position_cap.max_leverage": optuna.distributions.IntDistribution(1, 20)}
    )
    with (clean_env / "results.jsonl").open("a") as fh:  # it had finished before the crash
        record = {
            "study": "t",
            "number": stale.number,
            "window": "train",
            "state": "complete",
            "values": [4.0],
            "figures": {"liquidations": 0, "max_drawdown_pct": 1.0},
        }
        fh.write(json.dumps(record) + "\n")
    run_study(spec(clean_env, None, trials=1), Fake())
    study = optuna.load_study(study_name="t", storage=s.storage)
    recovered = study.trials[stale.number]
    assert recovered.state.name == "COMPLETE" and recovered.values == [4.0]


def test_invalid_combinations_are_skipped_and_listed(clean_env: Path) -> None:
    s = spec(
        clean_env, None, trials=6, prune=False,
        space=[parse_param("guards.liquidation.close_at_pct=float:1..6", parse_value)],
    )  # fmt: skip
    result = run_study(s, Fake())
    assert result.skipped  # close_at_pct must stay below reduce_at_pct (3 by default)
    assert all("close_at_pct < reduce_at_pct" in r.reason for r in result.skipped)
    assert all(r.params["guards.liquidation.close_at_pct"] >= 3 for r in result.skipped)
    assert all(r.params["guards.liquidation.close_at_pct"] < 3 for r in result.rows)


def test_hopeless_trials_stop_early_and_are_infeasible(lev_config: Path, clean_env: Path) -> None:
    s = spec(clean_env, lev_config, trials=6, max_drawdown_pct=15.0, prune=False, seed=5)
    result = run_study(s, LocalBackend(1))
    stopped = [r for r in result.rows if r.reason.startswith("stopped early")]
    assert stopped and all(not r.feasible for r in stopped)
    assert all(r.params["guards.position_cap.max_leverage"] >= 3 for r in stopped)
    assert all(r.feasible for r in result.best)


def test_train_test_reports_out_of_sample_figures(lev_config: Path, clean_env: Path) -> None:
    s = spec(clean_env, lev_config, trials=4, train="20250401-20250407", test="20250407-20250412",
             top=2, prune=False)  # fmt: skip
    result = run_study(s, LocalBackend(1))
    tested = [r for r in result.rows if r.test is not None]
    assert len(tested) == 2
    for r in tested:  # independent replay of that window with that cap
        alone = run_replay(
            load_settings(
                lev_config,
                {"feed": {"timerange": "20250407-20250412"},
                 "guards": {"position_cap": {"max_leverage": r.params[
                     "guards.position_cap.max_leverage"]}}},
                env_file=None, secrets_dir=None,
            ),
            heartbeat=False,
        )  # fmt: skip
        assert r.test["return_pct"] == pytest.approx(alone.return_pct, abs=0.01)


def test_tune_command_line_end_to_end(lev_config: Path, clean_env: Path) -> None:
    args = ["tune", "--config", str(lev_config), "-p", "guards.position_cap.max_leverage=int:1..20",
            "-p", "strategy.params.dip_pct=float:1..4:step=0.5", "-n", "6", "--seed", "1",
            "--workers", "2", "--no-progress"]  # fmt: skip
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "★" in out.output and "importance" in out.output
    assert (clean_env / "tune" / "guardbot-best.toml").exists()
    again = runner.invoke(app, [*args, "--json", "-n", "2"])
    assert again.exit_code == 0, again.output
    data = json.loads(again.output.strip().splitlines()[-1])
    assert data["n_trials"] == 8
    assert set(data["importances"]) <= {"guards.position_cap.max_leverage",
                                        "strategy.params.dip_pct"}  # fmt: skip
    bad = runner.invoke(app, ["tune", "-p", "x=int:5..1"])
    assert bad.exit_code == 2 and "empty" in bad.output


def test_grid_skips_invalid_ranks_and_flags_idle_axes(clean_env: Path) -> None:
    # the README's example: two of three close_at_pct values break close < reduce (3)
    out = runner.invoke(
        app,
        ["replay", "--set", "guards.liquidation.close_at_pct=2,3,5",
         "--set", "guards.position_cap.max_leverage=3,5", "--json", "--export", "grid"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    data = json.loads([x for x in out.output.splitlines() if x.startswith("{")][-1])
    assert len(data["rows"]) == 2 and len(data["skipped"]) == 4
    assert all("close_at_pct < reduce_at_pct" in s["reason"] for s in data["skipped"])
    assert [r["rank"] for r in data["rows"]] == [1, 2]
    # the SMA strategy asks for 3x: a cap of 3 or 5 changes nothing, and the grid says so
    assert "guards.position_cap.max_leverage" in data["no_effect"]
    csv_lines = (clean_env / "grid" / "grid.csv").read_text().splitlines()
    assert len(csv_lines) == 3 and csv_lines[0].startswith("rank,")
    assert len((clean_env / "grid" / "grid.jsonl").read_text().splitlines()) == 2


def test_grid_ranks_by_objective(lev_config: Path, clean_env: Path) -> None:
    out = runner.invoke(
        app,
        ["replay", "--config", str(lev_config), "--set", "guards.position_cap.max_leverage=2,20",
         "--objective", "max_drawdown", "--json"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output.strip().splitlines()[-1])["rows"]
    assert rows[0]["set"]["guards.position_cap.max_leverage"] == 2  # the smaller drawdown first
    assert rows[0]["max_drawdown_pct"] < rows[1]["max_drawdown_pct"]


def test_ray_backend_gives_the_local_backends_trials(lev_config: Path, clean_env: Path) -> None:
    pytest.importorskip("ray", reason="Ray is the optional extra guardbot[ray]; not installed")
    from bot.research.trials import RayBackend

    local = run_study(spec(clean_env, lev_config, name="local", trials=4), LocalBackend(2))
    ray_backend = RayBackend(workers=2)
    try:
        remote = run_study(spec(clean_env, lev_config, name="ray", trials=4), ray_backend)
    finally:
        ray_backend.close()
        import ray

        ray.shutdown()

    def key(rows: Any) -> list[Any]:
        return sorted((r.number, r.params, r.values, r.figures) for r in rows)

    assert key(local.rows) == key(remote.rows)
    assert len(local.rows) == 4


def test_limits_as_constraint_values() -> None:
    lim = Limits(no_liquidation=True, max_drawdown_pct=10.0)
    assert lim.named({"liquidations": 2, "max_drawdown_pct": 12.5}) == {
        "liquidations": 2.0,
        "max_drawdown_pct": 2.5,
    }
    assert Limits().violations({"liquidations": 3, "max_drawdown_pct": 99}) == []
