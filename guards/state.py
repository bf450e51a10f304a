"""The guard engine's mutable memory: counters, windows and halts, and their JSON form.

Everything a rule must remember between calls lives here as plain dataclasses that the engine
owns and mutates (rules read it; the engine's ``on_*``/``approve``/``sweep`` write it). The shell
persists ``GuardState.to_dict()`` (JSON-safe) and restores it with ``GuardState.from_dict``.

Times are epoch seconds (UTC). Day-scoped counters carry the ``day_key`` (local date of the
trading day, ISO text) they belong to; a reader that computes a different key for ``now`` treats
them as zero, and the next write rolls them. Nothing here reads a clock.
"""

from __future__ import annotations

from bisect import insort
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

HaltKind = Literal["manual", "daily", "drawdown"]
STATE_VERSION = 1
#: Entry timestamps older than this are dropped (the longest rate window is one day).
ENTRY_HORIZON_S = 86_400.0


@dataclass(slots=True)
class Halt:
    """An entry halt. ``until=None`` means it lasts until ``GuardEngine.resume()``."""

    kind: HaltKind
    reason: str
    since: float
    until: float | None = None

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "reason": self.reason, "since": self.since, "until": self.until}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Halt:
        kind = data["kind"]
        if kind not in ("manual", "daily", "drawdown"):
            raise ValueError(f"unknown halt kind {kind!r}")
        until = data.get("until")
        return cls(
            kind=kind,
            reason=str(data.get("reason", "")),
            since=float(data.get("since", 0.0)),
            until=None if until is None else float(until),
        )


@dataclass(slots=True)
class SymbolState:
    """Per-symbol memory: cooldown, planned stop, breaker and trend windows."""

    cooldown_until: float = 0.0
    cooldown_reason: str = ""
    #: Stop price of the last approved entry, re-placed by the stop_loss sweep if the stop is gone.
    planned_stop: float | None = None
    breaker_until: float = 0.0
    breaker_reason: str = ""
    #: Breaker price window as monotonic deques of (ts, price): window max first / window min first.
    price_max: deque[tuple[float, float]] = field(default_factory=deque)
    price_min: deque[tuple[float, float]] = field(default_factory=deque)
    #: Market-wide forced liquidations in the breaker window: (ts, notional) and their sum.
    liqs: deque[tuple[float, float]] = field(default_factory=deque)
    liq_sum: float = 0.0
    #: Trend: EMA of candle closes (None until seeded), closes seen, seed sum, last candle time.
    ema: float | None = None
    ema_count: int = 0
    ema_seed_sum: float = 0.0
    last_candle_ts: float | None = None
    #: Trend: candle highs in the falling-knife window, monotonic (window max first).
    highs: deque[tuple[float, float]] = field(default_factory=deque)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cooldown_until": self.cooldown_until,
            "cooldown_reason": self.cooldown_reason,
            "planned_stop": self.planned_stop,
            "breaker_until": self.breaker_until,
            "breaker_reason": self.breaker_reason,
            "price_max": [list(p) for p in self.price_max],
            "price_min": [list(p) for p in self.price_min],
            "liqs": [list(p) for p in self.liqs],
            "liq_sum": self.liq_sum,
            "ema": self.ema,
            "ema_count": self.ema_count,
            "ema_seed_sum": self.ema_seed_sum,
            "last_candle_ts": self.last_candle_ts,
            "highs": [list(p) for p in self.highs],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SymbolState:
        def pairs(key: str) -> deque[tuple[float, float]]:
            return deque((float(a), float(b)) for a, b in data.get(key, ()))

        def opt(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        return cls(
            cooldown_until=float(data.get("cooldown_until", 0.0)),
            cooldown_reason=str(data.get("cooldown_reason", "")),
            planned_stop=opt("planned_stop"),
            breaker_until=float(data.get("breaker_until", 0.0)),
            breaker_reason=str(data.get("breaker_reason", "")),
            price_max=pairs("price_max"),
            price_min=pairs("price_min"),
            liqs=pairs("liqs"),
            liq_sum=float(data.get("liq_sum", 0.0)),
            ema=opt("ema"),
            ema_count=int(data.get("ema_count", 0)),
            ema_seed_sum=float(data.get("ema_seed_sum", 0.0)),
            last_candle_ts=opt("last_candle_ts"),
            highs=pairs("highs"),
        )


@dataclass(slots=True)
class GuardState:
    """All of the engine's memory. Mutated only by ``GuardEngine``."""

    #: Times of approved entries (opening or increasing orders) in the last day, ascending.
    entries: list[float] = field(default_factory=list)
    last_entry_ts: float | None = None
    #: The trading day the day-scoped fields below belong to ("" before the first roll).
    day_key: str = ""
    #: Equity at the first observation of the trading day (the daily-loss baseline).
    day_start_equity: float | None = None
    stopouts_today: int = 0
    #: Highest equity seen since start (or since the last ``resume()`` of a drawdown halt).
    equity_peak: float | None = None
    halt: Halt | None = None
    symbols: dict[str, SymbolState] = field(default_factory=dict)

    # -- helpers the engine and rules use -------------------------------------------------
    def symbol(self, name: str) -> SymbolState:
        """The symbol's sub-state, created empty on first use."""
        sub = self.symbols.get(name)
        if sub is None:
            sub = self.symbols[name] = SymbolState()
        return sub

    def active_halt(self, now: float) -> Halt | None:
        halt = self.halt
        return halt if halt is not None and halt.active(now) else None

    def set_halt(self, halt: Halt) -> bool:
        """Install ``halt`` unless a stronger one is active; True when it was installed.

        Stronger = needs a manual resume (``until=None``) or lasts longer.
        """
        cur = self.halt
        if cur is not None and cur.active(halt.since):
            if cur.until is None:
                return False
            if halt.until is not None and halt.until <= cur.until:
                return False
        self.halt = halt
        return True

    def roll_day(self, key: str) -> None:
        """Start trading day ``key``: stop-outs back to zero, baseline taken at the next equity."""
        if key != self.day_key:
            self.day_key = key
            self.day_start_equity = None
            self.stopouts_today = 0

    def record_entry(self, ts: float) -> None:
        entries = self.entries
        if entries and ts < entries[-1]:
            insort(entries, ts)
        else:
            entries.append(ts)
        horizon = ts - ENTRY_HORIZON_S
        drop = 0
        while drop < len(entries) and entries[drop] <= horizon:
            drop += 1
        if drop:
            del entries[:drop]
        if self.last_entry_ts is None or ts > self.last_entry_ts:
            self.last_entry_ts = ts

    # -- persistence ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe snapshot (only str, float, int, bool, None, lists and dicts)."""
        return {
            "version": STATE_VERSION,
            "entries": list(self.entries),
            "last_entry_ts": self.last_entry_ts,
            "day_key": self.day_key,
            "day_start_equity": self.day_start_equity,
            "stopouts_today": self.stopouts_today,
            "equity_peak": self.equity_peak,
            "halt": None if self.halt is None else self.halt.to_dict(),
            "symbols": {name: sub.to_dict() for name, sub in self.symbols.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GuardState:
        version = data.get("version", STATE_VERSION)
        if version != STATE_VERSION:
            raise ValueError(f"unsupported guard state version {version!r}")

        def opt(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        halt = data.get("halt")
        return cls(
            entries=sorted(float(t) for t in data.get("entries", ())),
            last_entry_ts=opt("last_entry_ts"),
            day_key=str(data.get("day_key", "")),
            day_start_equity=opt("day_start_equity"),
            stopouts_today=int(data.get("stopouts_today", 0)),
            equity_peak=opt("equity_peak"),
            halt=None if halt is None else Halt.from_dict(halt),
            symbols={
                str(name): SymbolState.from_dict(sub)
                for name, sub in dict(data.get("symbols", {})).items()
            },
        )
