"""Matching: order placement and validation, triggers on the price path, fills and slippage.

Orders
  market, limit, stop-market and take-profit-market (``stopLossPrice`` / ``takeProfitPrice`` /
  ``triggerPrice`` params, or types ``stop_market`` / ``take_profit_market``), ``reduceOnly``,
  ``closePosition``. Amounts and prices are put on the market's grid only when an order is
  created (``Book.amount_to_precision`` / ``price_to_precision``). Below the minimum amount or
  the minimum notional (not checked for reduce-only, like Binance) -> ``InvalidOrder``.
  ``clientOrderId`` duplicates -> ``DuplicateOrderId`` (an ``InvalidOrder``). A trigger that
  would fire at once -> ``OrderImmediatelyFillable``. Leverage above what the position's tier
  allows -> ``InvalidOrder``; margin short (free margin below initial margin + fee, or a
  position that would be liquidatable at the mark right after the fill) -> ``InsufficientFunds``;
  a triggered order refused for those reasons ends ``rejected``. A refused order leaves no trace.
  ``params["reason"]`` labels the round trip a closing fill ends (default: ``"strategy"``,
  ``"stop"`` or ``"take_profit"`` by order type; the engine itself uses ``"liquidation"``), and
  ``params["tag"]`` is a free label kept on the order, position and trade, e.g. a guard rule.

Fills
  Market orders and triggered stops / take-profits are taker fills at ``price * (1 +/- slip)``
  with ``slip = slippage_bps / 1e4 + participation_coef * amount / candle volume`` (volume from
  ``on_candle_volume``; the term is 0 without it; capped at 0.99), adverse to the order's
  side. A trigger fires when its basis price (mark or last: ``workingType`` param, else
  ``config.trigger_price``) crosses it. The move from the previous price point is either a
  path (the intrabar walk of a candle, or consecutive live prices: the price is taken to have
  travelled through every level in between) or a gap (``on_price(..., gap=True)``: a candle's
  open after the previous close, a feed resuming after an outage). A trigger a path crosses
  fills at its trigger price (plus slippage) — also on the first price after it was armed, so a
  stop placed at a candle's open and crossed by the walk fills at the stop, not at the extreme;
  a trigger a gap jumps fills at the price after the gap (the last price). A resting limit
  fills as maker at its own price when the last price reaches it (no price improvement); a limit
  that is marketable on arrival fills at once as taker at the slipped last price, capped at its
  limit.

Order of events
  Within one price point, events are taken in the order the price path meets them (distance from
  the previous price); after a gap, the gapped triggers come first, and a liquidation crossed
  on the same point beats them (the gap is past the liquidation price, so the engine has the
  position before the stop can act). Reduce-only orders never flip or grow a position; when
  a position goes flat its resting reduce-only / close-position orders are cancelled
  (``cancel_reduce_only_on_flat``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from ccxt.base.errors import (
    BadRequest,
    DuplicateOrderId,
    InsufficientFunds,
    InvalidOrder,
    NotSupported,
    OrderImmediatelyFillable,
    OrderNotFound,
)

from paper.config import PaperConfig
from paper.core.book import Book
from paper.core.ledger import Ledger
from paper.core.liquidation import LiquidationEngine
from paper.core.records import (
    EPS,
    INF,
    LIMIT,
    MARKET,
    STOP,
    TAKE,
    Fill,
    OrderRecord,
    Trade,
    default_reason,
    snap,
)

#: A guard against an endless loop of events on one price point.
MAX_EVENTS_PER_PRICE: Final = 256


def _distance(level: float, prev: float) -> float:
    """How far the price travelled from ``prev`` to ``level`` (0 without a previous price)."""
    return 0.0 if math.isnan(prev) else abs(level - prev)


class Matcher:
    """Every order ever placed, and the matching of the open ones against the price path."""

    __slots__ = (
        "client_ids",
        "coef",
        "engine",
        "history",
        "ledger",
        "orders",
        "seq",
        "slip",
        "trigger_on_mark",
    )

    def __init__(self, config: PaperConfig, ledger: Ledger, engine: LiquidationEngine) -> None:
        self.ledger = ledger
        self.history = ledger.history
        self.engine = engine
        self.slip = config.slippage_bps / 1e4
        self.coef = config.participation_coef
        self.trigger_on_mark = config.trigger_price == "mark"
        #: Every order by id; the last order id handed out.
        self.orders: dict[str, OrderRecord] = {}
        self.client_ids: dict[str, str] = {}
        self.seq = 0

    # ------------------------------------------------------------------ placement

    def create(
        self,
        b: Book,
        type_: str,
        side: str,
        amount: float,
        price: float | None,
        p: Mapping[str, Any],
        now: int,
    ) -> OrderRecord:
        """Validate and place an order: filled at once, resting or armed."""
        client_id = str(p.get("clientOrderId") or p.get("newClientOrderId") or "")
        if client_id and client_id in self.client_ids:
            raise DuplicateOrderId(f"paper Duplicate clientOrderId {client_id!r}")
        side = side.lower()
        if side not in ("buy", "sell"):
            raise InvalidOrder(f"paper invalid order side {side!r}")
        sign = 1 if side == "buy" else -1
        kind, trigger = self.order_kind(type_.lower(), p)
        reduce_only = bool(p.get("reduceOnly", False))
        close_position = bool(p.get("closePosition", False))
        working = p.get("workingType")
        if working is None:
            on_mark = self.trigger_on_mark
        elif working in ("MARK_PRICE", "mark"):
            on_mark = True
        elif working in ("CONTRACT_PRICE", "last"):
            on_mark = False
        else:
            raise BadRequest(f"paper unknown workingType {working!r}")
        pos = b.pos
        if close_position:
            if kind == LIMIT:
                raise InvalidOrder("paper closePosition is for market and trigger orders")
            qty = 0.0
        else:
            qty = b.amount_to_precision(amount)
        if kind == LIMIT:
            if price is None:
                raise InvalidOrder("paper a limit order needs a price")
            price = b.price_to_precision(price)
        else:
            price = None
        if trigger is not None:
            trigger = b.price_to_precision(trigger)
        reducing = reduce_only or close_position
        if kind in (MARKET, LIMIT) and reducing and (pos is None or pos.sign == sign):
            raise InvalidOrder("paper ReduceOnly Order is rejected: no position to reduce")
        ref = price if price is not None else trigger if trigger is not None else b.last
        if not reducing and qty * ref < b.rules.min_notional - EPS:
            if math.isnan(ref):
                raise InvalidOrder(f"paper no price yet for {b.symbol}")
            raise InvalidOrder(
                f"paper Order's notional must be no smaller than {b.rules.min_notional} "
                "(unless you choose reduce only)"
            )
        if kind in (MARKET, LIMIT) and not reducing and not math.isnan(ref):
            self.check_leverage(b, sign, qty, ref)
        if trigger is not None:
            self._check_not_immediate(b, kind, sign, trigger, on_mark)
        reason = str(p.get("reason") or default_reason(kind))
        self.seq += 1
        o = OrderRecord(
            self.seq,
            client_id,
            b.symbol,
            kind,
            side,
            qty,
            price,
            trigger,
            on_mark,
            reduce_only,
            close_position,
            reason,
            str(p.get("tag", "")),
            now,
        )
        try:
            self._place(b, o, p, now)
        except Exception:
            self.seq -= 1  # a refused order leaves no trace
            raise
        self.orders[o.id] = o
        if client_id:
            self.client_ids[client_id] = o.id
        return o

    def _place(self, b: Book, o: OrderRecord, p: Mapping[str, Any], now: int) -> None:
        """Fill a market / marketable limit order now, or rest it (limit) or arm it (trigger)."""
        if o.type == MARKET:
            if math.isnan(b.last):
                raise InvalidOrder(f"paper no price yet for {b.symbol}")
            pos = b.pos
            amount = pos.amount if o.close_position and pos is not None else o.amount
            self._execute(b, o, self._slipped(b, o.sign, b.last, amount), False, now)
        elif o.type == LIMIT:
            assert o.price is not None
            if not math.isnan(b.last) and o.sign * (b.last - o.price) <= 0:
                if p.get("postOnly") or p.get("timeInForce") == "GTX":
                    raise OrderImmediatelyFillable("paper post-only order would take liquidity")
                fill = self._slipped(b, o.sign, b.last, o.amount)
                fill = min(fill, o.price) if o.sign > 0 else max(fill, o.price)
                self._execute(b, o, fill, False, now)
            else:
                self._rest_limit(b, o)
        else:
            o.armed_seq = b.seq
            b.orders.append(o)
            self.ledger.rearm(b)

    @staticmethod
    def order_kind(type_: str, p: Mapping[str, Any]) -> tuple[str, float | None]:
        """``(kind, trigger)`` of a ccxt order type and params."""
        stop = p.get("stopLossPrice")
        take = p.get("takeProfitPrice")
        trig = p.get("triggerPrice", p.get("stopPrice"))
        if type_ in ("stop", "take_profit") or (
            type_ == LIMIT and (stop is not None or take is not None or trig is not None)
        ):
            raise NotSupported("paper supports stop-market / take-profit-market triggers only")
        if stop is not None:
            return STOP, float(stop)
        if take is not None:
            return TAKE, float(take)
        if type_ in (STOP, TAKE):
            if trig is None:
                raise InvalidOrder(f"paper a {type_} order needs a triggerPrice")
            return type_, float(trig)
        if trig is not None and type_ == MARKET:
            return STOP, float(trig)
        if type_ in (MARKET, LIMIT):
            return type_, None
        raise NotSupported(f"paper does not support order type {type_!r}")

    @staticmethod
    def _check_not_immediate(b: Book, kind: str, sign: int, trigger: float, on_mark: bool) -> None:
        x = b.mark if on_mark else b.last
        if math.isnan(x):
            return
        up = (sign > 0) == (kind == STOP)
        if (x >= trigger) if up else (x <= trigger):
            raise OrderImmediatelyFillable("paper Order would immediately trigger")

    @staticmethod
    def check_leverage(b: Book, sign: int, qty: float, price: float) -> None:
        """The book's leverage must be allowed by the tier of the position after the fill."""
        pos = b.pos
        if pos is None:
            after = qty
        elif pos.sign == sign:
            after = pos.amount + qty
        else:
            after = qty - pos.amount
        if after <= 0:
            return
        cap = b.max_leverage(after * price, after)
        if b.leverage > cap + EPS:
            raise InvalidOrder(
                f"paper Exceeded the maximum allowable position at current leverage "
                f"({b.leverage}x > {cap}x for notional {after * price:.2f})"
            )

    def _slipped(self, b: Book, sign: int, price: float, amount: float) -> float:
        slip = self.slip
        if self.coef and b.volume > 0:
            slip = min(slip + self.coef * amount / b.volume, 0.99)  # keeps sell prices > 0
        return price * (1.0 + sign * slip)

    def _rest_limit(self, b: Book, o: OrderRecord) -> None:
        assert o.price is not None
        led = self.ledger
        if not o.reducing:
            pos = b.pos
            opening = o.amount
            if pos is not None and pos.sign != o.sign:
                opening = max(0.0, o.amount - pos.amount)
            need = opening * o.price / b.leverage + opening * o.price * b.maker
            if need > led.free_margin + EPS:
                raise InsufficientFunds(f"paper Margin is insufficient: need {need:.8f}")
            o.reserved = need
            led.reserved += need
        o.armed_seq = b.seq
        b.orders.append(o)
        led.rearm(b)

    def find(self, id: str | None, params: Mapping[str, Any] | None) -> OrderRecord:
        """An order by id, by ``params["clientOrderId"]``, or by a client id given as ``id``."""
        o = self.orders.get(id) if id else None
        if o is None and params:
            cid = params.get("clientOrderId") or params.get("origClientOrderId")
            oid = self.client_ids.get(str(cid)) if cid else None
            o = self.orders.get(oid) if oid else None
        if o is None and id:
            oid = self.client_ids.get(id)
            o = self.orders.get(oid) if oid else None
        if o is None:
            raise OrderNotFound(f"paper Order does not exist: {id!r}")
        return o

    # ------------------------------------------------------------------ the price path

    def resolve(self, b: Book, ts: int, now: int, gap: bool = False) -> None:
        """Handle every event the latest price point crossed, in path order.

        ``ts`` stamps liquidations, ``now`` fills (the same on a price point); ``gap``: the move
        from the previous price was a gap (crossed triggers fill at the last price).
        """
        led = self.ledger
        if b.dynamic:
            led.update_liq(b)
        skip_liq = False
        for _ in range(MAX_EVENTS_PER_PRICE):
            found = self._next_event(b, skip_liq, gap)
            if found is None:
                break
            o, gap = found
            if o is None:
                skip_liq = not self.engine.liquidate(b, ts)
            else:
                self._trigger(b, o, gap, now)
        led.revision += 1
        b.rearm(len(led.cross) > 1)

    @staticmethod
    def _next_event(
        b: Book, skip_liq: bool, gapped: bool = False
    ) -> tuple[OrderRecord | None, bool] | None:
        """The earliest crossed event: ``(order, gap)``, ``(None, False)`` for liquidation.

        ``gapped``: the price point came after a gap, so every trigger it crossed gaps.
        """
        last, mark = b.last, b.mark
        best: OrderRecord | None = None
        best_key = (INF, 0)
        best_gap = False
        any_gap = False
        for o in b.orders:
            if o.type == LIMIT:
                assert o.price is not None
                if not ((last <= o.price) if o.sign > 0 else (last >= o.price)):
                    continue
                key = _distance(o.price, b.prev_last)
                gap = False
            else:
                assert o.trigger is not None
                x = mark if o.on_mark else last
                up = (o.sign > 0) == (o.type == STOP)
                if not ((x >= o.trigger) if up else (x <= o.trigger)):
                    continue
                gap = gapped
                if gap:
                    any_gap = True
                    key = -1.0
                else:
                    key = _distance(o.trigger, b.prev_mark if o.on_mark else b.prev_last)
            if (key, o.seq) < best_key:
                best, best_key, best_gap = o, (key, o.seq), gap
        pos = b.pos
        if pos is not None and pos.liq is not None and not skip_liq:
            liq = pos.liq
            if (mark <= liq) if pos.sign > 0 else (mark >= liq):
                key = -2.0 if any_gap else _distance(liq, b.prev_mark)
                if (key, 0) < best_key:
                    return None, False
        if best is None:
            return None
        return best, best_gap

    def _trigger(self, b: Book, o: OrderRecord, gap: bool, now: int) -> None:
        b.orders.remove(o)
        pos = b.pos
        led = self.ledger
        if o.reducing and (pos is None or pos.sign == o.sign):
            o.status = "canceled"
            led.release(o)
            return
        if o.type == LIMIT:
            assert o.price is not None
            price, maker = o.price, True
        else:
            assert o.trigger is not None
            amount = pos.amount if o.close_position and pos is not None else o.amount
            base = b.last if gap else o.trigger
            price, maker = self._slipped(b, o.sign, base, amount), False
        try:
            self._execute(b, o, price, maker, now)
        except (InsufficientFunds, InvalidOrder):
            o.status = "rejected"
            led.release(o)

    # ------------------------------------------------------------------ fills

    def _execute(self, b: Book, o: OrderRecord, price: float, maker: bool, ts: int) -> None:
        """Fill ``o`` completely at ``price``: reduce the opposite position, then open the rest.

        Records one ``Fill`` (and the ``Trade`` its reducing part closed).
        """
        led = self.ledger
        fee_rate = b.maker if maker else b.taker
        pos = b.pos
        amount = o.amount
        if o.close_position:
            amount = pos.amount if pos is not None and pos.sign != o.sign else 0.0
        reduce = 0.0
        if pos is not None and pos.sign != o.sign:
            reduce = min(amount, pos.amount)
        opening = 0.0 if o.reducing else snap(amount - reduce, b.amount_step)
        if opening > 0.0:
            self.check_leverage(b, o.sign, amount, price)
            need = opening * price / b.leverage + opening * price * fee_rate
            avail = led.free_margin + o.reserved
            if reduce > 0.0:
                avail += led.release_on_reduce(b, reduce, price, fee_rate)
            if need > avail + EPS:
                raise InsufficientFunds(
                    f"paper Margin is insufficient: need {need:.8f}, available {avail:.8f}"
                )
            if led.liquidatable_after(b, o.sign, reduce, opening, price, fee_rate):
                raise InsufficientFunds(
                    "paper Margin is insufficient: the position would be liquidated at once"
                )
        led.release(o)
        fee = pnl = 0.0
        trade: Trade | None = None
        closed = False
        if reduce > 0.0:
            fee, trade = led.reduce(b, reduce, price, fee_rate, ts, o.reason, o.tag)
            pnl = trade.pnl
            closed = b.pos is None
        if opening > 0.0:
            fee += led.open(b, o.sign, opening, price, fee_rate, ts, o.tag)
        filled = reduce + opening
        o.status = "closed"
        o.filled = filled
        if o.close_position:
            o.amount = filled
        o.average = price
        o.fee = fee
        o.last_trade_ts = ts
        history = self.history
        history.add_fill(
            Fill(
                history.next_fill_id(),
                o.id,
                o.client_id or None,
                o.symbol,
                "buy" if o.sign > 0 else "sell",
                filled,
                price,
                fee,
                led.currency,
                pnl,
                ts,
                o.reason,
                o.tag,
                "maker" if maker else "taker",
                o.reducing,
                closed,
            ),
            trade,
        )
