"""Tuning speed: trials per minute of a one-year 1-minute study, local processes vs Ray tasks,
and what loading the data once (per worker / per node) saves against loading it per trial.

Every trial replays the 525,600 candles of the replay benchmark (``benchmarks/replay.py``'s
``.bench/data/btcusdt_1m.csv``, generated when missing) with ``benchmarks/bench_config.toml``
(the SMA cross, all nine guards on), over a space of two guard parameters, with Optuna's
random sampler (the same trials for every variant) and no pruning, so each variant does the
same work. Variants:

- ``local``: ``--backend local``, the data shipped once to each worker process;
- ``local, load per trial``: the same processes, but every trial reads and checks the CSV
  itself (what the old grid did);
- ``ray``: ``--backend ray`` on a local Ray instance (skipped without ``guardbot[ray]``), the
  data ``ray.put`` once.

Usage (from the repository root)::

    python benchmarks/tune.py [--trials N] [--workers N] [--csv PATH] [--no-ray]

Prints a table, then as its last line one JSON object: trials, workers, candles, and per
variant wall_s and trials_per_min (null when skipped), plus load_once_speedup.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from replay import CONFIG, DEFAULT_CSV, ensure_data, funding_csv  # noqa: E402

from bot.cli import parse_value  # noqa: E402
from bot.research.objectives import objectives  # noqa: E402
from bot.research.space import parse_param  # noqa: E402
from bot.research.trials import LocalBackend, Outcome, Task, evaluate  # noqa: E402
from bot.research.tune import StudySpec, run_study  # noqa: E402

SPACE = (
    "guards.position_cap.max_leverage=int:2..10",
    "guards.stop_loss.max_risk_pct=float:0.5..2",
)


def _load_and_evaluate(task: Task) -> Outcome:
    from bot.research.feeds import load_feeds

    return evaluate(task, load_feeds(task.settings))


class PerTrialLoad:
    """Local processes whose every trial loads its own data (the old way)."""

    name = "local, load per trial"

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = ProcessPoolExecutor(max_workers=workers)

    def run(self, tasks: Sequence[Task], data: Mapping[str, Any]) -> Iterator[Outcome]:
        for fut in as_completed([self._pool.submit(_load_and_evaluate, t) for t in tasks]):
            yield fut.result()

    def close(self) -> None:
        self._pool.shutdown()


def study(folder: Path, name: str, csv: Path, trials: int) -> StudySpec:
    base: dict[str, Any] = {"feed": {"path": str(csv)}, "logging": {"level": "error"}}
    funding = funding_csv(csv)
    if funding is not None:
        base["feed"]["funding_path"] = str(funding)
    return StudySpec(
        name=name,
        storage=f"sqlite:///{folder / 'bench.db'}",
        space=[parse_param(p, parse_value) for p in SPACE],
        objectives=objectives(["return"]),
        trials=trials,
        config=CONFIG,
        base=base,
        sampler="random",
        seed=1,
        prune=False,
        results=folder / f"{name}.jsonl",
    )


def timed(spec: StudySpec, backend: Any) -> tuple[float, list[Any]]:
    t0 = time.perf_counter()
    try:
        result = run_study(spec, backend)
    finally:
        backend.close()
    return time.perf_counter() - t0, sorted((r.number, r.values) for r in result.rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args(argv)
    csv = args.csv.resolve()
    ensure_data(csv)
    out: dict[str, Any] = {"trials": args.trials, "workers": args.workers, "candles": None}
    rows: list[tuple[str, float | None, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        variants: list[tuple[str, Any]] = [
            ("local", lambda: LocalBackend(args.workers)),
            ("local_load_per_trial", lambda: PerTrialLoad(args.workers)),
        ]
        if not args.no_ray:
            try:
                import ray

                from bot.research.trials import RayBackend

                variants.append(("ray", lambda: RayBackend(workers=args.workers)))
            except ImportError:
                rows.append(
                    ("ray", None, "skipped: Ray not installed (pip install 'guardbot[ray]')")
                )
                out["ray"] = {"wall_s": None, "trials_per_min": None}
        reference = None
        for name, make in variants:
            print(f"running {name} ({args.trials} trials, {args.workers} workers) ...", flush=True)
            wall, trials = timed(study(folder, name, csv, args.trials), make())
            same = "same trials" if reference in (None, trials) else "DIFFERENT trials"
            reference = reference or trials
            per_min = args.trials / wall * 60.0
            out[name] = {"wall_s": round(wall, 2), "trials_per_min": round(per_min, 2)}
            rows.append((name, per_min, f"wall {wall:.1f} s, {same}"))
        if "ray" in out and out["ray"].get("wall_s") is not None:
            import ray

            ray.shutdown()
    out["candles"] = 525_600 if csv == DEFAULT_CSV else None
    once, per_trial = out["local"]["wall_s"], out["local_load_per_trial"]["wall_s"]
    out["load_once_speedup"] = round(per_trial / once, 3) if once else None
    print()
    print(f"{'variant':<24}{'trials/min':>12}  notes")
    for name, per_min, note in rows:
        print(f"{name:<24}{'-' if per_min is None else f'{per_min:.2f}':>12}  {note}")
    print(f"loading the data once instead of per trial: {out['load_once_speedup']}x")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
