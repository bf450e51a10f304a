"""The paper exchange's synchronous engine: orders, matching, margin ledger, funding, liquidation.

``PaperCore`` is a deterministic perpetual-futures simulator (linear, USDT-settled, one-way mode).
Its ccxt-like methods (``create_order``, ``cancel_order``, ``fetch_order``, ``open_orders``,
``positions``, ``balance``, ``set_leverage``, ``set_margin_mode``, ``add_margin``) return ccxt's
unified dicts and raise ccxt's exception classes; the replay driver feeds it prices with
``on_price``. No wall clock: time is the ``ts_ms`` of the last price (or ``set_time``).

Orders
  market, limit, stop-market and take-profit-market (``stopLossPrice`` / ``takeProfitPrice`` /
  ``triggerPrice`` params, or types ``stop_market`` / ``take_profit_market``), ``reduceOnly``,
  ``closePosition``. Amounts are truncated to the amount step and prices rounded to the tick
  with ccxt's ``decimal_to_precision`` (as ccxt's ``amount_to_precision``/``price_to_precision``
  do for TICK_SIZE markets), only when an order is created. Below the minimum amount or the
  minimum notional (not checked for reduce-only, like Binance) -> ``InvalidOrder``.
  ``clientOrderId`` duplicates -> ``DuplicateOrderId`` (an ``InvalidOrder``). A trigger that
  would fire at once -> ``OrderImmediatelyFillable``. Leverage above what the position's tier
  allows -> ``InvalidOrder``; margin short (free margin below initial margin + fee, or a
  position that would be liquidatable at the mark right after the fill) -> ``InsufficientFunds``;
  a triggered order refused for those reasons ends ``rejected``.
  ``params["reason"]`` labels the round trip a closing fill ends (default: ``"strategy"``,
  ``"stop"`` or ``"take_profit"`` by order type; the engine itself uses ``"liquidation"``), and
  ``params["tag"]`` is a free label kept on the order, position and trade, e.g. a guard rule.

Fills
  Market orders and triggered stops / take-profits are taker fills at ``price * (1 +/- slip)``
  with ``slip = slippage_bps / 1e4 + participation_coef * amount / candle volume`` (volume from
  ``on_candle_volume``; the term is 0 without it; capped at 0.99), adverse to the order's
  side. A trigger fires when its basis price (mark or last: ``workingType`` param, else
  ``config.trigger_price``) crosses it; it fills at its trigger price, except on the *first*
  price seen after it was armed: a gap past the trigger then fills at that price (the last
  price). A resting limit fills as maker at its own price when the last price reaches it (no
  price improvement); a limit that is marketable on arrival fills at once as taker at the
  slipped last price, capped at its limit.
  Within one price point, events are taken in the order the price path meets them (distance from
  the previous price); events that fire on their first price come first, and a liquidation
  crossed on the same point beats them (the gap is past the liquidation price, so the engine has
  the position before the stop can act). Reduce-only orders never flip or grow a position; when
  a position goes flat its resting reduce-only / close-position orders are cancelled
  (``cancel_reduce_only_on_flat``).

Ledger
  ``wallet_balance`` is the account's cash (realised PnL, fees and funding; it includes isolated
  margins). An isolated position holds margin = notional / leverage at each fill plus
  ``add_margin``; the entry fee is paid from the wallet. ``free_margin`` follows Binance's
  available balance: wallet - isolated margins + cross uPnL - cross initial margin (at the mark)
  - margin reserved by resting limit entries. ``equity`` = wallet + every position's uPnL.
  Changing leverage affects later fills only.

Funding
  Every 8 h (00:00, 08:00, 16:00 UTC): when ``auto_funding`` is on, the first ``on_price`` of a
  symbol at or after a funding time charges ``amount * mark * rate`` (longs pay a positive rate)
  at that price's mark, before anything else on that price, once per funding time crossed. The
  rate comes from ``set_funding_rates`` (timestamps matched to the minute) or else
  ``config.funding_rate``. ``apply_funding`` charges one payment by hand (then runs the
  liquidation check at the last mark). Isolated positions pay from their margin, cross ones from
  the wallet; the liquidation price moves accordingly.

Liquidation (on the mark; the guards' ``guards.liquidation`` math, so guards and engine agree)
  Each position keeps a precomputed trigger price, ``liquidation_price(...)`` of its profile,
  refreshed whenever its margin picture changes (fill, funding, add_margin, or any wallet change
  for cross). When the mark reaches it, ``liquidation_stage`` at the mark decides:
  * ``binance`` profile (liquidation fee rate 0): whole position when margin balance <= MM
    (``N * mmr - cum``).
  * ``tiered`` profile (``config.liquidation_fee_rate``): margin rate vs tier thresholds
    (tiers 1-2: mmr + fee, cross without the fee; tier >= 3: partial at its own mmr + fee, whole
    at tier 1's mmr + fee). A partial reduction closes, at the mark, what takes the position to
    the top of the next lower tier, charging the fee rate on the closed notional; the margin
    stays with the position (so its margin rate rises); repeated tier by tier within the price.
  A whole liquidation closes the position at the bankruptcy price (margin balance 0), so an
  isolated position loses its whole margin and a cross one the cross balance ``wallet - other
  MM + other uPnL``; the engine then cancels the symbol's open orders. The recorded liquidation
  fee is what the position still had at the trigger and is part of that loss, never on top of
  it: binance profile ``max(balance at mark, 0)``; tiered ``min(fee rate * notional, that)``.
  Cross: the balance is the cross wallet (wallet - isolated margins) minus the other cross
  positions' MM plus their uPnL; with two or more cross positions the trigger is re-solved on
  every price of a cross symbol, and only the symbol being priced is liquidated at that point.

History
  ``trades`` holds one ``Trade`` per closing fill (partial closes included) and
  ``liquidations`` one ``LiquidationEvent`` per engine action; ``stats()`` gives the totals.

Determinism and state
  Order ids are a counter; everything is a function of the inputs. ``snapshot()`` gives a
  JSON-safe dict (config, markets, ledger, books, orders, history) and ``PaperCore.restore``
  rebuilds an identical core from it (funding-rate series are inputs and are not included).
  ``revision`` changes with every change to a position, the resting orders or the wallet, so a
  driver may reuse ``account()`` while it stays the same.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from ccxt.base.decimal_to_precision import ROUND, TICK_SIZE, TRUNCATE, decimal_to_precision
from ccxt.base.errors import (
    BadRequest,
    BadSymbol,
    DuplicateOrderId,
    InsufficientFunds,
    InvalidOrder,
    NotSupported,
    OperationRejected,
    OrderImmediatelyFillable,
    OrderNotFound,
)

from guards.liquidation import (
    bankruptcy_price,
    liquidation_price,
    liquidation_stage,
    margin_balance,
    profile_maintenance_margin,
)
from guards.tiers import tier_index
from guards.types import Account, MarginMode, MarketRules, Position, Side, Tier
from paper.config import PaperConfig
from paper.markets import PaperMarket

FUNDING_PERIOD_MS: Final = 8 * 3_600_000
SNAPSHOT_VERSION: Final = 1
_INF: Final = math.inf
_LIMIT: Final = "limit"
_MARKET: Final = "market"
_STOP: Final = "stop_market"
_TAKE: Final = "take_profit_market"
_MAX_EVENTS_PER_PRICE: Final = 256
_EPS: Final = 1e-9

OrderStatus = Literal["open", "closed", "canceled", "rejected"]


def iso8601(ts_ms: int | None) -> str | None:
    """ccxt's datetime string for an epoch-ms timestamp."""
    if ts_ms is None:
        return None
    dt = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Trade:
    """A closed (part of a) round trip: one closing fill against the position's entry."""

    symbol: str
    side: Side
    entry_price: float
    exit_price: float
    amount: float
    #: Gross price PnL ``s * amount * (exit - entry)``.
    pnl: float
    #: Entry fees (pro rata) + the closing fee (+ the liquidation fee of a partial liquidation).
    fees: float
    #: Funding received (negative when paid) while open, pro rata.
    funding: float
    opened_at: int
    closed_at: int
    reason: str
    tag: str = ""

    @property
    def net(self) -> float:
        return self.pnl - self.fees + self.funding

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class LiquidationEvent:
    """What the exchange's liquidation engine did to one position at one price."""

    symbol: str
    ts: int
    side: Side
    amount: float
    #: Mark price that triggered it.
    mark: float
    #: Execution price: the bankruptcy price (whole) or the mark (partial).
    price: float
    #: Margin the position lost to it (includes ``fee``).
    margin_lost: float
    #: Liquidation fee (insurance-fund share), part of ``margin_lost``.
    fee: float
    #: Margin balance at the trigger.
    margin_balance: float
    partial: bool
    margin_mode: MarginMode
    profile: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Order:
    __slots__ = (
        "amount",
        "armed_seq",
        "average",
        "client_id",
        "close_position",
        "fee",
        "filled",
        "id",
        "last_trade_ts",
        "on_mark",
        "price",
        "reason",
        "reduce_only",
        "reserved",
        "seq",
        "side",
        "sign",
        "status",
        "symbol",
        "tag",
        "timestamp",
        "trigger",
        "type",
    )

    def __init__(
        self,
        seq: int,
        client_id: str,
        symbol: str,
        type_: str,
        side: str,
        amount: float,
        price: float | None,
        trigger: float | None,
        on_mark: bool,
        reduce_only: bool,
        close_position: bool,
        reason: str,
        tag: str,
        timestamp: int,
    ) -> None:
        self.seq = seq
        self.id = str(seq)
        self.client_id = client_id
        self.symbol = symbol
        self.type = type_
        self.side = side
        self.sign = 1 if side == "buy" else -1
        self.amount = amount
        self.price = price
        self.trigger = trigger
        self.on_mark = on_mark
        self.reduce_only = reduce_only
        self.close_position = close_position
        self.reason = reason
        self.tag = tag
        self.timestamp = timestamp
        self.status: OrderStatus = "open"
        self.filled = 0.0
        self.average: float | None = None
        self.fee = 0.0
        self.reserved = 0.0
        self.armed_seq = 0
        self.last_trade_ts: int | None = None

    @property
    def reducing(self) -> bool:
        return self.reduce_only or self.close_position


class _Pos:
    __slots__ = (
        "adds",
        "amount",
        "entry",
        "entry_fees",
        "funding",
        "leverage",
        "liq",
        "margin",
        "margin_mode",
        "opened_at",
        "sign",
        "tag",
    )

    def __init__(
        self,
        sign: int,
        amount: float,
        entry: float,
        margin_mode: MarginMode,
        leverage: float,
        margin: float,
        opened_at: int,
        entry_fees: float,
        tag: str,
    ) -> None:
        self.sign = sign
        self.amount = amount
        self.entry = entry
        self.margin_mode: MarginMode = margin_mode
        self.leverage = leverage
        self.margin = margin
        self.opened_at = opened_at
        self.entry_fees = entry_fees
        self.funding = 0.0
        self.adds = 0
        self.tag = tag
        self.liq: float | None = None

    @property
    def side(self) -> Side:
        return "long" if self.sign > 0 else "short"


class _Book:
    """Everything about one symbol; the hot path reads only its plain attributes."""

    __slots__ = (
        "active",
        "amount_step",
        "dynamic",
        "funding_rates",
        "hi_last",
        "hi_mark",
        "last",
        "leverage",
        "liq_fee",
        "lo_last",
        "lo_mark",
        "maker",
        "margin_mode",
        "mark",
        "market",
        "next_funding",
        "orders",
        "pos",
        "prev_last",
        "prev_mark",
        "price_step",
        "profile",
        "rules",
        "seq",
        "symbol",
        "taker",
        "tiers",
        "volume",
    )

    def __init__(self, market: PaperMarket, config: PaperConfig) -> None:
        symbol = market.symbol
        self.profile = config.profile_for(symbol)
        self.liq_fee = config.liquidation_fee_rate if self.profile == "tiered" else 0.0
        r = market.rules
        self.taker = r.taker_fee if config.taker_fee is None else config.taker_fee
        self.maker = r.maker_fee if config.maker_fee is None else config.maker_fee
        self.rules = MarketRules(
            symbol=r.symbol,
            tiers=r.tiers,
            amount_step=r.amount_step,
            price_step=r.price_step,
            min_amount=r.min_amount,
            min_notional=r.min_notional,
            taker_fee=self.taker,
            maker_fee=self.maker,
            liquidation_fee_rate=self.liq_fee,
        )
        self.market = market
        self.symbol = symbol
        self.tiers: tuple[Tier, ...] = r.tiers
        self.amount_step = r.amount_step
        self.price_step = r.price_step
        self.leverage = config.default_leverage
        self.margin_mode: MarginMode = config.default_margin_mode
        self.last = math.nan
        self.mark = math.nan
        self.prev_last = math.nan
        self.prev_mark = math.nan
        self.seq = 0
        self.pos: _Pos | None = None
        self.orders: list[_Order] = []
        self.active = False
        self.dynamic = False
        self.hi_last = _INF
        self.lo_last = -_INF
        self.hi_mark = _INF
        self.lo_mark = -_INF
        self.next_funding = 0
        self.volume = 0.0
        self.funding_rates: dict[int, float] = {}


def _snap(amount: float, step: float) -> float:
    """``amount`` on the step grid (undoes float drift of sums and differences)."""
    return round(amount / step) * step


class PaperCore:
    """A simulated perpetual-futures exchange account; see the module docstring."""

    def __init__(
        self,
        config: PaperConfig,
        markets: Mapping[str, MarketRules | PaperMarket],
        balance: float | None = None,
    ) -> None:
        self.config = config
        self._books: dict[str, _Book] = {}
        for symbol, m in markets.items():
            market = m if isinstance(m, PaperMarket) else PaperMarket.from_rules(m)
            if market.symbol != symbol:
                raise ValueError(f"market keyed {symbol!r} is {market.symbol!r}")
            self._books[symbol] = _Book(market, config)
        self.wallet_balance = config.starting_balance if balance is None else float(balance)
        self.currency = config.currency
        self.now_ms = 0
        self._seq = 0
        self._orders: dict[str, _Order] = {}
        self._client_ids: dict[str, str] = {}
        self._open_pos: dict[str, _Book] = {}
        self._cross: dict[str, _Book] = {}
        self._reserved = 0.0
        self._auto_funding = config.auto_funding
        self._slip = config.slippage_bps / 1e4
        self._coef = config.participation_coef
        self._cancel_on_flat = config.cancel_reduce_only_on_flat
        #: Bumped whenever a position, the resting orders or the wallet may have changed (every
        #: such change re-arms a book): ``account()`` / ``position()`` are unchanged while it is.
        self.revision = 0
        self.trades: list[Trade] = []
        self.liquidations: list[LiquidationEvent] = []
        self.total_fees = 0.0
        self.total_funding = 0.0
        self.realized_pnl = 0.0
        self.total_liquidation_fees = 0.0

    # ------------------------------------------------------------------ driver API (hot path)

    def on_price(self, symbol: str, price: float, ts_ms: int, mark: float | None = None) -> None:
        """Process one price point of ``symbol``: funding, fills, triggers, liquidation."""
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
            if b.pos is not None and ts_ms >= b.next_funding and self._auto_funding:
                self._run_funding(b, ts_ms)
            if (
                price >= b.hi_last
                or price <= b.lo_last
                or mark >= b.hi_mark
                or mark <= b.lo_mark
                or b.dynamic
            ):
                self._resolve(b, ts_ms)

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
        rate = self._book(symbol).funding_rates.get(round(ts_ms / 60_000) * 60_000)
        return self.config.funding_rate if rate is None else rate

    @staticmethod
    def next_funding_time(ts_ms: int) -> int:
        """First funding time (00:00 / 08:00 / 16:00 UTC) strictly after ``ts_ms``."""
        return (ts_ms // FUNDING_PERIOD_MS + 1) * FUNDING_PERIOD_MS

    def apply_funding(
        self, symbol: str, rate: float, mark: float | None = None, ts_ms: int | None = None
    ) -> float:
        """Charge one funding payment ``amount * mark * rate`` (longs pay a positive rate).

        The liquidation engine then looks at the position at once (at the last mark, stamped
        ``ts_ms`` or the current time). Returns the cash flow to the account (negative when
        paid); 0 without a position.
        """
        b = self._book(symbol)
        flow = self._charge_funding(b, rate, b.mark if mark is None else mark)
        if b.pos is not None and not math.isnan(b.mark):
            self._resolve(b, self.now_ms if ts_ms is None else ts_ms)
        return flow

    def _charge_funding(self, b: _Book, rate: float, price: float) -> float:
        pos = b.pos
        if pos is None:
            return 0.0
        pay = pos.sign * pos.amount * price * rate
        self.wallet_balance -= pay
        self.total_funding -= pay
        pos.funding -= pay
        if pos.margin_mode == "isolated":
            pos.margin -= pay
        self._ledger_changed(b)
        return -pay

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
        p = params or {}
        client_id = str(p.get("clientOrderId") or p.get("newClientOrderId") or "")
        if client_id and client_id in self._client_ids:
            raise DuplicateOrderId(f"paper Duplicate clientOrderId {client_id!r}")
        side = side.lower()
        if side not in ("buy", "sell"):
            raise InvalidOrder(f"paper invalid order side {side!r}")
        sign = 1 if side == "buy" else -1
        kind, trigger = self._order_kind(type.lower(), p)
        reduce_only = bool(p.get("reduceOnly", False))
        close_position = bool(p.get("closePosition", False))
        working = p.get("workingType")
        if working is None:
            on_mark = self.config.trigger_price == "mark"
        elif working in ("MARK_PRICE", "mark"):
            on_mark = True
        elif working in ("CONTRACT_PRICE", "last"):
            on_mark = False
        else:
            raise BadRequest(f"paper unknown workingType {working!r}")
        pos = b.pos
        if close_position:
            if kind == _LIMIT:
                raise InvalidOrder("paper closePosition is for market and trigger orders")
            qty = 0.0
        else:
            qty = self.amount_to_precision(symbol, amount)
        if kind == _LIMIT:
            if price is None:
                raise InvalidOrder("paper a limit order needs a price")
            price = self.price_to_precision(symbol, price)
        else:
            price = None
        if trigger is not None:
            trigger = self.price_to_precision(symbol, trigger)
        reducing = reduce_only or close_position
        if kind in (_MARKET, _LIMIT) and reducing and (pos is None or pos.sign == sign):
            raise InvalidOrder("paper ReduceOnly Order is rejected: no position to reduce")
        ref = price if price is not None else trigger if trigger is not None else b.last
        if not reducing and qty * ref < b.rules.min_notional - _EPS:
            if math.isnan(ref):
                raise InvalidOrder(f"paper no price yet for {symbol}")
            raise InvalidOrder(
                f"paper Order's notional must be no smaller than {b.rules.min_notional} "
                "(unless you choose reduce only)"
            )
        if kind in (_MARKET, _LIMIT) and not reducing and not math.isnan(ref):
            self._check_leverage(b, sign, qty, ref)
        if trigger is not None:
            self._check_not_immediate(b, kind, sign, trigger, on_mark)
        reason = str(p.get("reason") or _default_reason(kind))
        self._seq += 1
        o = _Order(
            self._seq,
            client_id,
            symbol,
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
            self.now_ms,
        )
        try:
            self._place(b, o, p)
        except Exception:
            self._seq -= 1  # a refused order leaves no trace
            raise
        self._orders[o.id] = o
        if client_id:
            self._client_ids[client_id] = o.id
        return self._order_dict(o)

    def cancel_order(
        self, id: str, symbol: str | None = None, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Cancel an open order by id (or ``params["clientOrderId"]``)."""
        o = self._find(id, params)
        if o.status != "open" or (symbol is not None and o.symbol != symbol):
            raise OrderNotFound(f"paper Unknown order sent: {id!r}")
        self._cancel(self._books[o.symbol], o)
        return self._order_dict(o)

    def cancel_all_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Cancel every open order (of ``symbol``)."""
        done = []
        for b in self._books.values():
            if symbol is None or b.symbol == symbol:
                for o in list(b.orders):
                    self._cancel(b, o)
                    done.append(self._order_dict(o))
        return done

    def fetch_order(
        self, id: str | None, symbol: str | None = None, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Any order ever placed, by id or ``params["clientOrderId"]``."""
        o = self._find(id, params)
        if symbol is not None and o.symbol != symbol:
            raise OrderNotFound(f"paper order {id!r} is not on {symbol}")
        return self._order_dict(o)

    def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Open orders (of ``symbol``), oldest first."""
        books = self._books.values() if symbol is None else (self._book(symbol),)
        found = [o for b in books for o in b.orders]
        found.sort(key=lambda o: o.seq)
        return [self._order_dict(o) for o in found]

    def positions(self, symbols: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Open positions as ccxt position dicts."""
        wanted = None if symbols is None else set(symbols)
        return [
            self._position_dict(b)
            for b in self._open_pos.values()
            if wanted is None or b.symbol in wanted
        ]

    def balance(self) -> dict[str, Any]:
        """ccxt balance dict: total = wallet balance, free = available margin."""
        total = self.wallet_balance
        free = self.free_margin
        used = total - free
        cur = self.currency
        return {
            "info": {
                "walletBalance": total,
                "availableBalance": free,
                "marginBalance": self.equity(),
                "unrealizedProfit": self.unrealized_pnl(),
            },
            "timestamp": self.now_ms,
            "datetime": iso8601(self.now_ms),
            cur: {"free": free, "used": used, "total": total},
            "free": {cur: free},
            "used": {cur: used},
            "total": {cur: total},
        }

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
            cap = self._max_leverage(b, pos.amount * self._ref_price(b))
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
        if amount > self.free_margin + _EPS:
            raise InsufficientFunds(f"paper Margin is insufficient to add {amount}")
        pos.margin += amount
        self._ledger_changed(b)
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
        b = self._book(symbol)
        last = None if math.isnan(b.last) else b.last
        mark = None if math.isnan(b.mark) else b.mark
        return {
            "symbol": symbol,
            "timestamp": self.now_ms,
            "datetime": iso8601(self.now_ms),
            "last": last,
            "close": last,
            "bid": last,
            "ask": last,
            "markPrice": mark,
            "indexPrice": mark,
            "info": {"symbol": b.market.id, "lastPrice": last, "markPrice": mark},
        }

    def amount_to_precision(self, symbol: str, amount: float) -> float:
        """``amount`` truncated to the step as ccxt does; below step or minimum -> InvalidOrder."""
        b = self._book(symbol)
        if not (amount > 0 and math.isfinite(amount)):
            raise InvalidOrder(f"paper amount must be positive, not {amount}")
        text = decimal_to_precision(amount, TRUNCATE, b.amount_step, TICK_SIZE)
        qty = float(text)
        if qty <= 0.0:
            raise InvalidOrder(
                f"paper amount of {symbol} must be greater than minimum amount precision of "
                f"{b.amount_step}"
            )
        if qty < b.rules.min_amount - _EPS * b.amount_step:
            raise InvalidOrder(f"paper amount of {symbol} must be >= {b.rules.min_amount}")
        mx = b.market.max_amount
        if mx is not None and qty > mx:
            raise InvalidOrder(f"paper amount of {symbol} must be <= {mx}")
        return qty

    def price_to_precision(self, symbol: str, price: float) -> float:
        """``price`` rounded to the tick as ccxt does; zero after rounding -> InvalidOrder."""
        b = self._book(symbol)
        if not (price > 0 and math.isfinite(price)):
            raise InvalidOrder(f"paper price must be positive, not {price}")
        px = float(decimal_to_precision(price, ROUND, b.price_step, TICK_SIZE))
        if px <= 0.0:
            raise InvalidOrder(
                f"paper price of {symbol} must be greater than minimum price precision of "
                f"{b.price_step}"
            )
        return px

    # ------------------------------------------------------------------ ledger accessors

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
        total = 0.0
        for b in self._open_pos.values():
            pos = b.pos
            assert pos is not None
            price = marks.get(b.symbol, b.mark) if marks is not None else b.mark
            if not math.isnan(price):
                total += pos.sign * pos.amount * (price - pos.entry)
        return total

    def equity(self, marks: Mapping[str, float] | None = None) -> float:
        """Wallet balance plus every position's unrealised PnL (at ``marks`` or the last marks)."""
        return self.wallet_balance + self.unrealized_pnl(marks)

    @property
    def isolated_margin(self) -> float:
        """Margin held by isolated positions."""
        total = 0.0
        for b in self._open_pos.values():
            pos = b.pos
            assert pos is not None
            if pos.margin_mode == "isolated":
                total += pos.margin
        return total

    @property
    def cross_wallet_balance(self) -> float:
        """Wallet balance not held as isolated margin."""
        return self.wallet_balance - self.isolated_margin

    @property
    def free_margin(self) -> float:
        """Available balance: cross wallet + cross uPnL - cross initial margin - order margin."""
        free = self.wallet_balance - self._reserved
        for b in self._open_pos.values():
            pos = b.pos
            assert pos is not None
            if pos.margin_mode == "isolated":
                free -= pos.margin
            else:
                price = self._ref_price(b)
                free += pos.sign * pos.amount * (price - pos.entry)
                free -= pos.amount * price / pos.leverage
        return free

    def position(self, symbol: str) -> Position | None:
        """The guards' ``Position`` of ``symbol`` (with its live stop / take-profit), or None."""
        b = self._book(symbol)
        pos = b.pos
        if pos is None:
            return None
        stop, take = self._protection(b)
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
        for symbol in self._open_pos:
            found = self.position(symbol)
            assert found is not None
            positions[symbol] = found
        return Account(self.wallet_balance, positions, self.currency)

    def liquidation_price(self, symbol: str) -> float | None:
        """The engine's current trigger price for the position of ``symbol``."""
        pos = self._book(symbol).pos
        return None if pos is None else pos.liq

    def stats(self) -> dict[str, float | int]:
        """Counters for the run report."""
        return {
            "wallet_balance": self.wallet_balance,
            "equity": self.equity(),
            "realized_pnl": self.realized_pnl,
            "total_fees": self.total_fees,
            "total_funding": self.total_funding,
            "liquidation_fees": self.total_liquidation_fees,
            "trades": len(self.trades),
            "liquidations": len(self.liquidations),
        }

    # ------------------------------------------------------------------ snapshot

    def snapshot(self, history: bool = True) -> dict[str, Any]:
        """JSON-safe state; ``history=False`` drops closed orders, trades and liquidations."""
        orders = [_order_state(o) for o in self._orders.values() if history or o.status == "open"]
        return {
            "version": SNAPSHOT_VERSION,
            "config": self.config.model_dump(mode="json"),
            "markets": {s: _market_state(b.market) for s, b in self._books.items()},
            "wallet_balance": self.wallet_balance,
            "now_ms": self.now_ms,
            "seq": self._seq,
            "totals": {
                "fees": self.total_fees,
                "funding": self.total_funding,
                "realized_pnl": self.realized_pnl,
                "liquidation_fees": self.total_liquidation_fees,
            },
            "books": {s: _book_state(b) for s, b in self._books.items()},
            "orders": orders,
            "trades": [t.to_dict() for t in self.trades] if history else [],
            "liquidations": [e.to_dict() for e in self.liquidations] if history else [],
        }

    @classmethod
    def restore(
        cls,
        state: Mapping[str, Any],
        config: PaperConfig | None = None,
        markets: Mapping[str, MarketRules | PaperMarket] | None = None,
    ) -> PaperCore:
        """Rebuild a core from ``snapshot()`` (config and markets from it unless given)."""
        if state.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported paper snapshot version {state.get('version')!r}")
        cfg = config if config is not None else PaperConfig.model_validate(state["config"])
        mkts = (
            markets
            if markets is not None
            else {s: _market_from_state(m) for s, m in state["markets"].items()}
        )
        core = cls(cfg, mkts, float(state["wallet_balance"]))
        core.now_ms = int(state["now_ms"])
        core._seq = int(state["seq"])
        totals = state["totals"]
        core.total_fees = float(totals["fees"])
        core.total_funding = float(totals["funding"])
        core.realized_pnl = float(totals["realized_pnl"])
        core.total_liquidation_fees = float(totals["liquidation_fees"])
        for symbol, bs in state["books"].items():
            _load_book(core._book(symbol), bs)
        for os_ in state["orders"]:
            o = _order_from_state(os_)
            core._orders[o.id] = o
            if o.client_id:
                core._client_ids[o.client_id] = o.id
            if o.status == "open":
                core._books[o.symbol].orders.append(o)
                core._reserved += o.reserved
        for b in core._books.values():
            b.orders.sort(key=lambda o: o.seq)
            if b.pos is not None:
                core._open_pos[b.symbol] = b
                if b.pos.margin_mode == "cross":
                    core._cross[b.symbol] = b
        core.trades = [Trade(**t) for t in state["trades"]]
        core.liquidations = [LiquidationEvent(**e) for e in state["liquidations"]]
        for b in core._books.values():
            core._rearm(b)
        return core

    # ------------------------------------------------------------------ internals: orders

    def _book(self, symbol: str) -> _Book:
        try:
            return self._books[symbol]
        except KeyError:
            raise BadSymbol(f"paper does not have market symbol {symbol}") from None

    def _place(self, b: _Book, o: _Order, p: Mapping[str, Any]) -> None:
        """Fill a market / marketable limit order now, or rest it (limit) or arm it (trigger)."""
        if o.type == _MARKET:
            if math.isnan(b.last):
                raise InvalidOrder(f"paper no price yet for {b.symbol}")
            pos = b.pos
            amount = pos.amount if o.close_position and pos is not None else o.amount
            self._execute(b, o, self._slipped(b, o.sign, b.last, amount), b.taker)
        elif o.type == _LIMIT:
            assert o.price is not None
            if not math.isnan(b.last) and o.sign * (b.last - o.price) <= 0:
                if p.get("postOnly") or p.get("timeInForce") == "GTX":
                    raise OrderImmediatelyFillable("paper post-only order would take liquidity")
                fill = self._slipped(b, o.sign, b.last, o.amount)
                fill = min(fill, o.price) if o.sign > 0 else max(fill, o.price)
                self._execute(b, o, fill, b.taker)
            else:
                self._rest_limit(b, o)
        else:
            o.armed_seq = b.seq
            b.orders.append(o)
            self._rearm(b)

    @staticmethod
    def _order_kind(type_: str, p: Mapping[str, Any]) -> tuple[str, float | None]:
        stop = p.get("stopLossPrice")
        take = p.get("takeProfitPrice")
        trig = p.get("triggerPrice", p.get("stopPrice"))
        if type_ in ("stop", "take_profit") or (
            type_ == _LIMIT and (stop is not None or take is not None or trig is not None)
        ):
            raise NotSupported("paper supports stop-market / take-profit-market triggers only")
        if stop is not None:
            return _STOP, float(stop)
        if take is not None:
            return _TAKE, float(take)
        if type_ in (_STOP, _TAKE):
            if trig is None:
                raise InvalidOrder(f"paper a {type_} order needs a triggerPrice")
            return type_, float(trig)
        if trig is not None and type_ == _MARKET:
            return _STOP, float(trig)
        if type_ in (_MARKET, _LIMIT):
            return type_, None
        raise NotSupported(f"paper does not support order type {type_!r}")

    def _check_not_immediate(
        self, b: _Book, kind: str, sign: int, trigger: float, on_mark: bool
    ) -> None:
        x = b.mark if on_mark else b.last
        if math.isnan(x):
            return
        up = (sign > 0) == (kind == _STOP)
        if (x >= trigger) if up else (x <= trigger):
            raise OrderImmediatelyFillable("paper Order would immediately trigger")

    def _max_leverage(self, b: _Book, notional: float) -> float:
        return b.tiers[tier_index(notional, b.tiers)].max_leverage

    def _check_leverage(self, b: _Book, sign: int, qty: float, price: float) -> None:
        pos = b.pos
        if pos is None:
            after = qty
        elif pos.sign == sign:
            after = pos.amount + qty
        else:
            after = qty - pos.amount
        if after <= 0:
            return
        cap = self._max_leverage(b, after * price)
        if b.leverage > cap + _EPS:
            raise InvalidOrder(
                f"paper Exceeded the maximum allowable position at current leverage "
                f"({b.leverage}x > {cap}x for notional {after * price:.2f})"
            )

    def _slipped(self, b: _Book, sign: int, price: float, amount: float) -> float:
        slip = self._slip
        if self._coef and b.volume > 0:
            slip = min(slip + self._coef * amount / b.volume, 0.99)  # keeps sell prices > 0
        return price * (1.0 + sign * slip)

    def _rest_limit(self, b: _Book, o: _Order) -> None:
        assert o.price is not None
        if not o.reducing:
            pos = b.pos
            opening = o.amount
            if pos is not None and pos.sign != o.sign:
                opening = max(0.0, o.amount - pos.amount)
            need = opening * o.price / b.leverage + opening * o.price * b.maker
            if need > self.free_margin + _EPS:
                raise InsufficientFunds(f"paper Margin is insufficient: need {need:.8f}")
            o.reserved = need
            self._reserved += need
        o.armed_seq = b.seq
        b.orders.append(o)
        self._rearm(b)

    def _cancel(self, b: _Book, o: _Order, status: OrderStatus = "canceled") -> None:
        o.status = status
        self._release(o)
        b.orders.remove(o)
        self._rearm(b)

    def _release(self, o: _Order) -> None:
        if o.reserved:
            self._reserved -= o.reserved
            o.reserved = 0.0

    def _find(self, id: str | None, params: Mapping[str, Any] | None) -> _Order:
        o = self._orders.get(id) if id else None
        if o is None and params:
            cid = params.get("clientOrderId") or params.get("origClientOrderId")
            oid = self._client_ids.get(str(cid)) if cid else None
            o = self._orders.get(oid) if oid else None
        if o is None and id:
            oid = self._client_ids.get(id)
            o = self._orders.get(oid) if oid else None
        if o is None:
            raise OrderNotFound(f"paper Order does not exist: {id!r}")
        return o

    # ------------------------------------------------------------------ internals: matching

    def _rearm(self, b: _Book) -> None:
        """Recompute the book's crossing thresholds (only when orders or the position change)."""
        self.revision += 1
        hi_l = hi_m = _INF
        lo_l = lo_m = -_INF
        for o in b.orders:
            if o.type == _LIMIT:
                assert o.price is not None
                if o.sign > 0:
                    lo_l = max(lo_l, o.price)
                else:
                    hi_l = min(hi_l, o.price)
                continue
            assert o.trigger is not None
            up = (o.sign > 0) == (o.type == _STOP)
            if o.on_mark:
                if up:
                    hi_m = min(hi_m, o.trigger)
                else:
                    lo_m = max(lo_m, o.trigger)
            elif up:
                hi_l = min(hi_l, o.trigger)
            else:
                lo_l = max(lo_l, o.trigger)
        pos = b.pos
        if pos is not None and pos.liq is not None:
            if pos.sign > 0:
                lo_m = max(lo_m, pos.liq)
            else:
                hi_m = min(hi_m, pos.liq)
        b.hi_last, b.lo_last, b.hi_mark, b.lo_mark = hi_l, lo_l, hi_m, lo_m
        b.active = pos is not None or bool(b.orders)
        b.dynamic = pos is not None and pos.margin_mode == "cross" and len(self._cross) > 1

    def _resolve(self, b: _Book, ts: int) -> None:
        """Handle every event the latest price point crossed, in path order."""
        if b.dynamic:
            self._update_liq(b)
        skip_liq = False
        for _ in range(_MAX_EVENTS_PER_PRICE):
            found = self._next_event(b, skip_liq)
            if found is None:
                break
            o, gap = found
            if o is None:
                skip_liq = not self._liquidate(b, ts)
            else:
                self._trigger(b, o, gap, ts)
        self._rearm(b)

    def _next_event(self, b: _Book, skip_liq: bool) -> tuple[_Order | None, bool] | None:
        """The earliest crossed event: ``(order, gap)``, ``(None, False)`` for liquidation."""
        last, mark = b.last, b.mark
        best: _Order | None = None
        best_key = (_INF, 0)
        best_gap = False
        any_gap = False
        first_seq = b.seq - 1
        for o in b.orders:
            if o.type == _LIMIT:
                assert o.price is not None
                if not ((last <= o.price) if o.sign > 0 else (last >= o.price)):
                    continue
                key = _distance(o.price, b.prev_last)
                gap = False
            else:
                assert o.trigger is not None
                x = mark if o.on_mark else last
                up = (o.sign > 0) == (o.type == _STOP)
                if not ((x >= o.trigger) if up else (x <= o.trigger)):
                    continue
                gap = o.armed_seq == first_seq
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

    def _trigger(self, b: _Book, o: _Order, gap: bool, ts: int) -> None:
        b.orders.remove(o)
        pos = b.pos
        if o.reducing and (pos is None or pos.sign == o.sign):
            o.status = "canceled"
            self._release(o)
            return
        if o.type == _LIMIT:
            assert o.price is not None
            price, fee_rate = o.price, b.maker
        else:
            assert o.trigger is not None
            amount = pos.amount if o.close_position and pos is not None else o.amount
            base = b.last if gap else o.trigger
            price, fee_rate = self._slipped(b, o.sign, base, amount), b.taker
        try:
            self._execute(b, o, price, fee_rate)
        except (InsufficientFunds, InvalidOrder):
            o.status = "rejected"
            self._release(o)

    def _execute(self, b: _Book, o: _Order, price: float, fee_rate: float) -> None:
        """Fill ``o`` completely at ``price``: reduce the opposite position, then open the rest."""
        pos = b.pos
        amount = o.amount
        if o.close_position:
            amount = pos.amount if pos is not None and pos.sign != o.sign else 0.0
        reduce = 0.0
        if pos is not None and pos.sign != o.sign:
            reduce = min(amount, pos.amount)
        opening = 0.0 if o.reducing else _snap(amount - reduce, b.amount_step)
        if opening > 0.0:
            self._check_leverage(b, o.sign, amount, price)
            need = opening * price / b.leverage + opening * price * fee_rate
            avail = self.free_margin + o.reserved
            if reduce > 0.0:
                avail += self._release_on_reduce(b, reduce, price, fee_rate)
            if need > avail + _EPS:
                raise InsufficientFunds(
                    f"paper Margin is insufficient: need {need:.8f}, available {avail:.8f}"
                )
            if self._liquidatable_after(b, o.sign, reduce, opening, price, fee_rate):
                raise InsufficientFunds(
                    "paper Margin is insufficient: the position would be liquidated at once"
                )
        self._release(o)
        ts = self.now_ms
        fee = 0.0
        if reduce > 0.0:
            fee += self._reduce(b, reduce, price, fee_rate, ts, o.reason, o.tag)
        if opening > 0.0:
            fee += self._open(b, o.sign, opening, price, fee_rate, ts, o.tag)
        filled = reduce + opening
        o.status = "closed"
        o.filled = filled
        if o.close_position:
            o.amount = filled
        o.average = price
        o.fee = fee
        o.last_trade_ts = ts

    def _release_on_reduce(self, b: _Book, qty: float, price: float, fee_rate: float) -> float:
        """Free margin gained by closing ``qty`` of the position at ``price``."""
        pos = b.pos
        assert pos is not None
        pnl = pos.sign * qty * (price - pos.entry)
        fee = qty * price * fee_rate
        if pos.margin_mode == "isolated":
            return pos.margin * qty / pos.amount + pnl - fee
        ref = self._ref_price(b)
        # cross: its uPnL was already in free margin; closing frees its initial margin
        return qty * ref / pos.leverage - fee + pos.sign * qty * (price - ref)

    # ------------------------------------------------------------------ internals: ledger

    def _open(
        self, b: _Book, sign: int, qty: float, price: float, fee_rate: float, ts: int, tag: str
    ) -> float:
        notional = qty * price
        fee = notional * fee_rate
        margin = notional / b.leverage
        self.wallet_balance -= fee
        self.total_fees += fee
        pos = b.pos
        if pos is None:
            pos = _Pos(sign, qty, price, b.margin_mode, b.leverage, margin, ts, fee, tag)
            b.pos = pos
            b.next_funding = self.next_funding_time(ts)
            self._open_pos[b.symbol] = b
            if pos.margin_mode == "cross":
                self._cross[b.symbol] = b
        else:
            total = _snap(pos.amount + qty, b.amount_step)
            pos.entry = (pos.entry * pos.amount + price * qty) / total
            pos.amount = total
            pos.margin += margin
            pos.entry_fees += fee
            pos.leverage = b.leverage
            pos.adds += 1
            if tag:
                pos.tag = tag
        self._ledger_changed(b)
        return fee

    def _reduce(
        self,
        b: _Book,
        qty: float,
        price: float,
        fee_rate: float,
        ts: int,
        reason: str,
        tag: str,
        extra_fee: float = 0.0,
    ) -> float:
        """Close ``qty`` at ``price``; record the trade; returns the closing fee."""
        pos = b.pos
        assert pos is not None
        share = qty / pos.amount
        pnl = pos.sign * qty * (price - pos.entry)
        fee = qty * price * fee_rate
        self.wallet_balance += pnl - fee
        self.total_fees += fee
        self.realized_pnl += pnl
        entry_fees = pos.entry_fees * share
        funding = pos.funding * share
        self.trades.append(
            Trade(
                b.symbol,
                pos.side,
                pos.entry,
                price,
                qty,
                pnl,
                entry_fees + fee + extra_fee,
                funding,
                pos.opened_at,
                ts,
                reason,
                tag or pos.tag,
            )
        )
        remaining = _snap(pos.amount - qty, b.amount_step)
        if remaining <= 0.0:
            self._drop_position(b)
        else:
            pos.amount = remaining
            pos.margin -= pos.margin * share
            pos.entry_fees -= entry_fees
            pos.funding -= funding
        self._ledger_changed(b)
        return fee

    def _drop_position(self, b: _Book) -> None:
        b.pos = None
        self._open_pos.pop(b.symbol, None)
        self._cross.pop(b.symbol, None)
        if self._cancel_on_flat:
            for o in list(b.orders):
                if o.reducing:
                    self._cancel(b, o)

    def _ledger_changed(self, b: _Book) -> None:
        """Refresh liquidation triggers after the wallet or a position changed."""
        if b.pos is not None:
            self._update_liq(b)
        for cb in self._cross.values():
            if cb is not b:
                self._update_liq(cb)
                self._rearm(cb)
        self._rearm(b)

    def _ref_price(self, b: _Book) -> float:
        pos = b.pos
        if not math.isnan(b.mark):
            return b.mark
        return pos.entry if pos is not None else math.nan

    def _maint(self, b: _Book, notional: float) -> float:
        """Maintenance margin of ``notional`` under the book's profile (the guards' figure)."""
        return profile_maintenance_margin(notional, b.tiers, b.liq_fee)

    def _balance_args(self, b: _Book) -> tuple[float, float, float]:
        """``(wallet_balance, other_maint_margin, other_unrealized_pnl)`` for the guards' math."""
        pos = b.pos
        assert pos is not None
        if pos.margin_mode == "isolated":
            return pos.margin, 0.0, 0.0
        om, ou = self._other_cross(b)
        return self.cross_wallet_balance, om, ou

    def _other_cross(self, b: _Book) -> tuple[float, float]:
        """Maintenance margin and uPnL of the cross positions on other symbols than ``b``."""
        om = ou = 0.0
        for cb in self._cross.values():
            if cb is b:
                continue
            other = cb.pos
            assert other is not None
            price = self._ref_price(cb)
            om += self._maint(cb, other.amount * price)
            ou += other.sign * other.amount * (price - other.entry)
        return om, ou

    def _liquidatable_after(
        self, b: _Book, sign: int, reduce: float, opening: float, price: float, fee_rate: float
    ) -> bool:
        """Would the position after filling ``opening`` at ``price`` be liquidatable at the mark?

        The exchange refuses such an order (margin insufficient) instead of filling it and
        liquidating it on the spot.
        """
        pos = b.pos
        margin = opening * price / b.leverage
        fee = opening * price * fee_rate
        cross_wallet = self.cross_wallet_balance - fee
        if pos is not None and pos.sign == sign:
            amount = _snap(pos.amount + opening, b.amount_step)
            entry = (pos.entry * pos.amount + price * opening) / amount
            margin += pos.margin
            mode = pos.margin_mode
        else:
            amount, entry, mode = opening, price, b.margin_mode
            if pos is not None and reduce > 0.0:  # a flip: the old position closes first
                close = pos.sign * reduce * (price - pos.entry) - reduce * price * fee_rate
                released = pos.margin if pos.margin_mode == "isolated" else 0.0
                cross_wallet += close + released
        if mode == "isolated":
            wallet, om, ou = margin, 0.0, 0.0
        else:
            wallet = cross_wallet
            om, ou = self._other_cross(b)
        mark = price if math.isnan(b.mark) else b.mark
        stage = liquidation_stage(
            side="long" if sign > 0 else "short",
            amount=amount,
            entry_price=entry,
            price=mark,
            margin_mode=mode,
            wallet_balance=wallet,
            tiers=b.tiers,
            other_maint_margin=om,
            other_unrealized_pnl=ou,
            liquidation_fee_rate=b.liq_fee,
        )
        return stage != "none"

    def _update_liq(self, b: _Book) -> None:
        pos = b.pos
        assert pos is not None
        wallet, om, ou = self._balance_args(b)
        pos.liq = liquidation_price(
            side=pos.side,
            amount=pos.amount,
            entry_price=pos.entry,
            margin_mode=pos.margin_mode,
            wallet_balance=wallet,
            tiers=b.tiers,
            other_maint_margin=om,
            other_unrealized_pnl=ou,
            liquidation_fee_rate=b.liq_fee,
        )

    def _run_funding(self, b: _Book, ts: int) -> None:
        while b.pos is not None and b.next_funding <= ts:
            t = b.next_funding
            self._charge_funding(b, self.funding_rate(b.symbol, t), b.mark)
            b.next_funding = t + FUNDING_PERIOD_MS

    # ------------------------------------------------------------------ internals: liquidation

    def _liquidate(self, b: _Book, ts: int) -> bool:
        """Run the liquidation engine at the mark; False when the position is not liquidatable."""
        pos = b.pos
        assert pos is not None
        mark = b.mark
        wallet, om, ou = self._balance_args(b)
        stage = liquidation_stage(
            side=pos.side,
            amount=pos.amount,
            entry_price=pos.entry,
            price=mark,
            margin_mode=pos.margin_mode,
            wallet_balance=wallet,
            tiers=b.tiers,
            other_maint_margin=om,
            other_unrealized_pnl=ou,
            liquidation_fee_rate=b.liq_fee,
        )
        if stage == "none":
            # The trigger was solved from the entry; re-solve it from here (tiered thresholds
            # can make the liquidatable prices of a long non-contiguous).
            pos.liq = liquidation_price(
                side=pos.side,
                amount=pos.amount,
                entry_price=mark,
                margin_mode=pos.margin_mode,
                wallet_balance=wallet + pos.sign * pos.amount * (mark - pos.entry),
                tiers=b.tiers,
                other_maint_margin=om,
                other_unrealized_pnl=ou,
                liquidation_fee_rate=b.liq_fee,
            )
            self._rearm(b)
            return False
        balance = margin_balance(
            side=pos.side,
            amount=pos.amount,
            entry_price=pos.entry,
            price=mark,
            margin_mode=pos.margin_mode,
            wallet_balance=wallet,
            other_maint_margin=om,
            other_unrealized_pnl=ou,
        )
        if stage == "partial":
            self._partial_liquidation(b, mark, balance, ts)
        else:
            self._whole_liquidation(b, mark, balance, wallet, om, ou, ts)
        return True

    def _whole_liquidation(
        self, b: _Book, mark: float, balance: float, wallet: float, om: float, ou: float, ts: int
    ) -> None:
        pos = b.pos
        assert pos is not None
        bankrupt = bankruptcy_price(
            side=pos.side,
            amount=pos.amount,
            entry_price=pos.entry,
            margin_mode=pos.margin_mode,
            wallet_balance=wallet,
            other_maint_margin=om,
            other_unrealized_pnl=ou,
        )
        price = 0.0 if bankrupt is None else bankrupt
        left = max(balance, 0.0)
        fee = left if b.liq_fee == 0.0 else min(b.liq_fee * pos.amount * mark, left)
        for o in list(b.orders):
            self._cancel(b, o)
        amount = pos.amount
        side = pos.side
        mode = pos.margin_mode
        before = self.wallet_balance
        self.total_liquidation_fees += fee
        self._reduce(b, amount, price, 0.0, ts, "liquidation", "")
        self.liquidations.append(
            LiquidationEvent(
                b.symbol,
                ts,
                side,
                amount,
                mark,
                price,
                before - self.wallet_balance,
                fee,
                balance,
                False,
                mode,
                b.profile,
            )
        )

    def _partial_liquidation(self, b: _Book, mark: float, balance: float, ts: int) -> None:
        pos = b.pos
        assert pos is not None
        tiers = b.tiers
        idx = tier_index(pos.amount * mark, tiers)
        top = tiers[idx - 1].max_notional
        step = b.amount_step
        keep = _snap(math.floor(top / mark / step) * step, step)
        while keep > 0.0 and tier_index(keep * mark, tiers) >= idx:
            keep = _snap(keep - step, step)
        qty = _snap(pos.amount - keep, step)
        fee = b.liq_fee * qty * mark
        pnl = pos.sign * qty * (mark - pos.entry)
        isolated = pos.margin_mode == "isolated"
        margin = pos.margin
        self.wallet_balance -= fee
        self.total_liquidation_fees += fee
        side = pos.side
        self._reduce(b, qty, mark, 0.0, ts, "liquidation", "", extra_fee=fee)
        if isolated and b.pos is not None:
            # the margin stays with the position: only the realised PnL and the fee settle
            b.pos.margin = margin + pnl - fee
            self._ledger_changed(b)
        self.liquidations.append(
            LiquidationEvent(
                b.symbol,
                ts,
                side,
                qty,
                mark,
                mark,
                fee - pnl,
                fee,
                balance,
                True,
                pos.margin_mode,
                b.profile,
            )
        )

    # ------------------------------------------------------------------ internals: dicts

    def _protection(self, b: _Book) -> tuple[float | None, float | None]:
        """Trigger prices of the live stop and take-profit that would close the position."""
        pos = b.pos
        stop = take = None
        if pos is None:
            return None, None
        for o in b.orders:
            if o.sign == pos.sign or o.trigger is None or not o.reducing:
                continue
            if o.type == _STOP and stop is None:
                stop = o.trigger
            elif o.type == _TAKE and take is None:
                take = o.trigger
        return stop, take

    def _order_dict(self, o: _Order) -> dict[str, Any]:
        trigger = o.trigger
        stop = trigger if o.type == _STOP else None
        take = trigger if o.type == _TAKE else None
        remaining = 0.0 if o.status != "open" else o.amount - o.filled
        cost = o.filled * o.average if o.average is not None else 0.0
        fee = {"cost": o.fee, "currency": self.currency}
        return {
            "info": {
                "orderId": o.id,
                "symbol": self._books[o.symbol].market.id,
                "reason": o.reason,
                "tag": o.tag,
                "workingType": "MARK_PRICE" if o.on_mark else "CONTRACT_PRICE",
                "closePosition": o.close_position,
            },
            "id": o.id,
            "clientOrderId": o.client_id or None,
            "timestamp": o.timestamp,
            "datetime": iso8601(o.timestamp),
            "lastTradeTimestamp": o.last_trade_ts,
            "lastUpdateTimestamp": o.last_trade_ts or o.timestamp,
            "symbol": o.symbol,
            "type": o.type,
            "timeInForce": "GTC" if o.type == _LIMIT else None,
            "postOnly": False,
            "reduceOnly": o.reducing,
            "side": o.side,
            "price": o.price if o.price is not None else o.average,
            "triggerPrice": trigger,
            "stopPrice": trigger,
            "stopLossPrice": stop,
            "takeProfitPrice": take,
            "amount": o.amount,
            "cost": cost,
            "average": o.average,
            "filled": o.filled,
            "remaining": remaining,
            "status": o.status,
            "fee": fee,
            "fees": [fee],
            "trades": [],
        }

    def _position_dict(self, b: _Book) -> dict[str, Any]:
        pos = b.pos
        assert pos is not None
        mark = self._ref_price(b)
        notional = pos.amount * mark
        upnl = pos.sign * pos.amount * (mark - pos.entry)
        maint = self._maint(b, notional)
        if pos.margin_mode == "isolated":
            collateral = pos.margin
            balance = pos.margin + upnl
        else:
            wallet, om, ou = self._balance_args(b)
            collateral = wallet
            balance = wallet - om + ou + upnl
        initial = notional / pos.leverage
        stop, take = self._protection(b)
        return {
            "info": {
                "symbol": b.market.id,
                "positionAmt": pos.sign * pos.amount,
                "isolatedMargin": pos.margin if pos.margin_mode == "isolated" else 0.0,
                "isolatedWallet": pos.margin if pos.margin_mode == "isolated" else 0.0,
                "entryFees": pos.entry_fees,
                "funding": pos.funding,
                "adds": pos.adds,
                "tag": pos.tag,
                "liquidationProfile": b.profile,
            },
            "id": None,
            "symbol": b.symbol,
            "timestamp": self.now_ms,
            "datetime": iso8601(self.now_ms),
            "lastUpdateTimestamp": self.now_ms,
            "hedged": False,
            "side": pos.side,
            "contracts": pos.amount,
            "contractSize": 1.0,
            "entryPrice": pos.entry,
            "markPrice": mark,
            "lastPrice": None if math.isnan(b.last) else b.last,
            "notional": notional,
            "leverage": pos.leverage,
            "collateral": collateral,
            "initialMargin": initial,
            "initialMarginPercentage": 1.0 / pos.leverage,
            "maintenanceMargin": maint,
            "maintenanceMarginPercentage": maint / notional if notional else None,
            "unrealizedPnl": upnl,
            "realizedPnl": None,
            "liquidationPrice": pos.liq,
            "marginMode": pos.margin_mode,
            "marginRatio": maint / balance if balance > 0 else None,
            "percentage": upnl / initial * 100 if initial else None,
            "stopLossPrice": stop,
            "takeProfitPrice": take,
        }


def _default_reason(kind: str) -> str:
    if kind == _STOP:
        return "stop"
    if kind == _TAKE:
        return "take_profit"
    return "strategy"


def _distance(level: float, prev: float) -> float:
    """How far the price travelled from ``prev`` to ``level`` (0 without a previous price)."""
    return 0.0 if math.isnan(prev) else abs(level - prev)


# ---------------------------------------------------------------------- snapshot helpers


def _num(x: float) -> float | None:
    return None if math.isnan(x) else x


def _market_state(m: PaperMarket) -> dict[str, Any]:
    r = m.rules
    return {
        "symbol": r.symbol,
        "tiers": [
            [
                t.min_notional,
                t.max_notional if math.isfinite(t.max_notional) else None,
                t.mmr,
                t.maint_amount,
                t.max_leverage,
            ]
            for t in r.tiers
        ],
        "amount_step": r.amount_step,
        "price_step": r.price_step,
        "min_amount": r.min_amount,
        "min_notional": r.min_notional,
        "taker_fee": r.taker_fee,
        "maker_fee": r.maker_fee,
        "liquidation_fee_rate": r.liquidation_fee_rate,
        "id": m.id,
        "base": m.base,
        "quote": m.quote,
        "settle": m.settle,
        "min_price": m.min_price,
        "max_price": m.max_price,
        "max_amount": m.max_amount,
        "max_market_amount": m.max_market_amount,
        "tier_entries": [dict(e) for e in m.tier_entries],
    }


def _market_from_state(s: Mapping[str, Any]) -> PaperMarket:
    tiers = tuple(
        Tier(lo, math.inf if hi is None else hi, mmr, cum, lev)
        for lo, hi, mmr, cum, lev in s["tiers"]
    )
    rules = MarketRules(
        symbol=s["symbol"],
        tiers=tiers,
        amount_step=s["amount_step"],
        price_step=s["price_step"],
        min_amount=s["min_amount"],
        min_notional=s["min_notional"],
        taker_fee=s["taker_fee"],
        maker_fee=s["maker_fee"],
        liquidation_fee_rate=s["liquidation_fee_rate"],
    )
    return PaperMarket(
        rules=rules,
        id=s["id"],
        base=s["base"],
        quote=s["quote"],
        settle=s["settle"],
        min_price=s["min_price"],
        max_price=s["max_price"],
        max_amount=s["max_amount"],
        max_market_amount=s["max_market_amount"],
        tier_entries=tuple(s["tier_entries"]),
    )


def _book_state(b: _Book) -> dict[str, Any]:
    pos = b.pos
    return {
        "leverage": b.leverage,
        "margin_mode": b.margin_mode,
        "last": _num(b.last),
        "mark": _num(b.mark),
        "prev_last": _num(b.prev_last),
        "prev_mark": _num(b.prev_mark),
        "seq": b.seq,
        "next_funding": b.next_funding,
        "volume": b.volume,
        "position": None
        if pos is None
        else {
            "sign": pos.sign,
            "amount": pos.amount,
            "entry": pos.entry,
            "margin_mode": pos.margin_mode,
            "leverage": pos.leverage,
            "margin": pos.margin,
            "liq": pos.liq,
            "opened_at": pos.opened_at,
            "entry_fees": pos.entry_fees,
            "funding": pos.funding,
            "adds": pos.adds,
            "tag": pos.tag,
        },
    }


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _load_book(b: _Book, s: Mapping[str, Any]) -> None:
    b.leverage = float(s["leverage"])
    b.margin_mode = "cross" if s["margin_mode"] == "cross" else "isolated"
    b.last = _nan(s["last"])
    b.mark = _nan(s["mark"])
    b.prev_last = _nan(s["prev_last"])
    b.prev_mark = _nan(s["prev_mark"])
    b.seq = int(s["seq"])
    b.next_funding = int(s["next_funding"])
    b.volume = float(s["volume"])
    p = s["position"]
    if p is not None:
        pos = _Pos(
            int(p["sign"]),
            float(p["amount"]),
            float(p["entry"]),
            "cross" if p["margin_mode"] == "cross" else "isolated",
            float(p["leverage"]),
            float(p["margin"]),
            int(p["opened_at"]),
            float(p["entry_fees"]),
            str(p["tag"]),
        )
        pos.liq = None if p["liq"] is None else float(p["liq"])
        pos.funding = float(p["funding"])
        pos.adds = int(p["adds"])
        b.pos = pos


_ORDER_FIELDS: Final = (
    "amount",
    "armed_seq",
    "average",
    "close_position",
    "fee",
    "filled",
    "client_id",
    "last_trade_ts",
    "on_mark",
    "price",
    "reason",
    "reduce_only",
    "reserved",
    "seq",
    "side",
    "status",
    "symbol",
    "tag",
    "timestamp",
    "trigger",
    "type",
)


def _order_state(o: _Order) -> dict[str, Any]:
    return {name: getattr(o, name) for name in _ORDER_FIELDS}


def _order_from_state(s: Mapping[str, Any]) -> _Order:
    o = _Order(
        int(s["seq"]),
        str(s["client_id"]),
        str(s["symbol"]),
        str(s["type"]),
        str(s["side"]),
        float(s["amount"]),
        s["price"],
        s["trigger"],
        bool(s["on_mark"]),
        bool(s["reduce_only"]),
        bool(s["close_position"]),
        str(s["reason"]),
        str(s["tag"]),
        int(s["timestamp"]),
    )
    o.status = s["status"]
    o.filled = float(s["filled"])
    o.average = s["average"]
    o.fee = float(s["fee"])
    o.reserved = float(s["reserved"])
    o.armed_seq = int(s["armed_seq"])
    o.last_trade_ts = s["last_trade_ts"]
    return o


__all__ = [
    "FUNDING_PERIOD_MS",
    "LiquidationEvent",
    "PaperCore",
    "Trade",
    "iso8601",
]
