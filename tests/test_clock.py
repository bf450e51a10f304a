"""Wall-clock answers kept until the next edge equal the answer computed afresh at every instant.

The reference is the plain computation: the local wall clock (``datetime.fromtimestamp`` in the
zone) at the start of the instant's UTC minute, its date and minute of day. Zones are chosen for
their awkward rules: 30-minute DST (Lord Howe), +05:45 (Kathmandu), +12:45/+13:45 (Chatham),
a skipped calendar day (Apia, 30 Dec 2011), DST changes at midnight (Santiago, Havana), Morocco's
Ramadan suspensions, and the two usual ones.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guards.rules.clock import DayClock, WallSegments

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "Pacific/Apia",
    "America/Santiago",
    "America/Havana",
    "Africa/Casablanca",
]
T_MIN = datetime(1995, 1, 1, tzinfo=UTC).timestamp()
T_MAX = datetime(2037, 1, 1, tzinfo=UTC).timestamp()


def reference(tz: ZoneInfo, edges: tuple[int, ...], now: float) -> tuple[int, int]:
    dt = datetime.fromtimestamp(int(now // 60) * 60, tz)
    minute = dt.hour * 60 + dt.minute
    return dt.toordinal(), max(e for e in (0, *edges) if e <= minute)


def reference_key(tz: ZoneInfo, reset: int, now: float) -> str:
    dt = datetime.fromtimestamp(int(now // 60) * 60, tz)
    ordinal = dt.toordinal() - (1 if dt.hour * 60 + dt.minute < reset else 0)
    return date.fromordinal(ordinal).isoformat()


steps = st.lists(
    st.one_of(
        st.floats(0.0, 120.0),  # within a candle or two
        st.floats(0.0, 6 * 3600.0),  # across edges
        st.floats(-3 * 3600.0, 0.0),  # time going back (a replay restarted)
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=400, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    edges=st.lists(st.integers(0, 1439), min_size=1, max_size=3),
    start=st.floats(T_MIN, T_MAX),
    walk=steps,
)
def test_segments_equal_the_fresh_answer_on_any_walk(
    zone: str, edges: list[int], start: float, walk: list[float]
) -> None:
    tz = ZoneInfo(zone)
    wall = WallSegments(zone, edges)
    now = start
    for step in walk:
        now += step
        assert wall.at(now) == reference(tz, tuple(edges), now), (zone, edges, now)
        assert wall.lo <= now < wall.hi


@settings(max_examples=200, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    reset=st.integers(0, 1439),
    start=st.floats(T_MIN, T_MAX),
    walk=steps,
)
def test_day_key_equals_the_fresh_answer(
    zone: str, reset: int, start: float, walk: list[float]
) -> None:
    tz = ZoneInfo(zone)
    clock = DayClock(zone, f"{reset // 60:02d}:{reset % 60:02d}")
    now = start
    for step in walk:
        now += step
        assert clock.key(now) == reference_key(tz, reset, now), (zone, reset, now)


@pytest.mark.parametrize(
    ("zone", "day", "edges"),
    [
        ("Europe/Berlin", datetime(2024, 3, 31, tzinfo=UTC), (150, 180, 1320)),  # 02:30 skipped
        ("Europe/Berlin", datetime(2024, 10, 27, tzinfo=UTC), (120, 150, 180)),  # 02:xx twice
        ("America/New_York", datetime(2024, 11, 3, tzinfo=UTC), (60, 90, 360)),
        ("Australia/Lord_Howe", datetime(2024, 4, 6, tzinfo=UTC), (90, 105, 120)),
        ("Pacific/Apia", datetime(2011, 12, 29, tzinfo=UTC), (0, 600, 1320)),  # a lost day
        ("America/Santiago", datetime(2024, 9, 7, tzinfo=UTC), (0, 30, 60)),  # 00:00 skipped
    ],
)
def test_every_minute_across_a_transition(zone: str, day: datetime, edges: tuple[int, ...]) -> None:
    tz = ZoneInfo(zone)
    wall = WallSegments(zone, edges)
    start = day.timestamp() - 86_400
    for minute in range(3 * 1440):
        for second in (0.0, 59.5):
            now = start + minute * 60 + second
            assert wall.at(now) == reference(tz, edges, now), (zone, now)


def test_the_answer_is_kept_until_the_next_edge() -> None:
    # Berlin in June is UTC+2: edges 21:00 and 22:00 local are 19:00 and 20:00 UTC
    wall = WallSegments("Europe/Berlin", (1260, 1320))
    noon = datetime(2024, 6, 3, 10, 0, 30, tzinfo=UTC).timestamp()
    assert wall.at(noon) == (date(2024, 6, 3).toordinal(), 0)
    assert wall.lo == datetime(2024, 6, 3, 10, 0, tzinfo=UTC).timestamp()
    assert wall.hi == datetime(2024, 6, 3, 19, 0, tzinfo=UTC).timestamp()
    assert wall.at(wall.hi) == (date(2024, 6, 3).toordinal(), 1260)
    assert wall.hi == datetime(2024, 6, 3, 20, 0, tzinfo=UTC).timestamp()


def test_edges_must_be_minutes_of_the_day() -> None:
    with pytest.raises(ValueError):
        WallSegments("UTC", (1440,))
    with pytest.raises(ValueError):
        WallSegments("UTC", (-1,))
