"""The loss limits are bounds (hypothesis): random sequences of entries that run up and then
fall through their stops never take the day or the drawdown past its limit by more than the
slippage beyond what the guards assume, and never make more stop-outs in a day than
``max_stopouts_per_day``.

The account is the real paper core (fills, fees, slippage); the guards are the real engine
(stop_loss sizing against the budgets, its stop tightening sweep, loss_limit, position_cap,
liquidation, anti_top_up's stop-out bound). Every price point is a path move (no gap: a gap past
a stop is outside the guarantee), and the sweep runs at every point, its actions carried out on
the core as the shell would (stops replaced, positions closed).

The bound checked at every point, against the guards' own day baseline and peak:
``loss ≤ limit + excess`` where ``excess`` is what the fills so far paid in slippage beyond the
guards' ``slippage_bps`` (``amount × price × (paper slip − assumed slip)`` per fill), so with
the paper's slippage at or below the assumed one the limits hold to the cent.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import ccxt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guards import Action, GuardContext, GuardEngine, GuardsConfig, Mark, OrderIntent
from paper.config import PaperConfig
from paper.core import PaperCore, Trade
from paper.markets import load_markets

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT")
START = {"BTC/USDT:USDT": 60_000.0, "ETH/USDT:USDT": 3_000.0}
T0 = 1_717_200_000.0  # 2024-06-01 00:00 UTC
ASSUMED_BPS = 2.0


class Account:
    """The paper core, the guard engine, and the shell's part between them."""

    def __init__(self, guards: GuardsConfig, paper_bps: float) -> None:
        config = PaperConfig(slippage_bps=paper_bps, auto_funding=False)
        self.core = PaperCore(config, load_markets(SYMBOLS, config))
        self.engine = GuardEngine(guards)
        self.markets = {s: self.core.market_rules(s) for s in SYMBOLS}
        self.prices = dict(START)
        self.now = T0
        self.excess_slip = max(0.0, paper_bps - ASSUMED_BPS) / 1e4
        self.excess = 0.0  # slippage paid beyond the assumed one, USDT
        self.fills_seen = 0
        self.trades_seen = 0
        self.worst_daily = 0.0  # how far past the limit, % (negative: inside)
        self.worst_drawdown = 0.0
        self.max_stopouts = guards.anti_top_up.max_stopouts_per_day
        self.daily = guards.loss_limit.max_daily_loss_pct
        self.drawdown = guards.loss_limit.max_drawdown_pct
        self.entries = 0
        for symbol in SYMBOLS:
            self.core.set_margin_mode("isolated", symbol)
            self.core.on_price(symbol, self.prices[symbol], self.ms())

    def ms(self) -> int:
        return int(self.now * 1000)

    def ctx(self) -> GuardContext:
        marks = {s: Mark(p, self.now) for s, p in self.prices.items()}
        return GuardContext(self.core.account(), self.markets, marks, self.now)

    # -- the shell's part ---------------------------------------------------------------
    def stop(self, symbol: str, price: float) -> None:
        """Put one stop at ``price`` on the whole position (replacing the standing one)."""
        core = self.core
        for order in core.open_orders(symbol):
            core.cancel_order(order["id"], symbol)
        pos = core.position(symbol)
        if pos is None:
            return
        side = "sell" if pos.side == "long" else "buy"
        try:
            core.create_order(
                symbol,
                "market",
                side,
                pos.amount,
                None,
                {"stopLossPrice": price, "reduceOnly": True},
            )
        except ccxt.OrderImmediatelyFillable:
            self.close(symbol)

    def close(self, symbol: str) -> None:
        pos = self.core.position(symbol)
        if pos is not None:
            side = "sell" if pos.side == "long" else "buy"
            self.core.create_order(
                symbol, "market", side, pos.amount, None, {"reduceOnly": True, "reason": "guard"}
            )
        self.settle()

    def enter(
        self, symbol: str, side: str, stop_frac: float, notional_x: float, lev: float
    ) -> None:
        price = self.prices[symbol]
        sign = 1 if side == "long" else -1
        amount = notional_x * self.core.equity() / price
        intent = OrderIntent(
            symbol,
            side,
            amount,
            leverage=lev,
            stop_price=price * (1 - sign * stop_frac),  # type: ignore[arg-type]
        )
        decision = self.engine.check(intent, self.ctx())
        if not decision.allowed:
            return
        approved = self.engine.approve(decision, self.now)
        assert approved.stop_price is not None
        core = self.core
        with contextlib.suppress(ccxt.InsufficientFunds, ccxt.InvalidOrder):
            if core.position(symbol) is None:
                core.set_leverage(approved.intent.leverage, symbol)
            core.create_order(symbol, "market", "buy" if sign > 0 else "sell", approved.amount)
            self.entries += 1
        self.settle()
        self.stop(symbol, approved.stop_price)
        self.settle()

    def settle(self) -> None:
        """Feed closes to the guards (stop-outs, cooldowns) and tally the excess slippage."""
        core = self.core
        for fill in core.fills[self.fills_seen :]:
            self.excess += fill.amount * fill.price * self.excess_slip
        self.fills_seen = len(core.fills)
        trades: list[Trade] = core.trades
        for t in trades[self.trades_seen :]:
            if core.position(t.symbol) is None:
                self.engine.on_position_closed(t.symbol, t.reason, t.net, t.closed_at / 1000)  # type: ignore[arg-type]
        self.trades_seen = len(trades)

    def apply(self, action: Action) -> None:
        if action.kind == "close" and action.symbol is not None:
            self.close(action.symbol)
        elif action.kind == "place_stop" and action.symbol is not None:
            assert action.stop_price is not None
            self.stop(action.symbol, action.stop_price)
            self.settle()

    def price(self, symbol: str, price: float) -> None:
        """One path move of ``symbol`` (a minute later), the sweep, then the checks."""
        self.now += 60.0
        self.prices[symbol] = price
        self.core.on_price(symbol, price, self.ms())
        for other, p in self.prices.items():
            if other != symbol:
                self.core.on_price(other, p, self.ms())
        self.settle()
        for action in self.engine.sweep(self.ctx()):
            self.apply(action)
        self.observe()

    def observe(self) -> None:
        state = self.engine.state
        equity = self.core.equity()
        base, peak = state.day_start_equity, state.equity_peak
        assert base is not None and peak is not None
        daily = (base - equity - self.excess) / base * 100.0
        drawdown = (peak - equity - self.excess) / peak * 100.0
        self.worst_daily = max(self.worst_daily, daily - self.daily)
        self.worst_drawdown = max(self.worst_drawdown, drawdown - self.drawdown)
        assert daily <= self.daily + 1e-7, (daily, self.daily, equity, base)
        assert drawdown <= self.drawdown + 1e-7, (drawdown, self.drawdown, equity, peak)
        assert state.stopouts_today <= self.max_stopouts

    def run_up_then_stop_out(self, symbol: str, run: float) -> None:
        """Move in the position's favour by ``run``, then down through its (current) stop."""
        pos = self.core.position(symbol)
        if pos is None:
            self.price(symbol, self.prices[symbol] * 1.001)
            return
        top = self.prices[symbol] * (1 + pos.sign * run)
        start = self.prices[symbol]
        for k in (1, 2, 3):
            self.price(symbol, start + (top - start) * k / 3)
        pos = self.core.position(symbol)
        if pos is None or pos.stop_price is None:
            return
        target = pos.stop_price * (1 - pos.sign * 0.004)
        start = self.prices[symbol]
        for k in (1, 2, 3, 4):
            self.price(symbol, start + (target - start) * k / 4)


def guards(daily: float, drawdown: float, risk: float, stopouts: int) -> GuardsConfig:
    return GuardsConfig.model_validate(
        {
            "stop_loss": {"max_risk_pct": risk, "slippage_bps": ASSUMED_BPS},
            "loss_limit": {"max_daily_loss_pct": daily, "max_drawdown_pct": drawdown},
            "anti_top_up": {"cooldown_min": 0, "max_stopouts_per_day": stopouts},
            "overtrading": {"enabled": False},
            "no_overnight": {"enabled": False},
            "circuit_breaker": {"enabled": False},
        }
    )


entries = st.tuples(
    st.integers(0, len(SYMBOLS) - 1),
    st.sampled_from(["long", "short"]),
    st.floats(0.002, 0.08),  # stop distance, fraction of price
    st.floats(0.05, 20.0),  # requested notional, times equity (the guards cut it down)
    st.floats(1.0, 10.0),  # leverage
    st.floats(0.0, 0.15) | st.just(0.0),  # run-up in the position's favour before the fall
    st.integers(0, 30),  # hours before the next entry (days roll)
)
common: Any = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@common
@given(
    daily=st.floats(0.5, 5.0),
    drawdown=st.floats(1.0, 15.0),
    risk=st.floats(0.3, 5.0),
    stopouts=st.integers(1, 6),
    paper_bps=st.sampled_from([0.0, 1.0, 2.0]) | st.floats(0.0, 10.0),
    steps=st.lists(entries, min_size=1, max_size=20),
)
def test_stopped_out_entries_never_pass_the_limits(
    daily: float,
    drawdown: float,
    risk: float,
    stopouts: int,
    paper_bps: float,
    steps: list[tuple[int, str, float, float, float, float, int]],
) -> None:
    acct = Account(guards(daily, drawdown, risk, stopouts), paper_bps)
    acct.price(SYMBOLS[0], START[SYMBOLS[0]])
    for index, side, stop_frac, notional_x, lev, run, hours in steps:
        symbol = SYMBOLS[index]
        acct.enter(symbol, side, stop_frac, notional_x, lev)
        acct.observe()
        acct.run_up_then_stop_out(symbol, run)
        acct.now += hours * 3600.0
        acct.price(symbol, acct.prices[symbol])
    assert math.isfinite(acct.core.equity())


def test_a_run_of_stop_outs_ends_at_the_daily_limit() -> None:
    """By hand: 3 % daily limit on 10,000 (floor 9,700), 1 % risk per trade, BTC longs at 5x
    with a 2 % stop, each stopped out. Each of the first three loses about 1 % of the equity at
    its entry (≈ 99 USDT: 0.077 BTC × (60,012 − 58,788.24) + fees ≈ 94.23 + 4.57), leaving
    ≈ 4.45 USDT of the 300 USDT budget. The fourth is sized to that: its loss per BTC at the
    stop is ≈ 1,138 + 55 in fees, so 4.45 / 1,193 = 0.0037 → 0.003 BTC. The day ends just above
    9,700 — where a tripwire with 1 % per trade would have let a fourth full loss take it to
    ≈ 9,607 (3.9 %). Every later entry is refused: nothing is left."""
    acct = Account(guards(3.0, 10.0, 1.0, 10), ASSUMED_BPS)
    symbol = SYMBOLS[0]
    acct.price(symbol, START[symbol])
    for _ in range(6):
        acct.enter(symbol, "long", 0.02, 5.0, 5.0)
        acct.run_up_then_stop_out(symbol, 0.0)
    amounts = [t.amount for t in acct.core.trades]
    assert len(amounts) == 4 and amounts[3] < amounts[0] / 10  # the fourth, cut to the rest
    assert 9_700.0 <= acct.core.equity() < 9_704.0
