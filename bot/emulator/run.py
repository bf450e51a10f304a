"""Running the emulator by hand: ``guardbot emulator`` and ``python -m bot.emulator``.

``serve`` starts the emulator of a venue (``binance``, ``bybit`` or ``okx``) on a port with
starting prices (which also select its markets; Bybit's and OKX's default to their bundled
ones) and prints how to reach it; ``main`` is the ``python -m bot.emulator`` entry point with
the same flags as ``guardbot emulator``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
from collections.abc import Iterable
from typing import Literal

from bot.emulator.binance import BinanceEmulator
from bot.emulator.bybit import BybitEmulator
from bot.emulator.okx import OkxEmulator
from bot.emulator.server import EmulatorServer

EmulatorVenue = Literal["binance", "bybit", "okx"]
VENUES: tuple[EmulatorVenue, ...] = ("binance", "bybit", "okx")
_TITLES = {
    "binance": "Binance USDⓈ-M subset",
    "bybit": "Bybit v5 linear subset",
    "okx": "OKX v5 swap subset",
}


async def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    balance: float = 10_000.0,
    prices: Iterable[tuple[str, float]] = (),
    withdrawals: bool = False,
    venue: EmulatorVenue = "binance",
    hedge_mode: bool = False,
    multi_assets: bool = False,
) -> None:
    """Serve the emulator until cancelled (``guardbot emulator``, ``python -m bot.emulator``).

        The API key and secret (and OKX's passphrase) come from ``GUARDBOT_EXCHANGE__API_KEY`` /
        ``_API_SECRET`` / ``_PASSWORD`` (so the bot's own settings sign its requests), else
        placeholders; ``prices`` also select the markets. ``withdrawals``, ``hedge_mode`` (dual-side
    position mode) and ``multi_assets`` (multi-assets mode, every symbol cross) are Binance's only.
    """
    key = os.environ.get("GUARDBOT_EXCHANGE__API_KEY", "emulator-key")
    secret = os.environ.get("GUARDBOT_EXCHANGE__API_SECRET", "emulator-secret")
    chosen = list(prices)
    symbols = sorted({s for s, _ in chosen}) or None
    emulator = make_emulator(
        venue, key, secret, symbols, balance, withdrawals, hedge_mode, multi_assets
    )
    for symbol, price in chosen:
        emulator.set_price(symbol, price)
    url = await emulator.start(host, port)
    print(f"guardbot emulator ({_TITLES[venue]}) on {url}", flush=True)
    if venue == "binance":
        print(f"  streams:  {emulator.ws_url}", flush=True)
        print(
            f"  user data: POST /fapi/v1/listenKey, then {emulator.ws_url[:-3]}/private/ws"
            "?listenKey=<key> | GET /fapi/v1/userTrades, allOrders, allAlgoOrders, forceOrders",
            flush=True,
        )
    print(f"  markets:  {', '.join(emulator.core.symbols)}", flush=True)
    if venue == "binance":
        modes = ("hedge" if hedge_mode else "one-way") + (
            ", multi-assets" if multi_assets else ", single-asset"
        )
        print(f"  modes:    {modes} (GET/POST /fapi/v1/positionSide/dual, multiAssetsMargin)")
    print(f"  api key:  {key}  (secret from GUARDBOT_EXCHANGE__API_SECRET)", flush=True)
    for line in (
        "  control:  POST /_control/price {symbol,last,mark?} | /_control/fault {...} |",
        "            /_control/position {symbol,side,amount} | /_control/liquidation",
        "            {symbol,side,amount,price} | /_control/adl {symbol,price,amount?} |",
        "            GET /_control/state",
    ):
        print(line, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await emulator.stop()


def make_emulator(
    venue: EmulatorVenue,
    key: str,
    secret: str,
    symbols: list[str] | None,
    balance: float,
    withdrawals: bool = False,
    hedge_mode: bool = False,
    multi_assets: bool = False,
) -> EmulatorServer:
    """The emulator of ``venue`` (its own liquidation profile and bundled markets)."""
    if venue == "binance":
        return BinanceEmulator(
            api_key=key,
            api_secret=secret,
            symbols=symbols,
            balance=balance,
            permissions={"enableWithdrawals": withdrawals},
            hedge_mode=hedge_mode,
            multi_assets=multi_assets,
        )
    if venue == "bybit":
        return BybitEmulator(api_key=key, api_secret=secret, symbols=symbols, balance=balance)
    if venue == "okx":
        passphrase = os.environ.get("GUARDBOT_EXCHANGE__PASSWORD", "emulator-passphrase")
        return OkxEmulator(
            api_key=key, api_secret=secret, passphrase=passphrase, symbols=symbols, balance=balance
        )
    raise ValueError(f"--venue must be one of {', '.join(VENUES)}, not {venue!r}")


def parse_price(text: str) -> tuple[str, float]:
    """``SYMBOL=PRICE`` (e.g. ``BTC/USDT:USDT=60000``) as a pair."""
    symbol, sep, value = text.rpartition("=")
    if not sep or not symbol:
        raise ValueError(f"--price needs SYMBOL=PRICE, got {text!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"--price needs SYMBOL=PRICE with a number, got {text!r}") from None
    if not (number > 0 and math.isfinite(number)):
        raise ValueError(f"--price must be a positive number, got {text!r}")
    return symbol, number


def main(argv: list[str] | None = None) -> None:
    """``python -m bot.emulator``: serve the local exchange until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m bot.emulator",
        description="Local exchange speaking Binance, Bybit or OKX futures REST (paper mode).",
    )
    parser.add_argument(
        "--venue", choices=VENUES, default="binance", help="the exchange to speak (default binance)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (0 = any free port)")
    parser.add_argument("--balance", type=float, default=10_000.0, help="USDT wallet balance")
    parser.add_argument(
        "--price",
        type=_price_arg,
        action="append",
        help="starting price, e.g. BTC/USDT:USDT=60000 (repeat; also selects the markets)",
    )
    parser.add_argument(
        "--withdrawals",
        action="store_true",
        help="report the API key as withdrawal-enabled (to see preflight's warning)",
    )
    parser.add_argument(
        "--hedge-mode", action="store_true", help="Binance: hedge (dual-side) position mode"
    )
    parser.add_argument(
        "--multi-assets", action="store_true", help="Binance: multi-assets mode (all cross)"
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(
                host=args.host,
                port=args.port,
                balance=args.balance,
                prices=args.price or [],
                withdrawals=args.withdrawals,
                venue=args.venue,
                hedge_mode=args.hedge_mode,
                multi_assets=args.multi_assets,
            )
        )


def _price_arg(text: str) -> tuple[str, float]:
    try:
        return parse_price(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
