"""What rules are built with: peer rules' configs by class, and the hooks the engine calls."""

from __future__ import annotations

import ast
import math
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from guards.config import GuardsConfig
from guards.engine import GuardEngine
from guards.rules import REGISTRY
from guards.rules.base import HOOKS, Rule, RuleConfig, overrides
from guards.rules.circuit_breaker import CircuitBreakerConfig
from guards.rules.liquidation import LiquidationConfig
from guards.rules.overtrading import Overtrading
from guards.state import SymbolState
from guards.types import Account, GuardContext, Mark, MarketRules, Position, Tier

REPO = Path(__file__).resolve().parents[1]
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


# -- capabilities: the engine calls a hook only on the rules that override it -----------------


def _everything_on() -> GuardsConfig:
    return GuardsConfig.model_validate(
        {"trend": {"enabled": True, "ema_period": 2}, "circuit_breaker": {"liq_notional": 1e6}}
    )


def test_base_hooks_are_never_called(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: Rule[Any], *args: Any) -> Any:
        raise AssertionError(f"{self.name}: base hook called")

    for hook in HOOKS:
        monkeypatch.setattr(Rule, hook, boom)
    engine = GuardEngine(_everything_on())
    assert len(engine.rule_names) == 9
    pos = Position(SYM, "long", 1.0, 100.0, leverage=2.0, margin=50.0, stop_price=95.0)
    ctx = GuardContext(
        Account(10_000.0, {SYM: pos}), {SYM: MarketRules(SYM, TIERS)}, {SYM: Mark(100.0, NOW)}, NOW
    )
    engine.on_price(SYM, 100.0, NOW)
    engine.on_candle(SYM, 100.0, 101.0, 99.0, 100.0, NOW)
    engine.on_liquidations(SYM, 10.0, NOW)
    engine.sweep(ctx)
    assert engine.last_sweep_errors == []


def test_which_rules_have_which_hook() -> None:
    have = {
        hook: [name for name, cls in REGISTRY.items() if overrides(cls, hook)] for hook in HOOKS
    }
    assert have == {
        "sweep": ["loss_limit", "no_overnight", "stop_loss", "liquidation"],
        "observe_price": ["circuit_breaker"],
        "observe_candle": ["trend"],
        "observe_liquidations": ["circuit_breaker"],
    }


def test_a_rule_the_engine_does_not_know_gets_its_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[Any, ...]] = []

    class Watching(Overtrading):
        def observe_price(self, sub: SymbolState, price: float, ts: float) -> None:
            seen.append(("price", price, ts))

        def observe_candle(
            self, sub: SymbolState, open: float, high: float, low: float, close: float, ts: float
        ) -> None:
            seen.append(("candle", open, high, low, close, ts))

        def observe_liquidations(self, sub: SymbolState, notional: float, ts: float) -> None:
            seen.append(("liqs", notional, ts))

    registry = {**REGISTRY, "overtrading": Watching}
    monkeypatch.setattr("guards.engine.REGISTRY", MappingProxyType(registry))
    engine = GuardEngine(GuardsConfig())
    engine.on_price(SYM, 101.5, NOW)
    engine.on_candle(SYM, 1.0, 2.0, 0.5, 1.5, NOW + 60)
    engine.on_liquidations(SYM, 7e5, NOW + 61)
    assert seen == [
        ("price", 101.5, NOW),
        ("candle", 1.0, 2.0, 0.5, 1.5, NOW + 60),
        ("liqs", 7e5, NOW + 61),
    ]


def test_market_data_without_observers_leaves_the_state_alone() -> None:
    config = GuardsConfig.model_validate({"circuit_breaker": {"enabled": False}})
    engine = GuardEngine(config)  # trend is off by default
    engine.on_price(SYM, 100.0, NOW)
    engine.on_candle(SYM, 100.0, 101.0, 99.0, 100.0, NOW)
    engine.on_liquidations(SYM, 10.0, NOW)
    assert engine.state.symbols == {}


def test_the_engine_names_no_concrete_rule() -> None:
    tree = ast.parse((REPO / "guards" / "engine.py").read_text(encoding="utf-8"))
    rule_modules = {cls.__module__ for cls in REGISTRY.values()}
    rule_classes = {cls.__name__ for cls in REGISTRY.values()}
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert imported & rule_modules == set()
    assert names & rule_classes == set()
