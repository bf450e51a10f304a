"""liquidation: distance and stop buffer on the position after the order; sweep reduce/close.

Expected liquidation prices are worked by hand from Binance's documented one-position formula
``P = (W + cum - s*q*E) / (q*mmr - s*q)`` (DESIGN.md), with BTC's first published bracket
(mmr 0.4 %, cum 0, from shared/data/binance_leverage_tiers.json) or a one-tier test market.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from guards.config import GuardsConfig
from guards.engine import GuardEngine
from guards.rules import REGISTRY
from guards.state import GuardState
from guards.tiers import tiers_from_ccxt
from guards.types import (
    Account,
    Action,
    Decision,
    GuardContext,
    Mark,
    MarketRules,
    OrderIntent,
    Position,
    Tier,
    Verdict,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BTC = "BTC/USDT:USDT"
SYM = "TEST/USDT:USDT"
OTHER = "OTHER/USDT:USDT"
NOW = datetime(2024, 6, 3, 12, 0, tzinfo=UTC).timestamp()
FLAT = (Tier(0.0, math.inf, 0.005, 0.0, 100.0),)


def config(*enabled: str, **tables: dict[str, Any]) -> GuardsConfig:
    data: dict[str, Any] = {name: {"enabled": name in enabled} for name in REGISTRY}
    for name, params in tables.items():
        data[name].update(params)
    return GuardsConfig.model_validate(data)


@pytest.fixture(scope="module")
def btc_tiers() -> tuple[Tier, ...]:
    path = DATA / "binance_leverage_tiers.json"
    if not path.exists():
        pytest.skip(f"reference tiers not found at {path}")
    tiers = tiers_from_ccxt(json.loads(path.read_text())[BTC])
    assert (tiers[0].mmr, tiers[0].maint_amount, tiers[0].max_notional) == (0.004, 0.0, 50_000.0)
    return tiers


def ctx(
    positions: tuple[Position, ...] = (),
    wallet: float = 100_000.0,
    prices: dict[str, float] | None = None,
    tiers: dict[str, tuple[Tier, ...]] | None = None,
    **market_kw: Any,
) -> GuardContext:
    tiers = {SYM: FLAT, OTHER: (Tier(0.0, math.inf, 0.01, 0.0, 50.0),), **(tiers or {})}
    prices = prices or {}
    return GuardContext(
        account=Account(wallet, {p.symbol: p for p in positions}),
        markets={s: MarketRules(s, t, **market_kw) for s, t in tiers.items()},
        marks={s: Mark(prices.get(s, 100.0), NOW) for s in tiers},
        now=NOW,
    )


def verdict(decision: Decision) -> Verdict:
    return next(v for v in decision.verdicts if v.rule == "liquidation")


def check(intent: OrderIntent, context: GuardContext) -> Decision:
    return GuardEngine(config("liquidation")).check(intent, context)


def btc(side: str, leverage: float, stop: float | None, **kw: Any) -> OrderIntent:
    return OrderIntent(BTC, side, 0.1, leverage=leverage, stop_price=stop, **kw)  # type: ignore[arg-type]


def btc_ctx(tiers: tuple[Tier, ...], positions: tuple[Position, ...] = ()) -> GuardContext:
    return ctx(positions, prices={BTC: 60_000.0}, tiers={BTC: tiers})


# long 0.1 BTC @ 60,000 at 10x: margin 600, liq = (600 - 6,000) / (0.0004 - 0.1) = 54,216.867...
# stop must be ≥ liq * 1.01 = 54,759.036...


def test_isolated_long_stop_buffer_edges(btc_tiers: tuple[Tier, ...]) -> None:
    ok = check(btc("long", 10, 54_760.0), btc_ctx(btc_tiers))
    assert ok.outcome == "allow"
    assert verdict(ok).figures["liq_price"] == pytest.approx(54_216.86747, rel=1e-9)
    assert verdict(ok).figures["distance_pct"] == pytest.approx(9.638554, rel=1e-6)
    bad = check(btc("long", 10, 54_759.0), btc_ctx(btc_tiers))
    assert bad.code == "stop_beyond_liquidation"
    assert verdict(bad).figures["stop_limit"] == pytest.approx(54_759.03614, rel=1e-9)


def test_isolated_short_stop_buffer_edges(btc_tiers: tuple[Tier, ...]) -> None:
    # short: liq = (600 + 6,000) / (0.0004 + 0.1) = 65,737.051...; stop ≤ liq * 0.99 = 65,079.68
    assert check(btc("short", 10, 65_079.0), btc_ctx(btc_tiers)).outcome == "allow"
    bad = check(btc("short", 10, 65_080.0), btc_ctx(btc_tiers))
    assert bad.code == "stop_beyond_liquidation"
    assert verdict(bad).figures["liq_price"] == pytest.approx(65_737.05179, rel=1e-9)


def test_min_distance_edges(btc_tiers: tuple[Tier, ...]) -> None:
    # 20x: margin 300 → liq (300 - 6,000)/(-0.0996) = 57,228.92 → 4.62 % from 60,000 < 5 %
    near = check(btc("long", 20, 58_000.0), btc_ctx(btc_tiers))
    assert near.code == "liq_too_close"
    assert verdict(near).figures["distance_pct"] == pytest.approx(4.618474, rel=1e-6)
    # 18x: margin 333.33 → liq 56,894.24 → 5.18 % ≥ 5 %
    far = check(btc("long", 18, 58_000.0), btc_ctx(btc_tiers))
    assert far.outcome == "allow"
    assert verdict(far).figures["liq_price"] == pytest.approx(56_894.24364, rel=1e-9)


def test_merges_with_the_open_position(btc_tiers: tuple[Tier, ...]) -> None:
    # open long 0.1 @ 50,000, margin 500; order 0.1 @ 60,000 at 10x (margin 600)
    # → 0.2 @ 55,000 with margin 1,100: liq = (1,100 - 11,000)/(0.0008 - 0.2) = 49,698.795...
    pos = Position(BTC, "long", 0.1, 50_000.0, leverage=10.0, margin=500.0)
    d = check(btc("long", 10, 55_000.0), btc_ctx(btc_tiers, (pos,)))
    assert d.outcome == "allow"
    assert verdict(d).figures["liq_price"] == pytest.approx(49_698.79518, rel=1e-9)


def test_unliquidatable_long_passes(btc_tiers: tuple[Tier, ...]) -> None:
    # 1x long: margin = notional, the formula gives a price ≤ 0 → never liquidated
    d = check(btc("long", 1, 50_000.0), btc_ctx(btc_tiers))
    assert d.outcome == "allow" and verdict(d).figures["liq_price"] is None


def test_cross_uses_wallet_and_other_positions() -> None:
    # other cross long 10 @ 100 marked 90 (mmr 1 %): MM 9, uPnL -100; wallet 1,000
    # W = 1,000 - 9 - 100 = 891; new long 100 @ 100 (mmr 0.5 %):
    # liq = (891 - 10,000) / (0.5 - 100) = 91.547738...; stop ≥ 92.463216...
    other = Position(OTHER, "long", 10.0, 100.0, margin_mode="cross", leverage=10.0, margin=100.0)
    context = ctx((other,), wallet=1_000.0, prices={OTHER: 90.0})
    ok = check(
        OrderIntent(SYM, "long", 100.0, leverage=10, margin_mode="cross", stop_price=92.5), context
    )
    assert ok.outcome == "allow"
    assert verdict(ok).figures["liq_price"] == pytest.approx(91.54773869, rel=1e-9)
    bad = check(
        OrderIntent(SYM, "long", 100.0, leverage=10, margin_mode="cross", stop_price=92.4), context
    )
    assert bad.code == "stop_beyond_liquidation"


def test_cross_wallet_excludes_isolated_margin() -> None:
    # as above plus an isolated position holding 200 margin: W = 691 → liq = 9,309/99.5
    other = Position(OTHER, "long", 10.0, 100.0, margin_mode="cross", leverage=10.0, margin=100.0)
    iso = Position("ISO/USDT:USDT", "long", 10.0, 100.0, leverage=5.0, margin=200.0)
    context = ctx((other, iso), wallet=1_000.0, prices={OTHER: 90.0}, tiers={"ISO/USDT:USDT": FLAT})
    d = check(
        OrderIntent(SYM, "long", 100.0, leverage=10, margin_mode="cross", stop_price=95.0), context
    )
    assert verdict(d).figures["liq_price"] == pytest.approx(93.55778894, rel=1e-9)


def test_margin_mode_mismatch_refused() -> None:
    pos = Position(SYM, "long", 1.0, 100.0, margin_mode="cross", leverage=5.0, margin=20.0)
    d = check(OrderIntent(SYM, "long", 1.0, leverage=5, stop_price=95.0), ctx((pos,)))
    assert d.code == "margin_mode_mismatch"


# -- sweep: isolated long 1 @ 100 with margin 10 → liq = (10 - 100)/(0.005 - 1) = 90.452261...


def sweep(
    mark: float,
    pos: Position | None = None,
    engine: GuardEngine | None = None,
    **market_kw: Any,
) -> list[Action]:
    pos = pos or Position(SYM, "long", 1.0, 100.0, leverage=10.0, margin=10.0, stop_price=91.5)
    engine = engine or GuardEngine(config("liquidation"))
    actions = engine.sweep(ctx((pos,), prices={SYM: mark}, **market_kw))
    return [a for a in actions if a.rule == "liquidation"]


@pytest.mark.parametrize(
    ("mark", "kind"),
    [
        (93.3, None),  # (93.3 - 90.4523)/93.3 = 3.052 % > 3 %
        (93.2, "reduce"),  # 2.948 %
        (91.9, "reduce"),  # 1.575 % > 1.5 %
        (91.8, "close"),  # 1.468 %
        (89.0, "close"),  # already past the liquidation price
    ],
)
def test_sweep_thresholds(mark: float, kind: str | None) -> None:
    actions = sweep(mark)
    assert [a.kind for a in actions] == ([kind] if kind else [])
    if kind == "reduce":
        assert actions[0].amount == pytest.approx(0.5)
        assert actions[0].figures["liq_price"] == pytest.approx(90.45226131, rel=1e-9)


def test_sweep_short() -> None:
    # short 1 @ 100, margin 10: liq = (10 + 100)/(0.005 + 1) = 109.452736...;
    # mark 106.3 → (109.4527 - 106.3)/106.3 = 2.966 % → reduce
    pos = Position(SYM, "short", 1.0, 100.0, leverage=10.0, margin=10.0, stop_price=108.0)
    (action,) = sweep(106.3, pos)
    assert action.kind == "reduce"


def test_reduce_that_would_fall_below_minimum_closes() -> None:
    (action,) = sweep(93.2, min_amount=0.6)
    assert action.kind == "close" and action.amount == 1.0


def test_breaker_tightens_reduce_threshold() -> None:
    # mark 96: (96 - 90.4523)/96 = 5.779 % — outside 3 %, inside the breaker's 6 %
    state = GuardState()
    engine = GuardEngine(config("liquidation", "circuit_breaker"), state)
    assert sweep(96.0, engine=engine) == []
    state.symbol(SYM).breaker_until = NOW + 60
    (action,) = sweep(96.0, engine=engine)
    assert action.kind == "reduce" and action.figures["breaker_open"] is True
    state.symbol(SYM).breaker_until = NOW  # expired at now
    assert sweep(96.0, engine=engine) == []


def test_config_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="close_at_pct < reduce_at_pct < min_distance_pct"):
        config("liquidation", liquidation={"reduce_at_pct": 6.0})
    with pytest.raises(ValueError, match="tighten_reduce_at_pct"):
        config("liquidation", circuit_breaker={"tighten_reduce_at_pct": 2.0})
