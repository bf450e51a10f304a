"""OKX v5 USDT-margined perpetual swaps (ccxt ``okx``), net (one-way) position mode.

How each choice rests on ccxt 4.5.90's ``okx.py`` (line numbers of that file):

- **Amounts are contracts**: ``create_order_request`` sends ``sz =
  amount_to_precision(amount)`` (l. 3140) and ccxt's order structures keep ``sz`` as
  ``amount``; a BTC-USDT-SWAP contract is 0.01 BTC, ETH-USDT-SWAP 0.1 ETH (``contractSize`` =
  ``ctVal``). ``request`` converts the spec's base units with the market's ``contractSize``
  (rounded down to the lot), so planning stays in base units; ``order_in_base`` converts an
  order back. Positions carry ``contractSize`` and ``bot.exchange.shapes`` converts them.
- **Margin mode is per order**: ``tdMode`` (``marginMode`` param, l. 3163; ccxt's default is
  ``cross``), so ``request`` needs the symbol's margin mode; ``posSide=net`` (``positionSide``,
  l. 3194) keeps net mode explicit.
- **Stop / take-profit on the mark**: ``stopLossPrice`` / ``takeProfitPrice`` make an
  ``ordType=conditional`` algo order (l. 3332, ``POST /api/v5/trade/order-algo``) whose
  ``slTriggerPxType`` / ``tpTriggerPxType`` default to ``last`` (l. 3147, 3150): sent as
  ``mark``. A position-wide one is ``closeFraction=1`` with ``reduceOnly`` (ccxt then omits
  ``sz``, l. 3138; OKX refuses ``closeFraction`` without ``reduceOnly``: 51328).
- **Client ids**: an algo order's is ``algoClOrdId`` (ccxt only writes ``clOrdId``, which the
  algo endpoint does not know, l. 3379-3385), ordinary orders' ``clOrdId``; look-ups go through
  ``fetch_order(..., {clientOrderId, trigger})``, which asks ``/trade/order-algo`` by
  ``algoClOrdId`` (l. 4308).
- **Listing the bot's conditional orders**: ``fetch_open_orders(trigger=True)`` alone asks
  ``/trade/orders-algo-pending`` for ``ordType=trigger`` only (l. 4470-4475), which never lists
  a stop; ``ordType=conditional,oco`` (OKX allows the two together) lists stops, take-profits
  and hand-made TP/SL pairs. **Cancelling**: ``trigger=True`` routes to
  ``POST /api/v5/trade/cancel-algos`` by ``algoId`` (l. 3788).
- **Set-up**: ``set_margin_mode`` needs a leverage and only sets it (l. 6990); the one call is
  ``set_leverage(lev, symbol, {marginMode})`` → ``POST /api/v5/account/set-leverage`` with
  ``mgnMode`` (l. 6871). Net mode: ``set_position_mode(False)`` → ``posMode=net_mode``
  (l. 6957); OKX refuses a switch with positions or orders open (59000).
- **Mark price**: ``fetch_mark_price`` sends ``instId`` only (l. 2403); OKX requires
  ``instType`` too (50014 without it): ``mark_params``.
- **Demo**: ``set_sandbox_mode(True)`` adds the ``x-simulated-trading: 1`` header (l. 7946).
- **Refusals** (ccxt's ``exceptions`` map; OKX's order errors come in ``data[].sCode``):
  51277-51280 "TP/SL trigger price can not be higher/lower than the last price" (would trigger
  immediately), 51020 / 51120 / 51121 size below the minimum or off the lot, 51205
  "Reduce-Only is not available", 59000 settings refused with positions or orders open.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bot.exchange.venues.base import (
    ErrorKind,
    MarginModeName,
    OrderRequest,
    OrderSpec,
    SetupCall,
    Venue,
)

#: Algo order types that protect a position, listed together in one request.
PROTECTIVE_ALGOS = "conditional,oco"


class OkxVenue(Venue):
    """OKX USDT-margined swaps through ccxt ``okx`` (see the module docstring)."""

    id = "okx"
    error_codes: Mapping[ErrorKind, frozenset[str]] = {
        "would_trigger_immediately": frozenset({"51277", "51278", "51279", "51280"}),
        "min_notional": frozenset({"51020", "51120", "51121"}),
        "reduce_only_rejected": frozenset({"51205"}),
        "position_mode": frozenset({"59000"}),
        "no_change": frozenset(),
    }
    _code_re = re.compile(r'"sCode"\s*:\s*"([1-9]\d*)"|"code"\s*:\s*"([1-9]\d*)"')
    needs_market = True
    #: ``GET /api/v5/trade/fills-history``: ``limit`` at most 100, the newest first; ccxt sends
    #: ``limit`` only without ``since`` (l. 4971) and maps ``until`` to ``end`` (l. 4968).
    trades_page = 100
    trades_newest_first = True

    def request(
        self,
        spec: OrderSpec,
        market: Mapping[str, Any] | None = None,
        margin_mode: MarginModeName | None = None,
    ) -> OrderRequest:
        if market is None:
            raise ValueError("an OKX order needs its market (amounts are contracts)")
        if margin_mode not in ("isolated", "cross"):
            raise ValueError(f"an OKX order needs the symbol's margin mode, not {margin_mode!r}")
        params: dict[str, Any] = {"marginMode": margin_mode, "positionSide": "net"}
        if spec.kind in ("stop", "take_profit"):
            if spec.kind == "stop":
                params["stopLossPrice"] = spec.trigger
                params["slTriggerPxType"] = "mark"
            else:
                params["takeProfitPrice"] = spec.trigger
                params["tpTriggerPxType"] = "mark"
            params["reduceOnly"] = True
            if spec.close_position:
                params["closeFraction"] = "1"
        elif spec.reduce_only or spec.close_position:
            params["reduceOnly"] = True
        amount = self.to_contracts(spec.amount, market)
        return OrderRequest(spec.symbol, spec.type, spec.side, amount, spec.price, params)

    def client_id_params(self, spec: OrderSpec, client_id: str) -> dict[str, Any]:
        if spec.kind in ("stop", "take_profit"):
            return {"algoClOrdId": client_id}
        return {"clientOrderId": client_id}

    def trigger_params(self) -> dict[str, Any]:
        return {"trigger": True, "ordType": PROTECTIVE_ALGOS}

    def mark_params(self) -> dict[str, Any]:
        """``GET /api/v5/public/mark-price`` requires ``instType``; ccxt's ``fetch_mark_price``
        sends ``instId`` only (l. 2403), which OKX refuses (50014)."""
        return {"instType": "SWAP"}

    def trade_client_id(self, trade: Mapping[str, Any]) -> str | None:
        """``GET /api/v5/trade/fills-history`` names the order's ``clOrdId`` (in ``info``)."""
        cl = (trade.get("info") or {}).get("clOrdId")
        return cl if isinstance(cl, str) and cl else super().trade_client_id(trade)

    def order_in_base(
        self, order: Mapping[str, Any], market: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """Amounts in base units, and an algo order's client id (ccxt reads ``clOrdId`` only;
        an algo order's is ``info.algoClOrdId``)."""
        out = super().order_in_base(order, market)
        info = out.get("info")
        if not out.get("clientOrderId") and isinstance(info, Mapping):
            algo = info.get("algoClOrdId")
            if isinstance(algo, str) and algo:
                out["clientOrderId"] = algo
        return out

    def cancel_params(self, order: Mapping[str, Any]) -> dict[str, Any]:
        info = order.get("info")
        algo = isinstance(info, Mapping) and bool(info.get("algoId"))
        return {"trigger": True} if algo or _has_trigger(order) else {}

    def lookup_params(self, client_id: str, trigger: bool) -> dict[str, Any]:
        params: dict[str, Any] = {"clientOrderId": client_id}
        if trigger:
            params["trigger"] = True
        return params

    def setup_calls(
        self, symbol: str, margin_mode: MarginModeName, leverage: float
    ) -> list[SetupCall]:
        return [SetupCall("set_leverage", (leverage, symbol), {"marginMode": margin_mode})]

    def account_setup_calls(self) -> list[SetupCall]:
        return [SetupCall("set_position_mode", (False,))]

    def demo(self, client: Any) -> None:
        client.set_sandbox_mode(True)

    def client_options(self) -> dict[str, Any]:
        # perpetual swaps only: ccxt would also load spot, futures and option markets
        return {"fetchMarkets": {"types": ["swap"]}, "defaultType": "swap"}

    def error_code(self, exc: BaseException) -> str | None:
        for found in self._code_re.finditer(str(exc)):
            code = found.group(1) or found.group(2)
            if code != "1":  # "1": "Operation failed", the detail is in sCode
                return code
        return None


def _has_trigger(order: Mapping[str, Any]) -> bool:
    return any(order.get(k) for k in ("triggerPrice", "stopLossPrice", "takeProfitPrice"))
