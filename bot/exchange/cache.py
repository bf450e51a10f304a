"""On-disk cache of an exchange's markets and leverage tiers, stamped with when they were fetched.

One JSON file per exchange (and per testnet/mainnet): ``markets-<id>[-sandbox].json`` holding
ccxt's unified markets (as ``load_markets`` returns them) and leverage tiers (as
``fetch_leverage_tiers`` returns them). Written atomically (temporary file + rename), read
leniently: a missing, unreadable, foreign or outdated file is simply no cache.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE_VERSION = 1


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """Markets and leverage tiers of one exchange as fetched at ``fetched_at`` (epoch s)."""

    exchange_id: str
    fetched_at: float
    markets: dict[str, dict[str, Any]]
    tiers: dict[str, list[dict[str, Any]]]

    def age(self, now: float) -> float:
        return now - self.fetched_at


class MarketCache:
    """Reads and writes the snapshot file of one exchange in ``directory``."""

    def __init__(self, directory: Path, exchange_id: str, *, sandbox: bool = False) -> None:
        self.directory = directory
        self.exchange_id = exchange_id
        self.sandbox = sandbox

    @property
    def path(self) -> Path:
        suffix = "-sandbox" if self.sandbox else ""
        return self.directory / f"markets-{self.exchange_id}{suffix}.json"

    def load(self) -> MarketSnapshot | None:
        """The cached snapshot, or None when there is no usable one."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
            return None
        if data.get("exchange_id") != self.exchange_id or data.get("sandbox") != self.sandbox:
            return None
        markets = data.get("markets")
        tiers = data.get("tiers")
        fetched_at = data.get("fetched_at")
        if not isinstance(markets, dict) or not isinstance(tiers, dict):
            return None
        if not isinstance(fetched_at, int | float) or not markets:
            return None
        return MarketSnapshot(self.exchange_id, float(fetched_at), markets, tiers)

    def save(self, snapshot: MarketSnapshot) -> Path:
        """Write ``snapshot`` atomically; returns the file's path."""
        self.directory.mkdir(parents=True, exist_ok=True)
        payload = {
            "version": CACHE_VERSION,
            "exchange_id": snapshot.exchange_id,
            "sandbox": self.sandbox,
            "fetched_at": snapshot.fetched_at,
            "markets": snapshot.markets,
            "tiers": snapshot.tiers,
        }
        text = json.dumps(payload, default=str, separators=(",", ":"))
        fd, tmp = tempfile.mkstemp(prefix=".markets-", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return self.path
