"""no_overnight: be flat overnight in the user's time zone.

All times are read on the local wall clock of ``timezone`` (IANA name, ``zoneinfo``):

- entries are refused (``session_closed``) from ``no_entries_before`` minutes before ``flat_by``
  until ``resume_at``: local minute of day in [flat_by − no_entries_before, resume_at), a window
  that may wrap past midnight;
- the sweep, from ``flat_by`` until ``resume_at``, cancels resting entry orders
  (``cancel_entries`` for each symbol in ``ctx.open_entry_orders``) and closes every position
  (``session_flat``).

DST: comparisons are on the wall clock, so on a spring-forward day a skipped ``flat_by`` takes
effect at the first instant after the gap, and on a fall-back day the window follows the clock
(a repeated hour is inside the window on both passes if its wall time is). "Minutes before" are
wall-clock minutes. Both answers are kept until the next of the three times (or change of UTC
offset) on the wall clock (``WallSegments``), so the hot path does no time-zone arithmetic.
"""

from __future__ import annotations

import math

from pydantic import Field, field_validator, model_validator

from guards.calm import Calm
from guards.rules.base import Rule, RuleConfig, RuleEnv
from guards.rules.clock import (
    HHMM_PATTERN,
    MINUTES_PER_DAY,
    LocalClock,
    WallSegments,
    check_timezone,
    in_daily_window,
    local_text,
    parse_hhmm,
)
from guards.types import Action, GuardContext, OrderIntent, Verdict


class NoOvernightConfig(RuleConfig):
    timezone: str = Field(
        default="UTC", description="IANA time zone of the trading day, e.g. Europe/Berlin"
    )
    flat_by: str = Field(
        default="22:00",
        pattern=HHMM_PATTERN,
        description="local HH:MM by which every position is closed",
    )
    no_entries_before: int = Field(
        default=60, ge=0, le=1439, description="refuse entries this many minutes before flat_by"
    )
    resume_at: str = Field(
        default="06:00",
        pattern=HHMM_PATTERN,
        description="local HH:MM from which entries are allowed again",
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_timezone(value)

    @model_validator(mode="after")
    def _session(self) -> NoOvernightConfig:
        flat = parse_hhmm(self.flat_by)
        resume = parse_hhmm(self.resume_at)
        if flat == resume:
            raise ValueError("flat_by and resume_at must differ")
        open_minutes = (flat - resume) % MINUTES_PER_DAY
        if self.no_entries_before >= open_minutes:
            raise ValueError(
                f"no_entries_before ({self.no_entries_before} min) must be shorter than the "
                f"session from resume_at to flat_by ({open_minutes} min)"
            )
        return self


class NoOvernight(Rule[NoOvernightConfig]):
    name = "no_overnight"
    config_model = NoOvernightConfig

    def __init__(self, config: NoOvernightConfig, env: RuleEnv) -> None:
        super().__init__(config, env)
        self.clock = LocalClock(config.timezone)
        self.flat = parse_hhmm(config.flat_by)
        self.resume = parse_hhmm(config.resume_at)
        self.cutoff = (self.flat - config.no_entries_before) % MINUTES_PER_DAY
        #: The local day cut at the three times the answers change; answers kept until then.
        self.wall = WallSegments(config.timezone, (self.cutoff, self.flat, self.resume))
        self._lo = math.inf
        self._hi = -math.inf
        self._closed = False
        self._flat = False

    def _refresh(self, now: float) -> None:
        wall = self.wall
        part = wall.at(now)[1]
        self._closed = in_daily_window(part, self.cutoff, self.resume)
        self._flat = in_daily_window(part, self.flat, self.resume)
        self._lo = wall.lo
        self._hi = wall.hi

    def entries_closed(self, now: float) -> bool:
        if not self._lo <= now < self._hi:
            self._refresh(now)
        return self._closed

    def flat_window(self, now: float) -> bool:
        if not self._lo <= now < self._hi:
            self._refresh(now)
        return self._flat

    def check(self, intent: OrderIntent, ctx: GuardContext) -> Verdict:
        if not self.entries_closed(ctx.now):
            return self.ok
        cfg = self.config
        return self.reject(
            "session_closed",
            f"no entries from {cfg.no_entries_before} min before {cfg.flat_by} until "
            f"{cfg.resume_at} {cfg.timezone}",
            {
                "local_time": local_text(self.clock.tz, ctx.now),
                "flat_by": cfg.flat_by,
                "resume_at": cfg.resume_at,
                "no_entries_before": cfg.no_entries_before,
            },
        )

    def calm(self, ctx: GuardContext) -> Calm | None:
        """Calm until the session's next edge; inside the flat window only when there is
        nothing to close or cancel."""
        if self.flat_window(ctx.now) and (
            ctx.account.positions or any(ctx.open_entry_orders.values())
        ):
            return None
        return Calm(until=self._hi)

    def sweep(self, ctx: GuardContext) -> list[Action]:
        now = ctx.now
        if not self.flat_window(now):
            return []
        cfg = self.config
        reason = f"flat from {cfg.flat_by} until {cfg.resume_at} {cfg.timezone}"
        figures = {"local_time": local_text(self.clock.tz, ctx.now), "flat_by": cfg.flat_by}
        actions = [
            self.action("cancel_entries", symbol, "session_flat", reason, figures=figures)
            for symbol, count in ctx.open_entry_orders.items()
            if count > 0
        ]
        actions.extend(
            self.action("close", symbol, "session_flat", reason, amount=p.amount, figures=figures)
            for symbol, p in ctx.account.positions.items()
        )
        return actions
