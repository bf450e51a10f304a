"""The rule registry: name → rule class, in the engine's fixed evaluation order.

Order: halts (loss_limit; the engine checks manual and active halts first), then — after the
engine's data-freshness check — session, rate limits, top-up, trend/breaker, stop-loss, caps
with resize, and liquidation on the final size. Adding a rule = one module with the rule and
its config + one line here + one field in ``guards.config.GuardsConfig``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from guards.rules.anti_top_up import AntiTopUp
from guards.rules.base import Rule
from guards.rules.circuit_breaker import CircuitBreaker
from guards.rules.liquidation import Liquidation
from guards.rules.loss_limit import LossLimit
from guards.rules.no_overnight import NoOvernight
from guards.rules.overtrading import Overtrading
from guards.rules.position_cap import PositionCap
from guards.rules.stop_loss import StopLoss
from guards.rules.trend import Trend

REGISTRY: Mapping[str, type[Rule[Any]]] = MappingProxyType(
    {
        "loss_limit": LossLimit,
        "no_overnight": NoOvernight,
        "overtrading": Overtrading,
        "anti_top_up": AntiTopUp,
        "trend": Trend,
        "circuit_breaker": CircuitBreaker,
        "stop_loss": StopLoss,
        "position_cap": PositionCap,
        "liquidation": Liquidation,
    }
)

__all__ = ["REGISTRY", "Rule"]
