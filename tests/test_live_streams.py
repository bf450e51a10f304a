"""PriceFeed: marks streamed with ccxt.pro from the local exchange, the polling fallback, stale
marking (the guards then refuse entries), and forced liquidations feeding the circuit breaker.
"""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import pytest
from conftest_live import BTC, ETH, emulator, event_names, live, logs, make_live  # noqa: F401

from bot.emulator import Emulator
from bot.exchange.feed import PriceFeed, liquidation_notional
from bot.exchange.live import LiveExchange
from guards.config import GuardsConfig
from guards.engine import GuardEngine
from guards.types import GuardContext, OrderIntent

LONG = OrderIntent(BTC, "long", 0.01, leverage=3.0, stop_price=58_800.0)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_marks_stream_from_the_exchange(
    emulator: Emulator,  # noqa: F811
    live: LiveExchange,  # noqa: F811
) -> None:
    await live.load_markets()
    seen: list[tuple[str, float]] = []

    async def on_price(symbol: str, price: float, ts: float) -> None:  # async, like the engine
        seen.append((symbol, price))

    feed = PriceFeed(live, [BTC, ETH], poll_s=60.0, on_price=on_price)
    assert feed.streaming
    await feed.start()
    try:
        await feed.wait_for(lambda f: not f.stale(), timeout=10)  # first marks (polled at start)
        await _until(lambda: sum(len(s.topics) for s in emulator._streams) >= 2)
        emulator.set_price(BTC, 60_500.0, mark=60_480.0)
        await feed.wait_for(lambda f: f.marks[BTC].price == 60_480.0, timeout=10)
        assert feed.sources[BTC] == "stream"
        assert (BTC, 60_480.0) in seen
    finally:
        await feed.stop()


async def test_polling_takes_over_when_streams_are_off(emulator: Emulator) -> None:  # noqa: F811
    ex = make_live(emulator, streams=False)
    try:
        await ex.load_markets()
        feed = PriceFeed(ex, [BTC], poll_s=0.05)
        assert not feed.streaming
        await feed.start()
        try:
            emulator.set_price(BTC, 61_000.0)
            await feed.wait_for(lambda f: BTC in f.marks and f.marks[BTC].price == 61_000.0)
            assert feed.sources[BTC] == "poll"
        finally:
            await feed.stop()
    finally:
        await ex.close()


async def test_a_broken_stream_falls_back_to_polling(
    emulator: Emulator,  # noqa: F811
    logs: io.StringIO,  # noqa: F811
) -> None:
    ex = make_live(emulator, ws_url="ws://127.0.0.1:9/ws")  # nothing listens there
    try:
        await ex.load_markets()
        feed = PriceFeed(ex, [BTC], poll_s=0.05, retry_s=0.05)
        assert feed.streaming
        await feed.start()
        try:
            emulator.set_price(BTC, 59_000.0)
            await feed.wait_for(lambda f: BTC in f.marks and f.marks[BTC].price == 59_000.0)
            await _until(lambda: feed.stream_errors >= 1)
            assert feed.sources[BTC] == "poll"
        finally:
            await feed.stop()
    finally:
        await ex.close()
    assert "price_stream_failed" in event_names(logs)


async def test_a_price_older_than_stale_price_s_is_stale_and_refuses_entries(
    emulator: Emulator,  # noqa: F811
    logs: io.StringIO,  # noqa: F811
) -> None:
    ex = make_live(emulator, streams=False)
    clock = Clock(time.time())
    try:
        await ex.load_markets()
        feed = PriceFeed(ex, [BTC], stale_price_s=30.0, clock=clock)
        assert feed.stale() == [BTC]  # nothing yet
        await feed.poll_once()
        assert feed.stale() == []
        engine = GuardEngine(GuardsConfig(no_overnight={"enabled": False}, stale_price_s=30.0))
        account = await _account(ex)
        rules = ex.market_rules([BTC])

        def decide(now: float) -> str:
            ctx = GuardContext(account, rules, feed.snapshot(), now)
            return engine.check(LONG, ctx).code

        assert decide(clock.now + 29.0) == "ok"
        clock.now += 31.0  # neither stream nor poll updated for 31 s
        assert feed.check_stale() == [BTC]
        assert feed.check_stale() == [BTC]  # logged once, not on every check
        assert decide(clock.now) == "stale_price"
        await feed.poll_once()  # a fresh price lifts it
        assert feed.stale() == [] and decide(clock.now) == "ok"
    finally:
        await ex.close()
    names = event_names(logs)
    assert names.count("price_stale") == 1 and "price_fresh" in names


async def test_a_liquidation_cascade_halts_entries_before_price_moves(
    emulator: Emulator,  # noqa: F811
    live: LiveExchange,  # noqa: F811
) -> None:
    await live.load_markets()
    config = GuardsConfig(
        no_overnight={"enabled": False}, circuit_breaker={"liq_notional": 5_000_000.0}
    )
    engine = GuardEngine(config)
    got: list[float] = []

    def on_liquidation(symbol: str, notional: float, ts: float) -> None:
        got.append(notional)
        engine.on_liquidations(symbol, notional, ts)

    feed = PriceFeed(live, [BTC], poll_s=60.0, on_liquidation=on_liquidation)
    await feed.start()
    try:
        await feed.wait_for(lambda f: not f.stale(), timeout=10)
        await _until(lambda: sum(len(s.topics) for s in emulator._streams) >= 2)
        account = await _account(live)
        rules = live.market_rules([BTC])

        def decide() -> str:
            ctx = GuardContext(account, rules, feed.snapshot(), time.time())
            return engine.check(LONG, ctx).code

        # 10 BTC at 60000 = 600,000 USDT of longs force-closed each: 8 make 4.8M < 5M
        for _ in range(8):
            emulator.emit_liquidation(BTC, "sell", 10.0, 60_000.0)
        await _until(lambda: len(got) == 8)
        assert got == [600_000.0] * 8
        assert decide() == "ok"
        emulator.emit_liquidation(BTC, "sell", 10.0, 60_000.0)  # 5.4M in the window
        await _until(lambda: len(got) == 9)
        assert decide() == "breaker_open"
        assert feed.marks[BTC].price == 60_000.0  # the price has not moved yet
    finally:
        await feed.stop()


def test_liquidation_notional_from_ccxt_structures() -> None:
    assert liquidation_notional({"quoteValue": 1234.5}) == 1234.5
    assert liquidation_notional({"contracts": 2.0, "contractSize": 1.0, "price": 50.0}) == 100.0


async def _account(ex: LiveExchange) -> Any:
    from bot.exchange.shapes import account_from_ccxt

    return account_from_ccxt(
        await ex.fetch_balance(), await ex.fetch_positions(), await ex.fetch_open_orders()
    )


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        await asyncio.sleep(0.02)
