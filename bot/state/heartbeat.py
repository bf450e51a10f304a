"""The heartbeat file a running bot writes, and the one judgement of health read from it.

The bot writes ``state.dir/heartbeat.json`` every ``state.heartbeat_s``: its status, pid and run,
counts, and the facts health is judged on, each with its limit, so a reader needs no config:

- ``marks``: ``{symbol: epoch s of its last mark}`` for every traded symbol, with
  ``stale_price_s`` (the guards' limit; a symbol with no mark yet counts once the bot has been
  up, ``started``, that long);
- ``unreachable_since`` (epoch s, or null while the exchange answers) with ``unreachable_limit_s``;
- ``last_sweep`` (epoch s of the last completed scheduled sweep) with ``sweep_s``;
- ``unprotected``: ``{symbol: epoch s since when its position has had no stop}`` with
  ``unprotected_limit_s``;
- ``store_down``: why the state store cannot write (null while it can).

``judge`` turns a heartbeat into the reasons it is unhealthy (none: healthy). ``check_health``
(``guardbot health``, the Docker HEALTHCHECK) and the status page's ``/health`` both use it, so
they agree: unhealthy when the heartbeat is missing, stopped or old, when any traded symbol's
mark is older than ``stale_price_s``, when the exchange has not answered for longer than its
limit, when no sweep has completed for three sweep periods, or when a position has been without
a stop for longer than its limit. Times are compared with the reader's clock, so a heartbeat a
few seconds old still tells how old the marks are now.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILENAME = "heartbeat.json"
#: Scheduled sweep periods without a completed sweep before the bot counts as stuck.
SWEEP_PERIODS = 3


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    age_s: float | None
    detail: str
    beat: dict[str, Any]
    #: Every reason it is unhealthy (``detail`` is them on one line).
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HealthLimits:
    """The limits the running bot writes beside its facts (``[health]`` and the guards')."""

    stale_price_s: float = 30.0
    sweep_s: float = 10.0
    unreachable_s: float = 30.0
    unprotected_s: float = 10.0


def write_heartbeat(state_dir: Path, **fields: Any) -> Path:
    """Atomically write ``{"ts": now, "pid": ..., **fields}`` to the state folder.

    Raises ``OSError`` when the folder cannot be written (the engine logs it once).
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / FILENAME
    tmp = path.with_suffix(".tmp")
    payload = {"ts": time.time(), "pid": os.getpid(), **fields}
    tmp.write_text(json.dumps(payload, default=str), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def judge(beat: Mapping[str, Any], now: float) -> list[str]:
    """The reasons the bot described by ``beat`` is unhealthy at ``now`` (empty: healthy)."""
    reasons: list[str] = []
    stale = _num(beat.get("stale_price_s"))
    marks = beat.get("marks")
    started = _num(beat.get("started"))
    if stale is not None and isinstance(marks, Mapping):
        for symbol, ts in sorted(marks.items()):
            at = _num(ts)
            if at is None:
                if started is None or now - started > stale:  # the feed's first price is due
                    reasons.append(f"no mark yet for {symbol}")
            elif now - at > stale:
                reasons.append(f"{symbol} mark {now - at:.0f}s old (limit {stale:g}s)")
    since = _num(beat.get("unreachable_since"))
    limit = _num(beat.get("unreachable_limit_s"))
    if since is not None and limit is not None and now - since > limit:
        reasons.append(f"exchange unreachable for {now - since:.0f}s (limit {limit:g}s)")
    sweep_s = _num(beat.get("sweep_s"))
    last = _num(beat.get("last_sweep"))
    if sweep_s is not None and last is not None and now - last > SWEEP_PERIODS * sweep_s:
        reasons.append(
            f"no sweep completed for {now - last:.0f}s (limit {SWEEP_PERIODS * sweep_s:g}s)"
        )
    bare = beat.get("unprotected")
    bare_limit = _num(beat.get("unprotected_limit_s"))
    if isinstance(bare, Mapping) and bare_limit is not None:
        for symbol, ts in sorted(bare.items()):
            at = _num(ts)
            if at is not None and now - at > bare_limit:
                reasons.append(
                    f"{symbol} position without a stop for {now - at:.0f}s (limit {bare_limit:g}s)"
                )
    down = beat.get("store_down")
    if down:
        reasons.append(f"state store cannot write: {down}")
    return reasons


def check_health(state_dir: Path, max_age_s: float, now: float | None = None) -> Health:
    """Healthy when the heartbeat exists, parses, says the bot is running, is recent, and
    ``judge`` finds nothing wrong with what it says."""
    path = state_dir / FILENAME
    try:
        beat = json.loads(path.read_text(encoding="utf-8"))
        ts = float(beat["ts"])
    except FileNotFoundError:
        return Health(False, None, f"no heartbeat at {path}", {})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Health(False, None, f"unreadable heartbeat {path}: {exc}", {})
    at = time.time() if now is None else now
    age = at - ts
    if beat.get("status") == "stopped":
        return Health(False, age, "bot stopped", beat, ("bot stopped",))
    if age > max_age_s:
        why = f"heartbeat stale: {age:.0f}s old (limit {max_age_s:.0f}s)"
        return Health(False, age, why, beat, (why,))
    reasons = judge(beat, at)
    if reasons:
        return Health(False, age, "; ".join(reasons), beat, tuple(reasons))
    return Health(True, age, f"ok, heartbeat {age:.1f}s old", beat)
