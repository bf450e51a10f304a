"""The streams of the live adapter (``ccxt.pro``): marks, market-wide liquidations and the
account's own fills and order updates.

``LiveStreams`` is the part of ``bot.exchange.live.LiveExchange`` that waits on websockets;
the REST calls, retries and markets are ``LiveExchange``'s own. Each ``watch_*`` marks the
exchange reachable when it answers (``bot.exchange.reach``); ``streams`` / ``streams_fills`` /
``streams_liquidations`` say what the client can stream (a client built with ``streams=False``
streams nothing: the engine and the ``Recorder`` then poll REST).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ccxt.base.errors import NotSupported

from bot.exchange.reach import Reachability


class LiveStreams:
    """The websocket side of ``LiveExchange`` (see the module docstring)."""

    id: str
    client: Any
    reach: Reachability
    _streams: bool
    _liq_delivered: set[int]

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
