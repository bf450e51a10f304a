"""``guardbot check-order``: a liquidation calculator and a guard explainer in one.

Builds a guard context for one hypothetical order on an otherwise flat account (wallet balance
given, bundled market rules and leverage tiers, mark = the order's price, now = the wall clock or
``--at``), runs the configured ``GuardEngine`` on it and reports:

- the order as requested and, in the headline, the order as it would go out (after the guards'
  resizes: amount, leverage, notional, margin, liquidation and bankruptcy prices, loss at the
  stop), every resize credited to the rule that made it;
- what would pass: the largest amount at this stop and leverage, the highest leverage (at or
  below the one asked) and the farthest stop that clear the liquidation rule, and when entries
  reopen when a rule refuses for a while (halts, cooldowns, the session, the loss budgets);
- every rule's verdict with its figures, in one number format with units.

The market's rules are the bundled ones of the exchange (``--exchange``, default the config's
``exchange.id``): Bybit's (``bybit``) and OKX's (``okx``) bundled markets under their own
liquidation models (``paper.venues``), else Binance's under ``paper.liquidation_profile``.

The size is ``--amount`` (base units), ``--notional`` (USDT) or ``--margin`` (USDT at the
leverage), exactly one. Bad input (a non-finite or non-positive number, a leverage above the
market's maximum, a notional beyond its largest leverage tier) is a ``CheckOrderError`` naming
the option, the value and what is expected.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
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
    MarketRules,
    OrderIntent,
    Side,
    bankruptcy_price,
    decision_to_dict,
    explain_rows,
    floor_to_step,
    format_amount,
    format_figure,
    format_number,
    format_time,
    liquidation_price,
    reopens,
    resize_steps,
)
from paper.markets import bundled_symbols, load_market
from paper.venues import Venue, venue_symbols

#: ccxt ids whose bundled markets and liquidation model ``check-order`` uses (others: Binance's).
VENUE_PROFILES: dict[str, Venue] = {"bybit": "bybit", "okx": "okx"}

_LIQ_CODES = frozenset({"liq_too_close", "stop_beyond_liquidation"})


class CheckOrderError(Exception):
    """Bad input for check-order (unknown symbol, bad side, a number out of range, ...)."""


@dataclass(frozen=True)
class OrderFigures:
    """An order's own figures: size, leverage, notional, margin, liquidation and bankruptcy."""

    amount: float
    leverage: float
    notional: float
    margin: float
    liquidation_price: float | None
    bankruptcy_price: float | None
    stop_price: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "amount": self.amount,
            "leverage": self.leverage,
            "notional": self.notional,
            "margin": self.margin,
            "liquidation_price": self.liquidation_price,
            "bankruptcy_price": self.bankruptcy_price,
            "stop_price": self.stop_price,
        }


@dataclass(frozen=True)
class OrderCheck:
    requested: OrderIntent
    decision: Decision
    #: The order as requested (``order`` in JSON) and as it would go out (None: refused).
    asked: OrderFigures
    final: OrderFigures | None
    #: What would pass, as (what, figure text) pairs; ``would_pass`` in JSON.
    would_pass: tuple[tuple[str, str], ...]
    base: str
    now: float

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

    # backwards-compatible names for the requested order's figures
    @property
    def liquidation_price(self) -> float | None:
        return self.asked.liquidation_price

    @property
    def bankruptcy_price(self) -> float | None:
        return self.asked.bankruptcy_price

    @property
    def margin(self) -> float:
        return self.asked.margin

    @property
    def notional(self) -> float:
        return self.asked.notional

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "order": self.asked.to_dict(),
            "final": None if self.final is None else self.final.to_dict(),
            "resizes": [
                {"rule": s.rule, "code": s.code, "changes": list(s.changes), "reason": s.reason}
                for s in resize_steps(self.decision, self.requested, self.base)
            ],
            "would_pass": dict(self.would_pass),
            "checked_at": datetime.fromtimestamp(self.now).astimezone().isoformat(),
            "decision": decision_to_dict(self.decision),
        }

    def render_text(self) -> str:
        d = self.decision
        buf = io.StringIO()
        console = Console(file=buf, width=160, color_system=None, highlight=False)
        i = self.requested
        verdict = {"allow": "ALLOWED", "resize": "ALLOWED, RESIZED", "reject": "REFUSED"}
        console.print(f"decision: {verdict[d.outcome]} ({d.code})")
        if self.final is not None:
            console.print(f"order as it would go out: {self._describe(self.final)}")
            console.print(f"  {self._prices(self.final)}")
            risk = next(
                (v for v in d.verdicts if v.rule == "stop_loss" and "risk" in v.figures), None
            )
            if risk is not None:
                console.print(
                    f"  loss at the stop {format_figure(risk.figures['risk'], 'risk')} "
                    f"({format_figure(risk.figures.get('risk_pct'), 'risk_pct')} of equity, fees "
                    f"and {format_figure(risk.figures.get('slippage_bps'), 'slippage_bps')} of "
                    "slippage included)"
                )
        if self.final is None or d.outcome == "resize":
            console.print(f"order as requested:       {self._describe(self.asked)}")
            console.print(f"  {self._prices(self.asked)}")
        steps = resize_steps(d, i, self.base)
        if steps:
            console.print("resized by:")
            for step in steps:
                console.print(f"  {step.rule}: {', '.join(step.changes)} ({step.code})")
        if not d.allowed:
            console.print(f"refused by {d.reason}")
        if self.would_pass:
            console.print("what would pass:")
            for what, text in self.would_pass:
                console.print(f"  {what}: {text}")
        table = Table("rule", "verdict", "code", "figures", "reason", show_lines=False)
        for row in explain_rows(d, self.base):
            table.add_row(row.rule, row.outcome, row.code, row.figures, row.reason)
        console.print(table)
        console.print(f"checked at {format_time(self.now)}")
        return buf.getvalue().rstrip()

    def _describe(self, f: OrderFigures) -> str:
        i = self.requested
        stop = "" if f.stop_price is None else f", stop {format_figure(f.stop_price, 'stop')}"
        return (
            f"{i.side} {format_amount(f.amount, self.base)} on {i.symbol} at "
            f"{format_figure(i.price, 'price')}, {format_figure(f.leverage, 'leverage')} "
            f"{i.margin_mode}{stop}"
        )

    def _prices(self, f: OrderFigures) -> str:
        price = self.requested.price or 0.0
        if f.liquidation_price is None:
            liq = "none (cannot be liquidated)"
        else:
            away = abs(price - f.liquidation_price) / price * 100.0
            liq = f"{format_figure(f.liquidation_price, 'price')} ({format_number(away)} % away)"
        bk = "-" if f.bankruptcy_price is None else format_figure(f.bankruptcy_price, "price")
        return (
            f"notional {format_figure(f.notional, 'notional')}, margin "
            f"{format_figure(f.margin, 'margin')}; liquidation price {liq}, bankruptcy price {bk}"
        )


def _finite_positive(option: str, value: float | None, expected: str) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise CheckOrderError(f"{option} {value:g}: expected {expected}")


def explain_order(
    settings: Settings,
    *,
    symbol: str,
    side: str,
    price: float,
    amount: float | None = None,
    notional: float | None = None,
    margin: float | None = None,
    leverage: float = 1.0,
    stop: float | None = None,
    take_profit: float | None = None,
    margin_mode: str = "isolated",
    balance: float = 10_000.0,
    now: float | None = None,
    exchange: str | None = None,
) -> OrderCheck:
    """Run one order through the configured guards on a flat account with ``balance``, on
    the bundled rules of ``exchange`` (a ccxt id; default the config's ``exchange.id``)."""
    if side not in ("long", "short"):
        raise CheckOrderError(f"--side {side!r}: expected long or short")
    if margin_mode not in ("isolated", "cross"):
        raise CheckOrderError(f"--margin-mode {margin_mode!r}: expected isolated or cross")
    venue = VENUE_PROFILES.get(exchange if exchange is not None else settings.exchange.id)
    paper = settings.paper
    if venue is not None:
        paper = paper.model_copy(update={"liquidation_profile": venue, "liquidation_profiles": {}})
    try:
        rules = load_market(symbol, paper).rules
    except KeyError:
        bundled = venue_symbols(venue) if venue is not None else bundled_symbols()
        where = f" of {venue}" if venue is not None else ""
        raise CheckOrderError(
            f"no bundled market rules{where} for {symbol} (bundled: {', '.join(bundled)})"
        ) from None
    base = symbol.split("/", 1)[0]
    _finite_positive("--price", price, "a positive price in USDT")
    _finite_positive("--leverage", leverage, f"a leverage from 1 to {rules.max_leverage:g}")
    if leverage < 1.0 or leverage > rules.max_leverage:
        raise CheckOrderError(
            f"--leverage {leverage:g}: {symbol} allows 1x to {rules.max_leverage:g}x; expected "
            f"a leverage from 1 to {rules.max_leverage:g}"
        )
    if not (math.isfinite(balance) and balance >= 0):
        raise CheckOrderError(f"--balance {balance:g}: expected a finite wallet balance ≥ 0 USDT")
    _finite_positive("--stop", stop, "a positive stop price in USDT")
    _finite_positive("--take-profit", take_profit, "a positive take-profit price in USDT")
    sizes = {"--amount": amount, "--notional": notional, "--margin": margin}
    given = [name for name, value in sizes.items() if value is not None]
    if len(given) != 1:
        got = "none" if not given else " and ".join(given)
        raise CheckOrderError(
            f"the order's size: got {got}; expected one of --amount (base units), --notional "
            "(USDT) or --margin (USDT at the leverage)"
        )
    _finite_positive("--amount", amount, f"a positive amount in {base}")
    _finite_positive("--notional", notional, "a positive notional in USDT")
    _finite_positive("--margin", margin, "a positive margin in USDT")
    if notional is not None:
        amount = notional / price
    elif margin is not None:
        amount = margin * leverage / price
    assert amount is not None
    cap = rules.tiers[-1].max_notional if rules.tiers else math.inf
    size = amount * price
    if not (math.isfinite(size) and size <= cap):
        limit = f"{format_number(cap)} USDT" if math.isfinite(cap) else "a finite notional"
        raise CheckOrderError(
            f"{given[0]} {sizes[given[0]]:g}: the order's notional ({size:g} USDT) is beyond "
            f"{symbol}'s largest leverage tier; expected at most {limit}"
        )
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
    asked = _figures(intent, rules, balance, intent.stop_price)
    final = None
    if decision.allowed:
        final = _figures(decision.intent, rules, balance, decision.stop_price)
    would = _would_pass(settings, intent, ctx, decision, rules, base)
    return OrderCheck(intent, decision, asked, final, would, base, when)


def _figures(
    intent: OrderIntent, rules: MarketRules, balance: float, stop: float | None
) -> OrderFigures:
    price = intent.price or 0.0
    notional = intent.amount * price
    margin = notional / intent.leverage
    wallet = margin if intent.margin_mode == "isolated" else balance
    liq = liquidation_price(
        side=intent.side,
        amount=intent.amount,
        entry_price=price,
        margin_mode=intent.margin_mode,
        wallet_balance=wallet,
        tiers=rules.tiers,
        liquidation_fee_rate=rules.liquidation_fee_rate,
    )
    bk = bankruptcy_price(
        side=intent.side,
        amount=intent.amount,
        entry_price=price,
        margin_mode=intent.margin_mode,
        wallet_balance=wallet,
    )
    return OrderFigures(intent.amount, intent.leverage, notional, margin, liq, bk, stop)


def _would_pass(
    settings: Settings,
    intent: OrderIntent,
    ctx: GuardContext,
    decision: Decision,
    rules: MarketRules,
    base: str,
) -> tuple[tuple[str, str], ...]:
    """What would pass instead (see the module docstring), each checked by the engine."""

    def check(order: OrderIntent) -> Decision:
        return GuardEngine(settings.guards).check(order, ctx)

    out: list[tuple[str, str]] = []
    price = intent.price or 0.0
    when = reopens(decision)
    if when is not None:
        out.append(("entries reopen", when))
    largest = _largest_amount(check, intent, rules)
    if largest is not None:
        at = "this stop" if intent.stop_price is not None else "the attached stop"
        out.append(
            (
                f"largest amount at {at} and {format_figure(largest.intent.leverage, 'leverage')}",
                f"{format_amount(largest.amount, base)} (notional "
                f"{format_figure(largest.amount * price, 'notional')})",
            )
        )
    if decision.code in _LIQ_CODES:
        for lev in range(math.floor(intent.leverage), 0, -1):
            if lev >= intent.leverage:
                continue
            if check(replace(intent, leverage=float(lev))).allowed:
                out.append(("highest leverage that clears liquidation", f"{lev}x"))
                break
        liq_verdict = next(v for v in decision.verdicts if v.code == decision.code)
        limit = liq_verdict.figures.get("stop_limit")
        if isinstance(limit, float) and decision.code == "stop_beyond_liquidation":
            sign = 1 if intent.side == "long" else -1
            step = rules.price_step
            units = math.ceil(limit / step - 1e-9) if sign > 0 else math.floor(limit / step + 1e-9)
            farthest = round(units * step, 12)
            if check(replace(intent, stop_price=farthest)).allowed:
                out.append(
                    (
                        f"farthest stop that clears liquidation at "
                        f"{format_figure(intent.leverage, 'leverage')}",
                        format_figure(farthest, "stop"),
                    )
                )
    return tuple(out)


def _largest_amount(
    check: Callable[[OrderIntent], Decision], intent: OrderIntent, rules: MarketRules
) -> Decision | None:
    """The allowed decision with the largest amount at the order's stop and leverage: the
    guards' own resize of a very large order, else a bisection below that size."""
    price = intent.price or 0.0
    cap = rules.tiers[-1].max_notional if rules.tiers else 1e12
    big = check(replace(intent, amount=min(cap, 1e12) / price))
    if big.allowed:
        return big
    if big.code not in ("liq_too_close", "stop_beyond_liquidation", "below_min_amount"):
        first = check(intent)
        return first if first.allowed else None  # refused for a reason no size changes
    lo, hi = 0.0, big.intent.amount
    found: Decision | None = None
    for _ in range(48):
        mid = floor_to_step((lo + hi) / 2.0, rules.amount_step)
        if mid <= lo or mid <= 0.0:
            break
        d = check(replace(intent, amount=mid))
        if d.allowed:
            found, lo = d, mid
        else:
            hi = mid
    return found
