"""Binance USDⓈ-M (``binanceusdm``) and guardbot's paper exchange, which speaks Binance's params.

- ``BinanceVenue``: a stop is ``stopLossPrice`` and a take-profit ``takeProfitPrice`` (ccxt sends
  both to ``POST /fapi/v1/algoOrder`` as ``algoType=CONDITIONAL`` ``STOP_MARKET`` /
  ``TAKE_PROFIT_MARKET``) with ``workingType=MARK_PRICE``, and either ``closePosition=true``
  (the whole position) or ``reduceOnly=true`` with a quantity; exits are ``reduceOnly`` market
  orders. Trigger orders are fetched and cancelled with ``trigger=True``. All of it is the
  ``Venue`` base class.
- ``PaperVenue``: the paper exchange speaks Binance's parameters and also takes the round-trip
  labels ``reason`` and ``tag``, which its ledger books each close under.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from bot.exchange.venues.base import MarginModeName, OrderRequest, OrderSpec, Venue


class BinanceVenue(Venue):
    """Binance USDⓈ-M futures through ccxt ``binanceusdm`` (see the module docstring)."""

    id = "binanceusdm"


class PaperVenue(BinanceVenue):
    """guardbot's paper exchange: Binance's parameters plus its round-trip labels."""

    id = "paper"

    def request(
        self,
        spec: OrderSpec,
        market: Mapping[str, Any] | None = None,
        margin_mode: MarginModeName | None = None,
    ) -> OrderRequest:
        req = super().request(spec)
        if spec.reason is not None:
            req.params["reason"] = spec.reason
        if spec.tag:
            req.params["tag"] = spec.tag
        return req

    def fill_origin(
        self, client_id: str | None, trade: Mapping[str, Any]
    ) -> Literal["liquidation", "adl"] | None:
        """The paper core books its own closes with the reason ``liquidation`` / ``adl``."""
        reason = (trade.get("info") or {}).get("reason")
        if reason in ("liquidation", "adl"):
            return "liquidation" if reason == "liquidation" else "adl"
        return super().fill_origin(client_id, trade)

    def demo(self, client: Any) -> None:
        """The paper exchange has no test environment (it is one)."""
