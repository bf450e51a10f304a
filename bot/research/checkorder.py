"""``guardbot check-order``: a liquidation calculator and a guard explainer in one.

Builds a guard context for one hypothetical order on an otherwise flat account (wallet balance
given, bundled market rules and leverage tiers, mark = the order's price, now = the wall clock or
``--at``), runs the configured ``GuardEngine`` on it and reports the decision with every rule's
figures, next to the order's own liquidation and bankruptcy prices.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from bot.settings import Settings
from guards import (
    Account,
    Decision,
    GuardContext,
    GuardEngine,
    MarginMode,
    Mark,
    OrderIntent,
    Side,
    bankruptcy_price,
    decision_to_dict,
    explain_rows,
    liquidation_price,
)
from paper.markets import bundled_symbols, load_market


class CheckOrderError(Exception):
    """Bad input for check-order (unknown symbol, bad side, ...)."""


@dataclass(frozen=True)
class OrderCheck:
    requested: OrderIntent
    decision: Decision
    liquidation_price: float | None
    bankruptcy_price: float | None
    margin: float
    notional: float
    now: float

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "order": {
                "amount": self.requested.amount,
                "leverage": self.requested.leverage,
                "notional": self.notional,
                "margin": self.margin,
                "liquidation_price": self.liquidation_price,
                "bankruptcy_price": self.bankruptcy_price,
            },
            "checked_at": datetime.fromtimestamp(self.now).astimezone().isoformat(),
            "decision": decision_to_dict(self.decision),
        }

    def render_text(self) -> str:
        d = self.decision
        buf = io.StringIO()
        console = Console(file=buf, width=140, color_system=None, highlight=False)
        liq = (
            "none (cannot be liquidated)"
            if self.liquidation_price is None
            else (f"{self.liquidation_price:,.2f}")
        )
        bk = "-" if self.bankruptcy_price is None else f"{self.bankruptcy_price:,.2f}"
        i = self.requested
        console.print(
            f"order as requested: {i.side} {i.amount:g} {i.symbol} at {i.price or 0:,.2f}, "
            f"{i.leverage:g}x {i.margin_mode}; notional {self.notional:,.2f}, "
            f"margin {self.margin:,.2f}"
        )
        console.print(f"  liquidation price: {liq}   bankruptcy price: {bk}")
        verdict = {"allow": "ALLOWED", "resize": "ALLOWED, RESIZED", "reject": "REFUSED"}
        line = f"decision: {verdict[d.outcome]} ({d.code})"
        if d.outcome == "resize":
            line += f" to {d.amount:g} at {d.intent.leverage:g}x"
        if d.reason:
            line += f": {d.reason}"
        console.print(line)
        table = Table("rule", "verdict", "code", "figures", "reason", show_lines=False)
        for row in explain_rows(d):
            table.add_row(row.rule, row.outcome, row.code, row.figures, row.reason)
        console.print(table)
        return buf.getvalue().rstrip()


def explain_order(
    settings: Settings,
    *,
    symbol: str,
    side: str,
    amount: float,
    price: float,
    leverage: float = 1.0,
    stop: float | None = None,
    take_profit: float | None = None,
    margin_mode: str = "isolated",
    balance: float = 10_000.0,
    now: float | None = None,
) -> OrderCheck:
    """Run one order through the configured guards on a flat account with ``balance``."""
    if side not in ("long", "short"):
        raise CheckOrderError(f"--side must be long or short, got {side!r}")
    if margin_mode not in ("isolated", "cross"):
        raise CheckOrderError(f"--margin-mode must be isolated or cross, got {margin_mode!r}")
    for name, value in (("amount", amount), ("price", price), ("leverage", leverage)):
        if not value > 0:
            raise CheckOrderError(f"--{name} must be positive, got {value}")
    if balance < 0:
        raise CheckOrderError(f"--balance must not be negative, got {balance}")
    try:
        rules = load_market(symbol, settings.paper).rules
    except KeyError:
        raise CheckOrderError(
            f"no bundled market rules for {symbol} (bundled: {', '.join(bundled_symbols())})"
        ) from None
    when = time.time() if now is None else now
    s: Side = "long" if side == "long" else "short"
    mode: MarginMode = "isolated" if margin_mode == "isolated" else "cross"
    intent = OrderIntent(
        symbol=symbol,
        side=s,
        amount=amount,
        price=price,
        order_type="limit",
        leverage=leverage,
        margin_mode=mode,
        stop_price=stop,
        take_profit=take_profit,
        tag="check-order",
    )
    ctx = GuardContext(
        account=Account(balance, {}),
        markets={symbol: rules},
        marks={symbol: Mark(price, when)},
        now=when,
    )
    decision = GuardEngine(settings.guards).check(intent, ctx)
    notional = amount * price
    margin = notional / leverage
    wallet = margin if mode == "isolated" else balance
    liq = liquidation_price(
        side=s,
        amount=amount,
        entry_price=price,
        margin_mode=mode,
        wallet_balance=wallet,
        tiers=rules.tiers,
        liquidation_fee_rate=rules.liquidation_fee_rate,
    )
    bk = bankruptcy_price(
        side=s, amount=amount, entry_price=price, margin_mode=mode, wallet_balance=wallet
    )
    return OrderCheck(intent, decision, liq, bk, margin, notional, when)
