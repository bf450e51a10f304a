"""Bybit v5 market-data endpoints: time, instruments, tickers and risk limits.

The instruments and risk limits are the bundled records (``paper.venues``: Bybit's own API
shapes); only linear USDT perpetuals are listed (other categories answer an empty list). The
risk-limit endpoint pages like Bybit's (``cursor`` / ``nextPageCursor``, empty when done).
"""

from __future__ import annotations

import math
from typing import Any

from bot.emulator.bybit.base import BybitBase, num
from bot.emulator.server import ApiError, Fault
from paper.venues import instrument, raw_tiers


class BybitMarket(BybitBase):
    """Market endpoints of the Bybit emulator."""

    def ep_time(self, params: dict[str, str], fault: Fault | None) -> Any:
        now = self.now_ms()
        return self.ok({"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)})

    def ep_instruments(self, params: dict[str, str], fault: Fault | None) -> Any:
        self._linear(params)
        rows: list[dict[str, Any]] = []
        if params["category"] == "linear":
            wanted = params.get("symbol")
            for s in self.core.symbols:
                m = self.core.market(s)
                if wanted and m.id != wanted:
                    continue
                rows.append(self._instrument(s))
        return self.ok({"category": params["category"], "list": rows, "nextPageCursor": ""})

    def _instrument(self, symbol: str) -> dict[str, Any]:
        try:
            return dict(instrument("bybit", symbol))
        except KeyError:
            pass
        m = self.core.market(symbol)
        r = m.rules
        return {  # a market without a bundled record: its paper rules in Bybit's shape
            "symbol": m.id,
            "contractType": "LinearPerpetual",
            "status": "Trading",
            "baseCoin": m.base,
            "quoteCoin": m.quote,
            "settleCoin": m.settle,
            "launchTime": "1585526400000",
            "deliveryTime": "0",
            "priceScale": "2",
            "leverageFilter": {
                "minLeverage": "1",
                "maxLeverage": num(r.max_leverage),
                "leverageStep": "0.01",
            },
            "priceFilter": {
                "minPrice": num(r.price_step),
                "maxPrice": "999999",
                "tickSize": num(r.price_step),
            },
            "lotSizeFilter": {
                "maxOrderQty": num(m.max_amount or 1e6),
                "minOrderQty": num(r.min_amount or r.amount_step),
                "qtyStep": num(r.amount_step),
            },
            "unifiedMarginTrade": True,
            "fundingInterval": 480,
        }

    def ep_tickers(self, params: dict[str, str], fault: Fault | None) -> Any:
        self._linear(params)
        rows: list[dict[str, Any]] = []
        if params["category"] == "linear":
            wanted = self._market(params, required=False)
            for s in self.core.symbols:
                if wanted is not None and s != wanted.symbol:
                    continue
                last = self.core.last_price(s)
                if last is None:
                    continue
                mark = self.core.mark_price(s) or last
                rows.append(
                    {
                        "symbol": self.core.market(s).id,
                        "lastPrice": num(last),
                        "indexPrice": num(mark),
                        "markPrice": num(mark),
                        "prevPrice24h": num(last),
                        "price24hPcnt": "0",
                        "highPrice24h": num(last),
                        "lowPrice24h": num(last),
                        "prevPrice1h": num(last),
                        "openInterest": "0",
                        "openInterestValue": "0",
                        "turnover24h": "0",
                        "volume24h": "0",
                        "fundingRate": num(self.core.config.funding_rate),
                        "nextFundingTime": str(self.core.next_funding_time(self.now_ms())),
                        "predictedDeliveryPrice": "",
                        "basisRate": "",
                        "deliveryFeeRate": "",
                        "deliveryTime": "0",
                        "ask1Size": "1",
                        "bid1Price": num(last),
                        "ask1Price": num(last),
                        "bid1Size": "1",
                    }
                )
        return self.ok({"category": params["category"], "list": rows})

    def ep_risk_limit(self, params: dict[str, str], fault: Fault | None) -> Any:
        self._linear(params)
        if params["category"] != "linear":
            return self.ok({"category": params["category"], "list": [], "nextPageCursor": ""})
        wanted = self._market(params, required=False)
        rows: list[dict[str, Any]] = []
        for s in self.core.symbols:
            if wanted is not None and s != wanted.symbol:
                continue
            rows.extend(self._risk_limits(s))
        cursor = params.get("cursor")
        if cursor:
            raise ApiError(10001, f"params error: cursor {cursor} invalid")  # one page served
        return self.ok({"category": "linear", "list": rows, "nextPageCursor": ""})

    def _risk_limits(self, symbol: str) -> list[dict[str, Any]]:
        m = self.core.market(symbol)
        try:
            rows = [dict(r) for r in raw_tiers("bybit", symbol)]
        except KeyError:
            rows = []
            for i, t in enumerate(m.rules.tiers):
                rows.append(
                    {
                        "id": i + 1,
                        "symbol": m.id,
                        "riskLimitValue": num(
                            t.max_notional if math.isfinite(t.max_notional) else 1e12
                        ),
                        "maintenanceMargin": num(t.mmr),
                        "maxLeverage": num(t.max_leverage),
                        "isLowestRisk": 1 if i == 0 else 0,
                        "mmDeduction": "" if i == 0 else num(t.maint_amount),
                    }
                )
        for row in rows:
            # Bybit's field; not on the published page: 1 / max leverage (paper/data/README.md)
            row.setdefault("initialMargin", num(round(1.0 / float(row["maxLeverage"]), 6)))
        return rows
