"""The figures traders read, computed from a replay's closed trades and daily equity.

Definitions (also in the README):

- **return %**: final equity / starting balance − 1.
- **profit factor**: the sum of winning trades' net PnL over the absolute sum of losing trades'
  (None without a losing trade). Net = price PnL − fees + funding.
- **expectancy**: mean net PnL per closed trade, in the settle currency.
- **average duration**: mean time from a trade's entry to its closing fill.
- **Sharpe / Sortino**: daily returns of the equity sampled at each UTC day boundary (the start
  balance first, the final equity last), mean over the sample standard deviation (Sortino: over
  the downside deviation, the root mean square of the negative returns), times √365 (crypto
  trades every day). None with fewer than two daily returns or no dispersion.
- **Calmar**: annualised return (compounded over the replayed days) over the maximum drawdown
  (as a fraction). None without a drawdown.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any

from paper.core import Trade

DAYS_PER_YEAR = 365.0


def daily_returns(equity: Sequence[float]) -> list[float]:
    """Simple returns between consecutive equity samples (a sample at or below 0 ends them)."""
    out: list[float] = []
    for a, b in itertools.pairwise(equity):
        if a <= 0:
            break
        out.append(b / a - 1.0)
    return out


def sharpe(returns: Sequence[float]) -> float | None:
    n = len(returns)
    if n < 2:
        return None
    mean = sum(returns) / n
    var = sum((r - mean) ** 2 for r in returns) / (n - 1)
    if var <= 0:
        return None
    return mean / math.sqrt(var) * math.sqrt(DAYS_PER_YEAR)


def sortino(returns: Sequence[float]) -> float | None:
    n = len(returns)
    if n < 2:
        return None
    mean = sum(returns) / n
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / n)
    if downside <= 0:
        return None
    return mean / downside * math.sqrt(DAYS_PER_YEAR)


def calmar(start: float, final: float, days: float, max_drawdown: float) -> float | None:
    """Annualised return / max drawdown (a fraction); None without a drawdown or a span."""
    if max_drawdown <= 0 or days <= 0 or start <= 0:
        return None
    if final <= 0:
        return -1.0 / max_drawdown
    annual: float = (final / start) ** (DAYS_PER_YEAR / days) - 1.0
    return annual / max_drawdown


def profit_factor(trades: Iterable[Trade]) -> float | None:
    won = lost = 0.0
    for t in trades:
        net = t.net
        if net > 0:
            won += net
        elif net < 0:
            lost -= net
    return won / lost if lost > 0 else None


def expectancy(trades: Sequence[Trade]) -> float | None:
    return sum(t.net for t in trades) / len(trades) if trades else None


def avg_duration_h(trades: Sequence[Trade]) -> float | None:
    if not trades:
        return None
    return sum(t.closed_at - t.opened_at for t in trades) / len(trades) / 3_600_000.0


def _group(trades: Iterable[Trade], key: str) -> dict[str, list[Trade]]:
    groups: dict[str, list[Trade]] = {}
    for t in trades:
        groups.setdefault(str(getattr(t, key)), []).append(t)
    return groups


def table(trades: Sequence[Trade], key: str) -> dict[str, dict[str, Any]]:
    """Per ``key`` (``symbol`` or ``reason``): trades, wins, win rate, net PnL, fees, funding,
    profit factor, expectancy and average duration."""
    out: dict[str, dict[str, Any]] = {}
    for name, group in sorted(_group(trades, key).items()):
        wins = sum(1 for t in group if t.net > 0)
        out[name] = {
            "trades": len(group),
            "wins": wins,
            "win_rate": round(wins / len(group), 4),
            "net_pnl": round(sum(t.net for t in group), 2),
            "fees": round(sum(t.fees for t in group), 2),
            "funding": round(sum(t.funding for t in group), 2),
            "profit_factor": _r(profit_factor(group), 3),
            "expectancy": _r(expectancy(group), 2),
            "avg_duration_h": _r(avg_duration_h(group), 2),
        }
    return out


def _r(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
