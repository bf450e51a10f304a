"""ccxt-shaped views of the core's state: order, position, balance and ticker dicts.

Each is a fresh dict in ccxt's unified structure (floats, ``info`` with Binance-like raw
fields plus the paper's own labels), built on request; nothing here changes state.
"""

from __future__ import annotations

import math
from typing import Any

from paper.core.book import Book
from paper.core.ledger import Ledger
from paper.core.records import LIMIT, STOP, TAKE, OrderRecord, iso8601


def protection(b: Book) -> tuple[float | None, float | None]:
    """Trigger prices of the live stop and take-profit that would close the position."""
    pos = b.pos
    stop = take = None
    if pos is None:
        return None, None
    for o in b.orders:
        if o.sign == pos.sign or o.trigger is None or not o.reducing:
            continue
        if o.type == STOP and stop is None:
            stop = o.trigger
        elif o.type == TAKE and take is None:
            take = o.trigger
    return stop, take


def order_dict(o: OrderRecord, market_id: str, currency: str) -> dict[str, Any]:
    """ccxt's order structure of ``o``."""
    trigger = o.trigger
    stop = trigger if o.type == STOP else None
    take = trigger if o.type == TAKE else None
    remaining = 0.0 if o.status != "open" else o.amount - o.filled
    cost = o.filled * o.average if o.average is not None else 0.0
    fee = {"cost": o.fee, "currency": currency}
    return {
        "info": {
            "orderId": o.id,
            "symbol": market_id,
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
        "timeInForce": "GTC" if o.type == LIMIT else None,
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


def position_dict(b: Book, ledger: Ledger, now_ms: int) -> dict[str, Any]:
    """ccxt's position structure of ``b``'s open position."""
    pos = b.pos
    assert pos is not None
    mark = b.ref_price()
    notional = pos.amount * mark
    upnl = pos.sign * pos.amount * (mark - pos.entry)
    maint = b.maint(mark)
    if pos.margin_mode == "isolated":
        collateral = pos.margin
        balance = pos.margin + upnl
    else:
        wallet, om, ou = ledger.balance_args(b)
        collateral = wallet
        balance = wallet - om + ou + upnl
    initial = notional / pos.leverage
    stop, take = protection(b)
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
        "timestamp": now_ms,
        "datetime": iso8601(now_ms),
        "lastUpdateTimestamp": now_ms,
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


def balance_dict(ledger: Ledger, now_ms: int) -> dict[str, Any]:
    """ccxt's balance structure: total = wallet balance, free = available margin."""
    total = ledger.wallet_balance
    free = ledger.free_margin
    used = total - free
    upnl = ledger.unrealized_pnl()
    cur = ledger.currency
    return {
        "info": {
            "walletBalance": total,
            "availableBalance": free,
            "marginBalance": total + upnl,
            "unrealizedProfit": upnl,
        },
        "timestamp": now_ms,
        "datetime": iso8601(now_ms),
        cur: {"free": free, "used": used, "total": total},
        "free": {cur: free},
        "used": {cur: used},
        "total": {cur: total},
    }


def ticker_dict(b: Book, now_ms: int) -> dict[str, Any]:
    """ccxt's ticker of ``b`` from its last price point (``markPrice`` too)."""
    last = None if math.isnan(b.last) else b.last
    mark = None if math.isnan(b.mark) else b.mark
    return {
        "symbol": b.symbol,
        "timestamp": now_ms,
        "datetime": iso8601(now_ms),
        "last": last,
        "close": last,
        "bid": last,
        "ask": last,
        "markPrice": mark,
        "indexPrice": mark,
        "info": {"symbol": b.market.id, "lastPrice": last, "markPrice": mark},
    }
