"""``PaperCore``: the paper exchange's synchronous engine, a thin facade over its components.

``PaperCore`` is a deterministic perpetual-futures simulator (linear, USDT-settled, one-way mode).
Its ccxt-like methods (``create_order``, ``cancel_order``, ``fetch_order``, ``open_orders``,
``positions``, ``balance``, ``set_leverage``, ``set_margin_mode``, ``add_margin``) return ccxt's
unified dicts and raise ccxt's exception classes; the replay driver feeds it prices with
``on_price``. No wall clock: time is the ``ts_ms`` of the last price (or ``set_time``).

It composes one ``Book`` per symbol (``paper.core.book``), the ``Matcher`` (orders, triggers,
fills: ``paper.core.matching``), the ``Ledger`` (wallet, fees, funding, margins:
``paper.core.ledger``), the ``LiquidationEngine`` (``paper.core.liquidation``) and the
``History``; the documented exchange behaviour lives with the component that implements it.
``on_price`` itself stays here, as direct as it can be: it is called four times per replayed
candle and does nothing but compare prices with the book's thresholds unless one is crossed.

What happened
  ``on_price`` returns what the price point caused (``CoreEvent``s: funding payments, fills,
  the trades they closed, liquidation actions), the empty tuple when nothing. The history keeps
  all of it: ``fills`` (one ``Fill`` per execution, market orders filled in ``create_order``
  included; read new ones with ``fills_since(cursor)``), ``funding_payments``
  (``funding_since``), ``trades`` (one ``Trade`` per closing fill, partial closes included) and
  ``liquidations`` (one ``LiquidationEvent`` per engine action); ``stats()`` gives the totals.
  ``apply_funding`` charges one payment by hand (then runs the liquidation check at the last
  mark).

Determinism and state
  Order ids are a counter; everything is a function of the inputs. ``snapshot()`` gives a
  JSON-safe dict (config, markets, ledger, books, orders, history) and ``PaperCore.restore``
  rebuilds an identical core from it (``paper.core.snapshot``). Fill and funding ids are
  counters too, kept across a snapshot.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ccxt.base.errors import (
    BadRequest,
    BadSymbol,
    InsufficientFunds,
    InvalidOrder,
    OperationRejected,
    OrderNotFound,
)

from guards import Account, MarginMode, MarketRules, Position, Side
from paper.config import PaperConfig
from paper.core import snapshot as snap_io
from paper.core import views
from paper.core.adl import deleverage
from paper.core.book import Book
from paper.core.history import History
from paper.core.ledger import Ledger
from paper.core.liquidation import LiquidationEngine
from paper.core.matching import Matcher
from paper.core.records import (
    EPS,
    CoreEvent,
    Fill,
    FundingPayment,
    LiquidationEvent,
    Trade,
    iso8601,
    next_funding_time,
)
from paper.markets import PaperMarket


class PaperCore:
    """A simulated perpetual-futures exchange account; see the module docstring."""

    def __init__(
        self,
        config: PaperConfig,
        markets: Mapping[str, MarketRules | PaperMarket],
        balance: float | None = None,
    ) -> None:
        self.config = config
        self._books: dict[str, Book] = {}
        for symbol, m in markets.items():
            market = m if isinstance(m, PaperMarket) else PaperMarket.from_rules(m)
            if market.symbol != symbol:
                raise ValueError(f"market keyed {symbol!r} is {market.symbol!r}")
            self._books[symbol] = Book(market, config)
        self.currency = config.currency
        self.now_ms = 0
        self._history = History()
        self._ledger = Ledger(
            config.starting_balance if balance is None else float(balance),
            config.currency,
            self._history,
            default_funding_rate=config.funding_rate,
            cancel_on_flat=config.cancel_reduce_only_on_flat,
        )
        self._engine = LiquidationEngine(self._ledger, self._history)
        self._matcher = Matcher(config, self._ledger, self._engine)
        self._auto_funding = config.auto_funding
        #: What the current call added to the history (emptied when a call starts).
        self._recent = self._history.recent
        #: One ``Trade`` per closing fill (partial closes included).
        self.trades: list[Trade] = self._history.trades
        #: One ``LiquidationEvent`` per liquidation-engine action.
        self.liquidations: list[LiquidationEvent] = self._history.liquidations
        #: One ``Fill`` per execution (market orders in ``create_order`` included).
        self.fills: list[Fill] = self._history.fills
        #: One ``FundingPayment`` per funding charge.
        self.funding_payments: list[FundingPayment] = self._history.funding

    # ------------------------------------------------------------------ driver API (hot path)

    def on_price(
        self, symbol: str, price: float, ts_ms: int, mark: float | None = None, gap: bool = False
    ) -> tuple[CoreEvent, ...]:
        """Process one price point of ``symbol``: funding, fills, triggers, liquidation.

        ``gap``: no trading happened between the previous price and this one (a candle's open
        after the previous close, a feed that resumes after an outage): a trigger the move
        crossed fills at this price. Otherwise the price is taken to have travelled through
        every level in between, and a crossed trigger fills at its own price (plus slippage).

        Returns what it caused, in order: ``FundingPayment``s, then each ``Fill`` followed by
        the ``Trade`` it closed (if any) and, for the liquidation engine's orders, the
        ``LiquidationEvent``. Nothing happened: the empty tuple ``()`` (no allocation).
        """
        b = self._books[symbol]
        if mark is None:
            mark = price
        b.prev_last = b.last
        b.prev_mark = b.mark
        b.last = price
        b.mark = mark
        self.now_ms = ts_ms
        if b.active:
            b.seq += 1
            if ts_ms >= b.next_funding and b.pos is not None and self._auto_funding:
                return self._funding_then_events(b, ts_ms, gap)
            if (
                price >= b.hi_last
                or price <= b.lo_last
                or mark >= b.hi_mark
                or mark <= b.lo_mark
                or b.dynamic
            ):
                # Something may happen: what it adds to the history collects in ``recent``.
                recent = self._recent
                if recent:
                    recent.clear()
                self._matcher.resolve(b, ts_ms, ts_ms, gap)
                if recent:
                    events = tuple(recent)
                    recent.clear()
                    return events
        return ()

    def _funding_then_events(self, b: Book, ts_ms: int, gap: bool) -> tuple[CoreEvent, ...]:
        """``on_price`` at or after a funding time: funding first (it moves the liquidation
        trigger), then whatever the price crossed."""
        recent = self._recent
        recent.clear()
        self._ledger.run_funding(b, ts_ms)
        last, mark = b.last, b.mark
        if (
            last >= b.hi_last
            or last <= b.lo_last
            or mark >= b.hi_mark
            or mark <= b.lo_mark
            or b.dynamic
        ):
            self._matcher.resolve(b, ts_ms, ts_ms, gap)
        events = tuple(recent)
        recent.clear()
        return events

    def on_candle_volume(self, symbol: str, volume: float) -> None:
        """Volume of the candle being replayed, for the participation slippage term."""
        self._book(symbol).volume = volume

    def set_time(self, ts_ms: int) -> None:
        """Set the clock used to stamp orders placed before the next price."""
        self.now_ms = ts_ms

    def set_funding_rates(self, symbol: str, series: Iterable[tuple[int, float]]) -> None:
        """Funding-rate series ``(ts_ms, rate)`` of ``symbol``; timestamps matched to the minute."""
        self._book(symbol).funding_rates = {
            round(ts / 60_000) * 60_000: float(rate) for ts, rate in series
        }

    def funding_rate(self, symbol: str, ts_ms: int) -> float:
        """Rate charged at funding time ``ts_ms``: the series' value there, else the config's."""
        return self._book(symbol).funding_rate(ts_ms, self.config.funding_rate)

    @staticmethod
    def next_funding_time(ts_ms: int) -> int:
        """First funding time (00:00 / 08:00 / 16:00 UTC) strictly after ``ts_ms``."""
        return next_funding_time(ts_ms)

    def apply_funding(
        self, symbol: str, rate: float, mark: float | None = None, ts_ms: int | None = None
    ) -> float:
        """Charge one funding payment ``amount * mark * rate`` (longs pay a positive rate).

        The liquidation engine then looks at the position at once (at the last mark, stamped
        ``ts_ms`` or the current time). Returns the cash flow to the account (negative when
        paid); 0 without a position.
        """
        b = self._book(symbol)
        self._recent.clear()
        ts = self.now_ms if ts_ms is None else ts_ms
        flow = self._ledger.charge_funding(b, rate, b.mark if mark is None else mark, ts)
        if b.pos is not None and not math.isnan(b.mark):
            self._matcher.resolve(b, ts, self.now_ms)
        return flow

    # ------------------------------------------------------------------ ccxt-like API

    def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: float,
        price: float | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Place an order (ccxt ``create_order``); returns the ccxt order dict."""
        b = self._book(symbol)
        self._recent.clear()
        o = self._matcher.create(b, type, side, amount, price, params or {}, self.now_ms)
        return views.order_dict(o, b.market.id, self.currency)

    def order_events(self) -> tuple[CoreEvent, ...]:
        """What the last ``create_order`` caused (the fills of a market or marketable order,
        the ``Trade`` each closed), read once: a sender that places orders itself (replay)
        learns of its fills here, as ``on_price`` tells what a price caused."""
        recent = self._recent
        if not recent:
            return ()
        events = tuple(recent)
        recent.clear()
        return events

    def auto_deleverage(self, symbol: str, price: float, amount: float | None = None) -> Fill:
        """The exchange's auto-deleveraging: close ``amount`` (None: all) of the position of
        ``symbol`` at ``price`` (``paper.core.adl``); returns the ADL ``Fill``, also recorded in
        the history (``order_events()`` returns it with the ``Trade`` it closed)."""
        b = self._book(symbol)
        self._recent.clear()
        fill = deleverage(b, self._ledger, self._history, float(price), amount, self.now_ms)
        self._ledger.rearm(b)
        return fill

    @property
    def last_order_id(self) -> int:
        """Id of the last order placed (0: none): order ids are ``1 .. last_order_id``."""
        return self._matcher.seq

    def cancel_order(
        self, id: str, symbol: str | None = None, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Cancel an open order by id (or ``params["clientOrderId"]``)."""
        o = self._matcher.find(id, params)
        if o.status != "open" or (symbol is not None and o.symbol != symbol):
            raise OrderNotFound(f"paper Unknown order sent: {id!r}")
        b = self._books[o.symbol]
        self._ledger.cancel(b, o)
        return views.order_dict(o, b.market.id, self.currency)

    def cancel_all_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Cancel every open order (of ``symbol``)."""
        done = []
        for b in self._books.values():
            if symbol is None or b.symbol == symbol:
                for o in list(b.orders):
                    self._ledger.cancel(b, o)
                    done.append(views.order_dict(o, b.market.id, self.currency))
        return done

    def fetch_order(
        self, id: str | None, symbol: str | None = None, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Any order ever placed, by id or ``params["clientOrderId"]``."""
        o = self._matcher.find(id, params)
        if symbol is not None and o.symbol != symbol:
            raise OrderNotFound(f"paper order {id!r} is not on {symbol}")
        return views.order_dict(o, self._books[o.symbol].market.id, self.currency)

    def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Open orders (of ``symbol``), oldest first."""
        books = self._books.values() if symbol is None else (self._book(symbol),)
        found = [(o, b.market.id) for b in books for o in b.orders]
        found.sort(key=lambda x: x[0].seq)
        return [views.order_dict(o, mid, self.currency) for o, mid in found]

    def positions(self, symbols: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Open positions as ccxt position dicts."""
        wanted = None if symbols is None else set(symbols)
        return [
            views.position_dict(b, self._ledger, self.now_ms)
            for b in self._ledger.open_pos.values()
            if wanted is None or b.symbol in wanted
        ]

    def balance(self) -> dict[str, Any]:
        """ccxt balance dict: total = wallet balance, free = available margin."""
        return views.balance_dict(self._ledger, self.now_ms)

    def set_leverage(self, leverage: float, symbol: str) -> dict[str, Any]:
        """Leverage of later fills on ``symbol`` (1 .. the tier-1 maximum, and the position's)."""
        b = self._book(symbol)
        lev = float(leverage)
        if not 1.0 <= lev <= b.rules.max_leverage:
            raise InvalidOrder(
                f"paper leverage {leverage} is not valid for {symbol} (1 .. {b.rules.max_leverage})"
            )
        pos = b.pos
        if pos is not None:
            cap = b.max_leverage(pos.amount * b.ref_price(), pos.amount)
            if lev > cap:
                raise InvalidOrder(
                    f"paper leverage {leverage} too high for the position's notional (max {cap})"
                )
        b.leverage = lev
        return {"info": {"symbol": b.market.id, "leverage": lev}, "symbol": symbol}

    def set_margin_mode(self, margin_mode: str, symbol: str) -> dict[str, Any]:
        """``isolated`` or ``cross`` for ``symbol``; refused with a position or open orders."""
        b = self._book(symbol)
        mode = margin_mode.lower()
        if mode == "crossed":
            mode = "cross"
        if mode not in ("isolated", "cross"):
            raise BadRequest(f"paper unknown margin mode {margin_mode!r}")
        if mode != b.margin_mode and (b.pos is not None or b.orders):
            raise OperationRejected(
                "paper Margin type cannot be changed if there exists position or open orders"
            )
        b.margin_mode = "cross" if mode == "cross" else "isolated"
        return {"info": {"symbol": b.market.id, "marginMode": mode}, "symbol": symbol}

    def add_margin(self, symbol: str, amount: float) -> dict[str, Any]:
        """Add isolated margin to the position (ccxt ``add_margin``)."""
        b = self._book(symbol)
        pos = b.pos
        if pos is None or pos.margin_mode != "isolated":
            raise BadRequest(f"paper no isolated position on {symbol} to add margin to")
        if not amount > 0:
            raise BadRequest("paper margin amount must be positive")
        if amount > self.free_margin + EPS:
            raise InsufficientFunds(f"paper Margin is insufficient to add {amount}")
        self._ledger.add_margin(b, amount)
        return {
            "info": {},
            "symbol": symbol,
            "type": "add",
            "marginMode": "isolated",
            "amount": float(amount),
            "total": pos.margin,
            "code": self.currency,
            "status": "ok",
            "timestamp": self.now_ms,
            "datetime": iso8601(self.now_ms),
        }

    def ticker(self, symbol: str) -> dict[str, Any]:
        """ccxt ticker of ``symbol`` from the last price point (``markPrice`` too)."""
        return views.ticker_dict(self._book(symbol), self.now_ms)

    def amount_to_precision(self, symbol: str, amount: float) -> float:
        """``amount`` truncated to the step as ccxt does; below step or minimum -> InvalidOrder."""
        return self._book(symbol).amount_to_precision(amount)

    def price_to_precision(self, symbol: str, price: float) -> float:
        """``price`` rounded to the tick as ccxt does; zero after rounding -> InvalidOrder."""
        return self._book(symbol).price_to_precision(price)

    # ------------------------------------------------------------------ ledger accessors

    @property
    def wallet_balance(self) -> float:
        """The account's cash: realised PnL, fees and funding (isolated margins included)."""
        return self._ledger.wallet_balance

    @property
    def total_fees(self) -> float:
        """Every fee debited from the wallet: trading fees and partial-liquidation fees."""
        return self._ledger.total_fees

    @property
    def total_funding(self) -> float:
        """Funding received (negative: paid) over the account's life."""
        return self._ledger.total_funding

    @property
    def realized_pnl(self) -> float:
        """Gross price PnL of every closing fill."""
        return self._ledger.realized_pnl

    @property
    def total_liquidation_fees(self) -> float:
        """The liquidation fees the engine recorded: partial ones (debited, also in
        ``total_fees``) and whole ones (part of the margin lost, not a debit)."""
        return self._ledger.total_liquidation_fees

    @property
    def revision(self) -> int:
        """Changes with every change to a position, the resting orders or the wallet, so a
        driver may reuse ``account()`` while it stays the same.

        Superseded by the events ``on_price`` returns (and ``fills_since``); kept while a
        caller still reads it.
        """
        return self._ledger.revision

    # ------------------------------------------------------------------ history readers

    @property
    def fill_cursor(self) -> int:
        """Id of the last fill so far (0: none): pass it to ``fills_since`` later."""
        return self._history.fill_seq

    def fills_since(self, cursor: int = 0) -> list[Fill]:
        """The fills after ``cursor`` (a fill id, e.g. an earlier ``fill_cursor``), oldest first.

        A slice of the history, found by arithmetic on the sequential ids: no scan.
        """
        return self._history.fills_since(cursor)

    @property
    def funding_cursor(self) -> int:
        """Id of the last funding payment so far (0: none)."""
        return self._history.funding_seq

    def funding_since(self, cursor: int = 0) -> list[FundingPayment]:
        """The funding payments after ``cursor`` (a payment id), oldest first."""
        return self._history.funding_since(cursor)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._books)

    def market(self, symbol: str) -> PaperMarket:
        return self._book(symbol).market

    def market_rules(self, symbol: str) -> MarketRules:
        """The guards' view of ``symbol``: fees as charged, the profile's liquidation fee rate."""
        return self._book(symbol).rules

    def mark_price(self, symbol: str) -> float | None:
        mark = self._book(symbol).mark
        return None if math.isnan(mark) else mark

    def last_price(self, symbol: str) -> float | None:
        last = self._book(symbol).last
        return None if math.isnan(last) else last

    def leverage(self, symbol: str) -> float:
        return self._book(symbol).leverage

    def margin_mode(self, symbol: str) -> MarginMode:
        return self._book(symbol).margin_mode

    def unrealized_pnl(self, marks: Mapping[str, float] | None = None) -> float:
        return self._ledger.unrealized_pnl(marks)

    def equity(self, marks: Mapping[str, float] | None = None) -> float:
        """Wallet balance plus every position's unrealised PnL (at ``marks`` or the last marks)."""
        led = self._ledger
        return led.wallet_balance + led.unrealized_pnl(marks)

    @property
    def isolated_margin(self) -> float:
        """Margin held by isolated positions."""
        return self._ledger.isolated_margin

    @property
    def cross_wallet_balance(self) -> float:
        """Wallet balance not held as isolated margin."""
        return self._ledger.cross_wallet_balance

    @property
    def free_margin(self) -> float:
        """Available balance: cross wallet + cross uPnL - cross initial margin - order margin."""
        return self._ledger.free_margin

    def holding(self, symbol: str) -> tuple[Side, float] | None:
        """``(side, amount)`` of ``symbol``'s open position, or None (``position`` without
        building the guards' view)."""
        pos = self._book(symbol).pos
        return None if pos is None else (pos.side, pos.amount)

    def position(self, symbol: str) -> Position | None:
        """The guards' ``Position`` of ``symbol`` (with its live stop / take-profit), or None."""
        b = self._book(symbol)
        pos = b.pos
        if pos is None:
            return None
        stop, take = views.protection(b)
        return Position(
            symbol=symbol,
            side=pos.side,
            amount=pos.amount,
            entry_price=pos.entry,
            margin_mode=pos.margin_mode,
            leverage=pos.leverage,
            margin=pos.margin,
            stop_price=stop,
            take_profit=take,
            opened_at=pos.opened_at / 1000,
            adds=pos.adds,
        )

    def account(self) -> Account:
        """The guards' ``Account``: wallet balance and positions."""
        positions = {}
        for symbol in self._ledger.open_pos:
            found = self.position(symbol)
            assert found is not None
            positions[symbol] = found
        return Account(self.wallet_balance, positions, self.currency)

    def liquidation_price(self, symbol: str) -> float | None:
        """The engine's current trigger price for the position of ``symbol``."""
        pos = self._book(symbol).pos
        return None if pos is None else pos.liq

    def stats(self) -> dict[str, float | int]:
        """Counters for the run report (``total_fees`` includes partial-liquidation fees;
        ``liquidation_fees`` reports the engine's fees apart, see ``total_liquidation_fees``)."""
        led = self._ledger
        return {
            "wallet_balance": led.wallet_balance,
            "equity": self.equity(),
            "realized_pnl": led.realized_pnl,
            "total_fees": led.total_fees,
            "total_funding": led.total_funding,
            "liquidation_fees": led.total_liquidation_fees,
            "trades": len(self.trades),
            "liquidations": len(self.liquidations),
        }

    # ------------------------------------------------------------------ snapshot

    def snapshot(self, history: bool = True) -> dict[str, Any]:
        """JSON-safe state; ``history=False`` drops closed orders and the history lists."""
        return snap_io.dump(
            self.config,
            self._books,
            self._ledger,
            self._matcher,
            self._history,
            self.now_ms,
            history,
        )

    @classmethod
    def restore(
        cls,
        state: Mapping[str, Any],
        config: PaperConfig | None = None,
        markets: Mapping[str, MarketRules | PaperMarket] | None = None,
    ) -> PaperCore:
        """Rebuild a core from ``snapshot()`` (config and markets from it unless given)."""
        snap_io.check_version(state)
        cfg = config if config is not None else PaperConfig.model_validate(state["config"])
        mkts = (
            markets
            if markets is not None
            else {s: snap_io.market_from_state(m) for s, m in state["markets"].items()}
        )
        core = cls(cfg, mkts, float(state["wallet_balance"]))
        core.now_ms = snap_io.load(state, core._books, core._ledger, core._matcher, core._history)
        return core

    # ------------------------------------------------------------------ internals

    def _book(self, symbol: str) -> Book:
        try:
            return self._books[symbol]
        except KeyError:
            raise BadSymbol(f"paper does not have market symbol {symbol}") from None
