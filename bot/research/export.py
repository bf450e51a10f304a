"""``guardbot replay --export DIR``: what a replay did, as files to open in a spreadsheet.

- ``trades.csv``: one row per closing fill (a partial close is a row): open and close time
  (UTC, ISO 8601), symbol, side, entry and exit price, amount, price PnL, fees, funding, net PnL,
  exit reason, the strategy's tag;
- ``fills.csv``: every execution on the account (entries, exits, stops, liquidations);
- ``decisions.csv``: every guard decision on an entry and every sweep action, in data time:
  time, symbol, kind (``entry`` / ``action``), rule (the deciding one; empty for an entry allowed
  as asked), outcome, code, reason, the rule's figures as JSON;
- ``equity.csv``: per candle close: time, symbol, equity at the close and the lowest equity
  along the candle's intrabar path;
- ``liquidations.csv``: every action of the exchange's liquidation engine;
- ``report.json``: the report (``--json``'s object; with ``--compare`` both runs and the
  differences).

Written to temporary names and renamed, so a folder never holds half a file. With
``--compare`` the guards-off run's files go to ``DIR/guards_off/``.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.research.report import Report

FILES = (
    "trades.csv",
    "fills.csv",
    "decisions.csv",
    "equity.csv",
    "liquidations.csv",
    "report.json",
)


def iso_ms(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000.0, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def iso_s(s: float) -> str:
    return iso_ms(s * 1000.0)


def _write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    def write(fh: Any) -> None:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)

    _write(path, write)


def export(report: Report, folder: Path, extra: dict[str, Any] | None = None) -> list[Path]:
    """Write the files of one replay into ``folder`` (created); returns their paths.

    ``extra`` replaces the content of ``report.json`` (``--compare`` puts both runs there).
    """
    folder.mkdir(parents=True, exist_ok=True)
    run = report.run
    if run is None:
        raise ValueError("this report kept no run to export (replay with record=True)")
    core = run.core
    _csv(
        folder / "trades.csv",
        (
            "open_time", "close_time", "symbol", "side", "entry_price", "exit_price", "amount",
            "pnl", "fees", "funding", "net_pnl", "exit_reason", "tag",
        ),
        (
            (
                iso_ms(t.opened_at), iso_ms(t.closed_at), t.symbol, t.side, repr(t.entry_price),
                repr(t.exit_price), repr(t.amount), round(t.pnl, 8), round(t.fees, 8),
                round(t.funding, 8), round(t.net, 8), t.reason, t.tag,
            )
            for t in core.trades
        ),
    )  # fmt: skip
    _csv(
        folder / "fills.csv",
        (
            "id", "time", "symbol", "side", "amount", "price", "fee", "fee_currency",
            "realized_pnl", "reason", "tag", "order_id", "client_order_id",
        ),
        (
            (
                f.id, iso_ms(f.timestamp), f.symbol, f.side, repr(f.amount), repr(f.price),
                round(f.fee, 8), f.fee_currency, round(f.realized_pnl, 8), f.reason, f.tag,
                f.order_id, f.client_order_id or "",
            )
            for f in core.fills
        ),
    )  # fmt: skip
    _csv(
        folder / "decisions.csv",
        ("time", "symbol", "kind", "rule", "outcome", "code", "reason", "figures"),
        (
            (iso_s(ts), sym, kind, rule, outcome, code, reason, json.dumps(fig, default=str))
            for ts, sym, kind, rule, outcome, code, reason, fig in run.journal or ()
        ),
    )
    curve = report.curve
    rows: list[tuple[Any, ...]] = []
    if curve is not None:
        rows = [
            (iso_s(t), sym, round(e, 6), round(lo, 6))
            for t, sym, e, lo in zip(curve.ts, curve.symbols, curve.equity, curve.low, strict=True)
        ]
    _csv(folder / "equity.csv", ("time", "symbol", "equity", "low_equity"), rows)
    _csv(
        folder / "liquidations.csv",
        (
            "time", "symbol", "side", "amount", "mark", "price", "margin_lost", "fee",
            "margin_balance", "partial", "margin_mode", "profile",
        ),
        (
            (
                iso_ms(e.ts), e.symbol, e.side, repr(e.amount), repr(e.mark), repr(e.price),
                round(e.margin_lost, 8), round(e.fee, 8), round(e.margin_balance, 8), e.partial,
                e.margin_mode, e.profile,
            )
            for e in core.liquidations
        ),
    )  # fmt: skip
    payload = extra if extra is not None else report.to_dict()
    _write(folder / "report.json", lambda fh: json.dump(payload, fh, indent=2))
    return [folder / name for name in FILES]
