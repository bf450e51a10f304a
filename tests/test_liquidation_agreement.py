"""The guards' liquidation price of a position is the paper exchange's own trigger (hypothesis).

Random accounts on the paper core — isolated and cross positions on up to three bundled markets
(Binance's published tiers), several cross positions sharing the wallet, adds, reductions and
flips, price moves that may liquidate or (tiered, okx) partially liquidate — under every
liquidation profile. The venue profiles use their bundled market (Bybit's BTCUSDT risk limits,
OKX's ETHUSDT position tiers) and, for the other two symbols, Binance's brackets read under the
venue's model (OKX's as sizes at the starting price): synthetic tiers, fine for a test of
agreement, which is all this file checks (the venues' own numbers: test_liquidation_venues.py).
After every step the guards' price (``GuardEngine.liquidation_price`` and
``position_liquidation``, from the context the shell would build: ``PaperCore.account()``, the
core's ``market_rules`` and the marks fed to it) must equal ``PaperCore.liquidation_price``.

Only the core's public API is used. Which triggers are current after a step follows its
documented behaviour: every trigger is re-solved when the ledger changes (a fill, funding, a
liquidation); on a price point only the priced symbol's trigger is re-solved, which is all that
moves for an isolated position or a lone cross one, but with two or more cross positions the
others' triggers still hold the older marks — those are compared after the next step that
re-solves them.

One known divergence, left out of the comparison and pinned by its own tests below: under the
tiered profile the liquidatable prices of a position can be non-contiguous (a thin band just
above a bracket boundary where the threshold steps down). A mark that jumps over the band
without a price point in it leaves the position alive; the core then re-solves its trigger from
that mark (``LiquidationEngine.liquidate``: "re-solve it from here"), a figure that depends on the
path. The guards' price is the first trigger from the entry (the band), which the mark has
passed, so their sweep closes the position. Such a position is compared no more in that run;
under the other profiles (one contiguous region) it must never happen.

One knife edge, which is not a skip: the prices agree to ``REL``/``ABS`` (the two sides add the
same figures in a different order: the guards take the cross totals less the position's own
share, the core sums the other positions), so a mark *at* the liquidation price — within that
tolerance — is on neither side of it: the guards may say "liquidatable" while the core's
trigger sits a few ulps beyond the mark, or the core reaches its trigger and finds the margin
balance at the mark a few ulps above MM (``liquidation_stage`` "none": it re-solves its trigger
from the mark, onto the mark again). That is not rare: a whole cross liquidation closes at
the bankruptcy price, where ``wallet - other MM + other uPnL + own PnL = 0``, which leaves the
wallet at ``other MM - other uPnL``, so every other cross position is then *exactly* at margin
balance = MM at its current mark (its liquidation price is its mark), and float rounding of the
wallet decides (see ``test_a_whole_cross_liquidation_leaves_the_others_on_their_edge``). So
outside the banded profile a position alive with its mark at or past the guards' price must be
on that edge: its mark is the guards' price within the agreement tolerance (and so, by the
comparison that follows, the core's trigger too); it stays compared.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

import ccxt
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from guards import (
    GuardContext,
    GuardEngine,
    GuardsConfig,
    Mark,
    Tier,
    Tiers,
    position_liquidation,
)
from paper.config import PaperConfig
from paper.core import PaperCore
from paper.markets import PaperMarket, configure, load_market, load_markets

SYMBOLS = ("BTC/USDT:USDT", "ETH/USDT:USDT", "XRP/USDT:USDT")
START = {"BTC/USDT:USDT": 60_000.0, "ETH/USDT:USDT": 3_000.0, "XRP/USDT:USDT": 0.6}
T0 = 1_700_000_100_000
ENGINE = GuardEngine(GuardsConfig())
PROFILES = ["binance", "tiered", "bybit", "okx"]
#: Profiles whose liquidatable prices can be non-contiguous (see the module docstring).
BANDED = ("tiered",)
#: How closely the guards' price must equal the core's trigger (``pytest.approx``).
REL = ABS = 1e-9


def profile_markets(profile: str, config: PaperConfig) -> dict[str, PaperMarket]:
    """The three markets under ``profile`` (see the module docstring for the venue profiles)."""
    if profile in ("binance", "tiered"):
        return load_markets(SYMBOLS, config)
    markets: dict[str, PaperMarket] = {}
    for symbol in SYMBOLS:
        try:
            markets[symbol] = load_market(symbol, config)
            continue
        except KeyError:
            pass
        m = load_market(symbol)
        tiers = list(m.rules.tiers)
        if profile == "okx":
            at = START[symbol]
            tiers = [
                Tier(t.min_notional / at, t.max_notional / at, t.mmr, 0.0, t.max_leverage)
                for t in tiers
            ]
        rules = replace(m.rules, tiers=Tiers(tiers, profile), liquidation_model=profile)  # type: ignore[arg-type]
        markets[symbol] = configure(replace(m, rules=rules), config)
    return markets


setups = st.tuples(st.sampled_from(["isolated", "cross"]), st.integers(1, 75))
legs = st.tuples(
    st.integers(0, len(SYMBOLS) - 1),  # which market
    st.sampled_from(["buy", "sell"]),
    st.floats(0.01, 0.6),  # share of the wallet, times the leverage, as notional
)
moves = st.tuples(st.integers(0, len(SYMBOLS) - 1), st.floats(-0.03, 0.03) | st.floats(-0.12, 0.12))


class Session:
    """A paper core driven through its public API, with the marks it was fed."""

    def __init__(self, profile: str, balance: float) -> None:
        config = PaperConfig(liquidation_profile=profile, starting_balance=balance)  # type: ignore[arg-type]
        self.core = PaperCore(config, profile_markets(profile, config))
        self.marks: dict[str, float] = {}
        self.ts = T0
        self.set_up: set[str] = set()
        #: Symbols whose trigger the core re-solved from a mark past the guards' price.
        self.path_dependent: set[str] = set()
        self.compared = 0
        for symbol in SYMBOLS:
            self.price(symbol, START[symbol])

    def price(self, symbol: str, price: float) -> None:
        self.ts += 60_000
        self.core.on_price(symbol, price, self.ts)
        self.marks[symbol] = price

    def order(self, symbol: str, side: str, share: float, mode: str, leverage: int) -> bool:
        core = self.core
        if symbol not in self.set_up:  # margin mode and leverage before the first position
            core.set_margin_mode(mode, symbol)
            core.set_leverage(leverage, symbol)
            self.set_up.add(symbol)
        amount = share * core.account().wallet_balance * leverage / self.marks[symbol]
        try:
            core.create_order(symbol, "market", side, amount)
        except (ccxt.InvalidOrder, ccxt.InsufficientFunds):
            return False
        return True

    def context(self) -> GuardContext:
        """What the shell builds: the core's account and market rules, the marks it was fed."""
        return GuardContext(
            self.core.account(),
            {s: self.core.market_rules(s) for s in SYMBOLS},
            {s: Mark(p, self.ts / 1000) for s, p in self.marks.items()},
            self.ts / 1000,
        )

    def skipped_a_band(self, symbol: str) -> bool:
        """Is the position still open with its mark at or past the guards' price (see above)?"""
        ctx = self.context()
        pos = ctx.account.positions.get(symbol)
        if pos is None:
            return False
        ours = ENGINE.liquidation_price(pos, ctx)
        return ours is not None and pos.sign * (self.marks[symbol] - ours) <= 0.0

    def on_the_edge(self, symbol: str) -> bool:
        """Is the mark the guards' price, to the agreement tolerance (see the docstring)?"""
        ctx = self.context()
        ours = ENGINE.liquidation_price(ctx.account.positions[symbol], ctx)
        return ours is not None and self.marks[symbol] == pytest.approx(ours, rel=REL, abs=ABS)

    def compare(self, symbols: set[str] | None = None) -> int:
        """Assert agreement for the open positions in ``symbols`` (all when None)."""
        ctx = self.context()
        account = ctx.account
        compared = 0
        for symbol, pos in account.positions.items():
            if symbols is not None and symbol not in symbols:
                continue
            if symbol in self.path_dependent:
                continue
            paper = self.core.liquidation_price(symbol)
            ours = ENGINE.liquidation_price(pos, ctx)
            assert position_liquidation(pos, ctx) == ours
            if paper is None or ours is None:
                assert paper is None and ours is None, (symbol, pos, paper, ours)
            else:
                assert ours == pytest.approx(paper, rel=REL, abs=ABS), (symbol, pos)
            compared += 1
        return compared

    def current_after_price(self, priced: str) -> set[str]:
        """Positions whose trigger the core has re-solved at the current marks."""
        positions = self.core.account().positions
        cross = {s for s, p in positions.items() if p.margin_mode == "cross"}
        return {priced} | (set(positions) - cross) | (cross if len(cross) <= 1 else set())


def run(
    profile: str,
    balance: float,
    modes: list[tuple[str, int]],
    orders: list[tuple[int, str, float]],
    path: list[tuple[int, float]],
) -> Session:
    session = Session(profile, balance)
    compared = 0
    for index, side, share in orders:
        symbol = SYMBOLS[index]
        mode, leverage = modes[index]
        with contextlib.suppress(ccxt.BadRequest, ccxt.OperationRejected):
            session.order(symbol, side, share, mode, leverage)
        compared += session.compare()  # a fill re-solves every trigger
    for index, move in path:
        symbol = SYMBOLS[index]
        session.price(symbol, round(session.marks[symbol] * (1 + move), 4))
        if session.skipped_a_band(symbol):
            if profile in BANDED:
                session.path_dependent.add(symbol)
            else:  # see the module docstring: at the edge, not past it
                assert session.on_the_edge(symbol), "a contiguous liquidation region was skipped"
        compared += session.compare(session.current_after_price(symbol))
    session.compared = compared
    return session


common: Any = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@common
@given(
    profile=st.sampled_from(PROFILES),
    balance=st.floats(500.0, 2_000_000.0),
    modes=st.lists(setups, min_size=3, max_size=3),
    orders=st.lists(legs, min_size=1, max_size=8),
    path=st.lists(moves, max_size=20),
)
@example(  # a cross liquidation's bankruptcy close leaves the other cross position on its edge
    profile="binance",
    balance=610.0,
    modes=[("cross", 59), ("cross", 11), ("isolated", 1)],
    orders=[(1, "buy", 0.5), (0, "buy", 0.25)],
    path=[(0, -0.0625), (1, 0.0)],
)
def test_guards_and_paper_agree_on_random_accounts(
    profile: str,
    balance: float,
    modes: list[tuple[str, int]],
    orders: list[tuple[int, str, float]],
    path: list[tuple[int, float]],
) -> None:
    run(profile, balance, modes, orders, path)


@common
@given(
    profile=st.sampled_from(PROFILES),
    balance=st.floats(2_000.0, 2_000_000.0),
    leverages=st.lists(st.integers(2, 75), min_size=3, max_size=3),
    openings=st.lists(
        st.tuples(st.sampled_from(["buy", "sell"]), st.floats(0.01, 0.3)), min_size=3, max_size=3
    ),
    orders=st.lists(legs, max_size=5),
    path=st.lists(moves, max_size=20),
)
@example(
    profile="binance",
    balance=2000.0,
    leverages=[11, 2, 23],
    openings=[("sell", 0.25), ("buy", 0.25), ("buy", 0.0625)],
    orders=[(2, "sell", 0.5)],
    path=[(2, 0.09375), (0, 0.0)],
)
def test_cross_accounts_with_several_positions_agree(
    profile: str,
    balance: float,
    leverages: list[int],
    openings: list[tuple[str, float]],
    orders: list[tuple[int, str, float]],
    path: list[tuple[int, float]],
) -> None:
    modes = [("cross", lev) for lev in leverages]
    first = [(i, side, share) for i, (side, share) in enumerate(openings)]  # one per market
    run(profile, balance, modes, first + orders, path)


@pytest.mark.parametrize("profile", PROFILES)
def test_a_three_position_cross_account_by_hand(profile: str) -> None:
    """The property tests' machinery sees something: three cross positions, moved and compared."""
    session = Session(profile, 50_000.0)
    for symbol, side in zip(SYMBOLS, ("buy", "sell", "buy"), strict=True):
        assert session.order(symbol, side, 0.3, "cross", 20)
    positions = session.core.account().positions
    assert {p.margin_mode for p in positions.values()} == {"cross"} and len(positions) == 3
    assert session.compare() == 3
    for symbol, move in (("BTC/USDT:USDT", -0.02), ("ETH/USDT:USDT", 0.015)):
        assert not session.skipped_a_band(symbol)
        session.price(symbol, session.marks[symbol] * (1 + move))
        assert session.compare({symbol}) == 1
    # XRP's trigger still holds the old BTC and ETH marks; its next price point re-solves it
    liq_xrp = session.core.liquidation_price("XRP/USDT:USDT")
    session.price("XRP/USDT:USDT", session.marks["XRP/USDT:USDT"])
    assert session.core.liquidation_price("XRP/USDT:USDT") != liq_xrp
    assert session.compare({"XRP/USDT:USDT"}) == 1


def test_a_whole_cross_liquidation_leaves_the_others_on_their_edge() -> None:
    """The falsifying example's account, by hand (Binance's formula, its published brackets).

    Wallet 2,000; cross BTC short 0.091 @ 59,988 (11x), ETH long 0.332 @ 3,000.6 (2x), XRP long
    4,783.9 @ 0.60012 flipped by a sell of 38,243.9 @ 0.59988 to a 33,460 short (23x): wallet
    2,000 - 0.05 % taker fees (2.729454 + 0.4980996 + 1.435457034 + 11.470875366) - the XRP
    long's loss 1.148136 = 1,982.717978. XRP to 0.6562 crosses its trigger 0.6543231042 (notional
    ~21,900: XRP's third bracket, mmr 1 %, cum 85) and the engine closes it at its bankruptcy
    price 0.6583259886. That leaves the wallet at the others' MM less their uPnL: BTC
    5,460 * 0.4 % + ETH 996 * 0.4 % (first brackets, cum 0) + 0.091 * 12 + 0.332 * 0.6 = 21.84 +
    3.984 + 1.2912 = 27.1152. BTC short: W = 27.1152 - 3.984 - 0.1992 = 22.932, liquidation
    price (W + cum - s*q*E) / (q*mmr - s*q) = (22.932 + 5,458.908) / 0.091364 = 60,000, its mark;
    ETH long: W = 27.1152 - 21.84 - 1.092 = 4.1832, (4.1832 - 996.1992) / -0.330672 = 3,000, its
    mark. On which side of the mark each side's float lands is rounding (the core's wallet is
    27.1152 + 8.7e-13; its BTC trigger 60,000.000000000015, the guards' 60,000.0).
    """
    session = Session("binance", 2_000.0)
    legs = [
        (0, "sell", 0.25, 11),
        (1, "buy", 0.25, 2),
        (2, "buy", 0.0625, 23),
        (2, "sell", 0.5, 23),
    ]
    for index, side, share, leverage in legs:
        assert session.order(SYMBOLS[index], side, share, "cross", leverage)
    btc, eth, xrp = SYMBOLS
    short = session.core.account().positions[xrp]
    assert (short.side, short.amount, short.entry_price) == ("short", 33_460.0, 0.59988)
    assert session.core.account().wallet_balance == pytest.approx(1_982.717978, abs=1e-9)
    assert session.core.liquidation_price(xrp) == pytest.approx(0.6543231042, abs=1e-10)
    assert session.compare() == 3
    session.price(xrp, 0.6562)
    [event] = session.core.liquidations
    assert (event.symbol, event.partial) == (xrp, False)
    assert event.price == pytest.approx(0.6583259886, abs=1e-10)
    assert session.core.account().wallet_balance == pytest.approx(27.1152, abs=1e-9)
    ctx = session.context()
    for symbol, at in ((btc, 60_000.0), (eth, 3_000.0)):
        ours = ENGINE.liquidation_price(ctx.account.positions[symbol], ctx)
        assert ours == pytest.approx(at, rel=1e-12)
        assert session.core.liquidation_price(symbol) == pytest.approx(at, rel=1e-12)
    session.price(btc, 60_000.0)  # the example's last step: the BTC short on its edge
    assert not session.skipped_a_band(btc) or session.on_the_edge(btc)
    assert session.compare({btc}) == (btc in session.core.account().positions)


@pytest.mark.parametrize("mode", ["isolated", "cross"])
def test_agreement_through_a_tiered_partial_then_whole_liquidation(mode: str) -> None:
    """A 2,000,000 notional BTC long (tier 3: partial first) walked down 0.2 % a minute."""
    session = Session("tiered", 100_000.0)
    assert session.order("BTC/USDT:USDT", "buy", 0.5, mode, 40)
    compared = session.compare()
    while session.core.account().positions:
        session.price("BTC/USDT:USDT", round(session.marks["BTC/USDT:USDT"] * 0.998, 4))
        assert not session.skipped_a_band("BTC/USDT:USDT")
        compared += session.compare()
    assert [e.partial for e in session.core.liquidations] == [True, False]
    assert compared > 5


@pytest.mark.parametrize("mode", ["isolated", "cross"])
def test_agreement_through_an_okx_partial_then_whole_liquidation(mode: str) -> None:
    """A 1,000 ETH long on OKX's ETHUSDT tiers (tier 3: partial first, two tiers down)."""
    session = Session("okx", 100_000.0)
    assert session.order("ETH/USDT:USDT", "buy", 0.6, mode, 50)
    held = session.core.account().positions["ETH/USDT:USDT"].amount
    assert 600.0 < held <= 1_200.0  # tier 3: 6,001 - 12,000 contracts of 0.1 ETH
    compared = session.compare()
    while session.core.account().positions:
        session.price("ETH/USDT:USDT", round(session.marks["ETH/USDT:USDT"] * 0.998, 4))
        assert not session.skipped_a_band("ETH/USDT:USDT")
        compared += session.compare()
    events = session.core.liquidations
    assert events[0].partial and not events[-1].partial
    assert held - events[0].amount == pytest.approx(300.0)  # down to tier 1: 3,000 contracts
    assert compared > 5


# -- the known divergence: a mark that jumps over a thin tiered band -----------------------------


def skipped_band_session() -> Session:
    """Tiered BTC cross long 50.634 @ 60,012 (41x, wallet 85,121), then the mark to 59,062.5.

    Liquidatable prices (margin rate at or below the threshold of the tier at that notional):
    notional ≥ 3,000,000 (price ≥ 3e6 / 50.634 = 59,248.73) is tier 4, threshold
    mmr 0.01 + fee 0.005; just below it is tier 3, threshold 0.0065 + 0.005. So the position is
    liquidatable on the band [59,248.73, 59,249.65] and again only below 59,039.86; the jump
    from 60,012 to 59,062.5 lands in the gap.
    """
    session = Session("tiered", 85_121.0)
    for share in (0.5, 0.25, 0.125):
        assert session.order("BTC/USDT:USDT", "buy", share, "cross", 41)
    assert session.compare() == 1
    session.price("BTC/USDT:USDT", 59_062.5)
    return session


def test_skipping_a_band_leaves_the_guards_on_the_safe_side() -> None:
    session = skipped_band_session()
    ctx = session.context()
    pos = ctx.account.positions["BTC/USDT:USDT"]
    assert pos.amount == pytest.approx(50.634)  # the core liquidated nothing
    ours = ENGINE.liquidation_price(pos, ctx)
    assert ours is not None and 59_248.73 <= ours <= 59_249.66  # the band, above the mark
    assert session.skipped_a_band("BTC/USDT:USDT")
    assert [(a.kind, a.symbol) for a in ENGINE.sweep(ctx)] == [("close", "BTC/USDT:USDT")]
    # the liquidation rule's own reason (no_overnight, at 22:17 UTC, and the stop sweep, whose
    # stop would sit above the mark, close it first otherwise)
    alone = {"no_overnight": {"enabled": False}, "stop_loss": {"enabled": False}}
    engine = GuardEngine(GuardsConfig.model_validate(alone))
    closes = [(a.rule, a.code) for a in engine.sweep(ctx) if a.kind == "close"]
    assert closes == [("liquidation", "liq_close")]  # mark past the guards' price


@pytest.mark.xfail(
    strict=True, reason="path-dependent trigger of the paper core, see the docstring"
)
def test_skipping_a_band_the_guards_and_the_core_agree() -> None:
    session = skipped_band_session()
    session.path_dependent.clear()
    session.compare()
