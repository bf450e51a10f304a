"""`guardbot download` against the local exchange, which serves Binance's kline, mark-price kline
and funding-history endpoints and refuses what Binance refuses."""

from __future__ import annotations

import math
from array import array
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import ccxt.async_support as ccxt_async
import pytest
from conftest_live import API_KEY, API_SECRET

from bot.emulator import Emulator
from bot.exchange.live import point_at
from bot.research.download import DownloadError, download, file_path
from bot.research.replay import run_replay
from bot.settings import load_settings
from paper.config import PaperConfig
from paper.core import PaperCore
from paper.feed import Candles, load_candles, load_funding
from paper.markets import bundled_tier_entries, derived_market, load_market

SOL = "SOL/USDT:USDT"
BTC = "BTC/USDT:USDT"
T0 = 1_743_465_600_000  # 2025-04-01 00:00 UTC
TF = 60_000
N = 3_500  # more than three pages of 1,000


def series(n: int = N, base: float = 150.0, mark: bool = False) -> Candles:
    ts = array("q", (T0 + i * TF for i in range(n)))
    mid = [round(base * (1 + 0.03 * math.sin(i / 40)) + (0.05 if mark else 0), 3) for i in range(n)]
    close = [round(m * 1.001, 3) for m in mid]
    pairs = list(zip(mid, close, strict=True))
    return Candles(
        SOL, TF, ts, array("d", mid), array("d", (max(a, b) + 0.1 for a, b in pairs)),
        array("d", (min(a, b) - 0.1 for a, b in pairs)), array("d", close),
        array("d", (0.0 if mark else 10.0 + i for i in range(n))),
    )  # fmt: skip


FUNDING = [(T0 + 8 * 3_600_000 * k + 5, 0.0001 * ((-1) ** k)) for k in range(8)]


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    cfg = PaperConfig(auto_funding=False)
    sol, _ = derived_market(SOL, bundled_tier_entries()[SOL], [150.0, 150.123])
    core = PaperCore(cfg, {BTC: load_market(BTC), SOL: sol})
    e = Emulator(api_key=API_KEY, api_secret=API_SECRET, core=core)
    e.set_price(SOL, 150.0)
    e.load_history(SOL, series(), series(mark=True), FUNDING)
    await e.start()
    try:
        yield e
    finally:
        await e.stop()


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[Any]:
    c = ccxt_async.binanceusdm({"enableRateLimit": False, "options": {"fetchCurrencies": False}})
    point_at(c, emu.url)
    try:
        yield c
    finally:
        await c.close()


async def get(emu: Emulator, path: str, **params: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.get(emu.url + path, params=params) as r:
        return r.status, await r.json()


async def test_the_emulator_refuses_what_binance_refuses(emu: Emulator) -> None:
    k = "/fapi/v1/klines"
    cases = [
        ({"interval": "1m"}, -1102),
        ({"symbol": "NOPEUSDT", "interval": "1m"}, -1121),
        ({"symbol": "SOLUSDT", "interval": "7m"}, -1120),
        ({"symbol": "SOLUSDT", "interval": "1m", "limit": 1501}, -1130),
        ({"symbol": "SOLUSDT", "interval": "1m", "limit": 0}, -1130),
        ({"symbol": "SOLUSDT", "interval": "1m", "startTime": "abc"}, -1100),
        ({"symbol": "SOLUSDT", "interval": "1m", "startTime": T0 + 1, "endTime": T0}, -1023),
        ({"symbol": "SOLUSDT"}, -1102),
    ]
    for params, code in cases:
        status, body = await get(emu, k, **params)
        assert status == 400 and body["code"] == code, (params, body)
    status, body = await get(emu, "/fapi/v1/fundingRate", symbol="SOLUSDT", limit=1001)
    assert body["code"] == -1130
    # defaults: 500 klines, the latest ones; with startTime the first from it
    status, body = await get(emu, k, symbol="SOLUSDT", interval="1m")
    assert status == 200 and len(body) == 500 and body[-1][0] == T0 + (N - 1) * TF
    status, body = await get(emu, k, symbol="SOLUSDT", interval="1m", startTime=T0 + 1, limit=3)
    assert [row[0] for row in body] == [T0 + TF, T0 + 2 * TF, T0 + 3 * TF]
    assert body[0][6] == T0 + 2 * TF - 1  # close time
    # a coarser interval is aggregated: 5 one-minute candles make one 5m candle
    status, body = await get(emu, k, symbol="SOLUSDT", interval="5m", startTime=T0, limit=1)
    minutes = series()
    assert float(body[0][2]) == max(minutes.high[:5]) and float(body[0][4]) == minutes.close[4]
    status, body = await get(emu, "/fapi/v1/fundingRate", symbol="SOLUSDT")
    assert [row["fundingTime"] for row in body] == [t for t, _ in FUNDING]


async def test_download_writes_files_replay_reads_and_resumes(
    emu: Emulator, client: Any, tmp_path: Path
) -> None:
    end = T0 + 2_000 * TF
    first = await download(client, [SOL], "1m", T0, end, tmp_path, flush_rows=1_000)
    by_kind = {w.kind: w for w in first.files}
    assert by_kind["candles"].after == 2_000 and by_kind["mark"].after == 2_000
    assert by_kind["funding"].after == 5  # events at 0, 8, 16, 24 and 32 h: 2,000 min = 33.3 h
    candles = load_candles(file_path(tmp_path, SOL, "candles", "1m", "feather"))
    want = series()
    assert list(candles.ts) == list(want.ts[:2_000])
    assert list(candles.close) == list(want.close[:2_000])
    assert list(candles.volume) == list(want.volume[:2_000])
    marks = load_candles(file_path(tmp_path, SOL, "mark", "1m", "feather"))
    assert list(marks.open) == list(series(mark=True).open[:2_000])
    funding = load_funding(file_path(tmp_path, SOL, "funding", "1m", "feather"))
    assert list(zip(funding.ts, funding.rate, strict=True)) == FUNDING[:5]
    assert first.markets_path is not None and first.markets_path.name == "markets-binanceusdm.json"

    # resume: only what comes after the last row is asked for and added
    emu.requests.clear()
    again = await download(client, [SOL], "1m", T0, T0 + N * TF, tmp_path)
    by_kind = {w.kind: w for w in again.files}
    assert (by_kind["candles"].before, by_kind["candles"].after) == (2_000, N)
    starts = [int(r.params["startTime"]) for r in emu.requests if r.path == "/fapi/v1/klines"]
    assert starts[0] == T0 + 2_000 * TF
    whole = load_candles(file_path(tmp_path, SOL, "candles", "1m", "feather"))
    assert list(whole.ts) == list(want.ts) and list(whole.high) == list(want.high)

    # and replay reads what download wrote: marks, funding and markets found beside the file
    s = load_settings(
        None,
        {"feed": {"path": str(file_path(tmp_path, SOL, "candles", "1m", "feather"))}},
        env_file=None,
        secrets_dir=None,
    )
    report = run_replay(s, heartbeat=False)
    assert report.symbol == SOL and report.candles == N
    notes = "\n".join(report.notes)
    assert "mark prices:" in notes and "funding:" in notes
    assert "markets snapshot" in notes and "markets-binanceusdm.json" in notes


async def test_download_csv_appends_and_refuses_unknown_symbols(
    emu: Emulator, client: Any, tmp_path: Path
) -> None:
    await download(client, [SOL], "1m", T0, T0 + 1_500 * TF, tmp_path, fmt="csv",
                   kinds=("candles",))  # fmt: skip
    path = file_path(tmp_path, SOL, "candles", "1m", "csv")
    head = path.read_text().splitlines()[:2]
    assert head[0] == "timestamp_ms,open,high,low,close,volume"
    assert head[1].startswith(f"{T0},")
    await download(client, [SOL], "1m", T0, T0 + N * TF, tmp_path, fmt="csv", kinds=("candles",))
    c = load_candles(path)
    assert len(c) == N and list(c.close) == list(series().close)
    with pytest.raises(DownloadError, match="no market DOGE/USDT:USDT"):
        await download(client, ["DOGE/USDT:USDT"], "1m", T0, T0 + TF, tmp_path)
    with pytest.raises(DownloadError, match="no '7m' candles"):
        await download(client, [SOL], "7m", T0, T0 + TF, tmp_path)
