"""Binance market-data endpoints and market streams.

REST: ping, time, exchangeInfo, ticker/24hr, ticker/price, premiumIndex and leverageBracket.
Streams: ``set_price`` pushes ``markPriceUpdate`` events (``<id>@markPrice``,
``!markPrice@arr``) and every liquidation — the core's own, or ``emit_liquidation`` for other
traders' ones — a ``forceOrder`` event (``<id>@forceOrder``, ``!forceOrder@arr``).
"""

from __future__ import annotations

import math
from typing import Any

from bot.emulator.binance.base import BinanceBase
from bot.emulator.binance.shapes import _decimals, _s
from bot.emulator.server import Fault
from paper.core import PaperCore
from paper.markets import PaperMarket


class BinanceMarket(BinanceBase):
    """Market endpoints of the Binance emulator."""

    def ep_ping(self, params: dict[str, str], fault: Fault | None) -> Any:
        return {}

    def ep_time(self, params: dict[str, str], fault: Fault | None) -> Any:
        return {"serverTime": self.now_ms()}

    def ep_exchange_info(self, params: dict[str, str], fault: Fault | None) -> Any:
        symbols = []
        for s in self.core.symbols:
            m = self.core.market(s)
            r = m.rules
            symbols.append(
                {
                    "symbol": m.id,
                    "pair": m.id,
                    "contractType": "PERPETUAL",
                    "deliveryDate": 4133404800000,
                    "onboardDate": 1569398400000,
                    "status": "TRADING",
                    "maintMarginPercent": "2.5000",
                    "requiredMarginPercent": "5.0000",
                    "baseAsset": m.base,
                    "quoteAsset": m.quote,
                    "marginAsset": m.settle,
                    "pricePrecision": _decimals(r.price_step),
                    "quantityPrecision": _decimals(r.amount_step),
                    "baseAssetPrecision": 8,
                    "quotePrecision": 8,
                    "underlyingType": "COIN",
                    "underlyingSubType": [],
                    "triggerProtect": "0.0500",
                    "liquidationFee": _s(r.liquidation_fee_rate),
                    "marketTakeBound": "0.05",
                    "maxMoveOrderLimit": 10000,
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": _s(m.min_price or r.price_step),
                            "maxPrice": _s(m.max_price or 1e9),
                            "tickSize": _s(r.price_step),
                        },
                        {
                            "filterType": "LOT_SIZE",
                            "minQty": _s(r.min_amount or r.amount_step),
                            "maxQty": _s(m.max_amount or 1e9),
                            "stepSize": _s(r.amount_step),
                        },
                        {
                            "filterType": "MARKET_LOT_SIZE",
                            "minQty": _s(r.min_amount or r.amount_step),
                            "maxQty": _s(m.max_market_amount or m.max_amount or 1e9),
                            "stepSize": _s(r.amount_step),
                        },
                        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                        {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                        {"filterType": "MIN_NOTIONAL", "notional": _s(r.min_notional)},
                        {
                            "filterType": "PERCENT_PRICE",
                            "multiplierUp": "1.0500",
                            "multiplierDown": "0.9500",
                            "multiplierDecimal": "4",
                        },
                    ],
                    "orderTypes": [
                        "LIMIT",
                        "MARKET",
                        "STOP",
                        "STOP_MARKET",
                        "TAKE_PROFIT",
                        "TAKE_PROFIT_MARKET",
                        "TRAILING_STOP_MARKET",
                    ],
                    "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
                }
            )
        return {
            "timezone": "UTC",
            "serverTime": self.now_ms(),
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 2400,
                }
            ],
            "exchangeFilters": [],
            "assets": [{"asset": self.core.currency, "marginAvailable": True}],
            "symbols": symbols,
        }

    def _ticker_json(self, m: PaperMarket) -> dict[str, Any]:
        last = self.core.last_price(m.symbol)
        now = self.now_ms()
        return {
            "symbol": m.id,
            "priceChange": "0",
            "priceChangePercent": "0",
            "weightedAvgPrice": _s(last),
            "lastPrice": _s(last),
            "lastQty": "0",
            "openPrice": _s(last),
            "highPrice": _s(last),
            "lowPrice": _s(last),
            "volume": "0",
            "quoteVolume": "0",
            "openTime": now - 86_400_000,
            "closeTime": now,
            "firstId": 0,
            "lastId": 0,
            "count": 0,
        }

    def ep_ticker_24hr(self, params: dict[str, str], fault: Fault | None) -> Any:
        m = self._market(params, required=False)
        if m is not None:
            return self._ticker_json(m)
        return [self._ticker_json(self.core.market(s)) for s in self.core.symbols]

    def ep_ticker_price(self, params: dict[str, str], fault: Fault | None) -> Any:
        def one(m: PaperMarket) -> dict[str, Any]:
            return {
                "symbol": m.id,
                "price": _s(self.core.last_price(m.symbol)),
                "time": self.now_ms(),
            }

        m = self._market(params, required=False)
        if m is not None:
            return one(m)
        return [one(self.core.market(s)) for s in self.core.symbols]

    def _premium_json(self, m: PaperMarket) -> dict[str, Any]:
        now = self.now_ms()
        mark = self.core.mark_price(m.symbol)
        return {
            "symbol": m.id,
            "markPrice": _s(mark),
            "indexPrice": _s(mark),
            "estimatedSettlePrice": _s(mark),
            "lastFundingRate": _s(self.core.funding_rate(m.symbol, now)),
            "interestRate": "0.00010000",
            "nextFundingTime": PaperCore.next_funding_time(now),
            "time": now,
        }

    def ep_premium_index(self, params: dict[str, str], fault: Fault | None) -> Any:
        m = self._market(params, required=False)
        if m is not None:
            return self._premium_json(m)
        return [self._premium_json(self.core.market(s)) for s in self.core.symbols]

    def ep_leverage_bracket(self, params: dict[str, str], fault: Fault | None) -> Any:
        chosen = self._market(params, required=False)
        markets = (
            [chosen] if chosen is not None else [self.core.market(s) for s in self.core.symbols]
        )
        out = []
        for m in markets:
            brackets = []
            for i, t in enumerate(m.rules.tiers):
                brackets.append(
                    {
                        "bracket": i + 1,
                        "initialLeverage": int(t.max_leverage),
                        "notionalCap": t.max_notional if math.isfinite(t.max_notional) else 1e15,
                        "notionalFloor": t.min_notional,
                        "maintMarginRatio": t.mmr,
                        "cum": t.maint_amount,
                    }
                )
            out.append({"symbol": m.id, "brackets": brackets})
        return out[0] if chosen is not None else out

    def _publish_liquidation(
        self, market_id: str, side: str, amount: float, price: float, ts: int
    ) -> None:
        event = {
            "e": "forceOrder",
            "E": ts,
            "o": {
                "s": market_id,
                "S": side,
                "o": "LIMIT",
                "f": "IOC",
                "q": _s(amount),
                "p": _s(price),
                "ap": _s(price),
                "X": "FILLED",
                "l": _s(amount),
                "z": _s(amount),
                "T": ts,
            },
        }
        self.market_liquidations.append(event)
        self._publish(f"{market_id.lower()}@forceOrder", event)
        self._publish("!forceOrder@arr", event)

    def _on_price(self, symbol: str, now: int) -> None:
        """``markPriceUpdate`` for the symbol, and a ``forceOrder`` per new liquidation."""
        m = self.core.market(symbol)
        price = self.core.mark_price(symbol)
        event = {
            "e": "markPriceUpdate",
            "E": now,
            "s": m.id,
            "p": _s(price),
            "i": _s(price),
            "P": _s(price),
            "r": _s(self.core.funding_rate(symbol, now)),
            "T": PaperCore.next_funding_time(now),
        }
        self._publish(f"{m.id.lower()}@markPrice", event)
        self._publish("!markPrice@arr", [event])
        for liq in self.core.liquidations[self._liq_seen :]:
            lm = self.core.market(liq.symbol)
            self._publish_liquidation(
                lm.id, "SELL" if liq.side == "long" else "BUY", liq.amount, liq.price, liq.ts
            )
        self._liq_seen = len(self.core.liquidations)
