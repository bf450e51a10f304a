"""The ``guardbot`` command line.

Commands: run, replay, check-order, history, halt, resume, reload, preflight, health, emulator,
config check|show|doc, version.

Every command loads settings through ``bot.settings.load_settings``; a configuration problem
prints one readable message and exits with status 2 (no traceback).
"""

from __future__ import annotations

import json
import sys
import tomllib
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from bot import __version__
from bot.settings import ConfigError, Settings, load_settings, masked_dump, set_dotted

if TYPE_CHECKING:
    from bot.research.report import Report

app = typer.Typer(
    name="guardbot",
    help="A crypto-perpetuals trading bot whose product is its risk guard layer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(
    help="Validate, show and document the configuration.", no_args_is_help=True
)
app.add_typer(config_app, name="config")

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML file layered over config/default.toml."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override any key: --set guards.position_cap.max_leverage=3."),
]
LogFormatOpt = Annotated[
    str | None, typer.Option("--log-format", help="auto | json | console (default: config).")
]
LogLevelOpt = Annotated[
    str | None, typer.Option("--log-level", help="debug | info | warning | error.")
]


def parse_value(text: str) -> Any:
    """A ``--set`` value as TOML (numbers, booleans, arrays, quoted strings) or a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def overrides_from(pairs: list[str] | None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Nested overrides from ``key=value`` pairs plus explicit flag values (None = not given)."""
    tree: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set needs KEY=VALUE, got {pair!r}")
        set_dotted(tree, key.strip(), parse_value(value.strip()))
    for key, value in (extra or {}).items():
        if value is not None:
            set_dotted(tree, key, value)
    return tree


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"guardbot: {message}", err=True)
    return typer.Exit(code)


def settings_or_exit(config: Path | None, overrides: dict[str, Any]) -> Settings:
    try:
        return load_settings(config, overrides)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def state_folder(config: Path | None, state_dir: Path | None) -> tuple[Settings, Path]:
    """The settings and the state folder a command works on (``--state-dir`` wins)."""
    settings = settings_or_exit(config, {})
    return settings, state_dir or settings.state.dir


def setup_logging(settings: Settings, mode: str) -> str:
    from bot.ops.logging import bind, configure_logging

    secrets = [
        s.get_secret_value()
        for s in (
            settings.exchange.api_key,
            settings.exchange.api_secret,
            settings.exchange.password,
            settings.notify.telegram_token,
            settings.status.token,
        )
        if s is not None
    ]
    configure_logging(
        level=settings.logging.level,
        fmt=settings.logging.format,
        file=settings.logging.file,
        secrets=secrets,
    )
    run_id = uuid.uuid4().hex[:12]
    bind(run_id=run_id, mode=mode)
    return run_id


@app.command()
def version() -> None:
    """Print the guardbot version."""
    typer.echo(f"guardbot {__version__}")


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
    except (RunError, StoreError) as exc:
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
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Write an equity-curve chart (self-contained HTML) here."),
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
    from bot.research.tuning import combinations, parse_axes, render_table, run_grid, to_overrides

    flags = {
        "feed.kind": "replay",
        "feed.path": str(data[0]) if data else None,
        "feed.paths": [str(d) for d in data[1:]] if data and len(data) > 1 else None,
        "feed.symbol": symbol,
        "feed.allow_gaps": True if allow_gaps else None,
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
            raise fail("--compare, --plot and --no-guards take one configuration, not a --set grid")
        settings = settings_or_exit(config, to_overrides(combos[0], base))
        setup_logging(settings, "replay")
        try:
            rows = run_grid(config, combos, base, workers)
        except ConfigError as exc:
            raise fail(str(exc)) from None
        typer.echo(json.dumps(rows) if json_out else render_table(rows))
        return
    settings = settings_or_exit(config, to_overrides(combos[0] if combos else {}, base))
    setup_logging(settings, "replay")
    show = sys.stderr.isatty() and not json_out if progress is None else progress
    if compare:
        on = _replay(settings, guards_on=True, show=show, curve=plot is not None)
        off = _replay(settings, guards_on=False, show=show, curve=False)
        if plot is not None:
            _plot(on, plot)
        if json_out:
            typer.echo(json.dumps({"guards_on": on.to_dict(), "guards_off": off.to_dict()}))
        else:
            from bot.research.report import render_compare

            typer.echo(render_compare(on, off))
        return
    report = _replay(settings, guards_on=not no_guards, show=show, curve=plot is not None)
    if plot is not None:
        _plot(report, plot)
    typer.echo(json.dumps(report.to_dict()) if json_out else report.render_text())


def _replay(settings: Settings, *, guards_on: bool, show: bool, curve: bool) -> Report:
    from bot.research.replay import ReplayError, run_replay

    try:
        if not show:
            return run_replay(settings, guards_on=guards_on, record_curve=curve)
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

            return run_replay(settings, guards_on=guards_on, progress=tick, record_curve=curve)
    except ReplayError as exc:
        raise fail(str(exc), code=1) from None


def _plot(report: Report, path: Path) -> None:
    from bot.research.plot import write_plot

    write_plot(report, path)
    typer.echo(f"equity chart written to {path}", err=True)


def _replay_and_print(settings: Settings, *, guards_on: bool, as_json: bool) -> None:
    show = sys.stderr.isatty() and not as_json
    report = _replay(settings, guards_on=guards_on, show=show, curve=False)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), sort_keys=False))
    else:
        typer.echo(report.render_text())


@app.command("check-order")
def check_order(
    symbol: Annotated[str, typer.Option(help="Market, e.g. BTC/USDT:USDT.")],
    side: Annotated[str, typer.Option(help="long | short.")],
    amount: Annotated[float, typer.Option(help="Amount in base units (e.g. BTC).")],
    price: Annotated[float, typer.Option(help="Entry price (also used as the mark).")],
    leverage: Annotated[float, typer.Option(help="Leverage.")] = 1.0,
    stop: Annotated[float | None, typer.Option(help="Stop-loss trigger price.")] = None,
    take_profit: Annotated[float | None, typer.Option(help="Take-profit price.")] = None,
    margin_mode: Annotated[str, typer.Option(help="isolated | cross.")] = "isolated",
    balance: Annotated[float, typer.Option(help="Wallet balance in USDT.")] = 10_000.0,
    at: Annotated[
        datetime | None,
        typer.Option("--at", help="Check as of this time (ISO 8601; default: now)."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Explain what the guards decide for one order: liquidation calculator and guard explainer."""
    from bot.research.checkorder import CheckOrderError, explain_order

    try:
        overrides = overrides_from(set_)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    settings = settings_or_exit(config, overrides)
    try:
        result = explain_order(
            settings,
            symbol=symbol,
            side=side,
            amount=amount,
            price=price,
            leverage=leverage,
            stop=stop,
            take_profit=take_profit,
            margin_mode=margin_mode,
            balance=balance,
            now=None if at is None else _epoch(at),
        )
    except CheckOrderError as exc:
        raise fail(str(exc)) from None
    typer.echo(json.dumps(result.to_dict()) if json_out else result.render_text())
    raise typer.Exit(0 if result.allowed else 1)


@app.command()
def health(
    config: ConfigOpt = None,
    state_dir: Annotated[
        Path | None, typer.Option("--state-dir", help="State folder (default: config).")
    ] = None,
    max_age: Annotated[
        float | None,
        typer.Option("--max-age", help="Seconds before the heartbeat counts as stale."),
    ] = None,
) -> None:
    """Exit 0 when the running bot's heartbeat is fresh, 1 otherwise (Docker HEALTHCHECK)."""
    from bot.state.heartbeat import check_health

    settings, folder = state_folder(config, state_dir)
    limit = max_age
    if limit is None:  # the running bot writes its own interval into the heartbeat
        beat = check_health(folder, float("inf")).beat
        interval = beat.get("interval_s")
        base = interval if isinstance(interval, int | float) and interval > 0 else None
        limit = 3 * (base or settings.state.heartbeat_s)
    result = check_health(folder, limit)
    typer.echo(result.detail)
    raise typer.Exit(0 if result.ok else 1)


@app.command()
def history(
    limit: Annotated[int, typer.Option("--limit", "-n", help="Rows per kind.")] = 20,
    kind: Annotated[
        str, typer.Option("--kind", help="decisions | trades | actions | all.")
    ] = "all",
    symbol: Annotated[str | None, typer.Option("--symbol", help="Only this market.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    config: ConfigOpt = None,
    state_dir: Annotated[
        Path | None, typer.Option("--state-dir", help="State folder (default: config).")
    ] = None,
) -> None:
    """Show recent guard decisions, trades and guard actions from the state store."""
    from bot.state.history import HistoryError, show_history
    from bot.state.store import StoreError

    _, folder = state_folder(config, state_dir)
    try:
        text = show_history(
            folder,
            kind=kind,
            limit=limit,
            symbol=symbol,
            as_json=json_out,
        )
    except HistoryError as exc:
        raise fail(str(exc)) from None
    except StoreError as exc:
        raise fail(str(exc), code=1) from None
    typer.echo(text)


@app.command()
def halt(
    reason: Annotated[str, typer.Option("--reason", help="Why (kept with the halt).")] = "manual",
    config: ConfigOpt = None,
    state_dir: Annotated[
        Path | None, typer.Option("--state-dir", help="State folder (default: config).")
    ] = None,
) -> None:
    """Kill switch: close every position and refuse entries until `guardbot resume`."""
    from bot.runner import request_halt

    settings, folder = state_folder(config, state_dir)
    request_halt(folder, True, reason)
    typer.echo(
        f"kill switch set in {folder}: the running bot closes positions and refuses entries at "
        f"its next sweep (within {settings.guards.sweep_s:g} s), or at its next start"
    )


@app.command()
def resume(
    config: ConfigOpt = None,
    state_dir: Annotated[
        Path | None, typer.Option("--state-dir", help="State folder (default: config).")
    ] = None,
) -> None:
    """Lift the kill switch set by `guardbot halt`."""
    from bot.runner import request_halt

    _, folder = state_folder(config, state_dir)
    request_halt(folder, False, "resumed by hand")
    typer.echo(f"kill switch cleared in {folder}: entries resume at the bot's next sweep")


@app.command()
def reload(
    config: ConfigOpt = None,
    state_dir: Annotated[
        Path | None, typer.Option("--state-dir", help="State folder (default: config).")
    ] = None,
) -> None:
    """Ask the running bot to re-read its configuration (sends it SIGHUP)."""
    import os
    import signal

    from bot.state.heartbeat import check_health

    settings, folder = state_folder(config, state_dir)
    health = check_health(folder, 3 * settings.state.heartbeat_s)
    pid = health.beat.get("pid")
    if not health.ok or not isinstance(pid, int):
        raise fail(f"no running bot found ({health.detail})", code=1)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise fail(f"bot process {pid} is gone", code=1) from None
    typer.echo(f"reload requested from bot process {pid}; see its log for the changed keys")


@config_app.command("check")
def config_check(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Validate the configuration (exit 0 if valid, 2 with the problem otherwise)."""
    try:
        overrides = overrides_from(set_)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    settings = settings_or_exit(config, overrides)
    enabled = [name for name, on in guard_switches(settings).items() if on]
    typer.echo(f"config ok: mode={settings.mode}, guards enabled: {', '.join(enabled) or 'none'}")


@config_app.command("show")
def config_show(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="JSON instead of TOML-like text.")
    ] = False,
) -> None:
    """Print the effective configuration, secrets masked."""
    try:
        overrides = overrides_from(set_)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    data = masked_dump(settings_or_exit(config, overrides))
    if json_out:
        typer.echo(json.dumps(data, indent=2))
    else:
        from bot.configdoc import to_toml

        typer.echo(to_toml(data))


@config_app.command("doc")
def config_doc(
    toml: Annotated[
        bool, typer.Option("--toml", help="Print config/default.toml instead of the table.")
    ] = False,
) -> None:
    """Print the Markdown table of every config key (the README's table)."""
    from bot.configdoc import default_toml, markdown_table

    typer.echo(default_toml() if toml else markdown_table(), nl=not toml)


def guard_switches(settings: Settings) -> dict[str, bool]:
    """Rule name → enabled, from the guards config."""
    out: dict[str, bool] = {}
    for name in type(settings.guards).model_fields:
        sub = getattr(settings.guards, name)
        if hasattr(sub, "enabled"):
            out[name] = bool(sub.enabled)
    return out


def _epoch(at: datetime) -> float:
    """A naive --at is UTC."""
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).timestamp()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


@app.command()
def emulator(
    port: Annotated[int, typer.Option("--port", help="Port (0 = any free port).")] = 8765,
    host: Annotated[str, typer.Option("--host", help="Bind address.")] = "127.0.0.1",
    balance: Annotated[float, typer.Option("--balance", help="USDT wallet balance.")] = 10_000.0,
    price: Annotated[
        list[str] | None,
        typer.Option(
            "--price",
            metavar="SYMBOL=PRICE",
            help="Starting price, e.g. BTC/USDT:USDT=60000 (repeat; also selects the markets).",
        ),
    ] = None,
    withdrawals: Annotated[
        bool,
        typer.Option(
            "--withdrawals", help="Report the API key as withdrawal-enabled (preflight warns)."
        ),
    ] = False,
) -> None:
    """Serve the local exchange (Binance USDⓈ-M subset backed by the paper core) for dress
    rehearsals and tests, until interrupted. API key and secret: GUARDBOT_EXCHANGE__API_KEY /
    _API_SECRET."""
    import asyncio
    import contextlib

    from bot.emulator.run import parse_price, serve

    try:
        prices = [parse_price(p) for p in price or []]
    except ValueError as exc:
        raise fail(str(exc)) from None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(host=host, port=port, balance=balance, prices=prices, withdrawals=withdrawals)
        )


@app.command()
def preflight(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    exchange_url: Annotated[
        str | None,
        typer.Option(
            "--exchange-url",
            help="Send requests to this server instead (e.g. the local emulator, "
            "guardbot emulator).",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    log_level: LogLevelOpt = None,
) -> None:
    """Check the live set-up without placing anything: connectivity, clock drift, API-key
    permissions, balances, positions without stops, and what the guards would do."""
    import asyncio

    from bot.exchange.live import LiveExchange
    from bot.ops.preflight import run_preflight

    try:
        overrides = overrides_from(set_, {"logging.level": log_level or "warning"})
    except ConfigError as exc:
        raise fail(str(exc)) from None
    settings = settings_or_exit(config, overrides)
    if settings.exchange.api_key is None or settings.exchange.api_secret is None:
        raise fail(
            "preflight needs exchange.api_key and exchange.api_secret "
            "(GUARDBOT_EXCHANGE__API_KEY / _SECRET or Docker secrets)"
        )
    setup_logging(settings, "preflight")

    async def _run() -> Any:
        url = exchange_url or settings.exchange.api_url
        exchange = LiveExchange(settings.exchange, api_url=url, streams=False)
        try:
            return await run_preflight(exchange, settings)
        finally:
            await exchange.close()

    report = asyncio.run(_run())
    if json_out:
        typer.echo(json.dumps(report.to_dict(), default=str))
    else:
        typer.echo(report.render_text())
    raise typer.Exit(0 if report.ok else 1)
