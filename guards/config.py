"""``GuardsConfig``: the guard layer's whole configuration, composed of one model per rule.

Each rule's model lives in the rule's own module (``guards/rules/<name>.py``); this module only
composes them, adds the engine-level knobs and cross-rule checks. Embedded in the bot's settings
at key ``guards`` (TOML ``[guards.position_cap]``, env
``GUARDBOT_GUARDS__POSITION_CAP__MAX_LEVERAGE=3``).
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from guards.rules.anti_top_up import AntiTopUpConfig
from guards.rules.base import RuleConfig
from guards.rules.circuit_breaker import CircuitBreakerConfig
from guards.rules.liquidation import LiquidationConfig
from guards.rules.loss_limit import LossLimitConfig
from guards.rules.no_overnight import NoOvernightConfig
from guards.rules.overtrading import OvertradingConfig
from guards.rules.position_cap import PositionCapConfig
from guards.rules.stop_loss import StopLossConfig
from guards.rules.trend import TrendConfig

P = TypeVar("P", bound=RuleConfig)


class GuardsConfig(BaseModel):
    """Engine knobs plus one table per rule (field name = rule name)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stale_price_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="refuse orders when a mark price is older than this (s)",
    )
    sweep_s: float = Field(
        default=10.0, gt=0, le=3600, description="seconds between scheduled sweeps"
    )
    position_cap: PositionCapConfig = Field(
        default_factory=PositionCapConfig, description="leverage, margin and position caps"
    )
    stop_loss: StopLossConfig = Field(
        default_factory=StopLossConfig, description="mandatory stop and risk per trade"
    )
    liquidation: LiquidationConfig = Field(
        default_factory=LiquidationConfig, description="distance to the liquidation price"
    )
    no_overnight: NoOvernightConfig = Field(
        default_factory=NoOvernightConfig, description="flat overnight in the user's time zone"
    )
    anti_top_up: AntiTopUpConfig = Field(
        default_factory=AntiTopUpConfig, description="no averaging down, cooldown after stop-outs"
    )
    overtrading: OvertradingConfig = Field(
        default_factory=OvertradingConfig, description="entry rate limits"
    )
    loss_limit: LossLimitConfig = Field(
        default_factory=LossLimitConfig, description="daily loss and drawdown halts"
    )
    trend: TrendConfig = Field(
        default_factory=TrendConfig, description="EMA trend and falling-knife filter (off)"
    )
    circuit_breaker: CircuitBreakerConfig = Field(
        default_factory=CircuitBreakerConfig, description="pause entries during violent moves"
    )

    @model_validator(mode="after")
    def _cross_rule(self) -> GuardsConfig:
        if self.circuit_breaker.tighten_reduce_at_pct < self.liquidation.reduce_at_pct:
            raise ValueError(
                "circuit_breaker.tighten_reduce_at_pct must be ≥ liquidation.reduce_at_pct "
                f"({self.circuit_breaker.tighten_reduce_at_pct} < "
                f"{self.liquidation.reduce_at_pct})"
            )
        return self

    def rule_config(self, name: str) -> RuleConfig:
        """The config of rule ``name`` (a field of this model)."""
        value = getattr(self, name)
        if not isinstance(value, RuleConfig):
            raise KeyError(name)
        return value

    def peer(self, model: type[P]) -> P:
        """The config of the rule whose config class is ``model`` (KeyError if none).

        What rules read another rule's settings through (``RuleEnv.peer``), so the rule base
        never needs to know this model.
        """
        for name in type(self).model_fields:
            value = getattr(self, name)
            if type(value) is model and isinstance(value, model):  # exact class; narrows
                return value
        raise KeyError(model.__name__)
