"""Strategies: indicators against naive reference computations on real candles, the two
built-ins' signals and ATR stops, reversals, loading by dotted path, and hot-path speed.

References are written here independently of the code under test: window sums and slices for
SMA and Donchian, closed-form weighted sums for EMA and Wilder's ATR, and small hand-worked
series with their arithmetic in comments.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.strategies import NO_INTENTS, BaseStrategy, Strategy, load_strategy
from bot.strategies.base import entry_intent
from bot.strategies.donchian import Donchian
from bot.strategies.indicators import Atr, DonchianChannel, Ema, Sma
from bot.strategies.sma_cross import SmaCross
from guards.types import OrderIntent, Position
from paper.feed import bundled_candles_path, load_candles

SYMBOL = "BTC/USDT:USDT"
CANDLES = load_candles(bundled_candles_path())
HIGHS, LOWS, CLOSES = list(CANDLES.high), list(CANDLES.low), list(CANDLES.close)
N = len(CLOSES)


def true_ranges(
    highs: Sequence[float], lows: Sequence[float], closes: Sequence[float]
) -> list[float]:
    out = [highs[0] - lows[0]]
    for i in range(1, len(highs)):
        pc = closes[i - 1]
        out.append(max(highs[i] - lows[i], abs(highs[i] - pc), abs(lows[i] - pc)))
    return out


def wilder_atr_closed_form(trs: Sequence[float], n: int, t: int) -> float:
    """ATR_t = b^(t-n+1) * mean(TR_0..TR_{n-1}) + sum_{k=n..t} (1/n) b^(t-k) TR_k, b = 1 - 1/n."""
    b = 1.0 - 1.0 / n
    seed = sum(trs[:n]) / n
    return b ** (t - n + 1) * seed + sum(b ** (t - k) * trs[k] / n for k in range(n, t + 1))


def naive_sma(xs: Sequence[float], n: int, t: int) -> float:
    return sum(xs[t - n + 1 : t + 1]) / n


# ------------------------------------------------------------------------------------------
# Indicators


@pytest.mark.parametrize("period", [1, 7, 30, 200])
def test_sma_matches_window_means(period: int) -> None:
    sma = Sma(period)
    for t, x in enumerate(CLOSES):
        got = sma.update(x)
        if t < period - 1:
            assert got is None
        else:
            assert got == pytest.approx(naive_sma(CLOSES, period, t), rel=1e-12)


@pytest.mark.parametrize("period", [5, 21])
def test_ema_matches_weighted_sum(period: int) -> None:
    alpha = 2.0 / (period + 1)
    ema = Ema(period)
    values = [ema.update(x) for x in CLOSES[:400]]
    assert all(v is None for v in values[: period - 1])
    seed = sum(CLOSES[:period]) / period
    for t in (period - 1, period, period + 10, 399):
        # EMA_t = (1-a)^(t-n+1) * seed + sum_{k=n..t} a (1-a)^(t-k) x_k
        ref = (1 - alpha) ** (t - period + 1) * seed + sum(
            alpha * (1 - alpha) ** (t - k) * CLOSES[k] for k in range(period, t + 1)
        )
        assert values[t] == pytest.approx(ref, rel=1e-12)


def test_atr_hand_worked() -> None:
    atr = Atr(3)
    # c0 h10 l8 c9: TR = 10-8 = 2 (no previous close)
    assert atr.update(10, 8, 9) is None
    # c1 h11 l9 c10.5, prev close 9: TR = max(2, |11-9|=2, |9-9|=0) = 2
    assert atr.update(11, 9, 10.5) is None
    # c2 h12 l10 c11, prev 10.5: TR = max(2, 1.5, 0.5) = 2 → ATR = (2+2+2)/3 = 2
    assert atr.update(12, 10, 11) == pytest.approx(2.0)
    # c3 h11.5 l7 c8, prev 11: TR = max(4.5, 0.5, 4) = 4.5 → ATR = (2*2 + 4.5)/3 = 8.5/3
    assert atr.update(11.5, 7, 8) == pytest.approx(8.5 / 3)
    # c4 gap up h15 l14 c14.5, prev 8: TR = max(1, 7, 6) = 7 → ATR = (8.5/3*2 + 7)/3 = 38/9
    assert atr.update(15, 14, 14.5) == pytest.approx(38 / 9)


def test_atr_matches_closed_form_on_real_candles() -> None:
    n = 14
    trs = true_ranges(HIGHS, LOWS, CLOSES)
    atr = Atr(n)
    values = [atr.update(h, lo, c) for h, lo, c in zip(HIGHS, LOWS, CLOSES, strict=True)]
    assert values[n - 2] is None and values[n - 1] == pytest.approx(sum(trs[:n]) / n)
    for t in (n, 100, 3000, 9000):
        assert values[t] == pytest.approx(wilder_atr_closed_form(trs, n, t), rel=1e-9)


@pytest.mark.parametrize("period", [1, 3, 20, 55])
def test_donchian_matches_window_extremes(period: int) -> None:
    dc = DonchianChannel(period)
    for t in range(N):
        dc.update(HIGHS[t], LOWS[t])
        if t < period - 1:
            assert dc.upper is None and dc.lower is None
        else:
            assert dc.upper == max(HIGHS[t - period + 1 : t + 1])
            assert dc.lower == min(LOWS[t - period + 1 : t + 1])


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_indicator_period_must_be_positive_int(bad: object) -> None:
    with pytest.raises(ValueError, match="period"):
        Sma(bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# SMA cross


def run(
    strategy: Strategy, position: Position | None = None
) -> list[tuple[int, Sequence[OrderIntent]]]:
    out = []
    for i, (ts, o, h, lo, c, v) in enumerate(CANDLES.rows()):
        intents = strategy.on_candle(SYMBOL, ts, o, h, lo, c, v, position)
        if intents:
            out.append((i, intents))
    return out


def test_sma_cross_signals_match_naive_crosses_with_atr_stops() -> None:
    fast, slow, n_atr, mult = 10, 30, 14, 2.0
    events = dict(run(SmaCross(fast=fast, slow=slow, atr_period=n_atr, atr_mult=mult)))
    trs = true_ranges(HIGHS, LOWS, CLOSES)
    # Reference: diff_t = SMA10 - SMA30 from window sums; a cross is a sign change of diff.
    diff = {t: naive_sma(CLOSES, fast, t) - naive_sma(CLOSES, slow, t) for t in range(slow - 1, N)}
    expected = {}
    for t in range(slow, N):
        if diff[t - 1] <= 0 < diff[t]:
            expected[t] = "long"
        elif diff[t - 1] >= 0 > diff[t]:
            expected[t] = "short"
    assert len(expected) > 50  # the test has something to check
    assert {t: intents[0].side for t, intents in events.items()} == expected
    for t, intents in events.items():
        (entry,) = intents
        close = CLOSES[t]
        distance = mult * wilder_atr_closed_form(trs, n_atr, t)
        if entry.side == "long":
            assert entry.stop_price is not None and entry.stop_price < close
        else:
            assert entry.stop_price is not None and entry.stop_price > close
        assert abs(close - entry.stop_price) == pytest.approx(distance, rel=1e-9)
        assert entry.take_profit is None and not entry.reduce_only
        assert entry.amount == pytest.approx(1000.0 / close)
        assert entry.leverage == 3.0 and entry.symbol == SYMBOL and entry.order_type == "market"


def test_sma_cross_take_profit_and_fixed_amount() -> None:
    events = run(SmaCross(fast=5, slow=20, take_profit_rr=2.0, amount=0.01, leverage=2))
    assert events
    for t, (entry,) in events:
        assert entry.stop_price is not None and entry.take_profit is not None
        risk = CLOSES[t] - entry.stop_price  # positive for a long, negative for a short
        # TP sits twice the stop distance on the winning side: close + 2 * (close - stop).
        assert entry.take_profit == pytest.approx(CLOSES[t] + 2.0 * risk)
        assert entry.amount == 0.01 and entry.leverage == 2.0


def test_sma_cross_fixed_pct_stop_replaces_the_atr_stop() -> None:
    # freqtrade's benchmark strategy: stoploss -0.02 of the margin at 3x = 2/3 % of price.
    pct = 2.0 / 3.0
    atr_events = dict(run(SmaCross(fast=5, slow=20)))
    events = run(SmaCross(fast=5, slow=20, stop_pct=pct, take_profit_rr=1.5))
    # Same signals as the ATR version: only the stop (and TP) placement changes.
    assert events and [t for t, _ in events] == sorted(atr_events)
    for t, (entry,) in events:
        close = CLOSES[t]
        sign = 1.0 if entry.side == "long" else -1.0
        # Long: stop = close * (1 - 0.006667), e.g. 30,000 -> 29,800; short: close * (1 + ...).
        assert entry.stop_price == pytest.approx(close * (1.0 - sign * pct / 100.0), rel=1e-12)
        # TP at 1.5 stop distances on the winning side: close * (1 + 0.01).
        assert entry.take_profit == pytest.approx(close * (1.0 + sign * 0.01), rel=1e-12)
    # Hand-worked: a long at 30,000 with a 2/3 % stop sits at 29,800 (30,000 x 0.02 / 3 = 200).
    p = SmaCross(fast=5, slow=20, stop_pct=pct).params
    assert entry_intent(SYMBOL, "long", 30_000.0, 999.0, p, "t").stop_price == pytest.approx(
        29_800.0
    )
    assert entry_intent(SYMBOL, "short", 30_000.0, 0.0, p, "t").stop_price == pytest.approx(
        30_200.0
    )
    for bad in (0.0, -1.0, 100.0):
        with pytest.raises(ValueError, match="stop_pct"):
            SmaCross(stop_pct=bad)


def _cross_series() -> list[float]:
    # 40 rising closes, then 40 falling: SMA3 crosses below SMA5 once, early in the fall.
    return [100.0 + i for i in range(40)] + [139.0 - 2 * i for i in range(1, 41)]


def _feed(
    strategy: Strategy, closes: list[float], position: Position | None
) -> list[tuple[int, Sequence[OrderIntent]]]:
    out = []
    for i, c in enumerate(closes):
        intents = strategy.on_candle(SYMBOL, i * 300_000, c, c + 1.0, c - 1.0, c, 1.0, position)
        if intents:
            out.append((i, intents))
    return out


def test_sma_cross_reversal_closes_then_enters() -> None:
    long = Position(SYMBOL, "long", 0.05, 120.0, leverage=3.0, margin=2.0)
    events = _feed(SmaCross(fast=3, slow=5, atr_period=3), _cross_series(), long)
    # While long, the cross up is no news; the cross down closes the long and opens a short.
    assert len(events) == 1
    t, (exit_, entry) = events[0]
    assert 40 <= t <= 45
    assert exit_.reduce_only and exit_.side == "long" and exit_.amount == 0.05
    assert entry.side == "short" and not entry.reduce_only
    assert entry.stop_price is not None and entry.stop_price > _cross_series()[t]


def test_sma_cross_long_only() -> None:
    long = Position(SYMBOL, "long", 0.05, 120.0)
    events = _feed(SmaCross(fast=3, slow=5, atr_period=3, allow_short=False), _cross_series(), long)
    assert len(events) == 1 and len(events[0][1]) == 1 and events[0][1][0].reduce_only
    # Flat and long-only: a cross down is nothing to do.
    flat = _feed(
        SmaCross(fast=3, slow=5, atr_period=3, allow_short=False), _cross_series()[30:], None
    )
    assert all(intents[0].side == "long" for _, intents in flat)


def test_quiet_candles_return_the_shared_empty_tuple() -> None:
    s = SmaCross()
    results = [
        s.on_candle(SYMBOL, ts, o, h, lo, c, v, None) for ts, o, h, lo, c, v in CANDLES.rows()
    ]
    empties = [r for r in results if not r]
    assert len(empties) > N // 2 and all(r is NO_INTENTS for r in empties)
    assert BaseStrategy().on_tick(SYMBOL, 0, 1.0, None) is NO_INTENTS


def test_symbols_keep_separate_state() -> None:
    s = SmaCross(fast=3, slow=5, atr_period=3)
    closes = _cross_series()
    mixed = []
    for i, c in enumerate(closes):
        for sym in ("A", "B"):
            for intent in s.on_candle(sym, i, c, c + 1, c - 1, c, 1.0, None):
                mixed.append((i, sym, intent.side))
    alone = [
        (i, intents[0].side)
        for i, intents in _feed(SmaCross(fast=3, slow=5, atr_period=3), closes, None)
    ]
    assert [(i, side) for i, sym, side in mixed if sym == "A"] == alone
    assert [(i, side) for i, sym, side in mixed if sym == "B"] == alone


# ------------------------------------------------------------------------------------------
# Donchian

# (high, low, close) — worked by hand below.
DC_CANDLES = [
    (10.0, 9.0, 9.5),
    (10.5, 9.2, 10.0),
    (10.2, 9.1, 9.8),
    (11.0, 10.0, 10.8),  # close 10.8 > prior 3-high max(10, 10.5, 10.2) = 10.5 → long
    (11.2, 10.6, 11.1),  # long: prior 2-low min(9.1, 10) = 9.1, close above → hold
    (11.0, 10.2, 10.4),  # prior 2-low min(10, 10.6) = 10.0, close 10.4 above → hold
    (10.5, 9.5, 9.7),  # prior 2-low min(10.6, 10.2) = 10.2 → exit; prior 3-low 10.0 → short too
]


def _dc_run(strategy: Donchian, long_from: int) -> dict[int, Sequence[OrderIntent]]:
    pos = Position(SYMBOL, "long", 0.1, 10.8)
    out = {}
    for i, (h, lo, c) in enumerate(DC_CANDLES):
        intents = strategy.on_candle(SYMBOL, i, c, h, lo, c, 1.0, pos if i >= long_from else None)
        if intents:
            out[i] = intents
    return out


def test_donchian_breakout_entry_and_exit_hand_worked() -> None:
    events = _dc_run(Donchian(period=3, exit_period=2, atr_period=2, atr_mult=2.0), long_from=4)
    assert sorted(events) == [3, 6]
    (entry,) = events[3]
    # ATR(2): TR0 = 1.0; TR1 = max(1.3, 1.0, 0.3) = 1.3 → ATR = 1.15;
    # TR2 = max(1.1, 0.2, 0.9) = 1.1 → ATR = (1.15 + 1.1)/2 = 1.125;
    # TR3 = max(1.0, |11-9.8| = 1.2, 0.2) = 1.2 → ATR = (1.125 + 1.2)/2 = 1.1625.
    # Stop = 10.8 - 2 * 1.1625 = 8.475.
    assert entry.side == "long" and entry.stop_price == pytest.approx(8.475)
    exit_, short = events[6]
    assert exit_.reduce_only and exit_.side == "long" and exit_.amount == 0.1
    assert short.side == "short" and short.stop_price is not None and short.stop_price > 9.7
    # Long only: the same close just exits.
    long_only = _dc_run(Donchian(period=3, exit_period=2, atr_period=2, allow_short=False), 4)
    assert len(long_only[6]) == 1 and long_only[6][0].reduce_only


def test_donchian_on_real_candles_stops_on_losing_side() -> None:
    events = run(Donchian())
    assert len(events) > 20
    for t, (entry,) in events:
        assert entry.stop_price is not None
        # Entries fire only on a close beyond the previous 20 candles' channel.
        if entry.side == "long":
            assert CLOSES[t] > max(HIGHS[t - 20 : t]) and entry.stop_price < CLOSES[t]
        else:
            assert CLOSES[t] < min(LOWS[t - 20 : t]) and entry.stop_price > CLOSES[t]


# ------------------------------------------------------------------------------------------
# Invariant over random markets

candle = st.tuples(
    st.floats(-0.03, 0.03), st.floats(0.0, 0.02), st.floats(0.0, 0.02)
)  # (close change, wick up, wick down) as fractions


@settings(max_examples=60, deadline=None)
@given(st.lists(candle, min_size=30, max_size=150), st.booleans())
def test_entries_always_carry_a_stop_on_the_losing_side(
    moves: list[tuple[float, float, float]], in_pos: bool
) -> None:
    strategies: list[Strategy] = [
        SmaCross(fast=2, slow=5, atr_period=3, take_profit_rr=1.5),
        Donchian(period=4, exit_period=2, atr_period=3, take_profit_rr=1.5),
    ]
    for strategy in strategies:
        price = 100.0
        for i, (chg, up, down) in enumerate(moves):
            o, c = price, price * (1 + chg)
            h, lo = max(o, c) * (1 + up), min(o, c) * (1 - down)
            pos = Position(SYMBOL, "short" if i % 2 else "long", 1.0, price) if in_pos else None
            for intent in strategy.on_candle(SYMBOL, i, o, h, lo, c, 1.0, pos):
                if intent.reduce_only:
                    assert pos is not None and (intent.side, intent.amount) == (
                        pos.side,
                        pos.amount,
                    )
                    continue
                assert intent.stop_price is not None and intent.take_profit is not None
                if intent.side == "long":
                    assert intent.stop_price < c < intent.take_profit
                else:
                    assert intent.take_profit < c < intent.stop_price
            price = c


# ------------------------------------------------------------------------------------------
# Loading by path


class Echo(BaseStrategy):
    name = "echo"

    def __init__(self, word: str = "hi") -> None:
        self.word = word


def test_load_builtins_and_custom() -> None:
    s = load_strategy("bot.strategies.sma_cross:SmaCross", {"fast": 5, "slow": 20})
    assert isinstance(s, SmaCross) and s.name == "sma_cross"
    assert (s.params.fast, s.params.slow, s.params.atr_period) == (5, 20, 14)
    d = load_strategy("bot.strategies.donchian:Donchian", {})
    assert isinstance(d, Donchian) and d.params.period == 20 and d.params.exit_period == 10
    e = load_strategy(f"{__name__}:Echo", {"word": "yo"})
    assert isinstance(e, Echo) and e.word == "yo"


@pytest.mark.parametrize(
    ("path", "params", "match"),
    [
        ("bot.strategies.sma_cross", {}, "must look like"),
        (":SmaCross", {}, "must look like"),
        ("bot.strategies.no_such:Thing", {}, "cannot import"),
        ("bot.strategies.sma_cross:Nope", {}, "has no 'Nope'"),
        ("bot.strategies.sma_cross:SmaCross", {"fast": 30, "slow": 10}, "bad params"),
        ("bot.strategies.sma_cross:SmaCross", {"speed": 3}, "bad params"),
        ("bot.strategies.sma_cross:SmaCross", {"atr_mult": -1}, "bad params"),
        ("bot.strategies.donchian:Donchian", {"period": 0}, "bad params"),
        ("builtins:dict", {}, "is not a Strategy"),
        ("bot.strategies.base:NO_INTENTS", {}, "not a class"),
    ],
)
def test_load_errors_name_the_path(path: str, params: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match) as err:
        load_strategy(path, params)
    assert repr(path) in str(err.value)
