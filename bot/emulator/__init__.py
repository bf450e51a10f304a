"""The local exchange emulator (Binance USDⓈ-M today): a rehearsal and test tool.

It serves an exchange's REST and stream protocol on 127.0.0.1, backed by the paper core, so a
real ccxt client trades against it exactly as paper mode does: ``server`` holds what every
venue shares (HTTP and websocket plumbing, fault injection, the ``/_control`` API),
``binance`` speaks Binance and ``run`` starts it by hand. Start it with ``guardbot emulator`` (or
``python -m bot.emulator``).
"""

from bot.emulator.binance import BinanceEmulator
from bot.emulator.server import ApiError, EmulatorServer, Fault, RequestRecord

#: The default venue.
Emulator = BinanceEmulator

__all__ = [
    "ApiError",
    "BinanceEmulator",
    "Emulator",
    "EmulatorServer",
    "Fault",
    "RequestRecord",
]
