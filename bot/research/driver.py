"""The replay driver, one ``Replay``: candles -> strategy -> GuardEngine -> the execution flows
-> paper core, and the tallies the report is built from (``bot.research.replay.run_replay``
loads the data, builds one and reports).

Per candle: the open is priced first; intents the strategy returned at the previous close are
then checked by the guards (mark = the open, now = the open time) and executed; then the rest of
the intrabar path (nearer extreme, other extreme, close) is priced, the paper core firing stops,
take-profits and its own liquidation engine along the way. At the close the scheduled jobs that
are due run (the no-overnight flatten, the daily reset: the live bot's triggers on the replay
clock), the guard engine gets the candle, the sweep runs and its actions are executed, and the
strategy sees the closed candle. Inside a candle the sweep also runs whenever the mark enters
the liquidation rule's reduce zone.

Orders go out through ``bot.trading.router.Router``, which interprets the very execution flows
the live executor runs (``bot.trading.flows``): replay keeps no order or action logic of its
own. What the paper core did comes back as events (``PaperCore.on_price`` and
``order_events``): closes feed the guards' stop-out accounting with their real reason and net
PnL, liquidations are logged. Every number in the report comes from the paper ledger or from the
decisions recorded here.
"""

from __future__ import annotations

import math
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from itertools import repeat
from typing import Any

import structlog

from bot.research.feeds import (
    Feed,
)
from bot.research.report import EquityCurve
from bot.settings import Settings
from bot.state.heartbeat import write_heartbeat
from bot.strategies.base import Strategy
from bot.trading.jobs import JobFunc, SimScheduler, job_specs, job_triggers
from bot.trading.planning import ExitPlan, is_risk_reducing
from bot.trading.router import Router
from guards import (
    Account,
    Action,
    Calm,
    Decision,
    GuardContext,
    GuardEngine,
    Mark,
    MarketRules,
    Position,
)
from paper.core import CoreEvent, LiquidationEvent, PaperCore, Trade
from paper.feed import Candles, intrabar_path, merge

log = structlog.get_logger("replay")

_CLOSE_REASONS = frozenset(
    {"stop", "guard", "liquidation", "take_profit", "strategy", "manual", "adl"}
)


class Replay:
    """One replay: the guard engine, the paper core and its router, the strategy, the tallies."""

    def __init__(
        self,
        settings: Settings,
        core: PaperCore,
        engine: GuardEngine,
        strategy: Strategy | None,
        markets: dict[str, MarketRules],
        *,
        guards_on: bool = True,
    ) -> None:
        self.settings = settings
        self.core = core
        self.engine = engine
        # with the guards off nothing attaches a stop: the replay shows an unguarded bot
        self.router = Router(core, allow_unprotected=not guards_on)
        self.strategy = strategy
        self.symbols = list(markets)
        self.markets = markets
        #: Intents decided at a symbol's candle close, executed at its next open.
        self.pending: dict[str, list[Any]] = {s: [] for s in markets}
        #: The last mark seen per symbol and its time (epoch s), for the guards' context.
        self.last_mark: dict[str, tuple[float, float]] = {}
        #: Candle length per symbol in seconds (set by ``replay``).
        self.tf_s: dict[str, float] = {}
        self.interventions: Counter[str] = Counter()
        #: Entries refused per deciding rule, resized per rule, sweep actions per rule and kind.
        self.refusals: Counter[str] = Counter()
        self.resizes: Counter[str] = Counter()
        self.actions: dict[str, Counter[str]] = {}
        #: Equity at each UTC day boundary, the starting equity first.
        self.daily = array("d", [core.equity()])
        #: (data time s, symbol, kind, rule, outcome, code, reason, figures) for exports.
        self.journal: list[tuple[float, str, str, str, str, str, str, Any]] | None = None
        self.checked = 0
        self.refused = 0
        self.resized = 0
        self.peak = core.equity()
        self.max_dd = 0.0
        self.curve: EquityCurve | None = None
        self.decisions: list[Decision] | None = None
        self.now_s = 0.0
        #: The guards' view of the account, rebuilt only after the core reported a change.
        self.account: Account = core.account()
        self.dirty = False
        #: What the last empty sweep left calm (``guards.calm``); None: sweep every time. The
        #: loop checks each mark against ``(lo, hi)``, the calm's band of the symbol.
        self.calm: Calm | None = None
        self.lo = math.inf
        self.hi = -math.inf
        #: Did the last ``_sweep`` carry out actions?
        self.changed = False
        #: One symbol: its mark is renewed at every check, so the calm may be used.
        self.single = len(markets) == 1
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
        """At ``flat_by``: cancel resting entries and close every position (no_overnight)."""
        router = self.router
        for sym in self.symbols:
            router.cancel_entries(sym)
            if self.core.holding(sym) is not None:
                self.interventions["no_overnight"] += 1
                self.actions.setdefault("no_overnight", Counter())["close"] += 1
                if self.curve is not None:
                    self.curve.mark(self.now_s, "close", "no_overnight")
                if self.journal is not None:
                    self.journal.append(
                        (
                            self.now_s,
                            sym,
                            "action",
                            "no_overnight",
                            "close",
                            "flat_by",
                            "no_overnight: flatten at flat_by",
                            {},
                        )
                    )
                router.run(ExitPlan(sym, None, "guard", "no_overnight:flatten"))
        self._order_events()

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
        consts = []
        columns = []
        for f in feeds:
            cs = f.candles
            tf = cs.timeframe_ms
            index = _mark_index(f.marks) if f.marks is not None else None
            consts.append((cs.symbol or "", tf, tf // 3, (2 * tf) // 3, tf - 1, f.marks, index))
            columns.append((cs.ts, cs.open, cs.high, cs.low, cs.close, cs.volume))
        self.tf_s = {f.candles.symbol or "": f.candles.timeframe_ms / 1000.0 for f in feeds}
        n = sum(len(f.candles) for f in feeds)
        first_ts = min((f.candles.ts[0] for f in feeds if len(f.candles)), default=0)
        jobs = self.jobs or self.schedule(first_ts / 1000.0)
        rows: Iterable[tuple[int, int, float, float, float, float, float]]
        if len(feeds) == 1:  # (feed index, ts, open, high, low, close, volume), zipped in C
            rows = zip(repeat(0), *columns[0])
        else:
            rows = (
                (k, *(col[i] for col in columns[k]))  # type: ignore[misc]
                for _, k, i in merge(*(f.candles for f in feeds))
            )
        beat_every = self.settings.state.heartbeat_s
        next_beat = time.monotonic() + beat_every
        curve = self.curve
        on_price = core.on_price
        happened = self._happened
        danger = self._danger
        pending = self.pending
        last_mark = self.last_mark
        many = not self.single  # several symbols: the others' last marks go into contexts
        watch_danger = self.danger_zone > 0.0
        volume_matters = self.settings.paper.participation_coef > 0.0
        current = -1
        symbol, tf, t1, t2, t3, marks, mark_index = consts[0]
        track = curve is not None  # export / plot: the lowest equity inside each candle
        low_eq = 0.0
        daily = self.daily
        next_day = (first_ts // 86_400_000 + 1) * 86_400.0
        next_due_ms = jobs.next_due * 1000.0  # jobs run at the first price at or after this
        lo_b, hi_b = self.lo, self.hi  # the calm's band, re-read after whatever may move it
        still_calm = engine.still_calm
        peak, max_dd = self.peak, self.max_dd  # kept here, stored back for monitors and the end
        for done, (k, ts, o, h, lo, c, v) in enumerate(rows, 1):
            if k != current:
                current = k
                symbol, tf, t1, t2, t3, marks, mark_index = consts[k]
            if volume_matters:
                core.on_candle_volume(symbol, v)
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
            # After each price: what the core did, and the liquidation danger zone. The open
            # comes after a gap (no trading since the previous close): stops it jumps fill there.
            ev = on_price(symbol, o, ts, m0, True)
            if ev:
                happened(ev)
                lo_b, hi_b = self.lo, self.hi
            if track:
                low_eq = core.equity()
            if many:
                last_mark[symbol] = (m0, ts / 1000.0)
            if ts >= next_due_ms:  # jobs due since the last price (after a data gap): run now
                next_due_ms = self._run_jobs(jobs, ts)
                lo_b, hi_b = self.lo, self.hi
            if watch_danger and not lo_b < m0 < hi_b:
                danger(symbol, ts, m0)
                lo_b, hi_b = self.lo, self.hi
            if pending[symbol]:
                self._execute_pending(symbol, ts, m0)
                lo_b, hi_b = self.lo, self.hi
            for t, p, m in ((ts + t1, p1, m1), (ts + t2, p2, m2), (ts + t3, c, m3)):
                ev = on_price(symbol, p, t, m)
                if ev:
                    happened(ev)
                    lo_b, hi_b = self.lo, self.hi
                if track:
                    low_eq = min(low_eq, core.equity())
                if watch_danger and not lo_b < m < hi_b:
                    danger(symbol, t, m)
                    lo_b, hi_b = self.lo, self.hi
                if t >= next_due_ms and t != ts + t3:  # due inside the candle: this price
                    next_due_ms = self._run_jobs(jobs, t)
                    lo_b, hi_b = self.lo, self.hi
            close_s = (ts + tf) / 1000.0
            if many:
                last_mark[symbol] = (m3, close_s)
            if ts + tf >= next_due_ms:  # the close price stands at the close time
                next_due_ms = self._run_jobs(jobs, ts + tf)
            engine.on_close(symbol, o, h, lo, c, close_s)
            eq = core.equity()
            calm = self.calm  # the usual candle changes nothing: no sweep (see _sweep)
            if (
                calm is not None
                and not self.dirty
                and still_calm(calm, self.account, close_s, symbol, m3, eq)
            ):
                self.now_s = close_s
                position = self.account.positions.get(symbol)
            else:
                position = self._sweep(close_s, symbol, m3)
                lo_b, hi_b = self.lo, self.hi
                if self.changed:
                    eq = core.equity()
            if curve is not None:
                curve.append(close_s, eq, low_eq, symbol, c)
            if close_s >= next_day:
                daily.append(eq)
                next_day = (close_s // 86_400.0 + 1.0) * 86_400.0
            if eq > peak:
                peak = eq
            elif peak > 0:
                dd = (peak - eq) / peak
                if dd > max_dd:
                    max_dd = dd
            if strategy is not None:
                intents = strategy.on_candle(symbol, ts, o, h, lo, c, v, position)
                if intents:
                    pending[symbol].extend(intents)
            if (done & 4095) == 0:
                self.peak, self.max_dd = peak, max_dd  # what a progress monitor reads
                if progress is not None:
                    progress(done, n)
                if time.monotonic() >= next_beat:
                    write_heartbeat(self.settings.state.dir, status="running", mode="replay")
                    next_beat = time.monotonic() + beat_every
        self.peak, self.max_dd = peak, max_dd
        if progress is not None:
            progress(n, n)

    def _run_jobs(self, jobs: SimScheduler, ts_ms: int) -> float:
        """Run the jobs due at ``ts_ms`` (the first price at or after their time, gaps
        included); return when the next one is due (epoch ms)."""
        self.now_s = ts_ms / 1000.0
        jobs.run_sync(self.now_s)
        return jobs.next_due * 1000.0

    # -- what the core did ------------------------------------------------------------------
    def _happened(self, events: Sequence[CoreEvent]) -> None:
        """Events of the paper core: closes go to the guards, liquidations are logged."""
        self.dirty = True
        self.lo, self.hi = math.inf, -math.inf
        core = self.core
        for event in events:
            if type(event) is Trade:
                if event.reason in _CLOSE_REASONS and core.holding(event.symbol) is None:
                    self.engine.on_position_closed(
                        event.symbol,
                        event.reason,  # type: ignore[arg-type]
                        event.net,
                        event.closed_at / 1000.0,
                    )
            elif type(event) is LiquidationEvent:
                log.warning(
                    "liquidated",
                    symbol=event.symbol,
                    side=event.side,
                    amount=event.amount,
                    price=event.price,
                    partial=event.partial,
                )

    def _order_events(self) -> None:
        """What the router's orders caused (its flows may place several)."""
        events = self.router.take_events()
        if events:
            self._happened(events)
        self.dirty = True
        self.lo, self.hi = math.inf, -math.inf

    def _danger(self, symbol: str, ts_ms: int, mark: float) -> None:
        """Sweep inside the candle when the mark is within the reduce zone of liquidation.

        The loop calls it only when the mark is outside ``(lo, hi)``: the band of the guards'
        calm while it holds, else nothing (then this checks the liquidation price itself).
        """
        if self.calm is None or self.dirty:
            liq = self.core.liquidation_price(symbol)
            if liq is None or not (mark > 0 and abs(mark - liq) / mark <= self.danger_zone):
                return
        self.last_mark[symbol] = (mark, ts_ms / 1000.0)
        self._sweep(ts_ms / 1000.0, symbol, mark)

    def _set_calm(self, calm: Calm | None, symbol: str) -> None:
        """Keep the guards' calm and the band the loop checks each mark against."""
        self.calm = calm
        band = None if calm is None else calm.bands.get(symbol)
        if calm is None:
            self.lo, self.hi = math.inf, -math.inf  # every mark: _danger decides
        elif band is None:
            self.lo, self.hi = -math.inf, math.inf  # no position near liquidation
        else:
            self.lo, self.hi = band

    # -- guards -----------------------------------------------------------------------------
    def _ctx(self, now_s: float, symbol: str, mark: float) -> GuardContext:
        """The guards' view now: ``symbol`` at ``mark``, every other symbol at its last mark."""
        if self.dirty:  # the account snapshot is reused until the core reports a change
            self.account = self.core.account()
            self.dirty = False
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
        """Count an entry's decision once: a refusal under the rule that refused first (the
        engine's deciding verdict), a resize under every rule that shrank it."""
        self.checked += 1
        rule = ""
        if decision.outcome == "reject":
            self.refused += 1
            rule = next((v.rule for v in decision.verdicts if v.outcome == "reject"), "engine")
            self.refusals[rule] += 1
            self.interventions[rule] += 1
            if self.curve is not None:
                self.curve.mark(self.now_s, "refused", rule)
        elif decision.outcome == "resize":
            self.resized += 1
            binding = math.inf
            for v in decision.verdicts:
                if v.outcome == "resize":
                    if v.amount is not None and v.amount < binding:
                        rule, binding = v.rule, v.amount  # the rule whose size went out
                    rule = rule or v.rule
                    self.resizes[v.rule] += 1
                    self.interventions[v.rule] += 1
                    if self.curve is not None:
                        self.curve.mark(self.now_s, "resized", v.rule)
        if self.journal is not None:
            figures = (
                next((v.figures for v in decision.verdicts if v.rule == rule), None)
                if rule
                else None
            )
            self.journal.append(
                (
                    self.now_s,
                    decision.intent.symbol,
                    "entry",
                    rule,
                    decision.outcome,
                    decision.code,
                    decision.reason,
                    dict(figures) if figures else {},
                )
            )
        if decision.outcome != "allow":
            log.debug(
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
        engine = self.engine
        router = self.router
        for intent in intents:
            decision = engine.check(intent, self._ctx(now_s, symbol, mark))
            if self.decisions is not None:
                self.decisions.append(decision)
            if not is_risk_reducing(decision):
                self._record(decision)
            if not decision.allowed:
                continue
            router.submit(engine.approve(decision))
            self._order_events()

    def _sweep(self, now_s: float, symbol: str, mark: float) -> Position | None:
        """Run the guard sweep and its actions; return ``symbol``'s position after them
        (``changed`` says whether anything was done).

        The loop skips it at a candle's close while the guards' calm holds
        (``GuardEngine.still_calm``: the account as it was, the time, the mark inside its band,
        the equity above the loss limits' floors), since it could then change nothing; a
        single-symbol replay only, whose one mark is renewed at every check. ``_danger`` calls
        it only for a mark outside that band, where the calm cannot hold.
        """
        self.now_s = now_s
        self.changed = False
        engine = self.engine
        ctx = self._ctx(now_s, symbol, mark)
        actions = engine.sweep(ctx)
        if not actions:  # nothing changed since the context was built: reuse its position
            self._set_calm(engine.calm(ctx, (symbol,)) if self.single else None, symbol)
            return ctx.account.positions.get(symbol)
        self._set_calm(None, symbol)
        self.changed = True
        for action in actions:
            self._act(action)
        return self.core.position(symbol)

    def _act(self, action: Action) -> None:
        self.interventions[action.rule] += 1
        self.actions.setdefault(action.rule, Counter())[action.kind] += 1
        if self.journal is not None:
            self.journal.append(
                (
                    self.now_s,
                    action.symbol or "",
                    "action",
                    action.rule,
                    action.kind,
                    action.code,
                    action.reason,
                    dict(action.figures),
                )
            )
        if self.curve is not None:
            self.curve.mark(self.now_s, action.kind, action.rule)
        log.debug(
            "guard_action",
            kind=action.kind,
            symbol=action.symbol,
            rule=action.rule,
            code=action.code,
            reason=action.reason,
        )
        self.router.apply(action)
        self._order_events()

    # -- report -----------------------------------------------------------------------------


def _mark_index(marks: Candles) -> dict[int, int]:
    return {t: j for j, t in enumerate(marks.ts)}
