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

from bot.cli.common import (
    ConfigOpt,
    SetOpt,
    app,
    fail,
    overrides_from,
    parse_value,
    setup_logging,
)
from bot.research.feeds import ReplayError
from bot.settings import load_settings


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
    from bot.exchange.venue import venue_for

    # the venue's options: Bybit / OKX load their perpetuals only
    options = {"fetchCurrencies": False, **venue_for(exchange_id).client_options()}
    config: dict[str, Any] = {"enableRateLimit": url is None, "options": options}
    if _has_keys():
        config["apiKey"] = os.environ["GUARDBOT_EXCHANGE__API_KEY"]
        config["secret"] = os.environ["GUARDBOT_EXCHANGE__API_SECRET"]
    client = cls(config)
    if url is not None:
        point_at(client, url)
    return client


@app.command()
def tune(
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="A dimension: KEY=int:1..20, KEY=float:0.5..5[:step=0.5][:log], "
            "KEY=choice:a,b (repeat).",
        ),
    ] = None,
    space: Annotated[
        Path | None, typer.Option("--space", help='TOML file of [params."KEY"] tables.')
    ] = None,
    objective: Annotated[
        list[str] | None,
        typer.Option(
            "--objective",
            "-o",
            help="return, calmar, sharpe, sortino, profit_factor, return_no_liquidation, "
            "return_at_max_drawdown, max_drawdown (twice: NSGA-II). Default: return.",
        ),
    ] = None,
    no_liquidation: Annotated[
        bool, typer.Option("--no-liquidation", help="A liquidated trial is infeasible.")
    ] = False,
    max_drawdown: Annotated[
        float | None,
        typer.Option("--max-drawdown", help="A trial with a larger drawdown (%) is infeasible."),
    ] = None,
    trials: Annotated[
        int | None, typer.Option("--trials", "-n", min=1, help="Trials to run.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=0, help="Stop starting trials after S s.")
    ] = None,
    sampler: Annotated[
        str | None,
        typer.Option("--sampler", help="auto (TPE; NSGA-II for two), tpe, nsga2, random."),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Sampler seed (reproducible).")] = None,
    study_name: Annotated[
        str, typer.Option("--study", help="Study name (resumed when it exists).")
    ] = "guardbot",
    storage: Annotated[
        str | None,
        typer.Option("--storage", help="Optuna storage URL (default sqlite:///tune/STUDY.db)."),
    ] = None,
    results: Annotated[
        Path | None,
        typer.Option("--results", help="JSON lines, one per finished trial (tune/STUDY.jsonl)."),
    ] = None,
    best_config: Annotated[
        Path | None,
        typer.Option("--best-config", help="Best configuration as TOML (tune/STUDY-best.toml)."),
    ] = None,
    train: Annotated[
        str | None, typer.Option("--train", help="In-sample timerange YYYYMMDD-YYYYMMDD.")
    ] = None,
    test: Annotated[
        str | None, typer.Option("--test", help="Out-of-sample timerange for the best trials.")
    ] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Trials shown (and tested).")] = 10,
    backend: Annotated[str, typer.Option("--backend", help="local (processes) or ray.")] = "local",
    address: Annotated[
        str | None, typer.Option("--address", help="Ray cluster address (default: local Ray).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Parallel trials (default: cores).")
    ] = None,
    no_prune: Annotated[
        bool, typer.Option("--no-prune", help="Run every trial to the end.")
    ] = False,
    data: Annotated[
        list[Path] | None, typer.Option("--data", help="Candle file(s), as for replay.")
    ] = None,
    symbol: Annotated[str | None, typer.Option("--symbol", help="Symbol of the data.")] = None,
    timerange: Annotated[
        str | None, typer.Option("--timerange", help="Data window (without --train).")
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Progress bar (default: on a terminal)."),
    ] = None,
) -> None:
    """Search guard and strategy settings with Optuna: objectives, constraints, a resumable
    SQLite study, importances, the best configuration as TOML, out-of-sample checks."""
    import json

    from bot.research.objectives import objectives as pick
    from bot.research.space import from_toml, merge_space, parse_param
    from bot.research.trials import make_backend
    from bot.research.tune import StudySpec, best_config_text, optuna_module, run_study
    from bot.research.tuneview import render, to_json
    from bot.settings import ConfigError
    from paper.feed import TimerangeError, parse_timerange

    try:
        optuna_module()
        file_space, opts = from_toml(space) if space is not None else ([], {})
        dims = merge_space(file_space, [parse_param(p, parse_value) for p in param or []])
        names = objective or _as_list(opts.get("objective")) or ["return"]
        objs = pick(names)
        for window in (train, test, timerange):
            parse_timerange(window)
        if test is not None and train is None:
            raise ConfigError("--test needs --train (the in-sample window the study runs on)")
        flags = {
            "feed.kind": "replay",
            "feed.path": str(data[0]) if data else None,
            "feed.paths": [str(d) for d in data[1:]] if data and len(data) > 1 else None,
            "feed.symbol": symbol,
            "feed.timerange": timerange if train is None else None,
            "logging.level": "warning",
        }
        base = overrides_from(set_, flags)
        settings = load_settings(config, base)  # the fixed part must be valid on its own
    except (ConfigError, TimerangeError) as exc:
        raise fail(str(exc)) from None
    setup_logging(settings, "tune")
    folder = Path("tune")
    spec = StudySpec(
        name=study_name,
        storage=storage or f"sqlite:///{folder / (study_name + '.db')}",
        space=dims,
        objectives=objs,
        trials=trials or int(opts.get("trials", 50)),
        config=config,
        base=base,
        timeout_s=timeout,
        sampler=sampler or str(opts.get("sampler", "auto")),
        seed=seed if seed is not None else opts.get("seed"),
        no_liquidation=no_liquidation or bool(opts.get("no_liquidation", False)),
        max_drawdown_pct=max_drawdown if max_drawdown is not None else opts.get("max_drawdown"),
        prune=not no_prune,
        train=train,
        test=test,
        results=results or folder / f"{study_name}.jsonl",
        top=top,
    )
    show = sys.stderr.isatty() and not json_out if progress is None else progress
    try:
        runner_backend = make_backend(backend, workers, address)
    except ReplayError as exc:
        raise fail(str(exc)) from None
    try:
        if show:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            with Progress(
                "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn(), console=Console(stderr=True), transient=True,
            ) as bar:  # fmt: skip
                task = bar.add_task(f"tune ({runner_backend.name})", total=spec.trials)
                result = run_study(
                    spec, runner_backend, lambda d, n: bar.update(task, completed=d, total=n)
                )
        else:
            result = run_study(spec, runner_backend)
    except (ConfigError, ReplayError) as exc:
        raise fail(str(exc), code=1) from None
    finally:
        runner_backend.close()
    out_path = best_config or folder / f"{study_name}-best.toml"
    wrote = None
    if result.best:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(best_config_text(spec, result.best[0]), encoding="utf-8")
        wrote = out_path
    if json_out:
        payload = to_json(result, spec)
        payload["best_config"] = str(wrote) if wrote else None
        typer.echo(json.dumps(payload, default=str))
        return
    typer.echo(render(result, spec))
    if wrote is not None:
        typer.echo(f"best configuration written to {wrote}: guardbot run --config {wrote}")
    typer.echo(f"results (one JSON line per trial): {spec.results}; resume: run the same command")


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]
