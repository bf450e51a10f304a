"""The headline test: a reckless strategy on the real October 2025 BTC data (the 10-11 October
liquidation cascade) is liquidated with guards off, and with the default guards on it has zero
liquidations, a stop on every position, and losses per trade within max_risk_pct.

The reckless strategy is a test fixture, not a built-in: 20x long, no stop of its own, and it
tops up the position whenever it is in loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from bot.research.replay import Report, run_replay
from bot.settings import Settings, load_settings
from bot.strategies.base import NO_INTENTS, BaseStrategy
from guards.types import OrderIntent, Position
from paper.feed import Candles, load_candles

START_MS = 1_759_276_800_000  # 2025-10-01 00:00 UTC
END_MS = 1_761_523_200_000  # 2025-10-27 00:00 UTC


class Reckless(BaseStrategy):
    """All-in 20x long with no stop, averaging down on every losing candle."""

    name = "reckless"

    def __init__(self, notional: float = 150_000.0, leverage: float = 20.0) -> None:
        self.notional = notional
        self.leverage = leverage
        self.positions_seen: list[Position] = []

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
            self.positions_seen.append(position)
            if close >= position.entry_price:
                return NO_INTENTS
            amount = position.amount * 0.5  # top up the loser
        else:
            amount = self.notional / close
        return (
            OrderIntent(
                symbol=symbol,
                side="long",
                amount=amount,
                leverage=self.leverage,
                margin_mode="isolated",
                tag="reckless",
            ),
        )


@pytest.fixture
def october(shared_data: Path) -> Candles:
    path = (
        shared_data / "candles" / "aminak58_RL-Trading-Validation" / "BTC_USDT_USDT-5m-futures.json"
    )
    return load_candles(path).between(START_MS, END_MS)


def settings(**guards: object) -> Settings:
    return load_settings(
        None, {"guards": guards} if guards else {}, env_file=None, secrets_dir=None
    )


def replay(s: Settings, candles: Candles, guards_on: bool) -> tuple[Report, Reckless]:
    strategy = Reckless()
    return run_replay(
        s, guards_on=guards_on, strategy=strategy, candles=candles, heartbeat=False
    ), strategy


def test_guards_off_the_reckless_strategy_is_liquidated(clean_env: Path, october: Candles) -> None:
    report, _ = replay(settings(), october, guards_on=False)
    assert report.liquidations >= 1
    assert report.liquidation_loss > 0
    assert report.final_equity < report.starting_balance


def test_default_guards_refuse_every_stopless_entry(clean_env: Path, october: Candles) -> None:
    report, strategy = replay(settings(), october, guards_on=True)
    assert report.liquidations == 0
    assert report.trades == 0
    assert strategy.positions_seen == []
    assert report.guard_interventions["stop_loss"] > 0


def test_guards_attaching_stops_trade_without_liquidation(
    clean_env: Path, october: Candles
) -> None:
    s = settings(stop_loss={"missing": "attach"})
    report, strategy = replay(s, october, guards_on=True)
    assert report.trades > 0
    assert report.liquidations == 0
    # every position the strategy ever held carried a live exchange-side stop
    assert strategy.positions_seen
    assert all(p.stop_price is not None for p in strategy.positions_seen)
    # averaging down and 20x were refused or cut back
    assert report.guard_interventions.get("anti_top_up", 0) > 0
    assert report.guard_interventions.get("position_cap", 0) > 0


def test_guarded_losses_per_trade_stay_within_max_risk(clean_env: Path, october: Candles) -> None:
    s = settings(stop_loss={"missing": "attach"})
    report, _ = replay(s, october, guards_on=True)
    max_risk = s.guards.stop_loss.max_risk_pct / 100.0
    slip = s.paper.slippage_bps / 1e4
    # group closing fills into round trips (a guard reduce splits one into several fills)
    trips: dict[tuple[str, int], list[tuple[float, float]]] = {}
    notionals: dict[tuple[str, int], float] = {}
    for t in report.closed_trades:
        key = (t.symbol, t.opened_at)
        trips.setdefault(key, []).append((t.pnl - t.fees, t.funding))
        notionals[key] = notionals.get(key, 0.0) + t.amount * t.entry_price
    assert trips
    equity = report.starting_balance
    for key in sorted(trips, key=lambda k: k[1]):
        price_and_fees = sum(a for a, _ in trips[key])
        funding = sum(f for _, f in trips[key])
        # The stop-loss rule sizes each entry so the loss at its stop, fees included, is at most
        # max_risk_pct of equity at entry; a market entry and a stop-market exit may each add the
        # configured slippage. Funding is a holding cost outside the rule, so it is kept apart.
        allowance = max_risk * equity + 2 * slip * notionals[key]
        assert -price_and_fees <= allowance, (key, price_and_fees, allowance)
        equity += price_and_fees + funding
