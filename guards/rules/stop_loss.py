"""stop_loss: every position has a stop, and the loss at the stop is bounded.

Pre-trade, for an opening or increasing order:

- the order must carry a stop; an add to a position with a live stop without one of its own
  keeps the position's stop (``stop_inherited``); otherwise ``missing="reject"`` refuses it
  (``stop_missing``), or, with ``missing="attach"``, one is attached ``default_stop_pct`` % from
  the entry price (rounded to the market's price step away from entry) and the order is then
  sized and checked as if it had it;
- the stop must be on the losing side of the entry price (``stop_wrong_side``); the entry price is
  the limit price of a limit order, else the mark;
- the loss at the stop, fees and slippage included, for the position after the order —
  ``existing: -exit_value(position at S)`` plus ``new: q * entry_loss(E, S)`` (``guards.budget``:
  the entry filled at ``E * (1 + s * slip)``, the stop at ``S * (1 - s * slip)``, the taker fee
  on both fills, ``slip = slippage_bps / 1e4``; ``S`` the stop rounded away from entry to the
  market's price step, as the exchange may round it) — must fit the tightest of three budgets:
  ``max_risk_pct`` % of equity (``risk_too_high``) and, with loss_limit enabled, what is left
  of the daily loss budget (``daily_loss_budget``) and of the drawdown budget
  (``drawdown_budget``): the worst case of the account (wallet plus every *other* open position
  closed at its stop, ``guards.budget.loss_budget``) minus the day's floor (day start equity ×
  (1 − ``max_daily_loss_pct`` %)) and the drawdown floor (peak × (1 − ``max_drawdown_pct`` %)).
  On breach, ``on_breach="resize"`` shrinks the amount (rounded down to the amount step) so the
  loss fits, the verdict's code naming the budget that bound; refused as ``below_min_amount``
  if that lands below the market minimum, with the binding code if nothing fits (the figures
  say when entries reopen: ``until`` the daily reset for the daily budget); ``"reject"``
  refuses with the binding code. An open position whose loss no stop bounds (a cross position
  without a stop) refuses entries while loss_limit is on (``open_risk_unbounded``). Sizing
  here means position_cap only ever shrinks the order further, so the caps still hold after it.
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

Then, with loss_limit on and every position stopped, the worst case must stay above both
floors as they move (the peak rises with unrealised gains; the day's baseline is taken anew at
each reset): when it falls below, every stop is moved the same fraction ``f`` of the way to the
mark, ``f = (floor - worst) / (exit_now - worst)`` with ``exit_now`` the wallet after closing
everything at the marks (slippage and fees included), rounded toward the mark
(``place_stop``, ``stop_tightened``); a position whose tightened stop would reach its mark, or
every position when even closing now is below the floor, is closed (``budget_exhausted``).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from guards.budget import (
    DAILY_BUDGET,
    DRAWDOWN_BUDGET,
    BudgetTerms,
    LossBudget,
    StopValues,
    budget_terms,
    entry_loss,
    exit_value,
)
from guards.calm import ALWAYS, Calm
from guards.rules.base import (
    SET_STOP,
    STOP_ATTACHED,
    STOP_INHERITED,
    AccountView,
    Rule,
    RuleConfig,
    RuleEnv,
    account_view,
    below_minimum,
    entry_price,
    floor_to_step,
    round_price_away,
)
from guards.rules.liquidation import LiquidationConfig
from guards.rules.loss_limit import LossLimitConfig
from guards.stops import STOP_LOSS, StopPolicy, default_stop_price, missing_stops
from guards.types import Action, Figure, GuardContext, OrderIntent, Verdict

_EPS = 1e-9
RISK_TOO_HIGH = "risk_too_high"


class StopLossConfig(RuleConfig):
    max_risk_pct: float = Field(
        default=1.0,
        gt=0,
        le=100,
        description="loss at the stop, fees and slippage included, % of equity",
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
    slippage_bps: float = Field(
        default=2.0,
        ge=0,
        le=1000,
        description="adverse slippage of the entry and the stop fill counted in the loss at the "
        "stop, in bps",
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
        limits = env.peer(LossLimitConfig)
        #: The loss limits whose budgets cap the loss at the stop (None: loss_limit is off).
        self.limits: LossLimitConfig | None = limits if limits.enabled else None
        #: What the floors keep of the day's start equity and of the peak (``1 - pct / 100``).
        self.keep = (1.0 - limits.max_daily_loss_pct / 100.0, 1.0 - limits.max_drawdown_pct / 100.0)
        self.slip = config.slippage_bps / 1e4
        self.risk_fraction = config.max_risk_pct / 100.0
        self.day = env.day
        #: The stop values of the last account judged (reused while that account object is)
        self._stops: StopValues | None = None

    def _terms(
        self, ctx: GuardContext, exclude: str | None = None, view: AccountView | None = None
    ) -> BudgetTerms | None:
        """``budget``'s fields as a tuple (``guards.budget.budget_terms``)."""
        if self.limits is None:
            return None
        stops = self._stops
        slip = self.slip
        if stops is None or not stops.fits(ctx, slip):
            stops = self._stops = StopValues(ctx, slip)
        daily_keep, drawdown_keep = self.keep
        return budget_terms(
            ctx, self.state, self.day.key(ctx.now), daily_keep, drawdown_keep, stops, exclude, view
        )

    def budget(self, ctx: GuardContext, exclude: str | None = None) -> LossBudget | None:
        """The loss budget at ``ctx`` (``guards.budget``), None while loss_limit is off."""
        terms = self._terms(ctx, exclude)
        return None if terms is None else LossBudget(*terms)

    def check(self, intent: OrderIntent, ctx: GuardContext) -> Verdict:
        cfg = self.config
        symbol = intent.symbol
        market = ctx.markets[symbol]
        mark = ctx.marks[symbol].price
        price = entry_price(intent, mark)
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
        view = account_view(ctx)
        equity = view.equity
        if equity <= 0.0:
            return self.reject("no_equity", f"equity {equity:.2f} ≤ 0", {"equity": equity})
        fee = market.taker_fee
        slip = self.slip
        budget = self.risk_fraction * equity
        # the exchange puts the stop on its price grid: size for the worse of the two ticks
        at = round_price_away(stop, market.price_step, s)
        base_loss = 0.0 if pos is None else -exit_value(pos, at, fee, slip)
        per_unit = entry_loss(s, price, at, fee, slip)
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
            "slippage_bps": cfg.slippage_bps,
        }
        if adjust:
            figures[SET_STOP] = stop
        cap, binding = budget, RISK_TOO_HIGH
        terms = self._terms(ctx, symbol, view)
        if terms is not None:
            _, worst, base, daily_floor, peak, drawdown_floor, unbounded = terms
            if unbounded is not None:
                return self.reject(
                    "open_risk_unbounded",
                    f"the open {unbounded} position has no stop bounding its loss: the loss "
                    "budget cannot be judged until it has one",
                    {"symbol": unbounded},
                )
            figures.update(_budget_figures(worst, base, daily_floor, peak, drawdown_floor))
            daily_left = worst - daily_floor  # LossBudget.daily_left, .drawdown_left
            drawdown_left = worst - drawdown_floor
            if daily_left < cap:
                cap, binding = daily_left, DAILY_BUDGET
            if drawdown_left < cap:
                cap, binding = drawdown_left, DRAWDOWN_BUDGET
            figures["risk_cap"] = cap
            figures["binding"] = binding
        tol = _EPS * equity
        if risk <= cap + tol:
            if adjust:
                return self.resize(requested, adjust, f"{adjust[5:]} stop {stop:g}", figures)
            return self.allow(figures)
        if binding == DAILY_BUDGET:
            figures["until"] = self.env.day.next_reset(ctx.now)
        what = self._what(binding, cap, None if terms is None else LossBudget(*terms))
        if cfg.on_breach == "reject":
            return self.reject(
                binding, f"loss at the stop {risk:.2f} USDT is above {what}", figures
            )
        fit = (cap - base_loss) / per_unit
        amount = floor_to_step(fit, market.amount_step) if fit > 0.0 else 0.0
        if amount <= 0.0:
            if base_loss > 0.0:
                why = f"the position's own loss at the stop, {base_loss:.2f} USDT, already fills"
            else:
                why = "nothing fits"
            return self.reject(binding, f"no size fits: {why} {what}{_reopens(binding)}", figures)
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
            binding,
            f"resized {requested:g} → {amount:g} so the loss at the stop fits {what}",
            figures,
        )

    def _what(self, binding: str, cap: float, lb: LossBudget | None) -> str:
        """The budget ``binding`` in words, with its figures."""
        if binding == RISK_TOO_HIGH or lb is None:
            return f"{self.config.max_risk_pct:g}% of equity ({cap:.2f} USDT)"
        if binding == DAILY_BUDGET:
            floor, name = lb.daily_floor, "daily loss budget"
        else:
            floor, name = lb.drawdown_floor, "drawdown budget"
        return (
            f"what is left of the {name} ({max(cap, 0.0):.2f} USDT: worst case at the stops "
            f"{lb.worst_equity:.2f}, floor {floor:.2f})"
        )

    # -- sweep ----------------------------------------------------------------------------
    def sweep(self, ctx: GuardContext) -> list[Action]:
        actions = missing_stops(ctx, self.policy, self.state, self.env.liquidations)
        if actions or self.limits is None or not ctx.account.positions:
            return actions
        return self._tighten(ctx)

    def _tighten(self, ctx: GuardContext) -> list[Action]:
        """Keep the worst case at the stops above the loss limits' floors (module docstring)."""
        terms = self._terms(ctx)
        if terms is None or terms[6] is not None:  # loss_limit off, or an unbounded position
            return []
        worst = terms[1]
        floor = max(terms[3], terms[5])  # LossBudget.floor
        if worst >= floor - _EPS * max(floor, 1.0):
            return []
        lb = LossBudget(*terms)
        positions = ctx.account.positions
        now_value = ctx.account.wallet_balance
        for symbol, p in positions.items():
            mark = ctx.marks.get(symbol)
            market = ctx.markets.get(symbol)
            if mark is None or market is None or p.stop_price is None:
                return []  # the engine reports missing data; a stop is being placed
            if p.sign * (mark.price - p.stop_price) <= 0.0:
                return []  # a stop is triggering: judge again once it has
            now_value += exit_value(p, mark.price, market.taker_fee, self.slip)
        figures: dict[str, Figure] = {
            **_budget_figures(
                lb.worst_equity,
                lb.day_start_equity,
                lb.daily_floor,
                lb.equity_peak,
                lb.drawdown_floor,
            ),
            "binding": lb.binding,
        }
        name = "daily loss" if lb.binding == DAILY_BUDGET else "drawdown"
        if now_value <= floor:
            reason = (
                f"closing now ({now_value:.2f}) is already at the {name} floor ({floor:.2f}): "
                "no stop can keep the worst case above it"
            )
            return [
                self.action("close", symbol, "budget_exhausted", reason, p.amount, None, figures)
                for symbol, p in positions.items()
            ]
        f = (floor - worst) / (now_value - worst)
        figures["fraction"] = f
        actions: list[Action] = []
        for symbol, p in positions.items():
            assert p.stop_price is not None
            at = ctx.marks[symbol].price
            step = ctx.markets[symbol].price_step
            stop = _toward(p.stop_price + f * (at - p.stop_price), step, p.sign)
            if p.sign * (at - stop) <= 0.0:
                reason = f"the stop that keeps the worst case above the {name} floor is the mark"
                actions.append(
                    self.action(
                        "close", symbol, "budget_exhausted", reason, p.amount, None, figures
                    )
                )
                continue
            reason = (
                f"worst case at the stops {worst:.2f} fell below the {name} floor {floor:.2f}: "
                f"stop moved {f * 100:.1f}% of the way to the mark, {p.stop_price:g} → {stop:g}"
            )
            actions.append(
                self.action(
                    "place_stop",
                    symbol,
                    "stop_tightened",
                    reason,
                    stop_price=stop,
                    figures={**figures, "old_stop": p.stop_price, "stop": stop},
                )
            )
        return actions

    def calm(self, ctx: GuardContext) -> Calm | None:
        """Calm while every position keeps its stop (the account does not change) and, with
        loss_limit on, until the next daily reset and while no mark rises far enough for the
        peak to lift the drawdown floor above the worst case (a band per symbol: the room
        ``worst / (1 - dd) - equity`` split evenly among the positions: the equity can rise by
        that much before the peak it makes puts the floor above the worst case)."""
        positions = ctx.account.positions
        if any(p.stop_price is None for p in positions.values()):
            return None
        limits = self.limits
        if limits is None or not positions:
            return ALWAYS
        lb = self.budget(ctx)
        if lb is None or lb.unbounded is not None:
            return None
        keep = 1.0 - limits.max_drawdown_pct / 100.0
        room = (lb.worst_equity / keep - lb.equity) / len(positions)
        if not room > 0.0:
            return None
        bands: dict[str, tuple[float, float]] = {}
        for symbol, p in positions.items():
            mark = ctx.marks.get(symbol)
            if mark is None:
                return None
            move = room / p.amount
            bands[symbol] = (
                (-math.inf, mark.price + move)
                if p.sign > 0
                else (
                    mark.price - move,
                    math.inf,
                )
            )
        return Calm(until=self.env.day.next_reset(ctx.now), bands=bands)


def _budget_figures(
    worst: float, base: float, daily_floor: float, peak: float, drawdown_floor: float
) -> dict[str, Figure]:
    """A loss budget's figures: ``LossBudget``'s fields and what is left of each budget."""
    return {
        "worst_equity": worst,
        "day_start_equity": base,
        "daily_floor": daily_floor,
        "daily_budget_left": worst - daily_floor,
        "equity_peak": peak,
        "drawdown_floor": drawdown_floor,
        "drawdown_budget_left": worst - drawdown_floor,
    }


def _reopens(binding: str) -> str:
    if binding == DAILY_BUDGET:
        return "; entries reopen at the daily reset"
    if binding == DRAWDOWN_BUDGET:
        return "; entries reopen when open positions close above their stops, or after a resume"
    return ""


def _toward(price: float, step: float, sign: int) -> float:
    """``price`` rounded to ``step`` toward the mark (up for a long's stop, down for a short)."""
    if step <= 0.0:
        return price
    units = math.ceil(price / step - 1e-9) if sign > 0 else math.floor(price / step + 1e-9)
    return round(units * step, 12)
