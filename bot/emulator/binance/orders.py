"""Binance order endpoints: placement (``/fapi/v1/order`` and the conditional ``algoOrder``
book), look-ups, cancels and open orders, with the checks Binance makes and its error codes.

Stops and take-profits are accepted only as algo orders (``algoType=CONDITIONAL``,
``STOP_MARKET`` / ``TAKE_PROFIT_MARKET``; -4120 on the ordinary endpoint), one
``closePosition`` order per kind and direction (-4130); client ids are unique among open orders
(-4116), so a blind re-send after a timeout really would double a position.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from typing import Any

from ccxt.base.errors import BadRequest, BaseError, OrderNotFound

from bot.emulator.binance.base import BinanceBase
from bot.emulator.binance.shapes import (
    _ALGO_TYPES,
    _EPS,
    _PENDING_BASE,
    CLIENT_ID_RE,
    _api_error,
    _bool,
    _missing,
    _on_grid,
    _Pending,
    _s,
)
from bot.emulator.server import ApiError, Fault
from paper.markets import PaperMarket


class BinanceOrders(BinanceBase):
    """Orders endpoints of the Binance emulator."""

    def _open_cid(self, cid: str) -> bool:
        for ext in self._oids_by_cid.get(cid, ()):
            if ext in self._pending:
                return True
            try:
                if self.core.fetch_order(self._core_id(ext))["status"] == "open":
                    return True
            except OrderNotFound:
                continue
        return False

    def _register(self, ext_id: str, cid: str) -> None:
        self._cid_by_oid[ext_id] = cid
        self._oids_by_cid.setdefault(cid, []).append(ext_id)

    def _new_client_id(self) -> str:
        return "emu" + uuid.uuid4().hex[:20]

    def _lookup(self, params: Mapping[str, str], algo: bool) -> str:
        """The external order id a query names (orderId/algoId or a client id)."""
        id_key = "algoId" if algo else "orderId"
        cid_key = "clientAlgoId" if algo else "origClientOrderId"
        ext = params.get(id_key)
        if ext is None:
            cid = params.get(cid_key)
            if cid is None:
                raise ApiError(-1102, f"Either '{id_key}' or '{cid_key}' must be sent.")
            ids = self._oids_by_cid.get(cid, [])
            if not algo:
                # the order a triggered stop placed carries the stop's client id
                ids = [i for i in ids if not self._is_algo(i)] + self._engine_ids(cid)
                ids.sort(key=self._placed_at)
            if not ids:
                raise ApiError(-2013, "Order does not exist.")
            ext = ids[-1]
        if ext in self._engine:
            if algo:
                raise ApiError(-2013, "Order does not exist.")
            return ext
        if ext not in self._pending and ext not in self._cid_by_oid:
            # orders placed from outside carry no registered client id but exist in the core
            try:
                self.core.fetch_order(self._core_id(ext))
            except OrderNotFound:
                raise ApiError(-2013, "Order does not exist.") from None
        return ext

    def _is_algo(self, ext: str) -> bool:
        """Whether the external id ``ext`` names a conditional (algo) order."""
        if ext in self._pending or ext in self._engine:
            return False
        try:
            return self.core.fetch_order(self._core_id(ext))["triggerPrice"] is not None
        except OrderNotFound:
            return False

    def _engine_ids(self, cid: str) -> list[str]:
        return [e.ext_id for e in self._engine.values() if e.client_id == cid]

    def _placed_at(self, ext: str) -> tuple[int, int]:
        """When the order ``ext`` was placed (then its id), to pick the latest of a client id."""
        engine = self._engine.get(ext)
        if engine is not None:
            return engine.time_ms, int(ext)
        pending = self._pending.get(ext)
        if pending is not None:
            return pending.time_ms, int(ext)
        try:
            return int(self.core.fetch_order(self._core_id(ext))["timestamp"]), int(ext)
        except (OrderNotFound, ValueError):
            return 0, int(ext)

    def _place(self, params: dict[str, str], fault: Fault | None, algo: bool) -> dict[str, Any]:
        market = self._market(params)
        assert market is not None
        symbol = market.symbol
        side = params.get("side", "").upper()
        if side not in ("BUY", "SELL"):
            raise ApiError(-1117, "Invalid side.")
        if params.get("positionSide", "BOTH") != "BOTH" or self.hedge_mode:
            raise ApiError(-4061, "Order's position side does not match user's setting.")
        typ = params.get("type", "").upper()
        close_position = _bool(params.get("closePosition"))
        reduce_only = _bool(params.get("reduceOnly"))
        if close_position and "reduceOnly" in params:
            raise ApiError(-1106, "Parameter 'reduceOnly' sent when not required.")
        if close_position and "quantity" in params:
            raise ApiError(-1106, "Parameter 'quantity' sent when not required.")
        cid_key = "clientAlgoId" if algo else "newClientOrderId"
        cid = params.get(cid_key) or self._new_client_id()
        if not CLIENT_ID_RE.match(cid):
            raise ApiError(-4015, "Client order id is not valid.")
        if self._open_cid(cid):
            raise ApiError(-4116, "ClientOrderId is duplicated.")
        rules = market.rules
        core_params: dict[str, Any] = {}
        price: float | None = None
        if algo:
            if params.get("algoType") != "CONDITIONAL":
                raise ApiError(-1102, _missing("algoType"))
            trigger_text = params.get("triggerPrice")
            if trigger_text is None:
                raise ApiError(-1102, _missing("triggerPrice"))
            trigger = float(trigger_text)
            if not _on_grid(trigger, rules.price_step):
                raise ApiError(-4014, "Price not increased by tick size.")
            if typ == "STOP_MARKET":
                core_params["stopLossPrice"] = trigger
            elif typ == "TAKE_PROFIT_MARKET":
                core_params["takeProfitPrice"] = trigger
            else:
                raise ApiError(-1116, "Invalid orderType.")
            if close_position and self._close_position_standing(symbol, typ, side):
                raise ApiError(
                    -4130,
                    "An open stop or take profit order with GTE and closePosition "
                    "in the direction is existing.",
                )
            kind = "market"
        else:
            if typ in _ALGO_TYPES:
                raise ApiError(
                    -4120,
                    "Order type not supported for this endpoint. "
                    "Please use the Algo Order API endpoints instead.",
                )
            if typ not in ("MARKET", "LIMIT"):
                raise ApiError(-1116, "Invalid orderType.")
            if close_position:
                raise ApiError(-1106, "Parameter 'closePosition' sent when not required.")
            kind = typ.lower()
            if kind == "limit":
                price_text = params.get("price")
                if price_text is None:
                    raise ApiError(-1102, _missing("price"))
                price = float(price_text)
                if not _on_grid(price, rules.price_step):
                    raise ApiError(-4014, "Price not increased by tick size.")
                tif = params.get("timeInForce")
                if tif is None:
                    raise ApiError(-1102, _missing("timeInForce"))
                if tif == "GTX":
                    core_params["postOnly"] = True
        qty = 0.0
        if not close_position:
            qty_text = params.get("quantity")
            if qty_text is None:
                raise ApiError(-1102, _missing("quantity"))
            qty = float(qty_text)
            if qty <= 0:
                raise ApiError(-4003, "Quantity less than or equal to zero.")
            if not _on_grid(qty, rules.amount_step):
                raise ApiError(-1111, "Precision is over the maximum defined for this asset.")
        working = params.get("workingType")
        if working is not None:
            if working not in ("MARK_PRICE", "CONTRACT_PRICE"):
                raise ApiError(-1116, "Invalid workingType.")
            core_params["workingType"] = working
        if reduce_only:
            core_params["reduceOnly"] = True
        if close_position:
            core_params["closePosition"] = True
        now = max(self.now_ms(), self.core.now_ms)
        self.core.set_time(now)
        if fault is not None and fault.kind == "open_then_filled" and kind == "market":
            return self._pend(market, cid, side, qty, core_params, fault.polls, now)
        fill_qty = qty
        if fault is not None and fault.kind == "partial_fill" and kind == "market":
            steps = math.floor(qty * fault.fill_ratio / rules.amount_step + _EPS)
            fill_qty = max(1, steps) * rules.amount_step
            fill_qty = float(_s(round(fill_qty, 12)))
        try:
            order = self.core.create_order(symbol, kind, side.lower(), fill_qty, price, core_params)
        except BaseError as exc:
            raise _api_error(exc) from None
        ext = order["id"]
        self._register(ext, cid)
        if fill_qty != qty:
            self._overlay[ext] = {"origQty": _s(qty), "status": "EXPIRED"}
        return self._algo_json(order) if algo else self._order_json(order)

    def _close_position_standing(self, symbol: str, typ: str, side: str) -> bool:
        """Binance keeps one closePosition order per kind and direction."""
        kind = typ.lower()
        return any(
            o["type"] == kind and o["side"] == side.lower() and o["info"].get("closePosition")
            for o in self.core.open_orders(symbol)
        )

    def _pend(
        self,
        market: PaperMarket,
        cid: str,
        side: str,
        qty: float,
        core_params: dict[str, Any],
        polls: int,
        now: int,
    ) -> dict[str, Any]:
        if math.isnan(self.core.last_price(market.symbol) or math.nan):
            raise ApiError(-2010, "No price yet.")
        self._pending_seq += 1
        ext = str(_PENDING_BASE + self._pending_seq)
        pending = _Pending(ext, cid, market.symbol, side, qty, core_params, max(1, polls), now)
        self._pending[ext] = pending
        self._register(ext, cid)
        return self._pending_json(pending)

    def _advance_pending(self, ext: str) -> None:
        pending = self._pending.get(ext)
        if pending is None:
            return
        pending.polls -= 1
        if pending.polls > 0:
            return
        del self._pending[ext]
        self.core.set_time(max(self.now_ms(), self.core.now_ms))
        try:
            order = self.core.create_order(
                pending.symbol, "market", pending.side.lower(), pending.qty, None, pending.params
            )
        except BaseError:
            self._overlay[ext] = {"status": "EXPIRED"}
            self._ext_to_core[ext] = ""
            return
        self._ext_to_core[ext] = order["id"]
        self._core_to_ext[order["id"]] = ext

    def _status(self, order: Mapping[str, Any]) -> str:
        status = order["status"]
        if status == "open":
            return "PARTIALLY_FILLED" if order["filled"] > 0 else "NEW"
        if status == "canceled":
            # the exchange's own cancels (position closed, liquidation) show as EXPIRED
            return "CANCELED" if order["id"] in self._user_canceled else "EXPIRED"
        return {"closed": "FILLED", "rejected": "REJECTED"}.get(status, "EXPIRED")

    def _algo_status(self, order: Mapping[str, Any]) -> str:
        """Binance's ``algoStatus``: FINISHED once the order it placed is done, CANCELED by
        the user, EXPIRED by the exchange (position gone), REJECTED when triggering failed."""
        status = order["status"]
        if status == "canceled":
            return "CANCELED" if order["id"] in self._user_canceled else "EXPIRED"
        return {"open": "NEW", "closed": "FINISHED", "rejected": "REJECTED"}.get(status, "EXPIRED")

    def _order_json(self, order: Mapping[str, Any]) -> dict[str, Any]:
        ext = self._ext(order["id"])
        market = self.core.market(order["symbol"])
        info = order["info"]
        typ = str(order["type"]).upper()
        avg = order["average"]
        out: dict[str, Any] = {
            "orderId": int(ext),
            "symbol": market.id,
            "status": self._status(order),
            "clientOrderId": self._cid_by_oid.get(ext, ""),
            "price": _s(order["price"] if order["type"] == "limit" else 0),
            "avgPrice": _s(avg or 0),
            "origQty": _s(order["amount"]),
            "executedQty": _s(order["filled"]),
            "cumQty": _s(order["filled"]),
            "cumQuote": _s(order["cost"]),
            "timeInForce": "GTC",
            "type": typ,
            "reduceOnly": bool(order["reduceOnly"]),
            "closePosition": bool(info.get("closePosition")),
            "side": str(order["side"]).upper(),
            "positionSide": "BOTH",
            "stopPrice": _s(order["triggerPrice"] or 0),
            "workingType": info.get("workingType", "CONTRACT_PRICE"),
            "priceProtect": False,
            "origType": typ,
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0,
            "time": order["timestamp"],
            "updateTime": order["lastUpdateTimestamp"] or order["timestamp"],
        }
        out.update(self._overlay.get(ext, {}))
        return out

    def _algo_json(self, order: Mapping[str, Any]) -> dict[str, Any]:
        ext = self._ext(order["id"])
        market = self.core.market(order["symbol"])
        info = order["info"]
        child = self._engine.get(self._engine_by_core.get(order["id"], ""))
        out: dict[str, Any] = {
            "algoId": int(ext),
            "clientAlgoId": self._cid_by_oid.get(ext, ""),
            "algoType": "CONDITIONAL",
            "orderType": str(order["type"]).upper(),
            "symbol": market.id,
            "side": str(order["side"]).upper(),
            "positionSide": "BOTH",
            "timeInForce": "GTC",
            "quantity": _s(order["amount"]),
            "algoStatus": self._algo_status(order),
            "actualOrderId": "" if child is None else child.ext_id,
            "actualPrice": _s(0 if child is None else child.avg),
            "triggerPrice": _s(order["triggerPrice"]),
            "price": "0",
            "icebergQuantity": None,
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "workingType": info.get("workingType", "CONTRACT_PRICE"),
            "priceMatch": "NONE",
            "closePosition": bool(info.get("closePosition")),
            "priceProtect": False,
            "reduceOnly": bool(order["reduceOnly"]),
            "createTime": order["timestamp"],
            "updateTime": order["lastUpdateTimestamp"] or order["timestamp"],
            "triggerTime": 0 if child is None else child.time_ms,
            "goodTillDate": 0,
        }
        if child is not None:  # Binance adds these once the order has been triggered
            out["actualQty"] = _s(child.qty)
            out["actualType"] = child.type
        return out

    def _pending_json(self, p: _Pending) -> dict[str, Any]:
        return {
            "orderId": int(p.ext_id),
            "symbol": self.core.market(p.symbol).id,
            "status": "NEW",
            "clientOrderId": p.client_id,
            "price": "0",
            "avgPrice": "0",
            "origQty": _s(p.qty),
            "executedQty": "0",
            "cumQty": "0",
            "cumQuote": "0",
            "timeInForce": "GTC",
            "type": "MARKET",
            "reduceOnly": bool(p.params.get("reduceOnly")),
            "closePosition": False,
            "side": p.side,
            "positionSide": "BOTH",
            "stopPrice": "0",
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "origType": "MARKET",
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0,
            "time": p.time_ms,
            "updateTime": p.time_ms,
        }

    def _ext_order_json(self, ext: str, algo: bool) -> dict[str, Any]:
        engine = self._engine.get(ext)
        if engine is not None:
            if algo:
                raise ApiError(-2013, "Order does not exist.")
            return self._engine_json(engine)
        pending = self._pending.get(ext)
        if pending is not None:
            if algo:
                raise ApiError(-2013, "Order does not exist.")
            return self._pending_json(pending)
        core_id = self._core_id(ext)
        if core_id == "":
            overlay = self._overlay.get(ext, {})
            raise ApiError(-2013, f"Order does not exist ({overlay.get('status', '')}).")
        try:
            order = self.core.fetch_order(core_id)
        except OrderNotFound:
            raise ApiError(-2013, "Order does not exist.") from None
        is_trigger = order["triggerPrice"] is not None
        if is_trigger != algo:
            raise ApiError(-2013, "Order does not exist.")
        return self._algo_json(order) if algo else self._order_json(order)

    def ep_new_order(self, params: dict[str, str], fault: Fault | None) -> Any:
        return self._place(params, fault, algo=False)

    def ep_new_algo_order(self, params: dict[str, str], fault: Fault | None) -> Any:
        return self._place(params, fault, algo=True)

    def ep_get_order(self, params: dict[str, str], fault: Fault | None) -> Any:
        self._market(params)
        ext = self._lookup(params, algo=False)
        self._advance_pending(ext)
        return self._ext_order_json(ext, algo=False)

    def ep_get_algo_order(self, params: dict[str, str], fault: Fault | None) -> Any:
        ext = self._lookup(params, algo=True)
        return self._ext_order_json(ext, algo=True)

    def _cancel(self, params: dict[str, str], algo: bool) -> dict[str, Any]:
        m = self._market(params)
        assert m is not None
        try:
            ext = self._lookup(params, algo)
        except ApiError:
            raise ApiError(-2011, "Unknown order sent.") from None
        pending = self._pending.pop(ext, None)
        if pending is not None:
            self._overlay[ext] = {"status": "CANCELED"}
            self._ext_to_core[ext] = ""
            return {**self._pending_json(pending), "status": "CANCELED"}
        try:
            order = self.core.fetch_order(self._core_id(ext))
            if (order["triggerPrice"] is not None) != algo or order["symbol"] != m.symbol:
                raise OrderNotFound(ext)
            order = self.core.cancel_order(order["id"], m.symbol)
            self._user_canceled.add(order["id"])
        except (OrderNotFound, BadRequest):
            raise ApiError(-2011, "Unknown order sent.") from None
        if algo:
            return {
                "algoId": int(ext),
                "clientAlgoId": self._cid_by_oid.get(ext, ""),
                "code": "200",
                "msg": "success",
            }
        return self._order_json(order)

    def ep_cancel_order(self, params: dict[str, str], fault: Fault | None) -> Any:
        return self._cancel(params, algo=False)

    def ep_cancel_algo_order(self, params: dict[str, str], fault: Fault | None) -> Any:
        return self._cancel(params, algo=True)

    def _open(self, params: dict[str, str], algo: bool) -> list[dict[str, Any]]:
        m = self._market(params, required=False)
        symbol = None if m is None else m.symbol
        out = []
        for o in self.core.open_orders(symbol):
            if (o["triggerPrice"] is not None) == algo:
                out.append(self._algo_json(o) if algo else self._order_json(o))
        if not algo:
            for p in self._pending.values():
                if symbol is None or p.symbol == symbol:
                    out.append(self._pending_json(p))
        return out

    def ep_open_orders(self, params: dict[str, str], fault: Fault | None) -> Any:
        return self._open(params, algo=False)

    def ep_open_algo_orders(self, params: dict[str, str], fault: Fault | None) -> Any:
        return self._open(params, algo=True)

    def _cancel_all(self, params: dict[str, str], algo: bool) -> dict[str, Any]:
        m = self._market(params)
        assert m is not None
        for o in self.core.open_orders(m.symbol):
            if (o["triggerPrice"] is not None) == algo:
                self.core.cancel_order(o["id"], m.symbol)
                self._user_canceled.add(o["id"])
        if not algo:
            for ext, p in list(self._pending.items()):
                if p.symbol == m.symbol:
                    del self._pending[ext]
                    self._overlay[ext] = {"status": "CANCELED"}
                    self._ext_to_core[ext] = ""
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def ep_cancel_all(self, params: dict[str, str], fault: Fault | None) -> Any:
        return self._cancel_all(params, algo=False)

    def ep_cancel_all_algo(self, params: dict[str, str], fault: Fault | None) -> Any:
        return self._cancel_all(params, algo=True)

    def client_ids(self) -> dict[str, list[str]]:
        """Every client order id the emulator accepted and the order ids that used it."""
        return {cid: list(oids) for cid, oids in self._oids_by_cid.items()}

    def orders(self) -> list[dict[str, Any]]:
        """Every order the core holds (ccxt dicts, with the emulator's ids and client ids)."""
        out = []
        for state in self.core.snapshot()["orders"]:
            oid = str(state["seq"])
            o = self.core.fetch_order(oid)
            ext = self._core_to_ext.get(oid, oid)
            out.append({**o, "id": ext, "clientOrderId": self._cid_by_oid.get(ext)})
        return out
