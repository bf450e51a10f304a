"""The ``guardbot`` command line: the typer app, the options and helpers every command shares.

Commands live in this package by role: ``run`` (run, replay), ``inspect`` (check-order, history,
health), ``control`` (halt, resume, reload) and ``tools`` (version, config, preflight,
emulator); ``main`` is the console script. Every command loads settings through
``bot.settings.load_settings``.

Exit statuses: 0 done, 1 the answer is "no" (a refused order, a failed check, a stale
heartbeat) or the bot stopped on a runtime error, 2 bad input — a configuration, data or
argument error (typer's own usage errors are 2 as well), always one line on stderr
(``guardbot: ...``) naming the input, the value and what is expected, never a traceback.
``main`` turns what escapes a command — a ``ConfigError`` (also ``StoreRefused``, a state.dir
that holds no guardbot store) or a file-system error on a path — into that line.
"""

from __future__ import annotations

import sys
import tomllib
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from bot.settings import ConfigError, Settings, load_settings, set_dotted

#: Exit status of every input error: configuration, data, arguments (as typer's usage errors).
INPUT_ERROR = 2
HELP = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    name="guardbot",
    help="A crypto-perpetuals trading bot whose product is its risk guard layer.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings=HELP,
)


config_app = typer.Typer(
    help="Validate, show and document the configuration.",
    no_args_is_help=True,
    context_settings=HELP,
)
app.add_typer(config_app, name="config")


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", metavar="FILE", help="TOML file layered over config/default.toml."
    ),
]


StateDirOpt = Annotated[
    Path | None, typer.Option("--state-dir", help="State folder (default: config).")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Override any key: --set guards.position_cap.max_leverage=3.",
    ),
]


LogFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        metavar="auto|json|console",
        help="Log format (default: the config's logging.format).",
    ),
]


LogLevelOpt = Annotated[
    str | None,
    typer.Option("--log-level", metavar="debug|info|warning|error", help="Lowest level logged."),
]

#: The settings the running command loaded (names the setting behind a failing path).
_LOADED: ContextVar[Settings | None] = ContextVar("_LOADED", default=None)


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


def one_line(message: str, limit: int = 1000) -> str:
    """``message`` on one line, cut to ``limit`` characters."""
    text = " ".join(message.split())
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def fail(message: str, code: int = INPUT_ERROR) -> typer.Exit:
    typer.echo(f"guardbot: {one_line(message)}", err=True)
    return typer.Exit(code)


def settings_or_exit(config: Path | None, overrides: dict[str, Any]) -> Settings:
    try:
        settings = load_settings(config, overrides)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    _LOADED.set(settings)
    return settings


def live_notice(settings: Settings, live: bool) -> None:
    """``--live`` with a paper configuration changes nothing: say so (stderr)."""
    if live and settings.mode != "live":
        typer.echo(
            f"guardbot: notice: --live has no effect: the configuration says mode = "
            f'"{settings.mode}", so nothing is sent to an exchange (set mode = "live" to trade '
            "live)",
            err=True,
        )


def _path_settings(settings: Settings) -> list[tuple[str, Path]]:
    feed = settings.feed
    found = [("state.dir", settings.state.dir)]
    found += [(k, p) for k, p in (("logging.file", settings.logging.file),) if p is not None]
    found += [
        (k, p)
        for k, p in (
            ("feed.path", feed.path),
            ("feed.mark_path", feed.mark_path),
            ("feed.funding_path", feed.funding_path),
        )
        if p is not None
    ]
    found += [("feed.paths", p) for p in feed.paths]
    return found


def describe_os_error(exc: OSError) -> str:
    """A file-system error on a path as one line, naming the setting the path came from."""
    name = str(exc.filename)
    why = exc.strerror or type(exc).__name__
    where = ""
    settings = _LOADED.get()
    if settings is not None:
        for key, path in _path_settings(settings):
            if name == str(path) or name.startswith(str(path).rstrip("/") + "/"):
                where = f" ({key} = {str(path)!r})"
                break
    return f"cannot use {name}{where}: {why}; expected a path guardbot can read and write"


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
            settings.notify.webhook_url,
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
    """The console script (the package imports every command module, which registers it).

    What a command lets escape as an input error becomes its one line and status 2 (see the
    module docstring); anything else keeps its traceback (a bug to report).
    """
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except ConfigError as exc:
        typer.echo(f"guardbot: {one_line(str(exc))}", err=True)
        sys.exit(INPUT_ERROR)
    except OSError as exc:
        if exc.filename is None:
            raise
        typer.echo(f"guardbot: {one_line(describe_os_error(exc))}", err=True)
        sys.exit(INPUT_ERROR)
