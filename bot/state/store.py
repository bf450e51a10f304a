"""The durable state store: one SQLite file (WAL) under ``state.dir``.

What lives here: orders by client id (recorded as an *intent* before they are sent and updated
with the exchange's acknowledgement after), fills, positions as last seen, every guard decision
with one row per rule verdict and its figures, sweep actions, the guard engine's state (counters,
windows and halts, as ``GuardState.to_dict()`` JSON), equity snapshots, runs and a small
key/value table.

Durability. The file is opened in WAL mode with ``synchronous=FULL``: every committed write
(each public write method is one transaction) has been fsynced to the write-ahead log before the
method returns, so a ``kill -9`` -- or a power cut -- after a call returns loses nothing that
call recorded. A crash between ``order_intent`` and ``order_ack`` leaves the order ``intent``
(or ``sent``/``unknown``); ``orders_in_flight()`` lists those so a restart can look each client
id up on the exchange and settle it. Several writes that must land together (an order intent and
the guard counter it bumps) go inside ``with store.transaction():``.

Concurrency. The bot is asyncio but the store is synchronous: writes are short (one fsync,
a few ms) and are called straight from the event loop. There is one connection, opened with
``check_same_thread=False`` and guarded by a re-entrant lock, so worker threads may use the same
``Store`` too. Do not ``await`` inside ``transaction()``: another task on the same thread would
join the open transaction. Other processes (``guardbot history``) may read at the same time (WAL);
a second writer waits up to ``busy_timeout_s``.

Schema. The version is ``PRAGMA user_version``; ``MIGRATIONS[i]`` takes a file from version
``i`` to ``i + 1`` and each runs in its own transaction (all or nothing). Version 1 held the
trading state (orders, fills, positions, guard state, kv); version 2 added the audit trail (runs,
decisions, verdicts, actions, equity) and links orders to the decision that allowed them.
Opening a file written by a newer guardbot raises ``StoreError``.

JSON columns are written with Python's ``json`` (non-finite floats as ``Infinity``/``NaN``, which
``json.loads`` reads back), so figures and guard state round-trip exactly; readers that emit
strict JSON convert them (see ``bot.state.history``). Times are epoch seconds (UTC).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, cast

from guards.explain import intent_to_dict
from guards.types import (
    Action,
    ActionKind,
    Decision,
    MarginMode,
    OrderIntent,
    Outcome,
    Position,
    Side,
    Verdict,
    VerdictOutcome,
)

FILENAME = "guardbot.sqlite"

OrderStatus = Literal[
    "intent", "sent", "acked", "open", "filled", "canceled", "rejected", "unknown"
]
#: Lifecycle rank: a status only moves to a higher rank (``sent`` <-> ``unknown`` share one);
#: terminal statuses (rank 4) never change again.
STATUS_RANK: Mapping[OrderStatus, int] = {
    "intent": 0,
    "sent": 1,
    "unknown": 1,
    "acked": 2,
    "open": 3,
    "filled": 4,
    "canceled": 4,
    "rejected": 4,
}
IN_FLIGHT: tuple[OrderStatus, ...] = ("intent", "sent", "unknown")
TERMINAL: tuple[OrderStatus, ...] = ("filled", "canceled", "rejected")
#: ccxt unified order status -> ours (anything else leaves the status as it is).
CCXT_STATUS: Mapping[str, OrderStatus] = {
    "open": "open",
    "closed": "filled",
    "canceled": "canceled",
    "cancelled": "canceled",
    "expired": "canceled",
    "rejected": "rejected",
}

_V1 = """
CREATE TABLE orders (
    client_id   TEXT PRIMARY KEY,
    exchange_id TEXT,
    symbol      TEXT NOT NULL,
    side        TEXT NOT NULL,
    type        TEXT NOT NULL,
    amount      REAL NOT NULL,
    price       REAL,
    stop_price  REAL,
    reduce_only INTEGER NOT NULL DEFAULT 0,
    params_json TEXT NOT NULL DEFAULT '{}',
    status      TEXT NOT NULL CHECK (status IN
                ('intent','sent','acked','open','filled','canceled','rejected','unknown')),
    filled      REAL NOT NULL DEFAULT 0,
    average     REAL,
    note        TEXT NOT NULL DEFAULT '',
    order_json  TEXT,
    intent_at   REAL NOT NULL,
    acked_at    REAL,
    updated_at  REAL NOT NULL
);
CREATE INDEX orders_exchange_id ON orders (exchange_id);
CREATE INDEX orders_status ON orders (status);

CREATE TABLE fills (
    id           INTEGER PRIMARY KEY,
    order_key    TEXT NOT NULL,
    trade_id     TEXT NOT NULL,
    client_id    TEXT,
    order_id     TEXT,
    symbol       TEXT NOT NULL,
    side         TEXT NOT NULL,
    amount       REAL NOT NULL,
    price        REAL NOT NULL,
    fee          REAL NOT NULL DEFAULT 0,
    fee_currency TEXT,
    ts           REAL NOT NULL,
    info_json    TEXT,
    UNIQUE (order_key, trade_id)
);
CREATE INDEX fills_ts ON fills (ts);

CREATE TABLE positions (
    symbol      TEXT PRIMARY KEY,
    side        TEXT NOT NULL CHECK (side IN ('long','short')),
    amount      REAL NOT NULL,
    entry_price REAL NOT NULL,
    margin_mode TEXT NOT NULL CHECK (margin_mode IN ('isolated','cross')),
    leverage    REAL NOT NULL,
    margin      REAL NOT NULL,
    stop_price  REAL,
    take_profit REAL,
    opened_at   REAL NOT NULL,
    adds        INTEGER NOT NULL,
    updated_at  REAL NOT NULL
);

CREATE TABLE guard_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    state_json TEXT NOT NULL,
    updated_at REAL NOT NULL
);

CREATE TABLE kv (
    key        TEXT PRIMARY KEY,
    value_json TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""

_V2 = """
CREATE TABLE runs (
    run_id      TEXT PRIMARY KEY,
    started_at  REAL NOT NULL,
    ended_at    REAL,
    mode        TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'running',
    config_json TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE decisions (
    id          INTEGER PRIMARY KEY,
    ts          REAL NOT NULL,
    run_id      TEXT NOT NULL DEFAULT '',
    symbol      TEXT NOT NULL,
    client_id   TEXT NOT NULL DEFAULT '',
    outcome     TEXT NOT NULL,
    code        TEXT NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    amount      REAL NOT NULL,
    stop_price  REAL,
    intent_json TEXT NOT NULL
);
CREATE INDEX decisions_ts ON decisions (ts);
CREATE INDEX decisions_symbol_ts ON decisions (symbol, ts);

CREATE TABLE verdicts (
    decision_id  INTEGER NOT NULL REFERENCES decisions (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    rule         TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    code         TEXT NOT NULL,
    reason       TEXT NOT NULL DEFAULT '',
    amount       REAL,
    figures_json TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (decision_id, seq)
);
CREATE INDEX verdicts_rule_code ON verdicts (rule, code);

CREATE TABLE actions (
    id           INTEGER PRIMARY KEY,
    ts           REAL NOT NULL,
    run_id       TEXT NOT NULL DEFAULT '',
    kind         TEXT NOT NULL,
    symbol       TEXT,
    rule         TEXT NOT NULL,
    code         TEXT NOT NULL,
    reason       TEXT NOT NULL DEFAULT '',
    amount       REAL,
    stop_price   REAL,
    figures_json TEXT NOT NULL DEFAULT '{}',
    executed     INTEGER NOT NULL,
    result       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX actions_ts ON actions (ts);

CREATE TABLE equity (
    ts          REAL NOT NULL,
    run_id      TEXT NOT NULL DEFAULT '',
    equity      REAL NOT NULL,
    wallet      REAL,
    free_margin REAL,
    upnl        REAL
);
CREATE INDEX equity_ts ON equity (ts);

ALTER TABLE orders ADD COLUMN decision_id INTEGER REFERENCES decisions (id) ON DELETE SET NULL;
"""

#: ``MIGRATIONS[i]`` upgrades a file at ``user_version == i`` to ``i + 1``. Append only.
MIGRATIONS: tuple[str, ...] = (_V1, _V2)
SCHEMA_VERSION = len(MIGRATIONS)


def json_safe(value: Any) -> Any:
    """A copy strict JSON can hold (non-finite floats become ``"inf"``/``"-inf"``/``"nan"``).

    The store keeps such figures as Python JSON so they round-trip; what it hands to a reader
    that speaks strict JSON (history, the status page) goes through this first.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


class StoreError(Exception):
    """The state store cannot do what was asked (newer schema, client id reuse, bad row...)."""


# -- rows -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OrderRow:
    """One order the bot placed (or meant to place), as last recorded."""

    client_id: str
    exchange_id: str | None
    symbol: str
    side: str
    type: str
    amount: float
    price: float | None
    stop_price: float | None
    reduce_only: bool
    params: dict[str, Any]
    status: OrderStatus
    filled: float
    average: float | None
    note: str
    #: The exchange's last word on it: the ccxt unified order structure.
    order: dict[str, Any] | None
    intent_at: float
    acked_at: float | None
    updated_at: float
    decision_id: int | None

    @property
    def in_flight(self) -> bool:
        """Sent or about to be, with no answer recorded: look it up on the exchange."""
        return self.status in IN_FLIGHT

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True, slots=True)
class FillRow:
    """One execution (a ccxt trade): what ``recent_trades`` returns."""

    id: int
    client_id: str | None
    order_id: str | None
    trade_id: str
    symbol: str
    side: str
    amount: float
    price: float
    fee: float
    fee_currency: str | None
    ts: float
    info: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """A recorded guard decision, rebuilt as the ``Decision`` it was (verdicts and figures)."""

    id: int
    ts: float
    run_id: str
    decision: Decision


@dataclass(frozen=True, slots=True)
class ActionRow:
    """A recorded sweep action and what came of it."""

    id: int
    ts: float
    run_id: str
    action: Action
    executed: bool
    result: str


@dataclass(frozen=True, slots=True)
class EquityRow:
    ts: float
    equity: float
    wallet: float | None
    free_margin: float | None
    upnl: float | None
    run_id: str


@dataclass(frozen=True, slots=True)
class RunRow:
    run_id: str
    started_at: float
    ended_at: float | None
    mode: str
    status: str
    config: dict[str, Any]


# -- schema ---------------------------------------------------------------------------------
def user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, migrations: Iterable[str] = MIGRATIONS) -> int:
    """Bring ``conn`` (autocommit mode) to ``len(migrations)``; returns the final version.

    Each step runs in one ``BEGIN IMMEDIATE`` transaction together with its ``user_version``
    bump, so a failure (or a crash) leaves the file at the previous version, untouched.
    """
    steps = tuple(migrations)
    target = len(steps)
    current = user_version(conn)
    if current > target:
        raise StoreError(
            f"state store schema version {current} is newer than this guardbot knows "
            f"({target}); upgrade guardbot or point state.dir elsewhere"
        )
    while current < target:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = user_version(conn)  # another process may have migrated meanwhile
            if current < target:
                for statement in _statements(steps[current]):
                    conn.execute(statement)
                current += 1
                conn.execute(f"PRAGMA user_version = {current:d}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return current


def _statements(script: str) -> list[str]:
    """Split a migration script into complete statements (``executescript`` would commit)."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        raise StoreError(f"incomplete SQL statement in migration: {buf.strip()[:60]!r}")
    return out


# -- JSON helpers ---------------------------------------------------------------------------
def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _loads_obj(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    value = json.loads(text)
    if not isinstance(value, dict):
        raise StoreError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _opt_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _order_status(order: Mapping[str, Any]) -> OrderStatus | None:
    status = order.get("status")
    return CCXT_STATUS.get(status) if isinstance(status, str) else None


def advance_status(old: OrderStatus, new: OrderStatus | None) -> OrderStatus:
    """The status after ``new`` is reported for an order at ``old`` (never backwards)."""
    if new is None or old in TERMINAL:
        return old
    return new if STATUS_RANK[new] >= STATUS_RANK[old] else old


_INTENT_FIELDS = frozenset(f.name for f in fields(OrderIntent))


class Store:
    """The SQLite state store. See the module docstring for durability and threading."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        conn = sqlite3.connect(
            self.path,
            timeout=busy_timeout_s,
            isolation_level=None,  # autocommit; transactions are explicit (BEGIN IMMEDIATE)
            check_same_thread=False,
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000):d}")
            self.journal_mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._lock = threading.RLock()
        self._depth = 0

    @classmethod
    def open(cls, state_dir: Path) -> Store:
        """Open (creating the folder and file if needed) ``state_dir/guardbot.sqlite``."""
        folder = Path(state_dir)
        folder.mkdir(parents=True, exist_ok=True)
        return cls(folder / FILENAME)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        with self._lock:
            return user_version(self._conn)

    def integrity_check(self) -> str:
        """``"ok"``, or SQLite's description of what is damaged."""
        with self._lock:
            rows = self._conn.execute("PRAGMA integrity_check").fetchall()
        return "\n".join(str(r[0]) for r in rows)

    # -- transactions ----------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes: all land (one fsync) or none. Nests (inner blocks are savepoints)."""
        with self._lock:
            conn = self._conn
            depth = self._depth
            if depth:
                name = f"sp{depth}"
                conn.execute(f"SAVEPOINT {name}")
                self._depth = depth + 1
                try:
                    yield
                except BaseException:
                    conn.execute(f"ROLLBACK TO {name}")
                    conn.execute(f"RELEASE {name}")
                    raise
                else:
                    conn.execute(f"RELEASE {name}")
                finally:
                    self._depth = depth
                return
            conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0

    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, tuple(args)).fetchall()

    # -- runs ------------------------------------------------------------------------------
    def record_run(
        self, run_id: str, started_at: float, mode: str, config: Mapping[str, Any] | None = None
    ) -> None:
        """Start of one bot process. ``config`` should be the masked settings dump."""
        with self.transaction():
            try:
                self._conn.execute(
                    "INSERT INTO runs (run_id, started_at, mode, config_json) VALUES (?,?,?,?)",
                    (run_id, started_at, mode, _dumps(dict(config or {}))),
                )
            except sqlite3.IntegrityError:
                raise StoreError(f"run id {run_id!r} already recorded") from None

    def end_run(self, run_id: str, ended_at: float, status: str = "stopped") -> None:
        with self.transaction():
            self._conn.execute(
                "UPDATE runs SET ended_at = ?, status = ? WHERE run_id = ?",
                (ended_at, status, run_id),
            )

    def recent_runs(self, limit: int = 10) -> list[RunRow]:
        rows = self._query("SELECT * FROM runs ORDER BY started_at DESC LIMIT ?", (limit,))
        return [
            RunRow(
                run_id=r["run_id"],
                started_at=r["started_at"],
                ended_at=r["ended_at"],
                mode=r["mode"],
                status=r["status"],
                config=_loads_obj(r["config_json"]) or {},
            )
            for r in rows
        ]

    # -- decisions and actions -------------------------------------------------------------
    def record_decision(self, decision: Decision, ts: float, run_id: str = "") -> int:
        """Store a decision and one row per verdict (with its figures); returns its id."""
        intent = decision.intent
        with self.transaction():
            cur = self._conn.execute(
                "INSERT INTO decisions (ts, run_id, symbol, client_id, outcome, code, reason,"
                " amount, stop_price, intent_json) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    ts,
                    run_id,
                    intent.symbol,
                    intent.client_id,
                    decision.outcome,
                    decision.code,
                    decision.reason,
                    decision.amount,
                    decision.stop_price,
                    _dumps(intent_to_dict(intent)),
                ),
            )
            decision_id = int(cast(int, cur.lastrowid))
            self._conn.executemany(
                "INSERT INTO verdicts (decision_id, seq, rule, outcome, code, reason, amount,"
                " figures_json) VALUES (?,?,?,?,?,?,?,?)",
                [
                    (
                        decision_id,
                        seq,
                        v.rule,
                        v.outcome,
                        v.code,
                        v.reason,
                        v.amount,
                        _dumps(dict(v.figures)),
                    )
                    for seq, v in enumerate(decision.verdicts)
                ],
            )
        return decision_id

    def decision(self, decision_id: int) -> DecisionRow | None:
        rows = self._decision_rows("SELECT * FROM decisions WHERE id = ?", (decision_id,))
        return rows[0] if rows else None

    def recent_decisions(self, limit: int = 20, symbol: str | None = None) -> list[DecisionRow]:
        """Newest first."""
        if symbol is None:
            return self._decision_rows(
                "SELECT * FROM decisions ORDER BY ts DESC, id DESC LIMIT ?", (limit,)
            )
        return self._decision_rows(
            "SELECT * FROM decisions WHERE symbol = ? ORDER BY ts DESC, id DESC LIMIT ?",
            (symbol, limit),
        )

    def _decision_rows(self, sql: str, args: tuple[Any, ...]) -> list[DecisionRow]:
        with self._lock:
            heads = self._conn.execute(sql, args).fetchall()
            by_id: dict[int, list[Verdict]] = {int(h["id"]): [] for h in heads}
            if by_id:
                marks = ",".join("?" * len(by_id))
                for v in self._conn.execute(
                    f"SELECT * FROM verdicts WHERE decision_id IN ({marks})"
                    " ORDER BY decision_id, seq",
                    tuple(by_id),
                ):
                    by_id[int(v["decision_id"])].append(
                        Verdict(
                            rule=v["rule"],
                            outcome=cast(VerdictOutcome, v["outcome"]),
                            code=v["code"],
                            reason=v["reason"],
                            amount=v["amount"],
                            figures=_loads_obj(v["figures_json"]) or {},
                        )
                    )
        out = []
        for h in heads:
            data = _loads_obj(h["intent_json"]) or {}
            intent = OrderIntent(**{k: v for k, v in data.items() if k in _INTENT_FIELDS})
            decision = Decision(
                outcome=cast(Outcome, h["outcome"]),
                intent=intent,
                amount=h["amount"],
                code=h["code"],
                reason=h["reason"],
                verdicts=tuple(by_id[int(h["id"])]),
                stop_price=h["stop_price"],
            )
            out.append(DecisionRow(int(h["id"]), h["ts"], h["run_id"], decision))
        return out

    def record_action(
        self, action: Action, ts: float, executed: bool, result: str = "", run_id: str = ""
    ) -> int:
        """Store a sweep action and whether (and how) it was carried out; returns its id."""
        with self.transaction():
            cur = self._conn.execute(
                "INSERT INTO actions (ts, run_id, kind, symbol, rule, code, reason, amount,"
                " stop_price, figures_json, executed, result) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    ts,
                    run_id,
                    action.kind,
                    action.symbol,
                    action.rule,
                    action.code,
                    action.reason,
                    action.amount,
                    action.stop_price,
                    _dumps(dict(action.figures)),
                    int(executed),
                    result,
                ),
            )
            return int(cast(int, cur.lastrowid))

    def recent_actions(self, limit: int = 20, symbol: str | None = None) -> list[ActionRow]:
        """Newest first."""
        where, args = ("WHERE symbol = ?", (symbol,)) if symbol is not None else ("", ())
        rows = self._query(
            f"SELECT * FROM actions {where} ORDER BY ts DESC, id DESC LIMIT ?", (*args, limit)
        )
        return [
            ActionRow(
                id=int(r["id"]),
                ts=r["ts"],
                run_id=r["run_id"],
                action=Action(
                    kind=cast(ActionKind, r["kind"]),
                    symbol=r["symbol"],
                    rule=r["rule"],
                    code=r["code"],
                    reason=r["reason"],
                    amount=r["amount"],
                    stop_price=r["stop_price"],
                    figures=_loads_obj(r["figures_json"]) or {},
                ),
                executed=bool(r["executed"]),
                result=r["result"],
            )
            for r in rows
        ]

    # -- orders ----------------------------------------------------------------------------
    def order_intent(
        self,
        client_id: str,
        symbol: str,
        side: str,
        type: str,
        amount: float,
        price: float | None = None,
        params: Mapping[str, Any] | None = None,
        decision_id: int | None = None,
        *,
        ts: float | None = None,
    ) -> OrderRow:
        """Record an order BEFORE it is sent (``side`` is ccxt's ``buy``/``sell``).

        Idempotent on ``client_id``: a second call returns the existing row untouched (check
        its ``status``: anything but ``intent`` means it was already sent). Reusing a client id
        for a different order (symbol, side, type or amount) raises ``StoreError``.
        """
        if not client_id:
            raise StoreError("an order needs a client id")
        if not (math.isfinite(amount) and amount >= 0.0):
            raise StoreError(f"order amount must be a non-negative number, got {amount!r}")
        p = dict(params or {})
        stop = next(
            (
                _opt_float(p[k])
                for k in ("stopLossPrice", "takeProfitPrice", "stopPrice", "triggerPrice")
                if p.get(k) is not None
            ),
            None,
        )
        reduce_only = bool(p.get("reduceOnly") or p.get("closePosition"))
        now = time.time() if ts is None else ts
        with self.transaction():
            self._conn.execute(
                "INSERT INTO orders (client_id, symbol, side, type, amount, price, stop_price,"
                " reduce_only, params_json, status, intent_at, updated_at, decision_id)"
                " VALUES (?,?,?,?,?,?,?,?,?,'intent',?,?,?) ON CONFLICT (client_id) DO NOTHING",
                (
                    client_id,
                    symbol,
                    side,
                    type,
                    amount,
                    price,
                    stop,
                    int(reduce_only),
                    _dumps(p),
                    now,
                    now,
                    decision_id,
                ),
            )
            row = self._order_row(client_id)
        assert row is not None
        if (row.symbol, row.side, row.type, row.amount) != (symbol, side, type, amount):
            raise StoreError(
                f"client id {client_id!r} already used for another order "
                f"({row.side} {row.amount:g} {row.symbol} {row.type})"
            )
        return row

    def order_sent(self, client_id: str, ts: float | None = None) -> OrderRow:
        """Mark an intent as handed to the exchange (optional step before the request)."""
        return self.order_status(client_id, "sent", ts=ts)

    def order_status(
        self, client_id: str, status: OrderStatus, *, note: str = "", ts: float | None = None
    ) -> OrderRow:
        """Set a status without an exchange order (e.g. ``rejected`` on a refusal,
        ``unknown`` after a network error). Never moves an order backwards."""
        if status not in STATUS_RANK:
            raise StoreError(f"unknown order status {status!r}")
        with self.transaction():
            row = self._order_row(client_id)
            if row is None:
                raise StoreError(f"no order with client id {client_id!r}")
            return self._apply(row, status, None, note, time.time() if ts is None else ts)

    def order_ack(
        self, client_id: str, order: Mapping[str, Any], ts: float | None = None
    ) -> OrderRow:
        """Record the exchange's answer to ``create_order`` (a ccxt order structure).

        The status becomes the order's (``open``, ``filled``...) or ``acked`` if it has none.
        """
        with self.transaction():
            row = self._order_row(client_id)
            if row is None:
                raise StoreError(f"no order intent with client id {client_id!r}")
            status = _order_status(order) or "acked"
            return self._apply(row, status, order, None, time.time() if ts is None else ts)

    def order_update(
        self, order: Mapping[str, Any], *, client_id: str | None = None, ts: float | None = None
    ) -> OrderRow | None:
        """Apply a later ccxt order structure (fetch_order, a stream update, a cancel).

        Found by ``client_id``, else the order's ``clientOrderId``, else its exchange ``id``
        (the latest order with that id). Returns None for an order this store never saw.
        """
        with self.transaction():
            row = None
            for cid in (client_id, order.get("clientOrderId")):
                if cid:
                    row = self._order_row(str(cid))
                    if row is not None:
                        break
            if row is None and order.get("id") is not None:
                found = self._conn.execute(
                    "SELECT client_id FROM orders WHERE exchange_id = ? ORDER BY rowid DESC"
                    " LIMIT 1",
                    (str(order["id"]),),
                ).fetchone()
                row = None if found is None else self._order_row(found[0])
            if row is None:
                return None
            return self._apply(
                row, _order_status(order), order, None, time.time() if ts is None else ts
            )

    def _apply(
        self,
        row: OrderRow,
        status: OrderStatus | None,
        order: Mapping[str, Any] | None,
        note: str | None,
        ts: float,
    ) -> OrderRow:
        new_status = advance_status(row.status, status)
        exchange_id = row.exchange_id
        filled, average, order_json = row.filled, row.average, None
        acked_at = row.acked_at
        if order is not None:
            if order.get("id") is not None:
                exchange_id = str(order["id"])
            got = _opt_float(order.get("filled"))
            if got is not None:
                filled = max(filled, got)
            average = _opt_float(order.get("average")) or average
            order_json = _dumps(dict(order))
            if acked_at is None:
                acked_at = ts
        self._conn.execute(
            "UPDATE orders SET status = ?, exchange_id = ?, filled = ?, average = ?,"
            " order_json = COALESCE(?, order_json), note = COALESCE(?, note), acked_at = ?,"
            " updated_at = ? WHERE client_id = ?",
            (
                new_status,
                exchange_id,
                filled,
                average,
                order_json,
                note or None,
                acked_at,
                ts,
                row.client_id,
            ),
        )
        updated = self._order_row(row.client_id)
        assert updated is not None
        return updated

    def order(self, client_id: str) -> OrderRow | None:
        with self._lock:
            return self._order_row(client_id)

    def _order_row(self, client_id: str) -> OrderRow | None:
        r = self._conn.execute("SELECT * FROM orders WHERE client_id = ?", (client_id,)).fetchone()
        return None if r is None else _order_from(r)

    def orders(self, statuses: Iterable[OrderStatus] | None = None) -> list[OrderRow]:
        """Orders in the given statuses (all when None), oldest intent first."""
        if statuses is None:
            rows = self._query("SELECT * FROM orders ORDER BY intent_at, rowid")
        else:
            chosen = tuple(statuses)
            marks = ",".join("?" * len(chosen))
            rows = self._query(
                f"SELECT * FROM orders WHERE status IN ({marks}) ORDER BY intent_at, rowid", chosen
            )
        return [_order_from(r) for r in rows]

    def orders_in_flight(self) -> list[OrderRow]:
        """Orders with no answer recorded (intent, sent, unknown): resolve them on restart."""
        return self.orders(IN_FLIGHT)

    # -- fills -----------------------------------------------------------------------------
    def record_fill(
        self,
        *,
        trade_id: str,
        symbol: str,
        side: str,
        amount: float,
        price: float,
        ts: float,
        client_id: str | None = None,
        order_id: str | None = None,
        fee: float = 0.0,
        fee_currency: str | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> bool:
        """Record one execution; True if new, False if this fill was already recorded.

        Idempotent on (order, ``trade_id``), the order being the client id when known (looked
        up from ``order_id`` if not given), else the exchange order id. Where the exchange
        gives no trade ids (fills seen as an order's growing ``filled``), a stable id such as
        ``f"{order_id}:{cumulative_filled}"`` keeps replays of the same update idempotent.
        """
        with self.transaction():
            if client_id is None and order_id is not None:
                found = self._conn.execute(
                    "SELECT client_id FROM orders WHERE exchange_id = ? ORDER BY rowid DESC"
                    " LIMIT 1",
                    (order_id,),
                ).fetchone()
                client_id = None if found is None else str(found[0])
            if client_id:
                order_key = f"c:{client_id}"
            elif order_id:
                order_key = f"x:{order_id}"
            else:
                raise StoreError("a fill needs a client id or an exchange order id")
            cur = self._conn.execute(
                "INSERT INTO fills (order_key, trade_id, client_id, order_id, symbol, side,"
                " amount, price, fee, fee_currency, ts, info_json)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (order_key, trade_id) DO NOTHING",
                (
                    order_key,
                    trade_id,
                    client_id,
                    order_id,
                    symbol,
                    side,
                    amount,
                    price,
                    fee,
                    fee_currency,
                    ts,
                    None if info is None else _dumps(dict(info)),
                ),
            )
            return cur.rowcount == 1

    def record_trade(self, trade: Mapping[str, Any], client_id: str | None = None) -> bool:
        """``record_fill`` from a ccxt unified trade structure (``timestamp`` in ms)."""
        fee = trade.get("fee") or {}
        trade_id = trade.get("id")
        order_id = trade.get("order")
        stamp = trade.get("timestamp")
        if trade_id is None:
            raise StoreError("a ccxt trade without an id: use record_fill with a stable trade_id")
        if stamp is None:
            raise StoreError(f"trade {trade_id} has no timestamp")
        return self.record_fill(
            trade_id=str(trade_id),
            symbol=str(trade["symbol"]),
            side=str(trade["side"]),
            amount=float(trade["amount"]),
            price=float(trade["price"]),
            ts=float(stamp) / 1000.0,
            client_id=client_id,
            order_id=None if order_id is None else str(order_id),
            fee=_opt_float(fee.get("cost")) or 0.0,
            fee_currency=fee.get("currency"),
            info=trade.get("info"),
        )

    def recent_trades(self, limit: int = 20, symbol: str | None = None) -> list[FillRow]:
        """The latest fills (a "trade" here is one execution), newest first."""
        where, args = ("WHERE symbol = ?", (symbol,)) if symbol is not None else ("", ())
        rows = self._query(
            f"SELECT * FROM fills {where} ORDER BY ts DESC, id DESC LIMIT ?", (*args, limit)
        )
        return [_fill_from(r) for r in rows]

    def fills(self, client_id: str) -> list[FillRow]:
        """One order's fills, oldest first."""
        rows = self._query("SELECT * FROM fills WHERE client_id = ? ORDER BY ts, id", (client_id,))
        return [_fill_from(r) for r in rows]

    # -- positions -------------------------------------------------------------------------
    def upsert_position(self, position: Position, ts: float | None = None) -> None:
        """Store a position as last seen (one per symbol)."""
        with self.transaction():
            self._put_position(position, time.time() if ts is None else ts)

    def delete_position(self, symbol: str) -> bool:
        """Forget the symbol's position (it is flat); True if there was one."""
        with self.transaction():
            cur = self._conn.execute("DELETE FROM positions WHERE symbol = ?", (symbol,))
            return cur.rowcount > 0

    def replace_positions(self, positions: Iterable[Position], ts: float | None = None) -> None:
        """Make the stored positions exactly these (after a reconcile with the exchange)."""
        now = time.time() if ts is None else ts
        with self.transaction():
            self._conn.execute("DELETE FROM positions")
            for position in positions:
                self._put_position(position, now)

    def _put_position(self, p: Position, ts: float) -> None:
        self._conn.execute(
            "INSERT INTO positions (symbol, side, amount, entry_price, margin_mode, leverage,"
            " margin, stop_price, take_profit, opened_at, adds, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (symbol) DO UPDATE SET"
            " side = excluded.side, amount = excluded.amount,"
            " entry_price = excluded.entry_price, margin_mode = excluded.margin_mode,"
            " leverage = excluded.leverage, margin = excluded.margin,"
            " stop_price = excluded.stop_price, take_profit = excluded.take_profit,"
            " opened_at = excluded.opened_at, adds = excluded.adds,"
            " updated_at = excluded.updated_at",
            (
                p.symbol,
                p.side,
                p.amount,
                p.entry_price,
                p.margin_mode,
                p.leverage,
                p.margin,
                p.stop_price,
                p.take_profit,
                p.opened_at,
                p.adds,
                ts,
            ),
        )

    def positions(self) -> dict[str, Position]:
        rows = self._query("SELECT * FROM positions ORDER BY symbol")
        return {
            r["symbol"]: Position(
                symbol=r["symbol"],
                side=cast(Side, r["side"]),
                amount=r["amount"],
                entry_price=r["entry_price"],
                margin_mode=cast(MarginMode, r["margin_mode"]),
                leverage=r["leverage"],
                margin=r["margin"],
                stop_price=r["stop_price"],
                take_profit=r["take_profit"],
                opened_at=r["opened_at"],
                adds=int(r["adds"]),
            )
            for r in rows
        }

    # -- guard state -----------------------------------------------------------------------
    def save_guard_state(self, state: Mapping[str, Any], ts: float | None = None) -> None:
        """Replace the guard engine's state (``GuardState.to_dict()``): counters and halts."""
        text = _dumps(dict(state))
        with self.transaction():
            self._conn.execute(
                "INSERT INTO guard_state (id, state_json, updated_at) VALUES (1, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET state_json = excluded.state_json,"
                " updated_at = excluded.updated_at",
                (text, time.time() if ts is None else ts),
            )

    def load_guard_state(self) -> dict[str, Any] | None:
        """The saved guard state, None if never saved.

        A row that does not parse raises ``StoreError`` rather than returning None: a restart
        must never silently drop a halt.
        """
        rows = self._query("SELECT state_json FROM guard_state WHERE id = 1")
        if not rows:
            return None
        try:
            return _loads_obj(rows[0][0])
        except (ValueError, StoreError) as exc:
            raise StoreError(f"saved guard state is unreadable: {exc}") from None

    # -- equity ----------------------------------------------------------------------------
    def record_equity(
        self,
        ts: float,
        equity: float,
        wallet: float | None = None,
        free_margin: float | None = None,
        upnl: float | None = None,
        run_id: str = "",
    ) -> None:
        with self.transaction():
            self._conn.execute(
                "INSERT INTO equity (ts, run_id, equity, wallet, free_margin, upnl)"
                " VALUES (?,?,?,?,?,?)",
                (ts, run_id, equity, wallet, free_margin, upnl),
            )

    def recent_equity(self, limit: int = 100) -> list[EquityRow]:
        """Newest first."""
        rows = self._query("SELECT * FROM equity ORDER BY ts DESC, rowid DESC LIMIT ?", (limit,))
        return [
            EquityRow(r["ts"], r["equity"], r["wallet"], r["free_margin"], r["upnl"], r["run_id"])
            for r in rows
        ]

    # -- key/value -------------------------------------------------------------------------
    def kv_set(self, key: str, value: Any, ts: float | None = None) -> None:
        """Store any JSON-able value under ``key`` (e.g. a paper exchange snapshot)."""
        text = _dumps(value)
        with self.transaction():
            self._conn.execute(
                "INSERT INTO kv (key, value_json, updated_at) VALUES (?,?,?) ON CONFLICT (key)"
                " DO UPDATE SET value_json = excluded.value_json, updated_at = excluded.updated_at",
                (key, text, time.time() if ts is None else ts),
            )

    def kv_get(self, key: str, default: Any = None) -> Any:
        rows = self._query("SELECT value_json FROM kv WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def kv_delete(self, key: str) -> bool:
        with self.transaction():
            return self._conn.execute("DELETE FROM kv WHERE key = ?", (key,)).rowcount > 0

    # -- housekeeping ----------------------------------------------------------------------
    def prune(self, before: float) -> dict[str, int]:
        """Delete audit rows (decisions with their verdicts, actions, equity) older than
        ``before``. Orders, fills, positions and guard state are kept. Returns counts."""
        with self.transaction():
            counts = {
                table: self._conn.execute(f"DELETE FROM {table} WHERE ts < ?", (before,)).rowcount
                for table in ("decisions", "actions", "equity")
            }
        return counts


def _order_from(r: sqlite3.Row) -> OrderRow:
    return OrderRow(
        client_id=r["client_id"],
        exchange_id=r["exchange_id"],
        symbol=r["symbol"],
        side=r["side"],
        type=r["type"],
        amount=r["amount"],
        price=r["price"],
        stop_price=r["stop_price"],
        reduce_only=bool(r["reduce_only"]),
        params=_loads_obj(r["params_json"]) or {},
        status=cast(OrderStatus, r["status"]),
        filled=r["filled"],
        average=r["average"],
        note=r["note"],
        order=_loads_obj(r["order_json"]),
        intent_at=r["intent_at"],
        acked_at=r["acked_at"],
        updated_at=r["updated_at"],
        decision_id=r["decision_id"],
    )


def _fill_from(r: sqlite3.Row) -> FillRow:
    return FillRow(
        id=int(r["id"]),
        client_id=r["client_id"],
        order_id=r["order_id"],
        trade_id=r["trade_id"],
        symbol=r["symbol"],
        side=r["side"],
        amount=r["amount"],
        price=r["price"],
        fee=r["fee"],
        fee_currency=r["fee_currency"],
        ts=r["ts"],
        info=_loads_obj(r["info_json"]),
    )
