"""Snapshot and restore of a paper core: its whole state as a JSON-safe dict, and back.

A snapshot holds the config, the markets, the ledger (wallet and totals), every book (settings,
prices, position), the orders and the history. Restoring it into a fresh core (``load``) gives
an identical core: same state, same future. Funding-rate series are inputs, not state, and are
not included. Numbers stay floats (NaN prices as ``None``), so the dict survives ``json``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from guards import MarketRules, Tier
from paper.config import PaperConfig
from paper.core.book import Book
from paper.core.history import History
from paper.core.ledger import Ledger
from paper.core.matching import Matcher
from paper.core.records import (
    Fill,
    FundingPayment,
    LiquidationEvent,
    OrderRecord,
    PositionRecord,
    Trade,
)
from paper.markets import PaperMarket

#: 2: fills and funding payments (and their id counters) added; ``totals.fees`` includes the
#: partial-liquidation fees. A version 1 snapshot still restores, with an empty fill and
#: funding history and the partial-liquidation fees of its history added to its fees.
SNAPSHOT_VERSION: Final = 2
_READABLE: Final = (1, 2)

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


def dump(
    config: PaperConfig,
    books: Mapping[str, Book],
    ledger: Ledger,
    matcher: Matcher,
    history: History,
    now_ms: int,
    with_history: bool,
) -> dict[str, Any]:
    """The state; ``with_history=False`` drops closed orders and the history lists."""
    orders = [
        _order_state(o) for o in matcher.orders.values() if with_history or o.status == "open"
    ]
    return {
        "version": SNAPSHOT_VERSION,
        "config": config.model_dump(mode="json"),
        "markets": {s: market_state(b.market) for s, b in books.items()},
        "wallet_balance": ledger.wallet_balance,
        "now_ms": now_ms,
        "seq": matcher.seq,
        "totals": {
            "fees": ledger.total_fees,
            "funding": ledger.total_funding,
            "realized_pnl": ledger.realized_pnl,
            "liquidation_fees": ledger.total_liquidation_fees,
        },
        "books": {s: _book_state(b) for s, b in books.items()},
        "orders": orders,
        "trades": [t.to_dict() for t in history.trades] if with_history else [],
        "liquidations": [e.to_dict() for e in history.liquidations] if with_history else [],
        "fill_seq": history.fill_seq,
        "fills": [f.to_dict() for f in history.fills] if with_history else [],
        "funding_seq": history.funding_seq,
        "funding_payments": [p.to_dict() for p in history.funding] if with_history else [],
    }


def check_version(state: Mapping[str, Any]) -> None:
    if state.get("version") not in _READABLE:
        raise ValueError(f"unsupported paper snapshot version {state.get('version')!r}")


def load(
    state: Mapping[str, Any],
    books: Mapping[str, Book],
    ledger: Ledger,
    matcher: Matcher,
    history: History,
) -> int:
    """Put ``state`` into the components of a fresh core; returns its clock (``now_ms``)."""
    check_version(state)
    matcher.seq = int(state["seq"])
    totals = state["totals"]
    ledger.total_fees = float(totals["fees"])
    if state["version"] == 1:  # its fees left out the partial-liquidation fees
        ledger.total_fees += sum(float(e["fee"]) for e in state["liquidations"] if e["partial"])
    ledger.total_funding = float(totals["funding"])
    ledger.realized_pnl = float(totals["realized_pnl"])
    ledger.total_liquidation_fees = float(totals["liquidation_fees"])
    for symbol, bs in state["books"].items():
        _load_book(books[symbol], bs)
    for os_ in state["orders"]:
        o = _order_from_state(os_)
        matcher.orders[o.id] = o
        if o.client_id:
            matcher.client_ids[o.client_id] = o.id
        if o.status == "open":
            books[o.symbol].orders.append(o)
            ledger.reserved += o.reserved
    for b in books.values():
        b.orders.sort(key=lambda o: o.seq)
        if b.pos is not None:
            ledger.open_pos[b.symbol] = b
            if b.pos.margin_mode == "cross":
                ledger.cross[b.symbol] = b
    history.trades[:] = [Trade(**t) for t in state["trades"]]
    history.liquidations[:] = [LiquidationEvent(**e) for e in state["liquidations"]]
    history.fills[:] = [Fill(**f) for f in state.get("fills", ())]
    history.fill_seq = int(state.get("fill_seq", 0))
    history.funding[:] = [FundingPayment(**p) for p in state.get("funding_payments", ())]
    history.funding_seq = int(state.get("funding_seq", 0))
    for b in books.values():
        ledger.rearm(b)
    return int(state["now_ms"])


# ---------------------------------------------------------------------- markets


def market_state(m: PaperMarket) -> dict[str, Any]:
    """A market as JSON-safe data (tiers as lists, an infinite top as None)."""
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


def market_from_state(s: Mapping[str, Any]) -> PaperMarket:
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


# ---------------------------------------------------------------------- books and orders


def _num(x: float) -> float | None:
    return None if math.isnan(x) else x


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _book_state(b: Book) -> dict[str, Any]:
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


def _load_book(b: Book, s: Mapping[str, Any]) -> None:
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
        pos = PositionRecord(
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


def _order_state(o: OrderRecord) -> dict[str, Any]:
    return {name: getattr(o, name) for name in _ORDER_FIELDS}


def _order_from_state(s: Mapping[str, Any]) -> OrderRecord:
    o = OrderRecord(
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
