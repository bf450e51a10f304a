"""Rule tuning from config: ``guardbot replay --set KEY=V1,V2 ...`` runs the grid of combinations.

Each ``--set`` names any config key and one or more comma-separated values (a value starting with
``[`` or ``{`` is one TOML value, commas and all). Every combination of the values is validated
first: an invalid one (a value out of bounds, ``close_at_pct`` not below ``reduce_at_pct``, ...)
is skipped and listed with its reason, the rest are replayed on the same data — loaded once per
worker process, never per combination — in parallel processes where cores allow, each result
written as it finishes (``--export DIR``: ``grid.jsonl``, then ``grid.csv``). The table ranks the
rows by the chosen objective (``--objective``, default return) and flags the axes that never
changed a result (no combination of the other axes gave a different outcome for any of its
values).
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.research.objectives import Objective
from bot.research.space import config_reason, short
from bot.research.trials import LocalBackend, Task, data_key, feeds_for
from bot.settings import ConfigError, load_settings, set_dotted


@dataclass(frozen=True)
class GridAxis:
    key: str
    values: tuple[Any, ...]


@dataclass
class GridResult:
    """The grid's rows (ranked), the combinations skipped and why, and the idle axes."""

    rows: list[dict[str, Any]]
    skipped: list[dict[str, Any]] = field(default_factory=list)
    no_effect: list[str] = field(default_factory=list)
    objective: str = "return"

    def to_json(self) -> dict[str, Any]:
        return {
            "objective": self.objective,
            "rows": self.rows,
            "skipped": self.skipped,
            "no_effect": self.no_effect,
        }


def parse_axes(pairs: Sequence[str], parse_value: Any) -> list[GridAxis]:
    """``KEY=V1,V2`` pairs → axes (a single value is an axis of one)."""
    axes: list[GridAxis] = []
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key:
            raise ConfigError(f"--set needs KEY=VALUE, got {pair!r}")
        if raw.startswith(("[", "{", '"', "'")):
            values: tuple[Any, ...] = (parse_value(raw),)
        else:
            values = tuple(parse_value(v.strip()) for v in raw.split(",") if v.strip())
        if not values:
            raise ConfigError(f"--set {key} has no value")
        if any(a.key == key for a in axes):
            raise ConfigError(f"--set {key} given twice")
        axes.append(GridAxis(key, values))
    return axes


def combinations(axes: Sequence[GridAxis]) -> list[dict[str, Any]]:
    """Every combination as ``{dotted key: value}`` (a single one when no axis has two values)."""
    keys = [a.key for a in axes]
    return [
        dict(zip(keys, combo, strict=True))
        for combo in itertools.product(*(a.values for a in axes))
    ]


def to_overrides(flat: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in (base or {}).items():
        set_dotted(tree, key, value)
    for key, value in flat.items():
        set_dotted(tree, key, value)
    return tree


def _row(combo: dict[str, Any], d: Mapping[str, Any], objective: Objective) -> dict[str, Any]:
    return {
        "set": combo,
        "objective": objective.value(d),
        "return_pct": d["return_pct"],
        "liquidations": d["liquidations"],
        "max_drawdown_pct": d["max_drawdown_pct"],
        "final_equity": d["final_equity"],
        "trades": d["trades"],
        "win_rate": d["win_rate"],
        "profit_factor": d["profit_factor"],
        "fees": d["fees"],
        "guard_interventions": d["guard_interventions"],
    }


def _signature(row: Mapping[str, Any]) -> str:
    keys = ("final_equity", "trades", "max_drawdown_pct", "liquidations", "guard_interventions")
    return json.dumps([row[k] for k in keys], sort_keys=True)


def idle_axes(axes: Sequence[GridAxis], rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Axes with several values whose value never changed a result, the others held fixed."""
    out = []
    for axis in axes:
        if len(axis.values) < 2:
            continue
        groups: dict[str, set[str]] = {}
        for row in rows:
            others = {k: v for k, v in row["set"].items() if k != axis.key}
            groups.setdefault(json.dumps(others, sort_keys=True, default=str), set()).add(
                _signature(row)
            )
        compared = [g for g in groups.values()]
        if compared and all(len(g) == 1 for g in compared) and _varied(axis, rows):
            out.append(axis.key)
    return out


def _varied(axis: GridAxis, rows: Sequence[Mapping[str, Any]]) -> bool:
    """The axis took at least two values among the rows that ran."""
    return len({json.dumps(r["set"][axis.key], default=str) for r in rows}) >= 2


def run_grid(
    config: Path | None,
    combos: Sequence[dict[str, Any]],
    base: Mapping[str, Any],
    workers: int | None = None,
    *,
    axes: Sequence[GridAxis] = (),
    objective: Objective | None = None,
    export: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> GridResult:
    """Replay every valid combination; invalid ones are skipped with their reason."""
    from bot.research.objectives import OBJECTIVES

    obj = objective or OBJECTIVES["return"]
    tasks: list[Task] = []
    skipped: list[dict[str, Any]] = []
    data: dict[str, Any] = {}
    for i, combo in enumerate(combos):
        try:
            s = load_settings(config, to_overrides(combo, base))
        except ConfigError as exc:
            skipped.append({"set": combo, "reason": config_reason(exc)})
            continue
        key = data_key(s)
        if key not in data:
            data[key] = feeds_for(s)
        tasks.append(Task(i, s, key))
    sink = None
    if export is not None:
        export.mkdir(parents=True, exist_ok=True)
        sink = (export / "grid.jsonl").open("w", encoding="utf-8")
    rows: list[dict[str, Any]] = []
    backend = LocalBackend(min(workers or len(tasks) or 1, max(1, len(tasks))))
    try:
        for n, out in enumerate(backend.run(tasks, data), 1):
            if out.state != "complete":
                skipped.append({"set": combos[out.number], "reason": out.reason})
                continue
            row = _row(combos[out.number], out.report, obj)
            rows.append(row)
            if sink is not None:
                sink.write(json.dumps(row, default=str) + "\n")
                sink.flush()
            if progress is not None:
                progress(n, len(tasks))
    finally:
        backend.close()
        if sink is not None:
            sink.close()
    sign = -1.0 if obj.direction == "maximize" else 1.0
    rows.sort(key=lambda r: (r["objective"] is None, sign * (r["objective"] or 0.0)))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    result = GridResult(rows, skipped, idle_axes(axes, rows), obj.name)
    if export is not None:
        write_csv(result, export / "grid.csv")
    return result


def _varying(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The keys whose value differs between rows (the fixed ones are not columns)."""
    if not rows:
        return []
    keys = list(rows[0]["set"])
    out = [k for k in keys if len({json.dumps(r["set"][k], default=str) for r in rows}) > 1]
    return out or keys


def write_csv(result: GridResult, path: Path) -> None:
    keys = list(result.rows[0]["set"]) if result.rows else []
    rules = sorted({r for row in result.rows for r in row["guard_interventions"]})
    cols = ["rank", *keys, "objective", "return_pct", "final_equity", "max_drawdown_pct",
            "liquidations", "trades", "win_rate", "profit_factor", "fees"]  # fmt: skip
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow([*cols, *(f"interventions.{r}" for r in rules)])
        for row in result.rows:
            w.writerow(
                [row["rank"], *(row["set"][k] for k in keys)]
                + [row[c] for c in cols[1 + len(keys) :]]
                + [row["guard_interventions"].get(r, 0) for r in rules]
            )


def render_table(result: GridResult) -> str:
    """One comparison table, ranked, best marked, then what was skipped and what never mattered."""
    import io

    from rich.console import Console
    from rich.table import Table

    rows = result.rows
    rules = sorted({r for row in rows for r in row["guard_interventions"]})
    keys = _varying(rows)
    cols = [short(k) for k in keys]
    table = Table("", "rank", *cols, result.objective, "liq", "max dd %", "final equity",
                  "trades", *rules, show_lines=False)  # fmt: skip
    for row in rows:
        obj = row["objective"]
        table.add_row(
            "★" if row["rank"] == 1 else "",
            str(row["rank"]),
            *(str(row["set"][k]) for k in keys),
            "n/a" if obj is None else f"{obj:,.4g}",
            str(row["liquidations"]),
            f"{row['max_drawdown_pct']:.2f}",
            f"{row['final_equity']:,.2f}",
            str(row["trades"]),
            *(str(row["guard_interventions"].get(r, 0)) for r in rules),
        )
    buf = io.StringIO()
    con = Console(file=buf, width=200, color_system=None)
    con.print(table)
    for key in result.no_effect:
        con.print(f"note: {key} never changed a result on this data (every value gave the same)")
    if result.skipped:
        con.print(f"skipped {len(result.skipped)} invalid combination(s):")
        for s in result.skipped:
            con.print(f"  {s['set']}: {s['reason']}")
    return buf.getvalue().rstrip()
