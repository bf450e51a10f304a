"""Turn a ``Decision`` into rows and plain data for people and JSON (``guardbot check-order``).

Pure formatting: no I/O, no printing. ``explain_rows`` gives one row per verdict (rule, outcome,
code, reason, figures as text); ``decision_to_dict`` gives a JSON-safe dict of the whole decision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from guards.types import Decision, Figure, OrderIntent, Verdict


@dataclass(frozen=True, slots=True)
class ExplainRow:
    """One verdict as text cells."""

    rule: str
    outcome: str
    code: str
    reason: str
    figures: str


def format_figure(value: Figure) -> str:
    """A figure as short text: floats to 6 significant digits, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.6g}"
    return str(value)


def format_figures(figures: Mapping[str, Figure]) -> str:
    """'key=value, ...' in the verdict's own key order."""
    return ", ".join(f"{key}={format_figure(value)}" for key, value in figures.items())


def explain_rows(decision: Decision) -> list[ExplainRow]:
    """One row per recorded verdict, in evaluation order."""
    return [
        ExplainRow(v.rule, v.outcome, v.code, v.reason, format_figures(v.figures))
        for v in decision.verdicts
    ]


def _json_figure(value: Figure) -> Figure:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no inf/nan
    return value


def verdict_to_dict(verdict: Verdict) -> dict[str, Any]:
    return {
        "rule": verdict.rule,
        "outcome": verdict.outcome,
        "code": verdict.code,
        "reason": verdict.reason,
        "amount": verdict.amount,
        "figures": {k: _json_figure(v) for k, v in verdict.figures.items()},
    }


def intent_to_dict(intent: OrderIntent) -> dict[str, Any]:
    return {
        "symbol": intent.symbol,
        "side": intent.side,
        "amount": intent.amount,
        "price": intent.price,
        "order_type": intent.order_type,
        "leverage": intent.leverage,
        "margin_mode": intent.margin_mode,
        "stop_price": intent.stop_price,
        "take_profit": intent.take_profit,
        "reduce_only": intent.reduce_only,
        "kind": intent.kind,
        "margin_amount": intent.margin_amount,
        "client_id": intent.client_id,
        "tag": intent.tag,
    }


def decision_to_dict(decision: Decision) -> dict[str, Any]:
    """The whole decision as JSON-safe data."""
    return {
        "outcome": decision.outcome,
        "allowed": decision.allowed,
        "code": decision.code,
        "reason": decision.reason,
        "amount": decision.amount,
        "stop_price": decision.stop_price,
        "intent": intent_to_dict(decision.intent),
        "verdicts": [verdict_to_dict(v) for v in decision.verdicts],
    }
