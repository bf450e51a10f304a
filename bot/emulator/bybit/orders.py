"""Bybit v5 order endpoints: create, cancel, cancel-all, realtime (open) and history.

Conditional orders are ordinary ``/v5/order/create`` orders with ``triggerPrice`` and the
mandatory ``triggerDirection`` (1: triggers when the price rises to it, 2: when it falls);
``triggerBy`` (LastPrice by default, MarkPrice) picks the price. A trigger already passed is
refused (110092 "expect Rising, but trigger_price[..] <= current[..]", 110093 for Falling); a
reduce-only order with nothing to reduce is 110017; ``positionIdx`` must match the position
mode (10001); an ``orderLinkId`` can be used once (110072); an order below the market's
minimum order value is 110094; quantities and prices must sit on the lot and tick (10001).
An untriggered conditional order shows ``orderStatus=Untriggered`` and ``stopOrderType`` Stop
(it fills as a market order under the same ``orderId``). ``/v5/order/realtime`` lists open
orders of every kind unless ``orderFilter`` narrows it (``Order``, ``StopOrder``); given an
``orderId`` or ``orderLinkId`` it finds the order whatever its state (Bybit: the recent ones).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ccxt.base.errors import (
    BaseError,
    DuplicateOrderId,
    InsufficientFunds,
    InvalidOrder,
    OrderImmediatelyFillable,
    OrderNotFound,
)

from bot.emulator.binance.shapes import _on_grid
from bot.emulator.bybit.base import STATUS, BybitBase, num
from bot.emulator.server import ApiError, Fault
from paper.markets import PaperMarket

_TRIGGER_BY = {"LastPrice": "last", "MarkPrice": "mark"}


def _bool(value: str | None) -> bool:
    return value is not None and value.lower() == "true"


class BybitOrders(BybitBase):
    """Order endpoints of the Bybit emulator."""

    def ep_create(self, params: dict[str, str], fault: Fault | None) -> Any:
        self._linear(params)
        if params["category"] != "linear":
            raise ApiError(10001, "emulator: only linear perpetuals are emulated")
        market = self._market(params)
        assert market is not None
        side = params.get("side")
        if side not in ("Buy", "Sell"):
            raise ApiError(10001, f"params error: side {side} invalid")
        kind = params.get("orderType")
        if kind not in ("Market", "Limit"):
            raise ApiError(10001, f"params error: orderType {kind} invalid")
        idx = params.get("positionIdx", "0")
        if idx not in ("0", "1", "2") or (idx == "0") == self.hedge_mode:
            raise ApiError(10001, "position idx not match position mode")
        if self.hedge_mode:
            raise ApiError(10001, "emulator: hedge-mode trading is not emulated")
        for key in ("stopLoss", "takeProfit", "tpslMode"):
            if params.get(key):
                raise ApiError(10001, f"emulator: {key} attached to an order is not emulated")
        rules = market.rules
        qty = self._qty(params, market)
        price: float | None = None
        if kind == "Limit":
            text = params.get("price")
            if not text:
                raise ApiError(10001, "params error: price is empty")
            price = float(text)
            if price <= 0 or not _on_grid(price, rules.price_step):
                raise ApiError(10001, f"params error: price {text} invalid")
        link = params.get("orderLinkId") or ""
        if link and link in self._oid_by_link:
            raise ApiError(110072, "OrderLinkedID is duplicate")
        if len(link) > 36:
            raise ApiError(10001, "params error: orderLinkId too long")
        reduce_only = _bool(params.get("reduceOnly"))
        close_on_trigger = _bool(params.get("closeOnTrigger"))
        core: dict[str, Any] = {}
        if link:
            core["clientOrderId"] = link
        if reduce_only or close_on_trigger:
            core["reduceOnly"] = True
        tif = params.get("timeInForce")
        if tif == "PostOnly":
            core["postOnly"] = True
        elif tif not in (None, "GTC", "IOC", "FOK"):
            raise ApiError(10001, f"params error: timeInForce {tif} invalid")
        trigger_text = params.get("triggerPrice")
        self.core.set_time(max(self.now_ms(), self.core.now_ms))
        direction = 0
        basis = "LastPrice"
        if trigger_text:
            if kind != "Market":
                raise ApiError(10001, "emulator: conditional limit orders are not emulated")
            direction, basis = self._check_trigger(params, market, float(trigger_text))
            trigger = float(trigger_text)
            stop = (direction == 1) == (side == "Buy")
            core["stopLossPrice" if stop else "takeProfitPrice"] = trigger
            core["workingType"] = _TRIGGER_BY[basis]
        elif kind == "Market" and not reduce_only and rules.min_notional > 0:
            last = self.core.last_price(market.symbol) or 0.0
            if qty * last < rules.min_notional:
                raise ApiError(110094, "Order does not meet minimum order value")
        fill_qty = qty
        if (
            fault is not None
            and fault.kind == "partial_fill"
            and kind == "Market"
            and not direction
        ):
            steps = math.floor(qty * fault.fill_ratio / rules.amount_step + 1e-9)
            fill_qty = round(max(1, steps) * rules.amount_step, 12)
        try:
            order = self.core.create_order(
                market.symbol, kind.lower(), side.lower(), fill_qty, price, core
            )
        except BaseError as exc:
            raise _error(exc, direction) from None
        oid = str(order["id"])
        self._register(oid, link)
        if direction:
            self._trigger_by[oid] = basis
            self._direction[oid] = direction
        if close_on_trigger:
            self._close_on_trigger.add(oid)
        if fill_qty != qty:
            self._overlay[oid] = {"qty": num(qty), "orderStatus": "PartiallyFilledCanceled"}
        return self.ok({"orderId": oid, "orderLinkId": link})

    def _qty(self, params: Mapping[str, str], market: PaperMarket) -> float:
        text = params.get("qty")
        if not text:
            raise ApiError(10001, "params error: qty is empty")
        try:
            qty = float(text)
        except ValueError:
            raise ApiError(10001, f"params error: qty {text} invalid") from None
        rules = market.rules
        if qty <= 0 or not _on_grid(qty, rules.amount_step):
            raise ApiError(10001, f"Qty invalid: {text} (step {num(rules.amount_step)})")
        if qty < rules.min_amount - 1e-12:
            raise ApiError(10001, "The number of contracts exceeds minimum limit allowed")
        if market.max_amount is not None and qty > market.max_amount:
            raise ApiError(10001, "The number of contracts exceeds maximum limit allowed")
        return qty

    def _check_trigger(
        self, params: Mapping[str, str], market: PaperMarket, trigger: float
    ) -> tuple[int, str]:
        text = params.get("triggerDirection")
        if text not in ("1", "2"):
            raise ApiError(10001, "params error: TriggerDirection invalid")
        basis = params.get("triggerBy", "LastPrice")
        if basis == "IndexPrice":
            raise ApiError(10001, "emulator: IndexPrice triggers are not emulated")
        if basis not in _TRIGGER_BY:
            raise ApiError(10001, f"params error: triggerBy {basis} invalid")
        if trigger <= 0 or not _on_grid(trigger, market.rules.price_step):
            raise ApiError(10001, f"params error: triggerPrice {trigger} invalid")
        symbol = market.symbol
        now = self.core.mark_price(symbol) if basis == "MarkPrice" else self.core.last_price(symbol)
        direction = int(text)
        if now is not None:
            if direction == 1 and trigger <= now:
                raise ApiError(
                    110092,
                    f"expect Rising, but trigger_price[{num(trigger)}] <= current[{num(now)}]",
                )
            if direction == 2 and trigger >= now:
                raise ApiError(
                    110093,
                    f"expect Falling, but trigger_price[{num(trigger)}] >= current[{num(now)}]",
                )
        return direction, basis

    def _find(self, params: Mapping[str, str], market: PaperMarket | None) -> dict[str, Any]:
        oid = params.get("orderId") or ""
        link = params.get("orderLinkId") or ""
        if not oid and not link:
            raise ApiError(10001, "params error: orderId or orderLinkId is required")
        if not oid:
            oid = self._oid_by_link.get(link, "")
        try:
            order = self.core.fetch_order(oid) if oid else None
        except OrderNotFound:
            order = None
        if order is None or (market is not None and order["symbol"] != market.symbol):
            raise ApiError(110001, "Order does not exist.")
        return order

    def ep_cancel(self, params: dict[str, str], fault: Fault | None) -> Any:
        self._linear(params)
        market = self._market(params)
        order = self._find(params, market)
        if order["status"] != "open":
            raise ApiError(110001, "Order does not exist.")
        self.core.set_time(max(self.now_ms(), self.core.now_ms))
        self.core.cancel_order(order["id"], order["symbol"])
        oid = str(order["id"])
        return self.ok({"orderId": oid, "orderLinkId": self._link_by_oid.get(oid, "")})

    def ep_cancel_all(self, params: dict[str, str], fault: Fault | None) -> Any:
        self._linear(params)
        market = self._market(params, required=False)
        if market is None and not params.get("settleCoin") and not params.get("baseCoin"):
            raise ApiError(10001, "params error: symbol, baseCoin or settleCoin is required")
        wanted = self._filter(params)
        done = []
        for o in self.core.open_orders(market.symbol if market is not None else None):
            if wanted(o):
                self.core.cancel_order(o["id"], o["symbol"])
                oid = str(o["id"])
                done.append({"orderId": oid, "orderLinkId": self._link_by_oid.get(oid, "")})
        return self.ok({"list": done, "success": "1"})

    def _filter(self, params: Mapping[str, str]) -> Any:
        kind = params.get("orderFilter")
        if kind not in (None, "Order", "StopOrder"):
            raise ApiError(10001, f"params error: orderFilter {kind} invalid")

        def wanted(o: Mapping[str, Any]) -> bool:
            conditional = o.get("triggerPrice") is not None
            return kind is None or (kind == "StopOrder") == conditional

        return wanted

    def ep_realtime(self, params: dict[str, str], fault: Fault | None) -> Any:
        self._linear(params)
        market = self._market(params, required=False)
        wanted = self._filter(params)
        if params.get("orderId") or params.get("orderLinkId"):
            try:
                found = [self._find(params, market)]
            except ApiError:
                found = []
        else:
            if market is None and not params.get("settleCoin") and not params.get("baseCoin"):
                raise ApiError(10001, "params error: symbol, baseCoin or settleCoin is required")
            found = self.core.open_orders(market.symbol if market is not None else None)
        rows = [self._order_json(o) for o in found if wanted(o)]
        return self.ok({"category": "linear", "list": rows, "nextPageCursor": ""})

    def ep_history(self, params: dict[str, str], fault: Fault | None) -> Any:
        self._linear(params)
        market = self._market(params, required=False)
        wanted = self._filter(params)
        rows = []
        for oid in reversed(list(self._link_by_oid)):
            try:
                o = self.core.fetch_order(oid)
            except OrderNotFound:
                continue
            if o["status"] == "open" or not wanted(o):
                continue
            if market is not None and o["symbol"] != market.symbol:
                continue
            link = params.get("orderLinkId")
            if (params.get("orderId") and params["orderId"] != oid) or (
                link and self._link_by_oid.get(oid) != link
            ):
                continue
            rows.append(self._order_json(o))
        return self.ok({"category": "linear", "list": rows, "nextPageCursor": ""})

    def _order_json(self, o: Mapping[str, Any]) -> dict[str, Any]:
        oid = str(o["id"])
        m = self.core.market(o["symbol"])
        trigger = o.get("triggerPrice")
        conditional = trigger is not None
        status = STATUS.get(str(o["status"]), "Deactivated")
        if conditional and status == "New":
            status = "Untriggered"
        basis = self._trigger_by.get(oid, "LastPrice") if conditional else ""
        direction = self._direction.get(oid, 0)
        # an order/create conditional order is "Stop" whatever its direction
        stop_type = "Stop" if conditional else ""
        filled = float(o["filled"] or 0.0)
        avg = o.get("average")
        out = {
            "orderId": oid,
            "orderLinkId": self._link_by_oid.get(oid, ""),
            "blockTradeId": "",
            "symbol": m.id,
            "price": num(o["price"] if o["type"] == "limit" else 0),
            "qty": num(o["amount"]),
            "side": "Buy" if o["side"] == "buy" else "Sell",
            "isLeverage": "",
            "positionIdx": 0,
            "orderStatus": status,
            "cancelType": "UNKNOWN",
            "rejectReason": "EC_NoError",
            "avgPrice": num(avg) if avg else "",
            "leavesQty": num(float(o["remaining"] or 0.0)),
            "leavesValue": "0",
            "cumExecQty": num(filled),
            "cumExecValue": num(filled * float(avg or 0.0)),
            "cumExecFee": num(float((o.get("fee") or {}).get("cost") or 0.0)),
            "timeInForce": "GTC" if o["type"] == "limit" else "IOC",
            "orderType": "Limit" if o["type"] == "limit" else "Market",
            "stopOrderType": stop_type,
            "orderIv": "",
            "triggerPrice": num(trigger) if conditional else "",
            "takeProfit": "",
            "stopLoss": "",
            "tpTriggerBy": "",
            "slTriggerBy": "",
            "triggerDirection": direction,
            "triggerBy": basis,
            "lastPriceOnCreated": "",
            "reduceOnly": bool(o["reduceOnly"]),
            "closeOnTrigger": oid in self._close_on_trigger,
            "smpType": "None",
            "smpGroup": 0,
            "smpOrderId": "",
            "tpslMode": "",
            "tpLimitPrice": "",
            "slLimitPrice": "",
            "placeType": "",
            "createdTime": str(o["timestamp"]),
            "updatedTime": str(o["lastUpdateTimestamp"] or o["timestamp"]),
        }
        out.update(self._overlay.get(oid, {}))
        return out

    # ------------------------------------------------------------------ the control API

    def client_ids(self) -> dict[str, list[str]]:
        return {link: [oid] for link, oid in self._oid_by_link.items() if link}

    def orders(self) -> list[dict[str, Any]]:
        out = []
        for oid in self._link_by_oid:
            try:
                o = self.core.fetch_order(oid)
            except OrderNotFound:
                continue
            out.append({**o, "clientOrderId": self._link_by_oid.get(oid) or None})
        return out


def _error(exc: BaseError, direction: int) -> ApiError:
    """The Bybit error a paper-core refusal corresponds to."""
    text = str(exc).removeprefix("paper ")
    if isinstance(exc, DuplicateOrderId):
        return ApiError(110072, "OrderLinkedID is duplicate")
    if isinstance(exc, InsufficientFunds):
        return ApiError(110007, "ab not enough for new order")
    if isinstance(exc, OrderImmediatelyFillable):
        if direction == 1:
            return ApiError(110092, "expect Rising, but trigger_price <= current")
        return ApiError(110093, "expect Falling, but trigger_price >= current")
    if isinstance(exc, InvalidOrder):
        if "ReduceOnly" in text:
            return ApiError(110017, "Reduce-only rule not satisfied")
        if "notional" in text:
            return ApiError(110094, "Order does not meet minimum order value")
        if "maximum allowable position" in text:
            return ApiError(110016, "Requested quantity of contracts exceeds risk limit")
        if "liquidat" in text or "margin" in text.lower():
            return ApiError(110040, "Order will trigger forced liquidation, please resubmit")
        return ApiError(10001, text)
    return ApiError(10001, text)
