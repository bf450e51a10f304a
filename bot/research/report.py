"""The replay report: what a run did, computed from the paper ledger and the guard decisions.

``Report`` holds the figures (``to_dict`` for ``--json`` and ``report.json``), ``render_text`` is
the report a trader reads (units, return, risk ratios, per-symbol and per-exit-reason tables,
what each guard rule did), ``render_compare`` puts guards on and off side by side with the
difference: what the guards saved or cost. The trade figures are defined in
``bot.research.metrics``.
"""

from __future__ import annotations

import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bot.research import metrics
from guards import Decision
from paper.core import Trade
from paper.feed import Candles


class EquityCurve:
    """Per candle close: the time, the equity, the lowest equity inside the candle, the symbol's
    close; plus timestamped markers ``(ts, kind, rule)`` (guard actions, refusals, liquidations).
    """

    __slots__ = ("equity", "low", "markers", "prices", "symbols", "ts")

    def __init__(self) -> None:
        self.ts: array[float] = array("d")
        self.equity: array[float] = array("d")
        self.low: array[float] = array("d")
        #: The symbol whose candle closed at each row.
        self.symbols: list[str] = []
        #: Per symbol: candle close times and close prices.
        self.prices: dict[str, tuple[array[float], array[float]]] = {}
        self.markers: list[tuple[float, str, str]] = []

    def append(
        self, ts: float, equity: float, low: float | None = None, symbol: str = "", close: float = 0
    ) -> None:
        self.ts.append(ts)
        self.equity.append(equity)
        self.low.append(equity if low is None else min(low, equity))
        self.symbols.append(symbol)
        if symbol:
            series = self.prices.get(symbol)
            if series is None:
                series = self.prices[symbol] = (array("d"), array("d"))
            series[0].append(ts)
            series[1].append(close)

    def mark(self, ts: float, kind: str, rule: str) -> None:
        self.markers.append((ts, kind, rule))


#: What each count of the guards table means (printed once under it).
GUARD_COLUMNS = (
    ("refused", "entries refused, each counted once under the rule that refused it first"),
    ("resized", "entries the rule shrank before they went out"),
    ("closed", "positions its sweep closed"),
    ("reduced", "positions its sweep reduced"),
    ("stops", "protective stops its sweep (re)placed"),
    ("halts", "halts it started (entries refused until the reset or a resume)"),
)
_ACTION_COLUMN = {
    "close": "closed",
    "reduce": "reduced",
    "place_stop": "stops",
    "halt": "halts",
    "cancel_entries": "cancelled",
}


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
    #: Per rule: its refusals (as the deciding rule), resizes and sweep actions.
    guard_interventions: dict[str, int]
    guards_enabled: list[str]
    orders_checked: int
    orders_refused: int
    orders_resized: int
    exchange_rejects: int
    elapsed_s: float
    #: Of ``elapsed_s``: reading and checking the data files.
    load_s: float = 0.0
    exit_reasons: dict[str, int] = field(default_factory=dict)
    #: Settle currency every amount is in.
    currency: str = "USDT"
    #: Replayed span in days (first open to last close).
    days: float = 0.0
    #: Per rule: entries it refused first / entries it resized / sweep actions by kind.
    refusals: dict[str, int] = field(default_factory=dict)
    resizes: dict[str, int] = field(default_factory=dict)
    actions: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Equity at each UTC day boundary (the start balance first, the final equity last).
    daily_equity: tuple[float, ...] = ()
    #: Data sources, market-rule sources, window, gaps and coverage warnings.
    notes: tuple[str, ...] = ()
    #: The ledger's closing fills (not in ``to_dict``): for tests, plots and trade lists.
    closed_trades: tuple[Trade, ...] = ()
    #: Equity per candle and guard/liquidation markers, when the replay recorded them.
    curve: EquityCurve | None = None
    #: Every guard decision, in order, when the replay recorded them (not in ``to_dict``).
    decisions: tuple[Decision, ...] = ()
    #: The replay itself (its paper core and decision journal) when it recorded (exports).
    run: Any = None
    #: Why the replay ended before the data did ("": it did not).
    stopped: str = ""

    @property
    def win_rate(self) -> float:
        return self.wins / self.trades if self.trades else 0.0

    @property
    def return_pct(self) -> float:
        if self.starting_balance <= 0:
            return 0.0
        return (self.final_equity / self.starting_balance - 1.0) * 100.0

    def ratios(self) -> dict[str, float | None]:
        returns = metrics.daily_returns(self.daily_equity)
        trades = self.closed_trades
        return {
            "profit_factor": metrics.profit_factor(trades),
            "expectancy": metrics.expectancy(trades),
            "avg_duration_h": metrics.avg_duration_h(trades),
            "sharpe": metrics.sharpe(returns),
            "sortino": metrics.sortino(returns),
            "calmar": metrics.calmar(
                self.starting_balance, self.final_equity, self.days, self.max_drawdown_pct / 100
            ),
        }

    def to_dict(self) -> dict[str, Any]:
        r = self.ratios()
        return {
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "start": self.start,
            "end": self.end,
            "days": round(self.days, 3),
            "currency": self.currency,
            "candles": self.candles,
            "trades": self.trades,
            "win_rate": round(self.win_rate, 4),
            "fees": round(self.fees, 2),
            "funding": round(self.funding, 2),
            "realized_pnl": round(self.realized_pnl, 2),
            "starting_balance": round(self.starting_balance, 2),
            "final_equity": round(self.final_equity, 2),
            "final_wallet": round(self.final_wallet, 2),
            "return_pct": round(self.return_pct, 2),
            "max_drawdown_pct": round(self.max_drawdown_pct, 2),
            "profit_factor": _r(r["profit_factor"], 3),
            "expectancy": _r(r["expectancy"], 2),
            "avg_duration_h": _r(r["avg_duration_h"], 2),
            "sharpe": _r(r["sharpe"], 3),
            "sortino": _r(r["sortino"], 3),
            "calmar": _r(r["calmar"], 3),
            "liquidations": self.liquidations,
            "liquidation_loss": round(self.liquidation_loss, 2),
            "guard_interventions": dict(sorted(self.guard_interventions.items())),
            "guards_enabled": self.guards_enabled,
            "orders_checked": self.orders_checked,
            "orders_refused": self.orders_refused,
            "orders_resized": self.orders_resized,
            "exchange_rejects": self.exchange_rejects,
            "refusals_by_rule": dict(sorted(self.refusals.items())),
            "resizes_by_rule": dict(sorted(self.resizes.items())),
            "actions_by_rule": {
                k: dict(sorted(v.items())) for k, v in sorted(self.actions.items())
            },
            "exit_reasons": dict(sorted(self.exit_reasons.items())),
            "per_symbol": metrics.table(self.closed_trades, "symbol"),
            "per_exit_reason": metrics.table(self.closed_trades, "reason"),
            "notes": list(self.notes),
            "stopped": self.stopped,
            "load_s": round(self.load_s, 3),
            "elapsed_s": round(self.elapsed_s, 3),
        }

    def render_text(self) -> str:
        return "\n".join(_render(self))


def build_report(run: Any, series: list[Candles], enabled: list[str], elapsed: float) -> Report:
    """The report of a finished (or stopped) replay ``run`` (a ``bot.research.replay.Replay``)."""
    core = run.core
    trades = core.trades
    reasons: Counter[str] = Counter(t.reason for t in trades)
    start_ms = min(c.ts[0] for c in series)
    end_ms = max(c.ts[-1] + c.timeframe_ms for c in series)
    final = core.equity()
    return Report(
        symbol=",".join(run.symbols),
        timeframe=",".join(sorted({c.timeframe for c in series})),
        start=utc(start_ms),
        end=utc(end_ms),
        candles=sum(len(c) for c in series),
        trades=len(trades),
        wins=sum(1 for t in trades if t.net > 0),
        fees=core.total_fees,
        funding=core.total_funding,
        realized_pnl=core.realized_pnl,
        starting_balance=run.settings.paper.starting_balance,
        final_equity=final,
        final_wallet=core.wallet_balance,
        max_drawdown_pct=run.max_dd * 100.0,
        liquidations=len(core.liquidations),
        liquidation_loss=sum(e.margin_lost for e in core.liquidations),
        guard_interventions=dict(run.interventions),
        guards_enabled=enabled,
        orders_checked=run.checked,
        orders_refused=run.refused,
        orders_resized=run.resized,
        exchange_rejects=run.router.rejects,
        elapsed_s=elapsed,
        exit_reasons=dict(reasons),
        currency=run.settings.paper.currency,
        days=(end_ms - start_ms) / 86_400_000.0,
        refusals=dict(run.refusals),
        resizes=dict(run.resizes),
        actions={k: dict(v) for k, v in run.actions.items()},
        daily_equity=(*run.daily, final),
        closed_trades=tuple(trades),
    )


def _r(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _f(value: float | None, fmt: str = "{:,.2f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def utc(ts_ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts_ms / 1000))


def _render(rep: Report) -> list[str]:
    cur = rep.currency
    r = rep.ratios()
    out = [
        f"guardbot replay — {rep.symbol} {rep.timeframe}, {rep.start} → {rep.end} UTC "
        f"({rep.days:.1f} days); amounts in {cur}",
        "",
        f"  return             {rep.return_pct:>+13.2f} %   final equity {rep.final_equity:,.2f}"
        f" {cur} from {rep.starting_balance:,.2f}",
        f"  max drawdown       {rep.max_drawdown_pct:>13.2f} %   (fall from the peak equity at a"
        " candle close)",
        f"  liquidations       {rep.liquidations:>13,}     margin lost {rep.liquidation_loss:,.2f}"
        f" {cur}",
        f"  Sharpe / Sortino / Calmar   {_f(r['sharpe'])} / {_f(r['sortino'])} /"
        f" {_f(r['calmar'])}   (daily, annualised)",
        f"  trades             {rep.trades:>13,}     closing fills; win rate {rep.win_rate:.1%}",
        f"  profit factor      {_f(r['profit_factor'], '{:>13.2f}'):>13}     expectancy "
        f"{_f(r['expectancy'])} {cur} a trade; average duration "
        f"{_f(r['avg_duration_h'], '{:.1f}')} h",
        f"  fees               {rep.fees:>13,.2f} {cur}",
        f"  funding            {rep.funding:>+13,.2f} {cur}   (+ received / − paid)",
        f"  price PnL          {rep.realized_pnl:>+13,.2f} {cur}   (realised, before fees and"
        " funding)",
    ]
    out += ["", *_trade_table("symbol", rep, "symbol"), ""]
    out += _trade_table("exit reason", rep, "reason")
    out += ["", *_guard_table(rep)]
    if rep.notes:
        out += ["", "  data"] + [f"    {n}" for n in rep.notes]
    out.append(f"  replayed in {rep.elapsed_s:.2f} s (data loaded in {rep.load_s:.2f} s)")
    return out


def _trade_table(title: str, rep: Report, key: str) -> list[str]:
    rows = metrics.table(rep.closed_trades, key)
    head = (
        f"  {'by ' + title:<20}{'trades':>8}{'win %':>8}{'net PnL':>13}{'fees':>11}"
        f"{'funding':>10}{'PF':>7}{'avg h':>8}"
    )
    lines = [head]
    if not rows:
        return [*lines, "    (no closed trades)"]
    for name, row in rows.items():
        lines.append(
            f"    {name:<18}{row['trades']:>8,}{row['win_rate'] * 100:>8.1f}"
            f"{row['net_pnl']:>13,.2f}{row['fees']:>11,.2f}{row['funding']:>10,.2f}"
            f"{_f(row['profit_factor']):>7}{_f(row['avg_duration_h'], '{:.1f}'):>8}"
        )
    return lines


def _guard_table(rep: Report) -> list[str]:
    allowed = rep.orders_checked - rep.orders_refused - rep.orders_resized
    lines = [
        f"  guards             {rep.orders_checked:,} entries checked: {allowed:,} allowed as"
        f" asked, {rep.orders_resized:,} resized, {rep.orders_refused:,} refused"
        f" (exchange rejects {rep.exchange_rejects:,})",
    ]
    if not rep.guards_enabled:
        return [*lines, "    every rule off (--no-guards)"]
    cols = [c for c, _ in GUARD_COLUMNS]
    lines.append(f"    {'rule':<18}" + "".join(f"{c:>9}" for c in cols))
    rules = sorted(set(rep.refusals) | set(rep.resizes) | set(rep.actions))
    for rule in rules:
        acts = {_ACTION_COLUMN.get(k, k): n for k, n in rep.actions.get(rule, {}).items()}
        cells = {"refused": rep.refusals.get(rule, 0), "resized": rep.resizes.get(rule, 0), **acts}
        lines.append(f"    {rule:<18}" + "".join(f"{cells.get(c, 0) or '-':>9}" for c in cols))
    if not rules:
        lines.append("    (no rule had to act)")
    lines += [f"      {c:<9}{what}" for c, what in GUARD_COLUMNS]
    lines.append("    enabled: " + ", ".join(rep.guards_enabled))
    return lines


#: The rows of ``--compare``: label, ``to_dict`` key, format, which difference is better.
COMPARE_ROWS: tuple[tuple[str, str, str, int], ...] = (
    ("Return %", "return_pct", "{:+,.2f}", 1),
    ("Final equity", "final_equity", "{:,.2f}", 1),
    ("Max drawdown %", "max_drawdown_pct", "{:,.2f}", -1),
    ("Liquidations", "liquidations", "{:,}", -1),
    ("Margin lost to liquidation", "liquidation_loss", "{:,.2f}", -1),
    ("Trades", "trades", "{:,}", 0),
    ("Win rate %", "win_rate", "{:.1%}", 1),
    ("Profit factor", "profit_factor", "{:,.2f}", 1),
    ("Expectancy per trade", "expectancy", "{:,.2f}", 1),
    ("Sharpe", "sharpe", "{:,.2f}", 1),
    ("Sortino", "sortino", "{:,.2f}", 1),
    ("Calmar", "calmar", "{:,.2f}", 1),
    ("Fees", "fees", "{:,.2f}", -1),
    ("Funding", "funding", "{:+,.2f}", 1),
    ("Entries refused", "orders_refused", "{:,}", 0),
    ("Entries resized", "orders_resized", "{:,}", 0),
)


def compare_rows(on: Report, off: Report) -> list[dict[str, Any]]:
    """Each compared figure with guards on, off, and on − off (None where a side has none)."""
    a, b = on.to_dict(), off.to_dict()
    rows = []
    for label, key, _fmt, _better in COMPARE_ROWS:
        x, y = a[key], b[key]
        diff = None if x is None or y is None else round(x - y, 6)
        rows.append({"label": label, "key": key, "guards_on": x, "guards_off": y, "diff": diff})
    return rows


def render_compare(on: Report, off: Report) -> str:
    """Guards on and off side by side, with the difference (``guardbot replay --compare``)."""
    cur = on.currency
    out = [
        f"guardbot replay --compare — {on.symbol} {on.timeframe}, {on.start} → {on.end} UTC "
        f"({on.days:.1f} days); amounts in {cur}",
        "",
        f"  {'':<28}{'guards on':>14}{'guards off':>14}{'on − off':>14}",
    ]
    for (label, _key, fmt, _better), row in zip(COMPARE_ROWS, compare_rows(on, off), strict=True):
        x, y, d = row["guards_on"], row["guards_off"], row["diff"]
        dfmt = fmt if fmt.startswith("{:+") else fmt.replace("{:", "{:+", 1)
        out.append(f"  {label:<28}{_f(x, fmt):>14}{_f(y, fmt):>14}{_f(d, dfmt) if d else '0':>14}")
    out += ["", "  " + verdict(on, off), ""]
    out += _guard_table(on)
    if on.notes:
        out += ["", "  data"] + [f"    {n}" for n in on.notes]
    return "\n".join(out)


def verdict(on: Report, off: Report) -> str:
    """One sentence: what the guards saved or cost on this data."""
    cur = on.currency
    saved = round(round(on.final_equity, 2) - round(off.final_equity, 2), 2)  # as the table
    parts = [
        f"What the guards saved: {saved:,.2f} {cur} of final equity"
        if saved >= 0
        else f"What the guards cost: {-saved:,.2f} {cur} of final equity"
    ]
    if off.liquidations > on.liquidations:
        parts.append(
            f"{off.liquidations - on.liquidations} liquidation(s) avoided "
            f"({round(off.liquidation_loss, 2) - round(on.liquidation_loss, 2):,.2f} {cur} of "
            "margin not lost)"
        )
    elif on.liquidations > off.liquidations:
        parts.append(f"{on.liquidations - off.liquidations} more liquidation(s) with guards on")
    dd = off.max_drawdown_pct - on.max_drawdown_pct
    parts.append(
        f"max drawdown {abs(dd):.2f} points {'lower' if dd >= 0 else 'higher'} with guards on"
    )
    return "; ".join(parts) + "."
