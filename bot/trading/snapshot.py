"""What the running engine shows of itself: the status snapshot and the health facts.

``snapshot(engine)``: a JSON-safe picture for the status page and metrics — positions (entry,
mark and its age, stop, liquidation price and distance), guard state (halt, cooldowns, breakers,
counters against their limits), equity, counts, and ``health``: the same facts and verdict as the
heartbeat (``health_facts`` and ``bot.state.heartbeat.judge``), so the page's banner, ``/health``
and ``guardbot health`` agree.

``health_facts(engine)``: the facts the heartbeat carries (see ``bot.state.heartbeat``);
``beat(engine, ...)`` writes the heartbeat with them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import structlog

from bot.exchange.reach import Reachability
from bot.state.heartbeat import HealthLimits, judge, write_heartbeat
from guards import GuardContext, GuardEngine, Mark, Position


class _View(Protocol):
    @property
    def account(self) -> Any: ...


class Observed(Protocol):
    """What these functions read of ``bot.trading.engine.Engine``."""

    guard: GuardEngine
    marks: dict[str, Mark]
    symbols: tuple[str, ...]
    run_id: str
    exchange: Any
    entries_stopped: bool
    free_margin: float | None
    decisions: int
    actions: int
    limits: HealthLimits
    heartbeat_s: float | None
    last_sweep: float | None
    started_at: float | None
    unprotected_since: dict[str, float]

    @property
    def view(self) -> _View: ...

    @property
    def store_down(self) -> str | None: ...

    @property
    def reach(self) -> Sequence[Reachability]: ...

    def clock(self) -> float: ...

    def ctx(self, now: float | None = None) -> GuardContext: ...


def unreachable_since(reach: Sequence[Reachability]) -> float | None:
    """Since when the earliest still-failing exchange connection has had no answer."""
    times = [r.failing_since for r in reach if r.failing_since is not None]
    return min(times) if times else None


def health_facts(engine: Observed) -> dict[str, Any]:
    """The heartbeat's health facts and their limits (``bot.state.heartbeat``)."""
    limits = engine.limits
    return {
        "started": engine.started_at,
        "marks": {s: (m.ts if (m := engine.marks.get(s)) else None) for s in engine.symbols},
        "stale_price_s": limits.stale_price_s,
        "unreachable_since": unreachable_since(engine.reach),
        "unreachable_limit_s": limits.unreachable_s,
        "last_sweep": engine.last_sweep,
        "sweep_s": limits.sweep_s,
        "unprotected": dict(engine.unprotected_since),
        "unprotected_limit_s": limits.unprotected_s,
        "store_down": engine.store_down,
    }


def beat(engine: Observed, state_dir: Path, status: str, failing: bool) -> bool:
    """Write the heartbeat; False when it could not be written (logged once: ``failing`` says
    the last one failed too)."""
    log = structlog.get_logger("engine")
    halt = engine.guard.state.halt
    try:
        write_heartbeat(
            state_dir,
            status=status,
            run_id=engine.run_id,
            positions=len(engine.view.account.positions),
            halted=None if halt is None else halt.kind,
            decisions=engine.decisions,
            actions=engine.actions,
            interval_s=engine.heartbeat_s,
            **health_facts(engine),
        )
    except OSError as exc:
        if not failing:
            log.error("heartbeat_write_failed", error=f"{type(exc).__name__}: {exc}")
        return False
    if failing:
        log.info("heartbeat_write_recovered")
    return True


def track_unprotected(
    since: dict[str, float], positions: Mapping[str, Position], now: float
) -> None:
    """Keep ``{symbol: first seen without a stop}`` in step with the positions just read."""
    for sym in list(since):
        p = positions.get(sym)
        if p is None or p.stop_price is not None:
            del since[sym]
    for sym, p in positions.items():
        if p.stop_price is None and sym not in since:
            since[sym] = now


def snapshot(engine: Observed) -> dict[str, Any]:
    """See the module docstring."""
    now = engine.clock()
    ctx = engine.ctx(now)
    cfg = engine.guard.config
    state = engine.guard.state
    account = engine.view.account
    positions = []
    upnl = 0.0
    for sym, p in sorted(account.positions.items()):
        mark = engine.marks.get(sym)
        liq = None
        if sym in ctx.markets and mark is not None:
            liq = engine.guard.liquidation_price(p, ctx)
        price = mark.price if mark is not None else None
        pnl = p.unrealized_pnl(price) if price is not None else None
        upnl += pnl or 0.0
        positions.append(
            {
                "symbol": sym,
                "side": p.side,
                "amount": p.amount,
                "entry": p.entry_price,
                "mark": price,
                "mark_age_s": None if mark is None else now - mark.ts,
                "stop": p.stop_price,
                "take_profit": p.take_profit,
                "liquidation": liq,
                "liq_distance_pct": (
                    None
                    if liq is None or price is None or price <= 0
                    else abs(price - liq) / price * 100.0
                ),
                "leverage": p.leverage,
                "margin_mode": p.margin_mode,
                "notional": p.amount * (price if price is not None else p.entry_price),
                "unrealized_pnl": pnl,
            }
        )
    hour = sum(1 for t in state.entries if t > now - 3600.0)
    day = sum(1 for t in state.entries if t > now - 86400.0)
    halt = state.active_halt(now)
    facts = health_facts(engine)
    reasons = judge(facts, now)
    return {
        "ts": now,
        "run_id": engine.run_id,
        "mode": getattr(engine.exchange, "id", ""),
        "wallet": account.wallet_balance,
        "free_margin": engine.free_margin,
        "equity": account.wallet_balance + upnl,
        "positions": positions,
        "marks": {
            s: {"price": m.price, "age_s": now - m.ts}
            for s in engine.symbols
            if (m := engine.marks.get(s)) is not None
        },
        "health": {"ok": not reasons, "reasons": reasons, **facts},
        "halt": None if halt is None else halt.to_dict(),
        "entries_stopped": engine.entries_stopped,
        # seatbelt mode: positions found at start, left alone until `guardbot seatbelt apply`
        "seatbelt_existing": dict(getattr(getattr(engine, "seatbelt", None), "existing", {})),
        "counters": {
            "entries_last_hour": [hour, cfg.overtrading.max_entries_per_hour],
            "entries_last_day": [day, cfg.overtrading.max_entries_per_day],
            "stopouts_today": [state.stopouts_today, cfg.anti_top_up.max_stopouts_per_day],
        },
        "cooldowns": {
            s: {"until": sub.cooldown_until, "reason": sub.cooldown_reason}
            for s, sub in state.symbols.items()
            if sub.cooldown_until > now
        },
        "breakers": {
            s: {"until": sub.breaker_until, "reason": sub.breaker_reason}
            for s, sub in state.symbols.items()
            if sub.breaker_until > now
        },
        "equity_peak": state.equity_peak,
        "day_start_equity": state.day_start_equity,
        "decisions": engine.decisions,
        "actions": engine.actions,
        "guards_enabled": [
            n for n in type(cfg).model_fields if getattr(getattr(cfg, n), "enabled", False)
        ],
    }
