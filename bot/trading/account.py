"""What the engine needs to keep its picture of the account: the executor's face
(``Execution``), the picture itself (``AccountView``), and ``Coalesced``, which runs the
background re-reads of it one at a time.

``Coalesced(fn)``: ``request()`` starts ``fn()`` as a task unless one is running, in which case
exactly one more run follows it (however many requests came meanwhile): work that finishes in a
burst costs two reads, not one per piece, and the last read always starts after the last piece.
Each request returns a ticket; ``covers(ticket)`` is true once a run that started after that
request has finished -- what the engine's intents wait for, so reads requested later (a sweep's,
more work's) never keep them waiting, however long the reads take.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.exchange.venue import ExitReason
from bot.trading.results import ExecResult
from guards import Account, Action, ApprovedOrder


class Execution(Protocol):
    """What the engine needs from ``bot.trading.executor.Executor`` (paper or live alike)."""

    async def submit(self, approved: ApprovedOrder) -> Any: ...

    async def close(self, symbol: str, reason: ExitReason, tag: str) -> Any: ...

    async def reduce(self, symbol: str, amount: float, reason: ExitReason, tag: str) -> Any: ...

    async def place_stop(self, symbol: str, stop_price: float) -> Any: ...

    async def cancel_entries(self, symbol: str) -> Any: ...

    async def apply(self, action: Action) -> ExecResult | None: ...

    async def account(
        self, currency: str = "USDT", symbols: Sequence[str] = ()
    ) -> tuple[Account, list[dict[str, Any]]]: ...


@dataclass(frozen=True)
class AccountView:
    """What the engine knows about the account after one refresh."""

    account: Account
    #: Resting entry (not reduce-only) orders per symbol.
    open_entry_orders: dict[str, int] = field(default_factory=dict)


class Coalesced:
    """See the module docstring."""

    def __init__(self, fn: Callable[[], Awaitable[None]], name: str) -> None:
        self.fn = fn
        self.name = name
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._requested = 0  # tickets handed out
        self._covered = 0  # every ticket up to this one has had its run

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def request(self) -> int:
        """Ask for a run; returns its ticket (see ``covers``)."""
        self._requested += 1
        if self.running:
            self._again = True
        else:
            self._task = asyncio.create_task(self._loop(), name=self.name)
        return self._requested

    def covers(self, ticket: int) -> bool:
        """Has a run that started after the request of ``ticket`` finished?"""
        return self._covered >= ticket

    async def _loop(self) -> None:
        while True:
            self._again = False
            started = self._requested
            try:
                await self.fn()
            finally:
                self._covered = max(self._covered, started)
            if not self._again:
                return

    async def settle(self) -> None:
        while self._task is not None and not self._task.done():
            await asyncio.gather(self._task, return_exceptions=True)

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the runs in flight (they go on after it); True when done."""
        task = self._task
        if task is None or task.done():
            return True
        done, _ = await asyncio.wait([task], timeout=timeout)
        return bool(done) and not self.running
