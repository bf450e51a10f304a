"""The ``guardbot`` command line: the typer app, the options and helpers every command shares.

Commands live in this package by role: ``run`` (run, replay), ``inspect`` (check-order, history,
health), ``control`` (halt, resume, reload) and ``tools`` (version, config, preflight,
emulator); ``main`` is the console script. Every command loads settings through
``bot.settings.load_settings``; a configuration problem prints one readable message and exits
with status 2 (no traceback).
"""

from __future__ import annotations

import sys
import tomllib
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from bot.settings import ConfigError, Settings, load_settings, set_dotted

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
            settings.metrics.token,
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
    """The console script (the package imports every command module, which registers it)."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
