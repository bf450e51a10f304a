"""The store as the running bot writes it: bookkeeping never blocks risk reduction.

``SafeStore`` wraps a ``Store``. Reads go straight through. A write that fails because the store
cannot write (disk full, an I/O error, the file-size limit, a lock held too long elsewhere) does
not raise: the write is kept in memory, the store is marked *unwritable*, and one critical
``store_unwritable`` event (with ``alert``) is logged — not one per tick. While unwritable, new
writes join the backlog without touching the disk; ``catch_up()`` (a scheduled job) replays the
backlog in order once writing works again and logs ``store_recovered``. Writes with a ``key``
(guard state, positions) keep only their newest value in the backlog.

The engine and the executor read ``writable``: entries are refused while it is false (an entry
whose intent could not be recorded could not be recovered after a crash); closes, reduces and
stops go out regardless, and their records land when the store catches up.
"""

from __future__ import annotations

import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import structlog

from bot.state.store import Store
from bot.state.store.rows import OrderRow

log = structlog.get_logger("store")

T = TypeVar("T")
Write = Callable[[Store], Any]

#: What a store that cannot write raises (sqlite: "database or disk is full", "disk I/O error",
#: "database is locked"; the OS: ENOSPC, EFBIG, EIO).
WRITE_ERRORS: tuple[type[BaseException], ...] = (sqlite3.OperationalError, OSError)
#: Writes kept at most while unwritable (the oldest are dropped beyond, with a count).
MAX_BACKLOG = 100_000


class SafeStore:
    """See the module docstring. ``store``: the real store; ``clock``: epoch seconds."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        max_backlog: int = MAX_BACKLOG,
    ) -> None:
        self.store = store
        self.clock = clock
        self.max_backlog = max_backlog
        self._backlog: OrderedDict[object, tuple[str, Write]] = OrderedDict()
        self._seq = 0
        #: Why the store cannot write (None while it can).
        self.down: str | None = None
        self.down_since: float | None = None
        self.dropped = 0

    # -- state ---------------------------------------------------------------------------------
    @property
    def writable(self) -> bool:
        return self.down is None

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    def __getattr__(self, name: str) -> Any:  # reads: straight to the store
        return getattr(self.store, name)

    # -- writing -------------------------------------------------------------------------------
    def write(self, what: str, fn: Callable[[Store], T], key: str | None = None) -> T | None:
        """Run ``fn(store)`` now (its result), or keep it for ``catch_up`` (None)."""
        if self.down is None:
            try:
                return fn(self.store)
            except WRITE_ERRORS as exc:
                self._go_down(what, exc)
        self._keep(what, fn, key)
        return None

    def _keep(self, what: str, fn: Write, key: str | None) -> None:
        if key is not None:
            self._backlog.pop(key, None)
            slot: object = key
        else:
            self._seq += 1
            slot = self._seq
        self._backlog[slot] = (what, fn)
        while len(self._backlog) > self.max_backlog:
            self._backlog.popitem(last=False)
            self.dropped += 1

    def _go_down(self, what: str, exc: BaseException) -> None:
        self.down = f"{type(exc).__name__}: {exc}"
        self.down_since = self.clock()
        log.critical(
            "store_unwritable",
            write=what,
            error=self.down,
            alert=True,
            consequence=(
                "entries refused; closes, reduces and stops still go out; the records are kept "
                "in memory and written when the store can write again"
            ),
        )

    def catch_up(self) -> bool:
        """Write the backlog, oldest first; True when the store is writable afterwards."""
        if self.down is None and not self._backlog:
            return True
        written = 0
        while self._backlog:
            slot, (what, fn) = next(iter(self._backlog.items()))
            try:
                fn(self.store)
            except WRITE_ERRORS as exc:
                if self.down is None:
                    self._go_down(what, exc)
                elif written:
                    log.warning("store_catch_up_partial", written=written, left=self.backlog)
                return False
            del self._backlog[slot]
            written += 1
        if self.down is not None:
            since = self.down_since or self.clock()
            log.warning(
                "store_recovered",
                written=written,
                dropped=self.dropped,
                down_s=round(self.clock() - since, 1),
            )
        self.down = self.down_since = None
        self.dropped = 0
        return True

    def probe(self) -> None:
        """Write and remove one key now; raises the store's error when it cannot write."""
        self.store.kv_set("probe.write", {"ts": self.clock()})
        self.store.kv_delete("probe.write")

    # -- the executor's order store (``bot.trading.results.OrderStore``) ------------------------
    def order_intent(
        self,
        client_id: str,
        symbol: str,
        side: str,
        type: str,
        amount: float,
        price: float | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> OrderRow | None:
        ts = self.clock()

        def go(s: Store) -> OrderRow:
            return s.order_intent(client_id, symbol, side, type, amount, price, params, ts=ts)

        return self.write("order_intent", go)

    def order_ack(self, client_id: str, order: Mapping[str, Any]) -> OrderRow | None:
        snapshot, ts = dict(order), self.clock()
        return self.write("order_ack", lambda s: s.order_ack(client_id, snapshot, ts))

    def order_status(self, client_id: str, status: Any, note: str = "") -> None:
        ts = self.clock()
        self.write("order_status", lambda s: s.order_status(client_id, status, note=note, ts=ts))
