"""Bundled market definitions of the paper exchange.

Owns reading the two files shipped in ``paper/data``: ``markets.json`` (precision, limits and fees
of a few Binance USDⓈ-M perpetuals, each with its ``_source``) and ``binance_leverage_tiers.json``
(ccxt ``fetch_leverage_tiers()`` output). ``PaperMarket`` joins both into the guards'
``MarketRules`` plus what the ccxt-shaped facade needs (ids, limits, the raw tier entries).

Any symbol of the bundled tiers (349 pairs) can be replayed: ``resolve_market`` takes precision
and limits from ``markets.json``, else from a markets snapshot (ccxt ``load_markets`` shape, as
``guardbot download`` and the live cache write it), else derives them from the data, and says
which source it used.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from guards import MarketRules, tiers_from_ccxt
from paper.config import PaperConfig
from paper.venues import venue_market, venue_symbols

MARKETS_FILE = "markets.json"
TIERS_FILE = "binance_leverage_tiers.json"


@dataclass(frozen=True, slots=True)
class PaperMarket:
    """One linear perpetual: the guards' rules plus the ccxt market fields the facade serves."""

    rules: MarketRules
    id: str = ""
    base: str = ""
    quote: str = "USDT"
    settle: str = "USDT"
    min_price: float | None = None
    max_price: float | None = None
    max_amount: float | None = None
    max_market_amount: float | None = None
    #: Raw ccxt leverage-tier entries (``fetch_leverage_tiers`` shape) for this symbol.
    tier_entries: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)

    @property
    def symbol(self) -> str:
        return self.rules.symbol

    @classmethod
    def from_rules(cls, rules: MarketRules) -> PaperMarket:
        """Wrap bare ``MarketRules`` (ids and limits derived from the symbol)."""
        base, _, rest = rules.symbol.partition("/")
        quote, _, settle = rest.partition(":")
        entries = tuple(_tier_entry(i, t, quote or "USDT") for i, t in enumerate(rules.tiers))
        return cls(
            rules=rules,
            id=f"{base}{quote}",
            base=base,
            quote=quote or "USDT",
            settle=settle or quote or "USDT",
            tier_entries=entries,
        )

    def to_ccxt(self) -> dict[str, Any]:
        """The market as ccxt's ``load_markets`` returns it (precision as TICK sizes)."""
        r = self.rules
        return {
            "id": self.id,
            "symbol": r.symbol,
            "base": self.base,
            "quote": self.quote,
            "settle": self.settle,
            "baseId": self.base,
            "quoteId": self.quote,
            "settleId": self.settle,
            "type": "swap",
            "spot": False,
            "margin": False,
            "swap": True,
            "future": False,
            "option": False,
            "active": True,
            "contract": True,
            "linear": True,
            "inverse": False,
            "contractSize": 1.0,
            "expiry": None,
            "expiryDatetime": None,
            "strike": None,
            "optionType": None,
            "taker": r.taker_fee,
            "maker": r.maker_fee,
            "percentage": True,
            "tierBased": False,
            "feeSide": "get",
            "precision": {"amount": r.amount_step, "price": r.price_step},
            "limits": {
                "amount": {"min": r.min_amount or None, "max": self.max_amount},
                "price": {"min": self.min_price, "max": self.max_price},
                "cost": {"min": r.min_notional or None, "max": None},
                "leverage": {"min": 1.0, "max": r.max_leverage},
                "market": {"min": r.min_amount or None, "max": self.max_market_amount},
            },
            "created": None,
            "info": {"symbol": self.id, "liquidationFeeRate": r.liquidation_fee_rate},
        }


def _tier_entry(index: int, tier: Any, currency: str) -> dict[str, Any]:
    return {
        "tier": float(index + 1),
        "currency": currency,
        "minNotional": tier.min_notional,
        "maxNotional": tier.max_notional,
        "maintenanceMarginRate": tier.mmr,
        "maxLeverage": tier.max_leverage,
        "info": {"cum": str(tier.maint_amount)},
    }


def _read_json(name: str) -> Any:
    return json.loads(resources.files("paper").joinpath("data", name).read_text("utf-8"))


@cache
def bundled_tier_entries() -> Mapping[str, tuple[Mapping[str, Any], ...]]:
    """Every bundled ccxt leverage-tier list, by unified symbol (read once)."""
    raw: dict[str, list[dict[str, Any]]] = _read_json(TIERS_FILE)
    return {symbol: tuple(entries) for symbol, entries in raw.items()}


@cache
def _market_specs() -> Mapping[str, Mapping[str, Any]]:
    specs: dict[str, dict[str, Any]] = _read_json(MARKETS_FILE)["markets"]
    return specs


def bundled_symbols() -> tuple[str, ...]:
    """Symbols with full precision/limit data in ``markets.json``."""
    return tuple(_market_specs())


def load_market(symbol: str, config: PaperConfig | None = None) -> PaperMarket:
    """One bundled market; ``config`` sets fee overrides and the tiered liquidation fee rate.

    Under the ``bybit`` / ``okx`` liquidation profiles the market is that venue's bundled one
    (``paper.venues``). Raises ``KeyError`` when the symbol has no precision data or no
    leverage tiers.
    """
    profile = None if config is None else config.profile_for(symbol)
    if config is not None and (profile == "bybit" or profile == "okx"):
        rules, fields = venue_market(profile, symbol)
        return configure(PaperMarket(rules=rules, **fields), config)
    spec = _market_specs()[symbol]
    entries = bundled_tier_entries()[symbol]
    rules = MarketRules(
        symbol=symbol,
        tiers=tiers_from_ccxt(entries),
        amount_step=float(spec["amount_step"]),
        price_step=float(spec["price_step"]),
        min_amount=float(spec["min_amount"]),
        min_notional=float(spec["min_notional"]),
        taker_fee=float(spec["taker"]),
        maker_fee=float(spec["maker"]),
    )
    market = PaperMarket(
        rules=rules,
        id=str(spec["id"]),
        base=str(spec["base"]),
        quote=str(spec["quote"]),
        settle=str(spec["settle"]),
        min_price=float(spec["min_price"]),
        max_price=float(spec["max_price"]),
        max_amount=float(spec["max_amount"]),
        max_market_amount=float(spec["max_market_amount"]),
        tier_entries=entries,
    )
    return configure(market, config) if config is not None else market


def load_markets(
    symbols: Iterable[str] | None = None, config: PaperConfig | None = None
) -> dict[str, PaperMarket]:
    """Bundled markets (all of ``markets.json``, or of the venue profile's file, when None)."""
    profile = None if config is None else config.liquidation_profile
    if symbols is None and (profile == "bybit" or profile == "okx"):
        symbols = venue_symbols(profile)
    chosen = bundled_symbols() if symbols is None else tuple(symbols)
    return {s: load_market(s, config) for s in chosen}


def configure(market: PaperMarket, config: PaperConfig) -> PaperMarket:
    """Apply the config's fee overrides and the liquidation fee rate of the symbol's profile.

    Tiered: ``config.liquidation_fee_rate``; OKX: the taker fee rate (OKX's liquidation fee is
    the taker fee on the notional); Binance and Bybit: 0.
    """
    r = market.rules
    profile = config.profile_for(r.symbol)
    taker = r.taker_fee if config.taker_fee is None else config.taker_fee
    fee_rate = config.liquidation_fee_rate if profile == "tiered" else 0.0
    if profile == "okx":
        fee_rate = taker
    rules = replace(
        r,
        taker_fee=taker,
        maker_fee=r.maker_fee if config.maker_fee is None else config.maker_fee,
        liquidation_fee_rate=fee_rate,
    )
    return replace(market, rules=rules)


# ---------------------------------------------------------------------------- any symbol
#: Binance USDⓈ-M defaults where neither markets.json nor a snapshot gives a value: the most
#: common MIN_NOTIONAL filter (5 USDT) and the Regular (VIP 0) fees.
DEFAULT_MIN_NOTIONAL = 5.0
DEFAULT_TAKER = 0.0005
DEFAULT_MAKER = 0.0002


class UnknownMarket(KeyError):
    """A symbol the paper exchange has no rules for; ``str()`` is one readable message."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown market"


def read_snapshot(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Markets and leverage tiers of a markets snapshot file.

    Accepts the live cache's and ``guardbot download``'s file (``{"markets": {...}, "tiers":
    {...}, ...}``) and a bare ccxt ``load_markets()`` dump (``{symbol: market}``). Raises
    ``UnknownMarket`` with the file named when it cannot be read.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UnknownMarket(f"cannot read markets snapshot {path}: {exc}") from None
    if not isinstance(data, dict):
        raise UnknownMarket(f"markets snapshot {path} is not a JSON object")
    if isinstance(data.get("markets"), dict):
        tiers = data.get("tiers")
        return dict(data["markets"]), dict(tiers) if isinstance(tiers, dict) else {}
    markets = {k: v for k, v in data.items() if isinstance(v, dict) and "symbol" in v}
    if not markets:
        raise UnknownMarket(f"markets snapshot {path} holds no ccxt markets")
    return markets, {}


def _num(value: Any, default: float | None = None) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out if math.isfinite(out) else default


def market_from_ccxt(
    symbol: str,
    market: Mapping[str, Any],
    tier_entries: Sequence[Mapping[str, Any]],
    config: PaperConfig | None = None,
) -> PaperMarket:
    """A market from ccxt's unified ``load_markets`` structure (precision as tick sizes)."""
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}

    def limit(kind: str, side: str) -> float | None:
        return _num((limits.get(kind) or {}).get(side))

    price_step = _num(precision.get("price"))
    amount_step = _num(precision.get("amount"))
    if not price_step or not amount_step or price_step <= 0 or amount_step <= 0:
        raise UnknownMarket(f"the snapshot's market {symbol} has no price/amount precision")
    rules = MarketRules(
        symbol=symbol,
        tiers=tiers_from_ccxt(tier_entries),
        amount_step=amount_step,
        price_step=price_step,
        min_amount=limit("amount", "min") or amount_step,
        min_notional=limit("cost", "min") or 0.0,
        taker_fee=_num(market.get("taker"), DEFAULT_TAKER) or 0.0,
        maker_fee=_num(market.get("maker"), DEFAULT_MAKER) or 0.0,
    )
    base, _, rest = symbol.partition("/")
    quote, _, settle = rest.partition(":")
    out = PaperMarket(
        rules=rules,
        id=str(market.get("id") or f"{base}{quote}"),
        base=str(market.get("base") or base),
        quote=str(market.get("quote") or quote),
        settle=str(market.get("settle") or settle or quote),
        min_price=limit("price", "min"),
        max_price=limit("price", "max"),
        max_amount=limit("amount", "max"),
        max_market_amount=limit("market", "max"),
        tier_entries=tuple(tier_entries),
    )
    return configure(out, config) if config is not None else out


def price_step_of(prices: Iterable[float], max_decimals: int = 8) -> float:
    """The coarsest power-of-ten tick that writes every price exactly (1e-8 at the finest)."""
    decimals = 0
    for p in prices:
        while decimals < max_decimals:
            scaled = p * 10**decimals
            if abs(scaled - round(scaled)) <= 1e-6 * max(1.0, abs(scaled)):
                break
            decimals += 1
        if decimals == max_decimals:
            break
    return float(f"1e-{decimals}")


def amount_step_for(price: float) -> float:
    """A power-of-ten amount step worth about 0.1 to 1 quote units at ``price`` (at most 1)."""
    if not price > 0:
        return 1.0
    exponent = math.floor(math.log10(1.0 / price))
    return min(1.0, 10.0**exponent)


def derived_market(
    symbol: str,
    tier_entries: Sequence[Mapping[str, Any]],
    prices: Sequence[float],
    config: PaperConfig | None = None,
) -> tuple[PaperMarket, str]:
    """A market whose precision comes from the data: the tick from the prices' decimals, the
    amount step from the price level, Binance's default minimum notional and fees.

    Returns the market and a sentence saying how each value was found.
    """
    sample = [p for p in prices[:5000] if p > 0 and math.isfinite(p)]
    tick = price_step_of(sample) if sample else 0.01
    level = statistics.median(sample) if sample else 1.0
    step = amount_step_for(level)
    rules = MarketRules(
        symbol=symbol,
        tiers=tiers_from_ccxt(tier_entries),
        amount_step=step,
        price_step=tick,
        min_amount=step,
        min_notional=DEFAULT_MIN_NOTIONAL,
        taker_fee=DEFAULT_TAKER,
        maker_fee=DEFAULT_MAKER,
    )
    base, _, rest = symbol.partition("/")
    quote, _, settle = rest.partition(":")
    market = PaperMarket(
        rules=rules,
        id=f"{base}{quote}",
        base=base,
        quote=quote or "USDT",
        settle=settle or quote or "USDT",
        tier_entries=tuple(tier_entries),
    )
    how = (
        f"derived from the data: tick {tick:g} (price decimals), amount step {step:g} "
        f"(price level {level:,.6g}), min notional {DEFAULT_MIN_NOTIONAL:g}, fees "
        f"{DEFAULT_TAKER:.2%}/{DEFAULT_MAKER:.2%}; tiers bundled"
    )
    return (configure(market, config) if config is not None else market), how


def spot_hint(symbol: str) -> str:
    """Advice for a symbol that is not a linear perpetual's (a spot or odd file name)."""
    tiers = bundled_tier_entries()
    if ":" not in symbol and "/" in symbol:
        quote = symbol.partition("/")[2]
        perp = f"{symbol}:{quote}"
        if perp in tiers:
            return (
                f"{symbol} is a spot symbol (the file name has no settle currency); replay "
                f"trades USDT-margined perpetuals: pass --symbol {perp} to replay these candles "
                "as the perpetual"
            )
        return f"{symbol} is a spot symbol; pass --symbol with a perpetual, e.g. BTC/USDT:USDT"
    if "/" not in symbol:
        return f"cannot tell a market from {symbol!r}: pass --symbol, e.g. --symbol SOL/USDT:USDT"
    return (
        f"{len(tiers)} USDⓈ-M perpetuals have bundled leverage tiers; for another one give a "
        "markets snapshot with its tiers (feed.markets_path, written by guardbot download)"
    )


def resolve_market(
    symbol: str,
    config: PaperConfig | None = None,
    *,
    snapshot: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None,
    snapshot_name: str = "snapshot",
    prices: Sequence[float] = (),
) -> tuple[PaperMarket, str]:
    """The market rules of ``symbol`` and where they came from, in this order: the bundled
    ``markets.json``; a markets snapshot (``snapshot``: markets and tiers); derived from the data
    (``prices``) with the bundled tiers. Leverage tiers come from the snapshot when it has them
    for the symbol, else the bundled file. Raises ``UnknownMarket`` (with advice) otherwise.
    """
    markets, snap_tiers = snapshot if snapshot is not None else ({}, {})
    tiers = snap_tiers.get(symbol) or bundled_tier_entries().get(symbol)
    if not tiers:
        raise UnknownMarket(f"no leverage tiers for {symbol}: {spot_hint(symbol)}")
    tier_src = "snapshot" if snap_tiers.get(symbol) else "bundled"
    if symbol in _market_specs() and symbol not in markets:
        market = load_market(symbol, config)
        if tier_src == "snapshot":
            market = replace(
                market,
                rules=replace(market.rules, tiers=tiers_from_ccxt(tiers)),
                tier_entries=tuple(tiers),
            )
        return market, f"bundled (paper/data/markets.json), tiers {tier_src}"
    if symbol in markets:
        market = market_from_ccxt(symbol, markets[symbol], tiers, config)
        return market, f"markets snapshot {snapshot_name}, tiers {tier_src}"
    if not prices:
        raise UnknownMarket(
            f"no precision or limits for {symbol}: give a markets snapshot (feed.markets_path)"
        )
    return derived_market(symbol, tiers, prices, config)
