"""``guardbot preflight``: check a live set-up without placing anything.

``run_preflight`` talks to the exchange through ``ReadOnly``, a wrapper that refuses every call
that could change anything, and reports, one ``Check`` each: connectivity (and round trip),
clock drift against the exchange, the configured markets and their leverage tiers, the API key's
permissions (loudly if withdrawals are enabled; skipped on demo trading, which does not answer
that call), one-way position mode, the asset mode (Binance's multi-assets mode refuses isolated
margin), balances, open positions and which of them have no stop on the exchange, the configured
leverage against the guard cap — and the actions the guard sweep would take right now (listed,
never executed).

``guardbot run --live`` runs the same checks first (``bot.runner``) and refuses to trade on any
failure; each failure says how to fix it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ccxt.base.errors import NotSupported

from bot.exchange.protocol import fetch_marks
from bot.exchange.retry import describe
from bot.exchange.shapes import account_from_ccxt, wallet_balance
from bot.exchange.venue import venue_for
from bot.settings import Settings
from guards import Action, GuardContext, GuardEngine, MarketRules

CheckStatus = Literal["ok", "warn", "fail", "skip"]
#: Clock drift (ms) above which preflight warns, and above which it fails.
DRIFT_WARN_MS = 1_000.0
DRIFT_FAIL_MS = 5_000.0
_MARKS = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


@dataclass(frozen=True, slots=True)
class Check:
    """One preflight finding."""

    name: str
    status: CheckStatus
    detail: str
    figures: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class PreflightReport:
    """Every check plus the guard sweep's would-be actions."""

    exchange: str
    checks: list[Check] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def add(self, name: str, status: CheckStatus, detail: str, **figures: Any) -> Check:
        found = Check(name, status, detail, figures)
        self.checks.append(found)
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "exchange": self.exchange,
            "ok": self.ok,
            "checks": [
                {"name": c.name, "status": c.status, "detail": c.detail, **dict(c.figures)}
                for c in self.checks
            ],
            "guard_actions": [
                {
                    "kind": a.kind,
                    "symbol": a.symbol,
                    "rule": a.rule,
                    "code": a.code,
                    "reason": a.reason,
                    "amount": a.amount,
                    "stop_price": a.stop_price,
                }
                for a in self.actions
            ],
        }

    def render_text(self) -> str:
        lines = [f"guardbot preflight — {self.exchange} (nothing is placed or changed)", ""]
        for c in self.checks:
            lines.append(f"  [{_MARKS[c.status]}] {c.name}: {c.detail}")
        lines.append("")
        if self.actions:
            lines.append("  The guard sweep would now:")
            for a in self.actions:
                lines.append(f"    - {a.kind} {a.symbol or '(all)'} [{a.rule}/{a.code}] {a.reason}")
        else:
            lines.append("  The guard sweep would do nothing right now.")
        lines.append("")
        verdict = "PASSED" if self.ok else "FAILED"
        warns = sum(1 for c in self.checks if c.status == "warn")
        lines.append(f"preflight {verdict} ({warns} warning{'s' if warns != 1 else ''})")
        return "\n".join(lines)


class ReadOnly:
    """An exchange wrapper that passes reads through and refuses anything that writes."""

    _READS = frozenset(
        {
            "id",
            "load_markets",
            "fetch_ticker",
            "fetch_order",
            "fetch_open_orders",
            "fetch_positions",
            "fetch_balance",
            "fetch_leverage_tiers",
            "fetch_time",
            "fetch_mark",
            "api_permissions",
            "hedge_mode",
            "multi_assets",
            "market_rules",
            "markets",
            "tiers",
        }
    )

    def __init__(self, exchange: Any) -> None:
        self._exchange = exchange

    def __getattr__(self, name: str) -> Any:
        if name not in self._READS:
            raise PermissionError(f"preflight is read-only: {name} is not allowed")
        return getattr(self._exchange, name)

    async def close(self) -> None:
        await self._exchange.close()


async def run_preflight(
    exchange: Any,
    settings: Settings,
    *,
    now: float | None = None,
    clock: Callable[[], float] = time.time,
) -> PreflightReport:
    """Check ``exchange`` against ``settings``; never places, cancels or changes anything."""
    ex = ReadOnly(exchange)
    report = PreflightReport(str(getattr(exchange, "id", "?")))
    symbols = list(settings.exchange.symbols)
    t0 = clock()
    try:
        server_ms = await ex.fetch_time()
    except Exception as exc:
        report.add("connectivity", "fail", f"cannot reach the exchange: {describe(exc)}")
        return report
    t1 = clock()
    rtt_ms = (t1 - t0) * 1000.0
    report.add("connectivity", "ok", f"reached in {rtt_ms:.0f} ms", round_trip_ms=rtt_ms)
    drift = server_ms - (t0 + t1) / 2.0 * 1000.0
    status: CheckStatus = "ok"
    if abs(drift) > DRIFT_FAIL_MS:
        status = "fail"
    elif abs(drift) > DRIFT_WARN_MS:
        status = "warn"
    where = "behind" if drift > 0 else "ahead of"
    advice = " — sync it (NTP): signed requests are refused outside recvWindow"
    report.add(
        "clock",
        status,
        f"local clock is {abs(drift):.0f} ms {where} the exchange"
        + (advice if status != "ok" else ""),
        drift_ms=drift,
    )
    rules = await _markets(ex, report, symbols)
    await _permissions(ex, report)
    await _position_mode(ex, report)
    await _asset_mode(ex, report, settings.exchange.margin_mode)
    try:
        balance = await ex.fetch_balance()
        positions = await ex.fetch_positions()
        held = {str(p["symbol"]) for p in positions if float(p.get("contracts") or 0.0) > 0.0}
        orders = []
        for symbol in sorted(held | set(symbols)):
            orders.extend(await ex.fetch_open_orders(symbol))
    except Exception as exc:
        report.add("account", "fail", f"cannot read the account: {describe(exc)}")
        return report
    currency = "USDT"
    wallet = wallet_balance(balance, currency)
    free = (balance.get(currency) or {}).get("free")
    modes = report.check("asset_mode")
    multi = modes is not None and bool(modes.figures.get("multi_assets"))
    unit = "USD over all margin assets (multi-assets mode)" if multi else currency
    report.add(
        "balance",
        "ok" if wallet > 0 else "fail",
        f"wallet {wallet:,.2f} {unit}, available {float(free or 0.0):,.2f} {currency}",
        wallet=wallet,
        free=free,
    )
    account = account_from_ccxt(balance, positions, orders, currency)
    naked = sorted(s for s, p in account.positions.items() if p.stop_price is None)
    if not account.positions:
        report.add("positions", "ok", "no open positions", open=0)
    else:
        listing = ", ".join(
            f"{p.side} {p.amount:g} {s} @ {p.entry_price:g}"
            + (f" stop {p.stop_price:g}" if p.stop_price is not None else " NO STOP")
            for s, p in sorted(account.positions.items())
        )
        report.add(
            "positions",
            "warn" if naked else "ok",
            listing
            + (
                f" — {len(naked)} without a stop on the exchange (guardbot attaches one at start)"
                if naked
                else ""
            ),
            open=len(account.positions),
            without_stop=naked,
        )
    cap = settings.guards.position_cap.max_leverage
    lev = settings.exchange.leverage
    report.add(
        "leverage",
        "ok" if lev <= cap else "fail",
        f"exchange.leverage {lev:g}x "
        + (
            f"within the guard cap {cap:g}x"
            if lev <= cap
            else f"above the guard cap {cap:g}x — lower exchange.leverage to {cap:g} or less"
        ),
        leverage=lev,
        cap=cap,
    )
    stamp = clock() if now is None else now
    wanted = sorted(set(symbols) | set(account.positions))
    marks = await fetch_marks(ex, wanted, stamp)
    missing = [s for s in account.positions if s not in rules]
    if missing:
        rules.update(_rules(ex, missing))
    engine = GuardEngine(settings.guards)
    ctx = GuardContext(account, rules, marks, stamp)
    report.actions = engine.sweep(ctx)
    report.add(
        "guards",
        "ok",
        f"{len(engine.rule_names)} rules enabled; the sweep would take "
        f"{len(report.actions)} action(s) now",
        rules=list(engine.rule_names),
    )
    return report


def _rules(ex: Any, symbols: list[str]) -> dict[str, MarketRules]:
    make = getattr(ex, "market_rules", None)
    if make is None:
        return {}
    found: dict[str, MarketRules] = make(symbols)
    return found


async def _markets(ex: Any, report: PreflightReport, symbols: list[str]) -> dict[str, MarketRules]:
    try:
        markets = await ex.load_markets()
    except Exception as exc:
        report.add("markets", "fail", f"cannot load markets: {describe(exc)}")
        return {}
    rules = _rules(ex, symbols)
    problems = []
    for symbol in symbols:
        market = markets.get(symbol)
        if market is None:
            problems.append(f"{symbol} not listed")
        elif market.get("active") is False:
            problems.append(f"{symbol} not trading")
        elif not (market.get("swap") and market.get("linear")):
            problems.append(f"{symbol} is not a linear perpetual")
        elif symbol not in rules:
            problems.append(f"{symbol} has no leverage tiers")
    if problems:
        report.add("markets", "fail", "; ".join(problems), symbols=symbols)
    else:
        report.add(
            "markets",
            "ok",
            f"{', '.join(symbols)} listed with leverage tiers ({len(markets)} markets loaded)",
            symbols=symbols,
        )
    return rules


async def _permissions(ex: Any, report: PreflightReport) -> None:
    try:
        perms = await ex.api_permissions()
    except NotSupported:
        report.add(
            "api_key",
            "skip",
            "this environment does not answer the key-permission call (Binance demo trading "
            "has no sapi): check on the exchange's API page that withdrawals are off",
        )
        return
    except Exception as exc:
        report.add("api_key", "fail", f"cannot read the key's permissions: {describe(exc)}")
        return
    if perms is None:
        report.add(
            "api_key", "skip", "this exchange does not report key permissions: check by hand"
        )
        return
    notes = []
    status: CheckStatus = "ok"
    if perms.get("enableWithdrawals"):
        status = "warn"
        notes.append(
            "!!! WITHDRAWALS ARE ENABLED on this API key — disable them: "
            "a trading bot never needs to withdraw, and a leaked key could empty the account !!!"
        )
    if not perms.get("enableFutures", True):
        status = "fail"
        notes.append("futures trading is NOT enabled on this key")
    if not perms.get("ipRestrict", False):
        if status == "ok":
            status = "warn"
        notes.append("no IP whitelist on this key")
    detail = "; ".join(notes) if notes else "futures trading on, withdrawals off, IP-restricted"
    report.add(
        "api_key",
        status,
        detail,
        withdrawals=bool(perms.get("enableWithdrawals")),
        futures=bool(perms.get("enableFutures")),
        ip_restricted=bool(perms.get("ipRestrict")),
    )


async def _position_mode(ex: Any, report: PreflightReport) -> None:
    try:
        hedged = await ex.hedge_mode()
    except Exception as exc:
        report.add("position_mode", "warn", f"cannot read the position mode: {describe(exc)}")
        return
    if hedged is None:
        report.add("position_mode", "skip", "not reported by this exchange: use one-way mode")
    elif hedged and any(
        c.method == "set_position_mode" for c in venue_for(str(ex.id)).account_setup_calls()
    ):
        report.add(
            "position_mode", "warn", "hedge mode is on: guardbot switches it to one-way at start"
        )
    elif hedged:
        report.add("position_mode", "fail", HEDGE_MODE_FIX.get(str(ex.id), HEDGE_MODE_FIX[""]))
    else:
        report.add("position_mode", "ok", "one-way mode")


async def _asset_mode(ex: Any, report: PreflightReport, margin_mode: str) -> None:
    """Binance's multi-assets mode: isolated margin is refused there (-4168); cross reads the
    account's total margin balance over all its assets (in USD)."""
    try:
        multi = await ex.multi_assets()
    except Exception as exc:
        report.add("asset_mode", "warn", f"cannot read the asset mode: {describe(exc)}")
        return
    if multi is None:
        return  # not a notion of this exchange
    if not multi:
        report.add("asset_mode", "ok", "single-asset mode (USDT margin)", multi_assets=False)
    elif margin_mode == "isolated":
        report.add(
            "asset_mode",
            "fail",
            "multi-assets mode is on and exchange.margin_mode = isolated: Binance refuses "
            "isolated margin in multi-assets mode (-4168), so no entry could be set up — set "
            'exchange.margin_mode = "cross", or switch to single-asset mode (POST '
            "/fapi/v1/multiAssetsMargin multiAssetsMargin=false, or Futures > Preferences > "
            "Asset Mode > Single-Asset Mode)",
            multi_assets=True,
        )
    else:
        report.add(
            "asset_mode",
            "ok",
            "multi-assets mode, cross margin: equity is the account's margin balance over all "
            "its assets (in USD)",
            multi_assets=True,
        )


#: How to leave hedge mode, per exchange ("" for any other).
HEDGE_MODE_FIX: dict[str, str] = {
    "binanceusdm": "hedge (dual-side) position mode is on: guardbot needs one-way mode — switch "
    "with POST /fapi/v1/positionSide/dual dualSidePosition=false (no open positions or orders), "
    "or in the app: Futures > Preferences > Position Mode > One-way Mode",
    "": "hedge (dual-side) position mode is on: guardbot needs one-way mode — switch to "
    "one-way mode in the exchange's futures settings (no open positions or orders)",
}
