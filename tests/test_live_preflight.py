"""``guardbot preflight`` against the local exchange (read-only, findings and guard actions), and
the two confirmations ``guardbot run`` needs before live mode.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest_live import (  # noqa: F401
    API_KEY,
    API_SECRET,
    BTC,
    ETH,
    emulator,
    live,
    logs,
    make_live,
)
from typer.testing import CliRunner

from bot.cli import app
from bot.emulator import Emulator
from bot.exchange.live import LiveExchange
from bot.ops.preflight import ReadOnly, run_preflight
from bot.settings import Settings, load_settings

runner = CliRunner()


def bot_settings(**guards: Any) -> Settings:
    overrides: dict[str, Any] = {
        "exchange": {"api_key": API_KEY, "api_secret": API_SECRET, "symbols": [BTC, ETH]},
        "guards": {"no_overnight": {"enabled": False}, **guards},
    }
    return load_settings(None, overrides, env={}, env_file=None, secrets_dir=None)


def writes(emu: Emulator) -> list[str]:
    return [f"{r.method} {r.path}" for r in emu.requests if r.method != "GET"]


async def test_preflight_reports_and_changes_nothing(
    emulator: Emulator,  # noqa: F811
    live: LiveExchange,  # noqa: F811
) -> None:
    emulator.permissions["enableWithdrawals"] = True
    emulator.clock_skew_ms = 3_000  # the exchange's clock runs 3 s ahead of ours
    emulator.open_external_position(BTC, "buy", 0.1)  # filled at 60012, no stop
    report = await run_preflight(live, bot_settings())
    status = {c.name: c.status for c in report.checks}
    assert status == {
        "connectivity": "ok",
        "clock": "warn",
        "markets": "ok",
        "api_key": "warn",
        "position_mode": "ok",
        "asset_mode": "ok",
        "balance": "ok",
        "positions": "warn",
        "leverage": "ok",
        "guards": "ok",
    }
    assert report.ok  # warnings, no failures
    clock = report.check("clock")
    assert clock is not None and 2_000 < clock.figures["drift_ms"] < 4_000
    key = report.check("api_key")
    assert key is not None and "WITHDRAWALS ARE ENABLED" in key.detail
    positions = report.check("positions")
    assert positions is not None and positions.figures["without_stop"] == [BTC]
    # the sweep would give it the default stop: 60012 * 0.98 = 58811.76 -> 58811.7 (tick 0.1)
    stops = [(a.symbol, a.stop_price) for a in report.actions if a.kind == "place_stop"]
    assert stops == [(BTC, pytest.approx(58_811.7))]
    assert writes(emulator) == []
    assert emulator.core.position(BTC).stop_price is None  # type: ignore[union-attr]
    text = report.render_text()
    assert "WITHDRAWALS ARE ENABLED" in text and "place_stop" in text and "PASSED" in text


async def test_preflight_fails_on_hedge_mode_and_missing_futures_permission(
    emulator: Emulator,  # noqa: F811
    live: LiveExchange,  # noqa: F811
) -> None:
    emulator.hedge_mode = True
    emulator.permissions["enableFutures"] = False
    report = await run_preflight(live, bot_settings())
    status = {c.name: c.status for c in report.checks}
    assert status["position_mode"] == "fail" and status["api_key"] == "fail"
    assert not report.ok and "FAILED" in report.render_text()


async def test_preflight_fails_on_leverage_above_the_guard_cap(
    live: LiveExchange,  # noqa: F811
) -> None:
    settings = bot_settings(position_cap={"max_leverage": 2.0})
    report = await run_preflight(live, settings)  # exchange.leverage defaults to 3
    check = report.check("leverage")
    assert (
        check is not None and check.status == "fail" and "lower exchange.leverage" in check.detail
    )
    assert not report.ok  # run --live would refuse to start


async def test_preflight_stops_early_when_the_exchange_is_unreachable() -> None:
    ex = LiveExchange(
        bot_settings().exchange,
        api_url="http://127.0.0.1:9",
        streams=False,
        rate_limit=False,
        retry=None,
        timeout_ms=2_000,
    )
    ex.retry = ex.retry.__class__(attempts=1)
    try:
        report = await run_preflight(ex, bot_settings())
    finally:
        await ex.close()
    assert [(c.name, c.status) for c in report.checks] == [("connectivity", "fail")]
    assert not report.ok


async def test_read_only_wrapper_refuses_writes(live: LiveExchange) -> None:  # noqa: F811
    ro = ReadOnly(live)
    for name in ("create_order", "cancel_order", "set_leverage", "set_margin_mode"):
        with pytest.raises(PermissionError):
            getattr(ro, name)
    assert ro.fetch_balance == live.fetch_balance


# ---------------------------------------------------------------------- command line


@pytest.fixture
def served() -> Iterator[Emulator]:
    """The local exchange on its own event loop in a thread (the CLI runs its own loop)."""
    loop = asyncio.new_event_loop()
    emu = Emulator(api_key=API_KEY, api_secret=API_SECRET, symbols=[BTC, ETH])
    emu.set_price(BTC, 60_000.0)
    emu.set_price(ETH, 3_000.0)
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(emu.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(20)
    try:
        yield emu
    finally:
        asyncio.run_coroutine_threadsafe(emu.stop(), loop).result(20)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(20)


def test_cli_preflight_against_the_local_exchange(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, served: Emulator
) -> None:
    monkeypatch.setenv("GUARDBOT_EXCHANGE__API_KEY", API_KEY)
    monkeypatch.setenv("GUARDBOT_EXCHANGE__API_SECRET", API_SECRET)
    monkeypatch.setenv("GUARDBOT_EXCHANGE__SYMBOLS", f'["{BTC}"]')
    served.permissions["enableWithdrawals"] = True
    result = runner.invoke(
        app,
        ["preflight", "--exchange-url", served.url, "--set", "guards.no_overnight.enabled=false"],
    )
    assert result.exit_code == 0, result.output
    assert "WITHDRAWALS ARE ENABLED" in result.output
    assert "preflight PASSED" in result.output
    assert API_SECRET not in result.output
    assert writes(served) == []


def test_cli_preflight_needs_keys(clean_env: Path) -> None:
    result = runner.invoke(app, ["preflight"])
    assert result.exit_code == 2
    assert "api_key" in result.output


def test_live_mode_without_the_second_confirmation_is_refused(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARDBOT_EXCHANGE__API_KEY", API_KEY)
    monkeypatch.setenv("GUARDBOT_EXCHANGE__API_SECRET", API_SECRET)
    result = runner.invoke(app, ["run", "--set", 'mode="live"'])
    assert result.exit_code == 2
    assert "--live" in result.output and "GUARDBOT_LIVE_CONFIRM=yes" in result.output
    assert "Nothing was sent" in result.output


@pytest.mark.parametrize("mode", ["hedge", "multi_assets"])
def test_cli_run_live_refuses_with_the_preflight_report(
    mode: str, clean_env: Path, monkeypatch: pytest.MonkeyPatch, served: Emulator
) -> None:
    """``guardbot run --live`` on an account in hedge mode (with a hand-opened position) or in
    multi-assets mode with isolated margin: the preflight report, exit 2, nothing sent."""
    monkeypatch.setenv("GUARDBOT_EXCHANGE__API_KEY", API_KEY)
    monkeypatch.setenv("GUARDBOT_EXCHANGE__API_SECRET", API_SECRET)
    monkeypatch.setenv("GUARDBOT_EXCHANGE__SYMBOLS", f'["{BTC}"]')
    if mode == "hedge":
        served.hedge_mode = True
    else:
        for symbol in (BTC, ETH):
            served.core.set_margin_mode("cross", symbol)
        served.multi_assets = True
    served.open_external_position(BTC, "buy", 0.01)
    common = ["--set", "guards.no_overnight.enabled=false"]
    pre = runner.invoke(app, ["preflight", "--exchange-url", served.url, *common])
    assert pre.exit_code == 1, pre.output
    result = runner.invoke(
        app,
        [
            "run", "--live", "--set", 'mode="live"', "--set", f'exchange.api_url="{served.url}"',
            "--set", 'feed.kind="poll"', "--set", f'state.dir="{clean_env / "state"}"', *common,
        ],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    failing = "position_mode" if mode == "hedge" else "asset_mode"
    assert f"[FAIL] {failing}:" in result.output and "preflight FAILED" in result.output
    assert "no order was sent" in result.output

    def checks(text: str) -> list[str]:  # the report's check lines, without the timings
        return [
            line.split(":")[0]
            for line in text.splitlines()
            if line.startswith("  [") and "connectivity" not in line and "clock" not in line
        ]

    assert f"  [FAIL] {failing}" in checks(pre.output)
    assert checks(result.output) == checks(pre.output)  # the same report as guardbot preflight
    assert writes(served) == []
    assert API_SECRET not in result.output
