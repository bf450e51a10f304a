"""guardbot's guard layer, a pure functional core: plain data in, a decision out with its figures.

This package is the public face the shell (``bot/``, ``paper/``) imports from: ``from guards
import GuardEngine, GuardContext, ...``. Everything below is re-exported from the submodules
that define it; the submodules stay importable (the guards' own tests, rule authors). Building
rules by hand (``RuleEnv``, ``DayClock``, ``StopLoss``) is not part of the face: the engine's
``missing_stops`` / ``protective_stop`` replace it.

- engine: ``GuardEngine`` (``check``, ``approve``, ``sweep``, ``protective_stop``,
  ``missing_stops``, ``liquidation_price``, the ``on_*`` feeds, ``halt``/``resume``/``reload``),
  ``order_actions``, ``RISK_REDUCING_CODES``, ``CloseReason``;
- config and state: ``GuardsConfig``, ``GuardState``, ``Halt``;
- data types: ``OrderIntent``, ``Position``, ``Account``, ``MarketRules``, ``Tier``, ``Tiers``,
  ``Mark``, ``GuardContext``, ``Verdict``, ``Decision``, ``Action``, ``ApprovedOrder`` and the
  literal types;
- liquidation math per venue model (``liquidation_price``, ``position_maintenance_margin``,
  ``model_of``, ...), leverage tiers (``tiers_from_ccxt``, ``tier_index``, ...), per-context
  account figures (``account_view``, ``position_liquidation``), stop placement
  (``protective_stop``, ``round_price_away``), amount rounding (``floor_to_step``) and the
  explain helpers (``explain_rows``, ``resize_steps``, ``reopens``, the number formats).
"""

from guards.account import (
    AccountView,
    LiquidationMemo,
    account_view,
    liq_distance_pct,
    position_liquidation,
    position_margin,
)
from guards.actions import order_actions
from guards.calm import Calm
from guards.config import GuardsConfig
from guards.engine import RISK_REDUCING_CODES, CloseReason, GuardEngine
from guards.explain import (
    ExplainRow,
    ResizeStep,
    decision_to_dict,
    explain_rows,
    format_amount,
    format_figure,
    format_figures,
    format_number,
    format_time,
    intent_to_dict,
    reopens,
    resize_steps,
    verdict_to_dict,
)
from guards.liquidation import (
    LiquidationStage,
    bankruptcy_price,
    liquidation_price,
    liquidation_stage,
    maintenance_margin,
    margin_balance,
    margin_rate,
    model_of,
    position_maintenance_margin,
    profile_maintenance_margin,
    tiered_threshold,
    whole_liquidation_price,
)
from guards.rules.base import floor_to_step
from guards.state import GuardState, Halt, HaltKind, SymbolState
from guards.stops import StopPolicy, default_stop_price, protective_stop, round_price_away
from guards.tiers import (
    TierTable,
    position_tier_index,
    tier_index,
    tier_table,
    tiers_by_symbol,
    tiers_from_ccxt,
)
from guards.types import (
    ACTION_URGENCY,
    Account,
    Action,
    ActionKind,
    ApprovedOrder,
    Decision,
    Figure,
    GuardContext,
    LiquidationModel,
    MarginMode,
    Mark,
    MarketRules,
    OrderIntent,
    Outcome,
    Position,
    Side,
    Tier,
    Tiers,
    Verdict,
    VerdictOutcome,
)

__all__ = [
    "ACTION_URGENCY",
    "RISK_REDUCING_CODES",
    "Account",
    "AccountView",
    "Action",
    "ActionKind",
    "ApprovedOrder",
    "Calm",
    "CloseReason",
    "Decision",
    "ExplainRow",
    "Figure",
    "GuardContext",
    "GuardEngine",
    "GuardState",
    "GuardsConfig",
    "Halt",
    "HaltKind",
    "LiquidationMemo",
    "LiquidationModel",
    "LiquidationStage",
    "MarginMode",
    "Mark",
    "MarketRules",
    "OrderIntent",
    "Outcome",
    "Position",
    "ResizeStep",
    "Side",
    "StopPolicy",
    "SymbolState",
    "Tier",
    "TierTable",
    "Tiers",
    "Verdict",
    "VerdictOutcome",
    "account_view",
    "bankruptcy_price",
    "decision_to_dict",
    "default_stop_price",
    "explain_rows",
    "floor_to_step",
    "format_amount",
    "format_figure",
    "format_figures",
    "format_number",
    "format_time",
    "intent_to_dict",
    "liq_distance_pct",
    "liquidation_price",
    "liquidation_stage",
    "maintenance_margin",
    "margin_balance",
    "margin_rate",
    "model_of",
    "order_actions",
    "position_liquidation",
    "position_maintenance_margin",
    "position_margin",
    "position_tier_index",
    "profile_maintenance_margin",
    "protective_stop",
    "reopens",
    "resize_steps",
    "round_price_away",
    "tier_index",
    "tier_table",
    "tiered_threshold",
    "tiers_by_symbol",
    "tiers_from_ccxt",
    "verdict_to_dict",
    "whole_liquidation_price",
]
