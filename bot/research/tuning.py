"""Rule tuning from config: ``guardbot replay --set KEY=V1,V2 ...`` runs the grid of combinations.

Each ``--set`` names any config key and one or more comma-separated values (a value starting with
``[`` or ``{`` is one TOML value, commas and all). The cartesian product of the values is replayed
on the same data, in parallel processes where cores allow, and summarised in one table: per
combination the liquidations, max drawdown, final equity, trades and interventions per rule.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.settings import ConfigError, load_settings, set_dotted


@dataclass(frozen=True)
class GridAxis:
    key: str
    values: tuple[Any, ...]


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


def _run_one(args: tuple[Path | None, dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    """Worker: one combination's replay summary (runs in a child process)."""
    from bot.research.replay import run_replay

    config, overrides, combo = args
    settings = load_settings(config, overrides)
    report = run_replay(settings, heartbeat=False)
    d = report.to_dict()
    return {
        "set": combo,
        "liquidations": d["liquidations"],
        "max_drawdown_pct": d["max_drawdown_pct"],
        "final_equity": d["final_equity"],
        "trades": d["trades"],
        "win_rate": d["win_rate"],
        "fees": d["fees"],
        "guard_interventions": d["guard_interventions"],
    }


def run_grid(
    config: Path | None,
    combos: Sequence[dict[str, Any]],
    base: Mapping[str, Any],
    workers: int | None = None,
) -> list[dict[str, Any]]:
    """Replay every combination (validated first, so a bad value fails before any work)."""
    jobs = []
    for combo in combos:
        overrides = to_overrides(combo, base)
        load_settings(config, overrides)  # raises ConfigError naming the key and value
        jobs.append((config, overrides, combo))
    n = workers or min(len(jobs), os.cpu_count() or 1)
    if n <= 1 or len(jobs) == 1:
        return [_run_one(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=n) as pool:
        return list(pool.map(_run_one, jobs))


def render_table(rows: Sequence[dict[str, Any]]) -> str:
    """One comparison table: combination, outcomes, interventions per rule."""
    import io

    from rich.console import Console
    from rich.table import Table

    rules = sorted({r for row in rows for r in row["guard_interventions"]})
    keys = list(rows[0]["set"]) if rows else []
    table = Table(*keys, "liq", "max dd %", "final equity", "trades", *rules, show_lines=False)
    for row in rows:
        table.add_row(
            *(str(row["set"][k]) for k in keys),
            str(row["liquidations"]),
            f"{row['max_drawdown_pct']:.2f}",
            f"{row['final_equity']:,.2f}",
            str(row["trades"]),
            *(str(row["guard_interventions"].get(r, 0)) for r in rules),
        )
    buf = io.StringIO()
    Console(file=buf, width=200, color_system=None).print(table)
    return buf.getvalue().rstrip()
