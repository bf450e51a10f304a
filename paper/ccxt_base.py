"""ccxt's exception classes and precision helpers without importing every ccxt exchange.

The paper exchange speaks ccxt's language: it raises ccxt's exception classes and rounds with
ccxt's ``decimal_to_precision``. Importing ``ccxt.base.errors`` the usual way first runs
``ccxt/__init__.py``, which imports every exchange class: about 0.4 s and 75 MB, a tenth of a
replay's time and a third of its memory, for two small stdlib-only modules. ``preload`` executes
just those two files, from the installed ccxt, under their own names in ``sys.modules``; when
ccxt is imported later (live mode, the emulator's clients), its ``ccxt.base`` package picks the
very same module objects up, so ``ccxt.InvalidOrder`` *is* the class the paper core raises. If
ccxt was imported already, or its files are not where they should be, nothing is done and the
usual import happens.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

#: The ccxt modules the paper core needs; both import nothing beyond the standard library.
MODULES = ("ccxt.base.errors", "ccxt.base.decimal_to_precision")


def preload() -> None:
    """Load ``MODULES`` from ccxt's own files unless they are loaded (see the docstring)."""
    if "ccxt" in sys.modules or all(name in sys.modules for name in MODULES):
        return
    spec = importlib.util.find_spec("ccxt")
    if spec is None or spec.origin is None:
        return
    base = Path(spec.origin).parent / "base"
    for name in MODULES:
        if name in sys.modules:
            continue
        path = base / f"{name.rsplit('.', 1)[1]}.py"
        file_spec = importlib.util.spec_from_file_location(name, path)
        if file_spec is None or file_spec.loader is None or not path.is_file():
            return
        module = importlib.util.module_from_spec(file_spec)
        sys.modules[name] = module
        try:
            file_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
