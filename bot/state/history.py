"""``guardbot history``: recent guard decisions, fills, round-trip trades and sweep actions.

``fills`` are the executions as the exchange reported them (price, amount, fee, the exchange's
realised PnL, the order's client id and its role: entry, stop, liquidation, manual, ...);
``trades`` are the round trips derived from them (``bot.state.trips``: entry and exit price,
gross PnL, fees, net, and why it closed).

Reads ``state.dir/guardbot.sqlite`` and renders rich tables or one strict-JSON object (non-finite
figures such as an infinite liquidation distance become the strings ``"inf"``/``"nan"``).
Newest rows first; a decision's amount is the one asked for when it was refused, the one allowed
otherwise. Opening the store applies any pending schema migration, as the bot would.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bot.state.store import FILENAME, ActionRow, DecisionRow, FillRow, Store, json_safe
from bot.state.trips import RoundTrip, round_trips
from guards import decision_to_dict, format_figures

KINDS = ("decisions", "fills", "trades", "actions")


class HistoryError(Exception):
    """Bad arguments for ``guardbot history``."""


def parse_kinds(kind: str) -> tuple[str, ...]:
    """``all`` or one of ``KINDS`` -> the kinds to show."""
    if kind == "all":
        return KINDS
    if kind in KINDS:
        return (kind,)
    raise HistoryError(f"--kind must be one of {', '.join((*KINDS, 'all'))}; got {kind!r}")


def when(ts: float) -> str:
    """Epoch seconds as ISO 8601 UTC, to the second."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def decision_dict(row: DecisionRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "time": when(row.ts),
        "ts": row.ts,
        "run_id": row.run_id,
        "symbol": row.decision.intent.symbol,
        "client_id": row.decision.intent.client_id,
        **decision_to_dict(row.decision),
    }


def fill_dict(row: FillRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "time": when(row.ts),
        "ts": row.ts,
        "symbol": row.symbol,
        "side": row.side,
        "amount": row.amount,
        "price": row.price,
        "fee": row.fee,
        "fee_currency": row.fee_currency,
        "client_id": row.client_id,
        "order_id": row.order_id,
        "trade_id": row.trade_id,
        "role": row.role,
        "realized_pnl": row.realized_pnl,
    }


def trip_dict(trip: RoundTrip) -> dict[str, Any]:
    return {"time": when(trip.closed_at), "opened": when(trip.opened_at), **trip.to_dict()}


def recent_round_trips(store: Store, limit: int, symbol: str | None = None) -> list[RoundTrip]:
    """The newest round trips (closed or reduced parts), newest first."""
    trips = round_trips(store.fills_of(symbol))
    return list(reversed(trips))[:limit]


def action_dict(row: ActionRow) -> dict[str, Any]:
    a = row.action
    return {
        "id": row.id,
        "time": when(row.ts),
        "ts": row.ts,
        "run_id": row.run_id,
        "kind": a.kind,
        "symbol": a.symbol,
        "rule": a.rule,
        "code": a.code,
        "reason": a.reason,
        "amount": a.amount,
        "stop_price": a.stop_price,
        "figures": dict(a.figures),
        "executed": row.executed,
        "result": row.result,
    }


def history_data(
    store: Store, kinds: Sequence[str], limit: int, symbol: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The requested kinds as plain data, newest first."""
    out: dict[str, list[dict[str, Any]]] = {}
    if "decisions" in kinds:
        out["decisions"] = [decision_dict(r) for r in store.recent_decisions(limit, symbol)]
    if "fills" in kinds:
        out["fills"] = [fill_dict(r) for r in store.recent_trades(limit, symbol)]
    if "trades" in kinds:
        out["trades"] = [trip_dict(t) for t in recent_round_trips(store, limit, symbol)]
    if "actions" in kinds:
        out["actions"] = [action_dict(r) for r in store.recent_actions(limit, symbol)]
    return out


def to_json(data: Mapping[str, Any]) -> str:
    return json.dumps(json_safe(data), allow_nan=False)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.6g}"


def render_tables(data: Mapping[str, list[dict[str, Any]]]) -> str:
    """One rich table per kind (plain text, no colour)."""
    buf = io.StringIO()
    console = Console(file=buf, width=160, color_system=None, highlight=False)
    for kind, rows in data.items():
        if not rows:
            console.print(f"no {kind} recorded")
            continue
        if kind == "decisions":
            table = Table("time", "symbol", "side", "amount", "outcome", "code", "reason")
            for d in rows:
                intent = d["intent"]
                side = intent["side"] + (" (reduce)" if intent["reduce_only"] else "")
                table.add_row(
                    d["time"],
                    d["symbol"],
                    side,
                    _num(intent["amount"] if d["outcome"] == "reject" else d["amount"]),
                    d["outcome"],
                    d["code"],
                    d["reason"],
                )
        elif kind == "fills":
            table = Table(
                "time", "symbol", "side", "amount", "price", "fee", "realised", "role", "client id"
            )
            for t in rows:
                table.add_row(
                    t["time"],
                    t["symbol"],
                    t["side"],
                    _num(t["amount"]),
                    _num(t["price"]),
                    _num(t["fee"]),
                    _num(t["realized_pnl"]),
                    t["role"] or "-",
                    t["client_id"] or t["order_id"] or "-",
                )
        elif kind == "trades":
            table = Table(
                "closed", "symbol", "side", "amount", "entry", "exit", "pnl", "fees", "net", "why"
            )
            for t in rows:
                table.add_row(
                    t["time"],
                    t["symbol"],
                    t["side"],
                    _num(t["amount"]),
                    _num(t["entry_price"]),
                    _num(t["exit_price"]),
                    _num(t["pnl"]),
                    _num(t["fees"]),
                    _num(t["net"]),
                    t["role"] + ("" if t["closed"] else " (part)"),
                )
        else:
            table = Table(
                "time", "kind", "symbol", "rule", "code", "amount", "stop", "done", "figures"
            )
            for a in rows:
                table.add_row(
                    a["time"],
                    a["kind"],
                    a["symbol"] or "-",
                    a["rule"],
                    a["code"],
                    _num(a["amount"]),
                    _num(a["stop_price"]),
                    ("yes" if a["executed"] else "no")
                    + (f": {a['result']}" if a["result"] else ""),
                    format_figures(a["figures"]),
                )
        table.title = f"recent {kind} (newest first)"
        console.print(table)
    return buf.getvalue().rstrip()


def show_history(
    state_dir: Path,
    *,
    kind: str = "all",
    limit: int = 20,
    symbol: str | None = None,
    as_json: bool = False,
) -> str:
    """The text ``guardbot history`` prints. A missing store is not an error."""
    kinds = parse_kinds(kind)
    if limit < 1:
        raise HistoryError(f"--limit must be at least 1, got {limit}")
    path = Path(state_dir) / FILENAME
    if not path.is_file():
        message = f"no state store at {path}"
        if as_json:
            return to_json({"store": str(path), "note": message, **{k: [] for k in kinds}})
        return message
    with Store(path) as store:
        data = history_data(store, kinds, limit, symbol)
    if as_json:
        return to_json({"store": str(path), **data})
    return render_tables(data)
