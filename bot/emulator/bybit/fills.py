"""Bybit v5 ``GET /v5/execution/list``: the account's executions (ccxt ``fetch_my_trades``).

As Bybit documents it (v5 "Get Trade History"): ``category`` is required; ``symbol``,
``orderId``, ``orderLinkId``, ``execType`` (``Trade``, ``BustTrade`` for a liquidation,
``AdlTrade`` for an auto-deleverage, ...), ``startTime`` / ``endTime`` (ms) and ``limit``
(1-100, default 50) narrow it. Without times it covers the last 7 days; ``startTime`` alone
the 7 days from it, ``endTime`` alone the 7 days to it; a wider range is refused (10001). The
list is sorted by ``execTime``, newest first; quantities are base units (linear), and an
execution carries no realised PnL (only ``closedSize``).
"""

from __future__ import annotations

import uuid
from typing import Any

from bot.emulator.bybit.base import BybitBase, num
from bot.emulator.server import ApiError, Fault
from paper.core.records import Fill

WEEK_MS = 7 * 24 * 3600 * 1000
#: The paper core's order reasons that are the exchange's own closes, as Bybit types them.
_EXEC_TYPES = {"liquidation": "BustTrade", "adl": "AdlTrade"}


class BybitFills(BybitBase):
    """The execution list of the Bybit emulator."""

    def ep_executions(self, params: dict[str, str], fault: Fault | None) -> Any:
        self._linear(params)
        market = self._market(params, required=False)
        limit = _int(params, "limit", 50)
        if not 1 <= limit <= 100:
            raise ApiError(10001, "params error: limit must be in [1, 100]")
        start, end = _int(params, "startTime", None), _int(params, "endTime", None)
        if start is None and end is None:
            end = self.now_ms()
            start = end - WEEK_MS
        elif end is None:
            assert start is not None
            end = start + WEEK_MS
        elif start is None:
            start = end - WEEK_MS
        if end - start > WEEK_MS:
            raise ApiError(10001, "params error: the time range cannot exceed 7 days")
        oid, link = params.get("orderId"), params.get("orderLinkId")
        kind = params.get("execType")
        rows = []
        for f in reversed(self.core.fills_since(0)):
            if market is not None and f.symbol != market.symbol:
                continue
            if not start <= f.timestamp <= end:
                continue
            if oid and str(f.order_id) != oid:
                continue
            if link and self._link_by_oid.get(str(f.order_id), "") != link:
                continue
            row = self._execution_json(f)
            if kind and row["execType"] != kind:
                continue
            rows.append(row)
            if len(rows) >= limit:
                break
        return self.ok({"category": "linear", "list": rows, "nextPageCursor": ""})

    def _execution_json(self, f: Fill) -> dict[str, Any]:
        oid = str(f.order_id)
        return {
            "symbol": self.core.market(f.symbol).id,
            "orderId": oid,
            "orderLinkId": self._link_by_oid.get(oid, ""),
            "side": "Buy" if f.side == "buy" else "Sell",
            "orderType": "Market" if f.taker_or_maker == "taker" else "Limit",
            "stopOrderType": "",
            "execFee": num(round(f.fee, 8)),
            "execId": str(uuid.UUID(int=f.id)),
            "execPrice": num(f.price),
            "execQty": num(f.amount),
            "execType": _EXEC_TYPES.get(f.reason, "Trade"),
            "execValue": num(round(f.amount * f.price, 8)),
            "execTime": str(f.timestamp),
            "feeCurrency": f.fee_currency,
            "isMaker": f.taker_or_maker == "maker",
            "closedSize": num(f.amount if f.reduce_only or f.realized_pnl else 0.0),
            "seq": f.id,
        }


def _int(params: dict[str, str], key: str, default: int | None) -> Any:
    raw = params.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError(10001, f"params error: {key} invalid") from None
