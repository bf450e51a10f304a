"""``LiveExchange``: the ccxt adapter that implements ``bot.exchange.protocol.Exchange`` for live
trading of USDT-margined perpetuals on Binance USDⓈ-M (``binanceusdm``), Bybit (``bybit``) and
OKX (``okx``), each tested end to end against its local emulator.

``LiveExchange`` wraps one ccxt client (built and pointed by ``bot.exchange.client``; its
streams are ``bot.exchange.streams.LiveStreams``) and asks the exchange's venue
(``bot.exchange.venue``) wherever the exchanges differ. It

- loads markets and leverage tiers at start and caches both on disk with a timestamp
  (``bot.exchange.cache``); a fresh cache is installed with ``set_markets`` (no request), an old
  one is refreshed; ``refresh_loop`` / ``maybe_refresh`` refresh them on a schedule;
- uses the venue's demo trading when ``exchange.demo`` is true (``Venue.demo``: Binance's
  ``enable_demo_trading``, demo-fapi.binance.com; Bybit's demo trading; OKX's simulated trading);
- retries reads, cancels and settings changes on transient errors (``bot.exchange.retry``; the
  one retrying layer); ``create_order`` is sent exactly once — ``bot.trading.executor`` decides
  about re-sending after it has looked the order up by its client id, and it is the executor
  that stops trading on an authentication or permission error;
- merges ordinary and trigger (stop / take-profit) orders in ``fetch_open_orders`` (the trigger
  book as the venue lists the bot's own: Binance's "algo" book, Bybit's ``StopOrder`` filter,
  OKX's ``conditional,oco`` algo orders), and gives ``fetch_order`` the venue's parameters;
- sets the account's position mode (``set_position_mode``), margin mode and leverage.

Amounts stay as ccxt gives them (OKX: contracts); the executor and the recorder convert.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
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
from bot.exchange.client import TESTED_EXCHANGES, make_client, point_at
from bot.exchange.reach import Reachability
from bot.exchange.retry import RetryPolicy, describe, retry_call
from bot.exchange.shapes import market_rules
from bot.exchange.streams import LiveStreams
from bot.exchange.venue import venue_for
from bot.settings import ExchangeSettings
from guards import MarketRules

Params = dict[str, Any] | None
Sleep = Callable[[float], Awaitable[None]]
DEFAULT_MARKETS_MAX_AGE_S = 6 * 3600.0

__all__ = ["DEFAULT_MARKETS_MAX_AGE_S", "TESTED_EXCHANGES", "LiveExchange", "point_at"]


def _header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    if not headers:
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if str(key).lower() == wanted:
            return str(value)
    return None


class LiveExchange(LiveStreams):
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
        self.venue = venue_for(settings.id)
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
            else make_client(
                settings,
                streams=streams,
                timeout_ms=timeout_ms,
                rate_limit=rate_limit,
                options=options,
            )
        )
        self._streams = streams
        if settings.demo:
            self.venue.demo(self.client)
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
        """One order by id, or by ``params["clientOrderId"]`` (with the venue's parameters).

        A look-up by client id that does not say whether the order is a trigger order searches
        the ordinary book first and then the trigger ("algo") book.
        """
        extra = {**self.venue.fetch_order_params(), **(params or {})}
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
        """Open orders, ordinary and trigger (stop / take-profit) ones together (the trigger
        book as the venue lists the bot's own: ``Venue.trigger_params``)."""
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
                    symbol, since, limit, {**extra, **self.venue.trigger_params()}
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
            params = self.venue.mark_params()
            ticker = await self._call(
                "fetch_mark_price", lambda: client.fetch_mark_price(symbol, params)
            )
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

    async def set_position_mode(
        self, hedged: bool, symbol: str | None = None, params: Params = None
    ) -> dict[str, Any]:
        """Set hedge (True) or one-way (False) position mode for the account."""
        result: dict[str, Any] = await self._call(
            "set_position_mode",
            lambda: self.client.set_position_mode(hedged, symbol, params or {}),
        )
        return result

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.close()
