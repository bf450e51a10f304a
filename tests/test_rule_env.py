"""What rules are built with: peer rules' configs by class, and the hooks the engine calls."""

from __future__ import annotations

import math

import pytest

from guards.config import GuardsConfig
from guards.engine import GuardEngine
from guards.rules.base import RuleConfig
from guards.rules.circuit_breaker import CircuitBreakerConfig
from guards.rules.liquidation import LiquidationConfig
from guards.types import Account, GuardContext, Mark, MarketRules, Position, Tier

SYM = "TEST/USDT:USDT"
TIERS = (Tier(0.0, math.inf, 0.005, 0.0, 100.0),)
NOW = 1_717_243_200.0  # 2024-06-01 12:00 UTC, inside the no_overnight session


def test_peer_finds_a_rules_config_by_its_class() -> None:
    config = GuardsConfig.model_validate({"liquidation": {"stop_buffer_pct": 2.5}})
    assert config.peer(LiquidationConfig) is config.liquidation
    assert config.peer(LiquidationConfig).stop_buffer_pct == 2.5
    assert config.peer(CircuitBreakerConfig) is config.circuit_breaker


def test_peer_wants_the_exact_class() -> None:
    with pytest.raises(KeyError):
        GuardsConfig().peer(RuleConfig)  # every rule config is a RuleConfig: no answer is right


def test_the_stop_sweep_keeps_the_liquidation_rules_buffer() -> None:
    # 40x long 1 @ 100, margin 2.5, one tier mmr 0.005: liq = (2.5 - 100)/(0.005 - 1) = 97.98994975
    # buffer 1.5 % → 97.98994975 * 1.015 = 99.4597990 → rounded up to the 0.1 tick: 99.5
    config = GuardsConfig.model_validate(
        {"liquidation": {"stop_buffer_pct": 1.5}, "position_cap": {"enabled": False}}
    )
    pos = Position(SYM, "long", 1.0, 100.0, leverage=40.0, margin=2.5)
    ctx = GuardContext(
        Account(10_000.0, {SYM: pos}), {SYM: MarketRules(SYM, TIERS)}, {SYM: Mark(100.0, NOW)}, NOW
    )
    (stop,) = [a for a in GuardEngine(config).sweep(ctx) if a.rule == "stop_loss"]
    assert stop.kind == "place_stop" and stop.stop_price == pytest.approx(99.5)
