"""The bot's HTTP servers (status page, ``/health``, ``/metrics``) on their own thread and loop.

No load on them can slow the trading loop: ``HttpThread`` runs every app on a separate OS thread
with its own asyncio loop; handlers read only what the trading loop *published*
(``Published``: an immutable snapshot swapped in whole, once a second) and the store through
their own read-only SQLite connection; and at most ``max_concurrency`` requests are handled at
once (more wait up to ``queue_s``, then get 503 ``busy``). The trading loop never waits on this
thread: publishing is one reference assignment.

``start()`` binds every site before it returns (a port in use raises ``OSError`` in the caller);
``stop()`` closes them and joins the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

AppFactory = Callable[[], web.Application]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Published:
    """The latest snapshot the trading loop published (read from any thread)."""

    value: Mapping[str, Any] | None = None
    at: float | None = None

    def publish(self, value: Mapping[str, Any], at: float | None = None) -> None:
        self.value, self.at = value, time.time() if at is None else at

    def get(self) -> Mapping[str, Any]:
        return self.value or {}


@dataclass
class _Site:
    make: AppFactory
    host: str
    port: int
    bound: int | None = None


@dataclass
class HttpThread:
    """See the module docstring."""

    max_concurrency: int = 8
    queue_s: float = 2.0
    _sites: list[_Site] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runners: list[web.AppRunner] = field(default_factory=list)

    def add(self, make: AppFactory, host: str, port: int) -> int:
        """Serve the app ``make()`` builds (on the thread) at ``host:port``; returns its index."""
        self._sites.append(_Site(make, host, port))
        return len(self._sites) - 1

    def port(self, index: int) -> int:
        bound = self._sites[index].bound
        if bound is None:
            raise RuntimeError("not started")
        return bound

    def start(self, timeout: float = 10.0) -> None:
        """Start the thread and bind every site (raises what binding raised)."""
        ready: Future[None] = Future()
        loop = asyncio.new_event_loop()
        self._loop = loop

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._bind())
            except BaseException as exc:
                ready.set_exception(exc)
                loop.close()
                return
            ready.set_result(None)
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._cleanup())
                loop.close()

        self._thread = threading.Thread(target=run, name="guardbot-http", daemon=True)
        self._thread.start()
        ready.result(timeout)

    async def _bind(self) -> None:
        gate = asyncio.Semaphore(self.max_concurrency)
        for site in self._sites:
            app = site.make()
            app.middlewares.insert(0, _bounded(gate, self.queue_s))
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            self._runners.append(runner)
            tcp = web.TCPSite(runner, site.host, site.port)
            await tcp.start()
            addresses = runner.addresses
            site.bound = int(addresses[-1][1]) if addresses else site.port

    async def _cleanup(self) -> None:
        for runner in self._runners:
            with contextlib.suppress(Exception):
                await runner.cleanup()
        self._runners = []

    def stop(self, timeout: float = 3.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._loop = self._thread = None


def _bounded(gate: asyncio.Semaphore, queue_s: float) -> Any:
    """At most the gate's count of requests in handlers; the rest wait ``queue_s``, then 503."""

    @web.middleware
    async def bounded(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            await asyncio.wait_for(gate.acquire(), queue_s)
        except TimeoutError:
            return web.json_response({"ok": False, "error": "busy"}, status=503)
        try:
            return await handler(request)
        finally:
            gate.release()

    return bounded
