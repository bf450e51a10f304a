"""Orders and fills: the order lifecycle by client id, and every execution, each recorded once.

An order is recorded as an *intent* before it is sent and updated with the exchange's
acknowledgement after; a crash between the two leaves it ``intent`` (or ``sent``/``unknown``),
and ``orders_in_flight()`` lists those so a restart can look each client id up on the exchange
and settle it. A status only moves forward (``advance_status``). Fills are idempotent on
(order, trade id).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

from bot.state.store.base import StoreBase
from bot.state.store.rows import (
    IN_FLIGHT,
    STATUS_RANK,
    FillRow,
    OrderRow,
    OrderStatus,
    StoreError,
    _dumps,
    _fill_from,
    _opt_float,
    _order_from,
    _order_status,
    advance_status,
)


class OrderLog(StoreBase):
    """The ``orders`` and ``fills`` tables."""

    # -- orders ----------------------------------------------------------------------------
    def order_intent(
        self,
        client_id: str,
        symbol: str,
        side: str,
        type: str,
        amount: float,
        price: float | None = None,
        params: Mapping[str, Any] | None = None,
        decision_id: int | None = None,
        *,
        ts: float | None = None,
    ) -> OrderRow:
        """Record an order BEFORE it is sent (``side`` is ccxt's ``buy``/``sell``).

        Idempotent on ``client_id``: a second call returns the existing row untouched (check
        its ``status``: anything but ``intent`` means it was already sent). Reusing a client id
        for a different order (symbol, side, type or amount) raises ``StoreError``.
        """
        if not client_id:
            raise StoreError("an order needs a client id")
        if not (math.isfinite(amount) and amount >= 0.0):
            raise StoreError(f"order amount must be a non-negative number, got {amount!r}")
        p = dict(params or {})
        stop = next(
            (
                _opt_float(p[k])
                for k in ("stopLossPrice", "takeProfitPrice", "stopPrice", "triggerPrice")
                if p.get(k) is not None
            ),
            None,
        )
        reduce_only = bool(p.get("reduceOnly") or p.get("closePosition"))
        now = time.time() if ts is None else ts
        with self.transaction():
            self._conn.execute(
                "INSERT INTO orders (client_id, symbol, side, type, amount, price, stop_price,"
                " reduce_only, params_json, status, intent_at, updated_at, decision_id)"
                " VALUES (?,?,?,?,?,?,?,?,?,'intent',?,?,?) ON CONFLICT (client_id) DO NOTHING",
                (
                    client_id,
                    symbol,
                    side,
                    type,
                    amount,
                    price,
                    stop,
                    int(reduce_only),
                    _dumps(p),
                    now,
                    now,
                    decision_id,
                ),
            )
            row = self._order_row(client_id)
        assert row is not None
        if (row.symbol, row.side, row.type, row.amount) != (symbol, side, type, amount):
            raise StoreError(
                f"client id {client_id!r} already used for another order "
                f"({row.side} {row.amount:g} {row.symbol} {row.type})"
            )
        return row

    def order_sent(self, client_id: str, ts: float | None = None) -> OrderRow:
        """Mark an intent as handed to the exchange (optional step before the request)."""
        return self.order_status(client_id, "sent", ts=ts)

    def order_status(
        self, client_id: str, status: OrderStatus, *, note: str = "", ts: float | None = None
    ) -> OrderRow:
        """Set a status without an exchange order (e.g. ``rejected`` on a refusal,
        ``unknown`` after a network error). Never moves an order backwards."""
        if status not in STATUS_RANK:
            raise StoreError(f"unknown order status {status!r}")
        with self.transaction():
            row = self._order_row(client_id)
            if row is None:
                raise StoreError(f"no order with client id {client_id!r}")
            return self._apply(row, status, None, note, time.time() if ts is None else ts)

    def order_ack(
        self, client_id: str, order: Mapping[str, Any], ts: float | None = None
    ) -> OrderRow:
        """Record the exchange's answer to ``create_order`` (a ccxt order structure).

        The status becomes the order's (``open``, ``filled``...) or ``acked`` if it has none.
        """
        with self.transaction():
            row = self._order_row(client_id)
            if row is None:
                raise StoreError(f"no order intent with client id {client_id!r}")
            status = _order_status(order) or "acked"
            return self._apply(row, status, order, None, time.time() if ts is None else ts)

    def order_update(
        self, order: Mapping[str, Any], *, client_id: str | None = None, ts: float | None = None
    ) -> OrderRow | None:
        """Apply a later ccxt order structure (fetch_order, a stream update, a cancel).

        Found by ``client_id``, else the order's ``clientOrderId``, else its exchange ``id``
        (the latest order with that id). Returns None for an order this store never saw.
        """
        with self.transaction():
            row = None
            for cid in (client_id, order.get("clientOrderId")):
                if cid:
                    row = self._order_row(str(cid))
                    if row is not None:
                        break
            if row is None and order.get("id") is not None:
                found = self._conn.execute(
                    "SELECT client_id FROM orders WHERE exchange_id = ? ORDER BY rowid DESC"
                    " LIMIT 1",
                    (str(order["id"]),),
                ).fetchone()
                row = None if found is None else self._order_row(found[0])
            if row is None:
                return None
            return self._apply(
                row, _order_status(order), order, None, time.time() if ts is None else ts
            )

    def _apply(
        self,
        row: OrderRow,
        status: OrderStatus | None,
        order: Mapping[str, Any] | None,
        note: str | None,
        ts: float,
    ) -> OrderRow:
        new_status = advance_status(row.status, status)
        exchange_id = row.exchange_id
        filled, average, order_json = row.filled, row.average, None
        acked_at = row.acked_at
        if order is not None:
            if order.get("id") is not None:
                exchange_id = str(order["id"])
            got = _opt_float(order.get("filled"))
            if got is not None:
                filled = max(filled, got)
            average = _opt_float(order.get("average")) or average
            order_json = _dumps(dict(order))
            if acked_at is None:
                acked_at = ts
        self._conn.execute(
            "UPDATE orders SET status = ?, exchange_id = ?, filled = ?, average = ?,"
            " order_json = COALESCE(?, order_json), note = COALESCE(?, note), acked_at = ?,"
            " updated_at = ? WHERE client_id = ?",
            (
                new_status,
                exchange_id,
                filled,
                average,
                order_json,
                note or None,
                acked_at,
                ts,
                row.client_id,
            ),
        )
        updated = self._order_row(row.client_id)
        assert updated is not None
        return updated

    def order(self, client_id: str) -> OrderRow | None:
        with self._lock:
            return self._order_row(client_id)

    def _order_row(self, client_id: str) -> OrderRow | None:
        r = self._conn.execute("SELECT * FROM orders WHERE client_id = ?", (client_id,)).fetchone()
        return None if r is None else _order_from(r)

    def orders(self, statuses: Iterable[OrderStatus] | None = None) -> list[OrderRow]:
        """Orders in the given statuses (all when None), oldest intent first."""
        if statuses is None:
            rows = self._query("SELECT * FROM orders ORDER BY intent_at, rowid")
        else:
            chosen = tuple(statuses)
            marks = ",".join("?" * len(chosen))
            rows = self._query(
                f"SELECT * FROM orders WHERE status IN ({marks}) ORDER BY intent_at, rowid", chosen
            )
        return [_order_from(r) for r in rows]

    def orders_in_flight(self) -> list[OrderRow]:
        """Orders with no answer recorded (intent, sent, unknown): resolve them on restart."""
        return self.orders(IN_FLIGHT)

    # -- fills -----------------------------------------------------------------------------
    def record_fill(
        self,
        *,
        trade_id: str,
        symbol: str,
        side: str,
        amount: float,
        price: float,
        ts: float,
        client_id: str | None = None,
        order_id: str | None = None,
        fee: float = 0.0,
        fee_currency: str | None = None,
        info: Mapping[str, Any] | None = None,
        role: str | None = None,
        realized_pnl: float | None = None,
    ) -> bool:
        """Record one execution; True if new, False if this fill was already recorded.

        Idempotent on (order, ``trade_id``), the order being the client id when known (looked
        up from ``order_id`` if not given), else the exchange order id -- and on (exchange
        order id, ``trade_id``) whichever way the fill came (a stream names the client id, a
        REST trade list only the order id). Where the exchange gives no trade ids (fills seen
        as an order's growing ``filled``), a stable id such as
        ``f"{order_id}:{cumulative_filled}"`` keeps replays of the same update idempotent.
        """
        with self.transaction():
            if order_id is not None:
                seen = self._conn.execute(
                    "SELECT 1 FROM fills WHERE order_id = ? AND trade_id = ? LIMIT 1",
                    (order_id, trade_id),
                ).fetchone()
                if seen is not None:
                    return False
            if client_id is None and order_id is not None:
                found = self._conn.execute(
                    "SELECT client_id FROM orders WHERE exchange_id = ? ORDER BY rowid DESC"
                    " LIMIT 1",
                    (order_id,),
                ).fetchone()
                client_id = None if found is None else str(found[0])
            if client_id:
                order_key = f"c:{client_id}"
            elif order_id:
                order_key = f"x:{order_id}"
            else:
                raise StoreError("a fill needs a client id or an exchange order id")
            cur = self._conn.execute(
                "INSERT INTO fills (order_key, trade_id, client_id, order_id, symbol, side,"
                " amount, price, fee, fee_currency, ts, info_json, role, realized_pnl)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (order_key, trade_id) DO NOTHING",
                (
                    order_key,
                    trade_id,
                    client_id,
                    order_id,
                    symbol,
                    side,
                    amount,
                    price,
                    fee,
                    fee_currency,
                    ts,
                    None if info is None else _dumps(dict(info)),
                    role,
                    realized_pnl,
                ),
            )
            return cur.rowcount == 1

    def record_trade(
        self,
        trade: Mapping[str, Any],
        client_id: str | None = None,
        *,
        role: str | None = None,
        realized_pnl: float | None = None,
    ) -> bool:
        """``record_fill`` from a ccxt unified trade structure (``timestamp`` in ms)."""
        fee = trade.get("fee") or {}
        trade_id = trade.get("id")
        order_id = trade.get("order")
        stamp = trade.get("timestamp")
        if trade_id is None:
            raise StoreError("a ccxt trade without an id: use record_fill with a stable trade_id")
        if stamp is None:
            raise StoreError(f"trade {trade_id} has no timestamp")
        return self.record_fill(
            trade_id=str(trade_id),
            symbol=str(trade["symbol"]),
            side=str(trade["side"]),
            amount=float(trade["amount"]),
            price=float(trade["price"]),
            ts=float(stamp) / 1000.0,
            client_id=client_id,
            order_id=None if order_id is None else str(order_id),
            fee=_opt_float(fee.get("cost")) or 0.0,
            fee_currency=fee.get("currency"),
            info=trade.get("info"),
            role=role,
            realized_pnl=realized_pnl,
        )

    def recent_trades(self, limit: int = 20, symbol: str | None = None) -> list[FillRow]:
        """The latest fills (a "trade" here is one execution), newest first."""
        where, args = ("WHERE symbol = ?", (symbol,)) if symbol is not None else ("", ())
        rows = self._query(
            f"SELECT * FROM fills {where} ORDER BY ts DESC, id DESC LIMIT ?", (*args, limit)
        )
        return [_fill_from(r) for r in rows]

    def fills_of(self, symbol: str | None = None, since: float | None = None) -> list[FillRow]:
        """Fills oldest first (of ``symbol``; from ``since``, epoch s)."""
        where: list[str] = ["1=1"]
        args: list[Any] = []
        if symbol is not None:
            where.append("symbol = ?")
            args.append(symbol)
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        rows = self._query(
            f"SELECT * FROM fills WHERE {' AND '.join(where)} ORDER BY ts, id", tuple(args)
        )
        return [_fill_from(r) for r in rows]

    def last_fill_ts(self, symbol: str) -> float | None:
        """When the newest recorded fill of ``symbol`` happened (epoch s)."""
        row = self._query("SELECT MAX(ts) AS ts FROM fills WHERE symbol = ?", (symbol,))
        value = row[0]["ts"] if row else None
        return None if value is None else float(value)

    def order_by_exchange_id(self, order_id: str) -> OrderRow | None:
        rows = self._query(
            "SELECT client_id FROM orders WHERE exchange_id = ? ORDER BY rowid DESC LIMIT 1",
            (order_id,),
        )
        return self.order(str(rows[0]["client_id"])) if rows else None

    def open_orders_recorded(self) -> list[OrderRow]:
        """Orders the store has as acknowledged but not final (look them up: the exchange
        decides how they end)."""
        return self.orders(("acked", "open"))

    def fills(self, client_id: str) -> list[FillRow]:
        """One order's fills, oldest first."""
        rows = self._query("SELECT * FROM fills WHERE client_id = ? ORDER BY ts, id", (client_id,))
        return [_fill_from(r) for r in rows]
