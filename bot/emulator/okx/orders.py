"""OKX v5 order endpoints: ordinary orders (``batch-orders``, ``order``, ``orders-pending``,
``cancel-order``) and algo orders (``order-algo``, ``orders-algo-pending``, ``cancel-algos``).

Sizes are contracts: ``sz`` off the lot is 51121, below the minimum 51020. ``tdMode`` is required
(51000); ``posSide`` must be ``net`` or absent in net mode (51000); a reduce-only order with no
position to reduce is 51205; a ``clOrdId`` / ``algoClOrdId`` is used once (51016); a margin
shortfall is 51008. Algo orders: ``ordType=conditional`` carries one of ``slTriggerPx`` /
``tpTriggerPx`` with ``slOrdPx`` / ``tpOrdPx`` ``-1`` (market) and ``sl/tpTriggerPxType`` (last
by default, or mark); ``closeFraction=1`` (the whole position, no ``sz``) needs
``reduceOnly`` (51328); a trigger the price has passed is refused (51277-51280, OKX's
wording: "TP/SL trigger price can not be higher/lower than the last price"). The pending list
wants ``ordType`` (50014) and takes ``conditional,oco`` together. An algo order's client id
is ``algoClOrdId``; a ``clOrdId`` in an algo request is ignored. Not emulated (refused with
51000): OCO pairs, ``trigger`` orders, limit TP/SL prices, index-price triggers, trailing
stops, long/short position mode.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from ccxt.base.errors import (
    BaseError,
    DuplicateOrderId,
    InsufficientFunds,
    InvalidOrder,
    OrderImmediatelyFillable,
    OrderNotFound,
)

from bot.emulator.okx.base import OkxBase, OrderError, num
from bot.emulator.server import ApiError, Fault
from paper.markets import PaperMarket

_CLIENT_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
_ORD_TYPES = {"market", "limit", "post_only", "ioc", "fok"}
_STATE = {"closed": "filled", "canceled": "canceled", "rejected": "canceled", "expired": "canceled"}
_ALGO_STATE = {"open": "live", "closed": "effective", "canceled": "canceled"}


def _true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


class OkxOrders(OkxBase):
    """Order endpoints of the OKX emulator."""

    # ------------------------------------------------------------------ placing

    def _rows(self) -> list[Mapping[str, Any]]:
        body = self.body_json
        rows = body if isinstance(body, list) else [body] if isinstance(body, dict) else []
        if not rows or not all(isinstance(r, dict) for r in rows):
            raise ApiError("50014", "Parameter body can not be empty.")
        return rows

    def ep_batch_orders(self, params: dict[str, str], fault: Fault | None) -> Any:
        out, failed = [], 0
        for row in self._rows():
            try:
                out.append(self._place(row, fault))
            except OrderError as err:
                failed += 1
                out.append(
                    {
                        "sCode": err.s_code,
                        "sMsg": err.msg,
                        "ts": str(self.now_ms()),
                        "ordId": "",
                        "clOrdId": str(row.get("clOrdId") or ""),
                        "tag": str(row.get("tag") or ""),
                    }
                )
        code = "0" if not failed else "1" if failed == len(out) else "2"
        msg = "" if not failed else "All operations failed" if code == "1" else "Partially failed"
        return {"code": code, "msg": msg, "data": out}

    def ep_order(self, params: dict[str, str], fault: Fault | None) -> Any:
        (row,) = self._rows()[:1]
        return self.ok([self._place(row, fault)])

    def _common(self, row: Mapping[str, Any]) -> tuple[PaperMarket, str, str]:
        market = self._market(str(row.get("instId") or ""))
        mode = row.get("tdMode")
        if mode not in ("cross", "isolated"):
            raise OrderError("51000", "Parameter tdMode error")
        side = row.get("side")
        if side not in ("buy", "sell"):
            raise OrderError("51000", "Parameter side error")
        pos_side = row.get("posSide")
        if self.long_short_mode:
            raise OrderError("51000", "emulator: long/short position mode is not emulated")
        if pos_side not in (None, "", "net"):
            raise OrderError("51000", "Parameter posSide error")
        symbol = market.symbol
        if self.core.margin_mode(symbol) != mode:
            if self.core.position(symbol) is not None:
                raise OrderError(
                    "51000", "emulator: a position in the other margin mode is not emulated"
                )
            self.core.set_margin_mode(mode, symbol)
        if self.core.position(symbol) is None:
            lev = self.leverages[(symbol, mode)]
            if abs(self.core.leverage(symbol) - lev) > 1e-12:
                self.core.set_leverage(lev, symbol)
        return market, str(mode), str(side)

    def _size(self, market: PaperMarket, text: Any, kind: str) -> float:
        try:
            contracts = Decimal(str(text))
        except InvalidOperation:
            raise OrderError("51000", "Parameter sz error") from None
        symbol = market.symbol
        lot = self.lot(symbol)
        if contracts <= 0 or (contracts / lot) != (contracts / lot).to_integral_value():
            raise OrderError("51121", "Order count should be the integer multiples of the lot size")
        base = self.to_base(symbol, contracts)
        if base < market.rules.min_amount - 1e-12:
            raise OrderError(
                "51020", "Order amount should be greater than the min available amount"
            )
        cap = market.max_market_amount if kind == "market" else market.max_amount
        if cap is not None and base > cap + 1e-9:
            raise OrderError("51202", "Market order amount exceeds the maximum amount")
        return base

    def _client_id(self, value: Any) -> str:
        cl = str(value or "")
        if cl and not _CLIENT_ID.match(cl):
            raise OrderError("51000", "Parameter clOrdId error")
        if cl and cl in self._oid_by_cl:
            raise OrderError("51016", "Duplicated client order ID")
        return cl

    def _place(self, row: Mapping[str, Any], fault: Fault | None) -> dict[str, Any]:
        kind = row.get("ordType")
        if kind not in _ORD_TYPES:
            raise OrderError("51000", "Parameter ordType error")
        cl = self._client_id(row.get("clOrdId"))
        market, mode, side = self._common(row)
        qty = self._size(market, row.get("sz"), str(kind))
        price: float | None = None
        core: dict[str, Any] = {}
        if kind != "market":
            try:
                price = float(str(row.get("px")))
            except ValueError:
                raise OrderError("51000", "Parameter px error") from None
            if kind in ("ioc", "fok"):
                raise OrderError("51000", "emulator: ioc / fok orders are not emulated")
            if kind == "post_only":
                core["postOnly"] = True
        if _true(row.get("reduceOnly")):
            core["reduceOnly"] = True
        if cl:
            core["clientOrderId"] = cl
        fill = qty
        if fault is not None and fault.kind == "partial_fill" and kind == "market":
            step = market.rules.amount_step
            fill = round(max(1, math.floor(qty * fault.fill_ratio / step + 1e-9)) * step, 12)
        self.core.set_time(max(self.now_ms(), self.core.now_ms))
        order = self._create(
            market, "market" if kind == "market" else "limit", side, fill, price, core, cl
        )
        oid = str(order["id"])
        self._modes[oid] = mode
        if fill != qty:
            self._overlay[oid] = {"sz": self.to_contracts(market.symbol, qty), "state": "canceled"}
        return {
            "clOrdId": cl,
            "ordId": oid,
            "sCode": "0",
            "sMsg": "Order placed",
            "tag": str(row.get("tag") or ""),
            "ts": str(self.now_ms()),
        }

    def _create(
        self,
        market: PaperMarket,
        kind: str,
        side: str,
        qty: float,
        price: float | None,
        core: dict[str, Any],
        cl: str,
    ) -> dict[str, Any]:
        try:
            order = self.core.create_order(market.symbol, kind, side, qty, price, core)
        except BaseError as exc:
            raise _error(exc) from None
        self._register(str(order["id"]), cl)
        return order

    def ep_order_algo(self, params: dict[str, str], fault: Fault | None) -> Any:
        (row,) = self._rows()[:1]
        kind = row.get("ordType")
        if kind == "oco" or kind == "trigger" or kind == "move_order_stop":
            raise OrderError("51000", f"emulator: {kind} algo orders are not emulated")
        if kind != "conditional":
            raise OrderError("51000", "Parameter ordType error")
        cl = self._client_id(row.get("algoClOrdId"))
        market, mode, side = self._common(row)
        has_sl, has_tp = bool(row.get("slTriggerPx")), bool(row.get("tpTriggerPx"))
        if has_sl == has_tp:
            raise OrderError("51000", "emulator: a conditional order takes one of SL or TP")
        leg = "sl" if has_sl else "tp"
        if str(row.get(f"{leg}OrdPx")) != "-1":
            raise OrderError("51000", "emulator: limit TP/SL prices are not emulated")
        basis = row.get(f"{leg}TriggerPxType") or "last"
        if basis not in ("last", "mark", "index"):
            raise OrderError("51000", f"Parameter {leg}TriggerPxType error")
        if basis == "index":
            raise OrderError("51000", "emulator: index-price triggers are not emulated")
        try:
            trigger = float(str(row.get(f"{leg}TriggerPx")))
        except ValueError:
            raise OrderError("51000", f"Parameter {leg}TriggerPx error") from None
        reduce_only = _true(row.get("reduceOnly"))
        fraction = row.get("closeFraction")
        core: dict[str, Any] = {"workingType": basis}
        if fraction not in (None, ""):
            if str(fraction) != "1":
                raise OrderError("51000", "Parameter closeFraction error")
            if not reduce_only:
                raise OrderError("51328", "closeFraction is only available for reduceOnly orders")
            if row.get("sz"):
                raise OrderError("51000", "Parameter sz error")
            core["closePosition"] = True
            qty = 0.0
        else:
            qty = self._size(market, row.get("sz"), "market")
            if reduce_only:
                core["reduceOnly"] = True
        self._check_trigger(market, side, leg, trigger, str(basis))
        core["stopLossPrice" if leg == "sl" else "takeProfitPrice"] = trigger
        if cl:
            core["clientOrderId"] = cl
        self.core.set_time(max(self.now_ms(), self.core.now_ms))
        order = self._create(market, "market", side, qty, None, core, cl)
        aid = str(order["id"])
        self._modes[aid] = mode
        self._algos[aid] = {
            "ordType": "conditional",
            "closeFraction": "1" if fraction not in (None, "") else "",
            f"{leg}TriggerPxType": str(basis),
            "tag": str(row.get("tag") or ""),
        }
        return self.ok(
            [
                {
                    "algoId": aid,
                    "algoClOrdId": cl,
                    "clOrdId": "",
                    "sCode": "0",
                    "sMsg": "",
                    "tag": str(row.get("tag") or ""),
                }
            ]
        )

    def _check_trigger(
        self, market: PaperMarket, side: str, leg: str, trigger: float, basis: str
    ) -> None:
        rules = market.rules
        n = trigger / rules.price_step
        if trigger <= 0 or abs(n - round(n)) > 1e-6:
            raise OrderError("51000", f"Parameter {leg}TriggerPx error")
        symbol = market.symbol
        now = self.core.mark_price(symbol) if basis == "mark" else self.core.last_price(symbol)
        if now is None:
            return
        if leg == "sl":
            if side == "sell" and trigger >= now:
                raise OrderError("51280", "SL trigger price can not be higher than the last price")
            if side == "buy" and trigger <= now:
                raise OrderError("51278", "SL trigger price can not be lower than the last price")
        else:
            if side == "sell" and trigger <= now:
                raise OrderError("51279", "TP trigger price can not be lower than the last price")
            if side == "buy" and trigger >= now:
                raise OrderError("51277", "TP trigger price can not be higher than the last price")

    # ------------------------------------------------------------------ reading

    def _find(self, params: Mapping[str, str], algo: bool) -> dict[str, Any] | None:
        market = self._market(params.get("instId")) if params.get("instId") else None
        id_key, cl_key = ("algoId", "algoClOrdId") if algo else ("ordId", "clOrdId")
        oid = params.get(id_key) or self._oid_by_cl.get(params.get(cl_key) or "", "")
        if not oid:
            return None
        if (oid in self._algos) != algo:
            return None
        try:
            order = self.core.fetch_order(oid)
        except OrderNotFound:
            return None
        if market is not None and order["symbol"] != market.symbol:
            return None
        return order

    def ep_get_order(self, params: dict[str, str], fault: Fault | None) -> Any:
        if not params.get("instId"):
            raise ApiError("50014", "Parameter instId can not be empty.")
        if not params.get("ordId") and not params.get("clOrdId"):
            raise ApiError("51003", "Either client order ID or order ID is required.")
        order = self._find(params, algo=False)
        if order is None:
            raise ApiError("51603", "Order does not exist")
        return self.ok([self._order_json(order)])

    def ep_orders_pending(self, params: dict[str, str], fault: Fault | None) -> Any:
        market = self._market(params.get("instId")) if params.get("instId") else None
        rows = [
            self._order_json(o)
            for o in self.core.open_orders(market.symbol if market is not None else None)
            if str(o["id"]) not in self._algos
        ]
        return self.ok(rows)

    def ep_get_algo(self, params: dict[str, str], fault: Fault | None) -> Any:
        if not params.get("algoId") and not params.get("algoClOrdId"):
            raise ApiError("51000", "Parameter algoId error")
        order = self._find(params, algo=True)
        if order is None:
            raise ApiError("51603", "Order does not exist")
        return self.ok([self._algo_json(order)])

    def ep_algos_pending(self, params: dict[str, str], fault: Fault | None) -> Any:
        kinds = set(filter(None, (params.get("ordType") or "").split(",")))
        if not kinds:
            raise ApiError("50014", "Parameter ordType can not be empty.")
        if len(kinds) > 1 and kinds != {"conditional", "oco"}:
            raise ApiError("51000", "Parameter ordType error")
        market = self._market(params.get("instId")) if params.get("instId") else None
        rows = []
        if "conditional" in kinds:
            for o in self.core.open_orders(market.symbol if market is not None else None):
                if str(o["id"]) in self._algos:
                    rows.append(self._algo_json(o))
        return self.ok(rows)

    # ------------------------------------------------------------------ cancelling

    def ep_cancel_order(self, params: dict[str, str], fault: Fault | None) -> Any:
        if not params.get("ordId") and not params.get("clOrdId"):
            raise OrderError("51407", "Either order ID or client order ID is required.")
        order = self._find(params, algo=False)
        if order is None:
            raise OrderError("51400", "Cancellation failed as the order does not exist.")
        if order["status"] == "canceled":
            raise OrderError("51401", "Cancellation failed as the order is already canceled.")
        if order["status"] != "open":
            raise OrderError("51402", "Cancellation failed as the order is already completed.")
        self.core.cancel_order(order["id"], order["symbol"])
        oid = str(order["id"])
        return self.ok(
            [
                {
                    "ordId": oid,
                    "clOrdId": self._cl_by_oid.get(oid, ""),
                    "sCode": "0",
                    "sMsg": "",
                    "ts": str(self.now_ms()),
                }
            ]
        )

    def ep_cancel_algos(self, params: dict[str, str], fault: Fault | None) -> Any:
        out = []
        for row in self._rows():
            aid = str(row.get("algoId") or "")
            order = self._find({"algoId": aid, "instId": str(row.get("instId") or "")}, True)
            if order is None or order["status"] != "open":
                raise OrderError("51603", "Order does not exist", {"algoId": aid})
            self.core.cancel_order(order["id"], order["symbol"])
            out.append({"algoId": aid, "sCode": "0", "sMsg": ""})
        return self.ok(out)

    # ------------------------------------------------------------------ shapes

    def _order_json(self, o: Mapping[str, Any]) -> dict[str, Any]:
        oid = str(o["id"])
        symbol = o["symbol"]
        m = self.core.market(symbol)
        status = str(o["status"])
        filled = float(o["filled"] or 0.0)
        if status == "open":
            state = "partially_filled" if filled > 0 else "live"
        else:
            state = _STATE.get(status, "canceled")
        avg = o.get("average")
        fee = float((o.get("fee") or {}).get("cost") or 0.0)
        kind = "limit" if o["type"] == "limit" else "market"
        out = {
            "accFillSz": self.to_contracts(symbol, filled),
            "algoClOrdId": "",
            "algoId": oid if oid in self._algos else "",
            "attachAlgoOrds": [],
            "avgPx": num(avg) if avg else "",
            "cTime": str(o["timestamp"]),
            "cancelSource": "",
            "category": "normal",
            "ccy": "",
            "clOrdId": self._cl_by_oid.get(oid, "") if oid not in self._algos else "",
            "fee": num(-fee),
            "feeCcy": m.settle,
            "fillPx": num(avg) if avg else "",
            "fillSz": self.to_contracts(symbol, filled) if filled else "0",
            "fillTime": str(o["lastTradeTimestamp"] or ""),
            "instId": m.id,
            "instType": "SWAP",
            "lever": num(self.core.leverage(symbol)),
            "ordId": oid,
            "ordType": kind,
            "pnl": "0",
            "posSide": "net",
            "px": num(o["price"]) if kind == "limit" else "",
            "reduceOnly": "true" if o["reduceOnly"] else "false",
            "side": o["side"],
            "slOrdPx": "",
            "slTriggerPx": "",
            "slTriggerPxType": "",
            "source": "",
            "state": state,
            "sz": self.to_contracts(symbol, float(o["amount"])),
            "tag": "",
            "tdMode": self._modes.get(oid, self.core.margin_mode(symbol)),
            "tgtCcy": "",
            "tpOrdPx": "",
            "tpTriggerPx": "",
            "tpTriggerPxType": "",
            "tradeId": "",
            "uTime": str(o["lastUpdateTimestamp"] or o["timestamp"]),
        }
        out.update(self._overlay.get(oid, {}))
        return out

    def _algo_json(self, o: Mapping[str, Any]) -> dict[str, Any]:
        aid = str(o["id"])
        symbol = o["symbol"]
        m = self.core.market(symbol)
        extra = self._algos.get(aid, {})
        sl, tp = o.get("stopLossPrice"), o.get("takeProfitPrice")
        state = _ALGO_STATE.get(str(o["status"]), "order_failed")
        whole = extra.get("closeFraction") == "1"
        return {
            "activePx": "",
            "actualPx": num(o["average"]) if o.get("average") else "",
            "actualSide": ("sl" if sl else "tp") if state == "effective" else "",
            "actualSz": self.to_contracts(symbol, float(o["filled"] or 0.0))
            if state == "effective"
            else "",
            "algoClOrdId": self._cl_by_oid.get(aid, ""),
            "algoId": aid,
            "amendPxOnTriggerType": "",
            "attachAlgoOrds": [],
            "cTime": str(o["timestamp"]),
            "callbackRatio": "",
            "callbackSpread": "",
            "ccy": "",
            "clOrdId": "",
            "closeFraction": "1" if whole else "",
            "failCode": "",
            "instId": m.id,
            "instType": "SWAP",
            "last": num(self.core.last_price(symbol)),
            "lever": num(self.core.leverage(symbol)),
            "moveTriggerPx": "",
            "ordId": aid if state == "effective" else "",
            "ordIdList": [aid] if state == "effective" else [],
            "ordPx": "",
            "ordType": extra.get("ordType", "conditional"),
            "posSide": "net",
            "quickMgnType": "",
            "reduceOnly": "true" if o["reduceOnly"] else "false",
            "side": o["side"],
            "slOrdPx": "-1" if sl else "",
            "slTriggerPx": num(sl) if sl else "",
            "slTriggerPxType": extra.get("slTriggerPxType", "") if sl else "",
            "state": state,
            "sz": "" if whole else self.to_contracts(symbol, float(o["amount"])),
            "szLimit": "",
            "tag": extra.get("tag", ""),
            "tdMode": self._modes.get(aid, self.core.margin_mode(symbol)),
            "tgtCcy": "",
            "timeInterval": "",
            "tpOrdPx": "-1" if tp else "",
            "tpTriggerPx": num(tp) if tp else "",
            "tpTriggerPxType": extra.get("tpTriggerPxType", "") if tp else "",
            "triggerPx": "",
            "triggerPxType": "",
            "triggerTime": str(o["lastTradeTimestamp"] or ""),
            "uTime": str(o["lastUpdateTimestamp"] or o["timestamp"]),
        }

    # ------------------------------------------------------------------ the control API

    def client_ids(self) -> dict[str, list[str]]:
        return {cl: [oid] for cl, oid in self._oid_by_cl.items()}

    def orders(self) -> list[dict[str, Any]]:
        out = []
        for oid in list(self._modes):
            try:
                o = self.core.fetch_order(oid)
            except OrderNotFound:
                continue
            out.append({**o, "clientOrderId": self._cl_by_oid.get(oid) or None})
        return out


def _error(exc: BaseError) -> OrderError:
    """The OKX error a paper-core refusal corresponds to."""
    text = str(exc).removeprefix("paper ")
    if isinstance(exc, DuplicateOrderId):
        return OrderError("51016", "Duplicated client order ID")
    if isinstance(exc, InsufficientFunds):
        return OrderError("51008", "Order failed. Insufficient USDT margin in account")
    if isinstance(exc, OrderImmediatelyFillable):
        return OrderError("51280", "SL trigger price can not be higher than the last price")
    if isinstance(exc, InvalidOrder):
        if "ReduceOnly" in text:
            return OrderError("51205", "Reduce-Only is not available")
        if "maximum allowable position" in text:
            return OrderError("51004", "Order amount exceeds current tier limit")
        if "liquidat" in text or "margin" in text.lower():
            return OrderError("51008", "Order failed. Insufficient USDT margin in account")
        return OrderError("51000", text)
    return OrderError("51000", text)
