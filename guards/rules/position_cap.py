"""position_cap: no all-in bets — caps on leverage, margin per position, total margin, count.

Pre-trade, for an opening or increasing order (equity = wallet + unrealised PnL at marks):

- leverage: the order's leverage must be ≤ min(``max_leverage``, the market's maximum for the
  position's notional tier). With ``on_breach="resize"`` the order is moved to the capped leverage
  (the verdict carries ``set_leverage``) and its size re-fitted below; with ``"reject"`` it is
  refused (``cap_leverage``).
- margin of the position after the order (existing margin + amount * price / leverage) ≤
  ``max_margin_pct`` % of equity (``cap_margin``);
- total margin of all positions after the order ≤ ``max_total_margin_pct`` % (``cap_total_margin``);
- a new symbol may not open when ``max_positions`` are already open (``cap_positions``, never
  resized).

``resize`` shrinks the amount to the largest multiple of the market's ``amount_step`` that fits
every cap; an order (resized or not) below the market's ``min_amount``/``min_notional`` is refused
(``below_min_amount``). The sweep does nothing: caps are enforced at entry.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from guards.rules.base import (
    SET_LEVERAGE,
    Rule,
    RuleConfig,
    RuleEnv,
    account_view,
    below_minimum,
    entry_price,
    floor_to_step,
    position_margin,
)
from guards.tiers import tier_table
from guards.types import Figure, GuardContext, OrderIntent, Verdict

#: Relative slack for "fits the cap" comparisons (float noise, not policy).
_EPS = 1e-9


class PositionCapConfig(RuleConfig):
    max_leverage: float = Field(
        default=5.0, ge=1, le=125, description="highest leverage an order may use"
    )
    max_margin_pct: float = Field(
        default=10.0, gt=0, le=100, description="margin of one position, % of equity"
    )
    max_total_margin_pct: float = Field(
        default=50.0, gt=0, le=100, description="margin of all positions together, % of equity"
    )
    max_positions: int = Field(
        default=5, ge=1, le=1000, description="open positions at the same time"
    )
    on_breach: Literal["resize", "reject"] = Field(
        default="resize", description="resize: shrink the order to fit the caps; reject: refuse it"
    )


class PositionCap(Rule[PositionCapConfig]):
    name = "position_cap"
    config_model = PositionCapConfig

    def __init__(self, config: PositionCapConfig, env: RuleEnv) -> None:
        super().__init__(config, env)
        #: The margin caps as fractions of equity.
        self.margin_fraction = config.max_margin_pct / 100.0
        self.total_fraction = config.max_total_margin_pct / 100.0

    def check(self, intent: OrderIntent, ctx: GuardContext) -> Verdict:
        cfg = self.config
        view = account_view(ctx)
        symbol = intent.symbol
        market = ctx.markets[symbol]
        price = entry_price(intent, ctx.marks[symbol].price)
        equity = view.equity
        if equity <= 0.0:
            return self.reject("no_equity", f"equity {equity:.2f} ≤ 0", {"equity": equity})
        pos = ctx.account.positions.get(symbol)
        open_count = view.open_count
        max_positions = cfg.max_positions
        if pos is None and open_count >= max_positions:
            return self.reject(
                "cap_positions",
                f"{open_count} positions open, cap {max_positions}",
                {"open_positions": open_count, "max_positions": max_positions},
            )
        existing_margin = position_margin(pos) if pos is not None else 0.0
        existing_notional = pos.amount * price if pos is not None else 0.0
        margin_cap = self.margin_fraction * equity
        total_cap = self.total_fraction * equity
        total_margin = view.total_margin
        requested = intent.amount
        tiers = market.tiers
        max_leverage = cfg.max_leverage
        lev_cap = min(max_leverage, market.max_leverage)
        leverage = intent.leverage
        if leverage > lev_cap * (1 + _EPS):
            if cfg.on_breach == "reject":
                return self.reject(
                    "cap_leverage",
                    f"leverage {leverage:g}x above cap {lev_cap:g}x",
                    {"leverage": leverage, "max_leverage": lev_cap},
                )
            leverage = lev_cap
        table = tier_table(tiers)
        # Fit the size at this leverage; a larger notional may fall in a tier with a lower
        # maximum leverage, which lowers the leverage and the fit again (at most once per tier).
        for _ in range(len(tiers) + 1):
            room_margin = (margin_cap - existing_margin) * leverage / price
            room_total = (total_cap - total_margin) * leverage / price
            fit = min(requested, room_margin, room_total)
            held = existing_notional + fit * price
            if table.by_size:  # OKX's tiers are position sizes
                held = (pos.amount if pos is not None else 0.0) + fit
            tier_lev = tiers[table.index(held)].max_leverage
            if leverage <= tier_lev * (1 + _EPS):
                break
            if cfg.on_breach == "reject":
                return self.reject(
                    "cap_leverage",
                    f"leverage {leverage:g}x above the tier maximum {tier_lev:g}x",
                    {"leverage": leverage, "max_leverage": tier_lev},
                )
            leverage = tier_lev
        binding = "cap_margin" if room_margin <= room_total else "cap_total_margin"
        figures: dict[str, Figure] = {
            "equity": equity,
            "price": price,
            "leverage": leverage,
            "max_leverage": max_leverage,
            "position_margin": existing_margin,
            "margin_cap": margin_cap,
            "total_margin": total_margin,
            "total_margin_cap": total_cap,
            "open_positions": open_count,
            "max_positions": max_positions,
        }
        if requested <= fit * (1 + _EPS) and leverage == intent.leverage:
            if below_minimum(market, requested, price):
                return self._below_min(market.min_amount, market.min_notional, requested, figures)
            return self.allow(figures)
        if cfg.on_breach == "reject":
            return self.reject(
                binding,
                f"amount {requested:g} exceeds the {binding[4:].replace('_', ' ')} cap "
                f"(fits {max(fit, 0.0):g})",
                {**figures, "max_amount": max(fit, 0.0)},
            )
        if fit <= 0.0:
            return self.reject(
                binding,
                f"no room left under the {binding[4:].replace('_', ' ')} cap",
                {**figures, "max_amount": 0.0},
            )
        amount = floor_to_step(fit, market.amount_step)
        if below_minimum(market, amount, price):
            return self._below_min(market.min_amount, market.min_notional, amount, figures)
        figures = {**figures, "requested_amount": requested, "amount": amount}
        code = binding if amount < requested else "cap_leverage"
        changes = [f"resized {requested:g} → {amount:g}"] if amount < requested else []
        if leverage != intent.leverage:
            figures[SET_LEVERAGE] = leverage
            figures["requested_leverage"] = intent.leverage
            changes.append(f"leverage {intent.leverage:g}x → {leverage:g}x")
        return self.resize(amount, code, f"{' and '.join(changes)} to fit caps", figures)

    def _below_min(
        self,
        min_amount: float,
        min_notional: float,
        amount: float,
        figures: dict[str, Figure],
    ) -> Verdict:
        return self.reject(
            "below_min_amount",
            f"amount {amount:g} below the market minimum "
            f"(min amount {min_amount:g}, min notional {min_notional:g})",
            {**figures, "amount": amount, "min_amount": min_amount, "min_notional": min_notional},
        )
