"""The replay driver: candles → strategy → GuardEngine → paper core, and the run report.

Per candle: the open is priced first; intents the strategy returned at the previous close are
then checked by the guards (mark = the open, now = the open time) and executed; then the rest of
the intrabar path (nearer extreme, other extreme, close) is priced, the paper core firing stops,
take-profits and its own liquidation engine along the way. At the close the guard engine gets
the candle (trend, breaker, equity), the sweep runs and its actions are executed, and the
strategy sees the closed candle. Inside a candle the sweep also runs whenever the mark enters the
liquidation rule's reduce zone.

Every number in the report comes from the paper ledger or from the decisions recorded here.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import structlog
from ccxt.base.errors import BaseError as CcxtError

from bot.research.report import EquityCurve, Report, utc
from bot.settings import Settings
from bot.state.heartbeat import write_heartbeat
from bot.strategies import load_strategy
from bot.strategies.base import Strategy
from bot.trading.jobs import JobFunc, SimScheduler, job_specs, job_triggers
from guards.config import GuardsConfig
from guards.engine import GuardEngine
from guards.types import (
    Account,
    Action,
    Decision,
    GuardContext,
    Mark,
    MarketRules,
    OrderIntent,
    Position,
)
from paper.core import PaperCore
from paper.feed import (
    Candles,
    FeedError,
    bundled_candles_path,
    bundled_funding_path,
    intrabar_path,
    load_candles,
    load_funding,
    merge,
)
from paper.markets import bundled_symbols, load_markets

log = structlog.get_logger("replay")

_CLOSE_REASONS = {"stop", "guard", "liquidation", "take_profit", "strategy", "manual"}


class ReplayError(Exception):
    """A replay that cannot run (bad data, unknown market, bad strategy): one readable message."""


def guards_off(config: GuardsConfig) -> GuardsConfig:
    """The same config with every rule disabled (the engine still refuses unknown markets)."""
    update = {}
    for name in type(config).model_fields:
        sub = getattr(config, name)
        if hasattr(sub, "enabled"):
            update[name] = sub.model_copy(update={"enabled": False})
    return config.model_copy(update=update)


def enabled_rules(config: GuardsConfig) -> list[str]:
    return [
        name
        for name in type(config).model_fields
        if getattr(getattr(config, name), "enabled", False) is True
    ]


def load_feeds(settings: Settings) -> list[Feed]:
    """Every candle file the settings name (``feed.path`` then ``feed.paths``), each with its
    mark candles and funding rates where given (or the bundled set when nothing is named)."""
    first = load_feed(settings)
    feeds = [Feed(*first)]
    for extra in settings.feed.paths:
        try:
            candles = load_candles(extra, allow_gaps=settings.feed.allow_gaps)
        except (FeedError, OSError) as exc:
            raise ReplayError(str(exc)) from None
        for gap in candles.gaps:
            log.warning("data_gap", file=str(extra), gap=str(gap))
        if len(candles) == 0:
            raise ReplayError(f"no candles in {extra}")
        feeds.append(Feed(candles, None, []))
    symbols = [f.candles.symbol for f in feeds]
    if len(set(symbols)) != len(symbols):
        raise ReplayError(f"two candle files of the same symbol: {symbols}")
    return feeds


class Feed(NamedTuple):
    """One symbol's replay data."""

    candles: Candles
    marks: Candles | None
    rates: list[tuple[int, float]]


def load_feed(settings: Settings) -> tuple[Candles, Candles | None, list[tuple[int, float]]]:
    """Candles, optional mark candles and funding rates the settings name (or the bundled set)."""
    feed = settings.feed
    try:
        if feed.path is None:
            candles = load_candles(bundled_candles_path(), symbol=feed.symbol)
            funding_path: Path | None = feed.funding_path or bundled_funding_path()
        else:
            candles = load_candles(feed.path, symbol=feed.symbol, allow_gaps=feed.allow_gaps)
            funding_path = feed.funding_path
        for gap in candles.gaps:
            log.warning("data_gap", file=str(feed.path), gap=str(gap))
        marks = None
        if feed.mark_path is not None:
            marks = load_candles(feed.mark_path, symbol=candles.symbol, allow_gaps=True)
        rates: list[tuple[int, float]] = []
        if funding_path is not None:
            series = load_funding(funding_path, symbol=candles.symbol)
            rates = series.between(candles.ts[0], candles.ts[-1] + candles.timeframe_ms)
    except (FeedError, OSError) as exc:
        raise ReplayError(str(exc)) from None
    if len(candles) == 0:
        raise ReplayError(f"no candles in {feed.path}")
    return candles, marks, rates


def run_replay(
    settings: Settings,
    *,
    guards_on: bool = True,
    strategy: Strategy | None = None,
    candles: Candles | None = None,
    heartbeat: bool = True,
    progress: Callable[[int, int], None] | None = None,
    record_curve: bool = False,
) -> Report:
    """Replay the configured data (or ``candles``) and return the report.

    ``progress(done, total)`` is called every 4,096 candles and once at the end.
    """
    started = time.perf_counter()
    feeds = load_feeds(settings) if candles is None else [Feed(candles, None, [])]
    symbols: list[str] = []
    for f in feeds:
        symbol = f.candles.symbol
        if symbol is None:
            raise ReplayError(
                "cannot tell the symbol of the data: pass --symbol (e.g. BTC/USDT:USDT)"
            )
        if symbol not in bundled_symbols():
            raise ReplayError(
                f"no market rules bundled for {symbol} (bundled: {', '.join(bundled_symbols())})"
            )
        symbols.append(symbol)
    if strategy is None:
        path = settings.strategy.path
        if path.strip().lower() != "none":
            try:
                strategy = load_strategy(path, dict(settings.strategy.params))
            except ValueError as exc:
                raise ReplayError(str(exc)) from None
    gcfg = settings.guards if guards_on else guards_off(settings.guards)
    core = PaperCore(settings.paper, load_markets(symbols, settings.paper))
    for f, symbol in zip(feeds, symbols, strict=True):
        if f.rates:
            core.set_funding_rates(symbol, f.rates)
    rules = {s: core.market_rules(s) for s in symbols}
    run = _Run(settings, core, GuardEngine(gcfg), strategy, rules)
    if record_curve:
        run.curve = EquityCurve()
    label = ",".join(symbols)
    if heartbeat:
        write_heartbeat(settings.state.dir, status="running", mode="replay", symbol=label)
    run.replay(feeds, progress)
    if heartbeat:
        write_heartbeat(settings.state.dir, status="stopped", mode="replay", symbol=label)
    report = run.report([f.candles for f in feeds], gcfg, time.perf_counter() - started)
    if run.curve is not None:
        for event in run.core.liquidations:
            run.curve.mark(event.ts / 1000.0, "liquidation", "exchange")
        report.curve = run.curve
    return report


class _Run:
    """State of one replay: the engine, the core, the strategy and the tallies."""

    def __init__(
        self,
        settings: Settings,
        core: PaperCore,
        engine: GuardEngine,
        strategy: Strategy | None,
        markets: dict[str, MarketRules],
    ) -> None:
        self.settings = settings
        self.core = core
        self.engine = engine
        self.strategy = strategy
        self.symbols = list(markets)
        self.markets = markets
        #: Intents decided at a symbol's candle close, executed at its next open.
        self.pending: dict[str, list[OrderIntent]] = {s: [] for s in markets}
        #: The last mark seen per symbol and its time (epoch s), for the guards' context.
        self.last_mark: dict[str, tuple[float, float]] = {}
        #: Candle length per symbol in seconds (set by ``replay``).
        self.tf_s: dict[str, float] = {}
        self.interventions: Counter[str] = Counter()
        self.checked = 0
        self.refused = 0
        self.resized = 0
        self.exchange_rejects = 0
        self.peak = core.equity()
        self.max_dd = 0.0
        self.trades_seen = 0
        self.client_seq = 0
        self.curve: EquityCurve | None = None
        self.now_s = 0.0
        #: The last account snapshot and the core revision it was taken at (see ``_ctx``).
        self.account: Account = core.account()
        self.account_rev = core.revision
        liq = engine.config.liquidation
        breaker = engine.config.circuit_breaker
        zone = liq.reduce_at_pct if liq.enabled else 0.0
        if breaker.enabled and liq.enabled:
            zone = max(zone, breaker.tighten_reduce_at_pct)
        self.danger_zone = zone / 100.0
        #: The live bot's scheduled jobs, fired by the replay clock (see ``bot.trading.jobs``).
        self.jobs: SimScheduler | None = None

    def schedule(self, start_s: float) -> SimScheduler:
        """The flatten and daily-reset jobs on the same triggers as live, from ``start_s``."""
        cfg = self.engine.config
        start = datetime.fromtimestamp(start_s, UTC)
        triggers = job_triggers(cfg, heartbeat_s=self.settings.state.heartbeat_s, start=start)
        funcs: dict[str, JobFunc] = {"flatten": self._job_flatten, "daily_reset": self._job_daily}
        self.jobs = SimScheduler(job_specs(triggers, funcs), start)
        return self.jobs

    def _job_flatten(self) -> None:
        """At ``flat_by``: cancel resting entries and close the position (no_overnight)."""
        core = self.core
        for sym in self.symbols:
            for o in core.open_orders(sym):
                if not o.get("reduceOnly"):
                    core.cancel_order(o["id"], sym)
            pos = core.position(sym)
            if pos is not None:
                self.interventions["no_overnight"] += 1
                if self.curve is not None:
                    self.curve.mark(self.now_s, "close", "no_overnight")
                self._reduce(sym, pos.side, pos.amount, "guard", "no_overnight:flatten")

    def _job_daily(self) -> None:
        log.debug("daily_reset", day=self.engine.state.day_key)

    # -- the loop ---------------------------------------------------------------------------
    def replay(
        self,
        feeds: list[Feed],
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Walk every candle of every feed in time order (one feed: no merging at all)."""
        core = self.core
        strategy = self.strategy
        engine = self.engine
        series = []
        for f in feeds:
            cs = f.candles
            tf = cs.timeframe_ms
            series.append(
                (
                    cs.symbol or "",
                    (cs.ts, cs.open, cs.high, cs.low, cs.close, cs.volume),
                    (tf, tf // 3, (2 * tf) // 3, tf - 1),
                    f.marks,
                    _mark_index(f.marks) if f.marks is not None else None,
                )
            )
        self.tf_s = {f.candles.symbol or "": f.candles.timeframe_ms / 1000.0 for f in feeds}
        n = sum(len(f.candles) for f in feeds)
        first_ts = min((f.candles.ts[0] for f in feeds if len(f.candles)), default=0)
        jobs = self.jobs or self.schedule(first_ts / 1000.0)
        if len(series) == 1:
            events: Iterable[tuple[int, int, int]] = ((0, 0, i) for i in range(n))
        else:
            events = merge(*(f.candles for f in feeds))
        beat_every = self.settings.state.heartbeat_s
        next_beat = time.monotonic() + beat_every
        curve = self.curve
        trades = core.trades
        on_price = core.on_price
        after_price = self._after_price
        pending = self.pending
        last_mark = self.last_mark
        watch_danger = self.danger_zone > 0.0
        for done, (_, k, i) in enumerate(events, 1):
            symbol, (ts_a, op_a, hi_a, lo_a, cl_a, vo_a), (tf, t1, t2, t3), marks, mark_index = (
                series[k]
            )
            ts = ts_a[i]
            o = op_a[i]
            h = hi_a[i]
            lo = lo_a[i]
            c = cl_a[i]
            core.on_candle_volume(symbol, vo_a[i])
            if (o - lo) <= (h - o):
                p1 = lo
                p2 = h
            else:
                p1 = h
                p2 = lo
            if mark_index is not None and marks is not None and ts in mark_index:
                j = mark_index[ts]
                m0, m1, m2, m3 = intrabar_path(
                    marks.open[j], marks.high[j], marks.low[j], marks.close[j]
                )
            else:
                m0, m1, m2, m3 = o, p1, p2, c
            # After each price: closes done by the core, and the liquidation danger zone.
            on_price(symbol, o, ts, m0)
            last_mark[symbol] = (m0, ts / 1000.0)
            if watch_danger or len(trades) != self.trades_seen:
                after_price(symbol, ts, m0)
            if pending[symbol]:
                self._execute_pending(symbol, ts, m0)
            on_price(symbol, p1, ts + t1, m1)
            if watch_danger or len(trades) != self.trades_seen:
                after_price(symbol, ts + t1, m1)
            on_price(symbol, p2, ts + t2, m2)
            if watch_danger or len(trades) != self.trades_seen:
                after_price(symbol, ts + t2, m2)
            on_price(symbol, c, ts + t3, m3)
            if watch_danger or len(trades) != self.trades_seen:
                after_price(symbol, ts + t3, m3)
            close_s = (ts + tf) / 1000.0
            last_mark[symbol] = (m3, close_s)
            if close_s >= jobs.next_due:
                self.now_s = close_s
                jobs.run_sync(close_s)
            engine.on_candle(symbol, o, h, lo, c, close_s)
            engine.on_price(symbol, c, close_s)
            position = self._sweep(close_s, symbol, m3)
            eq = core.equity()
            if curve is not None:
                curve.append(close_s, eq)
            if eq > self.peak:
                self.peak = eq
            elif self.peak > 0:
                dd = (self.peak - eq) / self.peak
                if dd > self.max_dd:
                    self.max_dd = dd
            if strategy is not None:
                intents = strategy.on_candle(symbol, ts, o, h, lo, c, vo_a[i], position)
                if intents:
                    pending[symbol].extend(intents)
            if (done & 4095) == 0:
                if progress is not None:
                    progress(done, n)
                if time.monotonic() >= next_beat:
                    write_heartbeat(self.settings.state.dir, status="running", mode="replay")
                    next_beat = time.monotonic() + beat_every
        if progress is not None:
            progress(n, n)

    def _after_price(self, symbol: str, ts_ms: int, mark: float) -> None:
        """Notice closes done by the core (stops, take-profits, liquidations) and danger.

        ``mark`` is the mark price just fed to the core for the symbol.
        """
        core = self.core
        if len(core.trades) != self.trades_seen:
            self._closed_by_exchange()
        if self.danger_zone > 0.0:
            liq = core.liquidation_price(symbol)
            if liq is not None and mark > 0 and abs(mark - liq) / mark <= self.danger_zone:
                self.last_mark[symbol] = (mark, ts_ms / 1000.0)
                self._sweep(ts_ms / 1000.0, symbol, mark)

    def _closed_by_exchange(self) -> None:
        core = self.core
        new = core.trades[self.trades_seen :]
        self.trades_seen = len(core.trades)
        for trade in new:
            if trade.reason == "liquidation":
                log.warning(
                    "liquidated",
                    symbol=trade.symbol,
                    side=trade.side,
                    amount=trade.amount,
                    price=trade.exit_price,
                )
            if core.position(trade.symbol) is None and trade.reason in _CLOSE_REASONS:
                self.engine.on_position_closed(
                    trade.symbol,
                    trade.reason,  # type: ignore[arg-type]
                    trade.net,
                    trade.closed_at / 1000.0,
                )

    # -- guards -----------------------------------------------------------------------------
    def _ctx(self, now_s: float, symbol: str, mark: float) -> GuardContext:
        """The guards' view now: ``symbol`` at ``mark``, every other symbol at its last mark."""
        core = self.core
        if core.revision != self.account_rev:  # the account snapshot is reused until it changes
            self.account = core.account()
            self.account_rev = core.revision
        if len(self.symbols) == 1:
            marks = {symbol: Mark(mark, now_s)}
        else:
            # another symbol's last price stays current until its next candle, one timeframe
            # later (a real gap in its data still shows as a stale mark)
            tf_s = self.tf_s
            marks = {
                s: Mark(p, min(now_s, t + tf_s.get(s, 0.0))) for s, (p, t) in self.last_mark.items()
            }
            marks[symbol] = Mark(mark, now_s)
        return GuardContext(account=self.account, markets=self.markets, marks=marks, now=now_s)

    def _record(self, decision: Decision) -> None:
        self.checked += 1
        if decision.outcome == "reject":
            self.refused += 1
        elif decision.outcome == "resize":
            self.resized += 1
        for v in decision.verdicts:
            if v.outcome in ("reject", "resize"):
                self.interventions[v.rule] += 1
                if self.curve is not None:
                    self.curve.mark(
                        self.now_s, "refused" if v.outcome == "reject" else "resized", v.rule
                    )
        if decision.outcome != "allow":
            log.info(
                "guard_decision",
                symbol=decision.intent.symbol,
                outcome=decision.outcome,
                code=decision.code,
                reason=decision.reason,
                amount=decision.amount,
            )

    def _execute_pending(self, symbol: str, ts_ms: int, mark: float) -> None:
        intents, self.pending[symbol] = self.pending[symbol], []
        now_s = ts_ms / 1000.0
        self.now_s = now_s
        for intent in intents:
            decision = self.engine.check(intent, self._ctx(now_s, symbol, mark))
            if not (intent.reduce_only or decision.code in ("reduce_only", "closing")):
                self._record(decision)
            if not decision.allowed:
                continue
            approved = self.engine.approve(decision)
            if decision.code in ("reduce_only", "closing"):
                self._reduce(
                    intent.symbol, approved.intent.side, approved.amount, "strategy", intent.tag
                )
            else:
                self._open(approved.intent, approved.amount, approved.stop_price)

    def _open(self, intent: OrderIntent, amount: float, stop: float | None) -> None:
        core = self.core
        sym = intent.symbol
        side = "buy" if intent.side == "long" else "sell"
        exit_side = "sell" if side == "buy" else "buy"
        self.client_seq += 1
        try:
            if core.position(sym) is None:
                if core.margin_mode(sym) != intent.margin_mode:
                    core.set_margin_mode(intent.margin_mode, sym)
                if core.leverage(sym) != intent.leverage:
                    core.set_leverage(intent.leverage, sym)
            core.create_order(
                sym,
                "market",
                side,
                amount,
                None,
                {"clientOrderId": f"gb-{self.client_seq}", "tag": intent.tag},
            )
        except CcxtError as exc:
            self.exchange_rejects += 1
            log.warning("order_rejected", symbol=sym, error=f"{type(exc).__name__}: {exc}")
            return
        if stop is None and intent.take_profit is None:
            return
        for o in core.open_orders(sym):  # one protective order set per position
            if o.get("reduceOnly") and o.get("triggerPrice") is not None:
                core.cancel_order(o["id"], sym)
        try:
            if stop is not None:
                core.create_order(
                    sym,
                    "market",
                    exit_side,
                    amount,
                    None,
                    {"stopLossPrice": stop, "closePosition": True},
                )
            if intent.take_profit is not None:
                core.create_order(
                    sym,
                    "market",
                    exit_side,
                    amount,
                    None,
                    {"takeProfitPrice": intent.take_profit, "closePosition": True},
                )
        except CcxtError as exc:
            log.critical(
                "stop_not_placed_closing", symbol=sym, error=f"{type(exc).__name__}: {exc}"
            )
            pos = core.position(sym)
            if pos is not None:
                self._reduce(sym, pos.side, pos.amount, "guard", "stop_not_placed")

    def _reduce(self, symbol: str, side: str, amount: float, reason: str, tag: str) -> None:
        core = self.core
        pos: Position | None = core.position(symbol)
        if pos is None or pos.side != side:
            return
        amount = min(amount, pos.amount)
        order_side = "sell" if side == "long" else "buy"
        params: dict[str, Any] = {"reduceOnly": True, "reason": reason, "tag": tag}
        if amount >= pos.amount:
            params["closePosition"] = True
        try:
            core.create_order(symbol, "market", order_side, amount, None, params)
        except CcxtError as exc:
            self.exchange_rejects += 1
            log.error("reduce_failed", symbol=symbol, error=f"{type(exc).__name__}: {exc}")
        if len(core.trades) != self.trades_seen:
            self._closed_by_exchange()

    def _sweep(self, now_s: float, symbol: str, mark: float) -> Position | None:
        """Run the guard sweep and its actions; return ``symbol``'s position after them."""
        self.now_s = now_s
        ctx = self._ctx(now_s, symbol, mark)
        actions = self.engine.sweep(ctx)
        if not actions:  # nothing changed since the context was built: reuse its position
            return ctx.account.positions.get(symbol)
        for action in actions:
            self._act(action, symbol)
        return self.core.position(symbol)

    def _act(self, action: Action, default_symbol: str) -> None:
        self.interventions[action.rule] += 1
        if self.curve is not None:
            self.curve.mark(self.now_s, action.kind, action.rule)
        log.info(
            "guard_action",
            kind=action.kind,
            symbol=action.symbol,
            rule=action.rule,
            code=action.code,
            reason=action.reason,
        )
        core = self.core
        sym = action.symbol or default_symbol
        pos = core.position(sym)
        if action.kind == "close" and pos is not None:
            self._reduce(sym, pos.side, pos.amount, "guard", action.rule)
        elif action.kind == "reduce" and pos is not None and action.amount:
            self._reduce(sym, pos.side, action.amount, "guard", action.rule)
        elif action.kind == "place_stop" and pos is not None and action.stop_price is not None:
            exit_side = "sell" if pos.side == "long" else "buy"
            try:
                core.create_order(
                    sym,
                    "market",
                    exit_side,
                    pos.amount,
                    None,
                    {"stopLossPrice": action.stop_price, "closePosition": True},
                )
            except CcxtError as exc:
                log.critical("stop_not_placed_closing", symbol=sym, error=str(exc))
                self._reduce(sym, pos.side, pos.amount, "guard", action.rule)
        elif action.kind == "cancel_entries":
            for o in core.open_orders(sym):
                if not o.get("reduceOnly"):
                    core.cancel_order(o["id"], sym)

    # -- report -----------------------------------------------------------------------------
    def report(self, series: list[Candles], gcfg: GuardsConfig, elapsed: float) -> Report:
        core = self.core
        trades = core.trades
        reasons: Counter[str] = Counter(t.reason for t in trades)
        return Report(
            symbol=",".join(self.symbols),
            timeframe=",".join(sorted({c.timeframe for c in series})),
            start=utc(min(c.ts[0] for c in series)),
            end=utc(max(c.ts[-1] + c.timeframe_ms for c in series)),
            candles=sum(len(c) for c in series),
            trades=len(trades),
            wins=sum(1 for t in trades if t.net > 0),
            fees=core.total_fees,
            funding=core.total_funding,
            realized_pnl=core.realized_pnl,
            starting_balance=self.settings.paper.starting_balance,
            final_equity=core.equity(),
            final_wallet=core.wallet_balance,
            max_drawdown_pct=self.max_dd * 100.0,
            liquidations=len(core.liquidations),
            liquidation_loss=sum(e.margin_lost for e in core.liquidations),
            guard_interventions=dict(self.interventions),
            guards_enabled=enabled_rules(gcfg),
            orders_checked=self.checked,
            orders_refused=self.refused,
            orders_resized=self.resized,
            exchange_rejects=self.exchange_rejects,
            elapsed_s=elapsed,
            exit_reasons=dict(reasons),
            closed_trades=tuple(trades),
        )


def _mark_index(marks: Candles) -> dict[int, int]:
    return {t: j for j, t in enumerate(marks.ts)}
