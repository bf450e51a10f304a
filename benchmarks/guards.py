"""Speed of the guard engine: one pre-trade check and sweeps, on realistic contexts.

The context uses Binance's published leverage tiers (bundled ``paper/data`` copy, else
``../shared/data``): an account with 50 open positions for the check (an opening BTC order,
every rule enabled including trend, the order allowed after running all of them) and 200 open
positions for the sweep (a fresh context with new marks on every sweep, as the shell builds).
The per-candle case is what a 1-minute replay does: one open BTC position, all nine rules on,
a fresh context a minute later with a new mark at every candle close, one sweep each (over two
weeks of minutes, so the no_overnight window and the trading day turn over).

Prints human lines, then as its last line one JSON object with at least ``check_median_us``,
``check_p99_us``, ``sweep_200_median_ms`` and ``sweep_candle_median_us``. Targets: check median
≤ 10 µs, sweep of 200 ≤ 2 ms. Run: ``python benchmarks/guards.py`` (from the repository root).
Timings depend on the machine and on what else runs on it: compare figures from one machine.

``--breakdown`` also times, in turns, the check with every rule on and with every rule switched
off (what the engine itself costs: the halt and data checks, the decision): the JSON then has
``check_all_rules_median_us`` and ``check_no_rules_median_us``, comparable with each other
rather than with ``check_median_us``. (Switching single rules off tells little: the rules read
each other's settings, stop_loss works out the loss budget only while loss_limit is on.)
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from guards.config import GuardsConfig  # noqa: E402
from guards.engine import GuardEngine  # noqa: E402
from guards.tiers import tiers_from_ccxt  # noqa: E402
from guards.types import (  # noqa: E402
    Account,
    GuardContext,
    MarginMode,
    Mark,
    MarketRules,
    OrderIntent,
    Position,
    Side,
)

BTC = "BTC/USDT:USDT"
NOW = 1_717_243_200.0  # 2024-06-01 12:00 UTC: inside the no_overnight session
BTC_PRICE = 67_500.0


def tier_file() -> Path:
    bundled = ROOT / "paper" / "data" / "binance_leverage_tiers.json"
    if bundled.exists():
        return bundled
    return ROOT.parent / "shared" / "data" / "binance_leverage_tiers.json"


def load_markets() -> dict[str, MarketRules]:
    raw = json.loads(tier_file().read_text())
    markets: dict[str, MarketRules] = {}
    for symbol, entries in raw.items():
        if symbol.endswith("/USDT:USDT"):
            markets[symbol] = MarketRules(symbol=symbol, tiers=tiers_from_ccxt(entries))
    return markets


def make_positions(
    markets: dict[str, MarketRules], count: int, cross_every: int
) -> tuple[dict[str, Position], dict[str, float]]:
    """``count`` small positions on symbols other than BTC, with a price per symbol."""
    symbols = [s for s in sorted(markets) if s != BTC][:count]
    positions: dict[str, Position] = {}
    prices: dict[str, float] = {}
    for i, symbol in enumerate(symbols):
        price = 1.0 + (i % 37) * 3.7
        amount = 40.0 / price
        side: Side = "long" if i % 2 == 0 else "short"
        mode: MarginMode = "cross" if cross_every and i % cross_every == 0 else "isolated"
        positions[symbol] = Position(
            symbol=symbol,
            side=side,
            amount=amount,
            entry_price=price,
            margin_mode=mode,
            leverage=3.0,
            margin=amount * price / 3.0,
            stop_price=price * (0.97 if side == "long" else 1.03),
            opened_at=NOW - 3600,
        )
        prices[symbol] = price * (1.001 if i % 3 else 0.999)
    return positions, prices


def context(
    markets: dict[str, MarketRules],
    positions: dict[str, Position],
    prices: dict[str, float],
    now: float,
) -> GuardContext:
    marks = {s: Mark(p, now - 1.0) for s, p in prices.items()}
    marks[BTC] = Mark(BTC_PRICE, now - 1.0)
    return GuardContext(
        account=Account(wallet_balance=100_000.0, positions=positions),
        markets=markets,
        marks=marks,
        now=now,
    )


BENCH_RULES: dict[str, dict[str, object]] = {
    "position_cap": {"max_positions": 500, "max_total_margin_pct": 100},
    "anti_top_up": {"max_stopouts_per_day": 1000},
    "trend": {"enabled": True, "ema_period": 20, "window_min": 60},
    "circuit_breaker": {"liq_notional": 5_000_000},
}


def bench_config(off: tuple[str, ...] = ()) -> GuardsConfig:
    """Defaults, with trend on and caps wide enough for 50-200 small open positions (the
    stop-out bound counts every open position as a possible stop-out: room for 500); the rules
    named in ``off`` switched off."""
    rules: dict[str, dict[str, object]] = {k: dict(v) for k, v in BENCH_RULES.items()}
    for name in off:
        rules.setdefault(name, {})["enabled"] = False
    return GuardsConfig.model_validate(rules)


def seeded_engine(config: GuardsConfig) -> GuardEngine:
    """An engine whose trend EMA and price window have seen a gentle uptrend."""
    engine = GuardEngine(config)
    for i in range(40):
        close = BTC_PRICE * (0.98 + i * 0.0005)
        engine.on_candle(BTC, close, close * 1.001, close * 0.999, close, NOW - (40 - i) * 60)
        engine.on_price(BTC, close, NOW - (40 - i) * 60)
    return engine


def breakdown(intent: OrderIntent, ctx: GuardContext, rounds: int) -> tuple[float, float]:
    """Median µs of the check with every rule on and with every rule off (what the engine
    itself costs). The two take turns, 200 calls each per round, so a slow spell of the machine
    hits both alike."""
    every = seeded_engine(bench_config())
    engines = [every, seeded_engine(bench_config(every.rule_names))]
    for engine in engines:
        decision = engine.check(intent, ctx)
        if decision.outcome != "allow":
            raise SystemExit(f"benchmark order not allowed: {decision.code}")
    samples: list[list[float]] = [[], []]
    for _ in range(rounds):
        for engine, out in zip(engines, samples, strict=True):
            out.extend(timed(partial(engine.check, intent, ctx), 200, 1))
    on, off = (round(statistics.median(out) * 1e6, 2) for out in samples)
    return on, off


def timed(fn: Callable[[], object], runs: int, inner: int) -> list[float]:
    """Seconds per call, one sample per ``inner`` calls."""
    samples = []
    clock = time.perf_counter
    for _ in range(runs):
        start = clock()
        for _ in range(inner):
            fn()
        samples.append((clock() - start) / inner)
    return samples


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--breakdown", action="store_true", help="also time the check with every rule off, in turns"
    )
    args = ap.parse_args(argv)
    markets = load_markets()
    config = bench_config()
    engine = seeded_engine(config)

    positions50, prices50 = make_positions(markets, 50, cross_every=0)
    ctx50 = context(markets, positions50, prices50, NOW)
    intent = OrderIntent(
        symbol=BTC,
        side="long",
        amount=0.01,
        leverage=3.0,
        stop_price=BTC_PRICE * 0.985,
        take_profit=BTC_PRICE * 1.03,
    )
    decision = engine.check(intent, ctx50)
    if decision.outcome != "allow":
        raise SystemExit(f"benchmark order not allowed: {decision.code} {decision.reason}")

    gc.disable()
    check = timed(lambda: engine.check(intent, ctx50), runs=20000, inner=1)
    # The same check when every call brings a new context (nothing cached per context).
    # (2000 distinct objects: a context keeps its account figures once computed)
    fresh_ctxs = [context(markets, positions50, prices50, NOW + i * 1e-3) for i in range(2000)]
    it = iter(fresh_ctxs)
    fresh = timed(lambda: engine.check(intent, next(it)), runs=2000, inner=1)

    positions200, prices200 = make_positions(markets, 200, cross_every=5)
    sweep_ctxs = [context(markets, positions200, prices200, NOW + i) for i in range(300)]
    engine.sweep(sweep_ctxs[0])  # first sweep fills the isolated liquidation-price cache
    its = iter(sweep_ctxs[1:])
    sweep = timed(lambda: engine.sweep(next(its)), runs=250, inner=1)
    cold_engine = GuardEngine(config)

    def cold_sweep() -> None:
        cold_engine.liquidations.clear()  # the engine's isolated liquidation-price memo
        cold_engine.sweep(context(markets, positions200, prices200, NOW))

    cold = timed(cold_sweep, runs=30, inner=1)
    split = breakdown(intent, ctx50, rounds=50) if args.breakdown else None

    candle_engine = GuardEngine(config)
    btc = markets[BTC]
    held = Position(
        symbol=BTC,
        side="long",
        amount=0.05,
        entry_price=BTC_PRICE,
        leverage=3.0,
        margin=0.05 * BTC_PRICE / 3.0,
        stop_price=BTC_PRICE * 0.98,
        opened_at=NOW - 3600,
    )
    minutes = [
        GuardContext(
            account=Account(wallet_balance=10_000.0, positions={BTC: held}),
            markets={BTC: btc},
            marks={BTC: Mark(BTC_PRICE * (1 + 0.0001 * (i % 50 - 25)), NOW + i * 60)},
            now=NOW + i * 60,
        )
        for i in range(20_000)
    ]
    itc = iter(minutes)
    candle = timed(lambda: candle_engine.sweep(next(itc)), runs=len(minutes), inner=1)
    gc.enable()

    result = {
        "check_median_us": round(statistics.median(check) * 1e6, 2),
        "check_p99_us": round(p99(check) * 1e6, 2),
        "check_fresh_ctx_median_us": round(statistics.median(fresh) * 1e6, 2),
        "sweep_200_median_ms": round(statistics.median(sweep) * 1e3, 3),
        "sweep_200_p99_ms": round(p99(sweep) * 1e3, 3),
        "sweep_200_cold_median_ms": round(statistics.median(cold) * 1e3, 3),
        "sweep_candle_median_us": round(statistics.median(candle) * 1e6, 2),
        "sweep_candle_p99_us": round(p99(candle) * 1e6, 2),
        "rules": list(engine.rule_names),
        **(
            {"check_all_rules_median_us": split[0], "check_no_rules_median_us": split[1]}
            if split is not None
            else {}
        ),
        "python": sys.version.split()[0],
    }
    print(f"tiers: {tier_file()}")
    print(
        f"check, 50 positions, {len(engine.rule_names)} rules: "
        f"median {result['check_median_us']} µs, p99 {result['check_p99_us']} µs "
        f"(target median ≤ 10 µs); new context per call {result['check_fresh_ctx_median_us']} µs"
    )
    print(
        f"sweep, 200 positions (1 in 5 cross): median {result['sweep_200_median_ms']} ms, "
        f"p99 {result['sweep_200_p99_ms']} ms (target ≤ 2 ms); "
        f"cold liquidation cache {result['sweep_200_cold_median_ms']} ms"
    )
    print(
        f"sweep per 1-minute candle, 1 position, {len(candle_engine.rule_names)} rules: "
        f"median {result['sweep_candle_median_us']} µs, p99 {result['sweep_candle_p99_us']} µs"
    )
    if split is not None:
        print(
            f"check in turns: every rule on {split[0]} µs, every rule off {split[1]} µs "
            f"(the engine's own share {split[1] / split[0] * 100:.0f}%)"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
