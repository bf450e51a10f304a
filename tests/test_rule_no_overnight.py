"""no_overnight: entry cutoff and flatten window on the local wall clock, across midnight and DST.

UTC instants of local times are worked out from the zones' published offsets:
Europe/Berlin CET = UTC+1, CEST = UTC+2 (2024: CEST from 31 Mar 01:00 UTC to 27 Oct 01:00 UTC);
America/New_York EST = UTC-5, EDT = UTC-4 (2024: EDT from 10 Mar 07:00 UTC to 3 Nov 06:00 UTC).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from guards.config import GuardsConfig
from guards.engine import GuardEngine
from guards.rules import REGISTRY
from guards.types import Account, GuardContext, Mark, MarketRules, OrderIntent, Position, Tier

SYM = "TEST/USDT:USDT"
TIERS = (Tier(0.0, math.inf, 0.005, 0.0, 100.0),)


def utc(y: int, mo: int, d: int, h: int, mi: int = 0, s: int = 0) -> float:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp()


def engine(**params: Any) -> GuardEngine:
    tables: dict[str, Any] = {name: {"enabled": name == "no_overnight"} for name in REGISTRY}
    tables["no_overnight"].update(params)
    return GuardEngine(GuardsConfig.model_validate(tables))


def ctx(now: float, with_position: bool = True) -> GuardContext:
    positions = {SYM: Position(SYM, "long", 1.0, 100.0, leverage=2.0, margin=50.0, stop_price=95.0)}
    return GuardContext(
        account=Account(10_000.0, positions if with_position else {}),
        markets={SYM: MarketRules(SYM, TIERS)},
        marks={SYM: Mark(100.0, now)},
        now=now,
        open_entry_orders={SYM: 2, "IDLE/USDT:USDT": 0},
    )


INTENT = OrderIntent(SYM, "long", 1.0, leverage=2.0, stop_price=95.0)


def entries_open(e: GuardEngine, now: float) -> bool:
    d = e.check(INTENT, ctx(now, with_position=False))
    if not d.allowed:
        assert d.code == "session_closed"
    return d.allowed


def flattening(e: GuardEngine, now: float) -> bool:
    actions = e.sweep(ctx(now))
    kinds = sorted(a.kind for a in actions if a.rule == "no_overnight")
    assert kinds in ([], ["cancel_entries", "close"])
    return bool(kinds)


def test_defaults_utc_entry_edges() -> None:
    e = engine()  # UTC, flat_by 22:00, 60 min before, resume 06:00
    assert entries_open(e, utc(2024, 6, 3, 20, 59, 59))
    assert not entries_open(e, utc(2024, 6, 3, 21, 0, 0))
    assert not entries_open(e, utc(2024, 6, 4, 5, 59, 59))
    assert entries_open(e, utc(2024, 6, 4, 6, 0, 0))


def test_defaults_utc_flatten_edges() -> None:
    e = engine()
    assert not flattening(e, utc(2024, 6, 3, 21, 59, 59))
    assert flattening(e, utc(2024, 6, 3, 22, 0, 0))
    assert flattening(e, utc(2024, 6, 4, 5, 59, 59))
    assert not flattening(e, utc(2024, 6, 4, 6, 0, 0))


def test_flatten_cancels_only_symbols_with_resting_entries() -> None:
    actions = engine().sweep(ctx(utc(2024, 6, 3, 23, 0)))
    assert [(a.kind, a.symbol) for a in actions] == [("close", SYM), ("cancel_entries", SYM)]
    assert actions[0].amount == 1.0 and actions[0].code == "session_flat"


def test_refusal_reports_local_time() -> None:
    e = engine(timezone="Europe/Berlin")
    d = e.check(INTENT, ctx(utc(2024, 6, 3, 19, 30), with_position=False))
    v = next(v for v in d.verdicts if v.rule == "no_overnight")
    assert v.figures["local_time"] == "2024-06-03 21:30 CEST"


def test_berlin_spring_forward_moves_utc_times() -> None:
    e = engine(timezone="Europe/Berlin")
    # Saturday 30 Mar, CET: 22:00 local = 21:00 UTC, cutoff 21:00 local = 20:00 UTC
    assert entries_open(e, utc(2024, 3, 30, 19, 59, 59))
    assert not entries_open(e, utc(2024, 3, 30, 20, 0))
    assert not flattening(e, utc(2024, 3, 30, 20, 59, 59))
    assert flattening(e, utc(2024, 3, 30, 21, 0))
    # Sunday 31 Mar, CEST: 22:00 local = 20:00 UTC, cutoff = 19:00 UTC
    assert entries_open(e, utc(2024, 3, 31, 18, 59, 59))
    assert not entries_open(e, utc(2024, 3, 31, 19, 0))
    assert not flattening(e, utc(2024, 3, 31, 19, 59, 59))
    assert flattening(e, utc(2024, 3, 31, 20, 0))
    # resume 06:00 CEST on Monday 1 Apr = 04:00 UTC
    assert not entries_open(e, utc(2024, 4, 1, 3, 59, 59))
    assert entries_open(e, utc(2024, 4, 1, 4, 0))


def test_berlin_fall_back_moves_utc_times() -> None:
    e = engine(timezone="Europe/Berlin")
    # Saturday 26 Oct, CEST: 22:00 = 20:00 UTC; Sunday 27 Oct, CET: 22:00 = 21:00 UTC
    assert flattening(e, utc(2024, 10, 26, 20, 0))
    assert not flattening(e, utc(2024, 10, 27, 20, 59, 59))
    assert flattening(e, utc(2024, 10, 27, 21, 0))
    # resume 06:00 on Sunday 27 Oct is already CET: 05:00 UTC
    assert not entries_open(e, utc(2024, 10, 27, 4, 59, 59))
    assert entries_open(e, utc(2024, 10, 27, 5, 0))


def test_flat_by_inside_the_skipped_hour_takes_effect_after_the_gap() -> None:
    # 02:30 does not exist on 31 Mar 2024 in Berlin: 01:59:59 CET (00:59:59 UTC) is before it,
    # the next second is 03:00 CEST (01:00 UTC), after it.
    e = engine(timezone="Europe/Berlin", flat_by="02:30", resume_at="06:00", no_entries_before=0)
    assert not flattening(e, utc(2024, 3, 31, 0, 59, 59))
    assert flattening(e, utc(2024, 3, 31, 1, 0, 0))
    # a normal day: 02:30 CET = 01:30 UTC
    assert not flattening(e, utc(2024, 3, 30, 1, 29, 59))
    assert flattening(e, utc(2024, 3, 30, 1, 30))


def test_repeated_hour_follows_the_wall_clock() -> None:
    # resume_at 02:30 on 27 Oct 2024 in Berlin: 02:30 CEST (00:30 UTC) opens; the clock falls
    # back to 02:00 CET at 01:00 UTC, which is before 02:30 on the wall → closed again until
    # 02:30 CET (01:30 UTC).
    e = engine(timezone="Europe/Berlin", resume_at="02:30")
    assert not entries_open(e, utc(2024, 10, 27, 0, 29, 59))
    assert entries_open(e, utc(2024, 10, 27, 0, 30))
    assert not entries_open(e, utc(2024, 10, 27, 1, 0))
    assert entries_open(e, utc(2024, 10, 27, 1, 30))


def test_new_york_dst_days() -> None:
    e = engine(timezone="America/New_York")
    # Sat 9 Mar (EST): 22:00 = 03:00 UTC Sun; Sun 10 Mar (EDT): 22:00 = 02:00 UTC Mon
    assert not flattening(e, utc(2024, 3, 10, 2, 59, 59))
    assert flattening(e, utc(2024, 3, 10, 3, 0))
    assert not flattening(e, utc(2024, 3, 11, 1, 59, 59))
    assert flattening(e, utc(2024, 3, 11, 2, 0))
    # cutoff 21:00 EDT on 10 Mar = 01:00 UTC on 11 Mar
    assert entries_open(e, utc(2024, 3, 11, 0, 59, 59))
    assert not entries_open(e, utc(2024, 3, 11, 1, 0))
    # Sun 3 Nov (EST after 06:00 UTC): 22:00 = 03:00 UTC Mon 4 Nov; Sat 2 Nov (EDT): 02:00 UTC
    assert flattening(e, utc(2024, 11, 3, 2, 0))
    assert not flattening(e, utc(2024, 11, 4, 2, 59, 59))
    assert flattening(e, utc(2024, 11, 4, 3, 0))


def test_new_york_skipped_flat_by() -> None:
    # 02:30 does not exist on 10 Mar 2024 in New York: 01:59:59 EST = 06:59:59 UTC,
    # then 03:00 EDT = 07:00 UTC
    e = engine(timezone="America/New_York", flat_by="02:30", no_entries_before=30)
    assert not flattening(e, utc(2024, 3, 10, 6, 59, 59))
    assert flattening(e, utc(2024, 3, 10, 7, 0))
    # cutoff 02:00 is skipped too: 01:59:59 EST open, 03:00 EDT closed
    assert entries_open(e, utc(2024, 3, 10, 6, 59, 59))
    assert not entries_open(e, utc(2024, 3, 10, 7, 0))


def test_window_not_crossing_midnight_and_cutoff_crossing_it() -> None:
    e = engine(flat_by="01:00", resume_at="05:00", no_entries_before=30)
    assert entries_open(e, utc(2024, 6, 3, 0, 29, 59))
    assert not entries_open(e, utc(2024, 6, 3, 0, 30))
    assert not flattening(e, utc(2024, 6, 3, 0, 59, 59))
    assert flattening(e, utc(2024, 6, 3, 4, 59, 59))
    assert not flattening(e, utc(2024, 6, 3, 5, 0))
    e = engine(flat_by="00:30", resume_at="06:00", no_entries_before=60)  # cutoff 23:30
    assert entries_open(e, utc(2024, 6, 3, 23, 29, 59))
    assert not entries_open(e, utc(2024, 6, 3, 23, 30))


@pytest.mark.parametrize(
    "params",
    [
        {"flat_by": "24:00"},
        {"flat_by": "7:00"},
        {"resume_at": "06:60"},
        {"timezone": "Mars/Olympus"},
        {"flat_by": "06:00", "resume_at": "06:00"},
        {"flat_by": "22:00", "resume_at": "06:00", "no_entries_before": 960},
    ],
)
def test_config_validation(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        engine(**params)


def test_longest_valid_cutoff() -> None:
    # session 06:00 → 22:00 is 960 minutes; 959 minutes before flat_by is 06:01
    e = engine(no_entries_before=959)
    assert entries_open(e, utc(2024, 6, 3, 6, 0, 59))
    assert not entries_open(e, utc(2024, 6, 3, 6, 1))
