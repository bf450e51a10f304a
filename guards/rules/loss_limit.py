"""loss_limit: stop digging — daily loss and drawdown limits that flatten and halt.

Equity is wallet balance + unrealised PnL at marks, so the daily loss counts realised and
unrealised losses alike. The trading day starts at ``day_reset`` on the local wall clock of
``timezone``; its baseline is the first equity the engine observes in that day (``on_equity``
or a sweep). Deposits and withdrawals move equity too: restart the day (``resume``) after one.

- daily loss % = (baseline − equity) / baseline × 100; beyond (>) ``max_daily_loss_pct`` the
  sweep halts entries until the next daily reset (halt kind ``daily``) and closes everything;
- drawdown % = (peak − equity) / peak × 100 with peak the highest equity seen; beyond
  ``max_drawdown_pct`` the sweep halts until ``GuardEngine.resume()`` (kind ``drawdown``) and
  closes everything;
- while either halt is active the sweep keeps closing positions and cancelling resting entries.

Pre-trade: entries are refused while a halt is active (the engine's ``halt`` check, which also
covers manual halts) and when the limits are already breached at this context though no sweep
has run yet (``daily_loss_limit``, ``drawdown_limit``).
"""

from __future__ import annotations

from pydantic import Field, field_validator

from guards.calm import Calm
from guards.rules.base import Rule, RuleConfig, RuleEnv, account_view
from guards.rules.clock import HHMM_PATTERN, check_timezone
from guards.state import Halt
from guards.types import Action, GuardContext, OrderIntent, Verdict


class LossLimitConfig(RuleConfig):
    max_daily_loss_pct: float = Field(
        default=3.0,
        gt=0,
        le=100,
        description="loss in one trading day, % of the day's start equity",
    )
    max_drawdown_pct: float = Field(
        default=10.0,
        gt=0,
        le=100,
        description="fall from peak equity, %; halts until resumed by hand",
    )
    day_reset: str = Field(
        default="00:00", pattern=HHMM_PATTERN, description="local HH:MM the trading day starts"
    )
    timezone: str = Field(
        default="UTC", description="IANA time zone of day_reset (also anti_top_up's day)"
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_timezone(value)


def loss_pct(reference: float | None, equity: float) -> float:
    """How far ``equity`` is below ``reference``, % of reference (0 without a reference)."""
    if reference is None or reference <= 0.0:
        return 0.0
    return (reference - equity) / reference * 100.0


class LossLimit(Rule[LossLimitConfig]):
    name = "loss_limit"
    config_model = LossLimitConfig

    def __init__(self, config: LossLimitConfig, env: RuleEnv) -> None:
        super().__init__(config, env)
        self.day = env.day

    def check(self, intent: OrderIntent, ctx: GuardContext) -> Verdict:
        cfg = self.config
        state = self.state
        equity = account_view(ctx).equity
        baseline = state.day_start_equity if state.day_key == self.day.key(ctx.now) else None
        peak = state.equity_peak
        if peak is None or equity > peak:
            peak = equity
        daily = loss_pct(baseline, equity)
        drawdown = loss_pct(peak, equity)
        figures = {
            "equity": equity,
            "day_start_equity": baseline,
            "daily_loss_pct": daily,
            "equity_peak": peak,
            "drawdown_pct": drawdown,
        }
        if drawdown > cfg.max_drawdown_pct:
            return self.reject(
                "drawdown_limit",
                f"drawdown {drawdown:.2f}% beyond {cfg.max_drawdown_pct:g}%",
                figures,
            )
        if daily > cfg.max_daily_loss_pct:
            return self.reject(
                "daily_loss_limit",
                f"daily loss {daily:.2f}% beyond {cfg.max_daily_loss_pct:g}%",
                figures,
            )
        return self.allow(figures)

    def calm(self, ctx: GuardContext) -> Calm | None:
        """Calm while the equity stays above both floors (the engine reads them against the
        day's start equity and the peak at the time); a daily or drawdown halt with positions
        or resting entries to close is never calm."""
        if account_view(ctx).missing_mark is not None:
            return None
        active = self.state.active_halt(ctx.now)
        halted = active is not None and active.kind in ("daily", "drawdown")
        if halted and (ctx.account.positions or any(ctx.open_entry_orders.values())):
            return None
        cfg = self.config
        return Calm(
            loss_limits=(1.0 - cfg.max_daily_loss_pct / 100.0, 1.0 - cfg.max_drawdown_pct / 100.0)
        )

    def sweep(self, ctx: GuardContext) -> list[Action]:
        cfg = self.config
        state = self.state
        now = ctx.now
        view = account_view(ctx)
        actions: list[Action] = []
        if view.missing_mark is None:  # equity is only trustworthy with every mark present
            equity = view.equity
            daily = loss_pct(state.day_start_equity, equity)
            drawdown = loss_pct(state.equity_peak, equity)
            halt = None
            if drawdown > cfg.max_drawdown_pct:
                reason = f"drawdown {drawdown:.2f}% beyond {cfg.max_drawdown_pct:g}%"
                halt = Halt("drawdown", reason, now, None)
            elif daily > cfg.max_daily_loss_pct:
                reason = f"daily loss {daily:.2f}% beyond {cfg.max_daily_loss_pct:g}%"
                halt = Halt("daily", reason, now, self.env.day.next_reset(now))
            if halt is not None and state.set_halt(halt):
                code = "drawdown_limit" if halt.kind == "drawdown" else "daily_loss_limit"
                figures = {
                    "equity": equity,
                    "daily_loss_pct": daily,
                    "drawdown_pct": drawdown,
                    "until": halt.until,
                }
                actions.append(self.action("halt", None, code, halt.reason, figures=figures))
        active = state.active_halt(now)
        if active is not None and active.kind in ("daily", "drawdown"):
            reason = f"halted ({active.kind}): {active.reason}"
            actions.extend(
                self.action("cancel_entries", symbol, "halted", reason)
                for symbol, count in ctx.open_entry_orders.items()
                if count > 0
            )
            actions.extend(
                self.action("close", symbol, "halted", reason, amount=p.amount)
                for symbol, p in ctx.account.positions.items()
            )
        return actions
