"""liquidation: never ride into the exchange's liquidation engine.

Pre-trade, on the order's final size (after stop_loss and position_cap resized it): the
liquidation price of the position *after* the order is computed with
``guards.liquidation.liquidation_price`` (the market's tiers and liquidation fee rate; a same-side
position is merged: summed amount, amount-weighted entry, summed isolated margin; cross uses the
cross wallet — wallet balance minus other positions' isolated margin — with the other cross
positions' maintenance margin and unrealised PnL at marks). Then, with side sign s (+1 long):

- distance = ``s * (mark - liq) / mark * 100`` must be ≥ ``min_distance_pct`` (``liq_too_close``);
- the stop must trigger at least ``stop_buffer_pct`` % of the liquidation price before it:
  ``s * (stop - liq * (1 + s * buffer / 100)) ≥ 0``, i.e. a long's stop ≥ liq × (1 + b), a
  short's ≤ liq × (1 − b) (``stop_beyond_liquidation``);
- ``None`` (a long no positive price liquidates) passes; mixing margin modes on one symbol is
  refused (``margin_mode_mismatch``).

Sweep: for each open position, distance as above; ≤ ``close_at_pct`` → ``close``
(``liq_close``); ≤ ``reduce_at_pct`` (or the circuit breaker's stricter
``tighten_reduce_at_pct`` while the symbol's breaker is open) → ``reduce`` by ``reduce_fraction``
of the position, rounded down to the amount step (a close instead if that or the remainder would
fall below the market minimum). Isolated liquidation prices are remembered between sweeps by
the engine's ``LiquidationMemo``.
"""

from __future__ import annotations

import math

from pydantic import Field, model_validator

from guards.calm import Calm
from guards.liquidation import liquidation_price, position_maintenance_margin
from guards.rules.base import (
    Rule,
    RuleConfig,
    RuleEnv,
    account_view,
    below_minimum,
    entry_price,
    floor_to_step,
    liq_distance_pct,
    position_liquidation,
    position_margin,
)
from guards.rules.circuit_breaker import CircuitBreakerConfig
from guards.types import Action, ActionKind, Figure, GuardContext, OrderIntent, Verdict


class LiquidationConfig(RuleConfig):
    stop_buffer_pct: float = Field(
        default=1.0, gt=0, le=50, description="stop must trigger this % of the liq price before it"
    )
    min_distance_pct: float = Field(
        default=5.0, gt=0, le=90, description="liquidation price at least this % from mark at entry"
    )
    reduce_at_pct: float = Field(
        default=3.0,
        gt=0,
        le=90,
        description="sweep: reduce when mark is within this % of liquidation",
    )
    close_at_pct: float = Field(
        default=1.5,
        ge=0,
        le=90,
        description="sweep: close when mark is within this % of liquidation",
    )
    reduce_fraction: float = Field(
        default=0.5, gt=0, le=1, description="sweep: fraction of the position a reduce closes"
    )

    @model_validator(mode="after")
    def _ordered(self) -> LiquidationConfig:
        if not self.close_at_pct < self.reduce_at_pct < self.min_distance_pct:
            raise ValueError(
                "need close_at_pct < reduce_at_pct < min_distance_pct "
                f"(got {self.close_at_pct}, {self.reduce_at_pct}, {self.min_distance_pct})"
            )
        return self


class Liquidation(Rule[LiquidationConfig]):
    name = "liquidation"
    config_model = LiquidationConfig

    def __init__(self, config: LiquidationConfig, env: RuleEnv) -> None:
        super().__init__(config, env)
        #: The circuit breaker's settings (its ``tighten_reduce_at_pct`` while it is open).
        self.breaker = env.peer(CircuitBreakerConfig)
        buffer = config.stop_buffer_pct / 100.0
        #: ``1 + s * stop_buffer_pct / 100`` for a long (s = 1) and a short (s = -1).
        self.stop_factor = (1.0 + buffer, 1.0 - buffer)

    def check(self, intent: OrderIntent, ctx: GuardContext) -> Verdict:
        cfg = self.config
        symbol = intent.symbol
        market = ctx.markets[symbol]
        mark = ctx.marks[symbol].price
        price = entry_price(intent, mark)
        s = 1 if intent.side == "long" else -1
        mode = intent.margin_mode
        amount = intent.amount
        pos = ctx.account.positions.get(symbol)
        if pos is not None and pos.margin_mode != mode:
            return self.reject(
                "margin_mode_mismatch",
                f"open {pos.margin_mode} position, order is {mode}",
                {"position_mode": pos.margin_mode, "order_mode": mode},
            )
        if pos is None:
            total, avg = amount, price
        else:
            total = pos.amount + amount
            avg = (pos.amount * pos.entry_price + amount * price) / total
        if mode == "isolated":
            margin = amount * price / intent.leverage
            if pos is not None:
                margin += position_margin(pos)
            liq = liquidation_price(
                side=intent.side,
                amount=total,
                entry_price=avg,
                margin_mode="isolated",
                wallet_balance=margin,
                tiers=market.tiers,
                liquidation_fee_rate=market.liquidation_fee_rate,
            )
        else:
            mm_all, upnl_all, isolated = account_view(ctx).cross_totals()
            if pos is not None:
                mm_all -= position_maintenance_margin(
                    pos.amount, pos.entry_price, mark, market.tiers, market.liquidation_fee_rate
                )
                upnl_all -= pos.unrealized_pnl(mark)
            liq = liquidation_price(
                side=intent.side,
                amount=total,
                entry_price=avg,
                margin_mode="cross",
                wallet_balance=ctx.account.wallet_balance - isolated,
                tiers=market.tiers,
                other_maint_margin=mm_all,
                other_unrealized_pnl=upnl_all,
                liquidation_fee_rate=market.liquidation_fee_rate,
            )
        stop = intent.stop_price
        if liq is None:
            return self.allow({"liq_price": None, "mark": mark, "stop": stop})
        distance = liq_distance_pct(s, mark, liq)
        figures: dict[str, Figure] = {
            "liq_price": liq,
            "mark": mark,
            "distance_pct": distance,
            "min_distance_pct": cfg.min_distance_pct,
            "stop": stop,
            "stop_buffer_pct": cfg.stop_buffer_pct,
        }
        if distance < cfg.min_distance_pct:
            return self.reject(
                "liq_too_close",
                f"liquidation at {liq:g} is {distance:.2f}% from mark, "
                f"minimum {cfg.min_distance_pct:g}%",
                figures,
            )
        if stop is not None:
            required = liq * self.stop_factor[0 if s > 0 else 1]
            buffer = s * (stop / liq - 1.0) * 100.0
            figures["stop_limit"] = required
            figures["buffer_pct"] = buffer
            if s * (stop - required) < 0.0:
                return self.reject(
                    "stop_beyond_liquidation",
                    f"stop {stop:g} is {buffer:.2f}% from liquidation at {liq:g}, "
                    f"needs {cfg.stop_buffer_pct:g}%",
                    figures,
                )
        return self.allow(figures)

    def calm(self, ctx: GuardContext) -> Calm | None:
        """Each isolated position is calm while its mark stays farther from its liquidation
        price than the reduce zone (the circuit breaker's wider one when the breaker is on,
        since it may open meanwhile). A cross position beside others moves with their marks:
        no promise."""
        positions = ctx.account.positions
        breaker = self.breaker
        zone = self.config.reduce_at_pct
        if breaker.enabled:
            zone = max(zone, breaker.tighten_reduce_at_pct)
        bands: dict[str, tuple[float, float]] = {}
        for symbol, p in positions.items():
            market = ctx.markets.get(symbol)
            if market is None or (p.margin_mode == "cross" and len(positions) > 1):
                return None
            try:
                if p.margin_mode == "isolated":
                    liq = self.env.liquidations.isolated(p, market)
                else:
                    liq = position_liquidation(p, ctx, account_view(ctx), self.env.liquidations)
            except (KeyError, ValueError):
                return None
            if liq is None:
                continue
            if p.sign > 0:  # distance (mark - liq) / mark > zone  <=>  mark > liq / (1 - zone)
                bands[symbol] = (liq / (1.0 - zone / 100.0), math.inf)
            else:  # (liq - mark) / mark > zone  <=>  mark < liq / (1 + zone)
                bands[symbol] = (-math.inf, liq / (1.0 + zone / 100.0))
        return Calm(bands=bands)

    def sweep(self, ctx: GuardContext) -> list[Action]:
        cfg = self.config
        view = account_view(ctx)
        now = ctx.now
        breaker = self.breaker
        memo = self.env.liquidations
        symbols = self.state.symbols
        tighten = breaker.tighten_reduce_at_pct if breaker.enabled else 0.0
        reduce_at_pct = cfg.reduce_at_pct
        marks = ctx.marks
        markets = ctx.markets
        isolated = memo.isolated
        actions: list[Action] = []
        for symbol, p in ctx.account.positions.items():
            mark_obj = marks.get(symbol)
            market = markets.get(symbol)
            if mark_obj is None or market is None:
                continue  # the engine reports missing data
            try:
                if p.margin_mode == "isolated":  # the common case, straight to the memo
                    liq = isolated(p, market)
                else:
                    liq = position_liquidation(p, ctx, view, memo)
            except (KeyError, ValueError) as exc:
                actions.append(
                    self.action(
                        "halt",
                        symbol,
                        "rule_error",
                        f"liquidation price unavailable: {type(exc).__name__}: {exc}",
                    )
                )
                continue
            if liq is None:
                continue
            mark = mark_obj.price
            sign = 1 if p.side == "long" else -1  # Position.sign
            distance = liq_distance_pct(sign, mark, liq)
            reduce_at = reduce_at_pct
            if distance > reduce_at and distance > tighten:
                continue
            sub = symbols.get(symbol)
            breaker_open = tighten > 0.0 and sub is not None and sub.breaker_until > now
            if breaker_open:
                reduce_at = max(reduce_at, tighten)
            figures: dict[str, Figure] = {
                "liq_price": liq,
                "mark": mark,
                "distance_pct": distance,
                "reduce_at_pct": reduce_at,
                "close_at_pct": cfg.close_at_pct,
                "breaker_open": breaker_open,
            }
            if distance <= cfg.close_at_pct:
                actions.append(
                    self.action(
                        "close",
                        symbol,
                        "liq_close",
                        f"mark {distance:.2f}% from liquidation at {liq:g}",
                        amount=p.amount,
                        figures=figures,
                    )
                )
            elif distance <= reduce_at:
                amount = floor_to_step(p.amount * cfg.reduce_fraction, market.amount_step)
                rest = p.amount - amount
                kind: ActionKind
                if below_minimum(market, amount, mark) or (
                    rest > 0.0 and below_minimum(market, rest, mark)
                ):
                    kind, code, amount = "close", "liq_close", p.amount
                else:
                    kind, code = "reduce", "liq_reduce"
                actions.append(
                    self.action(
                        kind,
                        symbol,
                        code,
                        f"mark {distance:.2f}% from liquidation at {liq:g} "
                        f"(reduce at {reduce_at:g}%)",
                        amount=amount,
                        figures=figures,
                    )
                )
        return actions
