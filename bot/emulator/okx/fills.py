"""OKX v5 ``GET /api/v5/trade/fills-history``: the account's fills (ccxt ``fetch_my_trades``).

As OKX documents it ("Get transaction details (last 3 months)"): ``instType`` is required
(50014 without it); ``instId``, ``ordId``, ``begin`` / ``end`` (ms), ``after`` / ``before``
(``billId`` cursors: older / newer than) and ``limit`` (at most 100, the default) narrow it.
Newest first. ``fillSz`` is in **contracts** (``ctVal`` base units each), ``fee`` is negative
for a charge, ``fillPnl`` the fill's realised PnL, ``execType`` ``T`` (taker) or ``M`` (maker).
A conditional order that triggered is filled here under its own id (OKX gives the triggered
order an ``ordId`` of its own; the emulator's core keeps one order).
"""

from __future__ import annotations

from typing import Any

from bot.emulator.okx.base import OkxBase, num
from bot.emulator.server import ApiError, Fault
from paper.core.records import Fill

THREE_MONTHS_MS = 92 * 24 * 3600 * 1000


class OkxFills(OkxBase):
    """The fills history of the OKX emulator."""

    def ep_fills_history(self, params: dict[str, str], fault: Fault | None) -> Any:
        kind = params.get("instType")
        if not kind:
            raise ApiError("50014", "Parameter instType can not be empty.")
        market = self._market(params.get("instId")) if params.get("instId") else None
        limit = _int(params, "limit", 100)
        if not 1 <= limit <= 100:
            raise ApiError("51000", "Parameter limit error")
        begin = _int(params, "begin", self.now_ms() - THREE_MONTHS_MS)
        end = _int(params, "end", None)
        after, before = _int(params, "after", None), _int(params, "before", None)
        oid = params.get("ordId")
        rows = []
        for f in reversed(self.core.fills_since(0)):
            if kind != "SWAP" or (market is not None and f.symbol != market.symbol):
                continue
            if f.timestamp < begin or (end is not None and f.timestamp > end):
                continue
            if (after is not None and f.id >= after) or (before is not None and f.id <= before):
                continue
            if oid and str(f.order_id) != oid:
                continue
            rows.append(self._fill_json(f))
            if len(rows) >= limit:
                break
        return self.ok(rows)

    def _fill_json(self, f: Fill) -> dict[str, Any]:
        oid = str(f.order_id)
        algo = oid in self._algos
        return {
            "instType": "SWAP",
            "instId": self.core.market(f.symbol).id,
            "tradeId": str(f.id),
            "ordId": oid,
            "clOrdId": "" if algo else self._cl_by_oid.get(oid, ""),
            "billId": str(f.id),
            "tag": "",
            "fillPx": num(f.price),
            "fillSz": self.to_contracts(f.symbol, f.amount),
            "fillPnl": num(round(f.realized_pnl, 8)),
            "side": f.side,
            "posSide": "net",
            "execType": "M" if f.taker_or_maker == "maker" else "T",
            "feeCcy": f.fee_currency,
            "fee": num(-round(f.fee, 8)),
            "ts": str(f.timestamp),
            "fillTime": str(f.timestamp),
        }


def _int(params: dict[str, str], key: str, default: int | None) -> Any:
    raw = params.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError("51000", f"Parameter {key} error") from None
