"""The local exchange emulator (Binance USDⓈ-M, Bybit v5, OKX v5): a rehearsal and test tool.

It serves an exchange's REST (and, Binance, stream) protocol on 127.0.0.1, backed by the paper
core, so a real ccxt client trades against it exactly as paper mode does: ``server`` holds what
every venue shares (HTTP and websocket plumbing, fault injection, the ``/_control`` API),
``binance``, ``bybit`` and ``okx`` speak their venue and ``run`` starts one by hand. Start it
with ``guardbot emulator [--venue binance|bybit|okx]`` (or ``python -m bot.emulator``).
"""

from bot.emulator.binance import BinanceEmulator
from bot.emulator.bybit import BybitEmulator
from bot.emulator.okx import OkxEmulator
from bot.emulator.server import ApiError, EmulatorServer, Fault, RequestRecord

#: The default venue.
Emulator = BinanceEmulator

__all__ = [
    "ApiError",
    "BinanceEmulator",
    "BybitEmulator",
    "Emulator",
    "EmulatorServer",
    "Fault",
    "OkxEmulator",
    "RequestRecord",
]
