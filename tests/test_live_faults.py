"""End to end through the real ccxt client: guards → Executor → LiveExchange → local exchange,
with each injected fault. Every test ends with the server-side invariants: no client id used by
two orders, no position without a stop, no position beyond the caps, no secret in any log line.
"""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest_live import (  # noqa: F401
    BTC,
    FAST_RETRY,
    emulator,
    event_names,
    events,
    logs,
    make_live,
    secret_leaks,
    violations,
)

from bot.emulator import Emulator, Fault
from bot.exchange.live import LiveExchange
from bot.exchange.shapes import order_role
from bot.trading.executor import Executor
from guards.config import GuardsConfig
from guards.engine import GuardEngine
from guards.types import ApprovedOrder, GuardContext, Mark, OrderIntent

LONG = OrderIntent(BTC, "long", 0.04, leverage=3.0, stop_price=58_800.0, take_profit=63_000.0)
NO_SESSION = GuardsConfig(no_overnight={"enabled": False})


@dataclass
class Rig:
    emu: Emulator
    live: LiveExchange
    executor: Executor
    engine: GuardEngine
    logs: io.StringIO

    async def approve(self, intent: OrderIntent, now: float | None = None) -> ApprovedOrder:
        at = time.time() if now is None else now
        account, _ = await self.executor.account()
        mark = self.emu.core.mark_price(intent.symbol) or 0.0
        ctx = GuardContext(account, self.live.market_rules(), {intent.symbol: Mark(mark, at)}, at)
        decision = self.engine.check(intent, ctx)
        assert decision.allowed, decision.reason
        return self.engine.approve(decision)

    def entries(self) -> list[dict[str, Any]]:
        return [o for o in self.emu.orders() if order_role(o) == "entry"]

    def check(self, **kw: Any) -> None:
        assert violations(self.emu, **kw) == []
        assert secret_leaks(self.logs) == []


async def rig_for(emu: Emulator, buf: io.StringIO, **live_kw: Any) -> Rig:
    live = make_live(emu, **live_kw)
    await live.load_markets()
    executor = Executor(live, run_id="e2e", retry=FAST_RETRY, max_leverage=5.0, poll_s=0.05)
    return Rig(emu, live, executor, GuardEngine(NO_SESSION), buf)


@pytest.fixture
async def rig(emulator: Emulator, logs: io.StringIO) -> AsyncIterator[Rig]:  # noqa: F811
    r = await rig_for(emulator, logs)
    try:
        yield r
    finally:
        await r.live.close()


async def test_entry_goes_out_with_its_stop_on_the_mark_price(rig: Rig) -> None:
    result = await rig.executor.submit(await rig.approve(LONG))
    assert result.status == "filled" and result.filled == pytest.approx(0.04)
    algo = [r for r in rig.emu.requests if r.method == "POST" and r.path == "/fapi/v1/algoOrder"]
    assert [(r.params["type"], r.params["triggerPrice"]) for r in algo] == [
        ("STOP_MARKET", "58800"),
        ("TAKE_PROFIT_MARKET", "63000"),
    ]
    for r in algo:
        assert r.params["workingType"] == "MARK_PRICE"
        assert r.params["closePosition"] == "true" and "reduceOnly" not in r.params
        assert r.params["clientAlgoId"].startswith(("gbs", "gbt"))
    lev = [r for r in rig.emu.requests if r.path == "/fapi/v1/leverage"]
    assert [r.params["leverage"] for r in lev] == ["3"]
    pos = rig.emu.core.position(BTC)
    assert pos is not None and pos.leverage == 3.0 and pos.stop_price == 58_800.0
    rig.check()


def stops(emu: Emulator) -> list[dict[str, Any]]:
    return [o for o in emu.core.open_orders(BTC) if order_role(o) == "stop"]


async def test_moving_the_stop_keeps_exactly_one_through_ccxt(rig: Rig) -> None:
    # Binance keeps one closePosition stop per direction (-4130): the move places a
    # reduce-only stop for the position's size first, then cancels the old one
    await rig.executor.submit(await rig.approve(LONG))
    assert (await rig.executor.place_stop(BTC, 59_100.0)).status == "stop_placed"
    [moved] = stops(rig.emu)
    assert moved["triggerPrice"] == 59_100.0 and moved["amount"] == pytest.approx(0.04)
    assert moved["info"]["closePosition"] is False and moved["reduceOnly"] is True
    assert (await rig.executor.place_stop(BTC, 59_200.0)).status == "stop_placed"
    [again] = stops(rig.emu)
    assert again["triggerPrice"] == 59_200.0 and again["info"]["closePosition"] is True
    rig.check()


async def test_adding_to_a_winner_replaces_the_stop_for_the_whole_position(rig: Rig) -> None:
    t0 = time.time()
    await rig.executor.submit(await rig.approve(LONG, now=t0))
    rig.emu.set_price(BTC, 61_000.0)  # in profit: one add is allowed (anti_top_up)
    add = OrderIntent(BTC, "long", 0.02, leverage=3.0, stop_price=59_900.0)
    result = await rig.executor.submit(await rig.approve(add, now=t0 + 120))
    assert result.status == "filled" and result.filled > 0.0  # (the guards may shrink it)
    total = 0.04 + result.filled
    [stop] = stops(rig.emu)
    assert stop["triggerPrice"] == 59_900.0
    assert stop["amount"] == pytest.approx(total)  # reduce-only, sized for the whole position
    pos = rig.emu.core.position(BTC)
    assert pos is not None and pos.amount == pytest.approx(total) and pos.stop_price == 59_900.0
    rig.check()


async def test_a_timeout_after_the_order_was_accepted_does_not_double_it(
    emulator: Emulator,  # noqa: F811
    logs: io.StringIO,  # noqa: F811
) -> None:
    r = await rig_for(emulator, logs, timeout_ms=1_000)
    try:
        emulator.inject(Fault("timeout", delay_s=30.0))  # the entry is filled, the answer lost
        result = await r.executor.submit(await r.approve(LONG))
        assert result.status == "filled"
        assert len(r.entries()) == 1
        assert emulator.request_count("POST", "/fapi/v1/order") == 1  # looked up, not re-sent
        assert "order_recovered" in event_names(logs)
        r.check()
    finally:
        await r.live.close()


async def test_a_dropped_connection_after_accepting_does_not_double_it(rig: Rig) -> None:
    rig.emu.inject(Fault("disconnect"))
    result = await rig.executor.submit(await rig.approve(LONG))
    assert result.status == "filled" and len(rig.entries()) == 1
    assert rig.emu.core.position(BTC).amount == pytest.approx(0.04)  # type: ignore[union-attr]
    rig.check()


async def test_an_unknown_outcome_5xx_is_resolved_by_looking_up(rig: Rig) -> None:
    rig.emu.inject(Fault("server_error", after_accept=True, code=-1000, msg="Unknown error"))
    result = await rig.executor.submit(await rig.approve(LONG))
    assert result.status == "filled" and len(rig.entries()) == 1
    rig.check()


async def test_a_5xx_that_was_not_processed_is_sent_again(rig: Rig) -> None:
    rig.emu.inject(Fault("server_error"))
    result = await rig.executor.submit(await rig.approve(LONG))
    assert result.status == "filled" and len(rig.entries()) == 1
    assert rig.emu.request_count("POST", "/fapi/v1/order") == 2
    rig.check()


async def test_a_rate_limited_order_waits_for_retry_after(
    emulator: Emulator,  # noqa: F811
    logs: io.StringIO,  # noqa: F811
) -> None:
    r = await rig_for(emulator, logs)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    r.executor = Executor(r.live, run_id="e2e", retry=FAST_RETRY, max_leverage=5.0, sleep=sleep)
    try:
        emulator.inject(Fault("rate_limit", retry_after_s=2))
        result = await r.executor.submit(await r.approve(LONG))
        assert result.status == "filled" and len(r.entries()) == 1
        assert 2.0 in waits  # Binance's Retry-After honoured before the re-send
        assert emulator.request_count("POST", "/fapi/v1/order") == 2
        r.check()
    finally:
        await r.live.close()


async def test_a_rejected_stop_closes_the_position_at_once(rig: Rig) -> None:
    rig.emu.inject(
        Fault(
            "reject",
            path="/fapi/v1/algoOrder",
            when={"type": "STOP_MARKET"},
            times=10,
            code=-2021,
            msg="Order would immediately trigger.",
        )
    )
    result = await rig.executor.submit(await rig.approve(LONG))
    assert result.status == "closed_unprotected"
    assert rig.emu.core.position(BTC) is None
    assert rig.emu.core.open_orders(BTC) == []
    found = [e for e in events(rig.logs) if e["event"] == "naked_position_closed"]
    assert found and found[0]["level"] == "critical"
    rig.check()


async def test_a_partial_fill_is_protected(rig: Rig) -> None:
    rig.emu.inject(Fault("partial_fill", fill_ratio=0.5))
    result = await rig.executor.submit(await rig.approve(LONG))
    assert result.status == "partial" and result.filled == pytest.approx(0.02)
    pos = rig.emu.core.position(BTC)
    assert pos is not None and pos.amount == pytest.approx(0.02) and pos.stop_price == 58_800.0
    rig.check()


async def test_an_order_shown_open_then_filled_is_awaited_then_protected(rig: Rig) -> None:
    rig.emu.inject(Fault("open_then_filled", polls=3))
    result = await rig.executor.submit(await rig.approve(LONG))
    assert result.status == "filled" and result.filled == pytest.approx(0.04)
    assert rig.emu.request_count("GET", "/fapi/v1/order") >= 3
    pos = rig.emu.core.position(BTC)
    assert pos is not None and pos.stop_price == 58_800.0
    rig.check()


async def test_a_position_from_outside_is_adopted_and_given_a_stop(rig: Rig) -> None:
    # opened in the web UI at 1x: filled at 60000 + 2 bps = 60012; default stop 2 % below,
    # 58811.76, rounded away from entry to the 0.1 tick: 58811.7
    rig.emu.open_external_position(BTC, "buy", 0.1)
    report = await rig.executor.reconcile(rig.live.market_rules(), rig.engine)
    assert report.adopted == [BTC] and report.unprotected == [BTC]
    assert report.stops_placed == {BTC: pytest.approx(58_811.7)}
    pos = rig.emu.core.position(BTC)
    assert pos is not None and pos.stop_price == pytest.approx(58_811.7)
    assert "position_adopted" in event_names(rig.logs)
    rig.check(exempt=frozenset({BTC}))


async def test_restart_finds_its_protected_position_and_adds_nothing(
    emulator: Emulator,  # noqa: F811
    logs: io.StringIO,  # noqa: F811
) -> None:
    first = await rig_for(emulator, logs)
    try:
        await first.executor.submit(await first.approve(LONG))
    finally:
        await first.live.close()
    before = len(emulator.orders())
    second = await rig_for(emulator, logs)  # a new process: knows nothing but the exchange
    try:
        report = await second.executor.reconcile(second.live.market_rules(), second.engine)
        assert report.adopted == [BTC] and report.unprotected == []
        assert report.stops_placed == {} and report.closed == []
        assert len(emulator.orders()) == before
        second.check()
    finally:
        await second.live.close()


async def test_the_guard_sweep_closes_near_liquidation_through_ccxt(rig: Rig) -> None:
    # an outside 50x long: liquidation at 59047.95 (see test_execution); at a mark of 59800
    # it is 1.26 % away, inside close_at_pct 1.5 %: the sweep closes it
    rig.emu.core.set_leverage(50, BTC)
    rig.emu.open_external_position(BTC, "buy", 0.1)
    rig.emu.set_price(BTC, 59_800.0)
    report = await rig.executor.reconcile(rig.live.market_rules(), rig.engine)
    assert report.closed == [BTC]
    assert any(a.rule == "liquidation" and a.kind == "close" for a in report.actions)
    assert rig.emu.core.position(BTC) is None
    rig.check()


async def test_no_overnight_flattens_positions_and_entries_through_ccxt(rig: Rig) -> None:
    rig.engine = GuardEngine(GuardsConfig())  # default session: flat by 22:00 UTC
    morning = datetime(2024, 3, 5, 10, 0, tzinfo=UTC).timestamp()
    await rig.executor.submit(await rig.approve(LONG, now=morning))
    await rig.live.create_order(BTC, "limit", "buy", 0.01, 55_000.0, {"clientOrderId": "resting"})
    night = datetime(2024, 3, 5, 22, 0, 30, tzinfo=UTC).timestamp()
    report = await rig.executor.reconcile(rig.live.market_rules(), rig.engine, now=night)
    kinds = {(a.kind, a.rule) for a in report.actions}
    assert ("close", "no_overnight") in kinds
    assert rig.emu.core.position(BTC) is None
    assert rig.emu.core.open_orders(BTC) == []
    rig.check()
