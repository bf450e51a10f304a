"""Running replays as trials: what one trial is, how a worker evaluates it with data it loaded
once, and the two backends that run many (local processes, Ray tasks).

A ``Task`` carries the trial's settings (validated on the driver), the key of its data, the
limits that end a hopeless trial early and, for pruning, a snapshot of the finished trials'
intermediate values. ``evaluate`` replays it: every tenth of the data it records the return so
far (the intermediate value), stops the replay when a hard limit is already broken (a
liquidation under ``no_liquidation``, a drawdown past ``max_drawdown_pct``: such a trial can
never become feasible) and asks Optuna's ``MedianPruner`` — over the snapshot, in the worker —
whether the trial is worse than the median of the finished ones at that point.

Data is loaded once per worker process (``LocalBackend``: shipped to each process when it
starts) or put in Ray's object store once (``RayBackend``: one copy per node), never per trial.
Both backends yield ``Outcome``s as trials finish; given the same tasks they give the same
outcomes (each trial is deterministic and sees only its own task).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from bot.research.feeds import Feed, ReplayError, load_feeds
from bot.settings import Settings

CHECKPOINTS = 10
#: Feeds loaded in this process, by data key (one load per worker process).
_FEEDS: dict[str, list[Feed]] = {}


def data_key(settings: Settings) -> str:
    """What a trial's data depends on: the feed and paper settings (market rules use fees)."""
    return settings.feed.model_dump_json() + settings.paper.model_dump_json()


def feeds_for(settings: Settings) -> list[Feed]:
    key = data_key(settings)
    feeds = _FEEDS.get(key)
    if feeds is None:
        feeds = _FEEDS[key] = load_feeds(settings)
    return feeds


@dataclass(frozen=True)
class Limits:
    """Hard constraints of a study (a trial breaking one is infeasible)."""

    no_liquidation: bool = False
    max_drawdown_pct: float | None = None

    def named(self, report: Mapping[str, Any]) -> dict[str, float]:
        """Optuna's constraint values by name: ≤ 0 satisfied, > 0 by how much it is broken."""
        out: dict[str, float] = {}
        if self.no_liquidation:
            out["liquidations"] = float(report["liquidations"])
        if self.max_drawdown_pct is not None:
            out["max_drawdown_pct"] = float(report["max_drawdown_pct"]) - self.max_drawdown_pct
        return out

    def violations(self, report: Mapping[str, Any]) -> list[float]:
        return list(self.named(report).values())

    @property
    def any(self) -> bool:
        return self.no_liquidation or self.max_drawdown_pct is not None


@dataclass(frozen=True)
class PruneSnapshot:
    """Finished trials' intermediate values (step → value), for the median rule."""

    finished: tuple[tuple[tuple[int, float], ...], ...] = ()
    n_startup_trials: int = 5
    n_warmup_steps: int = 2


@dataclass(frozen=True)
class Task:
    number: int
    settings: Settings
    key: str
    limits: Limits = field(default_factory=Limits)
    prune: PruneSnapshot | None = None
    window: str = ""


@dataclass
class Outcome:
    number: int
    state: Literal["complete", "pruned", "failed"]
    report: dict[str, Any]
    intermediate: list[tuple[int, float]]
    reason: str = ""
    elapsed_s: float = 0.0
    window: str = ""


class _Pruned(Exception):
    pass


class _Watch:
    """The monitor of one trial's replay (see the module docstring)."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.steps: list[tuple[int, float]] = []
        self.trial: Any = None
        snap = task.prune
        if snap is not None and len(snap.finished) >= snap.n_startup_trials:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            pruner = optuna.pruners.MedianPruner(
                n_startup_trials=snap.n_startup_trials, n_warmup_steps=snap.n_warmup_steps
            )
            study = optuna.create_study(direction="maximize", pruner=pruner)
            for steps in snap.finished:
                study.add_trial(
                    optuna.trial.create_trial(
                        value=steps[-1][1] if steps else 0.0, intermediate_values=dict(steps)
                    )
                )
            self.trial = study.ask()

    def __call__(self, done: int, total: int, run: Any) -> None:
        from bot.research.clock import StopReplay

        step = done * CHECKPOINTS // total if total else CHECKPOINTS
        if step > (self.steps[-1][0] if self.steps else 0) and step < CHECKPOINTS:
            start = run.settings.paper.starting_balance
            value = (run.core.equity() / start - 1.0) * 100.0 if start > 0 else 0.0
            self.steps.append((step, value))
            if self.trial is not None:
                self.trial.report(value, step)
                if self.trial.should_prune():
                    raise _Pruned(f"pruned at {step}/{CHECKPOINTS} of the data (median rule)")
        limits = self.task.limits
        if limits.no_liquidation and run.core.liquidations:
            raise StopReplay("stopped early: liquidated")
        if limits.max_drawdown_pct is not None and run.max_dd * 100.0 > limits.max_drawdown_pct:
            raise StopReplay(f"stopped early: drawdown beyond {limits.max_drawdown_pct:g} %")


def evaluate(task: Task, feeds: Sequence[Feed]) -> Outcome:
    """Replay one trial on already loaded ``feeds``."""
    from bot.research.replay import run_replay

    started = time.perf_counter()
    watch = _Watch(task)
    try:
        report = run_replay(task.settings, feeds=feeds, heartbeat=False, monitor=watch)
    except _Pruned as exc:
        return Outcome(task.number, "pruned", {}, watch.steps, str(exc),
                       time.perf_counter() - started, task.window)  # fmt: skip
    except (ReplayError, ValueError) as exc:
        return Outcome(task.number, "failed", {}, watch.steps, str(exc),
                       time.perf_counter() - started, task.window)  # fmt: skip
    d = report.to_dict()
    final = (task.settings.paper.starting_balance, d["final_equity"])
    steps = [*watch.steps, (CHECKPOINTS, (final[1] / final[0] - 1.0) * 100.0 if final[0] else 0.0)]
    return Outcome(task.number, "complete", d, steps, report.stopped,
                   time.perf_counter() - started, task.window)  # fmt: skip


def _evaluate_here(task: Task) -> Outcome:
    """In a worker process: the task's data from this process's cache."""
    feeds = _FEEDS.get(task.key)
    if feeds is None:
        feeds = _FEEDS[task.key] = load_feeds(task.settings)
    return evaluate(task, feeds)


def _init_worker(feeds: Mapping[str, list[Feed]]) -> None:
    """Process-pool initializer: the data every trial of the study uses, once per process."""
    import structlog

    _FEEDS.update(feeds)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(40)  # errors only in workers
    )


class Backend(Protocol):
    """Where trials run."""

    name: str
    workers: int

    def run(self, tasks: Sequence[Task], data: Mapping[str, list[Feed]]) -> Iterator[Outcome]:
        """Yield each task's outcome as it finishes."""
        ...

    def close(self) -> None: ...


class LocalBackend:
    """Local processes (the default): one per core unless told otherwise; in-process for one."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None
        self._shipped: set[str] = set()

    def _executor(self, data: Mapping[str, list[Feed]]) -> ProcessPoolExecutor:
        if self._pool is not None and not set(data) - self._shipped:
            return self._pool
        if self._pool is not None:  # new data (a test window): fresh workers that hold it all
            self._pool.shutdown()
        self._shipped = set(data)
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers, initializer=_init_worker, initargs=(dict(data),)
        )
        return self._pool

    def run(self, tasks: Sequence[Task], data: Mapping[str, list[Feed]]) -> Iterator[Outcome]:
        if self.workers == 1 or len(tasks) == 1:
            _FEEDS.update(data)
            for task in tasks:
                yield _evaluate_here(task)
            return
        pool = self._executor(data)
        pending: set[Future[Outcome]] = {pool.submit(_evaluate_here, t) for t in tasks}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield fut.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def _ray_task(task: Task, feeds: list[Feed]) -> Outcome:
    """A Ray task: ``feeds`` arrives from the object store (one copy per node)."""
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    return evaluate(task, feeds)


class RayBackend:
    """Ray tasks on an existing cluster (``address``) or a local Ray instance (``guardbot[ray]``).

    The Optuna sampler stays on the driver; each data set is ``ray.put`` once and every task
    gets its reference, so a node fetches it once into its shared object store.
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ReplayError(
                "--backend ray needs Ray: pip install 'guardbot[ray]' (on every node of the "
                "cluster)"
            ) from None
        self._ray = ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "configure_logging": False,
            }
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(num_cpus=workers or os.cpu_count() or 1, **kwargs)
        self.workers = int(workers or ray.cluster_resources().get("CPU", 1))
        self._remote = ray.remote(num_cpus=1)(_ray_task)
        self._refs: dict[str, Any] = {}

    def run(self, tasks: Sequence[Task], data: Mapping[str, list[Feed]]) -> Iterator[Outcome]:
        ray = self._ray
        for key, feeds in data.items():
            if key not in self._refs:
                self._refs[key] = ray.put(feeds)
        pending = [self._remote.remote(t, self._refs[t.key]) for t in tasks]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield ray.get(ref)

    def close(self) -> None:
        self._refs.clear()


def make_backend(name: str, workers: int | None, address: str | None) -> Backend:
    if name == "local":
        if address:
            raise ReplayError("--address is for --backend ray")
        return LocalBackend(workers)
    if name == "ray":
        return RayBackend(address, workers)
    raise ReplayError(f"unknown backend {name!r} (local or ray)")
