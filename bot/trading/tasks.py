"""The engine's work in flight: exchange calls run beside the trading loop, keyed per symbol.

``Tasks`` runs a coroutine either at once (``background=False``: replay-like tests and the
parity check, where each step must finish before the next) or as an asyncio task
(``background=True``: the running bot), so a slow or hung exchange call holds up only the work
queued behind it under the same key, never the price handling, the sweep or another symbol.

Keys are ``(kind, symbol)``. ``run(key, make)`` starts ``make()`` unless work under that key is
in flight already (the next sweep asks again, on fresher data); ``run(key, make, chain=True)``
queues it behind the work in flight instead (entries of one symbol, in the order decided).
``busy(symbol)`` tells the engine to hold a symbol's next decisions until its view is fresh;
``settle()`` waits for everything (shutdown, tests).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("engine")

Key = tuple[str, str | None]


class Tasks:
    """See the module docstring."""

    def __init__(self, background: bool = False) -> None:
        self.background = background
        self._running: dict[Key, asyncio.Task[None]] = {}

    def busy(self, symbol: str | None = None) -> bool:
        """True while work for ``symbol`` (None: any symbol) is in flight."""
        if symbol is None:
            return bool(self._running)
        return any(key[1] == symbol for key in self._running)

    def in_flight(self, key: Key) -> bool:
        return key in self._running

    async def run(
        self, key: Key, make: Callable[[], Awaitable[None]], *, chain: bool = False
    ) -> bool:
        """Start ``make()`` under ``key`` (see the module docstring); False when skipped."""
        if not self.background:
            await make()
            return True
        before = self._running.get(key)
        if before is not None and not chain:
            return False

        async def step() -> None:
            if before is not None:
                await asyncio.wait([before])
            await make()

        task = asyncio.create_task(step(), name=f"{key[0]}:{key[1]}")
        self._running[key] = task
        task.add_done_callback(lambda t: self._done(key, t))
        return True

    def _done(self, key: Key, task: asyncio.Task[None]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("task_failed", task=task.get_name(), error=f"{type(exc).__name__}: {exc}")

    async def settle(self) -> None:
        """Wait until nothing is in flight (work started meanwhile included)."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    def cancel(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
