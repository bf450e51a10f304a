"""The heartbeat file a running bot writes and ``guardbot health`` (Docker HEALTHCHECK) reads."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILENAME = "heartbeat.json"


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    age_s: float | None
    detail: str
    beat: dict[str, Any]


def write_heartbeat(state_dir: Path, **fields: Any) -> Path:
    """Atomically write ``{"ts": now, "pid": ..., **fields}`` to the state folder."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / FILENAME
    tmp = path.with_suffix(".tmp")
    payload = {"ts": time.time(), "pid": os.getpid(), **fields}
    tmp.write_text(json.dumps(payload, default=str), encoding="utf-8")
    os.replace(tmp, path)
    return path


def check_health(state_dir: Path, max_age_s: float, now: float | None = None) -> Health:
    """Healthy when the heartbeat exists, parses, says the bot is running and is recent."""
    path = state_dir / FILENAME
    try:
        beat = json.loads(path.read_text(encoding="utf-8"))
        ts = float(beat["ts"])
    except FileNotFoundError:
        return Health(False, None, f"no heartbeat at {path}", {})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Health(False, None, f"unreadable heartbeat {path}: {exc}", {})
    age = (time.time() if now is None else now) - ts
    if beat.get("status") == "stopped":
        return Health(False, age, "bot stopped", beat)
    if age > max_age_s:
        return Health(False, age, f"heartbeat stale: {age:.0f}s old (limit {max_age_s:.0f}s)", beat)
    return Health(True, age, f"ok, heartbeat {age:.1f}s old", beat)
