"""Binance's REST calls a bot reconciles with: the account's trades and its order history.

``GET /fapi/v1/userTrades`` (USER_DATA, signed): ``symbol`` mandatory (-1102), ``orderId``,
``startTime`` / ``endTime``, ``fromId``, ``limit`` (default 500, max 1000; -1130 outside).
As Binance documents it: neither time sent, the last 7 days; one sent, the 7 days after
``startTime`` / before ``endTime``; both further apart than 7 days, -1127 "More than 168
hours between startTime and endTime."; ``startTime`` after ``endTime``, -1023; ``fromId``
with either time, -1128 "Combination of optional parameters invalid."; ``fromId`` alone, the
trades from that id on. With ``startTime`` (or ``fromId``) the first ``limit`` trades, else
the latest ``limit``; oldest first. Every fill is there, the exchange's liquidation and ADL
fills included, with the id the user-data stream's ``t`` carries; ``commission`` is positive
(paid), ``realizedPnl`` the gross price PnL of the closed part.

``GET /fapi/v1/allOrders`` / ``GET /fapi/v1/allAlgoOrders`` (``symbol`` mandatory,
``orderId`` / ``algoId``: those ids and later, ``startTime``, ``endTime``, ``limit`` default 500
max 1000, ``page`` for algo orders): the ordinary book (orders, what triggered stops placed,
liquidation and ADL orders) and the conditional one, final statuses included; without an id
the last 7 days (-1127 for a longer window). ``GET /fapi/v1/forceOrders`` (``symbol``
optional, ``autoCloseType`` LIQUIDATION or ADL, times, ``limit`` default 50 max 100): the
account's liquidation and ADL orders.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from ccxt.base.errors import OrderNotFound

from bot.emulator.binance.events import BinanceEvents
from bot.emulator.binance.shapes import _s
from bot.emulator.server import ApiError, Fault
from paper.core import Fill

WEEK_MS: Final = 7 * 86_400_000
TRADES_LIMIT: Final = (500, 1000)
ORDERS_LIMIT: Final = (500, 1000)
FORCE_ORDERS_LIMIT: Final = (50, 100)


class BinanceFills(BinanceEvents):
    """Trade and order-history endpoints of the Binance emulator (see the module docstring)."""

    def _week(
        self, params: Mapping[str, str], default: bool = True
    ) -> tuple[int | None, int | None]:
        """The time window of a query: at most 7 days; the last 7 when none is sent (unless
        ``default`` is False: then None, None)."""
        start, end = self._window(params)
        if start is None and end is None:
            if not default:
                return None, None
            now = self.now_ms()
            return now - WEEK_MS, now
        if start is None:
            assert end is not None
            return end - WEEK_MS, end
        if end is None:
            return start, start + WEEK_MS
        if end - start > WEEK_MS:
            raise ApiError(-1127, "More than 168 hours between startTime and endTime.")
        return start, end

    def ep_user_trades(self, params: dict[str, str], fault: Fault | None) -> Any:
        market = self._market(params)
        assert market is not None
        limit = self._limit(params, TRADES_LIMIT)
        order_id = self._int(params, "orderId")
        from_id = self._int(params, "fromId")
        if from_id is not None and ("startTime" in params or "endTime" in params):
            raise ApiError(-1128, "Combination of optional parameters invalid.")
        self._sync_user_data()
        fills = [f for f in self.core.fills if f.symbol == market.symbol]
        if order_id is not None:
            fills = [f for f in fills if self._fill_order_ext(f) == str(order_id)]
        if from_id is not None:
            chosen = [f for f in fills if f.id >= from_id][:limit]
        else:
            start, end = self._week(params)
            assert start is not None and end is not None
            inside = [f for f in fills if start <= f.timestamp <= end]
            chosen = inside[:limit] if "startTime" in params else inside[-limit:]
        return [self._trade_json(f) for f in chosen]

    def _trade_json(self, f: Fill) -> dict[str, Any]:
        return {
            "symbol": self.core.market(f.symbol).id,
            "id": f.id,
            "orderId": int(self._fill_order_ext(f)),
            "side": f.side.upper(),
            "price": _s(f.price),
            "qty": _s(f.amount),
            "realizedPnl": _s(round(f.realized_pnl, 8)),
            "quoteQty": _s(round(f.amount * f.price, 8)),
            "commission": _s(round(f.fee, 8)),
            "commissionAsset": f.fee_currency,
            "time": f.timestamp,
            "positionSide": "BOTH",
            "buyer": f.side == "buy",
            "maker": f.taker_or_maker == "maker",
        }

    # -- order history --------------------------------------------------------------------------
    def _history(
        self,
        params: Mapping[str, str],
        rows: list[dict[str, Any]],
        id_key: str,
        time_key: str,
        limit: int,
    ) -> list[dict[str, Any]]:
        """``rows`` (oldest first) as an all-orders query selects them."""
        first = self._int(params, id_key)
        start, end = self._week(params, default=first is None)
        if start is not None and end is not None:
            rows = [r for r in rows if start <= int(r[time_key]) <= end]
        if first is not None:
            return [r for r in rows if int(r[id_key]) >= first][:limit]
        return rows[-limit:]

    def _book_rows(self, symbol: str, algo: bool) -> list[dict[str, Any]]:
        self._sync_user_data()
        rows: list[dict[str, Any]] = []
        for seq in range(1, self.core.last_order_id + 1):
            try:
                order = self.core.fetch_order(str(seq), symbol)
            except OrderNotFound:
                continue
            if (order["triggerPrice"] is not None) == algo:
                rows.append(self._algo_json(order) if algo else self._order_json(order))
        if not algo:
            rows.extend(self._pending_json(p) for p in self._pending.values() if p.symbol == symbol)
            rows.extend(self._engine_json(e) for e in self._engine.values() if e.symbol == symbol)
        key: Callable[[dict[str, Any]], tuple[int, int]] = (
            (lambda r: (int(r["createTime"]), int(r["algoId"])))
            if algo
            else (lambda r: (int(r["time"]), int(r["orderId"])))
        )
        rows.sort(key=key)
        return rows

    def ep_all_orders(self, params: dict[str, str], fault: Fault | None) -> Any:
        market = self._market(params)
        assert market is not None
        limit = self._limit(params, ORDERS_LIMIT)
        rows = self._book_rows(market.symbol, algo=False)
        return self._history(params, rows, "orderId", "time", limit)

    def ep_all_algo_orders(self, params: dict[str, str], fault: Fault | None) -> Any:
        market = self._market(params)
        assert market is not None
        limit = self._limit(params, ORDERS_LIMIT)
        page = self._int(params, "page") or 1
        rows = self._book_rows(market.symbol, algo=True)
        chosen = self._history(params, rows, "algoId", "createTime", limit * page)
        return chosen[(page - 1) * limit : page * limit]

    def ep_force_orders(self, params: dict[str, str], fault: Fault | None) -> Any:
        market = self._market(params, required=False)
        kind = params.get("autoCloseType")
        if kind not in (None, "LIQUIDATION", "ADL"):
            raise ApiError(-1116, "Invalid autoCloseType.")
        limit = self._limit(params, FORCE_ORDERS_LIMIT)
        start, end = self._week(params)
        assert start is not None and end is not None
        self._sync_user_data()
        wanted = {"LIQUIDATION": ("liquidation",), "ADL": ("adl",), None: ("liquidation", "adl")}
        rows = [
            self._engine_json(e)
            for e in self._engine.values()
            if e.kind in wanted[kind]
            and (market is None or e.symbol == market.symbol)
            and start <= e.time_ms <= end
        ]
        rows.sort(key=lambda r: (int(r["time"]), int(r["orderId"])))
        return rows[-limit:]
