"""Auto-deleveraging: the exchange closes (part of) a position at a price it chooses.

When a liquidated counterparty's loss exceeds what the insurance fund covers, the exchange
closes positions of profitable traders on the other side against it (Binance: "ADL"; the
user-data stream shows the order with client id ``adl_autoclose``). The position holder's
margin is not short, so it is not a liquidation: no liquidation fee, no trading fee; the
closed part realises its price PnL at the ADL price and the ledger settles it like any
closing fill. ``deleverage`` records one ``Fill`` (reason ``"adl"``, order id
``adl-<fill id>``) and the ``Trade`` it closed; when the position goes flat, its reduce-only
orders go with it (``cancel_reduce_only_on_flat``), as after any closing fill.
"""

from __future__ import annotations

import math
from typing import Final

from ccxt.base.errors import BadRequest

from paper.core.book import Book
from paper.core.history import History
from paper.core.ledger import Ledger
from paper.core.records import EPS, Fill, snap

#: Binance's client order id of its ADL orders, and the order ids the core gives them.
ADL_CLIENT_ID: Final = "adl_autoclose"
ADL_ORDER_PREFIX: Final = "adl-"
ADL_REASON: Final = "adl"


def deleverage(
    b: Book, ledger: Ledger, history: History, price: float, amount: float | None, ts: int
) -> Fill:
    """Close ``amount`` (None: all) of ``b``'s position at ``price`` as an ADL fill."""
    pos = b.pos
    if pos is None:
        raise BadRequest(f"paper no position on {b.symbol} to deleverage")
    if not (price > 0 and math.isfinite(price)):
        raise BadRequest(f"paper ADL price must be positive, not {price}")
    qty = pos.amount if amount is None else snap(float(amount), b.amount_step)
    if not qty > 0 or qty > pos.amount + EPS:
        raise BadRequest(f"paper ADL amount must be in (0, {pos.amount}], not {amount}")
    qty = min(qty, pos.amount)
    side = pos.side
    _, trade = ledger.reduce(b, qty, price, 0.0, ts, ADL_REASON, "")
    fid = history.next_fill_id()
    fill = Fill(
        fid,
        f"{ADL_ORDER_PREFIX}{fid}",
        ADL_CLIENT_ID,
        b.symbol,
        "sell" if side == "long" else "buy",
        qty,
        price,
        0.0,
        ledger.currency,
        trade.pnl,
        ts,
        ADL_REASON,
        "",
        "taker",
        True,
        b.pos is None,
    )
    history.add_fill(fill, trade)
    return fill
