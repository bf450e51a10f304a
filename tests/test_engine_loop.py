"""The running engine on the paper exchange: price → strategy → guards → executor, sweeps,
restarts with state restored, the kill switch through the store, reload, seatbelt mode and
shutdown. Prices are fed by the test (a live-like feed double); nothing is mocked below it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from strategies_for_tests import EnterOnce

from bot.exchange.paper import paper_exchange, save_paper
from bot.runner import request_halt
from bot.settings import Settings, load_settings
from bot.state.store import Store
from bot.strategies.base import BaseStrategy
from bot.trading.engine import Engine
from bot.trading.executor import Executor
from guards.engine import GuardEngine
from guards.state import GuardState
from guards.types import OrderIntent
from paper.exchange import PaperExchange

BTC = "BTC/USDT:USDT"
NOON = 1_743_508_800.0  # 2025-04-01 12:00 UTC, inside the default trading session


class Clock:
    def __init__(self, t: float = NOON) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def settings(tmp: Path, **over: Any) -> Settings:
    base: dict[str, Any] = {"state": {"dir": str(tmp / "state")}, "mode": "paper"}
    base.update(over)
    return load_settings(None, base, env_file=None, secrets_dir=None)


async def build(
    s: Settings, store: Store, strategy: BaseStrategy | None, clock: Clock
) -> tuple[Engine, PaperExchange]:
    exchange = paper_exchange(s, store)
    data = store.load_guard_state()
    guard = GuardEngine(s.guards, GuardState.from_dict(data) if data else None)
    executor = Executor(exchange, store=store, run_id="t", max_leverage=5.0, fill_timeout_s=1.0)
    await executor.prepare([BTC], "isolated", 3.0)

    def tick(symbol: str, price: float, ts: float) -> None:
        exchange.on_price(symbol, price, ts)

    engine = Engine(
        exchange=exchange,
        executor=executor,
        store=store,
        guard=guard,
        markets={BTC: exchange.core.market_rules(BTC)},
        strategy=strategy,
        symbols=(BTC,),
        timeframe_ms=60_000,
        run_id="t",
        state_dir=s.state.dir,
        clock=clock,
        on_price_hook=tick,
    )
    await engine.start()
    return engine, exchange


async def feed(engine: Engine, clock: Clock, prices: Sequence[float], step_s: float = 20.0) -> None:
    for p in prices:
        clock.t += step_s
        await engine.on_price(BTC, p, clock.t)


def stops_on_exchange(exchange: PaperExchange) -> list[dict[str, Any]]:
    return [
        o for o in exchange.core.open_orders(BTC) if o.get("reduceOnly") and o.get("triggerPrice")
    ]


async def test_entry_goes_through_the_guards_with_a_stop_and_is_recorded(tmp_path: Path) -> None:
    s = settings(tmp_path)
    clock = Clock()
    with Store.open(s.state.dir) as store:
        engine, exchange = await build(s, store, EnterOnce(), clock)
        await feed(engine, clock, [60_000.0] * 3)  # first bar closes on the 4th price
        await feed(engine, clock, [60_010.0, 60_020.0])
        pos = exchange.core.position(BTC)
        assert pos is not None and pos.side == "long"
        assert len(stops_on_exchange(exchange)) == 1
        decisions = store.recent_decisions(10)
        assert decisions and decisions[0].decision.allowed
        order = store.orders()
        assert order and all(o.client_id for o in order)
        # every guard verdict of the decision is in the store, with its figures
        rules = {v.rule for v in decisions[0].decision.verdicts}
        assert {"stop_loss", "position_cap", "liquidation"} <= rules


async def test_refused_entry_is_evidence_and_sends_nothing(tmp_path: Path) -> None:
    s = settings(tmp_path)
    clock = Clock()
    with Store.open(s.state.dir) as store:
        engine, exchange = await build(s, store, None, clock)
        await feed(engine, clock, [60_000.0])
        decision = await engine.handle(OrderIntent(BTC, "long", 0.01, leverage=3))  # no stop
        assert decision is not None and decision.code == "stop_missing"
        assert exchange.core.position(BTC) is None
        assert store.orders() == []
        assert store.recent_decisions(1)[0].decision.code == "stop_missing"


async def test_restart_restores_counters_halts_and_positions(tmp_path: Path) -> None:
    s = settings(tmp_path)
    clock = Clock()
    with Store.open(s.state.dir) as store:
        engine, exchange = await build(s, store, EnterOnce(), clock)
        await feed(engine, clock, [60_000.0] * 5)
        assert exchange.core.position(BTC) is not None
        entries = list(engine.guard.state.entries)
        engine.guard.halt("operator says stop", None, ts=clock.t)
        await engine.shutdown(flatten=False)
        save_paper(store, exchange)
    with Store.open(s.state.dir) as store:
        engine2, exchange2 = await build(s, store, EnterOnce(), clock)
        await engine2.start()
        assert engine2.guard.state.entries == entries
        halt = engine2.guard.state.halt
        assert halt is not None and halt.kind == "manual"
        pos = exchange2.core.position(BTC)
        assert pos is not None and pos.stop_price is not None  # the stop survived the restart
        refused = await engine2.handle(
            OrderIntent(BTC, "long", 0.01, leverage=3, stop_price=59_000.0)
        )
        assert refused is not None and refused.code == "halted"


async def test_kill_switch_through_the_store_closes_and_blocks(tmp_path: Path) -> None:
    s = settings(tmp_path)
    clock = Clock()
    with Store.open(s.state.dir) as store:
        engine, exchange = await build(s, store, EnterOnce(), clock)
        await feed(engine, clock, [60_000.0] * 5)
        assert exchange.core.position(BTC) is not None
        request_halt(s.state.dir, True, "going to bed")
        await engine.sweep("job")
        assert exchange.core.position(BTC) is None
        blocked = await engine.handle(OrderIntent(BTC, "long", 0.01, leverage=3, stop_price=59_000))
        assert blocked is not None and blocked.code == "halted"
        request_halt(s.state.dir, False, "morning")
        await engine.sweep("job")
        # an hour later (past the entry spacing and the cooldown of the halt's close)
        await feed(engine, clock, [60_000.0], step_s=3_600)
        allowed = await engine.handle(OrderIntent(BTC, "long", 0.01, leverage=3, stop_price=59_000))
        assert allowed is not None and allowed.allowed


async def test_reload_switches_parameters_and_reports_the_diff(tmp_path: Path) -> None:
    s = settings(tmp_path)
    clock = Clock()
    with Store.open(s.state.dir) as store:
        engine, _ = await build(s, store, None, clock)
        await feed(engine, clock, [60_000.0])
        big = OrderIntent(BTC, "long", 0.5, leverage=3, stop_price=59_900.0)
        first = await engine.handle(big)
        assert first is not None and first.outcome == "resize"
        new = settings(tmp_path, guards={"stop_loss": {"on_breach": "reject"}})
        changes = await engine.reload(new.guards)
        assert changes == {"stop_loss.on_breach": ["resize", "reject"]}
        second = await engine.handle(big)
        assert second is not None and second.outcome == "reject"


async def test_seatbelt_attaches_a_stop_and_cuts_a_manual_position_to_the_caps(
    tmp_path: Path,
) -> None:
    s = settings(tmp_path, strategy={"path": "none"})
    clock = Clock()
    with Store.open(s.state.dir) as store:
        engine, exchange = await build(s, store, None, clock)
        await feed(engine, clock, [60_000.0])
        # "by hand": 1 BTC (60,000 notional) at 10x on a 10,000 account, no stop
        exchange.core.set_leverage(10, BTC)
        await exchange.create_order(BTC, "market", "buy", 1.0)
        await engine.job_sweep()
        pos = exchange.core.position(BTC)
        assert pos is not None
        # risk at the default 2 % stop must fit 1 % of ~10,000: at most ~0.08 BTC remains
        assert pos.amount < 0.1
        assert pos.stop_price is not None
        cut = [a for a in store.recent_actions(20) if a.action.rule == "seatbelt"]
        assert cut and cut[0].action.kind == "reduce"


async def test_seatbelt_judges_a_manual_position_with_the_stop_the_sweep_places(
    tmp_path: Path,
) -> None:
    """A 40x position by hand, without a stop: its liquidation price is close, so the stop the
    sweep attaches is not the raw 2 % default but one pushed clear of liquidation, and the
    seatbelt sizes the position against that very stop.

    The hand entry fills at 60,000 × (1 + 2 bps slippage) = 60,012. At 40x isolated the margin
    is q × 60,012 / 40 and Binance's first bracket (mmr 0.4 %, cum 0) gives, for any size q,
    liq = (M − q·E) / (q·mmr − q) = 60,012 × (1/40 − 1) / (0.004 − 1) = 58,746.69.
    The stop must trigger 1 % (stop_buffer_pct) before it: 58,746.69 × 1.01 = 59,334.15,
    rounded away from liquidation to the 0.1 tick: 59,334.2 — above the 2 % default
    (60,012 × 0.98 = 58,811.76), so it is the stop placed.
    """
    s = settings(tmp_path, strategy={"path": "none"})
    clock = Clock()
    with Store.open(s.state.dir) as store:
        engine, exchange = await build(s, store, None, clock)
        await feed(engine, clock, [60_000.0])
        exchange.core.set_leverage(40, BTC)
        await exchange.create_order(BTC, "market", "buy", 0.01)
        await engine.job_sweep()
        judged = [
            row.decision
            for row in store.recent_decisions(10)
            if row.decision.intent.tag == "seatbelt:manual"
        ]
        assert judged, "the manual position was judged"
        liq = 60_012.0 * (1 / 40 - 1) / (0.004 - 1)
        expected = math.ceil(liq * 1.01 * 10) / 10
        assert expected == pytest.approx(59_334.2)
        assert judged[0].intent.stop_price == pytest.approx(expected)
        pos = exchange.core.position(BTC)
        assert pos is not None and pos.stop_price == pytest.approx(expected)


async def test_seatbelt_reduces_a_top_up_of_a_loser(tmp_path: Path) -> None:
    s = settings(tmp_path, strategy={"path": "none"})
    clock = Clock()
    with Store.open(s.state.dir) as store:
        engine, exchange = await build(s, store, None, clock)
        await feed(engine, clock, [60_000.0])
        await exchange.create_order(BTC, "market", "buy", 0.01)
        await engine.job_sweep()  # adopted within caps, stop attached
        first = exchange.core.position(BTC)
        assert first is not None and first.stop_price is not None
        await feed(engine, clock, [59_500.0], step_s=120)  # in loss, past the entry spacing
        await exchange.create_order(BTC, "market", "buy", 0.01)  # averaging down by hand
        await engine.job_sweep()
        pos = exchange.core.position(BTC)
        assert pos is not None
        assert pos.amount == pytest.approx(first.amount)
        codes = [a.action.code for a in store.recent_actions(20) if a.action.rule == "seatbelt"]
        assert "top_up_losing" in codes


async def test_shutdown_cancels_entries_and_keeps_stops(tmp_path: Path) -> None:
    s = settings(tmp_path)
    clock = Clock()
    with Store.open(s.state.dir) as store:
        engine, exchange = await build(s, store, EnterOnce(), clock)
        await feed(engine, clock, [60_000.0] * 5)
        await exchange.create_order(BTC, "limit", "buy", 0.01, 50_000.0)  # a resting entry
        await engine.shutdown(flatten=False)
        open_orders = exchange.core.open_orders(BTC)
        assert not [o for o in open_orders if not o.get("reduceOnly")]
        assert len(stops_on_exchange(exchange)) == 1
        assert exchange.core.position(BTC) is not None
        assert engine.entries_stopped


async def test_shutdown_with_flatten_closes_everything(tmp_path: Path) -> None:
    s = settings(tmp_path)
    clock = Clock()
    with Store.open(s.state.dir) as store:
        engine, exchange = await build(s, store, EnterOnce(), clock)
        await feed(engine, clock, [60_000.0] * 5)
        await engine.shutdown(flatten=True)
        assert exchange.core.position(BTC) is None


async def test_flatten_job_goes_flat(tmp_path: Path) -> None:
    s = settings(tmp_path)
    clock = Clock()
    with Store.open(s.state.dir) as store:
        engine, exchange = await build(s, store, EnterOnce(), clock)
        await feed(engine, clock, [60_000.0] * 5)
        assert exchange.core.position(BTC) is not None
        assert await engine.job_flatten(tries=3, wait_s=0)
        assert exchange.core.position(BTC) is None


async def test_a_stop_out_on_the_exchange_starts_the_cooldown(tmp_path: Path) -> None:
    s = settings(tmp_path)
    clock = Clock()
    with Store.open(s.state.dir) as store:
        engine, exchange = await build(s, store, EnterOnce(), clock)
        await feed(engine, clock, [60_000.0] * 5)
        pos = exchange.core.position(BTC)
        assert pos is not None and pos.stop_price is not None
        await feed(engine, clock, [pos.stop_price * 0.995])  # through the stop
        assert exchange.core.position(BTC) is None
        await engine.job_sweep()
        state = engine.guard.state
        assert state.stopouts_today == 1
        assert state.symbol(BTC).cooldown_until > clock.t
        again = await engine.handle(OrderIntent(BTC, "long", 0.01, leverage=3, stop_price=58_000))
        assert again is not None and again.code == "cooldown"


async def test_snapshot_shows_positions_with_liquidation_distance(tmp_path: Path) -> None:
    s = settings(tmp_path)
    clock = Clock()
    with Store.open(s.state.dir) as store:
        engine, exchange = await build(s, store, EnterOnce(), clock)
        await feed(engine, clock, [60_000.0] * 5)
        snap = engine.snapshot()
        (pos,) = snap["positions"]
        core_liq = exchange.core.liquidation_price(BTC)
        assert core_liq is not None
        # the guards' and the paper engine's liquidation prices agree
        assert pos["liquidation"] == pytest.approx(core_liq, rel=1e-9)
        assert pos["liq_distance_pct"] == pytest.approx((60_000.0 - core_liq) / 60_000.0 * 100)
        assert pos["stop"] is not None and pos["stop"] > core_liq
        assert snap["counters"]["entries_last_hour"] == [
            1,
            s.guards.overtrading.max_entries_per_hour,
        ]
        json_safe = __import__("json").dumps(snap)
        assert "BTC/USDT:USDT" in json_safe


async def test_a_reload_that_fails_validation_keeps_the_old_parameters(tmp_path: Path) -> None:
    from bot.runner import _reload
    from bot.settings import ConfigError

    s = settings(tmp_path)
    clock = Clock()
    bad = tmp_path / "bad.toml"
    bad.write_text("[guards.position_cap]\nmax_leverage = 500\n", encoding="utf-8")

    def reread() -> Settings:
        return load_settings(bad, env_file=None, secrets_dir=None)

    with pytest.raises(ConfigError):
        reread()
    with Store.open(s.state.dir) as store:
        engine, _ = await build(s, store, None, clock)
        before = engine.guard.config
        await _reload(engine, reread)
        assert engine.guard.config is before
        good = tmp_path / "good.toml"
        good.write_text("[guards.position_cap]\nmax_leverage = 2\n", encoding="utf-8")
        await _reload(engine, lambda: load_settings(good, env_file=None, secrets_dir=None))
        assert engine.guard.config.position_cap.max_leverage == 2


async def test_seatbelt_does_not_cut_a_position_for_want_of_a_price(tmp_path: Path) -> None:
    """At start no mark has arrived yet: the guards refuse on stale data, which says nothing
    about the position, so it is left alone until a price comes and it can be judged."""
    s = settings(tmp_path, strategy={"path": "none"})
    clock = Clock()
    with Store.open(s.state.dir) as store:
        engine, exchange = await build(s, store, None, clock)
        # by hand, priced on the exchange only (the engine has seen no mark yet)
        exchange.core.on_price(BTC, 60_000.0, int(clock.t * 1000))
        exchange.core.set_leverage(10, BTC)
        await exchange.create_order(BTC, "market", "buy", 1.0)
        await engine.start()  # a restart: adopted positions are judged as if just opened
        pos = exchange.core.position(BTC)
        assert pos is not None and pos.amount == pytest.approx(1.0)
        await feed(engine, clock, [60_000.0])
        await engine.job_sweep()
        cut = exchange.core.position(BTC)
        assert cut is not None and cut.amount < 0.1  # judged now, and cut to the risk cap


async def test_seatbelt_judges_a_top_up_that_lands_while_it_was_judging(tmp_path: Path) -> None:
    """A hand trade landing between the seatbelt's judgement and the account read after it is
    judged at the next sweep (it used to be remembered as judged and never cut)."""
    s = settings(tmp_path, strategy={"path": "none"})
    clock = Clock()
    with Store.open(s.state.dir) as store:
        engine, exchange = await build(s, store, None, clock)
        await feed(engine, clock, [60_000.0])
        await exchange.create_order(BTC, "market", "buy", 0.01)
        await engine.job_sweep()
        first = exchange.core.position(BTC)
        assert first is not None and first.stop_price is not None
        await feed(engine, clock, [59_500.0], step_s=120)  # in loss
        judge = engine.seatbelt.judge

        async def judge_then_top_up(eng: Any, now: float) -> None:
            await judge(eng, now)
            await exchange.create_order(BTC, "market", "buy", 0.01)  # lands right now

        engine.seatbelt.judge = judge_then_top_up  # type: ignore[method-assign]
        await engine.job_sweep()
        engine.seatbelt.judge = judge  # type: ignore[method-assign]
        grown = exchange.core.position(BTC)
        assert grown is not None and grown.amount == pytest.approx(first.amount + 0.01)
        await engine.job_sweep()  # the top-up is judged now: a loser's top-up is cut
        pos = exchange.core.position(BTC)
        assert pos is not None and pos.amount == pytest.approx(first.amount)
        codes = [a.action.code for a in store.recent_actions(20) if a.action.rule == "seatbelt"]
        assert "top_up_losing" in codes
