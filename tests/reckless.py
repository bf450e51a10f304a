"""Reckless strategies on real crash series, and how far a replay's equity fell (test fixtures).

Seven ways retail perpetual accounts die, as strategies (none is a built-in): all in at 20x
long or short with no stop, averaging down, bottom fishing after a drop, shorting rallies,
revenge trading (double up and flip after a loss), and 20x scalping with tight stops of its own.
Twelve crash series from ``shared/data/candles`` (see its README). ``measure`` replays one
combination and reports the worst trading day and the worst drawdown at the candle closes and
at every price point of the intrabar walk (peak: the highest equity at a candle close, what the
guards see; trough: the lowest at any price point), with the slippage the fills paid in the
window, for the "within the limits plus slippage" check (``tests/test_reckless_bounds.py``,
``python tests/reckless.py`` for the whole table).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.research import replay as replay_module
from bot.research.replay import run_replay
from bot.settings import load_settings
from bot.strategies.base import NO_INTENTS, BaseStrategy
from guards import OrderIntent, Position
from paper.core import PaperCore
from paper.feed import Candles, load_candles

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "candles"
BALANCE = 10_000.0
NOTIONAL = 0.95 * 20 * BALANCE  # all in at 20x (what the margin and the fees leave room for)


def _intent(symbol: str, side: str, amount: float, stop: float | None = None) -> OrderIntent:
    return OrderIntent(
        symbol,
        side,
        amount,
        leverage=20.0,
        stop_price=stop,
        tag="reckless",  # type: ignore[arg-type]
    )


class AllIn(BaseStrategy):
    """All in at 20x, no stop, on one side; back in as soon as it is flat."""

    name = "all_in"

    def __init__(self, side: str = "long") -> None:
        self.side = side

    def on_candle(
        self,
        symbol: str,
        ts_ms: int,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
        position: Position | None,
    ) -> Sequence[OrderIntent]:
        if position is not None:
            return NO_INTENTS
        return (_intent(symbol, self.side, NOTIONAL / close),)


class AverageDown(BaseStrategy):
    """All in at 20x long, no stop, adding half the position on every losing candle."""

    name = "average_down"

    def on_candle(
        self,
        symbol: str,
        ts_ms: int,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
        position: Position | None,
    ) -> Sequence[OrderIntent]:
        if position is None:
            return (_intent(symbol, "long", NOTIONAL / close),)
        if close < position.entry_price:
            return (_intent(symbol, "long", position.amount * 0.5),)
        return NO_INTENTS


class _Window(BaseStrategy):
    """Keeps the last ``n`` closes."""

    def __init__(self, n: int = 12, move_pct: float = 3.0) -> None:
        self.n = n
        self.move = move_pct / 100.0
        self.closes: list[float] = []

    def push(self, close: float) -> None:
        self.closes.append(close)
        if len(self.closes) > self.n:
            del self.closes[0]


class BottomFisher(_Window):
    """Buys at 20x after a 3 % drop from the recent high, no stop, and buys more on the way down."""

    name = "bottom_fisher"

    def on_candle(
        self,
        symbol: str,
        ts_ms: int,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
        position: Position | None,
    ) -> Sequence[OrderIntent]:
        self.push(close)
        if close <= max(self.closes) * (1 - self.move):
            amount = NOTIONAL / close if position is None else position.amount * 0.5
            return (_intent(symbol, "long", amount),)
        if position is not None and close > position.entry_price * 1.01:
            return (OrderIntent(symbol, "long", position.amount, reduce_only=True),)
        return NO_INTENTS


class RallyShorter(_Window):
    """Shorts at 20x after a 3 % rise from the recent low, no stop, adding when it goes against."""

    name = "rally_shorter"

    def on_candle(
        self,
        symbol: str,
        ts_ms: int,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
        position: Position | None,
    ) -> Sequence[OrderIntent]:
        self.push(close)
        if position is not None and close > position.entry_price:
            return (_intent(symbol, "short", position.amount * 0.5),)
        if position is None and close >= min(self.closes) * (1 + self.move):
            return (_intent(symbol, "short", NOTIONAL / close),)
        return NO_INTENTS


class Revenge(BaseStrategy):
    """Martingale: 20x, no stop; after a losing close, twice the size on the other side."""

    name = "revenge"

    def __init__(self) -> None:
        self.side = "long"
        self.scale = 1.0
        self.entry: float | None = None
        self.held = 0

    def on_candle(
        self,
        symbol: str,
        ts_ms: int,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
        position: Position | None,
    ) -> Sequence[OrderIntent]:
        if position is None:
            if self.entry is not None:  # the last one closed (stop, guard): assume a loss
                self.side = "short" if self.side == "long" else "long"
                self.scale = min(self.scale * 2.0, 8.0)
                self.entry = None
            self.entry = close
            self.held = 0
            return (_intent(symbol, self.side, self.scale * NOTIONAL / 4 / close),)
        self.held += 1
        if self.held >= 6:
            won = position.unrealized_pnl(close) > 0
            if won:
                self.scale = 1.0
                self.entry = None
            return (OrderIntent(symbol, position.side, position.amount, reduce_only=True),)
        return NO_INTENTS


class TightScalper(BaseStrategy):
    """20x long with its own 0.3 % stop after every green candle, all in."""

    name = "tight_scalper"

    def on_candle(
        self,
        symbol: str,
        ts_ms: int,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
        position: Position | None,
    ) -> Sequence[OrderIntent]:
        if position is None and close > open:
            return (_intent(symbol, "long", NOTIONAL / close, stop=close * 0.997),)
        return NO_INTENTS


STRATEGIES: dict[str, Any] = {
    "all_in_long": lambda: AllIn("long"),
    "all_in_short": lambda: AllIn("short"),
    "average_down": AverageDown,
    "bottom_fisher": BottomFisher,
    "rally_shorter": RallyShorter,
    "revenge": Revenge,
    "tight_scalper": TightScalper,
}

#: name → (file under shared/data/candles, symbol, window start, window end (UTC dates)).
SERIES: dict[str, tuple[str, str, str | None, str | None]] = {
    "btc-5m-2025-04": (
        "typhonun_DcaTpStrategy/BTC_USDT_USDT-5m-futures.feather",
        "BTC/USDT:USDT",
        "2025-03-25",
        "2025-04-13",
    ),
    "eth-5m-2025-04": (
        "typhonun_DcaTpStrategy/ETH_USDT_USDT-5m-futures.feather",
        "ETH/USDT:USDT",
        "2025-03-25",
        "2025-04-13",
    ),
    "btc-5m-2025-10": (
        "aminak58_RL-Trading-Validation/BTC_USDT_USDT-5m-futures.json",
        "BTC/USDT:USDT",
        "2025-10-01",
        "2025-10-20",
    ),
    "eth-5m-2025-10": (
        "aminak58_RL-Trading-Validation/ETH_USDT_USDT-5m-futures.json",
        "ETH/USDT:USDT",
        "2025-10-01",
        "2025-10-20",
    ),
    "btc-15m-2025-10": (
        "aminak58_RL-Trading-Validation/BTC_USDT_USDT-15m-futures.json",
        "BTC/USDT:USDT",
        None,
        None,
    ),
    "btc-1h-2025-10": (
        "aminak58_RL-Trading-Validation/BTC_USDT_USDT-1h-futures.json",
        "BTC/USDT:USDT",
        None,
        None,
    ),
    "btc-1m-2024-08": (
        "mintanam_ftrade/BTC_USDT-1m.feather",
        "BTC/USDT:USDT",
        "2024-07-31",
        "2024-08-10",
    ),
    "eth-1m-2024-08": (
        "mintanam_ftrade/ETH_USDT-1m.feather",
        "ETH/USDT:USDT",
        "2024-07-31",
        "2024-08-10",
    ),
    "btc-1h-2020-03": (
        "NIC-project-team_TradingStrategyGA/BTC_USDT-1h.feather",
        "BTC/USDT:USDT",
        "2020-02-20",
        "2020-04-01",
    ),
    "btc-1h-2021-05": (
        "NIC-project-team_TradingStrategyGA/BTC_USDT-1h.feather",
        "BTC/USDT:USDT",
        "2021-05-01",
        "2021-06-01",
    ),
    "btc-1h-2022-11": (
        "NIC-project-team_TradingStrategyGA/BTC_USDT-1h.feather",
        "BTC/USDT:USDT",
        "2022-11-01",
        "2022-11-25",
    ),
    "btc-1m-2022-01": (
        "nautilus_trader/btc-perp-20211231-20220201_1m.csv",
        "BTC/USDT:USDT",
        "2022-01-15",
        "2022-01-31",
    ),
}

#: Guard configurations of the guarded runs: the defaults with stops attached (a stopless
#: entry is otherwise refused outright), and the same with 3 % risk per trade (one stop-out
#: spends a whole day's budget).
CONFIGS: dict[str, dict[str, Any]] = {
    "attach": {"stop_loss": {"missing": "attach"}},
    "attach-3%": {"stop_loss": {"missing": "attach", "max_risk_pct": 3.0}},
}


def _ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)


def load_series(name: str) -> Candles:
    path, symbol, start, end = SERIES[name]
    cs = load_candles(SHARED / path, symbol=symbol, allow_gaps=True)
    if start is not None and end is not None:
        cs = cs.between(_ms(start), _ms(end))
    return cs


@dataclass(frozen=True)
class Outcome:
    """How far one replay fell (percent of the day's start equity / of the peak)."""

    worst_day_close: float
    worst_day: float  # at any price point
    worst_dd_close: float
    worst_dd: float  # at any price point, from the highest close before it
    #: Slippage the fills paid in the worst day / since the peak of the worst drawdown, %.
    day_slippage: float
    dd_slippage: float
    liquidations: int
    trades: int
    final_equity: float


class _Recording(PaperCore):
    """A paper core that notes its equity after every price point."""

    points: list[tuple[int, float]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.points = []
        _LAST.append(self)

    def on_price(self, *args: Any, **kwargs: Any) -> Any:
        events = super().on_price(*args, **kwargs)
        self.points.append((self.now_ms, self.equity()))
        return events


_LAST: list[_Recording] = []


def measure(series: Candles, strategy: str, guards: dict[str, Any] | None) -> Outcome:
    """Replay ``strategy`` over ``series`` with ``guards`` overrides (None: guards off)."""
    s = load_settings(
        None,
        {"guards": guards or {}, "state": {"dir": "/tmp/guardbot-reckless-state"}},
        env_file=None,
        secrets_dir=None,
    )
    original = replay_module.PaperCore
    replay_module.PaperCore = _Recording  # type: ignore[misc]
    try:
        report = run_replay(
            s,
            guards_on=guards is not None,
            strategy=STRATEGIES[strategy](),
            candles=series,
            heartbeat=False,
            record_curve=True,
        )
    finally:
        replay_module.PaperCore = original  # type: ignore[misc]
    core = _LAST.pop()
    assert report.curve is not None
    slip = s.paper.slippage_bps / 1e4
    fills = [(f.timestamp, f.amount * f.price * slip) for f in core.fills]
    closes = list(zip(report.curve.ts, report.curve.equity, strict=True))
    day_c, day_p, day_slip = _worst_day(closes, core.points, fills)
    dd_c, dd_p, dd_slip = _worst_drawdown(closes, core.points, fills)
    return Outcome(
        day_c,
        day_p,
        dd_c,
        dd_p,
        day_slip,
        dd_slip,
        report.liquidations,
        report.trades,
        report.final_equity,
    )


def _day(ts_ms: float) -> int:
    return int(ts_ms // 86_400_000)


def _worst_day(
    closes: list[tuple[float, float]],
    points: list[tuple[int, float]],
    fills: list[tuple[int, float]],
) -> tuple[float, float, float]:
    """Worst loss in a UTC trading day, % of the equity the day began with (the last close
    before it), at closes and at every point; and the slippage paid that worst day, %."""
    start: dict[int, float] = {}
    prev = BALANCE
    for t, eq in closes:  # curve times are epoch seconds of the candle closes
        d = _day(t * 1000 - 1)
        start.setdefault(d, prev)
        prev = eq
    worst_c = worst_p = 0.0
    worst_day = None
    for t, eq in closes:
        d = _day(t * 1000 - 1)
        worst_c = max(worst_c, (start[d] - eq) / start[d] * 100)
    for ts, eq in points:
        d = _day(ts)
        base = start.get(d, BALANCE)
        loss = (base - eq) / base * 100
        if loss > worst_p:
            worst_p, worst_day = loss, d
    paid = 0.0
    if worst_day is not None:
        base = start.get(worst_day, BALANCE)
        paid = sum(c for ts, c in fills if _day(ts) == worst_day) / base * 100
    return worst_c, worst_p, paid


def _worst_drawdown(
    closes: list[tuple[float, float]],
    points: list[tuple[int, float]],
    fills: list[tuple[int, float]],
) -> tuple[float, float, float]:
    """Worst fall from the highest close so far, at closes and at every point; with the
    slippage paid between that peak and the worst point, % of the peak."""
    worst_c = 0.0
    peak = BALANCE
    for _, eq in closes:
        peak = max(peak, eq)
        worst_c = max(worst_c, (peak - eq) / peak * 100)
    worst_p = 0.0
    paid = 0.0
    peak, peak_ts = BALANCE, 0.0
    i = 0
    for ts, eq in points:
        while i < len(closes) and closes[i][0] * 1000 <= ts + 1:
            if closes[i][1] > peak:
                peak, peak_ts = closes[i][1], closes[i][0] * 1000
            i += 1
        dd = (peak - eq) / peak * 100
        if dd > worst_p:
            worst_p = dd
            paid = sum(c for t, c in fills if peak_ts <= t <= ts) / peak * 100
    return worst_c, worst_p, paid


def main(argv: list[str]) -> int:
    """Print the whole table: every series × strategy, guarded (each config) and unguarded."""
    from bot.ops.logging import configure_logging

    configure_logging(level="warning", fmt="console")
    only = set(argv)
    rows = []
    for name in SERIES:
        if only and name not in only:
            continue
        cs = load_series(name)
        for strategy in STRATEGIES:
            off = measure(cs, strategy, None)
            rows.append((name, strategy, "off", off))
            for label, cfg in CONFIGS.items():
                rows.append((name, strategy, label, measure(cs, strategy, cfg)))
    print(
        f"{'series':16} {'strategy':14} {'guards':10} day@close day@any dd@close dd@any "
        "slip(d/dd) liq trades equity"
    )
    for name, strategy, label, o in rows:
        print(
            f"{name:16} {strategy:14} {label:10} {o.worst_day_close:8.3f} {o.worst_day:7.3f} "
            f"{o.worst_dd_close:8.3f} {o.worst_dd:6.3f} {o.day_slippage:.3f}/{o.dd_slippage:.3f}"
            f" {o.liquidations:3d} {o.trades:6d} {o.final_equity:10.2f}"
        )
    guarded = [o for _, _, label, o in rows if label != "off"]
    off = [o for _, _, label, o in rows if label == "off"]
    if guarded:
        print(
            f"guarded runs {len(guarded)}: liquidated {sum(o.liquidations > 0 for o in guarded)},"
            f" worst day {max(o.worst_day for o in guarded):.4f} % (closes "
            f"{max(o.worst_day_close for o in guarded):.3f} %), worst drawdown "
            f"{max(o.worst_dd for o in guarded):.4f} % (closes "
            f"{max(o.worst_dd_close for o in guarded):.3f} %); past 3 % a day + slippage: "
            f"{sum(o.worst_day > 3 + o.day_slippage + 1e-9 for o in guarded)}, past 10 % "
            f"drawdown + slippage: {sum(o.worst_dd > 10 + o.dd_slippage + 1e-9 for o in guarded)}"
        )
    if off:
        print(f"unguarded runs {len(off)}: liquidated {sum(o.liquidations > 0 for o in off)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main(sys.argv[1:]))
