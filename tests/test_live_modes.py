"""Account modes through the real ccxt client against the Binance emulator: hedge (dual-side)
position mode and multi-assets mode, their endpoints and refusals, what preflight says about
them, and the start gate of ``run --live`` that refuses to trade (nothing sent) when preflight
fails. Demo trading: the URLs the ccxt client would call (no network).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from ccxt.base.errors import BaseError, NotSupported
from conftest_live import (  # noqa: F401
    API_KEY,
    API_SECRET,
    BTC,
    ETH,
    emulator,
    live,
    settings,
)

from bot.emulator import Emulator
from bot.exchange.live import LiveExchange
from bot.exchange.shapes import free_margin, wallet_balance
from bot.ops.preflight import run_preflight
from bot.runner import PreflightRefused, run_bot
from bot.settings import ConfigError, ExchangeSettings, Settings, load_settings


def bot_settings(tmp: Path | None = None, **exchange: Any) -> Settings:
    overrides: dict[str, Any] = {
        "exchange": {"api_key": API_KEY, "api_secret": API_SECRET, "symbols": [BTC], **exchange},
        "guards": {"no_overnight": {"enabled": False}},
    }
    if tmp is not None:
        overrides.update(
            {
                "mode": "live",
                "feed": {"kind": "poll", "poll_s": 0.2},
                "state": {"dir": str(tmp / "state")},
            }
        )
    return load_settings(None, overrides, env={}, env_file=None, secrets_dir=None)


def writes(emu: Emulator) -> list[str]:
    return [f"{r.method} {r.path}" for r in emu.requests if r.method != "GET"]


async def refusal(call: Any) -> str:
    """The exchange's error code of a refused ccxt call."""
    with pytest.raises(BaseError) as info:
        await call
    text = str(info.value)
    return text[text.index('"code":') + 7 :].split(",")[0].strip()


# ---------------------------------------------------------------------- the emulator's modes


async def test_position_mode_endpoints_refuse_as_binance_does(
    emulator: Emulator,  # noqa: F811
    live: LiveExchange,  # noqa: F811
) -> None:
    client = live.client
    await live.load_markets()
    assert (await client.fetch_position_mode())["hedged"] is False
    # already one-way: -4059 "No need to change position side."
    assert await refusal(client.set_position_mode(False)) == "-4059"
    emulator.open_external_position(BTC, "buy", 0.01)
    # a position: -4068; an open order (no position): -4067
    assert await refusal(client.set_position_mode(True)) == "-4068"
    emulator.open_external_position(BTC, "sell", 0.01)  # flat again
    emulator.core.create_order(ETH, "limit", "buy", 0.1, 2_000.0, {})
    assert await refusal(client.set_position_mode(True)) == "-4067"
    emulator.core.cancel_all_orders(ETH)
    await client.set_position_mode(True)
    assert emulator.hedge_mode and (await live.hedge_mode()) is True
    # in hedge mode every order of the one-way bot is refused (-4061)
    assert await refusal(client.create_order(BTC, "market", "buy", 0.01)) == "-4061"


async def test_multi_assets_endpoints_refuse_as_binance_does(
    emulator: Emulator,  # noqa: F811
    live: LiveExchange,  # noqa: F811
) -> None:
    client = live.client
    await live.load_markets()
    assert await live.multi_assets() is False
    on = {"multiAssetsMargin": "true"}
    # the symbols are isolated (the emulator's default): -4167
    assert await refusal(client.fapiPrivatePostMultiAssetsMargin(on)) == "-4167"
    for symbol in (BTC, ETH):
        await client.set_margin_mode("cross", symbol)
    emulator.core.create_order(ETH, "limit", "buy", 0.1, 2_000.0, {})
    assert await refusal(client.fapiPrivatePostMultiAssetsMargin(on)) == "-4170"  # open orders
    emulator.core.cancel_all_orders(ETH)
    await client.fapiPrivatePostMultiAssetsMargin(on)
    assert await live.multi_assets() is True
    assert await refusal(client.fapiPrivatePostMultiAssetsMargin(on)) == "-4171"  # already so
    # isolated margin under multi-assets mode: -4168
    assert await refusal(client.set_margin_mode("isolated", BTC)) == "-4168"


async def test_multi_assets_balance_counts_every_margin_asset(
    emulator: Emulator,  # noqa: F811
    live: LiveExchange,  # noqa: F811
) -> None:
    emulator.collateral["USDC"] = 2_500.0
    single = await live.fetch_balance()
    assert wallet_balance(single) == pytest.approx(10_000.0)  # single-asset: USDT alone
    for symbol in (BTC, ETH):
        emulator.core.set_margin_mode("cross", symbol)
    emulator.multi_assets = True
    multi = await live.fetch_balance()
    assert wallet_balance(multi) == pytest.approx(12_500.0)  # every asset, in USD
    assert multi["USDC"]["total"] == pytest.approx(2_500.0)
    # free margin likewise: flat, all of it is free (single-asset: USDT's 10,000 alone)
    assert free_margin(single) == pytest.approx(10_000.0)
    assert free_margin(multi) == pytest.approx(12_500.0)


def test_the_emulator_command_starts_in_either_mode() -> None:
    from bot.emulator.run import make_emulator

    emu = make_emulator("binance", API_KEY, API_SECRET, None, 1_000.0, False, True, True)
    assert isinstance(emu, Emulator) and emu.hedge_mode and emu.multi_assets
    assert {emu.core.margin_mode(s) for s in emu.core.symbols} == {"cross"}
    plain = make_emulator("binance", API_KEY, API_SECRET, None, 1_000.0)
    assert isinstance(plain, Emulator) and not plain.hedge_mode and not plain.multi_assets


# ---------------------------------------------------------------------- preflight


async def test_preflight_fails_on_hedge_mode_saying_how_to_switch(
    emulator: Emulator,  # noqa: F811
    live: LiveExchange,  # noqa: F811
) -> None:
    emulator.hedge_mode = True
    report = await run_preflight(live, bot_settings())
    check = report.check("position_mode")
    assert check is not None and check.status == "fail"
    assert "POST /fapi/v1/positionSide/dual dualSidePosition=false" in check.detail
    assert not report.ok and writes(emulator) == []


async def test_preflight_on_multi_assets_refuses_isolated_and_passes_cross(
    emulator: Emulator,  # noqa: F811
    live: LiveExchange,  # noqa: F811
) -> None:
    for symbol in (BTC, ETH):
        emulator.core.set_margin_mode("cross", symbol)
    emulator.multi_assets = True
    emulator.collateral["USDC"] = 1_000.0
    isolated = await run_preflight(live, bot_settings())
    check = isolated.check("asset_mode")
    assert check is not None and check.status == "fail" and "-4168" in check.detail
    assert 'margin_mode = "cross"' in check.detail and not isolated.ok
    cross = await run_preflight(live, bot_settings(margin_mode="cross"))
    assert cross.ok, cross.render_text()
    balance = cross.check("balance")
    assert balance is not None and balance.figures["wallet"] == pytest.approx(11_000.0)
    assert "USD over all margin assets" in balance.detail
    assert writes(emulator) == []


# ---------------------------------------------------------------------- the start gate


@pytest.mark.parametrize("mode", ["hedge", "multi_assets"])
async def test_run_live_refuses_to_trade_when_preflight_fails(
    mode: str,
    tmp_path: Path,
    emulator: Emulator,  # noqa: F811
) -> None:
    """A hand-opened position in hedge mode (the issue's 11 rejected stops and closes), or
    multi-assets mode with isolated margin: the bot exits before any order or setting."""
    if mode == "hedge":
        emulator.hedge_mode = True
    else:
        for symbol in (BTC, ETH):
            emulator.core.set_margin_mode("cross", symbol)
        emulator.multi_assets = True
    emulator.open_external_position(BTC, "buy", 0.01)
    s = bot_settings(tmp_path, api_url=emulator.url, ws_url=emulator.ws_url)
    stop = asyncio.Event()
    with pytest.raises(PreflightRefused) as info:
        await asyncio.wait_for(run_bot(s, "gate-1", stop=stop, install_signals=False), 30)
    failed = {c.name for c in info.value.report.checks if c.status == "fail"}
    assert failed == {"position_mode" if mode == "hedge" else "asset_mode"}
    assert info.value.code == 2
    assert writes(emulator) == []  # no order, no leverage or margin change, no listen key
    assert emulator.core.position(BTC).stop_price is None  # type: ignore[union-attr]


# ---------------------------------------------------------------------- demo trading


def test_sandbox_is_refused_pointing_to_demo() -> None:
    with pytest.raises(ConfigError, match=r"exchange\.demo = true"):
        load_settings(None, {"exchange": {"sandbox": True}}, env={}, env_file=None)
    with pytest.raises(ValueError, match="demo"):
        ExchangeSettings(sandbox=True)


async def test_demo_mode_calls_the_demo_host() -> None:
    ex = LiveExchange(settings(demo=True), streams=False)
    client = ex.client
    try:
        api = client.urls["api"]
        for key in ("fapiPublic", "fapiPrivate", "fapiPrivateV2", "fapiPrivateV3"):
            assert api[key].startswith("https://demo-fapi.binance.com/fapi/"), key
        assert client.options["enableDemoTrading"] is True
        assert not client.isSandboxModeEnabled
        # the URLs of the requests preflight and the bot make (signed locally, nothing sent)
        for path, section in (
            ("time", "fapiPublic"),
            ("positionSide/dual", "fapiPrivate"),
            ("multiAssetsMargin", "fapiPrivate"),
            ("account", "fapiPrivateV3"),
            ("order", "fapiPrivate"),
        ):
            url = client.sign(path, [section], "GET", {})["url"]
            assert url.startswith("https://demo-fapi.binance.com/fapi/"), url
        # demo trading has no sapi: the key-permission call fails locally, before any request
        with pytest.raises(NotSupported):
            await ex.api_permissions()
    finally:
        await ex.close()


async def test_preflight_skips_the_key_check_on_demo(
    emulator: Emulator,  # noqa: F811
) -> None:
    """On demo trading the API-key permission call raises NotSupported: preflight says it
    skipped it (and why) and still passes."""
    from conftest_live import make_live

    ex = make_live(emulator, settings=settings(demo=True))
    del ex.client.urls["api"]["sapi"]  # pointed at the emulator; the real demo has no sapi
    try:
        assert ex.client.options["enableDemoTrading"] is True
        report = await run_preflight(ex, bot_settings())
    finally:
        await ex.close()
    check = report.check("api_key")
    assert check is not None and check.status == "skip" and "demo" in check.detail
    assert report.ok, report.render_text()
