"""OKX v5 account endpoints: currencies, account configuration, balance, positions,
leverage and position mode.

What OKX refuses, with its codes: a leverage above the instrument's maximum (59102), changing
the position mode with positions or orders open (59000), a margin mode other than cross /
isolated (51000). A position's ``pos`` is in contracts, signed in net mode.
"""

from __future__ import annotations

from typing import Any

from bot.emulator.okx.base import OkxBase, num
from bot.emulator.server import ApiError, Fault


class OkxAccount(OkxBase):
    """Account endpoints of the OKX emulator."""

    def ep_currencies(self, params: dict[str, str], fault: Fault | None) -> Any:
        coins = {self.core.currency} | {self.core.market(s).base for s in self.core.symbols}
        return self.ok(
            [
                {
                    "ccy": c,
                    "name": c,
                    "chain": f"{c}-emulator",
                    "canDep": False,
                    "canWd": False,
                    "canInternal": False,
                    "minWd": "0",
                    "minFee": "0",
                    "maxFee": "0",
                    "wdTickSz": "8",
                    "mainNet": True,
                }
                for c in sorted(coins)
            ]
        )

    def ep_config(self, params: dict[str, str], fault: Fault | None) -> Any:
        return self.ok(
            [
                {
                    "uid": "1",
                    "mainUid": "1",
                    "acctLv": "2",
                    "posMode": "long_short_mode" if self.long_short_mode else "net_mode",
                    "autoLoan": False,
                    "greeksType": "PA",
                    "level": "Lv1",
                    "levelTmp": "",
                    "ctIsoMode": "automatic",
                    "mgnIsoMode": "automatic",
                    "roleType": "0",
                    "traderInsts": [],
                    "spotRoleType": "0",
                    "opAuth": "0",
                    "kycLv": "2",
                    "label": "guardbot emulator",
                    "ip": "",
                    "perm": "read_only,trade",
                }
            ]
        )

    def ep_balance(self, params: dict[str, str], fault: Fault | None) -> Any:
        core = self.core
        wallet = core.wallet_balance
        upnl = core.unrealized_pnl()
        equity = wallet + upnl
        im = mm = 0.0
        iso = iso_upl = 0.0
        for p in core.positions():
            im += float(p["initialMargin"] or 0.0)
            mm += float(p["maintenanceMargin"] or 0.0)
            if p["marginMode"] == "isolated":
                iso += float(p["info"]["isolatedMargin"])
                iso_upl += float(p["unrealizedPnl"] or 0.0)
        free = max(core.free_margin, 0.0)
        now = str(self.now_ms())
        detail = {
            "ccy": core.currency,
            "eq": num(equity),
            "cashBal": num(wallet),
            "uTime": now,
            "isoEq": num(iso + iso_upl),
            "availEq": num(free),
            "disEq": num(equity),
            "availBal": num(free),
            "frozenBal": num(max(wallet - free, 0.0)),
            "ordFrozen": "0",
            "liab": "0",
            "upl": num(upnl),
            "uplLiab": "0",
            "crossLiab": "0",
            "isoLiab": "0",
            "mgnRatio": num(equity / mm if mm > 0 else 0.0) if mm > 0 else "",
            "interest": "0",
            "twap": "0",
            "maxLoan": "",
            "eqUsd": num(equity),
            "notionalLever": "",
            "stgyEq": "0",
            "isoUpl": num(iso_upl),
            "spotInUseAmt": "",
        }
        return self.ok(
            [
                {
                    "adjEq": num(equity),
                    "details": [detail],
                    "imr": num(im),
                    "isoEq": num(iso + iso_upl),
                    "mgnRatio": num(equity / mm) if mm > 0 else "",
                    "mmr": num(mm),
                    "notionalUsd": "",
                    "ordFroz": "0",
                    "totalEq": num(equity),
                    "uTime": now,
                }
            ]
        )

    def ep_positions(self, params: dict[str, str], fault: Fault | None) -> Any:
        kind = params.get("instType")
        if kind not in (None, "MARGIN", "SWAP", "FUTURES", "OPTION"):
            raise ApiError("51000", "Parameter instType error")
        wanted = set(filter(None, (params.get("instId") or "").split(",")))
        rows = []
        if kind in (None, "SWAP"):
            for p in self.core.positions():
                m = self.core.market(p["symbol"])
                if wanted and m.id not in wanted:
                    continue
                rows.append(self._position_json(p))
        return self.ok(rows)

    def _position_json(self, p: dict[str, Any]) -> dict[str, Any]:
        symbol = p["symbol"]
        m = self.core.market(symbol)
        contracts = float(self.to_contracts(symbol, float(p["contracts"])))
        signed = contracts if p["side"] == "long" else -contracts
        isolated = p["marginMode"] == "isolated"
        liq = p["liquidationPrice"]
        now = str(self.now_ms())
        return {
            "adl": "1",
            "availPos": num(contracts) if isolated else "",
            "avgPx": num(p["entryPrice"]),
            "cTime": str(p["timestamp"]),
            "ccy": m.settle,
            "deltaBS": "",
            "deltaPA": "",
            "gammaBS": "",
            "gammaPA": "",
            "imr": "" if isolated else num(p["initialMargin"]),
            "instId": m.id,
            "instType": "SWAP",
            "interest": "0",
            "idxPx": num(p["markPrice"]),
            "last": num(p["lastPrice"] or p["markPrice"]),
            "lever": num(p["leverage"]),
            "liab": "",
            "liabCcy": "",
            "liqPx": num(liq) if liq else "",
            "markPx": num(p["markPrice"]),
            "margin": num(p["info"]["isolatedMargin"]) if isolated else "",
            "mgnMode": p["marginMode"],
            "mgnRatio": num(p["marginRatio"]) if p["marginRatio"] else "",
            "mmr": num(p["maintenanceMargin"]),
            "notionalUsd": num(p["notional"]),
            "optVal": "",
            "pTime": now,
            "pos": num(signed),
            "posCcy": "",
            "posId": str(abs(hash(symbol)) % 10**12),
            "posSide": "net",
            "thetaBS": "",
            "thetaPA": "",
            "tradeId": "",
            "uTime": now,
            "upl": num(p["unrealizedPnl"]),
            "uplRatio": num((p["percentage"] or 0.0) / 100.0),
            "vegaBS": "",
            "vegaPA": "",
            "closeOrderAlgo": [],
        }

    def ep_set_leverage(self, params: dict[str, str], fault: Fault | None) -> Any:
        market = self._by_id.get(params.get("instId") or "")
        if market is None:
            raise ApiError("51001", "Instrument ID does not exist.")
        mode = params.get("mgnMode")
        if mode not in ("cross", "isolated"):
            raise ApiError("51000", "Parameter mgnMode error")
        if (
            mode == "isolated"
            and params.get("posSide") not in (None, "net")
            and not (self.long_short_mode)
        ):
            raise ApiError("51000", "Parameter posSide error")
        try:
            lev = float(params.get("lever") or "")
        except ValueError:
            raise ApiError("51000", "Parameter lever error") from None
        top = market.rules.max_leverage
        if not 1.0 <= lev <= top:
            raise ApiError("59102", f"Leverage exceeds the maximum leverage {num(top)}.")
        symbol = market.symbol
        self.leverages[(symbol, mode)] = lev
        pos = self.core.position(symbol)
        if self.core.margin_mode(symbol) == mode or pos is None:
            if pos is None and self.core.margin_mode(symbol) != mode:
                self.core.set_margin_mode(mode, symbol)
            self.core.set_leverage(lev, symbol)
        return self.ok(
            [{"instId": market.id, "lever": num(lev), "mgnMode": mode, "posSide": "net"}]
        )

    def ep_set_position_mode(self, params: dict[str, str], fault: Fault | None) -> Any:
        mode = params.get("posMode")
        if mode not in ("net_mode", "long_short_mode"):
            raise ApiError("51000", "Parameter posMode error")
        want = mode == "long_short_mode"
        if want != self.long_short_mode and (self.core.positions() or self.core.open_orders()):
            raise ApiError(
                "59000",
                "Settings failed. Close any open positions or orders before modifying settings.",
            )
        self.long_short_mode = want
        return self.ok([{"posMode": mode}])
