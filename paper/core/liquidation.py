"""The exchange's own liquidation engine, on the mark, with the guards' ``guards.liquidation`` math.

When the mark reaches a position's trigger price, ``liquidation_stage`` at the mark decides:

* ``binance`` profile (liquidation fee rate 0): whole position when margin balance <= MM
  (``N * mmr - cum``).
* ``tiered`` profile (``config.liquidation_fee_rate``): margin rate vs tier thresholds
  (tiers 1-2: mmr + fee, cross without the fee; tier >= 3: partial at its own mmr + fee, whole
  at tier 1's mmr + fee). A partial reduction closes, at the mark, what takes the position to
  the top of the next lower tier, charging the fee rate on the closed notional; the margin
  stays with the position (so its margin rate rises); repeated tier by tier within the price.
* ``bybit`` profile: whole position when margin balance <= MM at the entry value (``q*E*mmr -
  deduction``); Bybit settles it at the bankruptcy price, the rest of the margin going to its
  insurance fund (the recorded fee).
* ``okx`` profile (the taker fee rate as liquidation fee): the tiered thresholds with the fee in
  cross too and tiers by position size; a partial reduction closes, at the mark, what takes
  the position down **two tiers** (to the top of tier ``i - 2``, at least tier 1), OKX's rule
  ("the system calculates the number of contracts needed to reduce the position by two tiers";
  its worked example closes 15,000 - 2,000 = 13,000 contracts of a tier-3 position), charging
  the fee on the closed notional, repeated while the position stays liquidatable.

A whole liquidation closes the position at the bankruptcy price (margin balance 0), so an
isolated position loses its whole margin and a cross one the cross balance ``wallet - other
MM + other uPnL``; the engine then cancels the symbol's open orders. The recorded liquidation
fee is what the position still had at the trigger and is part of that loss, never on top of
it: binance profile ``max(balance at mark, 0)``; tiered ``min(fee rate * notional, that)``.
So a whole liquidation debits nothing but its (negative) realised PnL, and its fill's fee is 0;
a partial one debits its fee from the wallet, and that fee counts in ``total_fees`` (and in its
fill's and trade's fees) like a trading fee. ``total_liquidation_fees`` adds up the recorded
fees of both kinds.
With two or more cross positions the trigger is re-solved on every price of a cross symbol, and
only the symbol being priced is liquidated at that point.
"""

from __future__ import annotations

import math

from guards import (
    Side,
    bankruptcy_price,
    liquidation_price,
    liquidation_stage,
    margin_balance,
    position_tier_index,
    tier_index,
)
from paper.core.book import Book
from paper.core.history import History
from paper.core.ledger import Ledger
from paper.core.records import (
    LIQUIDATION_CLIENT_PREFIX,
    LIQUIDATION_ORDER_PREFIX,
    Fill,
    LiquidationEvent,
    Trade,
    snap,
)


class LiquidationEngine:
    """Closes what the margin can no longer hold; records a ``LiquidationEvent`` per action."""

    __slots__ = ("history", "ledger")

    def __init__(self, ledger: Ledger, history: History) -> None:
        self.ledger = ledger
        self.history = history

    def liquidate(self, b: Book, ts: int) -> bool:
        """Run the engine at the mark; False when the position is not liquidatable."""
        pos = b.pos
        assert pos is not None
        led = self.ledger
        mark = b.mark
        wallet, om, ou = led.balance_args(b)
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
        if stage == "none" and b.profile in ("bybit", "okx"):
            # One half-line of liquidatable prices from a trigger that does not go stale: the
            # mark is at or past it, "none" is rounding at the boundary (Bybit's MM is on the
            # entry value, so re-solving from the mark below would move the trigger).
            whole = b.profile == "bybit" or position_tier_index(pos.amount, mark, b.tiers) < 2
            stage = "whole" if whole else "partial"
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
            led.rearm(b)
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
            self._partial(b, mark, balance, ts)
        else:
            self._whole(b, mark, balance, wallet, om, ou, ts)
        return True

    def _whole(
        self, b: Book, mark: float, balance: float, wallet: float, om: float, ou: float, ts: int
    ) -> None:
        pos = b.pos
        assert pos is not None
        led = self.ledger
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
            led.cancel(b, o)
        amount = pos.amount
        side = pos.side
        mode = pos.margin_mode
        before = led.wallet_balance
        led.total_liquidation_fees += fee
        _, trade = led.reduce(b, amount, price, 0.0, ts, "liquidation", "")
        self._fill(b, side, amount, price, 0.0, trade, ts)
        self.history.add_liquidation(
            LiquidationEvent(
                b.symbol,
                ts,
                side,
                amount,
                mark,
                price,
                before - led.wallet_balance,
                fee,
                balance,
                False,
                mode,
                b.profile,
            )
        )

    def _partial(self, b: Book, mark: float, balance: float, ts: int) -> None:
        pos = b.pos
        assert pos is not None
        led = self.ledger
        tiers = b.tiers
        step = b.amount_step
        if b.profile == "okx":  # tiers are sizes: down two tiers, at least to tier 1
            idx = position_tier_index(pos.amount, mark, tiers)
            top = tiers[max(idx - 2, 0)].max_notional
            keep = snap(math.floor(top / step + 1e-9) * step, step)
        else:
            idx = tier_index(pos.amount * mark, tiers)
            top = tiers[idx - 1].max_notional
            keep = snap(math.floor(top / mark / step) * step, step)
            while keep > 0.0 and tier_index(keep * mark, tiers) >= idx:
                keep = snap(keep - step, step)
        qty = snap(pos.amount - keep, step)
        fee = b.liq_fee * qty * mark
        pnl = pos.sign * qty * (mark - pos.entry)
        isolated = pos.margin_mode == "isolated"
        margin = pos.margin
        led.wallet_balance -= fee
        led.total_fees += fee  # a debit like any fee: the ledger identity holds
        led.total_liquidation_fees += fee
        side = pos.side
        _, trade = led.reduce(b, qty, mark, 0.0, ts, "liquidation", "", extra_fee=fee)
        self._fill(b, side, qty, mark, fee, trade, ts)
        if isolated and b.pos is not None:
            # the margin stays with the position: only the realised PnL and the fee settle
            b.pos.margin = margin + pnl - fee
            led.changed(b)
        self.history.add_liquidation(
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

    def _fill(
        self, b: Book, side: Side, qty: float, price: float, fee: float, trade: Trade, ts: int
    ) -> None:
        """Record the fill of the engine's own order closing ``qty`` of a ``side`` position."""
        history = self.history
        fid = history.next_fill_id()
        history.add_fill(
            Fill(
                fid,
                f"{LIQUIDATION_ORDER_PREFIX}{fid}",
                f"{LIQUIDATION_CLIENT_PREFIX}{fid}",
                b.symbol,
                "sell" if side == "long" else "buy",
                qty,
                price,
                fee,
                self.ledger.currency,
                trade.pnl,
                ts,
                "liquidation",
                "",
                "taker",
                True,
                b.pos is None,
            ),
            trade,
        )
