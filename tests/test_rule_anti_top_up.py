"""anti_top_up: no averaging down, no margin top-ups, capped adds, cooldown and daily stop-outs."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from guards.config import GuardsConfig
from guards.engine import GuardEngine
from guards.rules import REGISTRY
from guards.types import (
    Account,
    Decision,
    GuardContext,
    Mark,
    MarketRules,
    OrderIntent,
    Position,
    Tier,
)

SYM = "TEST/USDT:USDT"
TIERS = (Tier(0.0, math.inf, 0.005, 0.0, 100.0),)
NOW = datetime(2024, 6, 3, 12, 0, tzinfo=UTC).timestamp()


def engine(**params: Any) -> GuardEngine:
    tables: dict[str, Any] = {name: {"enabled": name == "anti_top_up"} for name in REGISTRY}
    tables["loss_limit"].update(params.pop("loss_limit", {}))
    tables["anti_top_up"].update(params)
    return GuardEngine(GuardsConfig.model_validate(tables))


def ctx(mark: float = 100.0, pos: Position | None = None, now: float = NOW) -> GuardContext:
    return GuardContext(
        account=Account(10_000.0, {SYM: pos} if pos else {}),
        markets={SYM: MarketRules(SYM, TIERS)},
        marks={SYM: Mark(mark, now)},
        now=now,
    )


def long_pos(adds: int = 0) -> Position:
    return Position(SYM, "long", 1.0, 100.0, leverage=2.0, margin=50.0, stop_price=95.0, adds=adds)


ADD = OrderIntent(SYM, "long", 1.0, leverage=2.0, stop_price=95.0)


def check(e: GuardEngine, context: GuardContext, intent: OrderIntent = ADD) -> Decision:
    return e.check(intent, context)


def test_add_margin_refused_by_default_and_allowed_when_configured() -> None:
    top_up = OrderIntent(SYM, "long", 0.0, kind="add_margin", margin_amount=25.0)
    d = check(engine(), ctx(pos=long_pos()), top_up)
    assert d.code == "add_margin_refused" and not d.allowed
    assert check(engine(allow_add_margin=True), ctx(pos=long_pos()), top_up).allowed


def test_averaging_down_edges() -> None:
    e = engine()
    assert check(e, ctx(99.9, long_pos())).code == "top_up_losing"
    assert check(e, ctx(100.0, long_pos())).code == "top_up_losing"  # break-even is no winner
    assert check(e, ctx(100.1, long_pos())).outcome == "allow"


def test_short_in_loss_when_mark_above_entry() -> None:
    short = Position(SYM, "short", 1.0, 100.0, leverage=2.0, margin=50.0, stop_price=105.0)
    add = OrderIntent(SYM, "short", 1.0, leverage=2.0, stop_price=105.0)
    assert check(engine(), ctx(100.1, short), add).code == "top_up_losing"
    assert check(engine(), ctx(99.9, short), add).allowed


def test_max_adds_to_a_winner() -> None:
    e = engine(max_adds=2)
    assert check(e, ctx(101.0, long_pos(adds=1))).allowed
    d = check(e, ctx(101.0, long_pos(adds=2)))
    assert d.code == "max_adds"


def test_cooldown_after_stop_out_edges() -> None:
    e = engine()  # 60 minutes
    e.on_position_closed(SYM, "stop", pnl=-12.0, ts=NOW)
    assert check(e, ctx(now=NOW + 3599)).code == "cooldown"
    assert check(e, ctx(now=NOW + 3600)).allowed
    assert check(e, ctx(now=NOW + 10)).allowed is False


def test_cooldown_only_after_losing_or_forced_closes() -> None:
    for reason, pnl, cooled in [
        ("stop", 5.0, False),  # a stop that locked in profit
        ("take_profit", 30.0, False),
        ("strategy", -3.0, False),
        ("manual", -3.0, False),
        ("guard", 2.0, True),
        ("liquidation", -50.0, True),
    ]:
        e = engine()
        e.on_position_closed(SYM, reason, pnl=pnl, ts=NOW)  # type: ignore[arg-type]
        assert (check(e, ctx(now=NOW + 60)).code == "cooldown") is cooled, reason


def test_cooldown_is_per_symbol() -> None:
    e = engine()
    e.on_position_closed("OTHER/USDT:USDT", "stop", pnl=-1.0, ts=NOW)
    assert check(e, ctx(now=NOW + 60)).allowed


def test_stopouts_halt_entries_until_the_daily_reset() -> None:
    # trading day from 00:00 Europe/Berlin (CEST = UTC+2 in June): 3 Jun 22:00 UTC is the reset
    e = engine(cooldown_min=0, loss_limit={"timezone": "Europe/Berlin"})
    for i in range(2):
        e.on_position_closed(f"S{i}/USDT:USDT", "stop", pnl=-1.0, ts=NOW + i)
    assert check(e, ctx(now=NOW + 60)).allowed  # two stop-outs of three
    e.on_position_closed("S2/USDT:USDT", "guard", pnl=-1.0, ts=NOW + 2)
    d = check(e, ctx(now=datetime(2024, 6, 3, 21, 59, 59, tzinfo=UTC).timestamp()))
    assert d.code == "stopouts_exhausted"
    v = next(v for v in d.verdicts if v.rule == "anti_top_up")
    assert v.figures["until"] == datetime(2024, 6, 3, 22, 0, tzinfo=UTC).timestamp()
    assert check(e, ctx(now=datetime(2024, 6, 3, 22, 0, tzinfo=UTC).timestamp())).allowed


def test_stopout_counter_rolls_at_the_reset() -> None:
    # two stop-outs late on 3 Jun (UTC day), one just after midnight: not three in one day
    e = engine(cooldown_min=0)
    e.on_position_closed(
        SYM, "stop", pnl=-1.0, ts=datetime(2024, 6, 3, 23, 0, tzinfo=UTC).timestamp()
    )
    e.on_position_closed(
        SYM, "stop", pnl=-1.0, ts=datetime(2024, 6, 3, 23, 30, tzinfo=UTC).timestamp()
    )
    e.on_position_closed(
        SYM, "stop", pnl=-1.0, ts=datetime(2024, 6, 4, 0, 0, tzinfo=UTC).timestamp()
    )
    assert e.state.stopouts_today == 1 and e.state.day_key == "2024-06-04"
    assert check(e, ctx(now=datetime(2024, 6, 4, 1, 0, tzinfo=UTC).timestamp())).allowed


def test_open_positions_count_as_stop_outs_that_may_still_come() -> None:
    # max 3 stop-outs; 1 so far and one other position open (it may stop out too): a new
    # position would make 1 + 1 + 1 = 3 possible — allowed; with 2 so far, 2 + 1 + 1 = 4 > 3.
    other = Position("OTHER/USDT:USDT", "long", 1.0, 10.0, margin=5.0, stop_price=9.0)
    e = engine(cooldown_min=0)
    e.on_position_closed("S0/USDT:USDT", "stop", pnl=-1.0, ts=NOW)
    context = GuardContext(
        account=Account(10_000.0, {other.symbol: other}),
        markets={SYM: MarketRules(SYM, TIERS), other.symbol: MarketRules(other.symbol, TIERS)},
        marks={SYM: Mark(100.0, NOW + 60), other.symbol: Mark(10.0, NOW + 60)},
        now=NOW + 60,
    )
    assert check(e, context).allowed
    e.on_position_closed("S1/USDT:USDT", "stop", pnl=-1.0, ts=NOW + 1)
    d = check(e, context)
    assert d.code == "stopouts_budget" and not d.allowed
    v = next(v for v in d.verdicts if v.rule == "anti_top_up")
    assert (v.figures["stopouts_today"], v.figures["open_positions"]) == (2, 1)
    # an add to the open position makes no new stop-out: still judged by the other checks
    add = OrderIntent(other.symbol, "long", 1.0, leverage=2.0, stop_price=9.0)
    assert check(e, context, add).code != "stopouts_budget"
