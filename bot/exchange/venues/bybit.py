"""Bybit v5 linear USDT perpetuals (ccxt ``bybit``, unified trading account), one-way mode.

How each choice rests on ccxt 4.5.90's ``bybit.py`` (line numbers of that file):

- **Stop / take-profit on the mark**: ``stopLossPrice`` / ``takeProfitPrice`` make
  ``create_order_request`` (l. 4106) send ``POST /v5/order/create`` with ``triggerPrice``, the
  ``triggerDirection`` of the side (l. 4305-4318) and ``reduceOnly=true``; it sets no trigger
  price type, so Bybit's default (LastPrice) would apply. ``triggerBy=MarkPrice`` (the v5
  conditional-order trigger type) passes through ``self.extend(request, query)``.
  ``closePosition`` is Binance's and is not sent; a position-wide stop is ``closeOnTrigger=true``
  (Bybit: a closing order that cancels other orders rather than fail on margin) for the
  position's size; ``qty`` 0 is not possible through ccxt (``amountValue`` is then None).
- **One-way mode**: ``positionIdx=0`` on every order (ccxt only sets 1/2 with ``hedged``,
  l. 4350-4359); Bybit refuses it in hedge mode (10001 "position idx not match position mode").
- **Listing the bot's conditional orders**: ``fetch_open_orders(trigger=True)`` sends
  ``orderFilter=StopOrder`` to ``GET /v5/order/realtime`` (l. 5438-5479). **Cancelling**:
  ``POST /v5/order/cancel`` by ``orderId`` serves conditional orders too; ``trigger`` is read
  for spot only and would otherwise be sent on as an unknown field (l. 4668), so none is given.
- **Look-up by client id**: ``fetch_order`` on a unified account refuses without
  ``acknowledged`` (l. 5032) and searches ``/v5/order/realtime`` by ``orderLinkId`` (open orders
  and the recent closed ones), ``orderFilter=StopOrder`` with ``trigger`` (l. 5041-5044).
- **Amounts**: base units (``contractSize`` 1 for linear, l. 2213).
- **Set-up**: ``set_margin_mode`` on a unified account sets the *account's* margin mode
  (``POST /v5/account/set-margin-mode``, ISOLATED_MARGIN / REGULAR_MARGIN, l. 6760); leverage
  with ``POST /v5/position/set-leverage`` (l. 6842), "not modified" is 110043;
  ``set_position_mode(False)`` → ``POST /v5/position/switch-mode`` ``mode=0`` (l. 6881), "not
  modified" is 110025.
- **Demo**: ``enable_demo_trading(True)`` (l. 1457) moves every URL to ``api-demo.bybit.com``
  (Bybit's demo trading; the testnet is ``set_sandbox_mode``).
- **Fills**: ``fetch_my_trades`` sends ``execType=Trade`` (l. 5594) to ``GET /v5/execution/list``,
  which leaves out the exchange's own closes (``BustTrade``: a liquidation, ``AdlTrade``: an
  auto-deleverage); the caller's params extend the request, so each is asked for on its own
  (``fill_queries``) and named by its ``execType`` (``fill_origin``).
- **Refusals** (ccxt's ``exceptions`` map): 110092 / 110093 "expect Rising/Falling, but
  trigger_price ..." (would trigger immediately), 110094 "Order notional value below the lower
  limit", 110017 "Reduce-only rule not satisfied", 10001 position idx mismatch, 110024 / 110028
  position mode cannot be switched, and 110025 / 110026 / 110043 "not modified".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from bot.exchange.venues.base import (
    ErrorKind,
    MarginModeName,
    OrderRequest,
    OrderSpec,
    SetupCall,
    Venue,
)


class BybitVenue(Venue):
    """Bybit USDT perpetuals through ccxt ``bybit`` (see the module docstring)."""

    id = "bybit"
    error_codes: Mapping[ErrorKind, frozenset[str]] = {
        "would_trigger_immediately": frozenset({"110092", "110093"}),
        "min_notional": frozenset({"110094"}),
        "reduce_only_rejected": frozenset({"110017"}),
        "position_mode": frozenset({"110024", "110028"}),
        "no_change": frozenset({"110025", "110026", "110043"}),
    }
    _code_re = re.compile(r'"retCode"\s*:\s*(\d+)')
    needs_market = True
    account_wide_margin = True
    #: ``GET /v5/execution/list``: ``limit`` is 1-100.
    trades_page = 100

    def request(
        self,
        spec: OrderSpec,
        market: Mapping[str, Any] | None = None,
        margin_mode: MarginModeName | None = None,
    ) -> OrderRequest:
        params: dict[str, Any] = {"positionIdx": 0}
        if spec.kind in ("stop", "take_profit"):
            key = "stopLossPrice" if spec.kind == "stop" else "takeProfitPrice"
            params[key] = spec.trigger
            params["triggerBy"] = "MarkPrice"
            params["reduceOnly"] = True
            if spec.close_position:
                params["closeOnTrigger"] = True
        elif spec.reduce_only or spec.close_position:
            params["reduceOnly"] = True
        amount = self.to_contracts(spec.amount, market)
        return OrderRequest(spec.symbol, spec.type, spec.side, amount, spec.price, params)

    def cancel_params(self, order: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    def trade_client_id(self, trade: Mapping[str, Any]) -> str | None:
        """``GET /v5/execution/list`` names the order's ``orderLinkId`` (ccxt keeps it in
        ``info``)."""
        link = (trade.get("info") or {}).get("orderLinkId")
        return link if isinstance(link, str) and link else super().trade_client_id(trade)

    def fetch_order_params(self) -> dict[str, Any]:
        return {"acknowledged": True}

    def lookup_params(self, client_id: str, trigger: bool) -> dict[str, Any]:
        params: dict[str, Any] = {"orderLinkId": client_id, "acknowledged": True}
        if trigger:
            params["trigger"] = True
        return params

    def setup_calls(
        self, symbol: str, margin_mode: MarginModeName, leverage: float
    ) -> list[SetupCall]:
        return [
            SetupCall("set_margin_mode", (margin_mode, symbol)),
            SetupCall("set_leverage", (leverage, symbol)),
        ]

    def account_setup_calls(self) -> list[SetupCall]:
        return [SetupCall("set_position_mode", (False,))]

    def demo(self, client: Any) -> None:
        client.enable_demo_trading(True)

    def fill_queries(self) -> tuple[dict[str, Any], ...]:
        return ({}, {"execType": "BustTrade"}, {"execType": "AdlTrade"})

    def fill_origin(
        self, client_id: str | None, trade: Mapping[str, Any]
    ) -> Literal["liquidation", "adl"] | None:
        kind = (trade.get("info") or {}).get("execType")
        if kind == "BustTrade":
            return "liquidation"
        if kind == "AdlTrade":
            return "adl"
        return super().fill_origin(client_id, trade)

    def client_options(self) -> dict[str, Any]:
        # linear perpetuals only: ccxt would also load spot, inverse and option markets
        return {"fetchMarkets": {"types": ["linear"]}, "defaultType": "swap"}
