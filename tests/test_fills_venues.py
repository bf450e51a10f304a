"""The fills of a Bybit account through the real ccxt client against the Bybit v5 emulator,
including the exchange's own closes: ccxt's ``fetch_my_trades`` asks ``/v5/execution/list`` for
``execType=Trade`` only, so a liquidation (``BustTrade``) and an auto-deleverage (``AdlTrade``)
are asked for on their own (``Venue.fill_queries``) and recorded with their roles.

Checked against the emulator's own book of executions (trade ids, prices, realised PnL).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_emulator_venues import BTC, ETH, bybit, live_for, okx

from bot.emulator.bybit import BybitEmulator
from bot.emulator.okx import OkxEmulator
from bot.state.store import Store
from bot.state.trips import RoundTrip, round_trips
from bot.trading.recorder import Recorder

__all__ = ["bybit", "okx"]


async def test_bybit_liquidation_and_adl_fills_are_recorded_with_their_roles(
    tmp_path: Path, bybit: BybitEmulator
) -> None:
    emu = bybit
    live = live_for(emu.url, "bybit", BTC)
    closes: list[RoundTrip] = []
    try:
        await live.load_markets()
        with Store.open(tmp_path / "state") as store:
            recorder = Recorder(live, store, symbols=[BTC], on_close=closes.append)
            emu.core.set_margin_mode("isolated", BTC)  # a liquidation price above zero
            emu.core.set_leverage(20, BTC)
            emu.open_external_position(BTC, "buy", 0.05)
            emu.clock_skew_ms += 1_000  # each event a second after the one before
            emu.emit_adl(BTC, 61_000.0)  # the exchange closes it against a loser
            assert emu.core.position(BTC) is None
            emu.set_price(BTC, 60_000.0)
            emu.clock_skew_ms += 1_000
            emu.open_external_position(BTC, "buy", 0.05)
            emu.clock_skew_ms += 1_000
            liq = emu.core.liquidation_price(BTC)
            assert liq is not None
            emu.set_price(BTC, round(liq * 0.99, 1), gap=True)  # no stop: liquidated
            assert emu.core.position(BTC) is None and emu.core.liquidations
            assert await recorder.sync() == 4
            assert await recorder.sync() == 0  # nothing twice
            rows = store.fills_of()
    finally:
        await live.close()
    assert [r.role for r in rows] == ["manual", "adl", "manual", "liquidation"]
    truth = {f.id: f for f in emu.core.fills}
    core_id = {str(r.trade_id): int(str(r.trade_id).rsplit("-", 1)[-1]) for r in rows}  # execId
    assert sorted(core_id.values()) == sorted(truth)
    for row in rows:
        fill = truth[core_id[str(row.trade_id)]]
        assert row.price == pytest.approx(fill.price) and row.amount == pytest.approx(fill.amount)
        assert row.fee == pytest.approx(fill.fee, abs=1e-8)
        assert row.realized_pnl is None  # Bybit's executions report none: priced from the fills
    assert [t.reason for t in closes] == ["adl", "liquidation"]
    # each close's PnL (from the fills' prices) is the exchange's own realised PnL
    exchange_pnl = [f.realized_pnl for f in emu.core.fills if f.reason in ("adl", "liquidation")]
    assert [t.pnl for t in closes] == pytest.approx(exchange_pnl, abs=1e-6)
    assert exchange_pnl[0] > 0 > exchange_pnl[1]
    assert [t.reason for t in round_trips(rows)] == ["adl", "liquidation"]


async def test_okx_fills_beyond_one_page_are_all_recorded(tmp_path: Path, okx: OkxEmulator) -> None:
    """OKX answers ``fills-history`` newest first, at most 100 a page (ccxt sends no ``limit``
    with ``since``): 130 fills since the last reconciliation are paged back with ``until``."""
    emu = okx
    for i in range(130):  # a fill every 10 ms of exchange time, 0.1 ETH (one contract) each
        emu.clock_skew_ms += 10
        emu.open_external_position(ETH, "buy" if i % 2 == 0 else "sell", 0.1)
    live = live_for(emu.url, "okx", ETH)
    try:
        await live.load_markets()
        with Store.open(tmp_path / "state") as store:
            recorder = Recorder(live, store, symbols=[ETH])
            assert await recorder.sync() == 130
            assert await recorder.sync() == 0
            rows = store.fills_of()
    finally:
        await live.close()
    assert sorted(int(r.trade_id) for r in rows) == sorted(f.id for f in emu.core.fills)
    assert [r.amount for r in rows] == [pytest.approx(0.1)] * 130  # contracts back in base units
    assert [r.side for r in rows] == ["buy", "sell"] * 65  # recorded in order of time
