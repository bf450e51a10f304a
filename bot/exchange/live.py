"""``LiveExchange``: the ccxt adapter that implements ``bot.exchange.protocol.Exchange`` for live
trading of USDT-margined perpetuals.

``LiveExchange`` wraps one ccxt client (``ccxt.pro`` when the exchange streams, else
``ccxt.async_support``; both imported only when a client is built, since importing ccxt costs
about a second and ~100 MB). Binance USDⓈ-M (``binanceusdm``) is the tested exchange; the id is
configurable, so Bybit/OKX work where ccxt's unified API suffices. It

- loads markets and leverage tiers at start and caches both on disk with a timestamp
  (``bot.exchange.cache``); a fresh cache is installed with ``set_markets`` (no request), an old
  one is refreshed; ``refresh_loop`` / ``maybe_refresh`` refresh them on a schedule;
- uses the venue's demo trading when ``exchange.demo`` is true (``Venue.demo``: Binance's
  ``enable_demo_trading``, demo-fapi.binance.com);
- retries reads, cancels and settings changes on transient errors (``bot.exchange.retry``; the
  one retrying layer); ``create_order`` is sent exactly once — ``bot.trading.executor`` decides
  about re-sending after it has looked the order up by its client id, and it is the executor
  that stops trading on an authentication or permission error;
- merges ordinary and trigger (stop / take-profit) orders in ``fetch_open_orders`` (Binance keeps
  conditional orders in its separate "algo" book);
- exposes the streams: ``watch_marks`` and ``watch_liquidations`` (market-wide forced
  liquidations), where ccxt offers them.

``api_url`` / ``ws_url`` point a client at another server (the local emulator in tests and dress
rehearsals), per venue (``point_at``): Binance's every ``fapi*`` and ``sapi`` base URL (and,
since ccxt picks Binance's futures error table by URL prefix, that table is merged into the
general one), Bybit's five REST bases, OKX's ``rest`` base. The client is built with the
venue's ccxt options and its demo mode (``bot.exchange.venue``: Binance's demo trading, Bybit's
demo trading, OKX's simulated trading).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog
from ccxt.base.errors import (
    DDoSProtection,
    NetworkError,
    NoChange,
    NotSupported,
    OrderNotFound,
    RateLimitExceeded,
)

from bot.exchange.cache import MarketCache, MarketSnapshot
from bot.exchange.reach import Reachability
from bot.exchange.retry import RetryPolicy, describe, retry_call
from bot.exchange.shapes import market_rules
from bot.exchange.venue import venue_for
from bot.settings import ExchangeSettings
from guards import MarketRules

Params = dict[str, Any] | None
Sleep = Callable[[float], Awaitable[None]]

#: Binance USDⓈ-M REST sections ccxt uses, and their paths below the base URL.
BINANCE_PATHS: dict[str, str] = {
    "fapiPublic": "/fapi/v1",
    "fapiPublicV2": "/fapi/v2",
    "fapiPublicV3": "/fapi/v3",
    "fapiPrivate": "/fapi/v1",
    "fapiPrivateV2": "/fapi/v2",
    "fapiPrivateV3": "/fapi/v3",
    "fapiData": "/futures/data",
    "sapi": "/sapi/v1",
}
#: Bybit v5 REST bases ccxt ``bybit`` signs and sends to (``urls['api']``).
BYBIT_APIS = ("spot", "futures", "v2", "public", "private")
#: Exchanges this adapter has end-to-end tests for (against the local emulator).
TESTED_EXCHANGES = ("binanceusdm", "bybit", "okx")
DEFAULT_MARKETS_MAX_AGE_S = 6 * 3600.0


def point_at(client: Any, api_url: str, ws_url: str | None = None) -> None:
    """Send a ccxt client's REST (and, Binance, stream) requests to ``api_url`` / ``ws_url``.

    Binance, Bybit (every REST base) and OKX (``rest``); the Bybit and OKX emulators serve no
    streams, so ``ws_url`` is Binance's only.
    """
    base = api_url.rstrip("/")
    exchange = str(client.id)
    if exchange in ("bybit", "okx"):
        if ws_url is not None:
            raise NotSupported(f"ws_url override is implemented for Binance only, not {exchange}")
        api = client.urls["api"]
        for key in BYBIT_APIS if exchange == "bybit" else ("rest",):
            api[key] = base
        return
    if not exchange.startswith("binance"):
        raise NotSupported(f"api_url override is not implemented for {exchange}")
    api = client.urls["api"]
    for key, path in BINANCE_PATHS.items():
        api[key] = base + path
    if ws_url is not None and isinstance(api.get("ws"), dict):
        api["ws"]["linear"] = ws_url
    # ccxt chooses the futures error table by URL prefix (fapi.binance.com); merge it in
    linear = client.exceptions.get("linear", {})
    client.exceptions.setdefault("exact", {}).update(linear.get("exact", {}))
    client.exceptions.setdefault("broad", {}).update(linear.get("broad", {}))


def _header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    if not headers:
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if str(key).lower() == wanted:
            return str(value)
    return None


class LiveExchange:
    """A ccxt client behind the ``Exchange`` protocol; see the module docstring.

    ``cache_dir``: where the markets/tiers snapshot lives (None: no disk cache);
    ``markets_max_age_s``: when a snapshot counts as old; ``retry``: the policy for reads,
    cancels and settings changes; ``api_url`` / ``ws_url``: another server (``point_at``);
    ``timeout_ms``: per request; ``rate_limit``: ccxt's client-side throttle (leave it on
    against real exchanges); ``streams``: use ccxt.pro streams where available; ``options``:
    extra ccxt options; ``client``: a ready ccxt client (tests).
    """

    def __init__(
        self,
        settings: ExchangeSettings,
        *,
        cache_dir: Path | None = None,
        markets_max_age_s: float = DEFAULT_MARKETS_MAX_AGE_S,
        retry: RetryPolicy | None = None,
        api_url: str | None = None,
        ws_url: str | None = None,
        timeout_ms: int = 10_000,
        rate_limit: bool = True,
        streams: bool = True,
        options: Mapping[str, Any] | None = None,
        client: Any = None,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.id = settings.id
        self.retry = retry if retry is not None else RetryPolicy()
        self.markets_max_age_s = markets_max_age_s
        self.log = structlog.get_logger("bot.exchange.live").bind(exchange=settings.id)
        self._clock = clock
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._cache = (
            MarketCache(cache_dir, settings.id, sandbox=settings.demo)
            if cache_dir is not None
            else None
        )
        self.client = (
            client
            if client is not None
            else _make_client(
                settings,
                streams=streams,
                timeout_ms=timeout_ms,
                rate_limit=rate_limit,
                options=options,
            )
        )
        self._streams = streams
        if settings.demo:
            venue_for(settings.id).demo(self.client)
        if api_url is not None:
            point_at(self.client, api_url, ws_url)
        self.markets: dict[str, dict[str, Any]] = {}
        self.tiers: dict[str, list[dict[str, Any]]] = {}
        self.markets_fetched_at: float | None = None
        self._liq_delivered: set[int] = set()
        #: Whether the exchange answers (``bot.exchange.reach``).
        self.reach = Reachability(clock)

    # ------------------------------------------------------------------ plumbing

    async def _call(self, op: str, fn: Callable[[], Awaitable[Any]], *, retry: bool = True) -> Any:
        if not retry:
            return await self._once(fn)
        return await retry_call(
            lambda: self._once(fn),
            op=op,
            policy=self.retry,
            log=self.log,
            sleep=self._sleep,
            rng=self._rng,
            retry_after=self.retry_after_s,
        )

    async def _once(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        """One request; a rate-limit refusal keeps its ``Retry-After`` (read right away, before
        another request replaces ccxt's ``last_response_headers``)."""
        try:
            result = await fn()
        except (DDoSProtection, RateLimitExceeded) as exc:
            self.reach.ok()  # it answered: slow down, not unreachable
            value = _header(getattr(self.client, "last_response_headers", None), "Retry-After")
            with contextlib.suppress(ValueError, TypeError):
                exc.retry_after_s = None if value is None else max(0.0, float(value))
            raise
        except (NetworkError, asyncio.CancelledError) as exc:
            self.reach.failed(describe(exc) if isinstance(exc, NetworkError) else "no answer")
            raise
        except Exception:
            self.reach.ok()  # a refusal is an answer
            raise
        self.reach.ok()
        return result

    def retry_after_s(self, exc: BaseException) -> float | None:
        """Seconds the exchange asked to wait (``Retry-After`` of a 429/418), if any."""
        value = getattr(exc, "retry_after_s", None)
        return float(value) if isinstance(value, int | float) else None

    @property
    def is_binance(self) -> bool:
        return str(self.id).startswith("binance")

    # ------------------------------------------------------------------ markets and tiers

    async def load_markets(self, reload: bool = False) -> dict[str, dict[str, Any]]:
        """Markets (and leverage tiers): from a fresh disk cache, else from the exchange."""
        if self.markets and not reload:
            return self.markets
        if not reload and self._cache is not None:
            snap = self._cache.load()
            if snap is not None and snap.age(self._clock()) <= self.markets_max_age_s:
                self.client.set_markets(snap.markets)
                self.markets = dict(self.client.markets)
                self.tiers = snap.tiers
                self.markets_fetched_at = snap.fetched_at
                self.log.info(
                    "markets_from_cache",
                    path=str(self._cache.path),
                    age_s=round(snap.age(self._clock()), 1),
                    markets=len(self.markets),
                )
                return self.markets
        await self.refresh_markets()
        return self.markets

    async def refresh_markets(self) -> None:
        """Fetch markets and leverage tiers from the exchange and rewrite the cache."""
        markets = await self._call("load_markets", lambda: self.client.load_markets(True))
        self.markets = dict(markets)
        self.tiers = await self._fetch_tiers()
        self.markets_fetched_at = self._clock()
        self.log.info("markets_loaded", markets=len(self.markets), tiers=len(self.tiers))
        if self._cache is not None:
            try:
                path = self._cache.save(
                    MarketSnapshot(self.id, self.markets_fetched_at, self.markets, self.tiers)
                )
            except OSError as exc:
                self.log.warning("markets_cache_write_failed", error=describe(exc))
            else:
                self.log.debug("markets_cached", path=str(path))

    async def _fetch_tiers(self) -> dict[str, list[dict[str, Any]]]:
        client = self.client
        if self.is_binance and not getattr(client, "apiKey", None):
            # Binance's leverage brackets are a signed endpoint: a keyless (market data) client
            # goes without them
            self.log.info("leverage_tiers_skipped", reason="no API key")
            return {}
        if client.has.get("fetchLeverageTiers"):
            symbols = None if self.is_binance else list(self.settings.symbols)
            raw = await self._call(
                "fetch_leverage_tiers", lambda: client.fetch_leverage_tiers(symbols)
            )
            return {s: [dict(e) for e in entries] for s, entries in raw.items()}
        tiers: dict[str, list[dict[str, Any]]] = {}
        if client.has.get("fetchMarketLeverageTiers"):
            for symbol in self.settings.symbols:

                async def one(s: str = symbol) -> Any:
                    return await client.fetch_market_leverage_tiers(s)

                entries = await self._call("fetch_market_leverage_tiers", one)
                tiers[symbol] = [dict(e) for e in entries]
        return tiers

    async def maybe_refresh(self) -> bool:
        """Refresh markets and tiers when older than ``markets_max_age_s``; True if it did."""
        fetched = self.markets_fetched_at
        if fetched is not None and self._clock() - fetched < self.markets_max_age_s:
            return False
        await self.refresh_markets()
        return True

    async def refresh_loop(self, interval_s: float | None = None) -> None:
        """Refresh markets and tiers every ``interval_s`` (default: the max age) until cancelled."""
        every = self.markets_max_age_s if interval_s is None else interval_s
        while True:
            await self._sleep(every)
            try:
                await self.refresh_markets()
            except Exception as exc:
                self.log.warning("markets_refresh_failed", error=describe(exc))

    def market_rules(self, symbols: Iterable[str] | None = None) -> dict[str, MarketRules]:
        """The guards' rules of ``symbols`` (default: every market with leverage tiers)."""
        chosen = list(self.tiers) if symbols is None else list(symbols)
        mode = int(getattr(self.client, "precisionMode", 4))
        rules: dict[str, MarketRules] = {}
        for symbol in chosen:
            market = self.markets.get(symbol)
            entries = self.tiers.get(symbol)
            if market is None or not entries:
                continue
            try:
                rules[symbol] = market_rules(market, entries, mode, self.id)
            except (ValueError, TypeError, KeyError) as exc:
                self.log.warning("market_rules_invalid", symbol=symbol, error=describe(exc))
        return rules

    async def fetch_leverage_tiers(
        self, symbols: list[str] | None = None, params: Params = None
    ) -> dict[str, list[dict[str, Any]]]:
        if not self.tiers:
            await self.load_markets()
        chosen = list(self.tiers) if symbols is None else symbols
        return {s: self.tiers[s] for s in chosen if s in self.tiers}

    # ------------------------------------------------------------------ protocol: reads

    async def fetch_ticker(self, symbol: str, params: Params = None) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "fetch_ticker", lambda: self.client.fetch_ticker(symbol, params or {})
        )
        return result

    async def fetch_order(
        self, id: str, symbol: str | None = None, params: Params = None
    ) -> dict[str, Any]:
        """One order by id, or by ``params["clientOrderId"]``.

        A look-up by client id that does not say whether the order is a trigger order searches
        the ordinary book first and then the trigger ("algo") book.
        """
        extra = dict(params or {})
        result: dict[str, Any]
        try:
            result = await self._call(
                "fetch_order", lambda: self.client.fetch_order(id, symbol, extra)
            )
        except OrderNotFound:
            if not extra.get("clientOrderId") or "trigger" in extra or "stop" in extra:
                raise
            result = await self._call(
                "fetch_trigger_order",
                lambda: self.client.fetch_order(id, symbol, {**extra, "trigger": True}),
            )
        return result

    async def fetch_open_orders(
        self,
        symbol: str | None = None,
        since: int | None = None,
        limit: int | None = None,
        params: Params = None,
    ) -> list[dict[str, Any]]:
        """Open orders, ordinary and trigger (stop / take-profit) ones together."""
        extra = dict(params or {})
        if "trigger" in extra or "stop" in extra:
            found: list[dict[str, Any]] = await self._call(
                "fetch_open_orders",
                lambda: self.client.fetch_open_orders(symbol, since, limit, extra),
            )
            return found
        regular: list[dict[str, Any]] = await self._call(
            "fetch_open_orders", lambda: self.client.fetch_open_orders(symbol, since, limit, extra)
        )
        try:
            triggers: list[dict[str, Any]] = await self._call(
                "fetch_open_trigger_orders",
                lambda: self.client.fetch_open_orders(
                    symbol, since, limit, {**extra, "trigger": True}
                ),
            )
        except NotSupported:
            triggers = []
        seen = {o.get("id") for o in regular}
        return regular + [o for o in triggers if o.get("id") not in seen]

    async def fetch_positions(
        self, symbols: list[str] | None = None, params: Params = None
    ) -> list[dict[str, Any]]:
        """Open positions (zero-size entries dropped)."""
        found: list[dict[str, Any]] = await self._call(
            "fetch_positions", lambda: self.client.fetch_positions(symbols, params or {})
        )
        return [p for p in found if float(p.get("contracts") or 0.0) > 0.0]

    async def fetch_my_trades(
        self,
        symbol: str | None = None,
        since: int | None = None,
        limit: int | None = None,
        params: Params = None,
    ) -> list[dict[str, Any]]:
        """The account's fills (Binance ``GET /fapi/v1/userTrades``), oldest first."""
        found: list[dict[str, Any]] = await self._call(
            "fetch_my_trades",
            lambda: self.client.fetch_my_trades(symbol, since, limit, params or {}),
        )
        return found

    async def fetch_balance(self, params: Params = None) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "fetch_balance", lambda: self.client.fetch_balance(params or {})
        )
        return result

    async def fetch_time(self) -> int:
        """The exchange's clock in epoch milliseconds."""
        result = await self._call("fetch_time", lambda: self.client.fetch_time())
        return int(result)

    async def fetch_mark(self, symbol: str) -> float | None:
        """The current mark price (premium index on Binance; else the ticker's mark or last)."""
        client = self.client
        if client.has.get("fetchMarkPrice"):
            ticker = await self._call("fetch_mark_price", lambda: client.fetch_mark_price(symbol))
        else:
            ticker = await self.fetch_ticker(symbol)
        value = ticker.get("markPrice") or ticker.get("last")
        return float(value) if value else None

    async def api_permissions(self) -> dict[str, Any] | None:
        """What the API key may do (Binance ``apiRestrictions``); None where unknown."""
        if not self.is_binance:
            return None
        result: dict[str, Any] = await self._call(
            "api_permissions", lambda: self.client.sapi_get_account_apirestrictions()
        )
        return result

    async def hedge_mode(self) -> bool | None:
        """True when the account is in hedge (dual-side) mode; None where unknown."""
        if not self.client.has.get("fetchPositionMode"):
            return None
        result = await self._call("fetch_position_mode", lambda: self.client.fetch_position_mode())
        return bool(result.get("hedged"))

    async def multi_assets(self) -> bool | None:
        """True when the account is in Binance's multi-assets mode; None where unknown."""
        if not self.is_binance:
            return None
        result = await self._call(
            "fetch_multi_assets", lambda: self.client.fapiPrivateGetMultiAssetsMargin()
        )
        return str(result.get("multiAssetsMargin")).lower() == "true"

    # ------------------------------------------------------------------ protocol: writes

    async def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: float,
        price: float | None = None,
        params: Params = None,
    ) -> dict[str, Any]:
        """Send one order, once (see ``bot.trading.executor`` for idempotent re-sending)."""
        result: dict[str, Any] = await self._call(
            "create_order",
            lambda: self.client.create_order(symbol, type, side, amount, price, params or {}),
            retry=False,
        )
        return result

    async def cancel_order(
        self, id: str, symbol: str | None = None, params: Params = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "cancel_order", lambda: self.client.cancel_order(id, symbol, params or {})
        )
        return result

    async def cancel_all_orders(
        self, symbol: str | None = None, params: Params = None
    ) -> list[dict[str, Any]]:
        result = await self._call(
            "cancel_all_orders", lambda: self.client.cancel_all_orders(symbol, params or {})
        )
        return list(result) if isinstance(result, list) else []

    async def set_leverage(
        self, leverage: float, symbol: str | None = None, params: Params = None
    ) -> dict[str, Any]:
        """Set the leverage (whole numbers on Binance: a fractional one is rounded down)."""
        value: float | int = leverage
        if self.is_binance:
            value = max(1, math.floor(leverage + 1e-9))
        result: dict[str, Any] = await self._call(
            "set_leverage", lambda: self.client.set_leverage(value, symbol, params or {})
        )
        return result

    async def set_margin_mode(
        self, marginMode: str, symbol: str | None = None, params: Params = None
    ) -> dict[str, Any]:
        """Set isolated / cross; "already set" counts as success."""
        try:
            result: dict[str, Any] = await self._call(
                "set_margin_mode",
                lambda: self.client.set_margin_mode(marginMode, symbol, params or {}),
            )
        except NoChange:
            return {"info": {"msg": "margin mode already set"}, "symbol": symbol}
        return result

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.close()

    # ------------------------------------------------------------------ streams

    @property
    def streams(self) -> bool:
        """True when the client can stream prices (ccxt.pro and the exchange supports it)."""
        has = self.client.has
        return self._streams and bool(
            has.get("watchMarkPrices") or has.get("watchMarkPrice") or has.get("watchTickers")
        )

    @property
    def streams_fills(self) -> bool:
        """True when the account's fills and order updates stream (the user-data stream)."""
        has = self.client.has
        return self._streams and bool(has.get("watchMyTrades")) and bool(has.get("watchOrders"))

    async def watch_my_trades(self) -> list[dict[str, Any]]:
        """Wait for the account's next fill(s) (ccxt.pro; ccxt keeps the listen key alive)."""
        trades = await self.client.watch_my_trades()
        self.reach.ok()
        return list(trades)

    async def watch_orders(self) -> list[dict[str, Any]]:
        """Wait for the account's next order update(s)."""
        orders = await self.client.watch_orders()
        self.reach.ok()
        return list(orders)

    @property
    def streams_liquidations(self) -> bool:
        has = self.client.has
        return self._streams and bool(
            has.get("watchLiquidationsForSymbols") or has.get("watchLiquidations")
        )

    async def watch_marks(self, symbols: Sequence[str]) -> dict[str, float]:
        """Wait for the next mark-price update(s); returns ``{symbol: mark}``."""
        client = self.client
        has = client.has
        if has.get("watchMarkPrices"):
            tickers = await client.watch_mark_prices(list(symbols))
        elif has.get("watchMarkPrice") and len(symbols) == 1:
            ticker = await client.watch_mark_price(symbols[0])
            tickers = {symbols[0]: ticker}
        elif has.get("watchTickers"):
            tickers = await client.watch_tickers(list(symbols))
        else:
            raise NotSupported(f"{self.id} streams no prices")
        self.reach.ok()
        out: dict[str, float] = {}
        for symbol, ticker in tickers.items():
            value = ticker.get("markPrice") or ticker.get("last")
            if value:
                out[symbol] = float(value)
        return out

    async def watch_liquidations(self, symbols: Sequence[str]) -> list[dict[str, Any]]:
        """Wait for the next market-wide forced liquidations of ``symbols``.

        ccxt.pro hands each waiter only the message that woke it; events arriving in a burst
        before the next call land in its cache alone. They are collected from there, so a
        cascade is counted whole (each event exactly once).
        """
        client = self.client
        if client.has.get("watchLiquidationsForSymbols"):
            found = await client.watch_liquidations_for_symbols(list(symbols))
        elif client.has.get("watchLiquidations") and len(symbols) == 1:
            found = await client.watch_liquidations(symbols[0])
        else:
            raise NotSupported(f"{self.id} streams no liquidations")
        cache = list(getattr(client, "liquidations", None) or [])
        wanted = set(symbols)
        out = []
        for liq in [*cache, *found]:
            key = id(liq)
            if key in self._liq_delivered or liq.get("symbol") not in wanted:
                continue
            self._liq_delivered.add(key)
            out.append(liq)
        # forget what ccxt has dropped from its cache (ids are only unique while alive)
        alive = {id(liq) for liq in cache} | {id(liq) for liq in found}
        self._liq_delivered &= alive
        return out


def _make_client(
    settings: ExchangeSettings,
    *,
    streams: bool,
    timeout_ms: int,
    rate_limit: bool,
    options: Mapping[str, Any] | None,
) -> Any:
    """A ccxt client for ``settings`` (ccxt.pro when streaming and available)."""
    import ccxt.async_support as ccxt_async

    cls = None
    if streams:
        import ccxt.pro as ccxt_pro

        cls = getattr(ccxt_pro, settings.id, None)
    if cls is None:
        cls = getattr(ccxt_async, settings.id, None)
    if cls is None:
        raise NotSupported(f"ccxt has no exchange {settings.id!r}")
    opts: dict[str, Any] = {
        "fetchCurrencies": False,
        "warnOnFetchOpenOrdersWithoutSymbol": False,
    }
    if not str(settings.id).startswith("binance"):
        opts["defaultType"] = "swap"
    opts.update(venue_for(settings.id).client_options())
    if options:
        opts.update(options)
    config: dict[str, Any] = {
        "enableRateLimit": rate_limit,
        "timeout": timeout_ms,
        "options": opts,
    }
    if settings.api_key is not None:
        config["apiKey"] = settings.api_key.get_secret_value()
    if settings.api_secret is not None:
        config["secret"] = settings.api_secret.get_secret_value()
    if settings.password is not None:
        config["password"] = settings.password.get_secret_value()
    return cls(config)
