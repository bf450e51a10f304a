"""What every rule is: the ``Rule`` base class, its config base, and the figures rules share.

A rule answers two questions: ``check(intent, ctx) -> Verdict`` (may this order go out?) and
``sweep(ctx) -> list[Action]`` (must anything be done now?). Rules are built once per config by
the engine with a ``RuleEnv`` (the peer rules' configs, looked up by config class, the
engine-owned ``GuardState`` and the trading-day clock); they read state but only the engine
writes it.

Rules that keep memory of market data override the observe hooks — ``observe_price``,
``observe_candle``, ``observe_liquidations`` — which the engine calls with the symbol's
``SymbolState`` (the one place a rule writes state, on the engine's behalf). The engine works out
once per config which rules override which hook or ``sweep`` (``HOOKS``, ``overrides``) and calls
only those, so a rule without a sweep or a price window costs nothing there.

The engine calls ``check`` only for opening or increasing orders of kind ``"order"`` (and, for
rules that set ``handles_add_margin``, margin top-ups) after it has verified that the symbol's
market rules and a fresh mark exist, so rules may index ``ctx.markets``/``ctx.marks`` directly.

Shared per-context figures (equity, total margin, open positions, cross-margin totals) come
from ``guards.account`` (``account_view``, ``position_liquidation``, re-exported here): computed
once per ``GuardContext`` object and kept on it; isolated liquidation prices are remembered by the
engine's ``LiquidationMemo`` (``RuleEnv.liquidations``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from guards.account import (
    AccountView,
    LiquidationMemo,
    account_view,
    liq_distance_pct,
    position_liquidation,
    position_margin,
)
from guards.calm import Calm
from guards.intents import SET_LEVERAGE, SET_STOP
from guards.rules.clock import DayClock
from guards.state import GuardState, SymbolState
from guards.stops import round_price_away
from guards.types import (
    EMPTY_FIGURES,
    Action,
    ActionKind,
    Figure,
    GuardContext,
    MarketRules,
    OrderIntent,
    Verdict,
    new_verdict,
)

__all__ = [
    "HOOKS",
    "SET_LEVERAGE",
    "SET_STOP",
    "STOP_ATTACHED",
    "STOP_INHERITED",
    "STOP_ONLY_CODES",
    "AccountView",
    "PeerConfigs",
    "Rule",
    "RuleConfig",
    "RuleEnv",
    "account_view",
    "below_minimum",
    "entry_price",
    "floor_to_step",
    "liq_distance_pct",
    "overrides",
    "position_liquidation",
    "position_margin",
    "round_price_away",
]

#: Codes of ``resize`` verdicts that only supply the order's stop (the size is unchanged).
STOP_ATTACHED = "stop_attached"
STOP_INHERITED = "stop_inherited"
STOP_ONLY_CODES = frozenset({STOP_ATTACHED, STOP_INHERITED})


class RuleConfig(BaseModel):
    """Base of every rule's config: frozen, no unknown keys, an on/off switch."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=True, description="evaluate this rule")


C = TypeVar("C", bound=RuleConfig)
P = TypeVar("P", bound=RuleConfig)


class PeerConfigs(Protocol):
    """Where a rule finds another rule's config, by config class (``GuardsConfig`` is one)."""

    def peer(self, model: type[P]) -> P:
        """The config of type ``model`` (KeyError if there is none)."""
        ...


@dataclass(frozen=True, slots=True)
class RuleEnv:
    """What a rule is built with besides its own config."""

    settings: PeerConfigs
    state: GuardState
    day: DayClock
    #: Isolated liquidation prices between sweeps (the engine passes its own).
    liquidations: LiquidationMemo = field(default_factory=LiquidationMemo)

    def peer(self, model: type[P]) -> P:
        """A peer rule's config by its config class, e.g. ``env.peer(LiquidationConfig)``."""
        return self.settings.peer(model)


class Rule(Generic[C]):
    """One guard rule. Subclasses set ``name``/``config_model`` and override what they need."""

    name: ClassVar[str] = ""
    config_model: ClassVar[type[RuleConfig]] = RuleConfig
    #: True for rules that judge ``kind="add_margin"`` intents (the others skip them).
    handles_add_margin: ClassVar[bool] = False

    def __init__(self, config: C, env: RuleEnv) -> None:
        self.config = config
        self.env = env
        self.state = env.state
        self.ok = Verdict(self.name, "allow", "ok", "")
        self.skip = Verdict(self.name, "skip", "skip", "not applicable")
        self.not_evaluated = Verdict(self.name, "skip", "not_evaluated", "not evaluated")

    def check(self, intent: OrderIntent, ctx: GuardContext) -> Verdict:
        """Pre-trade verdict for an opening/increasing order (default: allow)."""
        return self.ok

    def sweep(self, ctx: GuardContext) -> list[Action]:
        """Actions that must be taken now (default: none)."""
        return []

    def calm(self, ctx: GuardContext) -> Calm | None:
        """How far things may move before this rule's sweep could act again (``guards.calm``),
        asked after a sweep that returned nothing. Default: None, no promise (a rule with a
        sweep of its own overrides it to let drivers skip sweeps)."""
        return None

    # -- observe hooks (default: ignore) ---------------------------------------------------
    def observe_price(self, sub: SymbolState, price: float, ts: float) -> None:
        """One price of the symbol whose state is ``sub`` (``GuardEngine.on_price``)."""

    def observe_candle(
        self, sub: SymbolState, open: float, high: float, low: float, close: float, ts: float
    ) -> None:
        """One closed candle, ``ts`` its close time (``GuardEngine.on_candle``)."""

    def observe_liquidations(self, sub: SymbolState, notional: float, ts: float) -> None:
        """Market-wide liquidated notional of the symbol (``GuardEngine.on_liquidations``)."""

    # -- verdict and action builders ------------------------------------------------------
    # Each is ``Verdict(self.name, outcome, code, reason, amount, figures)``, built by
    # ``guards.types.new_verdict`` (the engine's hot path).
    def allow(self, figures: Mapping[str, Figure] = EMPTY_FIGURES, reason: str = "") -> Verdict:
        return new_verdict(self.name, "allow", "ok", reason, None, figures)

    def reject(
        self, code: str, reason: str, figures: Mapping[str, Figure] = EMPTY_FIGURES
    ) -> Verdict:
        return new_verdict(self.name, "reject", code, reason, None, figures)

    def resize(
        self, amount: float, code: str, reason: str, figures: Mapping[str, Figure] = EMPTY_FIGURES
    ) -> Verdict:
        return new_verdict(self.name, "resize", code, reason, amount, figures)

    def action(
        self,
        kind: ActionKind,
        symbol: str | None,
        code: str,
        reason: str,
        amount: float | None = None,
        stop_price: float | None = None,
        figures: Mapping[str, Figure] = EMPTY_FIGURES,
    ) -> Action:
        return Action(kind, symbol, self.name, code, reason, amount, stop_price, figures)


#: The methods a rule may override that the engine calls only on the rules that do.
HOOKS = ("sweep", "observe_price", "observe_candle", "observe_liquidations")


def overrides(rule_class: type[Rule[Any]], hook: str) -> bool:
    """Does ``rule_class`` override ``hook`` (one of ``HOOKS``) of the base ``Rule``?"""
    return getattr(rule_class, hook) is not getattr(Rule, hook)


# -- small shared arithmetic --------------------------------------------------------------


def entry_price(intent: OrderIntent, mark: float) -> float:
    """The price an order is assumed to fill at: its limit price, else the mark."""
    price = intent.price
    if intent.order_type == "limit" and price is not None and price > 0.0:
        return price
    return mark


def floor_to_step(amount: float, step: float) -> float:
    """``amount`` rounded down to a multiple of ``step`` (a hair of float noise tolerated)."""
    if step <= 0.0:
        return amount
    units = math.floor(amount / step + 1e-9)
    return round(units * step, 12) if units > 0 else 0.0


def below_minimum(market: MarketRules, amount: float, price: float) -> bool:
    """True if ``amount`` is under the market's minimum amount or minimum notional."""
    return amount <= 0.0 or amount < market.min_amount or amount * price < market.min_notional
