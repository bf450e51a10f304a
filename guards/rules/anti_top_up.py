"""anti_top_up: no margin top-ups, no averaging down, no stubborn re-entries.

Pre-trade:

- ``kind="add_margin"`` is refused unless ``allow_add_margin`` (``add_margin_refused``);
- increasing a position that is not in profit at the mark (unrealised PnL ≤ 0: averaging down)
  is refused (``top_up_losing``); a winner may be added to at most ``max_adds`` times
  (``Position.adds``, ``max_adds``);
- after a stop-out or guard close on a symbol (``GuardEngine.on_position_closed`` with reason
  ``stop`` at a loss, ``guard`` or ``liquidation``) entries on it wait ``cooldown_min``
  (``cooldown``);
- after ``max_stopouts_per_day`` such closes in one trading day, every entry is refused until
  the daily reset (``stopouts_exhausted``). The trading day is the one of loss_limit
  (``loss_limit.timezone``, ``loss_limit.day_reset``);
- the limit is a bound, not a tripwire: every open position may still stop out, so a new
  position is refused while the stop-outs so far plus the open positions plus this one would
  exceed ``max_stopouts_per_day`` (``stopouts_budget``; an add to an open position adds no
  stop-out). A run of stop-outs can then never go past the limit within one trading day.

Sweep: none (the cooldown and counter are fed by the engine's ``on_position_closed``).
"""

from __future__ import annotations

from pydantic import Field

from guards.rules.base import Rule, RuleConfig
from guards.types import GuardContext, OrderIntent, Verdict


class AntiTopUpConfig(RuleConfig):
    max_adds: int = Field(default=1, ge=0, le=100, description="adds allowed to a winning position")
    cooldown_min: float = Field(
        default=60.0, ge=0, le=10080, description="minutes a symbol is blocked after a stop-out"
    )
    max_stopouts_per_day: int = Field(
        default=3,
        ge=1,
        le=1000,
        description="stop-outs in a trading day before entries halt to reset",
    )
    allow_add_margin: bool = Field(
        default=False, description="allow adding isolated margin to a position"
    )


class AntiTopUp(Rule[AntiTopUpConfig]):
    name = "anti_top_up"
    config_model = AntiTopUpConfig
    handles_add_margin = True

    def check(self, intent: OrderIntent, ctx: GuardContext) -> Verdict:
        cfg = self.config
        symbol = intent.symbol
        if intent.kind == "add_margin":
            if cfg.allow_add_margin:
                return self.ok
            return self.reject(
                "add_margin_refused",
                "adding isolated margin is disabled (allow_add_margin = false)",
                {"margin_amount": intent.margin_amount},
            )
        now = ctx.now
        state = self.state
        day = self.env.day
        if state.stopouts_today >= cfg.max_stopouts_per_day and state.day_key == day.key(now):
            return self.reject(
                "stopouts_exhausted",
                f"{state.stopouts_today} stop-outs today (max {cfg.max_stopouts_per_day}): "
                "no entries until the daily reset",
                {
                    "stopouts_today": state.stopouts_today,
                    "max_stopouts_per_day": cfg.max_stopouts_per_day,
                    "until": day.next_reset(now),
                },
            )
        sub = state.symbols.get(symbol)
        if sub is not None and sub.cooldown_until > now:
            return self.reject(
                "cooldown",
                f"{symbol} cooling down after {sub.cooldown_reason or 'a stop-out'} "
                f"for {sub.cooldown_until - now:.0f} s more",
                {"until": sub.cooldown_until, "remaining_s": sub.cooldown_until - now},
            )
        positions = ctx.account.positions
        pos = positions.get(symbol)
        if pos is None:
            today = state.stopouts_today if state.day_key == day.key(now) else 0
            possible = today + len(positions) + 1
            if possible > cfg.max_stopouts_per_day:
                return self.reject(
                    "stopouts_budget",
                    f"{today} stop-out(s) today and {len(positions)} open position(s) that may "
                    f"still stop out: another position could make {possible} "
                    f"(max {cfg.max_stopouts_per_day}); entries reopen when a position closes "
                    "without a stop-out, or at the daily reset",
                    {
                        "stopouts_today": today,
                        "open_positions": len(positions),
                        "max_stopouts_per_day": cfg.max_stopouts_per_day,
                        "until": day.next_reset(now),
                    },
                )
            return self.ok
        mark = ctx.marks[symbol].price
        pnl = pos.unrealized_pnl(mark)
        if pnl <= 0.0:
            return self.reject(
                "top_up_losing",
                f"the {pos.side} position is not in profit (uPnL {pnl:.2f}): no averaging down",
                {"unrealized_pnl": pnl, "entry": pos.entry_price, "mark": mark},
            )
        if pos.adds >= cfg.max_adds:
            return self.reject(
                "max_adds",
                f"{pos.adds} adds already (max {cfg.max_adds})",
                {"adds": pos.adds, "max_adds": cfg.max_adds},
            )
        return self.allow({"adds": pos.adds, "max_adds": cfg.max_adds, "unrealized_pnl": pnl})
