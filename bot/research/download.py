"""``guardbot download``: market history through ccxt's public endpoints, as files replay reads.

For each symbol: candles (``fetch_ohlcv``: Binance ``GET /fapi/v1/klines``), mark-price candles
(``fetch_ohlcv`` with ``params={"price": "mark"}``: ``/fapi/v1/markPriceKlines``) and the
funding-rate history (``fetch_funding_rate_history``: ``/fapi/v1/fundingRate``), paged
``since`` → ``until`` 1,000 rows a request (ccxt's own page size for Binance); then the
markets (``load_markets``: ``/fapi/v1/exchangeInfo``) and leverage tiers. Binance serves the
tiers only on a signed endpoint (``/fapi/v1/leverageBracket``): with API keys in the
environment (``GUARDBOT_EXCHANGE__API_KEY`` / ``_API_SECRET``) they are fetched, without them
the bundled snapshot's tiers are written and the file says so. Bybit's and OKX's tiers are
public (``PUBLIC_TIERS``) and always fetched.

Files (freqtrade's names, in ``datadir``): ``BTC_USDT_USDT-5m-futures.feather``,
``BTC_USDT_USDT-5m-mark.feather``, ``BTC_USDT_USDT-8h-funding_rate.feather`` (freqtrade's
layout: ``date`` plus ``open high low close volume``, the rate in ``open``) or the same names
with ``.csv`` (``timestamp_ms,open,high,low,close,volume`` / ``timestamp_ms,rate``), and
``markets-<exchange>.json`` (the live cache's shape). ``guardbot replay --data`` on the candle
file finds the other files beside it.

Resumable: an existing file is read, only what comes after its last row is fetched, and the
file is rewritten (feather) or appended to (CSV) every ``flush_rows`` rows, each write atomic,
so an interrupted download loses at most one page batch and the next run carries on.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bot.exchange.retry import RetryPolicy, retry_call
from paper.feed import FeedError, load_candles, load_funding
from paper.markets import bundled_tier_entries

Format = Literal["feather", "csv"]
Kind = Literal["candles", "mark", "funding"]
PAGE = 1000
#: Exchanges whose leverage tiers are public (Bybit ``/v5/market/risk-limit``, OKX
#: ``/api/v5/public/position-tiers``): fetched without keys (Binance's are signed).
PUBLIC_TIERS = frozenset({"bybit", "okx"})
FUNDING_TF_MS = 8 * 3_600_000
#: Called with (label, rows done, rows expected) as pages arrive.
Progress = Callable[[str, int, int | None], None]


class DownloadError(Exception):
    """A download that cannot go on: one readable message."""


@dataclass
class Written:
    """What one file got: rows before and after, the new rows, its path."""

    path: Path
    kind: Kind
    symbol: str
    before: int
    after: int

    @property
    def added(self) -> int:
        return self.after - self.before


@dataclass
class Summary:
    files: list[Written] = field(default_factory=list)
    markets_path: Path | None = None
    tiers_source: str = ""


def file_stem(symbol: str) -> str:
    """``BTC/USDT:USDT`` → ``BTC_USDT_USDT`` (freqtrade's file-name form)."""
    return symbol.replace("/", "_").replace(":", "_")


def file_path(datadir: Path, symbol: str, kind: Kind, timeframe: str, fmt: Format) -> Path:
    stem = file_stem(symbol)
    suffix = ".feather" if fmt == "feather" else ".csv"
    if kind == "candles":
        return datadir / f"{stem}-{timeframe}-futures{suffix}"
    if kind == "mark":
        return datadir / f"{stem}-{timeframe}-mark{suffix}"
    return datadir / f"{stem}-8h-funding_rate{suffix}"


# ------------------------------------------------------------------------------ files
def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _existing(path: Path, kind: Kind) -> list[tuple[float, ...]]:
    """The rows already in ``path`` (times as ints in the first place), [] when absent."""
    if not path.exists():
        return []
    try:
        if kind == "funding":
            f = load_funding(path)
            return [(t, r) for t, r in zip(f.ts, f.rate, strict=True)]
        c = load_candles(path, allow_gaps=True)
    except (FeedError, OSError) as exc:
        raise DownloadError(
            f"cannot resume {path}: {exc} (move it away to download it afresh)"
        ) from None
    return list(c.rows())


def _write_feather(path: Path, rows: Sequence[tuple[float, ...]], kind: Kind) -> None:
    try:
        import pyarrow as pa
        import pyarrow.feather as feather
    except ImportError:
        from paper.feed.formats import FEATHER_NEEDS

        raise DownloadError(f"{FEATHER_NEEDS}, or use --format csv") from None

    ts = [int(r[0]) for r in rows]
    date = pa.array(ts, type=pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    if kind == "funding":
        rate = [float(r[1]) for r in rows]
        zeros = [0.0] * len(rows)
        cols = {"open": rate, "high": zeros, "low": zeros, "close": zeros, "volume": zeros}
    else:
        names = ("open", "high", "low", "close", "volume")
        cols = {n: [float(r[i + 1]) for r in rows] for i, n in enumerate(names)}
    table = pa.table({"date": date, **{k: pa.array(v, pa.float64()) for k, v in cols.items()}})
    _atomic(path, lambda tmp: feather.write_feather(table, str(tmp), compression="uncompressed"))


def _csv_header(kind: Kind) -> str:
    return "timestamp_ms,rate" if kind == "funding" else "timestamp_ms,open,high,low,close,volume"


def _csv_line(row: tuple[float, ...]) -> str:
    return ",".join([str(int(row[0]))] + [repr(float(x)) for x in row[1:]])


def _write_csv(path: Path, rows: Sequence[tuple[float, ...]], kind: Kind, new_from: int) -> None:
    """Append rows ``[new_from:]`` (a file that does not exist yet is written whole)."""
    if new_from and path.exists():
        # append through a copy: the original stays whole until the rename
        def write(tmp: Path) -> None:
            with path.open("rb") as src, tmp.open("wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
                dst.write(("\n".join(_csv_line(r) for r in rows[new_from:]) + "\n").encode())

        _atomic(path, write)
        return

    def fresh(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(_csv_header(kind) + "\n")
            for r in rows:
                fh.write(_csv_line(r) + "\n")

    _atomic(path, fresh)


def save(path: Path, rows: Sequence[tuple[float, ...]], kind: Kind, new_from: int) -> None:
    if path.suffix == ".feather":
        _write_feather(path, rows, kind)
    else:
        _write_csv(path, rows, kind, new_from)


# ------------------------------------------------------------------------------ fetching
async def _page(client: Any, kind: Kind, symbol: str, tf: str, since: int, until: int) -> list[Any]:
    params: dict[str, Any] = {"until": until - 1}
    if kind == "funding":
        got = await client.fetch_funding_rate_history(symbol, since, PAGE, params)
        return [(int(r["timestamp"]), float(r["fundingRate"])) for r in got]
    if kind == "mark":
        params["price"] = "mark"
    got = await client.fetch_ohlcv(symbol, tf, since, PAGE, params)
    return [
        (int(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5] or 0.0))
        for r in got
    ]


async def fetch_series(
    client: Any,
    symbol: str,
    kind: Kind,
    timeframe: str,
    start_ms: int,
    end_ms: int,
    path: Path,
    *,
    retry: RetryPolicy,
    progress: Progress | None = None,
    flush_rows: int = 20_000,
) -> Written:
    """Fetch ``[start_ms, end_ms)`` of one series into ``path``, resuming after its last row."""
    tf_ms = FUNDING_TF_MS if kind == "funding" else int(client.parse_timeframe(timeframe) * 1000)
    rows = _existing(path, kind)
    before = len(rows)
    # resume after the last row (a file is never left with a hole; an earlier start than its
    # first row is not backfilled: move the file away for that)
    since = int(rows[-1][0]) + (1 if kind == "funding" else tf_ms) if rows else start_ms
    label = f"{symbol} {kind if kind != 'candles' else timeframe}"
    expected = max(0, (end_ms - since) // tf_ms) if since < end_ms else 0
    saved = before
    done = 0
    while since < end_ms:
        page = await retry_call(
            lambda s=since: _page(client, kind, symbol, timeframe, s, end_ms),  # type: ignore[misc]
            op=f"download {label}",
            policy=retry,
        )
        page = [r for r in page if since <= r[0] < end_ms]
        if not page:
            break
        if rows and page[0][0] <= rows[-1][0]:
            page = [r for r in page if r[0] > rows[-1][0]]
            if not page:
                break
        rows.extend(page)
        done += len(page)
        since = int(page[-1][0]) + (1 if kind == "funding" else tf_ms)
        if progress is not None:
            progress(label, done, expected or None)
        if len(rows) - saved >= flush_rows:
            save(path, rows, kind, saved)
            saved = len(rows)
    if len(rows) > saved or not path.exists():
        save(path, rows, kind, saved)
    return Written(path, kind, symbol, before, len(rows))


async def download(
    client: Any,
    symbols: Sequence[str],
    timeframe: str,
    start_ms: int,
    end_ms: int,
    datadir: Path,
    *,
    fmt: Format = "feather",
    kinds: Sequence[Kind] = ("candles", "mark", "funding"),
    exchange_id: str = "binanceusdm",
    with_tiers: bool = False,
    retry: RetryPolicy | None = None,
    progress: Progress | None = None,
    flush_rows: int = 20_000,
) -> Summary:
    """Download every series of every symbol, then the markets snapshot (see the module doc)."""
    policy = retry or RetryPolicy(attempts=5, budget_s=60.0)
    if timeframe not in (getattr(client, "timeframes", None) or {}):
        known = ", ".join(client.timeframes or {})
        raise DownloadError(f"{client.id} has no {timeframe!r} candles (it has: {known})")
    markets = await retry_call(client.load_markets, op="load_markets", policy=policy)
    for symbol in symbols:
        if symbol not in markets:
            raise DownloadError(_unknown(symbol, markets))
        m = markets[symbol]
        if not m.get("swap") or not m.get("linear"):
            raise DownloadError(
                f"{symbol} is not a linear perpetual on {client.id}; replay trades USDT-margined "
                f"perpetuals (e.g. {symbol.split(':')[0]}:{m.get('quote', 'USDT')})"
            )
    out = Summary()
    for symbol in symbols:
        for kind in kinds:
            path = file_path(datadir, symbol, kind, timeframe, fmt)
            out.files.append(
                await fetch_series(
                    client, symbol, kind, timeframe, start_ms, end_ms, path,
                    retry=policy, progress=progress, flush_rows=flush_rows,
                )
            )  # fmt: skip
    tiers: dict[str, Any] = {}
    if with_tiers or exchange_id in PUBLIC_TIERS:
        if (getattr(client, "has", None) or {}).get("fetchLeverageTiers"):
            fetched = await retry_call(
                lambda: client.fetch_leverage_tiers(list(symbols)), op="tiers", policy=policy
            )
            how = "fetch_leverage_tiers"
        else:  # OKX: one symbol a request
            fetched = {}
            for sym in symbols:
                fetched[sym] = await retry_call(
                    lambda s=sym: client.fetch_market_leverage_tiers(s),  # type: ignore[misc]
                    op="tiers",
                    policy=policy,
                )
            how = "fetch_market_leverage_tiers"
        tiers = {s: fetched[s] for s in symbols if s in fetched}
        out.tiers_source = f"fetched from {client.id} ({how})"
    else:
        bundled = bundled_tier_entries()
        tiers = {s: list(bundled[s]) for s in symbols if s in bundled}
        missing = [s for s in symbols if s not in tiers]
        out.tiers_source = "the bundled snapshot of 2024-10-24 (no API keys: Binance serves " \
            "tiers on a signed endpoint only)" + (
                f"; none for {', '.join(missing)}" if missing else ""
            )  # fmt: skip
    out.markets_path = write_markets(datadir, exchange_id, markets, tiers, out.tiers_source)
    return out


def write_markets(
    datadir: Path, exchange_id: str, markets: dict[str, Any], tiers: dict[str, Any], source: str
) -> Path:
    """The markets snapshot in the live cache's shape (``bot.exchange.cache``), merged with an
    existing one so tiers fetched before are kept."""
    path = datadir / f"markets-{exchange_id}.json"
    old_tiers: dict[str, Any] = {}
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            old_tiers = dict(old.get("tiers") or {})
        except (OSError, ValueError, AttributeError):
            old_tiers = {}
    payload = {
        "version": 1,
        "exchange_id": exchange_id,
        "sandbox": False,
        "fetched_at": time.time(),
        "tiers_source": source,
        "markets": markets,
        "tiers": {**old_tiers, **tiers},
    }
    text = json.dumps(payload, default=str, separators=(",", ":"))

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    _atomic(path, write)
    return path


def _unknown(symbol: str, markets: dict[str, Any]) -> str:
    base = symbol.split("/")[0].upper()
    near = sorted(s for s in markets if s.startswith(base + "/") and ":" in s)[:5]
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    return f"no market {symbol} on this exchange{hint}"


def describe(summary: Summary) -> list[str]:
    lines = []
    for w in summary.files:
        lines.append(f"  {w.path}: {w.after:,} rows ({w.added:+,} new)")
    if summary.markets_path is not None:
        lines.append(
            f"  {summary.markets_path}: markets; leverage tiers from {summary.tiers_source}"
        )
    return lines
