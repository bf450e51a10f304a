"""LiveExchange against the local exchange through the real ccxt client: markets and tiers cached
on disk, demo trading, retries with Retry-After, refusals not retried, auth errors stop trading.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from ccxt.base.errors import AuthenticationError, InvalidOrder, NotSupported, OperationFailed
from conftest_live import (  # noqa: F401
    API_SECRET,
    BTC,
    ETH,
    emulator,
    events,
    live,
    logs,
    make_live,
    settings,
)
from pydantic import SecretStr

from bot.emulator import Emulator, Fault
from bot.exchange.cache import MarketCache, MarketSnapshot
from bot.exchange.live import LiveExchange, point_at
from bot.exchange.retry import RetryPolicy
from bot.exchange.shapes import market_rules
from paper.markets import load_market


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def test_markets_and_tiers_are_cached_on_disk_with_a_timestamp(
    emulator: Emulator,  # noqa: F811
    tmp_path: Path,
) -> None:
    clock = Clock()
    first = make_live(emulator, cache_dir=tmp_path, clock=clock)
    try:
        await first.load_markets()
    finally:
        await first.close()
    cache = MarketCache(tmp_path, "binanceusdm")
    data = json.loads(cache.path.read_text())
    assert data["fetched_at"] == clock.now
    assert set(data["markets"]) == {BTC, ETH} and set(data["tiers"]) == {BTC, ETH}
    before = emulator.request_count("GET", "/fapi/v1/exchangeInfo")
    clock.now += 3_600  # one hour later: still fresh (max age 6 h)
    second = make_live(emulator, cache_dir=tmp_path, clock=clock)
    try:
        markets = await second.load_markets()
        assert emulator.request_count("GET", "/fapi/v1/exchangeInfo") == before
        assert markets[BTC]["precision"]["price"] == 0.1
        assert second.client.markets[BTC]["id"] == "BTCUSDT"  # installed in ccxt: no request
        # a ccxt call that needs the markets works without loading them again
        assert (await second.fetch_ticker(BTC))["last"] == 60_000.0
        assert emulator.request_count("GET", "/fapi/v1/exchangeInfo") == before
    finally:
        await second.close()


async def test_an_old_cache_is_refreshed_and_rewritten(
    emulator: Emulator,  # noqa: F811
    tmp_path: Path,
) -> None:
    cache = MarketCache(tmp_path, "binanceusdm")
    stale = MarketSnapshot("binanceusdm", 100.0, {"OLD/USDT:USDT": {"id": "OLD"}}, {})
    cache.save(stale)
    clock = Clock(100.0 + 7 * 3600)  # seven hours later, older than the 6 h max age
    ex = make_live(emulator, cache_dir=tmp_path, clock=clock)
    try:
        markets = await ex.load_markets()
        assert set(markets) == {BTC, ETH}
        assert emulator.request_count("GET", "/fapi/v1/exchangeInfo") == 1
        snap = cache.load()
        assert snap is not None and snap.fetched_at == clock.now
        assert not await ex.maybe_refresh()  # just fetched
        clock.now += 6 * 3600 + 1
        assert await ex.maybe_refresh()
        assert emulator.request_count("GET", "/fapi/v1/exchangeInfo") == 2
    finally:
        await ex.close()


def test_a_cache_of_another_exchange_or_network_is_ignored(tmp_path: Path) -> None:
    MarketCache(tmp_path, "bybit").save(MarketSnapshot("bybit", 1.0, {"X": {}}, {}))
    (tmp_path / "markets-binanceusdm.json").write_text("{not json")
    assert MarketCache(tmp_path, "binanceusdm").load() is None
    MarketCache(tmp_path, "binanceusdm").save(MarketSnapshot("binanceusdm", 1.0, {"X": {}}, {}))
    assert MarketCache(tmp_path, "binanceusdm", sandbox=True).load() is None


async def test_market_rules_match_the_bundled_binance_figures(live: LiveExchange) -> None:  # noqa: F811
    await live.load_markets()
    rules = live.market_rules([BTC])[BTC]
    bundled = load_market(BTC).rules
    assert rules.tiers == bundled.tiers
    assert (rules.amount_step, rules.price_step) == (0.001, 0.1)
    assert (rules.min_amount, rules.min_notional) == (0.001, 100.0)
    # ccxt's Binance USDⓈ-M VIP 0 fees: taker 0.05 %, maker 0.02 %
    assert (rules.taker_fee, rules.maker_fee) == (0.0005, 0.0002)
    assert market_rules(live.markets[ETH], live.tiers[ETH]).price_step == 0.01


async def test_demo_mode_uses_the_demo_trading_urls() -> None:
    """The futures testnet is gone; ``exchange.demo`` is Binance's demo trading."""
    ex = LiveExchange(settings(demo=True), streams=False)
    try:
        api = ex.client.urls["api"]
        assert api["fapiPrivate"] == "https://demo-fapi.binance.com/fapi/v1"
        assert api["fapiPublic"] == "https://demo-fapi.binance.com/fapi/v1"
        assert ex.client.options["enableDemoTrading"] is True
        assert not ex.client.isSandboxModeEnabled
    finally:
        await ex.close()


async def test_the_api_url_override_is_per_venue() -> None:
    """Binance, Bybit and OKX can be pointed elsewhere (streams: Binance only); others not."""
    ex = LiveExchange(settings(id="bybit"), streams=False)
    try:
        point_at(ex.client, "http://127.0.0.1:1/")
        assert {ex.client.urls["api"][k] for k in ("public", "private")} == {"http://127.0.0.1:1"}
        with pytest.raises(NotSupported):
            point_at(ex.client, "http://127.0.0.1:1", "ws://127.0.0.1:1/ws")
    finally:
        await ex.close()
    ex = LiveExchange(settings(id="kraken"), streams=False)
    try:
        with pytest.raises(NotSupported):
            point_at(ex.client, "http://127.0.0.1:1")
    finally:
        await ex.close()


async def test_rate_limit_waits_for_retry_after_then_succeeds(
    emulator: Emulator,  # noqa: F811
) -> None:
    sleeps = Sleeps()
    ex = make_live(emulator, sleep=sleeps, retry=RetryPolicy(base_s=0.01, budget_s=30.0))
    try:
        await ex.load_markets()
        emulator.inject(
            Fault("rate_limit", method="GET", path="/fapi/v3/positionRisk", retry_after_s=3)
        )
        assert await ex.fetch_positions() == []
        assert sleeps.waits == [3.0]  # the server's Retry-After, not the 0.01 s backoff
        assert emulator.request_count("GET", "/fapi/v3/positionRisk") == 2
    finally:
        await ex.close()


async def test_server_errors_on_reads_are_retried_within_the_budget(
    emulator: Emulator,  # noqa: F811
) -> None:
    sleeps = Sleeps()
    policy = RetryPolicy(attempts=3, base_s=0.01, jitter=0.0)
    ex = make_live(emulator, sleep=sleeps, retry=policy)
    try:
        await ex.load_markets()
        emulator.inject(Fault("server_error", method="GET", path="/fapi/v3/account", times=2))
        balance = await ex.fetch_balance()
        assert balance["USDT"]["total"] == pytest.approx(10_000.0)
        assert sleeps.waits == [0.01, 0.02]
        emulator.inject(Fault("server_error", method="GET", path="/fapi/v3/account", times=3))
        with pytest.raises(OperationFailed):
            await ex.fetch_balance()  # three tries, all failed: give up
    finally:
        await ex.close()


async def test_orders_are_sent_once_and_refusals_not_retried(
    emulator: Emulator,  # noqa: F811
    live: LiveExchange,  # noqa: F811
) -> None:
    await live.load_markets()
    with pytest.raises(InvalidOrder, match="-4164"):
        await live.create_order(BTC, "market", "buy", 0.001)  # 60 USDT < 100 minimum notional
    emulator.inject(Fault("server_error"))
    with pytest.raises(OperationFailed):
        await live.create_order(BTC, "market", "buy", 0.01)  # not re-sent by the adapter
    assert emulator.request_count("POST", "/fapi/v1/order") == 2


async def test_an_auth_error_is_raised_at_once_and_never_retried_or_logged_with_the_secret(
    emulator: Emulator,  # noqa: F811
    logs: io.StringIO,  # noqa: F811
) -> None:
    """The adapter only retries transient errors; stopping trading on a refused key is the
    executor's job (tests/test_execution.py), so the adapter raises and logs nothing itself."""
    wrong = settings(api_secret=SecretStr("x" * 40))
    ex = make_live(emulator, settings=wrong)
    try:
        with pytest.raises(AuthenticationError, match="-1022"):
            await ex.load_markets()  # the leverage brackets are a signed endpoint
        assert emulator.request_count("GET", "/fapi/v1/leverageBracket") == 1  # not retried
    finally:
        await ex.close()
    assert "exchange_retry" not in {e["event"] for e in events(logs)}
    assert API_SECRET not in logs.getvalue() and "x" * 40 not in logs.getvalue()


async def test_open_orders_merge_ordinary_and_trigger_orders(
    live: LiveExchange,  # noqa: F811
) -> None:
    await live.load_markets()
    await live.create_order(BTC, "market", "buy", 0.01)
    await live.create_order(BTC, "limit", "buy", 0.01, 50_000.0, {"clientOrderId": "lim"})
    await live.create_order(
        BTC, "market", "sell", 0.01, None, {"stopLossPrice": 58_000, "closePosition": True}
    )
    orders = await live.fetch_open_orders(BTC)
    assert sorted(o.get("triggerPrice") or 0.0 for o in orders) == [0.0, 58_000.0]
    # a look-up by client id finds trigger orders too, without being told
    stop_cid = next(o["clientOrderId"] for o in orders if o.get("triggerPrice"))
    found = await live.fetch_order("", BTC, {"clientOrderId": stop_cid})
    assert found["triggerPrice"] == 58_000.0


async def test_leverage_is_sent_as_a_whole_number(
    emulator: Emulator,  # noqa: F811
    live: LiveExchange,  # noqa: F811
) -> None:
    await live.load_markets()
    await live.set_leverage(3.7, BTC)  # Binance takes integers: rounded down, never up
    assert emulator.core.leverage(BTC) == 3.0
    assert (await live.set_margin_mode("isolated", BTC))["symbol"] == BTC  # already: fine
    await live.set_margin_mode("cross", BTC)
    assert emulator.core.margin_mode(BTC) == "cross"


async def test_mark_time_permissions_and_position_mode(
    emulator: Emulator,  # noqa: F811
    live: LiveExchange,  # noqa: F811
) -> None:
    await live.load_markets()
    emulator.set_price(BTC, 60_100.0, mark=60_050.0)
    assert await live.fetch_mark(BTC) == 60_050.0
    assert abs(await live.fetch_time() - emulator.now_ms()) < 5_000
    perms: dict[str, Any] | None = await live.api_permissions()
    assert perms is not None and perms["enableWithdrawals"] is False
    assert await live.hedge_mode() is False


async def test_a_keyless_market_data_client_loads_markets_without_tiers(
    emulator: Emulator,  # noqa: F811
) -> None:
    public = settings(api_key=None, api_secret=None)
    ex = make_live(emulator, settings=public)
    try:
        markets = await ex.load_markets()
        assert set(markets) == {BTC, ETH} and ex.tiers == {}
        assert await ex.fetch_mark(BTC) == 60_000.0
        assert emulator.request_count("GET", "/fapi/v1/leverageBracket") == 0
    finally:
        await ex.close()
