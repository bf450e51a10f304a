"""stop_loss: every position has a stop, and the loss at the stop is bounded.

Pre-trade, for an opening or increasing order:

- the order must carry a stop; an add to a position with a live stop without one of its own
  keeps the position's stop (``stop_inherited``); otherwise ``missing="reject"`` refuses it
  (``stop_missing``), or, with
  ``missing="attach"``, one is attached ``default_stop_pct`` % from the entry price (rounded to the
  market's price step away from entry) and the order is then sized and checked as if it had it;
- the stop must be on the losing side of the entry price (``stop_wrong_side``); the entry price is
  the limit price of a limit order, else the mark;
- the loss at the stop, fees included, for the position after the order —
  ``existing: q0*(s*(E0 - S) + fee*S)`` plus ``new: q*(s*(E - S) + fee*E + fee*S)`` with ``fee``
  the taker rate (entry and stop exit both charged as taker) — must be ≤ ``max_risk_pct`` % of
  equity. On breach, ``on_breach="resize"`` shrinks the amount (rounded down to the amount step)
  so the loss fits (``risk_too_high`` resize; refused as ``below_min_amount`` if that lands below
  the market minimum, as ``risk_too_high`` if nothing fits); ``"reject"`` refuses
  (``risk_too_high``). Sizing here means position_cap only ever shrinks the order further, so
  the risk cap still holds after it.
- a take-profit, when given, must be on the winning side (``take_profit_wrong_side``);
  ``require_take_profit`` refuses an order without one (``take_profit_missing``); with
  ``min_reward_risk`` > 0, ``|TP - E| / |E - S|`` must reach it (``reward_risk_low``, and a
  take-profit is then required).

Sweep: every open position must have a live stop (``Position.stop_price``). For one without, a
``place_stop`` action carries the planned stop of its last approved entry (if still on the losing
side of the mark) or ``default_stop_pct`` from the entry price, moved no closer to liquidation
than ``liquidation.stop_buffer_pct``. If the mark has already passed that stop the action is
``close`` (``stop_passed``). If the shell cannot place a stop it must close the position. The
placement is ``guards.stops.protective_stop``, the same code ``GuardEngine.protective_stop`` and
``GuardEngine.missing_stops`` run for the shell.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from guards.calm import ALWAYS, Calm
from guards.rules.base import (
    SET_STOP,
    STOP_ATTACHED,
    STOP_INHERITED,
    Rule,
    RuleConfig,
    RuleEnv,
    account_view,
    below_minimum,
    entry_price,
    floor_to_step,
)
from guards.rules.liquidation import LiquidationConfig
from guards.stops import STOP_LOSS, StopPolicy, default_stop_price, missing_stops
from guards.types import Action, Figure, GuardContext, OrderIntent, Verdict

_EPS = 1e-9


class StopLossConfig(RuleConfig):
    max_risk_pct: float = Field(
        default=1.0, gt=0, le=100, description="loss at the stop, fees included, % of equity"
    )
    missing: Literal["reject", "attach"] = Field(
        default="reject", description="an order without a stop: reject it, or attach a default stop"
    )
    default_stop_pct: float = Field(
        default=2.0,
        gt=0,
        lt=100,
        description="distance of an attached or re-placed stop, % of entry",
    )
    require_take_profit: bool = Field(
        default=False, description="refuse orders without a take-profit"
    )
    min_reward_risk: float = Field(
        default=0.0, ge=0, le=100, description="minimum |TP - entry| / |entry - stop| (0 = off)"
    )
    on_breach: Literal["resize", "reject"] = Field(
        default="resize", description="risk above the cap: resize the order to fit, or reject it"
    )


class StopLoss(Rule[StopLossConfig]):
    name = STOP_LOSS
    config_model = StopLossConfig

    def __init__(self, config: StopLossConfig, env: RuleEnv) -> None:
        super().__init__(config, env)
        #: Where a missing stop goes; the buffer is the liquidation rule's setting.
        self.policy = StopPolicy(
            default_stop_pct=config.default_stop_pct,
            stop_buffer_pct=env.peer(LiquidationConfig).stop_buffer_pct,
        )

    def check(self, intent: OrderIntent, ctx: GuardContext) -> Verdict:
        cfg = self.config
        symbol = intent.symbol
        market = ctx.markets[symbol]
        price = entry_price(intent, ctx.marks[symbol].price)
        s = 1 if intent.side == "long" else -1
        pos = ctx.account.positions.get(symbol)
        stop = intent.stop_price
        adjust = ""  # how the stop was supplied when the order has none
        if stop is None and pos is not None and pos.stop_price is not None:
            stop, adjust = pos.stop_price, STOP_INHERITED
        elif stop is None:
            if cfg.missing == "reject":
                return self.reject("stop_missing", "an opening order must carry a stop-loss")
            stop = default_stop_price(price, s, cfg.default_stop_pct, market.price_step)
            adjust = STOP_ATTACHED
        distance = s * (price - stop)
        if distance <= 0.0 or stop <= 0.0:
            return self.reject(
                "stop_wrong_side",
                f"stop {stop:g} is not on the losing side of entry {price:g}",
                {"entry": price, "stop": stop, "side": intent.side},
            )
        tp = intent.take_profit
        if tp is not None and s * (tp - price) <= 0.0:
            return self.reject(
                "take_profit_wrong_side",
                f"take-profit {tp:g} is not on the winning side of entry {price:g}",
                {"entry": price, "take_profit": tp},
            )
        if tp is None and (cfg.require_take_profit or cfg.min_reward_risk > 0.0):
            return self.reject("take_profit_missing", "an opening order must carry a take-profit")
        if tp is not None and cfg.min_reward_risk > 0.0:
            ratio = s * (tp - price) / distance
            if ratio < cfg.min_reward_risk:
                return self.reject(
                    "reward_risk_low",
                    f"reward/risk {ratio:.2f} below {cfg.min_reward_risk:g}",
                    {"reward_risk": ratio, "min_reward_risk": cfg.min_reward_risk},
                )
        equity = account_view(ctx).equity
        if equity <= 0.0:
            return self.reject("no_equity", f"equity {equity:.2f} ≤ 0", {"equity": equity})
        fee = market.taker_fee
        budget = cfg.max_risk_pct / 100.0 * equity
        base_loss = 0.0 if pos is None else pos.amount * (s * (pos.entry_price - stop) + fee * stop)
        per_unit = distance + fee * (price + stop)
        requested = intent.amount
        risk = base_loss + requested * per_unit
        figures: dict[str, Figure] = {
            "entry": price,
            "stop": stop,
            "stop_distance_pct": distance / price * 100.0,
            "risk": risk,
            "risk_pct": risk / equity * 100.0,
            "max_risk_pct": cfg.max_risk_pct,
            "risk_budget": budget,
            "equity": equity,
        }
        if adjust:
            figures[SET_STOP] = stop
        if risk <= budget * (1.0 + _EPS):
            if adjust:
                return self.resize(requested, adjust, f"{adjust[5:]} stop {stop:g}", figures)
            return self.allow(figures)
        if cfg.on_breach == "reject":
            return self.reject(
                "risk_too_high",
                f"loss at stop {risk:.2f} above {cfg.max_risk_pct:g}% of equity ({budget:.2f})",
                figures,
            )
        fit = (budget - base_loss) / per_unit
        amount = floor_to_step(fit, market.amount_step) if fit > 0.0 else 0.0
        if amount <= 0.0:
            return self.reject(
                "risk_too_high",
                f"no size fits: loss already at stop {base_loss:.2f} vs budget {budget:.2f}",
                figures,
            )
        if below_minimum(market, amount, price):
            return self.reject(
                "below_min_amount",
                f"risk-sized amount {amount:g} below the market minimum",
                {
                    **figures,
                    "amount": amount,
                    "min_amount": market.min_amount,
                    "min_notional": market.min_notional,
                },
            )
        figures["requested_amount"] = requested
        figures["amount"] = amount
        risk = base_loss + amount * per_unit
        figures["risk"] = risk
        figures["risk_pct"] = risk / equity * 100.0
        return self.resize(
            amount,
            "risk_too_high",
            f"resized {requested:g} → {amount:g} so the loss at the stop fits "
            f"{cfg.max_risk_pct:g}% of equity",
            figures,
        )

    def sweep(self, ctx: GuardContext) -> list[Action]:
        return missing_stops(ctx, self.policy, self.state, self.env.liquidations)

    def calm(self, ctx: GuardContext) -> Calm | None:
        """Calm while every position keeps its stop (the account does not change)."""
        if any(p.stop_price is None for p in ctx.account.positions.values()):
            return None
        return ALWAYS
