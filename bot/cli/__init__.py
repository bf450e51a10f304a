"""The ``guardbot`` command line (typer); see ``bot.cli.common`` for how it is laid out."""

# the command modules register their commands on ``app``, in the order --help lists them
from bot.cli import run, research, inspect, control, tools  # noqa: I001
from bot.cli.common import app, main, overrides_from, parse_value

__all__ = [
    "app",
    "control",
    "inspect",
    "main",
    "overrides_from",
    "parse_value",
    "research",
    "run",
    "tools",
]
