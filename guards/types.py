"""Plain data the guard layer takes in and gives out.

Inputs: ``OrderIntent``, ``Position``, ``Account``, ``MarketRules`` (with leverage ``Tier``s, held
as ``Tiers``), ``Mark`` prices and the ``GuardContext`` that bundles them with the current time.
Outputs: a ``Verdict`` per rule, a ``Decision`` per checked intent, ``Action``s from a sweep,
and ``ApprovedOrder``, the only thing an exchange adapter accepts for an opening order.

All of it is frozen, slotted and free of I/O (``new_verdict`` / ``new_decision`` build the
same frozen objects on the engine's hot path through draft classes of the same layout,
``VerdictDraft``). Two memo slots hold figures derived from the immutable data, owned by the
object they describe: ``Tiers`` keeps its lookup table (``guards.tiers.tier_table``),
``GuardContext`` its account view (``guards.account``).

Times are epoch seconds (UTC), money is floats in the quote currency (USDT), amounts are in base
units (contracts of size 1; a venue that counts contracts of another size converts at its boundary).

``LiquidationModel`` names how a venue applies its tiers (``guards.liquidation``): ``binance``
(MM on the mark notional less ``cum``), ``tiered`` (the margin-rate + fee model), ``bybit``
(MM on the entry value less the maintenance-margin deduction) and ``okx`` (margin rate vs
mmr + liquidation fee, tiers by position size). A market's ``Tiers`` carry it, so every
function that takes tiers applies the right rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Literal

Side = Literal["long", "short"]
MarginMode = Literal["isolated", "cross"]
Outcome = Literal["allow", "resize", "reject"]
VerdictOutcome = Literal["allow", "resize", "reject", "skip"]
ActionKind = Literal["close", "reduce", "place_stop", "cancel_entries", "halt"]
LiquidationModel = Literal["binance", "tiered", "bybit", "okx"]
Figure = float | int | str | bool | None

EMPTY_FIGURES: Mapping[str, Figure] = MappingProxyType({})

#: Sweep actions in order of urgency: the engine sorts by this rank.
ACTION_URGENCY: Mapping[ActionKind, int] = MappingProxyType(
    {"halt": 0, "close": 1, "reduce": 2, "cancel_entries": 3, "place_stop": 4}
)


@dataclass(frozen=True, slots=True)
class Tier:
    """One maintenance-margin bracket: notional in [min_notional, max_notional)."""

    min_notional: float
    max_notional: float
    mmr: float
    maint_amount: float
    max_leverage: float


class Tiers(tuple[Tier, ...]):
    """A market's leverage tiers, sorted by ``min_notional``, that carry their lookup table.

    Compares, hashes and prints as the plain tuple of ``Tier`` it is. ``_table`` is the
    ``guards.tiers.TierTable`` built on first use by ``tier_table`` and kept here, so a market's
    tiers are indexed once however many lookups follow.

    ``model``: the venue's liquidation model (``LiquidationModel``), or None (Binance's model
    when the liquidation fee rate is 0, else the tiered model). Under ``okx`` the brackets'
    bounds are position sizes in base units, not notionals.
    """

    _table: object
    model: LiquidationModel | None

    def __new__(cls, tiers: Iterable[Tier] = (), model: LiquidationModel | None = None) -> Tiers:
        self = super().__new__(cls, tiers)
        self._table = None
        self.model = model
        return self

    def __reduce__(
        self,
    ) -> tuple[type[Tiers], tuple[tuple[Tier, ...], LiquidationModel | None]]:
        return (Tiers, (tuple(self), self.model))  # the table is rebuilt on demand, never pickled


@dataclass(frozen=True, slots=True)
class MarketRules:
    """What the exchange says about one perpetual market (ccxt market + leverage tiers).

    ``tiers`` given as a plain tuple is held as ``Tiers`` (equal to it), so every market's tier
    lookups are memoised on the market's own tiers. ``liquidation_model`` set: the tiers are
    held as ``Tiers`` carrying it (see ``Tiers.model``); None keeps the tiers' own (the default
    reads the model from ``liquidation_fee_rate``).
    """

    symbol: str
    tiers: tuple[Tier, ...]
    amount_step: float = 0.001
    price_step: float = 0.1
    min_amount: float = 0.0
    min_notional: float = 0.0
    taker_fee: float = 0.0005
    maker_fee: float = 0.0002
    #: Liquidation fee rate of the "tiered" and "okx" models (0 for Binance's and Bybit's).
    liquidation_fee_rate: float = 0.0
    #: The venue's liquidation model (None: from the fee rate, or the tiers' own).
    liquidation_model: LiquidationModel | None = None

    def __post_init__(self) -> None:
        tiers = self.tiers
        model = self.liquidation_model
        own = getattr(tiers, "model", None)
        if type(tiers) is not Tiers or (model is not None and own != model):
            object.__setattr__(self, "tiers", Tiers(tiers, model))

    @property
    def model(self) -> LiquidationModel:
        """The liquidation model in force (the tiers' own, else from the fee rate)."""
        model = getattr(self.tiers, "model", None)
        if model is not None:
            return model  # type: ignore[no-any-return]
        return "binance" if self.liquidation_fee_rate == 0.0 else "tiered"

    @property
    def max_leverage(self) -> float:
        return self.tiers[0].max_leverage if self.tiers else 1.0


@dataclass(frozen=True, slots=True)
class Position:
    """An open position in one-way mode (at most one per symbol)."""

    symbol: str
    side: Side
    amount: float
    entry_price: float
    margin_mode: MarginMode = "isolated"
    leverage: float = 1.0
    #: Isolated margin (including any added); for cross, the initial margin notional/leverage.
    margin: float = 0.0
    #: Trigger price of the live exchange-side stop order, None when there is none.
    stop_price: float | None = None
    take_profit: float | None = None
    opened_at: float = 0.0
    #: How many times the position was increased after it was opened.
    adds: int = 0

    @property
    def sign(self) -> int:
        return 1 if self.side == "long" else -1

    def unrealized_pnl(self, mark: float) -> float:
        return self.sign * self.amount * (mark - self.entry_price)


@dataclass(frozen=True, slots=True)
class Account:
    """Wallet balance (realised, excluding unrealised PnL) and open positions by symbol."""

    wallet_balance: float
    positions: Mapping[str, Position] = field(default_factory=dict)
    currency: str = "USDT"


@dataclass(frozen=True, slots=True)
class Mark:
    """A mark price and the time it was observed."""

    price: float
    ts: float


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """What a strategy (or a person) wants to do, before any guard has looked at it.

    ``side`` is the position direction the order opens or adds to; with ``reduce_only`` it is the
    direction of the position being reduced (closing a long is ``side="long", reduce_only=True``).
    ``kind="add_margin"`` asks to add ``margin_amount`` of isolated margin to a position.
    """

    symbol: str
    side: Side
    amount: float
    price: float | None = None
    order_type: Literal["market", "limit"] = "market"
    leverage: float = 1.0
    margin_mode: MarginMode = "isolated"
    stop_price: float | None = None
    take_profit: float | None = None
    reduce_only: bool = False
    kind: Literal["order", "add_margin"] = "order"
    margin_amount: float = 0.0
    client_id: str = ""
    tag: str = ""


@dataclass(frozen=True, slots=True)
class GuardContext:
    """Everything a rule may look at: account, market rules, marks and the current time."""

    account: Account
    markets: Mapping[str, MarketRules]
    marks: Mapping[str, Mark]
    now: float
    #: Resting (unfilled) entry orders per symbol, for the session flatten.
    open_entry_orders: Mapping[str, int] = field(default_factory=dict)
    #: ``guards.account.AccountView`` of this context, set once on first use (not compared).
    _view: object = field(default=None, init=False, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Verdict:
    """One rule's answer to one intent, with the figures that justify it."""

    rule: str
    outcome: VerdictOutcome
    code: str = "ok"
    reason: str = ""
    #: Target amount when ``outcome == "resize"``.
    amount: float | None = None
    figures: Mapping[str, Figure] = field(default_factory=lambda: EMPTY_FIGURES)

    def __init__(
        self,
        rule: str,
        outcome: VerdictOutcome,
        code: str = "ok",
        reason: str = "",
        amount: float | None = None,
        figures: Mapping[str, Figure] = EMPTY_FIGURES,
    ) -> None:
        # Same as the generated __init__, storing through the slots (see _slot_setters).
        s = _VERDICT_SLOTS
        s[0](self, rule)
        s[1](self, outcome)
        s[2](self, code)
        s[3](self, reason)
        s[4](self, amount)
        s[5](self, figures)


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's answer: allow, resize (to ``amount``) or reject, and every rule's verdict."""

    outcome: Outcome
    intent: OrderIntent
    amount: float
    code: str
    reason: str
    verdicts: tuple[Verdict, ...] = ()
    #: Stop price the order must carry (the intent's, or one attached by the stop_loss rule).
    stop_price: float | None = None

    def __init__(
        self,
        outcome: Outcome,
        intent: OrderIntent,
        amount: float,
        code: str,
        reason: str,
        verdicts: tuple[Verdict, ...] = (),
        stop_price: float | None = None,
    ) -> None:
        s = _DECISION_SLOTS  # as the generated __init__, storing through the slots
        s[0](self, outcome)
        s[1](self, intent)
        s[2](self, amount)
        s[3](self, code)
        s[4](self, reason)
        s[5](self, verdicts)
        s[6](self, stop_price)

    @property
    def allowed(self) -> bool:
        return self.outcome != "reject"


def _slot_setters(cls: type) -> tuple[Callable[[Any, Any], None], ...]:
    """The ``__set__`` of each field's slot, in field order.

    A check builds one ``Verdict`` per rule and a ``Decision``. The ``__init__`` a frozen
    dataclass is given stores each field with ``object.__setattr__`` by name; storing through
    the slot descriptors gives the same object for about half the cost. ``Verdict`` and
    ``Decision`` spell out that ``__init__`` (same parameters and defaults, which
    tests/test_types.py compares with the fields); assignment afterwards still raises.
    The engine's own hot path goes further (``VerdictDraft``).
    """
    return tuple(getattr(cls, f.name).__set__ for f in fields(cls))


_VERDICT_SLOTS = _slot_setters(Verdict)
_DECISION_SLOTS = _slot_setters(Decision)


class VerdictDraft:
    """``Verdict``'s slots without its frozen ``__setattr__``: a verdict being built on the hot
    path.

    ``new_verdict`` makes an ``object.__new__(VerdictDraft)``, stores the six fields with
    plain attribute stores (the interpreter's cheapest) and then assigns ``Verdict`` as its
    ``__class__``, which Python allows between classes of the same slot layout (checked at
    import, below). The result is a ``Verdict`` like any other — same type, fields, equality,
    hash and repr, frozen from then on — for about half the cost of the slot setters.
    ``guards.rules.base.Rule``'s verdict builders call ``new_verdict``.
    """

    __slots__ = ("amount", "code", "figures", "outcome", "reason", "rule")
    rule: str
    outcome: VerdictOutcome
    code: str
    reason: str
    amount: float | None
    figures: Mapping[str, Figure]


class DecisionDraft:
    """``Decision``'s slots without its frozen ``__setattr__`` (``new_decision``; as
    ``VerdictDraft``)."""

    __slots__ = ("amount", "code", "intent", "outcome", "reason", "stop_price", "verdicts")
    outcome: Outcome
    intent: OrderIntent
    amount: float
    code: str
    reason: str
    verdicts: tuple[Verdict, ...]
    stop_price: float | None


_new = object.__new__


def new_verdict(
    rule: str,
    outcome: VerdictOutcome,
    code: str,
    reason: str,
    amount: float | None,
    figures: Mapping[str, Figure],
) -> Verdict:
    """``Verdict(rule, outcome, code, reason, amount, figures)``, built as a ``VerdictDraft``."""
    v = _new(VerdictDraft)
    v.rule = rule
    v.outcome = outcome
    v.code = code
    v.reason = reason
    v.amount = amount
    v.figures = figures
    v.__class__ = Verdict  # type: ignore[assignment]
    return v  # type: ignore[return-value]


def new_decision(
    outcome: Outcome,
    intent: OrderIntent,
    amount: float,
    code: str,
    reason: str,
    verdicts: tuple[Verdict, ...],
    stop_price: float | None,
) -> Decision:
    """``Decision(...)`` with every field given, built as a ``DecisionDraft``."""
    d = _new(DecisionDraft)
    d.outcome = outcome
    d.intent = intent
    d.amount = amount
    d.code = code
    d.reason = reason
    d.verdicts = verdicts
    d.stop_price = stop_price
    d.__class__ = Decision  # type: ignore[assignment]
    return d  # type: ignore[return-value]


def _check_drafts() -> None:
    """The drafts must have exactly their classes' slots (``__class__`` assignment needs the
    same layout; a field added to ``Verdict`` or ``Decision`` fails here, at import)."""
    for draft, cls in ((VerdictDraft, Verdict), (DecisionDraft, Decision)):
        names = sorted(f.name for f in fields(cls))
        if sorted(draft.__slots__) != names or sorted(getattr(cls, "__slots__", ())) != names:
            raise TypeError(f"{draft.__name__} does not have the slots of {cls.__name__}")
    sample = new_verdict("", "allow", "ok", "", None, EMPTY_FIGURES)  # raises if layouts differ
    if type(sample) is not Verdict or sample != Verdict("", "allow"):
        raise TypeError("VerdictDraft does not make a Verdict")
    intent = OrderIntent("", "long", 1.0)
    decision = new_decision("allow", intent, 1.0, "ok", "", (), None)
    if type(decision) is not Decision or decision != Decision("allow", intent, 1.0, "ok", ""):
        raise TypeError("DecisionDraft does not make a Decision")


_check_drafts()


@dataclass(frozen=True, slots=True)
class Action:
    """Something a sweep says must be done now."""

    kind: ActionKind
    symbol: str | None
    rule: str
    code: str
    reason: str
    amount: float | None = None
    stop_price: float | None = None
    figures: Mapping[str, Figure] = field(default_factory=lambda: EMPTY_FIGURES)

    @property
    def urgency(self) -> int:
        return ACTION_URGENCY[self.kind]


_SEAL = object()


@dataclass(frozen=True, slots=True)
class ApprovedOrder:
    """An order the guard engine allowed. Only ``GuardEngine`` (via ``approve``) can make one.

    Exchange adapters take this type for opening orders, so no code path can send an opening
    order that skipped the guards.
    """

    intent: OrderIntent
    amount: float
    stop_price: float | None
    take_profit: float | None
    decision: Decision
    _seal: object = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._seal is not _SEAL:
            raise TypeError("ApprovedOrder is made only by GuardEngine")


def approve(decision: Decision) -> ApprovedOrder:
    """Seal an allowed decision into an ``ApprovedOrder`` (for the engine's use only)."""
    if not decision.allowed:
        raise ValueError(f"cannot approve a refused order: {decision.code}")
    return ApprovedOrder(
        intent=decision.intent,
        amount=decision.amount,
        stop_price=decision.stop_price,
        take_profit=decision.intent.take_profit,
        decision=decision,
        _seal=_SEAL,
    )
