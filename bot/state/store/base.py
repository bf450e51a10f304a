"""The store's connection: WAL, ``synchronous=FULL``, one re-entrant lock, nested transactions;
and the small tables of the trading state: key/value, the guard engine's state, positions.

Durability. Every committed write (each public write method is one transaction) has been
fsynced to the write-ahead log before the method returns, so a ``kill -9`` -- or a power cut --
after a call returns loses nothing that call recorded. Several writes that must land together go
inside ``with store.transaction():`` (nested blocks are savepoints).

Concurrency. One connection, opened with ``check_same_thread=False`` and guarded by a re-entrant
lock, so worker threads may use the same store too. Do not ``await`` inside ``transaction()``:
another task on the same thread would join the open transaction. Other processes may read at the
same time (WAL); a second writer waits up to ``busy_timeout_s``.

Opening. A missing file is created; an existing one must be a guardbot store, or it is refused
(``StoreRefused``, a configuration error: state.dir points at the wrong file) and left exactly as
it was — never replaced, never converted: a zero-length file (unless its write-ahead log holds
the data), a file that is not SQLite, a damaged SQLite file, and another program's database (an
unversioned file with tables of its own, or a versioned one without guardbot's tables). A state
folder that cannot be created or written is refused the same way.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self, cast

from bot.settings import ConfigError
from bot.state.store.rows import StoreError, _dumps, _loads_obj
from bot.state.store.schema import SCHEMA_VERSION, migrate, user_version
from guards import MarginMode, Position, Side

FILENAME = "guardbot.sqlite"
_SQLITE_MAGIC = b"SQLite format 3\x00"
#: Tables every guardbot store has had since schema version 1.
_OWN_TABLES = frozenset({"orders", "fills", "positions", "guard_state", "kv"})
_MOVE_AWAY = "move it away (or point state.dir elsewhere) to start a new store"


class StoreRefused(ConfigError):
    """The state folder or file cannot be a guardbot store; nothing was changed."""


def _refuse_foreign_file(path: Path) -> None:
    """Raise ``StoreRefused`` unless the existing ``path`` looks like an SQLite file."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise StoreRefused(
            f"cannot read the store {path} ({exc.strerror or exc}); expected a readable file"
        ) from None
    if size == 0:
        wal = path.with_name(path.name + "-wal")
        if wal.is_file() and wal.stat().st_size > 0:
            return  # the data is in the write-ahead log: SQLite recovers it
        raise StoreRefused(
            f"the store {path} is empty (0 bytes): it is not a guardbot store, and its halts, "
            f"kill switch and counters may have been lost; {_MOVE_AWAY}"
        )
    if head != _SQLITE_MAGIC:
        raise StoreRefused(
            f"{path} is not a guardbot store (not an SQLite file: starts with {head[:8]!r}); "
            f"{_MOVE_AWAY}"
        )


def _refuse_foreign_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Raise ``StoreRefused`` unless the SQLite file at ``path`` is a guardbot store (or empty)."""
    version = user_version(conn)
    tables = {
        str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    if version == 0 and tables:
        shown = ", ".join(sorted(tables)[:5])
        raise StoreRefused(
            f"{path} is not a guardbot store (another program's database: tables {shown}, no "
            f"guardbot schema version); {_MOVE_AWAY}"
        )
    if 0 < version <= SCHEMA_VERSION and not tables >= _OWN_TABLES:  # newer: migrate says so
        missing = ", ".join(sorted(_OWN_TABLES - tables))
        raise StoreRefused(
            f"{path} is not a guardbot store (schema version {version} but no {missing} "
            f"table); {_MOVE_AWAY}"
        )


class StoreBase:
    """The connection, its transactions, and the small tables: kv, guard state, positions."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 5.0, readonly: bool = False) -> None:
        self.path = Path(path)
        existed = self.path.exists()
        if existed:
            _refuse_foreign_file(self.path)
        try:
            conn = sqlite3.connect(
                f"file:{self.path}?mode=ro" if readonly else self.path,
                timeout=busy_timeout_s,
                isolation_level=None,  # autocommit; transactions are explicit (BEGIN IMMEDIATE)
                check_same_thread=False,
                uri=readonly,
            )
        except sqlite3.Error as exc:
            raise StoreRefused(
                f"cannot open the store {self.path} ({exc}); expected a writable state.dir"
            ) from None
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000):d}")
            if existed:  # before anything writes to it (WAL mode, migrations)
                _refuse_foreign_schema(conn, self.path)
            if readonly:  # the status page's reader: never writes, never migrates
                self.journal_mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
            else:
                self.journal_mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("PRAGMA foreign_keys = ON")
                migrate(conn)
        except sqlite3.OperationalError as exc:
            conn.close()
            text = str(exc)
            if "unable to open" in text or "readonly" in text:
                raise StoreRefused(
                    f"cannot write the store {self.path} ({text}); expected a writable state.dir"
                ) from None
            raise  # busy, locked, disk I/O: the runtime's concern, not the file's identity
        except sqlite3.DatabaseError as exc:  # not a database, malformed
            conn.close()
            raise StoreRefused(
                f"{self.path} is not a guardbot store (SQLite says: {exc}); {_MOVE_AWAY}"
            ) from None
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._lock = threading.RLock()
        self._depth = 0

    @classmethod
    def open(cls, state_dir: Path) -> Self:
        """Open (creating the folder and file if needed) ``state_dir/guardbot.sqlite``."""
        folder = Path(state_dir)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreRefused(
                f"state.dir {folder}: cannot create the folder ({exc.strerror or exc}); expected "
                "a folder guardbot can create and write"
            ) from None
        return cls(folder / FILENAME)

    @classmethod
    def open_reader(cls, state_dir: Path) -> Self:
        """A read-only connection to an existing store (the status page's own, on its thread:
        it never takes the writer's lock)."""
        return cls(Path(state_dir) / FILENAME, readonly=True)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
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
