"""What a tuning study optimises: objectives by name, and what makes a trial infeasible.

- ``return`` (maximise): return %;
- ``calmar`` / ``sharpe`` / ``sortino`` (maximise): the report's ratio (daily, annualised);
- ``profit_factor`` (maximise): gross won / gross lost (net of fees and funding);
- ``return_no_liquidation`` (maximise): return %, and a liquidated trial is infeasible;
- ``return_at_max_drawdown`` (maximise): return %, and a trial past ``--max-drawdown``
  (default 20 %) is infeasible;
- ``max_drawdown`` (minimise): max drawdown % (a second objective for NSGA-II).

A ratio a trial does not have (no trades, no drawdown) leaves the trial without a value: it is
recorded as failed with that reason (Optuna's samplers skip failed trials).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bot.settings import ConfigError

Direction = Literal["maximize", "minimize"]


@dataclass(frozen=True)
class Objective:
    name: str
    direction: Direction
    key: str
    label: str
    needs_no_liquidation: bool = False
    needs_max_drawdown: bool = False

    def value(self, report: Mapping[str, Any]) -> float | None:
        v = report.get(self.key)
        return None if v is None else float(v)

    def better(self, a: float, b: float) -> bool:
        return a > b if self.direction == "maximize" else a < b


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("return", "maximize", "return_pct", "return %"),
        Objective("calmar", "maximize", "calmar", "Calmar"),
        Objective("sharpe", "maximize", "sharpe", "Sharpe"),
        Objective("sortino", "maximize", "sortino", "Sortino"),
        Objective("profit_factor", "maximize", "profit_factor", "profit factor"),
        Objective(
            "return_no_liquidation", "maximize", "return_pct", "return % (no liquidation)",
            needs_no_liquidation=True,
        ),
        Objective(
            "return_at_max_drawdown", "maximize", "return_pct", "return % (drawdown capped)",
            needs_max_drawdown=True,
        ),
        Objective("max_drawdown", "minimize", "max_drawdown_pct", "max drawdown %"),
    )
}  # fmt: skip

DEFAULT_MAX_DRAWDOWN = 20.0


def objectives(names: Sequence[str]) -> list[Objective]:
    """The objectives named (one, or two for NSGA-II)."""
    if not names:
        names = ["return"]
    out = []
    for n in names:
        key = n.strip().lower().replace("-", "_")
        if key not in OBJECTIVES:
            raise ConfigError(f"unknown objective {n!r}: one of {', '.join(OBJECTIVES)}")
        out.append(OBJECTIVES[key])
    if len(out) > 2:
        raise ConfigError("at most two objectives (NSGA-II searches a two-objective front)")
    if len({o.name for o in out}) != len(out):
        raise ConfigError("the same objective twice")
    return out


def values(objs: Sequence[Objective], report: Mapping[str, Any]) -> list[float] | None:
    out = []
    for o in objs:
        v = o.value(report)
        if v is None:
            return None
        out.append(v)
    return out
