"""The replay's fill model and job timing on hand-made candles.

- A stop the intrabar walk crosses fills at its own price (plus slippage), also when it was
  placed at the candle's open; only a gap (the next candle opening past it) fills at the gap
  price.
- The ``flat_by`` flatten runs at the first price at or after ``flat_by``: the candle's close
  when ``flat_by`` is a candle boundary, the open of the first candle after a data gap, the walk
  point inside a candle when ``flat_by`` falls inside one.

Expected prices are worked by hand in the comments (slippage 2 bps: a sell fills at
``price * 0.9998``, a buy at ``price * 1.0002``), never taken from the code under test.
"""

from __future__ import annotations

from array import array
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from strategies_for_tests import Scripted

from bot.research.replay import run_replay
from bot.settings import Settings, load_settings
from paper.feed import Candles

BTC = "BTC/USDT:USDT"
M5 = 300_000
H1 = 3_600_000


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def candles(tf: int, rows: list[tuple[str, float, float, float, float]]) -> Candles:
    ts = array("q", (ms(r[0]) for r in rows))
    col = [array("d", (r[i] for r in rows)) for i in range(1, 5)]
    return Candles(BTC, tf, ts, col[0], col[1], col[2], col[3], array("d", [1e6] * len(rows)))


def settings(**guards: Any) -> Settings:
    tables: dict[str, Any] = {"circuit_breaker": {"enabled": False}, **guards}
    return load_settings(
        None,
        {"guards": tables, "paper": {"slippage_bps": 2.0, "auto_funding": False}},
        env_file=None,
        secrets_dir=None,
    )


def flat(start: str, n: int, tf: int, price: float) -> list[tuple[str, float, float, float, float]]:
    t0 = ms(start)
    return [
        (
            datetime.fromtimestamp((t0 + i * tf) / 1000, UTC).isoformat()[:19],
            price,
            price + 10,
            price - 10,
            price,
        )
        for i in range(n)
    ]


def test_a_stop_placed_at_the_open_and_crossed_by_the_walk_fills_at_the_stop(
    clean_env: Path,
) -> None:
    # Long from the 09:35 open at 80,000 (stop 10 % below); the price rises to 81,000, and at
    # the 10:00 close the strategy adds with a stop 2 % below that close (81,000 * 0.98 =
    # 79,380), which replaces the position's stop at the 10:05 open. The 10:05 candle's walk
    # goes open 81,000 → low 79,000 (nearer) → high 84,000 → close 80,000: its first point
    # after the stop went on travels through 79,380, so the stop fills at 79,380 * 0.9998 =
    # 79,364.124 — not at the low (79,000 * 0.9998 = 78,984.2) as if the price had gapped.
    rows = flat("2025-04-01T09:00:00", 10, M5, 80_000.0)  # 09:00 … 09:45
    rows += flat("2025-04-01T09:50:00", 3, M5, 81_000.0)  # 09:50 … 10:00
    rows.append(("2025-04-01T10:05:00", 81_000.0, 84_000.0, 79_000.0, 80_000.0))
    rows += flat("2025-04-01T10:10:00", 3, M5, 80_000.0)
    report = run_replay(
        settings(),
        strategy=Scripted({"09:30": ("long", 10.0), "10:00": ("long", 2.0)}),
        candles=candles(M5, rows),
        heartbeat=False,
    )
    (trade,) = report.closed_trades
    assert trade.reason == "stop" and trade.amount == pytest.approx(0.02)
    assert trade.exit_price == pytest.approx(79_364.124)


def test_a_gap_past_the_stop_fills_at_the_gap_price(clean_env: Path) -> None:
    # Same entry (80,016, stop 78,400); the 10:10 candle opens at 77,000, below the stop:
    # nothing traded between 80,000 and 77,000, so the stop fills at 77,000 * 0.9998 = 76,984.6.
    rows = flat("2025-04-01T09:00:00", 14, M5, 80_000.0)
    rows.append(("2025-04-01T10:10:00", 77_000.0, 77_100.0, 76_900.0, 77_000.0))
    report = run_replay(
        settings(),
        strategy=Scripted({"10:00": ("long", 2.0)}),
        candles=candles(M5, rows),
        heartbeat=False,
    )
    (trade,) = report.closed_trades
    assert trade.reason == "stop"
    assert trade.exit_price == pytest.approx(76_984.6)


def test_the_flatten_runs_at_the_open_of_the_first_candle_after_a_gap(clean_env: Path) -> None:
    # Long from the 19:05 open, stop 10 % below. Data stops after the 21:50 candle (closes
    # 21:55) and resumes at 23:00 with an open of 81,000 (close 82,000). flat_by = 22:00: the
    # first price at or after it is the 23:00 open, so the position is closed there:
    # 81,000 * 0.9998 = 80,983.8 at 23:00 — not at the 23:05 close (82,000 * 0.9998).
    rows = flat("2025-04-01T18:00:00", 47, M5, 80_000.0)  # 18:00 … 21:50
    rows.append(("2025-04-01T23:00:00", 81_000.0, 82_100.0, 80_900.0, 82_000.0))
    rows += flat("2025-04-01T23:05:00", 2, M5, 82_000.0)
    report = run_replay(
        settings(),
        strategy=Scripted({"19:00": ("long", 10.0)}),
        candles=candles(M5, rows),
        heartbeat=False,
    )
    (trade,) = report.closed_trades
    assert trade.reason == "guard" and trade.tag == "no_overnight:flatten"
    assert trade.closed_at == ms("2025-04-01T23:00:00")
    assert trade.exit_price == pytest.approx(80_983.8)


def test_the_flatten_at_a_candle_boundary_runs_at_the_close(clean_env: Path) -> None:
    # Contiguous data: the 21:55 candle closes at 22:00 = flat_by with 80,000, so the position
    # is closed at 80,000 * 0.9998 = 79,984 at the close (the close price is stamped 1 ms
    # before the candle's end).
    rows = flat("2025-04-01T18:00:00", 54, M5, 80_000.0)  # 18:00 … 22:25
    report = run_replay(
        settings(),
        strategy=Scripted({"19:00": ("long", 10.0)}),
        candles=candles(M5, rows),
        heartbeat=False,
    )
    (trade,) = report.closed_trades
    assert trade.tag == "no_overnight:flatten"
    assert trade.closed_at == ms("2025-04-01T22:00:00") - 1
    assert trade.exit_price == pytest.approx(79_984.0)


def test_a_flatten_inside_a_candle_runs_at_the_first_walk_point_after_it(
    clean_env: Path,
) -> None:
    # 1-hour candles, flat_by = 22:30. The 22:00 candle (open 80,000, high 80,200, low 79,000,
    # close 79,500) is walked open (22:00) → high (nearer, 22:20) → low (22:40) → close
    # (22:59:59.999). The first point at or after 22:30 is the low at 22:40:
    # 79,000 * 0.9998 = 78,984.2.
    rows = flat("2025-04-01T15:00:00", 7, H1, 80_000.0)  # 15:00 … 21:00
    rows.append(("2025-04-01T22:00:00", 80_000.0, 80_200.0, 79_000.0, 79_500.0))
    rows += flat("2025-04-01T23:00:00", 2, H1, 79_500.0)
    s = settings(no_overnight={"flat_by": "22:30", "no_entries_before": 60})
    report = run_replay(
        s, strategy=Scripted({"16:00": ("long", 10.0)}), candles=candles(H1, rows), heartbeat=False
    )
    (trade,) = report.closed_trades
    assert trade.tag == "no_overnight:flatten"
    assert trade.closed_at == ms("2025-04-01T22:40:00")
    assert trade.exit_price == pytest.approx(78_984.2)
