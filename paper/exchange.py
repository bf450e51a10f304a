"""``PaperExchange``: the async, ccxt-shaped face of ``PaperCore``.

It satisfies ``bot.exchange.protocol.Exchange`` structurally (ccxt unified method names, dicts
and exception classes) without importing ``bot``. Every method delegates to the synchronous core
at once; nothing here waits or reads a clock, so a replay stays deterministic. The replay driver
keeps using the core directly (``exchange.core``) for prices and funding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ccxt.base.errors import ArgumentsRequired

from guards import MarketRules
from paper.config import PaperConfig
from paper.core import PaperCore
from paper.markets import PaperMarket, load_markets

Params = dict[str, Any] | None


class PaperExchange:
    """Async ccxt-like exchange over a ``PaperCore`` (``id = "paper"``)."""

    id = "paper"

    def __init__(
        self,
        core: PaperCore | None = None,
        *,
        config: PaperConfig | None = None,
        markets: Mapping[str, MarketRules | PaperMarket] | None = None,
    ) -> None:
        if core is None:
            cfg = config if config is not None else PaperConfig()
            core = PaperCore(cfg, markets if markets is not None else load_markets(config=cfg))
        self.core = core
        self.markets: dict[str, dict[str, Any]] = {}

    async def load_markets(self, reload: bool = False) -> dict[str, dict[str, Any]]:
        if reload or not self.markets:
            self.markets = {s: self.core.market(s).to_ccxt() for s in self.core.symbols}
        return self.markets

    async def fetch_ticker(self, symbol: str, params: Params = None) -> dict[str, Any]:
        return self.core.ticker(symbol)

    async def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: float,
        price: float | None = None,
        params: Params = None,
    ) -> dict[str, Any]:
        return self.core.create_order(symbol, type, side, amount, price, params)

    async def cancel_order(
        self, id: str, symbol: str | None = None, params: Params = None
    ) -> dict[str, Any]:
        return self.core.cancel_order(id, symbol, params)

    async def cancel_all_orders(
        self, symbol: str | None = None, params: Params = None
    ) -> list[dict[str, Any]]:
        return self.core.cancel_all_orders(symbol)

    async def fetch_order(
        self, id: str, symbol: str | None = None, params: Params = None
    ) -> dict[str, Any]:
        return self.core.fetch_order(id, symbol, params)

    async def fetch_open_orders(
        self,
        symbol: str | None = None,
        since: int | None = None,
        limit: int | None = None,
        params: Params = None,
    ) -> list[dict[str, Any]]:
        orders = self.core.open_orders(symbol)
        if since is not None:
            orders = [o for o in orders if o["timestamp"] >= since]
        return orders[-limit:] if limit else orders

    async def fetch_positions(
        self, symbols: list[str] | None = None, params: Params = None
    ) -> list[dict[str, Any]]:
        return self.core.positions(symbols)

    async def fetch_balance(self, params: Params = None) -> dict[str, Any]:
        return self.core.balance()

    async def set_leverage(
        self, leverage: float, symbol: str | None = None, params: Params = None
    ) -> dict[str, Any]:
        if symbol is None:
            raise ArgumentsRequired("paper set_leverage() requires a symbol argument")
        return self.core.set_leverage(leverage, symbol)

    async def set_margin_mode(
        self, marginMode: str, symbol: str | None = None, params: Params = None
    ) -> dict[str, Any]:
        if symbol is None:
            raise ArgumentsRequired("paper set_margin_mode() requires a symbol argument")
        return self.core.set_margin_mode(marginMode, symbol)

    async def add_margin(self, symbol: str, amount: float, params: Params = None) -> dict[str, Any]:
        return self.core.add_margin(symbol, amount)

    async def fetch_leverage_tiers(
        self, symbols: list[str] | None = None, params: Params = None
    ) -> dict[str, list[dict[str, Any]]]:
        chosen = self.core.symbols if symbols is None else symbols
        return {s: [dict(e) for e in self.core.market(s).tier_entries] for s in chosen}

    async def fetch_my_trades(
        self,
        symbol: str | None = None,
        since: int | None = None,
        limit: int | None = None,
        params: Params = None,
    ) -> list[dict[str, Any]]:
        """The account's fills as ccxt trades (``Fill.to_ccxt``), oldest first: of ``symbol``
        (all when None), from ``since`` (ms) on, at most ``limit`` (the oldest first)."""
        out = []
        for fill in self.core.fills_since(0):
            if symbol is not None and fill.symbol != symbol:
                continue
            if since is not None and fill.timestamp < since:
                continue
            out.append(fill.to_ccxt())
            if limit is not None and len(out) >= limit:
                break
        return out

    async def close(self) -> None:
        return None
