"""OKX v5 public endpoints: time, instruments, ticker, mark price and position tiers.

The instruments and position tiers are the bundled records (``paper.venues``: OKX's own API
shapes, sizes in contracts); only USDT-margined perpetual swaps are listed (other instrument
types answer an empty list). ``position-tiers`` wants ``instType``, ``tdMode`` and, for swaps,
``instFamily`` or ``uly`` (51000 otherwise), as OKX does.
"""

from __future__ import annotations

from typing import Any

from bot.emulator.okx.base import OkxBase, num
from bot.emulator.server import ApiError, Fault
from paper.markets import PaperMarket
from paper.venues import instrument, raw_tiers


class OkxMarket(OkxBase):
    """Public endpoints of the OKX emulator."""

    def _public_market(self, inst_id: str | None) -> PaperMarket:
        if not inst_id:
            raise ApiError("50014", "Parameter instId can not be empty.")
        market = self._by_id.get(inst_id)
        if market is None:
            raise ApiError("51001", "Instrument ID does not exist.")
        return market

    def ep_time(self, params: dict[str, str], fault: Fault | None) -> Any:
        return self.ok([{"ts": str(self.now_ms())}])

    def ep_instruments(self, params: dict[str, str], fault: Fault | None) -> Any:
        kind = params.get("instType")
        if not kind:
            raise ApiError("50014", "Parameter instType can not be empty.")
        if kind not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
            raise ApiError("51000", "Parameter instType error")
        rows = []
        if kind == "SWAP":
            for s in self.core.symbols:
                row = self._instrument(s)
                if params.get("instId") in (None, row["instId"]):
                    rows.append(row)
        return self.ok(rows)

    def _instrument(self, symbol: str) -> dict[str, Any]:
        try:
            return dict(instrument("okx", symbol))
        except KeyError:
            pass
        m = self.core.market(symbol)
        r = m.rules
        return {  # a market without a bundled record: its paper rules, one unit a contract
            "instType": "SWAP",
            "instId": m.id,
            "uly": f"{m.base}-{m.quote}",
            "instFamily": f"{m.base}-{m.quote}",
            "ctType": "linear",
            "ctVal": "1",
            "ctMult": "1",
            "ctValCcy": m.base,
            "settleCcy": m.settle,
            "lotSz": num(r.amount_step),
            "minSz": num(r.min_amount or r.amount_step),
            "tickSz": num(r.price_step),
            "lever": num(r.max_leverage),
            "maxLmtSz": num(m.max_amount or 1e8),
            "maxMktSz": num(m.max_market_amount or 1e6),
            "state": "live",
            "listTime": "1573557408000",
            "expTime": "",
            "alias": "",
            "baseCcy": "",
            "quoteCcy": "",
            "optType": "",
            "stk": "",
        }

    def ep_ticker(self, params: dict[str, str], fault: Fault | None) -> Any:
        m = self._public_market(params.get("instId"))
        last = self.core.last_price(m.symbol)
        now = str(self.now_ms())
        px = num(last)
        return self.ok(
            [
                {
                    "instType": "SWAP",
                    "instId": m.id,
                    "last": px,
                    "lastSz": "1",
                    "askPx": px,
                    "askSz": "1",
                    "bidPx": px,
                    "bidSz": "1",
                    "open24h": px,
                    "high24h": px,
                    "low24h": px,
                    "volCcy24h": "0",
                    "vol24h": "0",
                    "sodUtc0": px,
                    "sodUtc8": px,
                    "ts": now,
                }
            ]
        )

    def ep_mark_price(self, params: dict[str, str], fault: Fault | None) -> Any:
        kind = params.get("instType")
        if not kind:
            raise ApiError("50014", "Parameter instType can not be empty.")
        rows = []
        if kind == "SWAP":
            wanted = params.get("instId")
            for s in self.core.symbols:
                m = self.core.market(s)
                mark = self.core.mark_price(s)
                if mark is None or (wanted and wanted != m.id):
                    continue
                rows.append(
                    {
                        "instType": "SWAP",
                        "instId": m.id,
                        "markPx": num(mark),
                        "ts": str(self.now_ms()),
                    }
                )
        return self.ok(rows)

    def ep_position_tiers(self, params: dict[str, str], fault: Fault | None) -> Any:
        kind = params.get("instType")
        if not kind:
            raise ApiError("50014", "Parameter instType can not be empty.")
        mode = params.get("tdMode")
        if mode not in ("cross", "isolated"):
            raise ApiError("51000", "Parameter tdMode error")
        family = params.get("instFamily") or params.get("uly")
        if kind in ("SWAP", "FUTURES", "OPTION") and not family:
            raise ApiError("50015", "Either parameter instFamily or uly is required.")
        rows: list[dict[str, Any]] = []
        for s in self.core.symbols:
            inst = self._instrument(s)
            if inst.get("instFamily") != family and inst.get("uly") != family:
                continue
            try:
                tiers = [dict(t) for t in raw_tiers("okx", s)]
            except KeyError:
                tiers = [
                    {
                        "tier": str(i + 1),
                        "minSz": num(t.min_notional),
                        "maxSz": num(t.max_notional if t.max_notional != float("inf") else 1e12),
                        "mmr": num(t.mmr),
                        "imr": num(1.0 / t.max_leverage),
                        "maxLever": num(t.max_leverage),
                        "instFamily": family,
                        "uly": family,
                        "instId": "",
                        "optMgnFactor": "0",
                        "quoteMaxLoan": "",
                        "baseMaxLoan": "",
                    }
                    for i, t in enumerate(self.core.market(s).rules.tiers)
                ]
            rows.extend(tiers)
        return self.ok(rows)
