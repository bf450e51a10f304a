"""The one exchange interface the engine talks to, shaped like ccxt's unified async API.

Both the paper exchange (``paper.exchange.PaperExchange``) and the live ccxt adapter implement
it structurally, and return ccxt's unified structures (plain dicts: orders, positions, balance,
tickers, leverage tiers), so the engine cannot tell them apart.

Conventions shared by every implementation:
- ``create_order(symbol, type, side, amount, price, params)`` with ``type`` ``"market"`` or
  ``"limit"`` and ``side`` ``"buy"``/``"sell"``; ``params`` understands ``clientOrderId``,
  ``reduceOnly``, ``closePosition``, ``stopLossPrice`` / ``takeProfitPrice`` (a trigger order that
  fills at market when the trigger price is crossed) and ``workingType`` (``"MARK_PRICE"`` or
  ``"CONTRACT_PRICE"``).
- Refusals raise ccxt's exception classes (``ccxt.InvalidOrder``, ``ccxt.InsufficientFunds``,
  ``ccxt.OrderNotFound``, ``ccxt.BadSymbol``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from guards import Mark

Params = dict[str, Any] | None


@runtime_checkable
class Exchange(Protocol):
    """Async, ccxt-shaped exchange: paper or live."""

    id: str

    async def load_markets(self, reload: bool = False) -> dict[str, dict[str, Any]]: ...

    async def fetch_ticker(self, symbol: str, params: Params = None) -> dict[str, Any]: ...

    async def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: float,
        price: float | None = None,
        params: Params = None,
    ) -> dict[str, Any]: ...

    async def cancel_order(
        self, id: str, symbol: str | None = None, params: Params = None
    ) -> dict[str, Any]: ...

    async def fetch_order(
        self, id: str, symbol: str | None = None, params: Params = None
    ) -> dict[str, Any]: ...

    async def fetch_open_orders(
        self,
        symbol: str | None = None,
        since: int | None = None,
        limit: int | None = None,
        params: Params = None,
    ) -> list[dict[str, Any]]: ...

    async def fetch_positions(
        self, symbols: list[str] | None = None, params: Params = None
    ) -> list[dict[str, Any]]: ...

    async def fetch_balance(self, params: Params = None) -> dict[str, Any]: ...

    async def set_leverage(
        self, leverage: float, symbol: str | None = None, params: Params = None
    ) -> dict[str, Any]: ...

    async def set_margin_mode(
        self, marginMode: str, symbol: str | None = None, params: Params = None
    ) -> dict[str, Any]: ...

    async def fetch_leverage_tiers(
        self, symbols: list[str] | None = None, params: Params = None
    ) -> dict[str, list[dict[str, Any]]]: ...

    async def close(self) -> None: ...


async def fetch_marks(exchange: Exchange, symbols: Sequence[str], now: float) -> dict[str, Mark]:
    """Current marks of ``symbols`` (stamped ``now``), skipping those that cannot be read."""
    marks: dict[str, Mark] = {}
    fetch = getattr(exchange, "fetch_mark", None)
    for symbol in symbols:
        try:
            if fetch is not None:
                value = await fetch(symbol)
            else:
                ticker = await exchange.fetch_ticker(symbol)
                value = ticker.get("markPrice") or ticker.get("last")
        except Exception:
            continue
        if value:
            marks[symbol] = Mark(float(value), now)
    return marks
