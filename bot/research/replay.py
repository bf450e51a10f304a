"""Replay a configuration over history: load the data, run one ``bot.research.driver.Replay``
over it (candles → strategy → GuardEngine → the execution flows → paper core) and build the
report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import structlog

from bot.research.clock import DataClock, StopReplay
from bot.research.driver import Replay
from bot.research.feeds import (
    Feed,
    ReplayError,
    enabled_rules,
    guards_off,
    load_feeds,
    markets_of,
)
from bot.research.report import EquityCurve, Report, build_report
from bot.settings import Settings
from bot.state.heartbeat import write_heartbeat
from bot.strategies import load_strategy
from bot.strategies.base import Strategy
from guards import (
    GuardEngine,
)
from paper.core import PaperCore
from paper.feed import Candles

log = structlog.get_logger("replay")

__all__ = [
    "Feed",
    "ReplayError",
    "StopReplay",
    "enabled_rules",
    "guards_off",
    "load_feeds",
    "run_replay",
]


def run_replay(
    settings: Settings,
    *,
    guards_on: bool = True,
    strategy: Strategy | None = None,
    candles: Candles | None = None,
    heartbeat: bool = True,
    progress: Callable[[int, int], None] | None = None,
    record_curve: bool = False,
    record_decisions: bool = False,
    feeds: Sequence[Feed] | None = None,
    monitor: Callable[[int, int, Replay], None] | None = None,
) -> Report:
    """Replay the configured data (or ``candles``, or already loaded ``feeds``) and return the
    report.

    ``progress(done, total)`` is called every 4,096 candles and once at the end, and so is
    ``monitor(done, total, replay)``, which may raise ``StopReplay`` to end the replay there (the
    report then covers what was replayed, ``Report.stopped`` says why).
    ``record_decisions`` keeps every guard decision on ``Report.decisions`` (tests, exports).
    """
    started = time.perf_counter()
    if feeds is not None:
        feeds = list(feeds)
    else:
        feeds = load_feeds(settings) if candles is None else [Feed(candles, None, [])]
    load_s = time.perf_counter() - started
    symbols, markets, notes = markets_of(feeds, settings)
    if strategy is None:
        path = settings.strategy.path
        if path.strip().lower() != "none":
            try:
                strategy = load_strategy(path, dict(settings.strategy.params))
            except ValueError as exc:
                raise ReplayError(str(exc)) from None
    gcfg = settings.guards if guards_on else guards_off(settings.guards)
    core = PaperCore(settings.paper, markets)
    for f, symbol in zip(feeds, symbols, strict=True):
        if f.rates:
            core.set_funding_rates(symbol, f.rates)
    rules = {s: core.market_rules(s) for s in symbols}
    run = Replay(settings, core, GuardEngine(gcfg), strategy, rules, guards_on=guards_on)
    if record_curve:
        run.curve = EquityCurve()
    if record_decisions:
        run.decisions = []
        run.journal = []
    label = ",".join(symbols)
    if heartbeat:
        write_heartbeat(settings.state.dir, status="running", mode="replay", symbol=label)
    clock = DataClock(run)
    structlog.contextvars.bind_contextvars(data_time=clock)
    tick = progress
    if monitor is not None:
        watch = monitor

        def tick(done: int, total: int) -> None:
            if progress is not None:
                progress(done, total)
            watch(done, total, run)

    stopped = ""
    try:
        run.replay(feeds, tick)
    except StopReplay as exc:
        stopped = str(exc) or "stopped"
    finally:
        clock.frozen = clock.text()
    if heartbeat:
        write_heartbeat(settings.state.dir, status="stopped", mode="replay", symbol=label)
    report = build_report(
        run, [f.candles for f in feeds], enabled_rules(gcfg), time.perf_counter() - started
    )
    report.notes = tuple(notes)
    report.load_s = load_s
    report.stopped = stopped
    log.info(
        "replay_done",
        symbol=label,
        guards="on" if guards_on else "off",
        candles=report.candles,
        trades=report.trades,
        refused=report.orders_refused,
        liquidations=report.liquidations,
        final_equity=round(report.final_equity, 2),
        elapsed_s=round(report.elapsed_s, 3),
    )
    structlog.contextvars.unbind_contextvars("data_time")
    if run.curve is not None:
        for event in core.liquidations:
            run.curve.mark(event.ts / 1000.0, "liquidation", "exchange")
        report.curve = run.curve
    if run.decisions is not None:
        report.decisions = tuple(run.decisions)
    if record_curve or record_decisions:
        report.run = run
    return report
