"""Looking at the bot and its guards: ``check-order``, ``history``, ``health``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from bot.cli.common import (
    ConfigOpt,
    SetOpt,
    StateDirOpt,
    _epoch,
    app,
    fail,
    overrides_from,
    settings_or_exit,
    state_folder,
)
from bot.settings import ConfigError

if TYPE_CHECKING:
    pass


@app.command("check-order")
def check_order(
    symbol: Annotated[
        str, typer.Option(metavar="BASE/QUOTE:SETTLE", help="Market, e.g. BTC/USDT:USDT.")
    ],
    side: Annotated[str, typer.Option(metavar="long|short", help="Position direction.")],
    price: Annotated[
        float, typer.Option(metavar="USDT", help="Entry price (also used as the mark).")
    ],
    amount: Annotated[
        float | None, typer.Option(metavar="QTY", help="Size in base units (e.g. BTC).")
    ] = None,
    notional: Annotated[
        float | None,
        typer.Option(
            metavar="USDT", help="Size as notional (amount × price), instead of --amount."
        ),
    ] = None,
    margin: Annotated[
        float | None,
        typer.Option(
            metavar="USDT", help="Size as margin (notional ÷ leverage), instead of --amount."
        ),
    ] = None,
    leverage: Annotated[
        float, typer.Option(metavar="X", help="Leverage, up to the market's maximum.")
    ] = 1.0,
    stop: Annotated[
        float | None, typer.Option(metavar="USDT", help="Stop-loss trigger price.")
    ] = None,
    take_profit: Annotated[
        float | None, typer.Option(metavar="USDT", help="Take-profit price.")
    ] = None,
    margin_mode: Annotated[
        str, typer.Option(metavar="isolated|cross", help="Margin mode.")
    ] = "isolated",
    balance: Annotated[
        float, typer.Option(metavar="USDT", help="Wallet balance of the flat account.")
    ] = 10_000.0,
    at: Annotated[
        datetime | None,
        typer.Option(
            "--at", metavar="ISO-TIME", help="Check as of this time (naive = UTC; default: now)."
        ),
    ] = None,
    exchange: Annotated[
        str | None,
        typer.Option(
            "--exchange",
            metavar="ID",
            help="ccxt exchange id whose rules apply: binanceusdm, bybit or okx "
            "(default: the config's exchange.id).",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Explain what the guards decide for one order: liquidation calculator and guard explainer.

    Exit status 0 when the order would be allowed (possibly resized), 1 when refused, 2 for bad
    input."""
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
            notional=notional,
            margin=margin,
            price=price,
            leverage=leverage,
            stop=stop,
            take_profit=take_profit,
            margin_mode=margin_mode,
            balance=balance,
            now=None if at is None else _epoch(at),
            exchange=exchange,
        )
    except CheckOrderError as exc:
        raise fail(str(exc)) from None
    typer.echo(json.dumps(result.to_dict()) if json_out else result.render_text())
    raise typer.Exit(0 if result.allowed else 1)


@app.command()
def history(
    limit: Annotated[int, typer.Option("--limit", "-n", help="Rows per kind.")] = 20,
    kind: Annotated[
        str,
        typer.Option("--kind", help="decisions | fills | trades (round trips) | actions | all."),
    ] = "all",
    symbol: Annotated[str | None, typer.Option("--symbol", help="Only this market.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Show recent guard decisions, fills, round-trip trades and guard actions from the store."""
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
def health(
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
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
