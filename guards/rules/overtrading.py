"""overtrading: a ceiling on how often the bot may enter.

Pre-trade, against the engine's record of approved entries (opening or increasing orders,
counted when ``GuardEngine.approve`` seals them):

- fewer than ``max_entries_per_hour`` entries in the rolling hour before now (``rate_hour``);
- fewer than ``max_entries_per_day`` in the rolling 24 hours before now (``rate_day``);
- at least ``min_seconds_between_entries`` since the last entry (``rate_spacing``).

An entry at time t counts in a window while ``now - t < window``. Rolling windows (not calendar
days) keep the rule free of resets. Sweep: none.
"""

from __future__ import annotations

from bisect import bisect_right

from pydantic import Field

from guards.rules.base import Rule, RuleConfig
from guards.types import GuardContext, OrderIntent, Verdict

HOUR_S = 3600.0
DAY_S = 86_400.0


class OvertradingConfig(RuleConfig):
    max_entries_per_hour: int = Field(
        default=4, ge=1, le=10000, description="entries in a rolling hour"
    )
    max_entries_per_day: int = Field(
        default=12, ge=1, le=100000, description="entries in a rolling 24 hours"
    )
    min_seconds_between_entries: float = Field(
        default=60.0, ge=0, le=86400, description="seconds from one entry to the next"
    )


class Overtrading(Rule[OvertradingConfig]):
    name = "overtrading"
    config_model = OvertradingConfig

    def check(self, intent: OrderIntent, ctx: GuardContext) -> Verdict:
        cfg = self.config
        now = ctx.now
        entries = self.state.entries
        last = self.state.last_entry_ts
        if last is not None and now - last < cfg.min_seconds_between_entries:
            return self.reject(
                "rate_spacing",
                f"last entry {now - last:.0f} s ago, minimum {cfg.min_seconds_between_entries:g} s",
                {"since_last_s": now - last, "min_s": cfg.min_seconds_between_entries},
            )
        in_hour = len(entries) - bisect_right(entries, now - HOUR_S)
        if in_hour >= cfg.max_entries_per_hour:
            return self.reject(
                "rate_hour",
                f"{in_hour} entries in the last hour (max {cfg.max_entries_per_hour})",
                {"count": in_hour, "max": cfg.max_entries_per_hour},
            )
        in_day = len(entries) - bisect_right(entries, now - DAY_S)
        if in_day >= cfg.max_entries_per_day:
            return self.reject(
                "rate_day",
                f"{in_day} entries in the last 24 h (max {cfg.max_entries_per_day})",
                {"count": in_day, "max": cfg.max_entries_per_day},
            )
        return self.allow({"entries_hour": in_hour, "entries_day": in_day})
