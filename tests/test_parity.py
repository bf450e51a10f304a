"""One execution path: the same candles through replay and through the running bot on the paper
exchange give the same guard decisions, the same orders and the same fills.

The bot side is the real ``Engine`` with the real ``Executor`` over a ``PaperExchange``, driven
by a simulated feed and clock: every candle's intrabar path (open, nearer extreme, other
extreme, close) arrives as price updates at the times replay prices them, the scheduled jobs
(the sweep every ``guards.sweep_s``, the ``flat_by`` flatten, the daily reset) run on
APScheduler's triggers at the simulated time, and each bar closes when the clock reaches its
end. The strategy opens, closes by an *opposite* order, gets stopped out, is refused while it
cools down and in the evening, and is flattened at ``flat_by``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from strategies_for_tests import Scripted

from bot.research.replay import run_replay
from bot.settings import Settings, load_settings
from bot.state.store import Store
from bot.trading.engine import Engine
from bot.trading.executor import Executor
from bot.trading.jobs import SimScheduler, job_specs, job_triggers
from guards import Decision, GuardEngine
from paper.core import PaperCore
from paper.exchange import PaperExchange
from paper.feed import Candles, bundled_candles_path, load_candles
from paper.markets import load_markets

BTC = "BTC/USDT:USDT"
START = datetime(2025, 4, 1, 8, 0, tzinfo=UTC)
END = datetime(2025, 4, 2, 1, 0, tzinfo=UTC)
STEPS = {
    "08:10": ("long", 2.0),  # opened at 08:15
    "08:40": ("short_close", 0.0),  # a short market order closes it at 08:45
    "09:00": ("long", 0.1),  # a tight stop: stopped out soon after 09:05
    "09:30": ("long", 2.0),  # refused: cooling down after the stop-out
    "19:00": ("long", 2.0),  # held into the evening
    "21:15": ("long", 2.0),  # refused: no entries within 60 min of flat_by
}


def candles() -> Candles:
    data = load_candles(bundled_candles_path())
    return data.between(int(START.timestamp() * 1000), int(END.timestamp() * 1000))


def settings(tmp: Path) -> Settings:
    return load_settings(
        None,
        {
            "state": {"dir": str(tmp / "state")},
            # the breaker would see four prices per candle in the bot and one in replay
            "guards": {"circuit_breaker": {"enabled": False}},
            "paper": {"auto_funding": False},
        },
        env_file=None,
        secrets_dir=None,
    )


def path(cs: Candles, i: int) -> list[tuple[int, float]]:
    """The intrabar walk replay prices: open, nearer extreme, other extreme, close."""
    o, h, lo, c = cs.open[i], cs.high[i], cs.low[i], cs.close[i]
    p1, p2 = (lo, h) if (o - lo) <= (h - o) else (h, lo)
    tf = cs.timeframe_ms
    ts = cs.ts[i]
    return [(ts, o), (ts + tf // 3, p1), (ts + (2 * tf) // 3, p2), (ts + tf - 1, c)]


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def run_bot(s: Settings, cs: Candles) -> tuple[list[Decision], PaperCore]:
    exchange = PaperExchange(config=s.paper, markets=load_markets([BTC], s.paper))
    core = exchange.core
    clock = Clock(cs.ts[0] / 1000.0)
    with Store.open(s.state.dir) as store:
        executor = Executor(exchange, store=store, run_id="replay", fill_timeout_s=1.0, poll_s=0.0)
        engine = Engine(
            exchange=exchange,
            executor=executor,
            store=store,
            guard=GuardEngine(s.guards),
            markets={BTC: core.market_rules(BTC)},
            strategy=Scripted(STEPS),
            symbols=(BTC,),
            timeframe_ms=cs.timeframe_ms,
            run_id="parity",
            clock=clock,
            on_price_hook=lambda sym, price, ts: core.on_price(sym, price, int(ts * 1000)),
        )

        async def flatten() -> None:
            await engine.job_flatten(wait_s=0.0)

        start = datetime.fromtimestamp(clock.t, UTC)
        triggers = job_triggers(s.guards, heartbeat_s=s.state.heartbeat_s, start=start)
        funcs: dict[str, Any] = {
            "sweep": engine.job_sweep,
            "flatten": flatten,
            "daily_reset": engine.job_daily_reset,
        }
        jobs = SimScheduler(job_specs(triggers, funcs), start)
        await engine.start()
        for i in range(len(cs)):
            for ts, price in path(cs, i):
                clock.t = ts / 1000.0
                await jobs.advance(datetime.fromtimestamp(clock.t, UTC))
                await engine.on_price(BTC, price, clock.t)
            clock.t = (cs.ts[i] + cs.timeframe_ms) / 1000.0
            await jobs.advance(datetime.fromtimestamp(clock.t, UTC))
            await engine.on_clock(clock.t)
        decisions = [row.decision for row in reversed(store.recent_decisions(10_000))]
    return decisions, core


def decision_key(d: Decision) -> tuple[Any, ...]:
    return (d.intent.side, d.intent.amount, d.outcome, d.code, d.amount, d.stop_price)


def orders(core: PaperCore) -> list[tuple[Any, ...]]:
    keys = ("client_id", "type", "side", "amount", "trigger", "reduce_only", "close_position")
    keys += ("status", "reason", "tag")
    return [tuple(o[k] for k in keys) for o in core.snapshot()["orders"]]


def fills(core: PaperCore) -> list[tuple[Any, ...]]:
    return [
        (f.timestamp, f.side, f.amount, f.price, f.fee, f.realized_pnl, f.reason, f.closed)
        for f in core.fills
    ]


@pytest.fixture
def data() -> Candles:
    cs = candles()
    assert len(cs) == 204
    return cs


async def test_replay_and_the_running_bot_place_the_same_orders(
    tmp_path: Path, data: Candles
) -> None:
    s = settings(tmp_path)
    report = run_replay(
        s, strategy=Scripted(STEPS), candles=data, heartbeat=False, record_decisions=True
    )
    bot_decisions, bot_core = await run_bot(settings(tmp_path / "bot"), data)
    replay_core_trades = report.closed_trades

    # what the scenario is made of, so the comparison below is not vacuous
    codes = [d.code for d in report.decisions]
    assert codes.count("ok") == 3 and "closing" in codes
    assert "cooldown" in codes and "session_closed" in codes
    assert [t.reason for t in replay_core_trades] == ["strategy", "stop", "guard"]

    assert [decision_key(d) for d in bot_decisions] == [decision_key(d) for d in report.decisions]
    assert [t.to_dict() for t in bot_core.trades] == [t.to_dict() for t in replay_core_trades]


async def test_orders_and_fills_are_identical_to_the_cent(tmp_path: Path, data: Candles) -> None:
    from bot.research import replay as replay_module

    captured: list[PaperCore] = []
    original = replay_module.PaperCore

    class Capture(PaperCore):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            captured.append(self)

    replay_module.PaperCore = Capture  # type: ignore[misc]
    try:
        run_replay(settings(tmp_path), strategy=Scripted(STEPS), candles=data, heartbeat=False)
    finally:
        replay_module.PaperCore = original  # type: ignore[misc]
    _, bot_core = await run_bot(settings(tmp_path / "bot"), data)
    replay_core = captured[0]
    assert len(orders(replay_core)) >= 8  # entries, stops, the opposite close, flatten
    assert orders(bot_core) == orders(replay_core)
    assert fills(bot_core) == fills(replay_core)
    # every stop went out on the mark price, as the venue layer asks for
    stops = [o for o in replay_core.snapshot()["orders"] if o["trigger"] is not None]
    assert stops and all(o["on_mark"] for o in stops)


def test_the_replay_router_answers_every_request_of_the_flows() -> None:
    """Replay's sender interprets every request the shared flows can make (a flow step it did
    not know would end the replay with a KeyError)."""
    from typing import get_args

    from bot.trading.flows import Request
    from bot.trading.router import Router
    from paper.config import PaperConfig

    router = Router(PaperCore(PaperConfig(), load_markets([BTC])))
    assert len(get_args(Request)) == 8
    assert set(get_args(Request)) <= set(router._answers)
