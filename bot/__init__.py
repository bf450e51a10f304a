"""guardbot's imperative shell: settings, logging, CLI, engine loop, exchange adapters, state."""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("guardbot")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+src"
