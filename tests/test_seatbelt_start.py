"""Seatbelt mode and the positions found at start: reported with what the guards would do, left
as they are (a missing stop attached) until ``guardbot seatbelt apply`` or
``seatbelt.act_on_existing``; what is opened or added after the start is guarded at once.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.exchange.paper import paper_exchange
from bot.ops.logging import configure_logging
from bot.settings import Settings, load_settings
from bot.state.store import Store
from bot.trading.engine import Engine
from bot.trading.executor import Executor
from bot.trading.seatbelt import SEATBELT_KEY
from guards.engine import GuardEngine
from paper.exchange import PaperExchange

BTC = "BTC/USDT:USDT"
NOON = 1_767_268_800.0  # 2026-01-01 12:00 UTC


class Clock:
    def __init__(self) -> None:
        self.t = NOON

    def __call__(self) -> float:
        return self.t


def settings(tmp: Path) -> Settings:
    return load_settings(
        None,
        {
            "state": {"dir": str(tmp / "state")},
            "mode": "paper",
            "strategy": {"path": "none"},
            "guards": {"no_overnight": {"enabled": False}},
        },
        env_file=None,
        secrets_dir=None,
    )


async def start_with_a_manual_position(
    s: Settings, store: Store, clock: Clock, act_on_existing: bool = False
) -> tuple[Engine, PaperExchange]:
    """1 BTC at 10x opened by hand (60,000 notional on a 10,000 account), no stop; then the
    bot starts and sees its first mark."""
    exchange = paper_exchange(s, store)
    exchange.core.on_price(BTC, 60_000.0, int(clock.t * 1000))
    exchange.core.set_leverage(10, BTC)
    await exchange.create_order(BTC, "market", "buy", 1.0)
    executor = Executor(exchange, store=store, run_id="t", max_leverage=5.0, fill_timeout_s=1.0)
    engine = Engine(
        exchange=exchange,
        executor=executor,
        store=store,
        guard=GuardEngine(s.guards),
        markets={BTC: exchange.core.market_rules(BTC)},
        strategy=None,
        symbols=(BTC,),
        timeframe_ms=60_000,
        run_id="t",
        state_dir=s.state.dir,
        clock=clock,
        on_price_hook=lambda sym, p, ts: exchange.on_price(sym, p, ts),
    )
    engine.seatbelt.act_on_existing = act_on_existing
    await engine.start()
    await tick(engine, clock)
    return engine, exchange


async def tick(engine: Engine, clock: Clock) -> None:
    """A fresh mark, then a sweep."""
    clock.t += 20
    await engine.on_price(BTC, 60_000.0, clock.t)
    await engine.job_sweep()


def seatbelt_cuts(store: Store) -> list[Any]:
    return [a for a in store.recent_actions(50) if a.action.rule == "seatbelt"]


async def test_a_position_found_at_start_is_reported_not_cut_until_confirmed(
    tmp_path: Path,
) -> None:
    buf = io.StringIO()
    configure_logging(level="info", fmt="json", stream=buf)
    s = settings(tmp_path)
    clock = Clock()
    with Store.open(s.state.dir) as store:
        engine, exchange = await start_with_a_manual_position(s, store, clock)
        for _ in range(3):  # several sweeps: still untouched
            await tick(engine, clock)
        pos = exchange.core.position(BTC)
        assert pos is not None and pos.amount == pytest.approx(1.0)  # not cut
        assert pos.stop_price is not None  # the missing stop is attached all the same
        assert seatbelt_cuts(store) == []
        # reported: an event and the status snapshot say what the guards would do
        would = engine.snapshot()["seatbelt_existing"][BTC]
        assert would.startswith("would cut ") and "of 1" in would
        events = [json.loads(line) for line in buf.getvalue().splitlines()]
        found = [e for e in events if e.get("event") == "existing_position"]
        assert len(found) == 1 and found[0]["symbol"] == BTC and found[0]["would"] == would

        # guardbot seatbelt apply (the CLI writes the request into the state store)
        result = CliRunner().invoke(app, ["seatbelt", "apply", "--state-dir", str(s.state.dir)])
        assert result.exit_code == 0, result.output
        await tick(engine, clock)  # picks up the confirmation and judges the position
        pos = exchange.core.position(BTC)
        assert pos is not None and pos.amount < 0.1  # cut to the risk cap now
        assert [a.action.kind for a in seatbelt_cuts(store)] == ["reduce"]
        assert engine.snapshot()["seatbelt_existing"] == {}
        request = store.kv_get(SEATBELT_KEY)
        assert request["applied"] is not None and request["symbols"] == [BTC]
        # applied once: a later sweep does not confirm anything again
        assert engine.seatbelt.existing == {}


async def test_a_position_opened_after_the_start_is_guarded_at_once(tmp_path: Path) -> None:
    s = settings(tmp_path)
    clock = Clock()
    with Store.open(s.state.dir) as store:
        engine, exchange = await start_with_a_manual_position(s, store, clock)
        top_up = 0.5  # a top-up of the existing position after the start
        await exchange.create_order(BTC, "market", "buy", top_up)
        await tick(engine, clock)
        pos = exchange.core.position(BTC)
        assert pos is not None
        # the growth after the start is judged (and cut back); the 1 BTC found at start is kept
        assert pos.amount == pytest.approx(1.0)
        cuts = seatbelt_cuts(store)
        assert len(cuts) == 1 and cuts[0].action.amount == pytest.approx(top_up)
        assert BTC in engine.seatbelt.existing  # the part found at start still waits


async def test_act_on_existing_cuts_at_once(tmp_path: Path) -> None:
    s = settings(tmp_path)
    clock = Clock()
    with Store.open(s.state.dir) as store:
        _, exchange = await start_with_a_manual_position(s, store, clock, act_on_existing=True)
        pos = exchange.core.position(BTC)
        assert pos is not None and pos.amount < 0.1
        assert seatbelt_cuts(store)


def test_act_on_existing_is_a_setting(tmp_path: Path) -> None:
    on = load_settings(None, {"seatbelt": {"act_on_existing": True}}, env={}, env_file=None)
    assert on.seatbelt.act_on_existing is True
    assert settings(tmp_path).seatbelt.act_on_existing is False
