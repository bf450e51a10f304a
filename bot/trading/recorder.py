"""The exchange's truth about fills: every fill recorded once, with its role, and the closes it
makes, with their real reason and PnL, handed to the engine.

``Recorder`` takes fills from wherever the exchange reports them -- the user-data stream
(``watch_my_trades`` through ccxt.pro), REST (``fetch_my_trades`` since the last fill seen: at
start, after every reconnect of the stream, on a schedule, and when the account shows a
position gone) and, in paper sessions, the paper exchange's own fill list -- and records each
once (by exchange order id and trade id, in memory and in the store). Each fill gets its role
(``bot.state.trips``): the bot's own orders by their client id and what the store recorded
before sending them; the exchange's liquidations and auto-deleverages by the venue's marks
(``Venue.fill_origin``); anything else is ``manual``. Fills the REST list gives without a client
id are matched to the store's orders by exchange order id, else looked up on the exchange.

Per symbol ``Lots`` follow the position fill by fill; a fill that closes it hands a
``RoundTrip`` (real exit price, the exchange's realised PnL, fees, the closing fill's reason) to
``on_close``. ``align`` takes the exchange's positions as they are where the record cannot
explain them (a position opened before the record began).

Order statuses follow the exchange: stream order updates (``watch_orders``) and look-ups of the
orders the store still has as open (``sync_orders``) end them filled, canceled or expired.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import structlog

from bot.exchange.retry import describe
from bot.exchange.venue import venue_for
from bot.state.trips import Fill, Lots, RoundTrip, as_fill, order_role
from guards import Position

log = structlog.get_logger("fills")

#: How far back a first REST reconciliation looks when the store has no fill of a symbol.
LOOKBACK_S = 24 * 3600.0
#: Fills remembered in memory for de-duplication (the store de-duplicates the rest).
SEEN_MAX = 20_000
#: REST page size (Binance's userTrades maximum; a venue's own is ``Venue.trades_page``).
PAGE = 1000


class Recorder:
    """See the module docstring. ``store``: a ``Store`` or ``SafeStore``."""

    def __init__(
        self,
        exchange: Any,
        store: Any,
        *,
        symbols: Sequence[str],
        on_close: Callable[[RoundTrip], None] | None = None,
        clock: Callable[[], float] = time.time,
        poll_s: float = 1.0,
    ) -> None:
        self.exchange = exchange
        self.store = store
        self.venue = venue_for(str(getattr(exchange, "id", "")))
        self.symbols = tuple(symbols)
        self.on_close = on_close
        self.clock = clock
        self.poll_s = poll_s
        self.lots: dict[str, Lots] = {s: Lots(s) for s in symbols}
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._clients: dict[str, str | None] = {}
        self._last: dict[str, float] = {}
        self.recorded = 0
        self.stream_failures = 0
        self._pending: set[str] = set()
        self._sync_task: asyncio.Task[int] | None = None

    # -- the record --------------------------------------------------------------------------
    def load(self) -> None:
        """Rebuild the lots and the de-duplication memory from the store's fills."""
        for row in self.store.fills_of():
            lot = self.lots.setdefault(row.symbol, Lots(row.symbol))
            lot.apply(as_fill(row))
            self._remember(str(row.order_id or row.client_id), row.trade_id)
            self._last[row.symbol] = max(self._last.get(row.symbol, 0.0), float(row.ts))

    def held(self) -> set[str]:
        """Symbols whose recorded fills leave a position open."""
        return {s for s, lot in self.lots.items() if abs(lot.size) > 1e-12}

    def align(self, positions: Mapping[str, Position], now: float | None = None) -> list[str]:
        """Take the exchange's position wherever the record disagrees with it; returns those
        symbols (logged ``fills_realigned``)."""
        at = self.clock() if now is None else now
        changed = []
        for sym in set(self.lots) | set(positions):
            lot = self.lots.setdefault(sym, Lots(sym))
            pos = positions.get(sym)
            want = 0.0 if pos is None else (pos.amount if pos.side == "long" else -pos.amount)
            if abs(lot.size - want) <= max(1e-9, abs(want) * 1e-9):
                continue
            log.warning("fills_realigned", symbol=sym, recorded=lot.size, exchange=want)
            lot.reset(want, 0.0 if pos is None else pos.entry_price, at)
            changed.append(sym)
        return changed

    def _remember(self, order_key: str, trade_id: str) -> bool:
        key = (order_key, trade_id)
        if key in self._seen:
            return False
        self._seen[key] = None
        while len(self._seen) > SEEN_MAX:
            self._seen.popitem(last=False)
        return True

    # -- taking fills in ---------------------------------------------------------------------
    async def ingest(self, trades: Iterable[Mapping[str, Any]]) -> int:
        """Record the new ones among ``trades`` (ccxt trade structures), oldest first; returns
        how many were new."""
        new = 0
        for trade in sorted(trades, key=lambda t: (t.get("timestamp") or 0, str(t.get("id")))):
            if await self._one(trade):
                new += 1
        return new

    async def _base(self, trade: Mapping[str, Any]) -> Mapping[str, Any]:
        """The fill's amount in base units (OKX's fills count contracts)."""
        if not self.venue.needs_market:
            return trade
        markets = await self.exchange.load_markets()
        return self.venue.trade_in_base(trade, markets.get(str(trade.get("symbol"))))

    async def _one(self, raw: Mapping[str, Any]) -> bool:
        trade = await self._base(raw)
        trade_id, order_id = trade.get("id"), trade.get("order")
        symbol = trade.get("symbol")
        if trade_id is None or symbol is None or trade.get("timestamp") is None:
            return False
        key = str(order_id) if order_id is not None else ""
        if (key, str(trade_id)) in self._seen:
            return False
        client_id = await self._client_id(trade)
        role = self._role(client_id, trade)
        realized = _realized(trade)
        recorded = self._write(trade, client_id, role, realized)
        if recorded is False:  # the store had it (recorded before a restart)
            self._remember(key, str(trade_id))
            return False
        self._remember(key, str(trade_id))
        self.recorded += 1
        ts = float(trade["timestamp"]) / 1000.0
        self._last[str(symbol)] = max(self._last.get(str(symbol), 0.0), ts)
        fee = trade.get("fee") or {}
        fill = Fill(
            symbol=str(symbol),
            side=str(trade.get("side")),
            amount=float(trade.get("amount") or 0.0),
            price=float(trade.get("price") or 0.0),
            fee=float(fee.get("cost") or 0.0),
            ts=ts,
            role=role,
            realized_pnl=realized,
        )
        log.info(
            "fill_recorded",
            symbol=fill.symbol,
            side=fill.side,
            amount=fill.amount,
            price=fill.price,
            fee=fill.fee,
            fee_currency=fee.get("currency"),
            realized_pnl=realized,
            role=role,
            client_id=client_id,
        )
        lot = self.lots.setdefault(fill.symbol, Lots(fill.symbol))
        trip = lot.apply(fill)
        if trip is not None and self.on_close is not None:
            self.on_close(trip)
        return True

    def _write(
        self, trade: Mapping[str, Any], client_id: str | None, role: str, realized: float | None
    ) -> bool | None:
        def go(s: Any) -> bool:
            return bool(s.record_trade(trade, client_id, role=role, realized_pnl=realized))

        write = getattr(self.store, "write", None)
        if write is not None:  # a SafeStore: kept for later when the store cannot write
            result: bool | None = write("fill", go)
            return result
        return go(self.store)

    async def _client_id(self, trade: Mapping[str, Any]) -> str | None:
        named = self.venue.trade_client_id(trade)
        if named:
            return named
        order_id = trade.get("order")
        if order_id is None:
            return None
        oid = str(order_id)
        if oid in self._clients:
            return self._clients[oid]
        row = self.store.order_by_exchange_id(oid)
        if row is not None:
            self._clients[oid] = row.client_id
            return str(row.client_id)
        try:  # an order the bot did not send: ask the exchange whose it is
            order = await self.exchange.fetch_order(oid, trade.get("symbol"))
            found = order.get("clientOrderId")
        except Exception as exc:
            log.warning("fill_order_lookup_failed", order_id=oid, error=describe(exc))
            return None
        self._clients[oid] = str(found) if found else None
        return self._clients[oid]

    def _role(self, client_id: str | None, trade: Mapping[str, Any]) -> str:
        if client_id:
            row = self.store.order(client_id)
            if row is not None:
                return order_role(row.params, client_id)
        origin = self.venue.fill_origin(client_id, trade)
        return origin if origin is not None else "manual"

    # -- from the exchange -------------------------------------------------------------------
    async def sync(self, symbols: Iterable[str] | None = None) -> int:
        """REST reconciliation: the fills since the last one seen, per symbol; returns how many
        were new. One reconciliation runs at a time: asked for while one runs, the symbols
        join it (no lock is held; the callers wait for the same task)."""
        self._pending.update(symbols if symbols is not None else self.symbols)
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = asyncio.create_task(self._drain(), name="fills-sync")
        return await asyncio.shield(self._sync_task)

    def request_sync(self, symbols: Iterable[str]) -> None:
        """Reconcile ``symbols`` soon, in the background (a position gone from the account)."""
        self._pending.update(symbols)
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = asyncio.create_task(self._drain(), name="fills-sync")
            self._sync_task.add_done_callback(_quiet)

    async def _drain(self) -> int:
        new = 0
        while self._pending:
            sym = self._pending.pop()
            last = self._last.get(sym)
            since = (last - 1.0) if last is not None else self.clock() - LOOKBACK_S
            size = min(PAGE, self.venue.trades_page)
            found: list[Mapping[str, Any]] = []
            for query in self.venue.fill_queries():  # then taken in order of time, all at once
                found.extend(await self._pages(sym, since, size, query))
            new += await self.ingest(found)
        if new:
            log.info("fills_reconciled", new=new)
        return new

    async def _pages(
        self, sym: str, since: float, size: int, query: Mapping[str, Any]
    ) -> list[Mapping[str, Any]]:
        """Every fill of ``sym`` since ``since`` for one query, page after page: forwards from
        the last fill of a full page, or -- where a full page holds the newest fills -- back
        from its oldest with ``until`` (the boundary's fills come twice and are recorded once)."""
        found: list[Mapping[str, Any]] = []
        start_ms, until = int(since * 1000), None
        while True:
            params = dict(query) if until is None else {**query, "until": until}
            page = await self.exchange.fetch_my_trades(sym, start_ms, size, params)
            found.extend(page)
            if len(page) < size:
                return found
            stamps = [int(t["timestamp"]) for t in page]
            if self.venue.trades_newest_first:
                oldest = min(stamps)
                if until is not None and oldest >= until:  # a full page within one millisecond
                    log.warning("fills_page_stuck", symbol=sym, at_ms=oldest)
                    return found
                until = oldest
            else:
                if max(stamps) <= start_ms:
                    log.warning("fills_page_stuck", symbol=sym, at_ms=start_ms)
                    return found
                start_ms = max(stamps)

    async def sync_orders(self) -> int:
        """Look up the orders the store still has as open; record how they ended."""
        updated = 0
        for row in self.store.open_orders_recorded():
            params = self.venue.lookup_params(row.client_id, row.stop_price is not None)
            try:
                order = await self.exchange.fetch_order("", row.symbol, params)
            except Exception as exc:
                if type(exc).__name__ == "OrderNotFound":
                    self._update({"status": "canceled"}, row.client_id, "not found")
                continue
            self._update(order, row.client_id)
            updated += 1
        return updated

    def on_orders(self, orders: Iterable[Mapping[str, Any]]) -> None:
        """Order updates from the stream: the store follows their status. An order the bot did
        not send that filled (a liquidation, an auto-deleverage, a close by hand) has its fills
        fetched at once: ccxt's ``watch_my_trades`` skips the exchange's own executions
        (Binance's ``CALCULATED``), and the account read may never have shown the position."""
        foreign: set[str] = set()
        for order in orders:
            self._update(order, None)
            client_id, symbol = order.get("clientOrderId"), order.get("symbol")
            if symbol is None or not float(order.get("filled") or 0.0) > 0.0:
                continue
            if not client_id or self.store.order(str(client_id)) is None:
                foreign.add(str(symbol))
        if foreign:
            self.request_sync(foreign)

    def _update(self, order: Mapping[str, Any], client_id: str | None, note: str = "") -> None:
        snapshot = dict(order)
        if note and client_id is not None:
            self._write_any("order_status", lambda s: s.order_status(client_id, "canceled"))
            return
        self._write_any("order_update", lambda s: s.order_update(snapshot, client_id=client_id))

    def _write_any(self, what: str, fn: Callable[[Any], Any]) -> None:
        write = getattr(self.store, "write", None)
        try:
            if write is not None:
                write(what, fn)
            else:
                fn(self.store)
        except Exception as exc:  # an order the store never saw, a bad transition
            log.debug("order_update_skipped", error=describe(exc))

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Follow the exchange until cancelled: the user-data stream where there is one (a
        REST reconciliation after every reconnect), else REST polling every ``poll_s``."""
        streams = bool(getattr(self.exchange, "streams_fills", False))
        tasks = [asyncio.create_task(self._trades_loop(streams), name="fills")]
        if streams and hasattr(self.exchange, "watch_orders"):
            tasks.append(asyncio.create_task(self._orders_loop(), name="order-updates"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _trades_loop(self, streams: bool) -> None:
        broken = False
        while True:
            if not streams:
                try:
                    await self.sync()
                except Exception as exc:
                    log.warning("fills_poll_failed", error=describe(exc))
                await asyncio.sleep(self.poll_s)
                continue
            try:
                if broken:  # what the stream missed while it was down: fills, orders ended
                    await self.sync()
                    await self.sync_orders()
                    broken = False
                trades = await self.exchange.watch_my_trades()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stream_failures += 1
                broken = True
                log.warning("fills_stream_failed", error=describe(exc), fallback="rest")
                await asyncio.sleep(min(1.0 * self.stream_failures, 30.0))
                continue
            await self.ingest(trades)

    async def _orders_loop(self) -> None:
        failures = 0
        while True:
            try:
                orders = await self.exchange.watch_orders()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning("orders_stream_failed", error=describe(exc))
                await asyncio.sleep(min(1.0 * failures, 30.0))
                continue
            failures = 0
            self.on_orders(orders)


def _quiet(task: asyncio.Task[int]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("fills_reconcile_failed", error=describe(task.exception()))  # type: ignore[arg-type]


def _realized(trade: Mapping[str, Any]) -> float | None:
    """The exchange's realised PnL of a fill: Binance's ``rp`` (stream) / ``realizedPnl``
    (REST and the paper exchange), OKX's ``fillPnl``; Bybit's executions carry none."""
    info = trade.get("info") or {}
    for key in ("rp", "realizedPnl", "fillPnl"):
        value = info.get(key)
        if value is None or value == "":
            continue
        try:
            return float(value)
        except (TypeError, ValueError):
            continue
    return None
