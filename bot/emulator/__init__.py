"""The local exchange emulator (Binance USDⓈ-M today): a rehearsal and test tool.

It serves an exchange's REST and stream protocol on 127.0.0.1, backed by the paper core, so a
real ccxt client trades against it exactly as paper mode does. Start it with
``guardbot emulator`` (or ``python -m bot.emulator``).
"""

from bot.emulator.server import ApiError, Emulator, Fault, RequestRecord, main

__all__ = ["ApiError", "Emulator", "Fault", "RequestRecord", "main"]
