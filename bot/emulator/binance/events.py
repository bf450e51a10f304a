"""What Binance's user-data stream carries, derived from the paper core after every change.

After every request, price and control action (``_after_change``) the emulator compares the
core with what it last saw and pushes, in the order it happened:

``ORDER_TRADE_UPDATE`` (shape of Binance's "Event: Order Update")
  ``x=NEW X=NEW`` when an order is accepted (a market order too, before its fill);
  ``x=TRADE X=FILLED`` (``PARTIALLY_FILLED`` then ``x=EXPIRED``, ``er`` 9, for a market order cut
  short by the ``partial_fill`` fault) with the fill: ``l``/``L`` last quantity and price, ``z``,
  ``ap``, commission ``n`` in ``N``, trade id ``t`` (the ``userTrades`` id), maker ``m``,
  realised profit ``rp``; ``x=CANCELED`` for the user's cancels, ``x=EXPIRED`` for the
  exchange's (reduce-only orders of a closed position; ``er`` 5 when a liquidation took them).
  The exchange's own orders: a liquidation is ``c=autoclose-<n>``, ``o=ot=LIQUIDATION``, ``f=IOC``;
  an auto-deleverage ``c=adl_autoclose``, ``o=ot=LIMIT``, ``f=GTC`` (as ``/fapi/v1/forceOrders``
  shows it); both ``x=NEW`` first (Binance: "c shows autoclose-XXX, X shows NEW"), then the fill
  as ``x=CALCULATED`` ("Liquidation Execution") ``X=FILLED``. ccxt's ``watch_my_trades`` takes
  ``x=TRADE`` only, so those fills reach ``watch_orders`` (and ``userTrades``), not it.
``ALGO_UPDATE`` (conditional orders, "Event: Algo Order Update")
  ``X=NEW`` when placed, ``CANCELED`` (the user), ``EXPIRED`` (the exchange: the position it
  protected is gone), ``REJECTED`` (triggered but refused, ``rm``); when triggered,
  ``X=TRIGGERED`` with ``ai`` the matching-engine order it placed (``act=MARKET``), then that
  order's ``ORDER_TRADE_UPDATE`` NEW and TRADE (client id ``c`` = the algo order's ``caid``,
  ``o=MARKET``, ``ot`` the algo type, ``sp`` its trigger), then ``X=FINISHED`` with ``ap``/``aq``.
  As in Binance's documented example, ``T`` is the event time and ``E`` the transaction time.
``ACCOUNT_UPDATE`` ("Event: Balance and Position Update")
  after each fill (``m=ORDER``: the wallet ``wb``, cross wallet ``cw``, ``bc`` 0, and the
  fill's symbol's position ``pa``/``ep``/``bep``/``cr``/``up``/``mt``/``iw``), and after each
  funding charge (``m=FUNDING_FEE``, ``bc`` the charge; the position only when isolated).
  Balances are the account's as the event is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ccxt.base.errors import OrderNotFound

from bot.emulator.binance.shapes import _ENGINE_BASE, _EngineOrder, _Pending, _s
from bot.emulator.binance.userdata import BinanceUserData
from paper.core import Fill
from paper.core.adl import ADL_ORDER_PREFIX
from paper.core.records import LIQUIDATION_ORDER_PREFIX

Event = dict[str, Any]


@dataclass(frozen=True, slots=True)
class _View:
    """What an ``ORDER_TRADE_UPDATE`` repeats about its order on every event."""

    symbol_id: str
    client_id: str
    side: str
    type: str
    orig_type: str
    time_in_force: str
    qty: float
    price: float
    stop: float
    order_id: int
    reduce_only: bool
    working_type: str
    close_position: bool


class BinanceEvents(BinanceUserData):
    """Derives the user-data events from the core (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        core = self.core
        self._ud_order_seq = core.last_order_id
        self._ud_open: set[str] = {o["id"] for o in core.open_orders()}
        self._ud_fill_cursor = core.fill_cursor
        self._ud_funding_cursor = core.funding_cursor
        self._ud_pending: dict[str, _Pending] = dict(self._pending)
        #: Realised price PnL per symbol (``cr`` of ACCOUNT_UPDATE).
        self._ud_realized: dict[str, float] = {}
        self._ud_busy = False

    def _after_change(self) -> None:
        self._check_listen_key()
        self._sync_user_data()

    def _sync_user_data(self) -> None:
        """Record the matching engine's new orders and push what changed since the last call."""
        if self._ud_busy:
            return
        self._ud_busy = True
        try:
            events = self._collect(max(self.now_ms(), self.core.now_ms))
        finally:
            self._ud_busy = False
        self._publish_user(events)

    def _collect(self, now: int) -> list[Event]:
        core = self.core
        out: list[Event] = []
        for ext, pending in self._pending.items():  # acknowledged as NEW, filled later
            if ext not in self._ud_pending:
                self._ud_pending[ext] = pending
                out.append(self._otu(self._pending_view(pending), "NEW", pending.time_ms, now))
        last = core.last_order_id
        for seq in range(self._ud_order_seq + 1, last + 1):
            core_id = str(seq)
            try:
                order = core.fetch_order(core_id)
            except OrderNotFound:
                continue
            self._ud_open.add(core_id)
            if self._ud_pending.pop(self._ext(core_id), None) is not None:
                continue  # its NEW went out when it was acknowledged
            if order["triggerPrice"] is not None:
                out.append(self._algo_event(order, "NEW", now))
            else:
                out.append(self._otu(self._core_view(order), "NEW", order["timestamp"], now))
        self._ud_order_seq = last
        for fill in core.fills_since(self._ud_fill_cursor):
            self._ud_fill_cursor = fill.id
            out.extend(self._fill_events(fill, now))
        out.extend(self._terminal_events(None, now, "0"))
        for ext, pending in list(self._ud_pending.items()):
            if ext in self._pending:
                continue
            del self._ud_pending[ext]
            status = self._overlay.get(ext, {}).get("status", "EXPIRED")
            if not self._ext_to_core.get(ext):  # canceled, or refused when it came to fill
                out.append(self._otu(self._pending_view(pending), status, now, now))
        for pay in core.funding_since(self._ud_funding_cursor):
            self._ud_funding_cursor = pay.id
            isolated = core.margin_mode(pay.symbol) == "isolated"
            out.append(
                self._account_event("FUNDING_FEE", pay.symbol, pay.timestamp, now, pay.amount)
                if isolated
                else self._account_event("FUNDING_FEE", None, pay.timestamp, now, pay.amount)
            )
        return out

    # -- fills ----------------------------------------------------------------------------------
    def _fill_events(self, fill: Fill, now: int) -> list[Event]:
        out: list[Event] = []
        ts = fill.timestamp
        if fill.order_id.startswith((LIQUIDATION_ORDER_PREFIX, ADL_ORDER_PREFIX)):
            liquidation = fill.order_id.startswith(LIQUIDATION_ORDER_PREFIX)
            if liquidation:  # the engine took the symbol's open orders first
                out.extend(self._terminal_events(fill.symbol, now, "5"))
            engine = self._engine_order(fill, "liquidation" if liquidation else "adl", None)
            ws_type = "LIQUIDATION" if liquidation else engine.type
            view = self._engine_view(engine, ws_type, ws_type)
            out.append(self._otu(view, "NEW", ts, now))
            out.append(self._otu(view, "CALCULATED", ts, now, fill=fill))
        else:
            order = self.core.fetch_order(fill.order_id)
            if order["triggerPrice"] is not None:
                engine = self._engine_order(fill, "triggered", order)
                view = self._engine_view(engine, engine.type, engine.orig_type)
                out.append(self._algo_event(order, "TRIGGERED", now, engine, finished=False))
                out.append(self._otu(view, "NEW", ts, now))
                out.append(self._otu(view, "TRADE", ts, now, fill=fill))
                out.append(self._algo_event(order, "FINISHED", now, engine))
            else:
                view = self._core_view(order)
                expired = self._overlay.get(self._ext(order["id"]), {}).get("status") == "EXPIRED"
                cut = expired and view.qty > fill.amount
                status = "PARTIALLY_FILLED" if cut else "FILLED"
                out.append(self._otu(view, "TRADE", ts, now, fill=fill, status=status))
                if cut:  # the rest of a market order that could not fill expires
                    out.append(
                        self._otu(
                            view, "EXPIRED", ts, now, filled=(fill.amount, fill.price), er="9"
                        )
                    )
        self._ud_realized[fill.symbol] = self._ud_realized.get(fill.symbol, 0.0) + (
            fill.realized_pnl
        )
        out.append(self._account_event("ORDER", fill.symbol, ts, now))
        return out

    def _engine_order(self, fill: Fill, kind: str, trigger: dict[str, Any] | None) -> _EngineOrder:
        """The matching-engine order a fill of the exchange's (or of a triggered stop) belongs
        to, recorded once."""
        known = self._engine_by_core.get(fill.order_id)
        if known is not None:
            return self._engine[known]
        self._engine_seq += 1
        ext = str(_ENGINE_BASE + self._engine_seq)
        side = fill.side.upper()
        if trigger is not None:
            algo_ext = self._ext(trigger["id"])
            info = trigger["info"]
            engine = _EngineOrder(
                ext,
                kind,
                fill.symbol,
                self._cid_by_oid.get(algo_ext, ""),
                side,
                "MARKET",
                str(trigger["type"]).upper(),
                "GTC",
                fill.amount,
                0.0,
                fill.price,
                fill.timestamp,
                fill.id,
                stop_price=float(trigger["triggerPrice"]),
                working_type=str(info.get("workingType", "CONTRACT_PRICE")),
                close_position=bool(info.get("closePosition")),
                reduce_only=bool(trigger["reduceOnly"]),
                algo_ext=algo_ext,
            )
        else:
            liquidation = kind == "liquidation"
            engine = _EngineOrder(
                ext,
                kind,
                fill.symbol,
                fill.client_order_id or "",
                side,
                "LIMIT",
                "LIMIT",
                "IOC" if liquidation else "GTC",
                fill.amount,
                fill.price,
                fill.price,
                fill.timestamp,
                fill.id,
                reduce_only=False,
            )
        self._engine[ext] = engine
        self._engine_by_core[fill.order_id] = ext
        return engine

    def _fill_order_ext(self, fill: Fill) -> str:
        """The external order id of the order ``fill`` belongs to."""
        return self._engine_by_core.get(fill.order_id) or self._ext(fill.order_id)

    # -- orders that ended without a fill -------------------------------------------------------
    def _terminal_events(self, symbol: str | None, now: int, er: str) -> list[Event]:
        """Events of the tracked orders (of ``symbol``) that ended since the last look."""
        out: list[Event] = []
        for core_id in sorted(self._ud_open, key=int):
            order = self.core.fetch_order(core_id)
            if order["status"] == "open" or (symbol is not None and order["symbol"] != symbol):
                continue
            self._ud_open.discard(core_id)
            if order["status"] == "closed":
                continue  # its fill told it
            trigger = order["triggerPrice"] is not None
            if trigger:
                out.append(self._algo_event(order, self._algo_status(order), now))
            else:
                status = self._status(order)
                out.append(self._otu(self._core_view(order), status, now, now, er=er))
        return out

    # -- shapes ---------------------------------------------------------------------------------
    def _core_view(self, order: dict[str, Any]) -> _View:
        ext = self._ext(order["id"])
        typ = str(order["type"]).upper()
        orig = self._overlay.get(ext, {}).get("origQty")
        return _View(
            self.core.market(order["symbol"]).id,
            self._cid_by_oid.get(ext, ""),
            str(order["side"]).upper(),
            typ,
            typ,
            "GTC",
            float(orig) if orig is not None else float(order["amount"]),
            float(order["price"] or 0.0) if typ == "LIMIT" else 0.0,
            0.0,
            int(ext),
            bool(order["reduceOnly"]),
            "CONTRACT_PRICE",  # a working type is a trigger's; Binance's default otherwise
            False,
        )

    def _pending_view(self, p: _Pending) -> _View:
        return _View(
            self.core.market(p.symbol).id,
            p.client_id,
            p.side,
            "MARKET",
            "MARKET",
            "GTC",
            p.qty,
            0.0,
            0.0,
            int(p.ext_id),
            bool(p.params.get("reduceOnly")),
            "CONTRACT_PRICE",
            False,
        )

    def _engine_view(self, e: _EngineOrder, typ: str, orig_type: str) -> _View:
        return _View(
            self.core.market(e.symbol).id,
            e.client_id,
            e.side,
            typ,
            orig_type,
            e.time_in_force,
            e.qty,
            e.price,
            e.stop_price,
            int(e.ext_id),
            e.reduce_only,
            e.working_type,
            e.close_position,
        )

    def _otu(
        self,
        v: _View,
        execution: str,
        ts: int,
        now: int,
        *,
        fill: Fill | None = None,
        status: str | None = None,
        filled: tuple[float, float] = (0.0, 0.0),
        er: str = "0",
    ) -> Event:
        """One ``ORDER_TRADE_UPDATE``: execution type ``x``, status ``X`` (``status``, else the
        one the execution type implies); ``filled`` = (cumulative, average) without a fill."""
        if status is None:
            status = "FILLED" if fill is not None else execution
        cum, avg = (fill.amount, fill.price) if fill is not None else filled
        o: dict[str, Any] = {
            "s": v.symbol_id,
            "c": v.client_id,
            "S": v.side,
            "o": v.type,
            "f": v.time_in_force,
            "q": _s(v.qty),
            "p": _s(v.price),
            "ap": _s(avg),
            "sp": _s(v.stop),
            "x": execution,
            "X": status,
            "i": v.order_id,
            "l": _s(fill.amount) if fill is not None else "0",
            "z": _s(cum),
            "L": _s(fill.price) if fill is not None else "0",
        }
        if fill is not None:  # Binance: "will not push if no commission"
            o["N"] = fill.fee_currency
            o["n"] = _s(round(fill.fee, 8))
        o.update(
            {
                "T": ts,
                "t": fill.id if fill is not None else 0,
                "b": "0",
                "a": "0",
                "m": fill is not None and fill.taker_or_maker == "maker",
                "R": v.reduce_only,
                "wt": v.working_type,
                "ot": v.orig_type,
                "ps": "BOTH",
                "cp": v.close_position,
                "rp": _s(round(fill.realized_pnl, 8)) if fill is not None else "0",
                "pP": False,
                "si": 0,
                "ss": 0,
                "V": "EXPIRE_MAKER",
                "pm": "NONE",
                "gtd": 0,
                "er": er,
            }
        )
        return {"e": "ORDER_TRADE_UPDATE", "E": now, "T": ts, "o": o}

    def _algo_event(
        self,
        order: dict[str, Any],
        status: str,
        now: int,
        child: _EngineOrder | None = None,
        *,
        finished: bool = True,
    ) -> Event:
        """One ``ALGO_UPDATE`` of the conditional order ``order`` (a core order dict)."""
        ext = self._ext(order["id"])
        info = order["info"]
        done = child is not None and finished
        o: dict[str, Any] = {
            "caid": self._cid_by_oid.get(ext, ""),
            "aid": int(ext),
            "at": "CONDITIONAL",
            "o": str(order["type"]).upper(),
            "s": self.core.market(order["symbol"]).id,
            "S": str(order["side"]).upper(),
            "ps": "BOTH",
            "f": "GTC",
            "q": _s(order["amount"]),
            "X": status,
            "ai": "" if child is None else child.ext_id,
            "ap": _s(child.avg) if done and child is not None else "0",
            "aq": _s(child.qty) if done and child is not None else "0",
            "act": "0" if child is None else child.type,
            "tp": _s(order["triggerPrice"]),
            "p": "0",
            "V": "EXPIRE_MAKER",
            "wt": str(info.get("workingType", "CONTRACT_PRICE")),
            "pm": "NONE",
            "cp": bool(info.get("closePosition")),
            "pP": False,
            "R": bool(order["reduceOnly"]),
            "tt": 0 if child is None else child.time_ms,
            "gtd": 0,
        }
        if status == "REJECTED":
            o["rm"] = "Margin is insufficient."
        return {"e": "ALGO_UPDATE", "T": now, "E": now, "o": o}

    def _account_event(
        self, reason: str, symbol: str | None, ts: int, now: int, change: float = 0.0
    ) -> Event:
        """One ``ACCOUNT_UPDATE``: the balance, and the position of ``symbol`` if given."""
        core = self.core
        balance = {
            "a": core.currency,
            "wb": _s(core.wallet_balance),
            "cw": _s(core.cross_wallet_balance),
            "bc": _s(change),
        }
        positions = [] if symbol is None else [self._ws_position(symbol)]
        return {
            "e": "ACCOUNT_UPDATE",
            "E": now,
            "T": ts,
            "a": {"m": reason, "B": [balance], "P": positions},
        }

    def _ws_position(self, symbol: str) -> dict[str, Any]:
        core = self.core
        realized = _s(round(self._ud_realized.get(symbol, 0.0), 8))
        found = core.positions([symbol])
        if not found:
            return {
                "s": core.market(symbol).id,
                "pa": "0",
                "ep": "0",
                "bep": "0",
                "cr": realized,
                "up": "0",
                "mt": "isolated" if core.margin_mode(symbol) == "isolated" else "cross",
                "iw": "0",
                "ps": "BOTH",
                "ma": core.currency,
            }
        p = found[0]
        sign = 1 if p["side"] == "long" else -1
        return {
            "s": core.market(symbol).id,
            "pa": _s(sign * float(p["contracts"])),
            "ep": _s(p["entryPrice"]),
            "bep": _s(p["entryPrice"]),
            "cr": realized,
            "up": _s(p["unrealizedPnl"]),
            "mt": "isolated" if p["marginMode"] == "isolated" else "cross",
            "iw": _s(p["info"]["isolatedWallet"]),
            "ps": "BOTH",
            "ma": core.currency,
        }
