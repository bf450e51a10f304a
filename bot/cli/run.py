"""``guardbot run`` and ``guardbot replay``: the bot (paper by default) and the replay tool."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from bot.cli.common import (
    ConfigOpt,
    LogFormatOpt,
    LogLevelOpt,
    SetOpt,
    app,
    fail,
    live_notice,
    overrides_from,
    parse_value,
    settings_or_exit,
    setup_logging,
)
from bot.settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from bot.research.report import Report


@app.command()
def run(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    live: Annotated[
        bool, typer.Option("--live", help="Confirm live trading (with mode = live).")
    ] = False,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Run the bot (paper mode by default; the default config replays the bundled data)."""
    try:
        overrides = overrides_from(set_, {"logging.format": log_format, "logging.level": log_level})
    except ConfigError as exc:
        raise fail(str(exc)) from None
    settings = settings_or_exit(config, overrides)
    live_notice(settings, live)
    if settings.mode == "live":
        import os

        env_ok = os.environ.get("GUARDBOT_LIVE_CONFIRM", "").strip().lower() == "yes"
        if not (live or env_ok):
            raise fail(
                "mode = live needs a second confirmation: add --live to the command line "
                "(or set GUARDBOT_LIVE_CONFIRM=yes). Nothing was sent to any exchange."
            )
    if settings.mode == "live" or settings.feed.kind != "replay":
        _run_engine(settings, config, overrides)
        return
    setup_logging(settings, settings.mode)
    _replay_and_print(settings, guards_on=True, as_json=json_out)


def _run_engine(settings: Settings, config: Path | None, overrides: dict[str, Any]) -> None:
    """Paper on live market data, or live: the engine loop until SIGTERM/SIGINT."""
    import asyncio

    from bot.runner import RunError, run_bot
    from bot.state.store import StoreError

    run_id = setup_logging(settings, settings.mode)
    try:
        asyncio.run(
            run_bot(settings, run_id, reload_settings=lambda: load_settings(config, overrides))
        )
    except RunError as exc:
        report = getattr(exc, "report", None)
        if report is not None:  # the start gate: the same report as guardbot preflight
            typer.echo(report.render_text())
        raise fail(str(exc), code=exc.code) from None
    except StoreError as exc:
        raise fail(str(exc), code=1) from None


@app.command()
def replay(
    data: Annotated[
        list[Path] | None,
        typer.Option(
            "--data",
            help="Candle file or folder (default: bundled); repeat it to replay several "
            "symbols merged in time order.",
        ),
    ] = None,
    symbol: Annotated[
        str | None, typer.Option("--symbol", help="Symbol of the (first) data file.")
    ] = None,
    no_guards: Annotated[
        bool, typer.Option("--no-guards", help="Run the same data with the guard layer off.")
    ] = False,
    compare: Annotated[
        bool, typer.Option("--compare", help="Run with guards on and off, side by side.")
    ] = False,
    timerange: Annotated[
        str | None,
        typer.Option(
            "--timerange",
            help="Replay only this window: YYYYMMDD-YYYYMMDD, either side open (20250401-).",
        ),
    ] = None,
    markets: Annotated[
        Path | None,
        typer.Option(
            "--markets",
            help="Markets snapshot (ccxt load_markets shape, e.g. from guardbot download) for "
            "symbols whose rules are not bundled.",
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help="Write a chart (self-contained HTML): equity, drawdown, price with trades, "
            "guard actions by rule.",
        ),
    ] = None,
    export: Annotated[
        Path | None,
        typer.Option(
            "--export",
            help="Write trades.csv, fills.csv, decisions.csv, equity.csv, liquidations.csv "
            "and report.json into this folder.",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    allow_gaps: Annotated[
        bool, typer.Option("--allow-gaps", help="Accept gaps in the data (with a warning).")
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Progress bar (default: on a terminal)."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Processes for a --set grid.")
    ] = None,
    objective: Annotated[
        str,
        typer.Option(
            "--objective", help="What ranks a --set grid: return, calmar, sharpe, ... (see tune)."
        ),
    ] = "return",
    config: ConfigOpt = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override any key; comma-separated values run a grid: "
            "--set guards.liquidation.close_at_pct=2,3,5.",
        ),
    ] = None,
    log_format: LogFormatOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Replay a candle file through the paper exchange, as fast as possible."""
    from bot.research.tuning import combinations, parse_axes, to_overrides

    flags = {
        "feed.kind": "replay",
        "feed.path": str(data[0]) if data else None,
        "feed.paths": [str(d) for d in data[1:]] if data and len(data) > 1 else None,
        "feed.symbol": symbol,
        "feed.allow_gaps": True if allow_gaps else None,
        "feed.timerange": timerange,
        "feed.markets_path": str(markets) if markets else None,
        "logging.format": log_format,
        "logging.level": log_level or ("warning" if json_out else None),
    }
    base = {k: v for k, v in flags.items() if v is not None}
    try:
        combos = combinations(parse_axes(set_ or [], parse_value))
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if len(combos) > 1:
        if compare or plot or no_guards:
            raise fail(
                "--compare, --plot and --no-guards take one configuration, not a --set grid "
                "(see guardbot tune for searches)"
            )
        _grid(config, combos, base, workers, objective, export, set_ or [], json_out, progress)
        return
    settings = settings_or_exit(config, to_overrides(combos[0] if combos else {}, base))
    setup_logging(settings, "replay")
    show = sys.stderr.isatty() and not json_out if progress is None else progress
    record = plot is not None or export is not None
    if compare:
        from bot.research.report import compare_rows, render_compare, verdict

        on = _replay(settings, guards_on=True, show=show, curve=record)
        off = _replay(settings, guards_on=False, show=show, curve=record)
        both = {
            "guards_on": on.to_dict(),
            "guards_off": off.to_dict(),
            "difference": compare_rows(on, off),
            "verdict": verdict(on, off),
        }
        if plot is not None:
            _plot(on, plot, off)
        if export is not None:
            _export(on, export, both)
            _export(off, export / "guards_off", off.to_dict())
        typer.echo(json.dumps(both) if json_out else render_compare(on, off))
        return
    report = _replay(settings, guards_on=not no_guards, show=show, curve=record)
    if plot is not None:
        _plot(report, plot)
    if export is not None:
        _export(report, export, report.to_dict())
    typer.echo(json.dumps(report.to_dict()) if json_out else report.render_text())


def _grid(
    config: Path | None,
    combos: list[dict[str, Any]],
    base: dict[str, Any],
    workers: int | None,
    objective: str,
    export: Path | None,
    pairs: list[str],
    json_out: bool,
    progress: bool | None,
) -> None:
    """A ``--set`` grid: invalid combinations skipped and listed, rows ranked, idle axes named."""
    from bot.research.objectives import objectives
    from bot.research.replay import ReplayError
    from bot.research.tuning import parse_axes, render_table, run_grid, to_overrides

    try:
        (obj,) = objectives([objective])
    except (ConfigError, ValueError) as exc:
        raise fail(str(exc)) from None
    first = None
    for combo in combos:  # logging from the first valid combination
        try:
            first = load_settings(config, to_overrides(combo, base))
            break
        except ConfigError:
            continue
    if first is None:
        try:
            load_settings(config, to_overrides(combos[0], base))
        except ConfigError as exc:
            raise fail(f"no valid combination in the grid; the first: {exc}") from None
    assert first is not None
    setup_logging(first, "replay")
    show = sys.stderr.isatty() and not json_out if progress is None else progress
    axes = parse_axes(pairs, parse_value)
    try:
        if show:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            with Progress(
                "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn(), console=Console(stderr=True), transient=True,
            ) as bar:  # fmt: skip
                task = bar.add_task(f"grid of {len(combos)}", total=len(combos))
                result = run_grid(
                    config, combos, base, workers, axes=axes, objective=obj, export=export,
                    progress=lambda d, n: bar.update(task, completed=d, total=n),
                )  # fmt: skip
        else:
            result = run_grid(
                config, combos, base, workers, axes=axes, objective=obj, export=export
            )
    except ReplayError as exc:
        raise fail(str(exc), code=1) from None
    typer.echo(json.dumps(result.to_json()) if json_out else render_table(result))
    if export is not None:
        typer.echo(f"grid written to {export / 'grid.csv'} and {export / 'grid.jsonl'}", err=True)


def _replay(settings: Settings, *, guards_on: bool, show: bool, curve: bool) -> Report:
    from bot.research.replay import ReplayError, run_replay

    try:
        if not show:
            return run_replay(
                settings, guards_on=guards_on, record_curve=curve, record_decisions=curve
            )
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        label = "replay (guards on)" if guards_on else "replay (guards off)"
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as bar:
            task = bar.add_task(label, total=None)

            def tick(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            return run_replay(
                settings,
                guards_on=guards_on,
                progress=tick,
                record_curve=curve,
                record_decisions=curve,
            )
    except ReplayError as exc:  # bad data: the exit status of every input error
        raise fail(str(exc)) from None


def _plot(report: Report, path: Path, off: Report | None = None) -> None:
    from bot.research.plot import write_plot

    try:
        write_plot(report, path, off=off)
    except OSError as exc:
        raise fail(f"cannot write the chart {path}: {exc.strerror or exc}", code=1) from None
    typer.echo(f"chart written to {path}", err=True)


def _export(report: Report, folder: Path, payload: dict[str, Any]) -> None:
    from bot.research.export import export

    try:
        export(report, folder, payload)
    except OSError as exc:
        raise fail(f"cannot write the export to {folder}: {exc.strerror or exc}", code=1) from None
    typer.echo(
        f"trades, fills, decisions, equity, liquidations and report written to {folder}", err=True
    )


def _replay_and_print(settings: Settings, *, guards_on: bool, as_json: bool) -> None:
    show = sys.stderr.isatty() and not as_json
    report = _replay(settings, guards_on=guards_on, show=show, curve=False)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), sort_keys=False))
    else:
        typer.echo(report.render_text())
