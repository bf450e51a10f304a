"""``PriceFeed``: the latest mark price per symbol, from the stream with a polling fallback.

It keeps the latest mark per symbol from the exchange's stream (``watch_marks``), falls back to
polling (``fetch_mark`` / ``fetch_ticker``) when the stream has not delivered for ``poll_s``, and
reports a symbol stale when neither updated within ``stale_price_s``; its ``Mark``s carry the
local receive time, so the guards refuse entries on stale prices by themselves. It forwards
market-wide forced liquidations (``watch_liquidations``) to a callback (the circuit breaker).
Works over any exchange adapter that offers those methods (live, paper on live data).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog

from bot.exchange.retry import describe
from guards import Mark

Sleep = Callable[[float], Awaitable[None]]


def liquidation_notional(liquidation: Mapping[str, Any]) -> float:
    """Quote notional of a ccxt liquidation structure."""
    value = liquidation.get("quoteValue")
    if value:
        return float(value)
    contracts = float(liquidation.get("contracts") or 0.0)
    size = float(liquidation.get("contractSize") or 1.0)
    price = float(liquidation.get("price") or 0.0)
    return contracts * size * price


MarkCallback = Callable[[str, float, float], Awaitable[None] | None]


async def _maybe_await(result: Awaitable[None] | None) -> None:
    if result is not None and inspect.isawaitable(result):
        await result


class PriceFeed:
    """Latest marks from the stream with a polling fallback, stale detection and liquidations.

    ``exchange`` is any object with ``fetch_mark(symbol)`` (or ``fetch_ticker``); streaming is
    used when it has ``watch_marks`` and ``streams`` is true, liquidations when it has
    ``watch_liquidations`` and ``streams_liquidations``. Callbacks (plain or async) get
    ``(symbol, value, ts)`` with ``ts`` in epoch seconds: ``on_price`` the mark,
    ``on_liquidation`` the liquidated quote notional.
    """

    def __init__(
        self,
        exchange: Any,
        symbols: Sequence[str],
        *,
        stale_price_s: float = 30.0,
        poll_s: float = 5.0,
        stream: bool = True,
        liquidations: bool = True,
        on_price: MarkCallback | None = None,
        on_liquidation: MarkCallback | None = None,
        retry_s: float = 2.0,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.exchange = exchange
        self.symbols = tuple(symbols)
        self.stale_price_s = stale_price_s
        self.poll_s = poll_s
        self.on_price = on_price
        self.on_liquidation = on_liquidation
        self.retry_s = retry_s
        self.marks: dict[str, Mark] = {}
        self.sources: dict[str, str] = {}
        self.stream_errors = 0
        self.log = structlog.get_logger("bot.exchange.feed")
        self._clock = clock
        self._sleep = sleep
        self._use_stream = stream and bool(getattr(exchange, "streams", False))
        self._use_liquidations = liquidations and bool(
            getattr(exchange, "streams_liquidations", False)
        )
        self._stale_logged: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Condition()

    @property
    def streaming(self) -> bool:
        return self._use_stream

    async def start(self) -> None:
        """Start the stream, polling and liquidation tasks."""
        if self._use_stream:
            self._tasks.append(asyncio.create_task(self._stream_loop(), name="price-stream"))
        self._tasks.append(asyncio.create_task(self._poll_loop(), name="price-poll"))
        if self._use_liquidations:
            self._tasks.append(asyncio.create_task(self._liquidation_loop(), name="liq-stream"))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def snapshot(self) -> dict[str, Mark]:
        """The latest mark of every symbol that has one (``ts`` = receive time)."""
        return dict(self.marks)

    def stale(self, now: float | None = None) -> list[str]:
        """Symbols with no mark, or one older than ``stale_price_s``."""
        at = self._clock() if now is None else now
        out = []
        for symbol in self.symbols:
            mark = self.marks.get(symbol)
            if mark is None or at - mark.ts > self.stale_price_s:
                out.append(symbol)
        return out

    async def wait_for(self, predicate: Callable[[PriceFeed], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate(self)`` holds after an update (``TimeoutError`` otherwise)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self)), timeout)

    async def poll_once(self, *, due_only: bool = False) -> None:
        """Poll the marks (only those the stream has not refreshed for ``poll_s`` if due_only)."""
        now = self._clock()
        for symbol in self.symbols:
            mark = self.marks.get(symbol)
            if due_only and mark is not None and now - mark.ts < self.poll_s:
                continue
            try:
                price = await self._fetch_mark(symbol)
            except Exception as exc:
                self.log.warning("price_poll_failed", symbol=symbol, error=describe(exc))
                continue
            if price:
                await self._update(symbol, price, "poll")
        self.check_stale()

    def check_stale(self, now: float | None = None) -> list[str]:
        """Log ``price_stale`` once per symbol that went stale; returns the stale symbols."""
        at = self._clock() if now is None else now
        stale = self.stale(at)
        for symbol in stale:
            if symbol not in self._stale_logged:
                self._stale_logged.add(symbol)
                mark = self.marks.get(symbol)
                self.log.warning(
                    "price_stale",
                    symbol=symbol,
                    age_s=None if mark is None else round(at - mark.ts, 1),
                    stale_price_s=self.stale_price_s,
                    consequence="guards refuse entries on this symbol",
                )
        return stale

    async def _fetch_mark(self, symbol: str) -> float | None:
        fetch = getattr(self.exchange, "fetch_mark", None)
        if fetch is not None:
            value: float | None = await fetch(symbol)
            return value
        ticker = await self.exchange.fetch_ticker(symbol)
        raw = ticker.get("markPrice") or ticker.get("last")
        return float(raw) if raw else None

    async def _update(self, symbol: str, price: float, source: str) -> None:
        ts = self._clock()
        self.marks[symbol] = Mark(float(price), ts)
        self.sources[symbol] = source
        if symbol in self._stale_logged:
            self._stale_logged.discard(symbol)
            self.log.info("price_fresh", symbol=symbol, source=source)
        if self.on_price is not None:
            await _maybe_await(self.on_price(symbol, float(price), ts))
        async with self._changed:
            self._changed.notify_all()

    async def _stream_loop(self) -> None:
        failures = 0
        while True:
            try:
                marks = await self.exchange.watch_marks(self.symbols)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self.stream_errors += 1
                self.log.warning(
                    "price_stream_failed",
                    error=describe(exc),
                    fallback="polling",
                    failures=failures,
                )
                await self._sleep(min(self.retry_s * failures, 60.0))
                continue
            failures = 0
            for symbol, price in marks.items():
                if symbol in self.symbols:
                    await self._update(symbol, price, "stream")

    async def _poll_loop(self) -> None:
        while True:
            await self.poll_once(due_only=True)
            await self._sleep(self.poll_s)

    async def _liquidation_loop(self) -> None:
        failures = 0
        while True:
            try:
                found = await self.exchange.watch_liquidations(self.symbols)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self.log.warning("liquidation_stream_failed", error=describe(exc))
                await self._sleep(min(self.retry_s * failures, 60.0))
                continue
            failures = 0
            for liq in found:
                symbol = liq.get("symbol")
                if symbol not in self.symbols:
                    continue
                notional = liquidation_notional(liq)
                stamp = liq.get("timestamp")
                ts = float(stamp) / 1000.0 if stamp else self._clock()
                self.log.info("market_liquidation", symbol=symbol, notional=round(notional, 2))
                if self.on_liquidation is not None:
                    await _maybe_await(self.on_liquidation(str(symbol), notional, ts))
