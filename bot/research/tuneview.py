"""What ``guardbot tune`` prints: the ranked trials with the best marked, the out-of-sample
figures next to the in-sample ones, the parameters' importances, the skipped combinations."""

from __future__ import annotations

import io
from typing import Any

from bot.research.space import short
from bot.research.tune import StudyResult, StudySpec, TrialRow


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def render(result: StudyResult, spec: StudySpec) -> str:
    from rich.console import Console
    from rich.table import Table

    objs = spec.objectives
    keys = [p.key for p in spec.space]
    buf = io.StringIO()
    con = Console(file=buf, width=220, color_system=None)
    limits = spec.limits
    cons = []
    if limits.no_liquidation:
        cons.append("no liquidation")
    if limits.max_drawdown_pct is not None:
        cons.append(f"max drawdown ≤ {limits.max_drawdown_pct:g} %")
    con.print(
        f"guardbot tune — study {spec.name!r} ({spec.storage}): {result.n_trials} trials in all,"
        f" objective {', '.join(f'{o.name} ({o.direction})' for o in objs)}"
        + (f", constraints: {', '.join(cons)}" if cons else "")
        + (f"; in-sample {spec.train}, out-of-sample {spec.test}" if spec.test else "")
    )
    cols = [short(k) for k in keys]
    table = Table("", "#", *cols, *(o.label for o in objs), "return %", "max dd %", "liq",
                  "trades", "feasible", show_lines=False)  # fmt: skip
    if spec.test:
        table.add_column("test " + objs[0].label)
        table.add_column("test return %")
        table.add_column("test max dd %")
        table.add_column("test liq")
    for r in result.rows[: spec.top]:
        f = r.figures
        cells = [
            "★" if r.best else "",
            str(r.number),
            *(_fmt(r.params.get(k)) for k in keys),
            *(_fmt(v) for v in (r.values or [])),
            _fmt(f.get("return_pct")),
            _fmt(f.get("max_drawdown_pct")),
            _fmt(f.get("liquidations")),
            _fmt(f.get("trades")),
            "yes" if r.feasible else "no",
        ]
        if spec.test:
            t = r.test or {}
            cells += [
                _fmt(r.test_values[0] if r.test_values else None),
                _fmt(t.get("return_pct")),
                _fmt(t.get("max_drawdown_pct")),
                _fmt(t.get("liquidations")),
            ]
        table.add_row(*cells)
    con.print(table)
    if not result.rows:
        con.print("no trial finished with a value")
    if result.best:
        b = result.best[0]
        con.print(
            "best: trial "
            + ", ".join(str(r.number) for r in result.best)
            + ("  (the Pareto front)" if len(objs) > 1 else "")
            + " — "
            + ", ".join(f"{k}={b.params.get(k)}" for k in keys)
        )
    else:
        con.print("best: none (no trial met the constraints)")
    if result.importances:
        con.print(
            "importance ("
            + result.importance_note
            + "): "
            + ", ".join(f"{k} {v:.2f}" for k, v in result.importances.items())
        )
    else:
        con.print(f"importance: {result.importance_note}")
    if result.no_effect:
        con.print("no effect seen: " + ", ".join(result.no_effect))
    if result.skipped:
        con.print(f"skipped {len(result.skipped)} invalid combination(s):")
        for r in result.skipped[:10]:
            con.print(f"  #{r.number} {r.params}: {r.reason.removeprefix('invalid: ')}")
    c = result.counts
    con.print(
        f"trials: {c.get('complete', 0)} complete, {c.get('pruned', 0)} pruned (median rule), "
        f"{c.get('fail', 0)} failed or invalid"
    )
    stopped = sum(1 for r in result.rows if r.reason.startswith("stopped early"))
    if stopped:
        con.print(f"{stopped} trial(s) stopped early once a constraint was broken (infeasible)")
    return buf.getvalue().rstrip()


def to_json(result: StudyResult, spec: StudySpec) -> dict[str, Any]:
    def row(r: TrialRow) -> dict[str, Any]:
        return {
            "number": r.number,
            "params": r.params,
            "values": r.values,
            "feasible": r.feasible,
            "best": r.best,
            "figures": r.figures,
            "reason": r.reason,
            "test": r.test,
            "test_values": r.test_values,
        }

    return {
        "study": spec.name,
        "storage": spec.storage,
        "objectives": [o.name for o in spec.objectives],
        "n_trials": result.n_trials,
        "counts": result.counts,
        "best": [row(r) for r in result.best],
        "trials": [row(r) for r in result.rows],
        "skipped": [
            {"number": r.number, "params": r.params, "reason": r.reason} for r in result.skipped
        ],
        "importances": result.importances,
        "no_effect": result.no_effect,
        "elapsed_s": round(result.elapsed_s, 3),
    }
