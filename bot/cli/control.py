"""Controlling a running bot: the kill switch (``halt`` / ``resume``), ``reload`` and
``seatbelt apply``."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.cli.common import (
    ConfigOpt,
    StateDirOpt,
    app,
    fail,
    state_folder,
)


@app.command()
def halt(
    reason: Annotated[str, typer.Option("--reason", help="Why (kept with the halt).")] = "manual",
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
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
    state_dir: StateDirOpt = None,
) -> None:
    """Lift the kill switch set by `guardbot halt`."""
    from bot.runner import request_halt

    _, folder = state_folder(config, state_dir)
    request_halt(folder, False, "resumed by hand")
    typer.echo(f"kill switch cleared in {folder}: entries resume at the bot's next sweep")


@app.command()
def reload(
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Ask the running bot to re-read its configuration (sends it SIGHUP)."""
    import os
    import signal

    from bot.state.lock import in_use

    _, folder = state_folder(config, state_dir)
    pid = in_use(folder)  # the process holding the state dir's lock, whatever its health
    if pid is None or pid < 0:
        raise fail(f"no running bot found on {folder} (its state dir is not locked)", code=1)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise fail(f"bot process {pid} is gone", code=1) from None
    typer.echo(f"reload requested from bot process {pid}; see its log for the changed keys")


seatbelt_app = typer.Typer(
    help="Seatbelt mode (strategy = none): guarding positions opened by hand."
)
app.add_typer(seatbelt_app, name="seatbelt")


@seatbelt_app.command("apply")
def seatbelt_apply(
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Let the seatbelt act on the positions found at start (cut them back to the guards)."""
    from bot.runner import request_seatbelt_apply

    settings, folder = state_folder(config, state_dir)
    request_seatbelt_apply(folder)
    typer.echo(
        f"seatbelt confirmation recorded in {folder}: at its next sweep (within "
        f"{settings.guards.sweep_s:g} s) the running bot judges the positions it found at start "
        "and cuts what the guards would not allow"
    )
