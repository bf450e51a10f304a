"""Set-up and rehearsal: ``version``, ``config check|show|doc``, ``preflight``, ``emulator``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bot import __version__
from bot.cli.common import (
    ConfigOpt,
    LogLevelOpt,
    SetOpt,
    app,
    config_app,
    fail,
    guard_switches,
    overrides_from,
    settings_or_exit,
    setup_logging,
)
from bot.settings import ConfigError, masked_dump

if TYPE_CHECKING:
    pass


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"guardbot {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the guardbot version and exit.",
        ),
    ] = False,
) -> None:
    """A crypto-perpetuals trading bot whose product is its risk guard layer."""


@app.command()
def version() -> None:
    """Print the guardbot version."""
    typer.echo(f"guardbot {__version__}")


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
    venue: Annotated[
        str,
        typer.Option("--venue", help="The exchange to speak: binance, bybit or okx."),
    ] = "binance",
    hedge_mode: Annotated[
        bool,
        typer.Option("--hedge-mode", help="Binance: hedge (dual-side) position mode (refused)."),
    ] = False,
    multi_assets: Annotated[
        bool,
        typer.Option("--multi-assets", help="Binance: multi-assets mode, every symbol cross."),
    ] = False,
) -> None:
    """Serve the local exchange (Binance USDⓈ-M, Bybit v5 or OKX v5, backed by the paper core)
    until interrupted.

    For dress rehearsals and tests; its API key and secret come from GUARDBOT_EXCHANGE__API_KEY
    and GUARDBOT_EXCHANGE__API_SECRET (OKX's passphrase from GUARDBOT_EXCHANGE__PASSWORD).
    """
    import asyncio
    import contextlib

    from bot.emulator.run import VENUES, parse_price, serve

    if venue not in VENUES:
        raise fail(f"--venue must be one of {', '.join(VENUES)}, not {venue!r}")
    try:
        prices = [parse_price(p) for p in price or []]
    except ValueError as exc:
        raise fail(str(exc)) from None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(
                host=host,
                port=port,
                balance=balance,
                prices=prices,
                withdrawals=withdrawals,
                venue=venue,
                hedge_mode=hedge_mode,
                multi_assets=multi_assets,
            )
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
