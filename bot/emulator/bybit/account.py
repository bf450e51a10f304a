"""Bybit v5 account endpoints: API key and account info, wallet balance, positions, leverage,
the unified account's margin mode and the position mode.

What Bybit refuses, with its codes: leverage "not modified" (110043) or above the risk limit's
maximum (10001), different buy and sell leverages in one-way mode (10001), switching the
margin mode with positions or orders open (3400045, "Set margin mode failed"), switching the
position mode with positions (110024) or orders (110028) open, and "not modified" (110025).
"""

from __future__ import annotations

from typing import Any

from ccxt.base.errors import BaseError

from bot.emulator.bybit.base import BybitBase, num
from bot.emulator.server import ApiError, Fault

_MODES = {"ISOLATED_MARGIN", "REGULAR_MARGIN", "PORTFOLIO_MARGIN"}


class BybitAccount(BybitBase):
    """Account endpoints of the Bybit emulator."""

    def ep_query_api(self, params: dict[str, str], fault: Fault | None) -> Any:
        return self.ok(
            {
                "id": "1",
                "note": "guardbot emulator",
                "apiKey": self.api_key,
                "readOnly": 0,
                "secret": "",
                "permissions": {
                    "ContractTrade": ["Order", "Position"],
                    "Spot": [],
                    "Wallet": [],
                    "Options": [],
                    "Derivatives": [],
                    "CopyTrading": [],
                    "BlockTrade": [],
                    "Exchange": [],
                    "NFT": [],
                },
                "ips": ["*"],
                "type": 1,
                "unified": 0,
                "uta": 1,
                "userID": 1,
                "isMaster": True,
            }
        )

    def ep_coin_info(self, params: dict[str, str], fault: Fault | None) -> Any:
        """``/v5/asset/coin/query-info`` (ccxt's ``fetch_currencies`` with a key): the settle
        coin and the markets' base coins, without chains (no transfers are emulated)."""
        coins = {self.core.currency} | {self.core.market(s).base for s in self.core.symbols}
        wanted = params.get("coin")
        rows = [
            {"name": c, "coin": c, "remainAmount": "0", "chains": []}
            for c in sorted(coins)
            if wanted is None or wanted == c
        ]
        return self.ok({"rows": rows})

    def ep_account_info(self, params: dict[str, str], fault: Fault | None) -> Any:
        return self.ok(
            {
                "unifiedMarginStatus": 6,
                "marginMode": self.account_margin_mode,
                "isMasterTrader": False,
                "spotHedgingStatus": "OFF",
                "updatedTime": str(self.now_ms()),
                "dcpStatus": "OFF",
                "timeWindow": 0,
                "smpGroup": 0,
            }
        )

    def ep_wallet_balance(self, params: dict[str, str], fault: Fault | None) -> Any:
        account_type = params.get("accountType")
        if account_type is None:
            raise ApiError(10001, "params error: accountType is empty")
        if account_type != "UNIFIED":
            raise ApiError(10001, f"accountType only support UNIFIED, not {account_type}")
        core = self.core
        wallet = core.wallet_balance
        upnl = core.unrealized_pnl()
        im = mm = 0.0
        for p in core.positions():
            im += float(p["initialMargin"] or 0.0)
            mm += float(p["maintenanceMargin"] or 0.0)
        free = core.free_margin
        equity = wallet + upnl
        coin = {
            "coin": core.currency,
            "equity": num(equity),
            "usdValue": num(equity),
            "walletBalance": num(wallet),
            "free": "",
            "locked": "0",
            "spotHedgingQty": "0",
            "borrowAmount": "0",
            "availableToWithdraw": num(max(free, 0.0)),
            "accruedInterest": "0",
            "totalOrderIM": "0",
            "totalPositionIM": num(im),
            "totalPositionMM": num(mm),
            "unrealisedPnl": num(upnl),
            "cumRealisedPnl": num(core.realized_pnl),
            "bonus": "0",
            "marginCollateral": True,
            "collateralSwitch": True,
        }
        account = {
            "accountType": "UNIFIED",
            "accountIMRate": num(im / equity if equity > 0 else 0.0),
            "accountMMRate": num(mm / equity if equity > 0 else 0.0),
            "totalEquity": num(equity),
            "totalWalletBalance": num(wallet),
            "totalMarginBalance": num(equity),
            "totalAvailableBalance": num(max(free, 0.0)),
            "totalPerpUPL": num(upnl),
            "totalInitialMargin": num(im),
            "totalMaintenanceMargin": num(mm),
            "accountLTV": "0",
            "coin": [coin],
        }
        return self.ok({"list": [account]})

    def ep_positions(self, params: dict[str, str], fault: Fault | None) -> Any:
        self._linear(params)
        market = self._market(params, required=False)
        if market is None and not params.get("settleCoin") and not params.get("baseCoin"):
            raise ApiError(10001, "params error: symbol or settleCoin is required")
        rows: list[dict[str, Any]] = []
        if params["category"] == "linear":
            wanted = [market.symbol] if market is not None else None
            for p in self.core.positions(wanted):
                rows.append(self._position_json(p))
        return self.ok({"category": params["category"], "list": rows, "nextPageCursor": ""})

    def _position_json(self, p: dict[str, Any]) -> dict[str, Any]:
        symbol = p["symbol"]
        m = self.core.market(symbol)
        info = p["info"]
        isolated = p["marginMode"] == "isolated"
        entry = float(p["entryPrice"])
        size = float(p["contracts"])
        liq = p["liquidationPrice"]
        stop = next((o for o in self.core.open_orders(symbol) if o.get("stopLossPrice")), None)
        return {
            "positionIdx": 0,
            "riskId": 1,
            "riskLimitValue": num(m.rules.tiers[0].max_notional),
            "symbol": m.id,
            "side": "Buy" if p["side"] == "long" else "Sell",
            "size": num(size),
            "avgPrice": num(entry),
            "positionValue": num(size * entry),
            "tradeMode": 1 if isolated else 0,
            "autoAddMargin": 0,
            "positionStatus": "Normal",
            "leverage": num(p["leverage"]),
            "markPrice": num(p["markPrice"]),
            "liqPrice": num(liq) if liq else "",
            "bustPrice": "",
            "positionIM": num(p["initialMargin"]),
            "positionMM": num(p["maintenanceMargin"]),
            "positionBalance": num(info["isolatedMargin"] if isolated else p["initialMargin"]),
            "takeProfit": "",
            "stopLoss": "",
            "trailingStop": "0",
            "sessionAvgPrice": "",
            "delta": "",
            "gamma": "",
            "vega": "",
            "theta": "",
            "unrealisedPnl": num(p["unrealizedPnl"]),
            "curRealisedPnl": "0",
            "cumRealisedPnl": "0",
            "adlRankIndicator": 2,
            "createdTime": str(p["timestamp"]),
            "updatedTime": str(p["timestamp"]),
            "seq": 1,
            "isReduceOnly": False,
            "mmrSysUpdatedTime": "",
            "leverageSysUpdatedTime": "",
            "tpslMode": "Full",
            "hasConditionalStop": stop is not None,
        }

    def ep_set_leverage(self, params: dict[str, str], fault: Fault | None) -> Any:
        self._linear(params)
        market = self._market(params)
        assert market is not None
        buy, sell = params.get("buyLeverage"), params.get("sellLeverage")
        if not buy or not sell:
            raise ApiError(10001, "params error: buyLeverage and sellLeverage are required")
        if buy != sell and not self.hedge_mode:
            raise ApiError(10001, "buy leverage must be equal to sell leverage in one-way mode")
        try:
            lev = float(buy)
        except ValueError:
            raise ApiError(10001, f"params error: leverage {buy} invalid") from None
        if not 1.0 <= lev <= market.rules.max_leverage:
            raise ApiError(10001, f"leverage {buy} invalid: 1 to {num(market.rules.max_leverage)}")
        if abs(self.core.leverage(market.symbol) - lev) < 1e-9:
            raise ApiError(110043, "Set leverage not modified")
        try:
            self.core.set_leverage(lev, market.symbol)
        except BaseError as exc:
            raise ApiError(110013, f"Due to risk limit, cannot set leverage: {exc}") from None
        return self.ok({})

    def ep_set_margin_mode(self, params: dict[str, str], fault: Fault | None) -> Any:
        mode = params.get("setMarginMode")
        if mode not in _MODES:
            raise ApiError(10001, f"params error: setMarginMode {mode} invalid")
        if mode == "PORTFOLIO_MARGIN":
            raise ApiError(3400045, "Set margin mode failed: portfolio margin is not emulated")
        if mode == self.account_margin_mode:
            return self.ok({"reasons": []})
        if self.core.positions() or self.core.open_orders():
            raise ApiError(3400045, "Set margin mode failed: positions or orders exist")
        self.account_margin_mode = mode
        for s in self.core.symbols:
            self.core.set_margin_mode(self._core_mode(), s)
        return self.ok({"reasons": []})

    def ep_switch_mode(self, params: dict[str, str], fault: Fault | None) -> Any:
        self._linear(params)
        mode = params.get("mode")
        if mode not in ("0", "3"):
            raise ApiError(10001, f"params error: mode {mode} invalid")
        if not params.get("symbol") and not params.get("coin"):
            raise ApiError(10001, "params error: symbol or coin is required")
        hedge = mode == "3"
        if hedge == self.hedge_mode:
            raise ApiError(110025, "Position mode is not modified")
        if self.core.positions():
            raise ApiError(
                110024, "You have an existing position, so position mode cannot be switched"
            )
        if self.core.open_orders():
            raise ApiError(110028, "Open orders exist, so you cannot change position mode")
        self.hedge_mode = hedge
        return self.ok({})
