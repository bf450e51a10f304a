"""The store's schema: versioned migrations (``PRAGMA user_version``) and how they are applied.

``MIGRATIONS[i]`` takes a file from version ``i`` to ``i + 1`` and each runs in its own
transaction (all or nothing). Version 1 held the trading state (orders, fills, positions, guard
state, kv); version 2 added the audit trail (runs, decisions, verdicts, actions, equity) and
links orders to the decision that allowed them; version 3 gives each fill its role (entry, stop,
liquidation, ...) and the realised PnL the exchange reported. Opening a file written by a newer
guardbot raises ``StoreError``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from bot.state.store.rows import StoreError

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

_V3 = """
ALTER TABLE fills ADD COLUMN role TEXT;
ALTER TABLE fills ADD COLUMN realized_pnl REAL;
CREATE INDEX fills_symbol_ts ON fills (symbol, ts);
CREATE INDEX fills_order_trade ON fills (order_id, trade_id);
"""

#: ``MIGRATIONS[i]`` upgrades a file at ``user_version == i`` to ``i + 1``. Append only.
MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3)
SCHEMA_VERSION = len(MIGRATIONS)


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
