"""Bundled markets of the ``bybit`` and ``okx`` liquidation profiles (``paper/data``).

``paper/data/bybit.json`` and ``paper/data/okx.json`` hold, per unified symbol, the venue's own
instrument record (Bybit v5 ``instruments-info``, OKX v5 ``public/instruments``), its tier list
in the venue's API shape (Bybit ``market/risk-limit``, OKX ``public/position-tiers``) and its
base fee rates; ``paper/data/README.md`` names the source of each. This module turns them into

- ccxt's ``fetch_leverage_tiers`` entries, exactly as ccxt 4.5's ``bybit`` / ``okx``
  ``parse_market_leverage_tiers`` build them (OKX's ``minNotional`` / ``maxNotional`` are
  contracts), so the paper profiles read their tiers through the same
  ``guards.tiers_from_ccxt`` conversion live mode uses;
- the ``MarketRules`` and the other ``PaperMarket`` fields in base units (OKX's contract value
  applied), whose tiers carry the venue's liquidation model (``paper.markets.load_market``
  builds the ``PaperMarket``; this module does not import it, so there is no import circle);
- the raw records the venue emulators serve (``instrument``, ``raw_tiers``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any, Literal

from guards import LiquidationModel, MarketRules, tiers_from_ccxt

Venue = Literal["bybit", "okx"]
VENUES: tuple[Venue, ...] = ("bybit", "okx")
_FILES: Mapping[Venue, str] = {"bybit": "bybit.json", "okx": "okx.json"}


@cache
def _data(venue: Venue) -> Mapping[str, Any]:
    if venue not in _FILES:
        raise KeyError(f"no bundled markets for venue {venue!r}")
    text = resources.files("paper").joinpath("data", _FILES[venue]).read_text("utf-8")
    data: Mapping[str, Any] = json.loads(text)["markets"]
    return data


def venue_symbols(venue: Venue) -> tuple[str, ...]:
    """Unified symbols bundled for ``venue``."""
    return tuple(_data(venue))


def _spec(venue: Venue, symbol: str) -> Mapping[str, Any]:
    try:
        spec: Mapping[str, Any] = _data(venue)[symbol]
    except KeyError:
        raise KeyError(
            f"no bundled {venue} market {symbol!r} (paper/data/{_FILES[venue]} has "
            f"{', '.join(venue_symbols(venue))})"
        ) from None
    return spec


def instrument(venue: Venue, symbol: str) -> Mapping[str, Any]:
    """The venue's instrument record of ``symbol`` (its API shape)."""
    found: Mapping[str, Any] = _spec(venue, symbol)["instrument"]
    return found


def raw_tiers(venue: Venue, symbol: str) -> list[Mapping[str, Any]]:
    """The venue's tier list of ``symbol`` (Bybit risk limits, OKX position tiers)."""
    key = "risk_limits" if venue == "bybit" else "position_tiers"
    return list(_spec(venue, symbol)[key])


def contract_size(venue: Venue, symbol: str) -> float:
    """Base units per contract: OKX's ``ctVal``; 1 on Bybit (linear quantities are base units)."""
    if venue == "okx":
        return float(instrument(venue, symbol)["ctVal"])
    return 1.0


def ccxt_tier_entries(venue: Venue, symbol: str) -> list[dict[str, Any]]:
    """``fetch_leverage_tiers`` entries of ``symbol`` as ccxt 4.5 parses the venue's list.

    Bybit (``bybit.parse_market_leverage_tiers``): ``minNotional`` is the previous tier's
    ``riskLimitValue`` (0 first), ``maxNotional`` its own, ``maintenanceMarginRate`` the
    ``maintenanceMargin``. OKX (``okx.parse_market_leverage_tiers``): ``minNotional`` /
    ``maxNotional`` are ``minSz`` / ``maxSz`` (contracts), ``maintenanceMarginRate`` ``mmr``,
    ``maxLeverage`` ``maxLever``. ``info`` is the raw tier.
    """
    rows = raw_tiers(venue, symbol)
    entries: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        if venue == "bybit":
            low = float(rows[i - 1]["riskLimitValue"]) if i else 0.0
            entries.append(
                {
                    "tier": int(row["id"]),
                    "symbol": symbol,
                    "currency": "USDT",
                    "minNotional": low,
                    "maxNotional": float(row["riskLimitValue"]),
                    "maintenanceMarginRate": float(row["maintenanceMargin"]),
                    "maxLeverage": float(row["maxLeverage"]),
                    "info": dict(row),
                }
            )
        else:
            entries.append(
                {
                    "tier": int(row["tier"]),
                    "symbol": symbol,
                    "currency": "USDT",
                    "minNotional": float(row["minSz"]),
                    "maxNotional": float(row["maxSz"]),
                    "maintenanceMarginRate": float(row["mmr"]),
                    "maxLeverage": float(row["maxLever"]),
                    "info": dict(row),
                }
            )
    return entries


def venue_market(venue: Venue, symbol: str) -> tuple[MarketRules, dict[str, Any]]:
    """A bundled venue market: its ``MarketRules`` and the other ``PaperMarket`` fields.

    In base units, the tiers under the venue's model. Raises ``KeyError`` for a symbol the
    venue's file does not hold.
    """
    spec = _spec(venue, symbol)
    inst = spec["instrument"]
    model: LiquidationModel = venue
    size = contract_size(venue, symbol)
    tiers = tiers_from_ccxt(ccxt_tier_entries(venue, symbol), model=model, contract_size=size)
    if venue == "bybit":
        lot = inst["lotSizeFilter"]
        prices = inst["priceFilter"]
        step = float(lot["qtyStep"])
        min_amount = float(lot["minOrderQty"])
        max_amount = float(lot["maxOrderQty"])
        max_market = float(lot.get("maxMktOrderQty") or lot["maxOrderQty"])
        tick = float(prices["tickSize"])
        min_price: float | None = float(prices["minPrice"])
        max_price: float | None = float(prices["maxPrice"])
        min_notional = float(lot.get("minNotionalValue") or 0.0)
        market_id, base = str(inst["symbol"]), str(inst["baseCoin"])
    else:
        ct = Decimal(str(inst["ctVal"]))
        step = float(Decimal(str(inst["lotSz"])) * ct)
        min_amount = float(Decimal(str(inst["minSz"])) * ct)
        max_amount = float(Decimal(str(inst["maxLmtSz"])) * ct)
        max_market = float(Decimal(str(inst["maxMktSz"])) * ct)
        tick = float(inst["tickSz"])
        min_price = max_price = None
        min_notional = 0.0
        market_id, base = str(inst["instId"]), str(inst["ctValCcy"])
    rules = MarketRules(
        symbol=symbol,
        tiers=tiers,
        amount_step=step,
        price_step=tick,
        min_amount=min_amount,
        min_notional=min_notional,
        taker_fee=float(spec["taker"]),
        maker_fee=float(spec["maker"]),
        liquidation_model=model,
    )
    fields = {
        "id": market_id,
        "base": base,
        "quote": "USDT",
        "settle": "USDT",
        "min_price": min_price,
        "max_price": max_price,
        "max_amount": max_amount,
        "max_market_amount": max_market,
        "tier_entries": tuple(ccxt_tier_entries(venue, symbol)),
    }
    return rules, fields
