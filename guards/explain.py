"""Turn a ``Decision`` into rows and plain data for people and JSON (``guardbot check-order``).

Pure formatting: no I/O, no printing, no clock (times are the figures' own epoch seconds).

- ``format_figure(value, key)``: one number format everywhere — thousands separators, money
  and prices with two decimals (small prices to six significant digits), amounts without
  trailing zeros, never an exponent — and the unit the figure's name implies: ``USDT`` for
  money and prices, ``%``, ``x`` for leverage, ``s``/``min`` for durations, UTC date-times for
  ``until``/``now``/``since``, the base currency for amounts when given;
- ``explain_rows`` gives one row per verdict (rule, outcome, code, reason, figures as text);
- ``resize_steps`` credits each change of the order to the rule that made it (size, leverage,
  an attached stop), in evaluation order;
- ``reopens`` says when the refusing rule lets entries through again;
- ``decision_to_dict`` gives a JSON-safe dict of the whole decision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from guards.intents import SET_LEVERAGE, SET_STOP
from guards.types import Decision, Figure, OrderIntent, Verdict

__all__ = [
    "ExplainRow",
    "ResizeStep",
    "decision_to_dict",
    "explain_rows",
    "format_amount",
    "format_figure",
    "format_figures",
    "format_number",
    "format_time",
    "intent_to_dict",
    "reopens",
    "resize_steps",
    "verdict_to_dict",
]

_MONEY = frozenset(
    {
        "risk",
        "risk_budget",
        "risk_cap",
        "equity",
        "worst_equity",
        "day_start_equity",
        "daily_floor",
        "daily_budget_left",
        "equity_peak",
        "drawdown_floor",
        "drawdown_budget_left",
        "margin",
        "position_margin",
        "margin_cap",
        "total_margin",
        "total_margin_cap",
        "unrealized_pnl",
        "margin_amount",
        "min_notional",
        "notional",
        "liq_notional",
        "wallet_balance",
    }
)
_PRICES = frozenset(
    {
        "entry",
        "stop",
        "mark",
        "price",
        "liq_price",
        "stop_limit",
        "take_profit",
        "old_stop",
        SET_STOP,
        "ema",
        "high",
        "low",
    }
)
_AMOUNTS = frozenset(
    {"amount", "requested_amount", "max_amount", "min_amount", "position_amount", "order_amount"}
)
_LEVERAGE = frozenset({"leverage", "max_leverage", "requested_leverage", SET_LEVERAGE})
_TIMES = frozenset({"until", "now", "since"})


@dataclass(frozen=True, slots=True)
class ExplainRow:
    """One verdict as text cells."""

    rule: str
    outcome: str
    code: str
    reason: str
    figures: str


@dataclass(frozen=True, slots=True)
class ResizeStep:
    """What one rule changed in the order: ``changes`` as text, e.g. ``amount 0.5 → 0.048``."""

    rule: str
    code: str
    changes: tuple[str, ...]
    reason: str


def format_number(value: float, decimals: int = 2) -> str:
    """``value`` with thousands separators and ``decimals`` decimals; values below 1 keep six
    significant digits instead (0.000123456). Never an exponent."""
    if not math.isfinite(value):
        return str(value)
    size = abs(value)
    if 0.0 < size < 1.0:
        digits = min(12, 5 - math.floor(math.log10(size)))
        return _trim(f"{value:,.{max(digits, decimals)}f}", decimals)
    return f"{value:,.{decimals}f}"


def _trim(text: str, keep: int) -> str:
    """Drop trailing zeros after the decimal point, keeping at least ``keep`` decimals."""
    if "." not in text:
        return text
    head, tail = text.split(".")
    tail = tail.rstrip("0")
    tail = tail + "0" * max(0, keep - len(tail))
    return f"{head}.{tail}" if tail else head


def format_amount(value: float, base: str = "") -> str:
    """An amount in base units, up to 8 decimals without trailing zeros (``0.048 BTC``)."""
    text = _trim(f"{value:,.8f}", 0) if math.isfinite(value) else str(value)
    return f"{text} {base}" if base else text


def format_time(ts: float) -> str:
    """Epoch seconds as ``YYYY-MM-DD HH:MM:SS UTC``."""
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return format_number(ts)


def format_figure(value: Figure, key: str = "", base: str = "") -> str:
    """A figure as short text with the unit its name ``key`` implies (module docstring)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    number = float(value)
    if not math.isfinite(number):
        return str(value)
    if key in _TIMES:
        return format_time(number)
    if key.endswith("_pct"):
        return f"{number:,.2f} %"
    if key.endswith("_bps"):
        return f"{_trim(f'{number:,.2f}', 0)} bps"
    if key in _LEVERAGE:
        return f"{_trim(f'{number:,.2f}', 0)}x"
    if key in _AMOUNTS:
        return format_amount(number, base)
    if key in _MONEY or key in _PRICES:
        return f"{format_number(number)} USDT"
    if key.endswith("_s"):
        return f"{_trim(f'{number:,.1f}', 0)} s"
    if key.endswith("_min"):
        return f"{_trim(f'{number:,.1f}', 0)} min"
    if isinstance(value, int):
        return f"{value:,}"
    return format_number(number, 4) if abs(number) < 100 else format_number(number)


def format_figures(figures: Mapping[str, Figure], base: str = "") -> str:
    """'key=value, ...' in the verdict's own key order, each with its unit."""
    return ", ".join(f"{key}={format_figure(value, key, base)}" for key, value in figures.items())


def explain_rows(decision: Decision, base: str = "") -> list[ExplainRow]:
    """One row per recorded verdict, in evaluation order."""
    return [
        ExplainRow(v.rule, v.outcome, v.code, v.reason, format_figures(v.figures, base))
        for v in decision.verdicts
    ]


def resize_steps(decision: Decision, requested: OrderIntent, base: str = "") -> list[ResizeStep]:
    """Each rule's change to ``requested`` on the way to ``decision``, in evaluation order."""
    steps: list[ResizeStep] = []
    amount, leverage, stop = requested.amount, requested.leverage, requested.stop_price
    for v in decision.verdicts:
        if v.outcome != "resize":
            continue
        changes: list[str] = []
        if v.amount is not None and v.amount != amount:
            changes.append(
                f"amount {format_amount(amount, base)} → {format_amount(v.amount, base)}"
            )
            amount = v.amount
        lev = v.figures.get(SET_LEVERAGE)
        if isinstance(lev, int | float) and not isinstance(lev, bool) and lev != leverage:
            changes.append(
                f"leverage {format_figure(leverage, 'leverage')} → {format_figure(lev, 'leverage')}"
            )
            leverage = float(lev)
        new_stop = v.figures.get(SET_STOP)
        if isinstance(new_stop, int | float) and not isinstance(new_stop, bool) and stop is None:
            changes.append(f"stop {format_figure(new_stop, 'stop')} attached")
            stop = float(new_stop)
        if changes:
            steps.append(ResizeStep(v.rule, v.code, tuple(changes), v.reason))
    return steps


def reopens(decision: Decision) -> str | None:
    """When the rule that refused ``decision`` lets entries through again (None: not a matter
    of time, or the decision was allowed)."""
    if decision.allowed:
        return None
    first = next(
        (v for v in decision.verdicts if v.outcome == "reject" and v.code == decision.code),
        None,
    )
    if first is None:
        return None
    figures = first.figures
    until = figures.get("until")
    if first.code == "session_closed":
        return f"at {figures.get('resume_at')} ({first.reason.rsplit(' ', 1)[-1]} time)"
    if isinstance(until, int | float) and not isinstance(until, bool):
        return f"at {format_time(float(until))}"
    if first.code == "halted" or first.code == "drawdown_limit":
        return "when resumed by hand (guardbot resume)"
    if first.code == "drawdown_budget":
        return "when the worst case at the stops rises above the drawdown floor again"
    if first.code == "stopouts_budget":
        return "when an open position closes without a stop-out, or at the daily reset"
    return None


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
