"""Executor over the paper exchange: protected entries, idempotent re-sends, exits, reconcile.

Faults are injected by ``FaultyPaper``, a wrapper that makes chosen ``create_order`` /
``fetch_order`` calls fail (after or before the paper exchange accepted the order). The same
Executor is exercised through the real ccxt client against the local exchange in
``test_live_faults.py``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from ccxt.base.errors import (
    AuthenticationError,
    ExchangeNotAvailable,
    InsufficientFunds,
    InvalidOrder,
    NetworkError,
    RequestTimeout,
)
from conftest_live import event_names, events, logs  # noqa: F401
from hypothesis import given
from hypothesis import strategies as st

from bot.exchange.retry import RetryPolicy
from bot.exchange.shapes import account_from_ccxt, order_role, wallet_balance
from bot.trading.executor import Executor
from bot.trading.planning import client_order_id
from guards.config import GuardsConfig
from guards.engine import GuardEngine
from guards.types import ApprovedOrder, GuardContext, Mark, OrderIntent
from paper.config import PaperConfig
from paper.exchange import PaperExchange

BTC = "BTC/USDT:USDT"
#: 10:00 UTC on a Tuesday: inside the default trading session (flat by 22:00 UTC).
NOW = datetime(2024, 3, 5, 10, 0, tzinfo=UTC).timestamp()
NOW_MS = int(NOW * 1000)
FAST = RetryPolicy(attempts=4, base_s=0.0, max_delay_s=0.0, budget_s=5.0)
CLIENT_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")


@dataclass
class Rule:
    """Fail matching calls ``times`` times, optionally after letting the call through."""

    when: Callable[[str, dict[str, Any]], bool]
    exc: BaseException
    times: int = 1
    after: bool = False


class FaultyPaper:
    """A ``PaperExchange`` whose ``create_order`` / ``fetch_order`` can be made to fail."""

    def __init__(self, inner: PaperExchange) -> None:
        self.inner = inner
        self.id = inner.id
        self.create_rules: list[Rule] = []
        self.fetch_rules: list[Rule] = []
        self.creates: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: float,
        price: float | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        p = dict(params or {})
        self.creates.append({"symbol": symbol, "type": type, "side": side, **p})
        for rule in self.create_rules:
            if rule.times > 0 and rule.when(side, p):
                rule.times -= 1
                if rule.after:
                    await self.inner.create_order(symbol, type, side, amount, price, p)
                raise rule.exc
        return await self.inner.create_order(symbol, type, side, amount, price, p)

    async def fetch_order(
        self, id: str, symbol: str | None = None, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        for rule in self.fetch_rules:
            if rule.times > 0 and rule.when("", dict(params or {})):
                rule.times -= 1
                raise rule.exc
        return await self.inner.fetch_order(id, symbol, params)


def is_entry(side: str, p: dict[str, Any]) -> bool:
    return "stopLossPrice" not in p and "takeProfitPrice" not in p and not p.get("reduceOnly")


def is_stop(side: str, p: dict[str, Any]) -> bool:
    return "stopLossPrice" in p


def paper(price: float = 60_000.0) -> FaultyPaper:
    ex = PaperExchange(config=PaperConfig(auto_funding=False))
    ex.core.on_price(BTC, price, NOW_MS)
    return FaultyPaper(ex)


def executor(ex: Any, **kw: Any) -> Executor:
    kw.setdefault("retry", FAST)
    kw.setdefault("max_leverage", 5.0)
    kw.setdefault("poll_s", 0.0)
    return Executor(ex, run_id="t", **kw)


def approve(
    engine: GuardEngine, ex: FaultyPaper, intent: OrderIntent, now: float = NOW
) -> ApprovedOrder:
    core = ex.inner.core
    ctx = GuardContext(
        core.account(),
        {BTC: core.market_rules(BTC)},
        {BTC: Mark(core.mark_price(BTC) or 0.0, now)},
        now,
    )
    decision = engine.check(intent, ctx)
    assert decision.allowed, decision.reason
    return engine.approve(decision)


LONG = OrderIntent(BTC, "long", 0.04, leverage=3.0, stop_price=58_800.0, take_profit=63_000.0)


def entries(ex: FaultyPaper) -> list[dict[str, Any]]:
    """Every entry order the paper exchange ever accepted."""
    core = ex.inner.core
    out = []
    for i in range(1, 1000):
        try:
            o = core.fetch_order(str(i))
        except Exception:
            break
        if order_role(o) == "entry":
            out.append(o)
    return out


# ---------------------------------------------------------------------- client ids


intents = st.builds(
    OrderIntent,
    symbol=st.sampled_from([BTC, "ETH/USDT:USDT", "1000PEPE/USDT:USDT"]),
    side=st.sampled_from(["long", "short"]),
    amount=st.floats(min_value=1e-6, max_value=1e6),
    price=st.none() | st.floats(min_value=0.01, max_value=1e6),
    leverage=st.floats(min_value=1, max_value=125),
    stop_price=st.none() | st.floats(min_value=0.01, max_value=1e6),
    client_id=st.text(max_size=80),
)


@given(intent=intents, seed=st.text(max_size=60), role=st.sampled_from(["e", "s", "t"]))
def test_client_ids_are_deterministic_and_binance_valid(
    intent: OrderIntent, seed: str, role: str
) -> None:
    cid = client_order_id(intent, seed=seed, role=role)
    assert CLIENT_ID.match(cid)
    assert len(cid) <= 36
    assert cid == client_order_id(intent, seed=seed, role=role)
    assert cid.startswith("gb" + role)


@given(intent=intents, seed=st.text(max_size=20))
def test_client_ids_differ_by_seed_symbol_side_and_role(intent: OrderIntent, seed: str) -> None:
    entry = client_order_id(intent, seed=seed, role="e")
    stop = client_order_id(intent, seed=seed, role="s")
    assert entry != stop and entry[3:] == stop[3:]  # same digest ties the stop to its entry
    assert entry != client_order_id(intent, seed=seed + "x", role="e")
    other = "short" if intent.side == "long" else "long"
    assert entry != client_order_id(replace(intent, side=other), seed=seed, role="e")
    assert entry != client_order_id(replace(intent, symbol="X/USDT:USDT"), seed=seed, role="e")
    # what the guards may change between a first send and a replay does not matter
    assert entry == client_order_id(replace(intent, amount=intent.amount * 2), seed=seed)


# ---------------------------------------------------------------------- entries


async def test_entry_goes_out_with_a_mark_price_stop_and_take_profit() -> None:
    ex = paper()
    engine = GuardEngine(GuardsConfig())
    result = await executor(ex).submit(approve(engine, ex, LONG))
    assert result.status == "filled" and result.filled == pytest.approx(0.04)
    core = ex.inner.core
    assert core.leverage(BTC) == 3.0 and core.margin_mode(BTC) == "isolated"
    stops = [o for o in core.open_orders(BTC) if order_role(o) == "stop"]
    takes = [o for o in core.open_orders(BTC) if order_role(o) == "take_profit"]
    assert [o["triggerPrice"] for o in stops] == [58_800.0]
    assert [o["triggerPrice"] for o in takes] == [63_000.0]
    for o in stops + takes:
        assert o["info"]["closePosition"] is True
        assert o["info"]["workingType"] == "MARK_PRICE"
        assert o["side"] == "sell"
    pos = core.position(BTC)
    assert pos is not None and pos.stop_price == 58_800.0 and pos.take_profit == 63_000.0
    # the stop watches the mark: a last-price wick below it does not fire, the mark does
    core.on_price(BTC, 58_000.0, NOW_MS + 1_000, mark=59_500.0)
    assert core.position(BTC) is not None
    core.on_price(BTC, 58_700.0, NOW_MS + 2_000, mark=58_700.0)
    assert core.position(BTC) is None


async def test_client_ids_are_sent_and_shared_by_the_orders_of_one_intent() -> None:
    ex = paper()
    result = await executor(ex).submit(approve(GuardEngine(GuardsConfig()), ex, LONG))
    cids = [c["clientOrderId"] for c in ex.creates]
    assert len(cids) == 3 and len(set(cids)) == 3
    assert [c[:3] for c in cids] == ["gbe", "gbs", "gbt"]
    assert len({c[3:] for c in cids}) == 1
    assert result.client_id == cids[0]


async def test_a_rejected_stop_closes_the_entry_at_once(logs: io.StringIO) -> None:  # noqa: F811
    ex = paper()
    ex.create_rules.append(Rule(is_stop, InvalidOrder("stop refused"), times=99))
    result = await executor(ex).submit(approve(GuardEngine(GuardsConfig()), ex, LONG))
    assert result.status == "closed_unprotected"
    assert ex.inner.core.position(BTC) is None
    assert ex.inner.core.open_orders(BTC) == []
    critical = [e for e in events(logs) if e["event"] == "naked_position_closed"]
    assert critical and critical[0]["level"] == "critical" and critical[0]["symbol"] == BTC


async def test_a_timeout_after_the_order_was_accepted_does_not_double_it(
    logs: io.StringIO,  # noqa: F811
) -> None:
    ex = paper()
    ex.create_rules.append(Rule(is_entry, RequestTimeout("read timeout"), after=True))
    result = await executor(ex).submit(approve(GuardEngine(GuardsConfig()), ex, LONG))
    assert result.status == "filled"
    assert len(entries(ex)) == 1
    assert ex.inner.core.position(BTC).amount == pytest.approx(0.04)  # type: ignore[union-attr]
    assert sum(1 for c in ex.creates if is_entry("", c)) == 1  # looked up, not re-sent
    assert "order_recovered" in event_names(logs)


async def test_a_request_that_never_arrived_is_sent_again_once() -> None:
    ex = paper()
    ex.create_rules.append(Rule(is_entry, ExchangeNotAvailable("connection reset")))
    result = await executor(ex).submit(approve(GuardEngine(GuardsConfig()), ex, LONG))
    assert result.status == "filled"
    assert sum(1 for c in ex.creates if is_entry("", c)) == 2
    assert len(entries(ex)) == 1
    sent = [c["clientOrderId"] for c in ex.creates if is_entry("", c)]
    assert sent[0] == sent[1]  # the re-send carries the same client id


async def no_sleep(_: float) -> None:
    return None


async def test_an_order_whose_fate_is_unknown_is_never_sent_blind() -> None:
    ex = paper()
    ex.create_rules.append(Rule(is_entry, RequestTimeout("timeout")))
    lookups_down = Rule(lambda s, p: True, NetworkError("still down"), times=4)
    ex.fetch_rules.append(lookups_down)
    ex_ = executor(ex, sleep=no_sleep)
    result = await ex_.submit(approve(GuardEngine(GuardsConfig()), ex, LONG))
    assert result.status == "unknown"
    assert sum(1 for c in ex.creates if is_entry("", c)) == 1
    assert entries(ex) == []
    await ex_.settle()  # looked up in the background until the exchange answered: not there
    assert lookups_down.times == 0
    assert sum(1 for c in ex.creates if is_entry("", c)) == 1
    assert ex.inner.core.position(BTC) is None


async def test_an_accepted_entry_without_an_answer_is_protected_from_the_position() -> None:
    ex = paper()
    ex.create_rules.append(Rule(is_entry, RequestTimeout("timeout"), after=True))
    lookups_down = Rule(lambda s, p: True, NetworkError("still down"), times=3)
    ex.fetch_rules.append(lookups_down)
    ex_ = executor(ex, sleep=no_sleep)
    result = await ex_.submit(approve(GuardEngine(GuardsConfig()), ex, LONG))
    assert result.status == "unknown"
    pos = ex.inner.core.position(BTC)
    assert pos is not None and pos.stop_price == LONG.stop_price  # protected at once
    await ex_.settle()  # the background look-up finds the filled entry; the stop stands
    assert sum(1 for c in ex.creates if is_entry("", c)) == 1
    assert ex.inner.core.position(BTC).stop_price == LONG.stop_price
    assert len([o for o in ex.inner.core.open_orders(BTC) if order_role(o) == "stop"]) == 1


async def test_refusals_are_not_retried() -> None:
    ex = paper()
    ex.create_rules.append(Rule(is_entry, InsufficientFunds("margin is insufficient")))
    result = await executor(ex).submit(approve(GuardEngine(GuardsConfig()), ex, LONG))
    assert result.status == "failed" and "InsufficientFunds" in result.reason
    assert len(ex.creates) == 1


async def test_an_authentication_error_stops_trading(logs: io.StringIO) -> None:  # noqa: F811
    ex = paper()
    ex.create_rules.append(Rule(is_entry, AuthenticationError("invalid api key")))
    engine = GuardEngine(GuardsConfig())
    ex_ = executor(ex)
    first = await ex_.submit(approve(engine, ex, LONG))
    assert first.status == "failed" and ex_.halted is not None
    second = await ex_.submit(approve(engine, ex, LONG, now=NOW + 600))
    assert second.status == "refused"
    assert len(ex.creates) == 1
    auth = [e for e in events(logs) if e["event"] == "exchange_auth_failed"]
    assert auth and auth[0]["level"] == "critical"


async def test_an_entry_without_a_stop_is_refused() -> None:
    ex = paper()
    engine = GuardEngine(GuardsConfig(stop_loss={"enabled": False}))
    bare = OrderIntent(BTC, "long", 0.01, leverage=2.0)
    result = await executor(ex).submit(approve(engine, ex, bare))
    assert result.status == "refused"
    assert ex.creates == []


async def test_leverage_above_the_cap_is_refused_and_prepare_caps_it() -> None:
    ex = paper()
    ex_ = executor(ex, max_leverage=2.0)
    result = await ex_.submit(approve(GuardEngine(GuardsConfig()), ex, LONG))  # asks for 3x
    assert result.status == "refused" and ex.creates == []
    await ex_.prepare([BTC], "cross", 10.0)
    assert ex.inner.core.leverage(BTC) == 2.0
    assert ex.inner.core.margin_mode(BTC) == "cross"


async def test_a_partial_market_fill_is_protected() -> None:
    ex = paper()
    original = ex.inner.core.create_order

    def half(symbol: str, type: str, side: str, amount: float, price: Any, params: Any) -> Any:
        p = dict(params or {})
        if is_entry(side, p):
            order = original(symbol, type, side, amount / 2, price, p)
            return {**order, "amount": amount, "status": "expired"}
        return original(symbol, type, side, amount, price, p)

    ex.inner.core.create_order = half  # type: ignore[method-assign]
    result = await executor(ex).submit(approve(GuardEngine(GuardsConfig()), ex, LONG))
    assert result.status == "partial" and result.filled == pytest.approx(0.02)
    pos = ex.inner.core.position(BTC)
    assert pos is not None and pos.amount == pytest.approx(0.02) and pos.stop_price == 58_800.0


async def test_a_resting_limit_entry_is_protected_before_it_fills() -> None:
    ex = paper()
    intent = OrderIntent(
        BTC, "long", 0.04, price=59_500.0, order_type="limit", leverage=3.0, stop_price=58_800.0
    )
    result = await executor(ex).submit(approve(GuardEngine(GuardsConfig()), ex, intent))
    assert result.status == "open"
    core = ex.inner.core
    assert {order_role(o) for o in core.open_orders(BTC)} == {"entry", "stop"}
    core.on_price(BTC, 59_400.0, NOW_MS + 1_000)
    pos = core.position(BTC)
    assert pos is not None and pos.stop_price == 58_800.0


async def test_a_reduce_only_intent_reduces() -> None:
    ex = paper()
    engine = GuardEngine(GuardsConfig())
    ex_ = executor(ex)
    await ex_.submit(approve(engine, ex, LONG))
    cut = OrderIntent(BTC, "long", 0.01, reduce_only=True)
    result = await ex_.submit(approve(engine, ex, cut))
    assert result.status == "reduced"
    assert ex.inner.core.position(BTC).amount == pytest.approx(0.03)  # type: ignore[union-attr]


# ---------------------------------------------------------------------- exits


async def test_place_stop_moves_the_stop_and_keeps_one() -> None:
    ex = paper()
    ex_ = executor(ex)
    await ex_.submit(approve(GuardEngine(GuardsConfig()), ex, LONG))
    result = await ex_.place_stop(BTC, 59_100.0)
    assert result.status == "stop_placed"
    stops = [o for o in ex.inner.core.open_orders(BTC) if order_role(o) == "stop"]
    assert [o["triggerPrice"] for o in stops] == [59_100.0]
    again = await ex_.place_stop(BTC, 59_100.0)
    assert again.status == "noop"


async def test_a_failed_stop_move_keeps_the_old_stop() -> None:
    ex = paper()
    ex_ = executor(ex)
    await ex_.submit(approve(GuardEngine(GuardsConfig()), ex, LONG))
    ex.create_rules.append(Rule(is_stop, InvalidOrder("nope")))
    result = await ex_.place_stop(BTC, 59_100.0)
    assert result.status == "failed"
    pos = ex.inner.core.position(BTC)
    assert pos is not None and pos.stop_price == 58_800.0


async def test_close_cancels_entries_and_flattens() -> None:
    ex = paper()
    ex_ = executor(ex)
    engine = GuardEngine(GuardsConfig())
    limit = OrderIntent(
        BTC, "long", 0.01, price=55_000.0, order_type="limit", leverage=3.0, stop_price=54_000.0
    )
    assert (await ex_.submit(approve(engine, ex, limit))).status == "open"
    await ex_.submit(approve(engine, ex, LONG, now=NOW + 600))
    result = await ex_.close(BTC)
    assert result.status == "closed" and result.filled == pytest.approx(0.04)
    core = ex.inner.core
    assert core.position(BTC) is None
    assert core.open_orders(BTC) == []
    assert core.trades[-1].reason == "guard"


async def test_reduce_rounds_down_to_the_amount_step() -> None:
    ex = paper()
    ex_ = executor(ex)
    await ex_.submit(approve(GuardEngine(GuardsConfig()), ex, LONG))
    result = await ex_.reduce(BTC, 0.0155)  # BTC step 0.001 -> 0.015
    assert result.status == "reduced" and result.filled == pytest.approx(0.015)
    assert ex.inner.core.position(BTC).amount == pytest.approx(0.025)  # type: ignore[union-attr]
    assert (await ex_.reduce(BTC, 1.0)).status == "closed"  # more than the position: all of it


async def test_store_records_the_intent_before_sending_and_the_ack_after() -> None:
    calls: list[tuple[str, str]] = []
    ex = paper()

    class Store:
        def order_intent(
            self,
            client_id: str,
            symbol: str,
            side: str,
            type: str,
            amount: float,
            price: float | None = None,
            params: Any = None,
        ) -> None:
            sent = {c["clientOrderId"] for c in ex.creates}
            calls.append(("intent" if client_id not in sent else "late", client_id))

        async def order_ack(self, client_id: str, order: Any) -> None:
            calls.append(("ack", client_id))

    await executor(ex, store=Store()).submit(approve(GuardEngine(GuardsConfig()), ex, LONG))
    assert [k for k, _ in calls] == ["intent", "ack"] * 3
    assert [c for _, c in calls][::2] == [c["clientOrderId"] for c in ex.creates]


# ---------------------------------------------------------------------- reconcile


def external(ex: FaultyPaper, amount: float, leverage: float = 1.0) -> None:
    core = ex.inner.core
    core.set_leverage(leverage, BTC)
    core.create_order(BTC, "market", "buy", amount, None, {})


async def test_reconcile_adopts_a_position_and_attaches_the_default_stop() -> None:
    # external long 0.1 BTC filled at 60000 * (1 + 2 bps slippage) = 60012, 1x isolated:
    # margin = the whole notional, so no liquidation price above zero bounds the stop.
    # default stop = 60012 * (1 - 2 %) = 58811.76, rounded away from entry to the 0.1 tick
    # -> 58811.7
    ex = paper()
    external(ex, 0.1)
    ex_ = executor(ex)
    report = await ex_.reconcile({BTC: ex.inner.core.market_rules(BTC)}, now=NOW)
    assert report.adopted == [BTC] and report.unprotected == [BTC]
    assert report.stops_placed[BTC] == pytest.approx(58_811.7)
    pos = ex.inner.core.position(BTC)
    assert pos is not None and pos.stop_price == pytest.approx(58_811.7)
    again = await ex_.reconcile({BTC: ex.inner.core.market_rules(BTC)}, now=NOW)
    assert again.adopted == [] and again.actions == []


async def test_reconcile_never_puts_the_stop_beyond_liquidation() -> None:
    # 0.1 BTC long at 60012, 50x isolated: margin M = 0.1 * 60012 / 50 = 120.024.
    # Binance BTCUSDT bracket 1 (notional < 50,000): mmr 0.4 %, cum 0.
    # liq = (M + cum - q*E) / (q*mmr - q) = (120.024 - 6001.2) / (0.0004 - 0.1)
    #     = -5881.176 / -0.0996 = 59047.9518...  (notional there 5,905 -> bracket 1 holds)
    # the stop must trigger 1 % (liquidation.stop_buffer_pct) before it:
    # 59047.9518 * 1.01 = 59638.4313, rounded away from liquidation (up) -> 59638.5,
    # above the 2 % default stop 58811.7, so it wins.
    ex = paper()
    external(ex, 0.1, leverage=50.0)
    report = await executor(ex).reconcile({BTC: ex.inner.core.market_rules(BTC)}, now=NOW)
    assert report.stops_placed[BTC] == pytest.approx(59_638.5)
    pos = ex.inner.core.position(BTC)
    assert pos is not None and pos.stop_price == pytest.approx(59_638.5)


async def test_reconcile_closes_a_position_already_past_its_stop() -> None:
    ex = paper()
    external(ex, 0.1)
    ex.inner.core.on_price(BTC, 58_000.0, NOW_MS + 1_000)  # below the 58811.7 default stop
    report = await executor(ex).reconcile({BTC: ex.inner.core.market_rules(BTC)}, now=NOW)
    assert report.closed == [BTC]
    assert ex.inner.core.position(BTC) is None


async def test_reconcile_lets_the_guard_sweep_act_at_once() -> None:
    # the 50x long above liquidates at 59047.95; at a mark of 59800 it is
    # (59800 - 59047.95) / 59800 = 1.26 % away, inside close_at_pct (1.5 %): the
    # liquidation rule closes it, which supersedes placing the 59638.5 stop.
    ex = paper()
    external(ex, 0.1, leverage=50.0)
    ex.inner.core.on_price(BTC, 59_800.0, NOW_MS + 1_000)
    engine = GuardEngine(GuardsConfig())
    report = await executor(ex).reconcile({BTC: ex.inner.core.market_rules(BTC)}, engine, now=NOW)
    assert report.closed == [BTC]
    assert any(a.rule == "liquidation" and a.kind == "close" for a in report.actions)
    assert ex.inner.core.position(BTC) is None


# ---------------------------------------------------------------------- ccxt structures


def test_binance_shaped_balance_and_positions_become_the_guards_account() -> None:
    balance = {
        "info": {"totalWalletBalance": "1000.5", "assets": [{"asset": "USDT"}]},
        "USDT": {"free": 900.0, "used": 100.0, "total": 1003.0},
    }
    assert wallet_balance(balance) == 1000.5  # realised wallet, not margin balance (1003)
    positions = [
        {
            "symbol": BTC,
            "side": "short",
            "contracts": 0.2,
            "contractSize": 1.0,
            "entryPrice": 50_000.0,
            "notional": 10_000.0,
            "leverage": None,
            "initialMargin": 2_000.0,
            "marginMode": "isolated",
            "info": {"isolatedWallet": "2001.5"},
        },
        {"symbol": "ETH/USDT:USDT", "side": "long", "contracts": 0.0, "entryPrice": 0.0},
    ]
    orders = [
        {  # Binance algo stop as ccxt parses it: type "market", only triggerPrice
            "symbol": BTC,
            "side": "buy",
            "type": "market",
            "triggerPrice": 52_000.0,
            "reduceOnly": True,
            "info": {"closePosition": True, "orderType": "STOP_MARKET"},
        },
        {
            "symbol": BTC,
            "side": "buy",
            "type": "market",
            "triggerPrice": 45_000.0,
            "takeProfitPrice": 45_000.0,
            "reduceOnly": True,
            "info": {"closePosition": True, "orderType": "TAKE_PROFIT_MARKET"},
        },
    ]
    account = account_from_ccxt(balance, positions, orders)
    assert list(account.positions) == [BTC]
    pos = account.positions[BTC]
    assert pos.side == "short" and pos.amount == 0.2
    assert pos.leverage == pytest.approx(5.0)  # 10,000 notional / 2,000 initial margin
    assert pos.margin == 2001.5
    assert pos.stop_price == 52_000.0 and pos.take_profit == 45_000.0


async def test_prepare_reports_a_symbol_that_refuses_and_carries_on() -> None:
    ex = paper()
    external(ex, 0.01)  # an isolated position: the margin mode cannot change under it
    failed = await executor(ex).prepare([BTC], "cross", 3.0)
    assert list(failed) == [BTC] and "OperationRejected" in failed[BTC]
    assert ex.inner.core.margin_mode(BTC) == "isolated"


async def test_a_named_intent_replayed_after_a_restart_is_not_sent_again() -> None:
    ex = paper()
    named = OrderIntent(
        BTC, "long", 0.04, leverage=3.0, stop_price=58_800.0, client_id="strategy-42"
    )
    first = await executor(ex).submit(approve(GuardEngine(GuardsConfig()), ex, named))
    assert first.status == "filled"
    ex.inner.core.on_price(BTC, 61_000.0, NOW_MS + 1_000)  # in profit: the guards allow an add
    restarted = executor(ex)  # a new process, a new run id: the id comes from the intent
    again = await restarted.submit(approve(GuardEngine(GuardsConfig()), ex, named, NOW + 600))
    assert again.status == "noop" and again.client_id == first.client_id
    assert len(entries(ex)) == 1
