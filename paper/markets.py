"""Bundled market definitions of the paper exchange.

Owns reading the two files shipped in ``paper/data``: ``markets.json`` (precision, limits and fees
of a few Binance USDⓈ-M perpetuals, each with its ``_source``) and ``binance_leverage_tiers.json``
(ccxt ``fetch_leverage_tiers()`` output). ``PaperMarket`` joins both into the guards'
``MarketRules`` plus what the ccxt-shaped facade needs (ids, limits, the raw tier entries).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
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
