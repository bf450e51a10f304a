"""The durable state store: one SQLite file (WAL) under ``state.dir``.

A package by part: ``base`` (connection, transactions, kv, guard state, positions), ``orders``
(order lifecycle and fills), ``audit`` (runs, decisions, verdicts, actions, equity), ``schema``
(migrations) and ``rows`` (statuses, row types, JSON helpers); ``Store`` joins them.

What lives here: orders by client id (recorded as an *intent* before they are sent and updated
with the exchange's acknowledgement after), fills, positions as last seen, every guard decision
with one row per rule verdict and its figures, sweep actions, the guard engine's state (counters,
windows and halts, as ``GuardState.to_dict()`` JSON), equity snapshots, runs and a small
key/value table.

Durability (WAL, ``synchronous=FULL``: a returned write survives ``kill -9``) and threading are
described in ``base``; the schema and its migrations in ``schema``. A crash between
``order_intent`` and ``order_ack`` leaves the order in flight; ``orders_in_flight()`` lists
those so a restart can look each client id up on the exchange and settle it.

JSON columns are written with Python's ``json`` (non-finite floats as ``Infinity``/``NaN``, which
``json.loads`` reads back), so figures and guard state round-trip exactly; readers that emit
strict JSON convert them (see ``bot.state.history``). Times are epoch seconds (UTC).
"""

from __future__ import annotations

from bot.state.store.audit import AuditLog
from bot.state.store.base import FILENAME, StoreBase, StoreRefused
from bot.state.store.orders import OrderLog
from bot.state.store.rows import (
    CCXT_STATUS,
    IN_FLIGHT,
    STATUS_RANK,
    TERMINAL,
    ActionRow,
    DecisionRow,
    EquityRow,
    FillRow,
    OrderRow,
    OrderStatus,
    RunRow,
    StoreError,
    advance_status,
    json_safe,
)
from bot.state.store.schema import MIGRATIONS, SCHEMA_VERSION, migrate, user_version


class Store(OrderLog, AuditLog, StoreBase):
    """The SQLite state store. See the package docstring for durability and threading."""


__all__ = [
    "CCXT_STATUS",
    "FILENAME",
    "IN_FLIGHT",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "STATUS_RANK",
    "TERMINAL",
    "ActionRow",
    "DecisionRow",
    "EquityRow",
    "FillRow",
    "OrderRow",
    "OrderStatus",
    "RunRow",
    "Store",
    "StoreError",
    "StoreRefused",
    "advance_status",
    "json_safe",
    "migrate",
    "user_version",
]
