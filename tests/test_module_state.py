"""guards/ holds no module-level mutable state: memos belong to objects, not to modules.

Two checks, both on every module under ``guards/``:

- after import, no global (nor class attribute of a class defined there) is a mutable container
  (any ``MutableMapping``/``MutableSequence``/``MutableSet``, a deque, a bytearray), a memoising
  function (``functools.cache``/``lru_cache``), or an instance of a mutable guards class;
  constants are immutable (``MappingProxyType``, ``frozenset``, ``tuple``) and are looked into;
- no function rebinds a module global (``global`` statement): a global that starts as ``None``
  and is later set to a memo passes the first check but not this one.

Dunder names (``__all__``, ``__path__``, ``__builtins__``, ...) are the interpreter's, and
pydantic's ``model_config`` is a per-class setting, not state.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
from collections import deque
from collections.abc import Iterator, MutableMapping, MutableSequence, MutableSet
from pathlib import Path
from types import MappingProxyType, ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
GUARDS = REPO / "guards"


def module_names() -> list[str]:
    names = []
    for path in sorted(GUARDS.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def mutable_parts(value: object, where: str, depth: int = 0) -> Iterator[str]:
    """Why ``value`` is mutable shared state (nothing when it is not)."""
    if depth > 4:
        return
    if isinstance(value, MutableMapping | MutableSequence | MutableSet | deque | bytearray):
        yield f"{where} is a mutable {type(value).__name__}"
    elif callable(value) and hasattr(value, "cache_info"):
        yield f"{where} is a memoising function"
    elif isinstance(value, MappingProxyType):
        for key, item in value.items():
            yield from mutable_parts(item, f"{where}[{key!r}]", depth + 1)
    elif isinstance(value, tuple | frozenset):
        for i, item in enumerate(value):
            yield from mutable_parts(item, f"{where}[{i}]", depth + 1)
    elif not isinstance(value, type | ModuleType) and type(value).__module__.startswith("guards"):
        params = getattr(type(value), "__dataclass_params__", None)
        frozen = params is not None and params.frozen
        if not frozen and not _frozen_model(value):
            yield f"{where} is a mutable {type(value).__name__} instance"
        elif dataclasses.is_dataclass(value):
            for f in dataclasses.fields(value):
                yield from mutable_parts(getattr(value, f.name), f"{where}.{f.name}", depth + 1)


def _frozen_model(value: object) -> bool:
    config = getattr(type(value), "model_config", None)
    return isinstance(config, dict) and bool(config.get("frozen"))


def module_state_problems(module: ModuleType) -> list[str]:
    problems = []
    for name, value in vars(module).items():
        if name.startswith("__"):
            continue
        where = f"{module.__name__}.{name}"
        problems.extend(mutable_parts(value, where))
        if isinstance(value, type) and value.__module__ == module.__name__:
            for attr, item in vars(value).items():
                if attr.startswith("__") or attr == "model_config":
                    continue
                problems.extend(mutable_parts(item, f"{where}.{attr}"))
    return problems


def global_statements(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{path.relative_to(REPO)}:{node.lineno} global {', '.join(node.names)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Global)
    ]


def test_the_checks_see_module_memos() -> None:
    fake = ModuleType("fake")
    fake.ok = MappingProxyType({"a": (1, 2)})  # type: ignore[attr-defined]
    fake.TABLE = {}  # type: ignore[attr-defined]
    fake.hidden = (1, [2])  # type: ignore[attr-defined]
    fake.proxy = MappingProxyType({"k": {1}})  # type: ignore[attr-defined]
    assert module_state_problems(fake) == [
        "fake.TABLE is a mutable dict",
        "fake.hidden[1] is a mutable list",
        "fake.proxy['k'] is a mutable set",
    ]


def test_no_module_level_mutable_containers() -> None:
    problems = []
    for name in module_names():
        problems.extend(module_state_problems(importlib.import_module(name)))
    assert problems == []


def test_no_function_rebinds_a_module_global() -> None:
    found = []
    for path in sorted(GUARDS.rglob("*.py")):
        found.extend(global_statements(path))
    assert found == []


# -- where the memos live now -------------------------------------------------------------------

BTC_TIERS = [  # Binance BTCUSDT brackets 1-3 (shared/data/binance_leverage_tiers.json)
    {"minNotional": 0, "maxNotional": 50_000, "maintenanceMarginRate": 0.004, "maxLeverage": 125},
    {"minNotional": 50_000, "maxNotional": 600_000, "maintenanceMarginRate": 0.005,
     "maxLeverage": 100},
    {"minNotional": 600_000, "maxNotional": None, "maintenanceMarginRate": 0.0065,
     "maxLeverage": 75},
]  # fmt: skip


def test_tiers_carry_their_own_table() -> None:
    import pickle

    from guards.tiers import tier_index, tier_table, tiers_from_ccxt
    from guards.types import MarketRules, Tiers

    tiers = tiers_from_ccxt(BTC_TIERS)
    assert type(tiers) is Tiers and tier_table(tiers) is tier_table(tiers)
    plain = tuple(tiers)
    assert tiers == plain and hash(tiers) == hash(plain) and repr(tiers) == repr(plain)
    assert tier_table(plain) is not tier_table(plain)  # a plain tuple works, without the memo
    assert [tier_index(n, plain) for n in (0, 49_999.99, 50_000, 600_000, 1e9)] == [0, 0, 1, 2, 2]
    market = MarketRules("BTC/USDT:USDT", plain)
    assert (
        type(market.tiers) is Tiers
        and market.tiers == plain
        and market == MarketRules("BTC/USDT:USDT", tiers)
    )
    back = pickle.loads(pickle.dumps(tiers))
    assert type(back) is Tiers and back == tiers and back._table is None


def test_the_account_view_lives_on_its_context() -> None:
    from dataclasses import replace

    from guards.account import account_view
    from guards.types import Account, GuardContext, Mark, Position

    pos = Position("A", "long", 2.0, 100.0, margin=50.0)
    ctx = GuardContext(Account(1_000.0, {"A": pos}), {}, {"A": Mark(110.0, 5.0)}, 10.0)
    view = account_view(ctx)
    assert account_view(ctx) is view and view.equity == 1_000.0 + 2.0 * (110.0 - 100.0)
    other = replace(ctx, marks={"A": Mark(90.0, 6.0)})
    assert account_view(other) is not view and account_view(other).equity == 980.0
    assert other == replace(other) and "_view" not in repr(ctx)


def test_each_engine_owns_its_liquidation_memo() -> None:
    import math

    from guards.account import isolated_liquidation, position_liquidation
    from guards.config import GuardsConfig
    from guards.engine import GuardEngine
    from guards.types import Account, GuardContext, Mark, MarketRules, Position, Tier

    market = MarketRules("A", (Tier(0.0, math.inf, 0.005, 0.0, 100.0),))
    pos = Position("A", "long", 1.0, 100.0, leverage=40.0, margin=2.5, stop_price=99.0)
    ctx = GuardContext(Account(1_000.0, {"A": pos}), {"A": market}, {"A": Mark(100.0, 0.0)}, 0.0)
    one, two = GuardEngine(GuardsConfig()), GuardEngine(GuardsConfig())
    one.sweep(ctx)
    assert len(one.liquidations) == 1 and len(two.liquidations) == 0
    # (2.5 - 100) / (0.005 - 1) = 97.98994975, with and without the memo
    assert one.liquidations.isolated(pos, market) == isolated_liquidation(pos, market)
    assert position_liquidation(pos, ctx) == position_liquidation(pos, ctx, None, one.liquidations)
    assert isolated_liquidation(pos, market) == pytest.approx(97.98994975)
    more = Position("A", "long", 1.0, 100.0, leverage=20.0, margin=5.0)
    assert one.liquidations.isolated(more, market) == isolated_liquidation(more, market)
