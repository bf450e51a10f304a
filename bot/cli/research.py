"""``guardbot download`` and ``guardbot tune``: research commands (market history, rule search).

``download`` fetches candles, mark-price candles, funding rates, markets and leverage tiers
through ccxt's public endpoints into files ``guardbot replay`` reads
(``bot.research.download``); ``tune`` searches guard and strategy settings with Optuna
(``bot.research.tune``).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from bot.cli.common import app, fail


@app.command()
def download(
    symbol: Annotated[
        list[str],
        typer.Option("--symbol", "-s", help="Perpetual to fetch, e.g. SOL/USDT:USDT (repeat)."),
    ],
    timeframe: Annotated[
        str, typer.Option("--timeframe", "-t", help="Candle timeframe (1m, 5m, 1h, ...).")
    ] = "5m",
    timerange: Annotated[
        str | None,
        typer.Option(
            "--timerange",
            help="YYYYMMDD-YYYYMMDD (either side open; default: the last 30 days up to now).",
        ),
    ] = None,
    datadir: Annotated[
        Path, typer.Option("--datadir", help="Folder the files go to (created).")
    ] = Path("data/binanceusdm"),
    fmt: Annotated[
        str, typer.Option("--format", help="feather (freqtrade's layout) or csv.")
    ] = "feather",
    what: Annotated[
        list[str] | None,
        typer.Option(
            "--what", help="candles, mark, funding (repeat; default all three).", show_default=False
        ),
    ] = None,
    exchange: Annotated[str, typer.Option("--exchange", help="ccxt exchange id.")] = "binanceusdm",
    exchange_url: Annotated[
        str | None,
        typer.Option("--exchange-url", help="Another server (e.g. guardbot emulator's URL)."),
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Progress bar (default: on a terminal)."),
    ] = None,
) -> None:
    """Download market history for replay: candles, mark-price candles, funding rates, markets
    and leverage tiers (resumable: run it again to fetch only what is new)."""
    from bot.research.download import DownloadError, Format, Kind, describe
    from bot.research.download import download as fetch
    from paper.feed import TimerangeError, parse_timerange

    if fmt not in ("feather", "csv"):
        raise fail(f"--format must be feather or csv, not {fmt!r}")
    form: Format = "csv" if fmt == "csv" else "feather"
    kinds: list[Kind] = []
    for k in what or ["candles", "mark", "funding"]:
        if k not in ("candles", "mark", "funding"):
            raise fail(f"--what takes candles, mark or funding, not {k!r}")
        kinds.append(k)  # type: ignore[arg-type]
    now_ms = int(time.time() * 1000)
    try:
        tr = parse_timerange(timerange)
    except TimerangeError as exc:
        raise fail(str(exc)) from None
    start = tr.start_ms if tr is not None and tr.start_ms is not None else now_ms - 30 * 86_400_000
    end = min(tr.end_ms if tr is not None and tr.end_ms is not None else now_ms, now_ms)
    if start >= end:
        raise fail("the timerange ends before it starts (or lies in the future)")
    show = sys.stderr.isatty() if progress is None else progress

    async def _run() -> Any:
        client = _client(exchange, exchange_url)
        try:
            if not show:
                return await fetch(
                    client, symbol, timeframe, start, end, datadir,
                    fmt=form, kinds=kinds, exchange_id=exchange, with_tiers=_has_keys(),
                )  # fmt: skip
            from rich.progress import BarColumn, MofNCompleteColumn, Progress

            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                console=Console(stderr=True),
            ) as bar:
                tasks: dict[str, Any] = {}

                def tick(label: str, done: int, total: int | None) -> None:
                    if label not in tasks:
                        tasks[label] = bar.add_task(label, total=total)
                    bar.update(tasks[label], completed=done, total=total)

                return await fetch(
                    client, symbol, timeframe, start, end, datadir,
                    fmt=form, kinds=kinds, exchange_id=exchange, with_tiers=_has_keys(),
                    progress=tick,
                )  # fmt: skip
        finally:
            await client.close()

    import ccxt

    try:
        summary = asyncio.run(_run())
    except DownloadError as exc:
        raise fail(str(exc), code=1) from None
    except ccxt.BaseError as exc:
        raise fail(f"{exchange}: {type(exc).__name__}: {exc}", code=1) from None
    except OSError as exc:
        raise fail(f"cannot write to {datadir}: {exc.strerror or exc}", code=1) from None
    typer.echo(f"downloaded to {datadir}:")
    for line in describe(summary):
        typer.echo(line)
    first = next((w.path for w in summary.files if w.kind == "candles"), None)
    if first is not None:
        typer.echo(f"replay it: guardbot replay --data {first}")


def _has_keys() -> bool:
    return bool(
        os.environ.get("GUARDBOT_EXCHANGE__API_KEY")
        and os.environ.get("GUARDBOT_EXCHANGE__API_SECRET")
    )


def _client(exchange_id: str, url: str | None) -> Any:
    """A ccxt async client with only public access (keys only for the signed tiers endpoint)."""
    import ccxt.async_support as ccxt_async

    from bot.exchange.live import point_at

    cls = getattr(ccxt_async, exchange_id, None)
    if cls is None:
        raise fail(f"ccxt has no exchange {exchange_id!r}")
    config: dict[str, Any] = {"enableRateLimit": url is None, "options": {"fetchCurrencies": False}}
    if _has_keys():
        config["apiKey"] = os.environ["GUARDBOT_EXCHANGE__API_KEY"]
        config["secret"] = os.environ["GUARDBOT_EXCHANGE__API_SECRET"]
    client = cls(config)
    if url is not None:
        point_at(client, url)
    return client
