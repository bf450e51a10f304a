"""Shared fixtures for the live-mode tests: the local exchange, a ccxt-backed ``LiveExchange``
pointed at it, captured JSON logs, and the server-side invariants every end-to-end test checks.

Import what you use explicitly: ``from conftest_live import emulator, live, logs, ...``.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from bot.emulator import Emulator
from bot.exchange.live import LiveExchange
from bot.exchange.retry import RetryPolicy
from bot.ops.logging import configure_logging
from bot.settings import ExchangeSettings
from paper.config import PaperConfig

API_KEY = "gbTestKey0123456789abcdefABCDEF"
API_SECRET = "gbTestSecret-9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c"
BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
#: Retries fast enough for tests, still bounded.
FAST_RETRY = RetryPolicy(attempts=5, base_s=0.01, max_delay_s=0.05, budget_s=10.0)


def settings(**update: Any) -> ExchangeSettings:
    base = ExchangeSettings(
        api_key=SecretStr(API_KEY), api_secret=SecretStr(API_SECRET), symbols=(BTC, ETH)
    )
    return base.model_copy(update=update)


def make_live(emu: Emulator, **kwargs: Any) -> LiveExchange:
    """A ``LiveExchange`` (real ccxt binanceusdm client) talking to ``emu``."""
    opts: dict[str, Any] = {
        "api_url": emu.url,
        "ws_url": emu.ws_url,
        "rate_limit": False,
        "timeout_ms": 5_000,
        "retry": FAST_RETRY,
    }
    opts.update(kwargs)
    exchange_settings = opts.pop("settings", None) or settings()
    return LiveExchange(exchange_settings, **opts)


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    emu = Emulator(
        api_key=API_KEY,
        api_secret=API_SECRET,
        symbols=[BTC, ETH],
        config=PaperConfig(auto_funding=False),
    )
    emu.set_price(BTC, 60_000.0)
    emu.set_price(ETH, 3_000.0)
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()


@pytest.fixture
async def live(emulator: Emulator) -> AsyncIterator[LiveExchange]:
    exchange = make_live(emulator)
    try:
        yield exchange
    finally:
        await exchange.close()


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Structlog configured as in production (JSON, secrets registered), captured."""
    buf = io.StringIO()
    configure_logging(level="debug", fmt="json", stream=buf, secrets=[API_SECRET, API_KEY])
    yield buf


def events(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def event_names(buf: io.StringIO) -> list[str]:
    return [str(e.get("event")) for e in events(buf)]


def violations(
    emu: Emulator,
    *,
    max_leverage: float = 5.0,
    max_margin_pct: float = 10.0,
    exempt: frozenset[str] = frozenset(),
) -> list[str]:
    """Server-side invariants: no client id used by two orders, no position without a stop,
    no position beyond the caps (``exempt``: symbols opened outside the bot)."""
    problems = []
    for cid, oids in emu.client_ids().items():
        if len(oids) > 1:
            problems.append(f"client id {cid} used by {len(oids)} orders {oids}")
    core = emu.core
    equity = core.equity()
    for symbol in core.symbols:
        pos = core.position(symbol)
        if pos is None:
            continue
        if pos.stop_price is None:
            problems.append(f"{symbol}: {pos.side} {pos.amount} without a stop")
        if symbol in exempt:
            continue
        if pos.leverage > max_leverage + 1e-9:
            problems.append(f"{symbol}: leverage {pos.leverage} above {max_leverage}")
        margin = pos.amount * pos.entry_price / pos.leverage
        if margin > equity * max_margin_pct / 100.0 * 1.01:
            problems.append(f"{symbol}: margin {margin:.2f} above {max_margin_pct}% of equity")
    return problems


def secret_leaks(buf: io.StringIO) -> list[str]:
    return [line for line in buf.getvalue().splitlines() if API_SECRET in line]
