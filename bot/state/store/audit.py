"""The audit trail: runs, every guard decision with one row per rule verdict and its figures,
sweep actions and what came of them, and equity snapshots.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any, cast

from bot.state.store.base import StoreBase
from bot.state.store.rows import (
    _INTENT_FIELDS,
    ActionRow,
    DecisionRow,
    EquityRow,
    RunRow,
    StoreError,
    _dumps,
    _loads_obj,
)
from guards import (
    Action,
    ActionKind,
    Decision,
    OrderIntent,
    Outcome,
    Verdict,
    VerdictOutcome,
    intent_to_dict,
)


class AuditLog(StoreBase):
    """The ``runs``, ``decisions``, ``verdicts``, ``actions`` and ``equity`` tables."""

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
    def record_decision(
        self,
        decision: Decision,
        ts: float,
        run_id: str = "",
        *,
        guard_state: Mapping[str, Any] | None = None,
    ) -> int:
        """Store a decision and one row per verdict (with its figures); returns its id.

        ``guard_state``: the guard engine's state after the decision (the counters it moved),
        saved in the same transaction.
        """
        intent = decision.intent
        with self.transaction():
            if guard_state is not None:
                self.save_guard_state(guard_state, ts)
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
