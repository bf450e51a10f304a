"""The replay report: what a run did, computed from the paper ledger and the guard decisions."""

from __future__ import annotations

import time
from array import array
from dataclasses import dataclass, field
from typing import Any

from guards import Decision
from paper.core import Trade


class EquityCurve:
    """Equity at every candle close plus timestamped markers (guard actions, liquidations)."""

    __slots__ = ("equity", "markers", "ts")

    def __init__(self) -> None:
        self.ts: array[float] = array("d")
        self.equity: array[float] = array("d")
        self.markers: list[tuple[float, str, str]] = []

    def append(self, ts: float, equity: float) -> None:
        self.ts.append(ts)
        self.equity.append(equity)

    def mark(self, ts: float, kind: str, rule: str) -> None:
        self.markers.append((ts, kind, rule))


@dataclass
class Report:
    """What a replay did, computed from the paper ledger and the recorded guard decisions."""

    symbol: str
    timeframe: str
    start: str
    end: str
    candles: int
    trades: int
    wins: int
    fees: float
    funding: float
    realized_pnl: float
    starting_balance: float
    final_equity: float
    #: Wallet balance at the end (realised PnL, fees and funding; no unrealised PnL).
    final_wallet: float
    max_drawdown_pct: float
    liquidations: int
    liquidation_loss: float
    guard_interventions: dict[str, int]
    guards_enabled: list[str]
    orders_checked: int
    orders_refused: int
    orders_resized: int
    exchange_rejects: int
    elapsed_s: float
    exit_reasons: dict[str, int] = field(default_factory=dict)
    #: The ledger's closing fills (not in ``to_dict``): for tests, plots and trade lists.
    closed_trades: tuple[Trade, ...] = ()
    #: Equity per candle and guard/liquidation markers, when the replay recorded them.
    curve: EquityCurve | None = None
    #: Every guard decision, in order, when the replay recorded them (not in ``to_dict``).
    decisions: tuple[Decision, ...] = ()

    @property
    def win_rate(self) -> float:
        return self.wins / self.trades if self.trades else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "start": self.start,
            "end": self.end,
            "candles": self.candles,
            "trades": self.trades,
            "win_rate": round(self.win_rate, 4),
            "fees": round(self.fees, 2),
            "funding": round(self.funding, 2),
            "realized_pnl": round(self.realized_pnl, 2),
            "starting_balance": round(self.starting_balance, 2),
            "final_equity": round(self.final_equity, 2),
            "final_wallet": round(self.final_wallet, 2),
            "max_drawdown_pct": round(self.max_drawdown_pct, 2),
            "liquidations": self.liquidations,
            "liquidation_loss": round(self.liquidation_loss, 2),
            "guard_interventions": dict(sorted(self.guard_interventions.items())),
            "guards_enabled": self.guards_enabled,
            "orders_checked": self.orders_checked,
            "orders_refused": self.orders_refused,
            "orders_resized": self.orders_resized,
            "exchange_rejects": self.exchange_rejects,
            "exit_reasons": dict(sorted(self.exit_reasons.items())),
            "elapsed_s": round(self.elapsed_s, 3),
        }

    def render_text(self) -> str:
        d = self.to_dict()
        ret = (self.final_equity / self.starting_balance - 1) * 100
        rows = [
            f"guardbot replay report — {self.symbol} {self.timeframe}, {self.start} → {self.end}",
            "",
            f"  candles            {self.candles:>14,}",
            f"  trades             {self.trades:>14,}"
            f"   (closing fills; win rate {self.win_rate:.1%})",
            f"  fees               {d['fees']:>14,.2f}",
            f"  funding            {d['funding']:>14,.2f}   (+ received / − paid)",
            f"  realised PnL       {d['realized_pnl']:>14,.2f}   (before fees and funding)",
            f"  final equity       {d['final_equity']:>14,.2f}   from {self.starting_balance:,.2f}"
            f" ({ret:+.2f} %)",
            f"  max drawdown       {d['max_drawdown_pct']:>13.2f} %",
            f"  liquidations       {self.liquidations:>14,}"
            f"   (margin lost {d['liquidation_loss']:,.2f})",
            f"  orders checked     {self.orders_checked:>14,}   refused {self.orders_refused:,},"
            f" resized {self.orders_resized:,}, exchange rejects {self.exchange_rejects:,}",
            "  exits              "
            + (", ".join(f"{k} {v}" for k, v in d["exit_reasons"].items()) or "none"),
            "  guards enabled     " + (", ".join(self.guards_enabled) or "none (--no-guards)"),
            "  guard interventions"
            + (
                "\n"
                + "\n".join(f"    {k:<18}{v:>10,}" for k, v in d["guard_interventions"].items())
                if self.guard_interventions
                else " none"
            ),
            f"  replayed in {self.elapsed_s:.2f} s",
        ]
        return "\n".join(rows)


def utc(ts_ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts_ms / 1000))


def render_compare(on: Report, off: Report) -> str:
    """Guards on and off side by side (``guardbot replay --compare``)."""
    a, b = on.to_dict(), off.to_dict()
    rows = [
        ("candles", "{:,}"),
        ("trades", "{:,}"),
        ("win_rate", "{:.1%}"),
        ("fees", "{:,.2f}"),
        ("funding", "{:,.2f}"),
        ("realized_pnl", "{:,.2f}"),
        ("final_equity", "{:,.2f}"),
        ("max_drawdown_pct", "{:.2f}"),
        ("liquidations", "{:,}"),
        ("liquidation_loss", "{:,.2f}"),
        ("orders_refused", "{:,}"),
        ("orders_resized", "{:,}"),
    ]
    out = [
        f"guardbot replay --compare — {on.symbol} {on.timeframe}, {on.start} → {on.end}",
        "",
        f"  {'':<20}{'guards on':>16}{'guards off':>16}",
    ]
    for key, fmt in rows:
        out.append(f"  {key:<20}{fmt.format(a[key]):>16}{fmt.format(b[key]):>16}")
    out.append("  guard interventions")
    for rule, n in sorted(on.guard_interventions.items()):
        out.append(f"    {rule:<18}{n:>16,}{'-':>16}")
    return "\n".join(out)
