"""The margin ledger: wallet, fees, funding, margins, the cross figures and the positions.

Ledger
  ``wallet_balance`` is the account's cash (realised PnL, fees and funding; it includes isolated
  margins). An isolated position holds margin = notional / leverage at each fill plus
  ``add_margin``; the entry fee is paid from the wallet. ``free_margin`` follows Binance's
  available balance: wallet - isolated margins + cross uPnL - cross initial margin (at the mark)
  - margin reserved by resting limit entries. ``equity`` = wallet + every position's uPnL.
  Changing leverage affects later fills only.

  ``total_fees`` is every fee debited from the wallet: trading fees and partial-liquidation
  fees (a whole liquidation's fee is part of the margin it takes, not a debit). So, with
  ``realized_pnl`` the gross PnL of every closing fill and ``total_funding`` the funding
  received, ``wallet = start + realized_pnl - total_fees + total_funding`` under both
  liquidation profiles, and it equals ``start + sum(trade.net)`` once flat.

Funding
  Every 8 h (00:00, 08:00, 16:00 UTC): when ``auto_funding`` is on, the first ``on_price`` of a
  symbol at or after a funding time charges ``amount * mark * rate`` (longs pay a positive rate)
  at that price's mark, before anything else on that price, once per funding time crossed. The
  rate comes from ``set_funding_rates`` (timestamps matched to the minute) or else
  ``config.funding_rate``. Isolated positions pay from their margin, cross ones from the wallet;
  the liquidation price moves accordingly.

Liquidation triggers
  Each position keeps a precomputed trigger price, ``guards.liquidation.liquidation_price`` of
  its profile, refreshed whenever its margin picture changes (fill, funding, add_margin, or any
  wallet change for cross). Cross: the balance is the cross wallet (wallet - isolated margins)
  minus the other cross positions' MM plus their uPnL.

``Ledger`` also owns the registries of open and cross positions, the margin reserved by resting
limit orders, and ``revision``, bumped whenever a book is re-armed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from guards import liquidation_price, liquidation_stage
from paper.core.book import Book
from paper.core.history import History
from paper.core.records import (
    FUNDING_PERIOD_MS,
    OrderRecord,
    OrderStatus,
    PositionRecord,
    Trade,
    next_funding_time,
    snap,
)


class Ledger:
    """The account's money and positions; every change to them goes through here."""

    __slots__ = (
        "cancel_on_flat",
        "cross",
        "currency",
        "default_funding_rate",
        "history",
        "open_pos",
        "realized_pnl",
        "reserved",
        "revision",
        "total_fees",
        "total_funding",
        "total_liquidation_fees",
        "wallet_balance",
    )

    def __init__(
        self,
        wallet_balance: float,
        currency: str,
        history: History,
        *,
        default_funding_rate: float,
        cancel_on_flat: bool,
    ) -> None:
        self.wallet_balance = wallet_balance
        self.currency = currency
        self.history = history
        self.default_funding_rate = default_funding_rate
        self.cancel_on_flat = cancel_on_flat
        #: Books with an open position, in opening order.
        self.open_pos: dict[str, Book] = {}
        #: Books with an open cross position.
        self.cross: dict[str, Book] = {}
        #: Margin reserved by resting limit entries.
        self.reserved = 0.0
        self.revision = 0
        self.total_fees = 0.0
        self.total_funding = 0.0
        self.realized_pnl = 0.0
        self.total_liquidation_fees = 0.0

    # ------------------------------------------------------------------ books and orders

    def rearm(self, b: Book) -> None:
        """Recompute ``b``'s thresholds; a position, an order or the wallet may have changed."""
        self.revision += 1
        b.rearm(len(self.cross) > 1)

    def release(self, o: OrderRecord) -> None:
        """Give back the margin a resting limit entry reserved."""
        if o.reserved:
            self.reserved -= o.reserved
            o.reserved = 0.0

    def cancel(self, b: Book, o: OrderRecord, status: OrderStatus = "canceled") -> None:
        """Take the open order ``o`` off its book with ``status``."""
        o.status = status
        self.release(o)
        b.orders.remove(o)
        self.rearm(b)

    # ------------------------------------------------------------------ fills

    def open(
        self, b: Book, sign: int, qty: float, price: float, fee_rate: float, ts: int, tag: str
    ) -> float:
        """Open or add ``qty`` at ``price``; returns the fee paid."""
        notional = qty * price
        fee = notional * fee_rate
        margin = notional / b.leverage
        self.wallet_balance -= fee
        self.total_fees += fee
        pos = b.pos
        if pos is None:
            pos = PositionRecord(sign, qty, price, b.margin_mode, b.leverage, margin, ts, fee, tag)
            b.pos = pos
            b.next_funding = next_funding_time(ts)
            self.open_pos[b.symbol] = b
            if pos.margin_mode == "cross":
                self.cross[b.symbol] = b
        else:
            total = snap(pos.amount + qty, b.amount_step)
            pos.entry = (pos.entry * pos.amount + price * qty) / total
            pos.amount = total
            pos.margin += margin
            pos.entry_fees += fee
            pos.leverage = b.leverage
            pos.adds += 1
            if tag:
                pos.tag = tag
        self.changed(b)
        return fee

    def reduce(
        self,
        b: Book,
        qty: float,
        price: float,
        fee_rate: float,
        ts: int,
        reason: str,
        tag: str,
        extra_fee: float = 0.0,
    ) -> tuple[float, Trade]:
        """Close ``qty`` at ``price``; record the trade; returns the closing fee and the trade.

        ``extra_fee`` (a partial liquidation's fee, debited by the caller) is booked to the
        trade's fees.
        """
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
        trade = Trade(
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
        self.history.trades.append(trade)
        remaining = snap(pos.amount - qty, b.amount_step)
        if remaining <= 0.0:
            self.drop_position(b)
        else:
            pos.amount = remaining
            pos.margin -= pos.margin * share
            pos.entry_fees -= entry_fees
            pos.funding -= funding
        self.changed(b)
        return fee, trade

    def drop_position(self, b: Book) -> None:
        """The position of ``b`` is flat: forget it (and its reduce-only orders)."""
        b.pos = None
        self.open_pos.pop(b.symbol, None)
        self.cross.pop(b.symbol, None)
        if self.cancel_on_flat:
            for o in list(b.orders):
                if o.reducing:
                    self.cancel(b, o)

    def release_on_reduce(self, b: Book, qty: float, price: float, fee_rate: float) -> float:
        """Free margin gained by closing ``qty`` of the position at ``price``."""
        pos = b.pos
        assert pos is not None
        pnl = pos.sign * qty * (price - pos.entry)
        fee = qty * price * fee_rate
        if pos.margin_mode == "isolated":
            return pos.margin * qty / pos.amount + pnl - fee
        ref = b.ref_price()
        # cross: its uPnL was already in free margin; closing frees its initial margin
        return qty * ref / pos.leverage - fee + pos.sign * qty * (price - ref)

    def add_margin(self, b: Book, amount: float) -> None:
        pos = b.pos
        assert pos is not None
        pos.margin += amount
        self.changed(b)

    # ------------------------------------------------------------------ funding

    def charge_funding(self, b: Book, rate: float, price: float, ts: int) -> float:
        """One funding payment of ``b``'s position at ``price``; the cash flow to the account."""
        pos = b.pos
        if pos is None:
            return 0.0
        pay = pos.sign * pos.amount * price * rate
        self.wallet_balance -= pay
        self.total_funding -= pay
        pos.funding -= pay
        if pos.margin_mode == "isolated":
            pos.margin -= pay
        self.history.add_funding(
            b.symbol, ts, rate, price, pos.sign * pos.amount, -pay, self.currency
        )
        self.changed(b)
        return -pay

    def run_funding(self, b: Book, ts: int) -> None:
        """Charge every funding time of ``b`` up to ``ts`` at the current mark."""
        while b.pos is not None and b.next_funding <= ts:
            t = b.next_funding
            self.charge_funding(b, b.funding_rate(t, self.default_funding_rate), b.mark, t)
            b.next_funding = t + FUNDING_PERIOD_MS

    # ------------------------------------------------------------------ liquidation triggers

    def changed(self, b: Book) -> None:
        """Refresh liquidation triggers after the wallet or a position of ``b`` changed."""
        if b.pos is not None:
            self.update_liq(b)
        for cb in self.cross.values():
            if cb is not b:
                self.update_liq(cb)
                self.rearm(cb)
        self.rearm(b)

    def balance_args(self, b: Book) -> tuple[float, float, float]:
        """``(wallet_balance, other_maint_margin, other_unrealized_pnl)`` for the guards' math."""
        pos = b.pos
        assert pos is not None
        if pos.margin_mode == "isolated":
            return pos.margin, 0.0, 0.0
        om, ou = self.other_cross(b)
        return self.wallet_balance - self.isolated_margin, om, ou  # the cross wallet balance

    def other_cross(self, b: Book) -> tuple[float, float]:
        """Maintenance margin and uPnL of the cross positions on other symbols than ``b``."""
        om = ou = 0.0
        for cb in self.cross.values():
            if cb is b:
                continue
            other = cb.pos
            assert other is not None
            price = cb.ref_price()
            om += cb.maint(price)
            ou += other.sign * other.amount * (price - other.entry)
        return om, ou

    def update_liq(self, b: Book) -> None:
        """Re-solve the liquidation trigger of ``b``'s position from its entry."""
        pos = b.pos
        assert pos is not None
        wallet, om, ou = self.balance_args(b)
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

    def liquidatable_after(
        self, b: Book, sign: int, reduce: float, opening: float, price: float, fee_rate: float
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
            amount = snap(pos.amount + opening, b.amount_step)
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
            om, ou = self.other_cross(b)
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

    # ------------------------------------------------------------------ figures

    def unrealized_pnl(self, marks: Mapping[str, float] | None = None) -> float:
        total = 0.0
        for b in self.open_pos.values():
            pos = b.pos
            assert pos is not None
            price = marks.get(b.symbol, b.mark) if marks is not None else b.mark
            if not math.isnan(price):
                total += pos.sign * pos.amount * (price - pos.entry)
        return total

    @property
    def isolated_margin(self) -> float:
        """Margin held by isolated positions."""
        total = 0.0
        for b in self.open_pos.values():
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
        free = self.wallet_balance - self.reserved
        for b in self.open_pos.values():
            pos = b.pos
            assert pos is not None
            if pos.margin_mode == "isolated":
                free -= pos.margin
            else:
                price = b.ref_price()
                free += pos.sign * pos.amount * (price - pos.entry)
                free -= pos.amount * price / pos.leverage
        return free
