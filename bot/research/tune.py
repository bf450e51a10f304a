"""``guardbot tune``: a search over guard and strategy settings with Optuna, resumable, on local
processes or a Ray cluster.

The driver owns the study: Optuna's sampler (TPE by default; NSGA-II for two objectives; random
on request) with the study's constraints, stored in SQLite (``RDBStorage``) so an interrupted or
finished study resumes where it stopped, its trial numbers continuing. Trials are asked in
batches of the backend's size, each trial's settings validated here (an invalid combination is a
failed trial, listed with its reason), run by the backend (``bot.research.trials``), and told in
trial order when the batch is done — so the same seed, space and batch size give the same trials
on either backend. Every finished trial is written at once as one JSON line (``--results``), so
a crash loses nothing done: trials the study still shows as running when it resumes are told
from those lines, or marked failed.

After the search: the ranked trials (the best marked), the parameters' importances (Optuna's
fANOVA), the best configuration as a TOML file ``guardbot run --config`` takes, and with
``--train/--test`` the best trials replayed on the held-out window next to their in-sample
figures.
"""

from __future__ import annotations

import json
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from bot.research.objectives import DEFAULT_MAX_DRAWDOWN, Objective, values
from bot.research.space import Param, config_reason, deep_merge, to_tree
from bot.research.trials import (
    Backend,
    Limits,
    Outcome,
    PruneSnapshot,
    Task,
    data_key,
    feeds_for,
)
from bot.settings import ConfigError, Settings, load_settings, read_toml

log = structlog.get_logger("tune")

#: The report figures each trial keeps (results file, table, best config header).
FIGURES = (
    "return_pct",
    "final_equity",
    "max_drawdown_pct",
    "liquidations",
    "liquidation_loss",
    "trades",
    "win_rate",
    "profit_factor",
    "sharpe",
    "sortino",
    "calmar",
    "orders_refused",
)


@dataclass
class StudySpec:
    """Everything a study needs (the CLI builds it)."""

    name: str
    storage: str
    space: list[Param]
    objectives: list[Objective]
    trials: int
    config: Path | None = None
    base: dict[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None
    sampler: str = "auto"
    seed: int | None = None
    no_liquidation: bool = False
    max_drawdown_pct: float | None = None
    prune: bool = True
    train: str | None = None
    test: str | None = None
    results: Path | None = None
    top: int = 10

    @property
    def limits(self) -> Limits:
        o = self.objectives
        dd = self.max_drawdown_pct
        if dd is None and any(x.needs_max_drawdown for x in o):
            dd = DEFAULT_MAX_DRAWDOWN
        return Limits(self.no_liquidation or any(x.needs_no_liquidation for x in o), dd)


@dataclass
class TrialRow:
    """One trial as the table and the results file show it."""

    number: int
    state: str
    params: dict[str, Any]
    values: list[float] | None
    figures: dict[str, Any]
    feasible: bool
    reason: str = ""
    test: dict[str, Any] | None = None
    test_values: list[float] | None = None
    best: bool = False


@dataclass
class StudyResult:
    rows: list[TrialRow]
    importances: dict[str, float]
    importance_note: str
    skipped: list[TrialRow]
    best: list[TrialRow]
    n_trials: int
    elapsed_s: float
    no_effect: list[str] = field(default_factory=list)
    #: Trials by state: complete, pruned, fail (invalid combinations included).
    counts: dict[str, int] = field(default_factory=dict)


def optuna_module() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError(
            "guardbot tune needs Optuna: pip install 'guardbot[tune]' (or 'guardbot[ray]')"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _constraints(trial: Any) -> Sequence[float]:
    """A finished trial's constraint values (Optuna 5 keeps them itself; 4: a user attribute)."""
    own = getattr(trial, "constraints", None)
    if isinstance(own, dict) and own:
        return tuple(own.values())
    return tuple(trial.user_attrs.get("constraints", ()))


def _set_constraints(trial: Any, named: Mapping[str, float]) -> None:
    """Constraints of a trial before it is told: ``Trial.set_constraint`` where Optuna has it
    (5.0 on), else the user attribute the samplers' ``constraints_func`` reads."""
    if hasattr(trial, "set_constraint"):
        for key, value in named.items():
            trial.set_constraint(key, value)
    trial.set_user_attr("constraints", list(named.values()))


def _native_constraints() -> bool:
    return hasattr(optuna_module().trial.Trial, "set_constraint")


def make_sampler(spec: StudySpec) -> Any:
    optuna = optuna_module()
    kind = spec.sampler
    if kind == "auto":
        kind = "nsga2" if len(spec.objectives) > 1 else "tpe"
    cons = _constraints if spec.limits.any and not _native_constraints() else None
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=spec.seed, constraints_func=cons)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(
            seed=spec.seed, constraints_func=cons, population_size=max(4, min(50, spec.trials))
        )
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    raise ConfigError(f"unknown sampler {spec.sampler!r} (auto, tpe, nsga2, random)")


def open_study(spec: StudySpec) -> Any:
    optuna = optuna_module()
    if spec.storage.startswith("sqlite:///"):
        Path(spec.storage.removeprefix("sqlite:///")).expanduser().parent.mkdir(
            parents=True, exist_ok=True
        )
    storage = optuna.storages.RDBStorage(
        spec.storage, engine_kwargs={"connect_args": {"timeout": 30}}
    )
    directions = [o.direction for o in spec.objectives]
    try:
        return optuna.create_study(
            study_name=spec.name,
            storage=storage,
            sampler=make_sampler(spec),
            directions=directions,
            load_if_exists=True,
        )
    except ValueError as exc:  # e.g. the stored study has other directions
        raise ConfigError(f"study {spec.name} in {spec.storage}: {exc}") from None


def settings_for(spec: StudySpec, params: Mapping[str, Any], window: str | None) -> Settings:
    """The trial's settings: the config file, the fixed overrides, the window, the params."""
    tree = deep_merge(spec.base, to_tree(params))
    if window is not None:
        tree = deep_merge(tree, {"feed": {"timerange": window}})
    return load_settings(spec.config, tree, env_file=None, secrets_dir=None)


def _row(trial: Any, spec: StudySpec) -> TrialRow:
    figures = dict(trial.user_attrs.get("figures", {}))
    feasible = all(c <= 0 for c in _constraints(trial))
    return TrialRow(
        number=trial.number,
        state=trial.state.name.lower(),
        params=dict(trial.params),
        values=list(trial.values) if trial.values is not None else None,
        figures=figures,
        feasible=feasible,
        reason=str(trial.user_attrs.get("reason", "")),
    )


class Results:
    """The JSON-lines results file: one line per finished trial, flushed as it is written."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._fh = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = path.open("a", encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        if self._fh is not None:
            self._fh.write(json.dumps(record, default=str) + "\n")
            self._fh.flush()

    def read(self, study: str) -> dict[int, dict[str, Any]]:
        if self.path is None or not self.path.exists():
            return {}
        out: dict[int, dict[str, Any]] = {}
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            if rec.get("study") == study and rec.get("window", "train") in ("train", ""):
                out[int(rec["number"])] = rec
        return out

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


def _recover(study: Any, spec: StudySpec, results: Results) -> int:
    """Trials a crash left running: told from the results file, else failed. Returns how many."""
    optuna = optuna_module()
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    known = results.read(spec.name)
    for t in running:
        rec = known.get(t.number)
        if rec is not None and rec.get("state") == "complete" and rec.get("values"):
            trial = optuna.trial.Trial(study, t._trial_id)
            trial.set_user_attr("figures", rec.get("figures", {}))
            trial.set_user_attr("reason", rec.get("reason", "") or "recovered from the results")
            _set_constraints(trial, spec.limits.named(rec["figures"]))
            study.tell(trial, rec["values"])
        else:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    return len(running)


def _snapshot(study: Any, spec: StudySpec) -> PruneSnapshot | None:
    if not spec.prune or len(spec.objectives) > 1:
        return None
    optuna = optuna_module()
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    finished = tuple(
        tuple(sorted((int(k), float(v)) for k, v in t.intermediate_values.items()))
        for t in done
        if t.intermediate_values
    )
    return PruneSnapshot(finished)


def run_study(
    spec: StudySpec,
    backend: Backend,
    progress: Callable[[int, int], None] | None = None,
) -> StudyResult:
    """Run ``spec.trials`` more trials of the study, then rank, explain and (``--test``) check."""
    optuna = optuna_module()
    started = time.perf_counter()
    study = open_study(spec)
    results = Results(spec.results)
    try:
        _recover(study, spec, results)
        data: dict[str, Any] = {}
        done = 0
        while done < spec.trials:
            if spec.timeout_s is not None and time.perf_counter() - started >= spec.timeout_s:
                break
            batch = min(backend.workers, spec.trials - done)
            asked = [study.ask() for _ in range(batch)]
            snapshot = _snapshot(study, spec)
            tasks: list[Task] = []
            for trial in asked:
                params = {p.key: p.suggest(trial) for p in spec.space}
                try:
                    s = settings_for(spec, params, spec.train)
                except ConfigError as exc:
                    reason = config_reason(exc)
                    trial.set_user_attr("reason", f"invalid: {reason}")
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    results.write(
                        {"study": spec.name, "number": trial.number, "state": "invalid",
                         "params": params, "reason": reason, "window": "train"}
                    )  # fmt: skip
                    continue
                key = data_key(s)
                if key not in data:
                    data[key] = feeds_for(s)
                tasks.append(Task(trial.number, s, key, spec.limits, snapshot, "train"))
            outcomes: dict[int, Outcome] = {}
            for out in backend.run(tasks, {t.key: data[t.key] for t in tasks}):
                outcomes[out.number] = out
                _write(results, spec, out, {t.number: t for t in asked}[out.number].params)
                if progress is not None:
                    progress(done + len(outcomes), spec.trials)
            for trial in asked:
                got = outcomes.get(trial.number)
                if got is not None:
                    _tell(study, spec, trial, got)
            done += batch
        rows_all = [_row(t, spec) for t in study.get_trials(deepcopy=False)]
    finally:
        results.close()
    return _summarise(study, spec, backend, rows_all, data, started)


def _write(results: Results, spec: StudySpec, out: Outcome, params: Mapping[str, Any]) -> None:
    vals = values(spec.objectives, out.report) if out.state == "complete" else None
    results.write(
        {
            "study": spec.name,
            "number": out.number,
            "window": out.window,
            "state": out.state if out.state != "complete" or vals is not None else "no_value",
            "params": dict(params),
            "values": vals,
            "figures": {k: out.report.get(k) for k in FIGURES} if out.report else {},
            "constraints": spec.limits.violations(out.report) if out.report else [],
            "intermediate": out.intermediate,
            "reason": out.reason,
            "elapsed_s": round(out.elapsed_s, 3),
        }
    )


def _tell(study: Any, spec: StudySpec, trial: Any, out: Outcome) -> None:
    optuna = optuna_module()
    if len(spec.objectives) == 1:  # Optuna keeps intermediate values of one objective only
        for step, value in out.intermediate:
            trial.report(value, step)
    if out.reason:
        trial.set_user_attr("reason", out.reason)
    if out.state == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return
    if out.state == "failed":
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return
    figures = {k: out.report.get(k) for k in FIGURES}
    trial.set_user_attr("figures", figures)
    _set_constraints(trial, spec.limits.named(out.report))
    vals = values(spec.objectives, out.report)
    if vals is None:
        trial.set_user_attr("reason", f"no {spec.objectives[0].label} (e.g. no trades)")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return
    study.tell(trial, vals)


def _summarise(
    study: Any,
    spec: StudySpec,
    backend: Backend,
    rows_all: list[TrialRow],
    data: dict[str, Any],
    started: float,
) -> StudyResult:
    objs = spec.objectives
    complete = [r for r in rows_all if r.state == "complete" and r.values is not None]
    skipped = [r for r in rows_all if r.state == "fail" and r.reason.startswith("invalid")]
    first = objs[0]
    sign = -1.0 if first.direction == "maximize" else 1.0
    complete.sort(key=lambda r: (not r.feasible, sign * r.values[0] if r.values else 0.0))
    best = _best(study, complete, spec)
    for r in best:
        r.best = True
    importances, note = _importances(study, spec)
    no_effect = [p.key for p in spec.space if importances and importances.get(p.key, 0.0) < 0.01]
    if spec.test is not None and complete:
        _out_of_sample(spec, backend, complete[: spec.top], data)
    return StudyResult(
        rows=complete,
        importances=importances,
        importance_note=note,
        skipped=skipped,
        best=best,
        n_trials=len(rows_all),
        elapsed_s=time.perf_counter() - started,
        no_effect=no_effect,
        counts=dict(Counter(r.state for r in rows_all)),
    )


def _best(study: Any, complete: list[TrialRow], spec: StudySpec) -> list[TrialRow]:
    feasible = [r for r in complete if r.feasible]
    if not feasible:
        return []
    if len(spec.objectives) == 1:
        return [feasible[0]]
    front = {t.number for t in study.best_trials}
    return [r for r in feasible if r.number in front]


def _importances(study: Any, spec: StudySpec) -> tuple[dict[str, float], str]:
    optuna = optuna_module()
    if len(spec.space) < 2:
        return {}, "one parameter: nothing to compare"
    try:
        # Optuna's default evaluator (PED-ANOVA from 5.0, fANOVA before) ranks what gets the
        # target low: a maximised objective is negated
        sign = -1.0 if spec.objectives[0].direction == "maximize" else 1.0
        with warnings.catch_warnings():  # its "low target" note: the sign is handled here
            warnings.simplefilter("ignore", UserWarning)
            imp = optuna.importance.get_param_importances(
                study, target=lambda t: sign * t.values[0]
            )
    except (ValueError, RuntimeError, ZeroDivisionError, ImportError) as exc:
        return {}, f"not available ({exc})"
    return {k: float(v) for k, v in imp.items()}, "optuna.importance, default evaluator"


def _out_of_sample(
    spec: StudySpec, backend: Backend, rows: list[TrialRow], data: dict[str, Any]
) -> None:
    tasks = []
    results = Results(spec.results)
    try:
        for r in rows:
            s = settings_for(spec, r.params, spec.test)
            key = data_key(s)
            if key not in data:
                data[key] = feeds_for(s)
            tasks.append(Task(r.number, s, key, Limits(), None, "test"))
        by_number = {r.number: r for r in rows}
        for out in backend.run(tasks, {t.key: data[t.key] for t in tasks}):
            row = by_number[out.number]
            _write(results, spec, out, row.params)
            row.test = {k: out.report.get(k) for k in FIGURES} if out.report else {}
            row.test_values = values(spec.objectives, out.report) if out.report else None
    finally:
        results.close()


def best_config_text(spec: StudySpec, row: TrialRow) -> str:
    """The best trial's full configuration as TOML: the config file, the fixed overrides and the
    trial's parameters, with the window the study ran on (``guardbot run --config`` reproduces
    the in-sample figures; delete ``feed.timerange`` to replay all the data)."""
    from bot.research.tomlout import dumps

    tree: dict[str, Any] = read_toml(spec.config) if spec.config is not None else {}
    tree = deep_merge(deep_merge(tree, spec.base), to_tree(row.params))
    feed = dict(tree.get("feed", {}))
    if spec.train is not None:
        feed["timerange"] = spec.train  # the window the figures above come from
    for k in ("path", "funding_path", "mark_path", "markets_path"):
        if isinstance(feed.get(k), str):
            feed[k] = str(Path(feed[k]).resolve())
    if feed.get("paths"):
        feed["paths"] = [str(Path(p).resolve()) for p in feed["paths"]]
    if feed:
        tree["feed"] = feed
    objs = ", ".join(o.name for o in spec.objectives)
    figures = ", ".join(f"{k} {v}" for k, v in row.figures.items() if v is not None)
    header = (
        f"guardbot tune: best trial {row.number} of study {spec.name!r} ({spec.storage})\n"
        f"objective {objs}: {row.values}\n"
        f"in-sample ({spec.train or 'all data'}): {figures}\n"
        + (f"out-of-sample ({spec.test}): {row.test}\n" if row.test is not None else "")
        + "run it: guardbot run --config THIS_FILE (feed.timerange: the study's window)"
    )
    text = dumps(tree, header)
    load_settings(None, _parse(text), env_file=None, secrets_dir=None)  # it must validate
    return text


def _parse(text: str) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(text)
