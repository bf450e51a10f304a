"""Binance account endpoints and request signing: positions, account, balance, leverage,
margin type and API-key permissions (position and asset modes: ``bot.emulator.binance.modes``).

Signed endpoints check the ``X-MBX-APIKEY`` header (-2014/-2015), the HMAC-SHA256 signature over
query string + body (-1022) and ``timestamp`` against ``recvWindow`` (-1021), like the real one;
USER_STREAM endpoints (the listen key, ``bot.emulator.binance.userdata``) the header only.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from ccxt.base.errors import BaseError, OperationRejected

from bot.emulator.binance.modes import BinanceModes
from bot.emulator.binance.shapes import (
    _SIGNATURE_RE,
    FUTURE_TOLERANCE_MS,
    RECV_WINDOW_DEFAULT_MS,
    RECV_WINDOW_MAX_MS,
    _missing,
    _s,
)
from bot.emulator.server import ApiError, Fault


class BinanceAccount(BinanceModes):
    """Account endpoints of the Binance emulator."""

    def _authenticate_api_key(self, request: web.Request) -> None:
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            raise ApiError(-2014, "API-key format invalid.", 401)
        if not hmac.compare_digest(key, self.api_key):
            raise ApiError(
                -2015, "Invalid API-key, IP, or permissions for action, request ip: 127.0.0.1", 401
            )

    def _authenticate(
        self, request: web.Request, raw_query: str, body: str, params: Mapping[str, str]
    ) -> None:
        self._authenticate_api_key(request)
        signature = params.get("signature")
        if signature is None:
            raise ApiError(-1102, _missing("signature"))
        payload = _SIGNATURE_RE.sub("", raw_query).lstrip("&") + _SIGNATURE_RE.sub("", body).lstrip(
            "&"
        )
        expected = hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise ApiError(-1022, "Signature for this request is not valid.")
        stamp = params.get("timestamp")
        if stamp is None or not stamp.isdigit():
            raise ApiError(-1102, _missing("timestamp"))
        window_text = params.get("recvWindow", str(RECV_WINDOW_DEFAULT_MS))
        if not window_text.isdigit() or int(window_text) > RECV_WINDOW_MAX_MS:
            raise ApiError(-1131, "recvWindow must be less than 60000")
        now = self.now_ms()
        ts = int(stamp)
        if ts >= now + FUTURE_TOLERANCE_MS or now - ts > int(window_text):
            raise ApiError(-1021, "Timestamp for this request is outside of the recvWindow.")

    def _position_json(self, p: Mapping[str, Any]) -> dict[str, Any]:
        m = self.core.market(p["symbol"])
        sign = 1 if p["side"] == "long" else -1
        isolated = p["marginMode"] == "isolated"
        margin = float(p["info"]["isolatedMargin"]) if isolated else 0.0
        upnl = float(p["unrealizedPnl"])
        side = ("LONG" if sign > 0 else "SHORT") if self.hedge_mode else "BOTH"
        return {
            "symbol": m.id,
            "positionSide": side,
            "positionAmt": _s(sign * float(p["contracts"])),
            "entryPrice": _s(p["entryPrice"]),
            "breakEvenPrice": _s(p["entryPrice"]),
            "markPrice": _s(p["markPrice"]),
            "unRealizedProfit": _s(upnl),
            "liquidationPrice": _s(p["liquidationPrice"] or 0),
            "isolatedMargin": _s(margin + upnl if isolated else 0),
            "notional": _s(sign * float(p["notional"])),
            "marginAsset": self.core.currency,
            "isolatedWallet": _s(margin),
            "initialMargin": _s(p["initialMargin"]),
            "maintMargin": _s(p["maintenanceMargin"]),
            "positionInitialMargin": _s(p["initialMargin"]),
            "openOrderInitialMargin": "0",
            "adl": 1,
            "bidNotional": "0",
            "askNotional": "0",
            "updateTime": p["timestamp"],
        }

    def ep_position_risk(self, params: dict[str, str], fault: Fault | None) -> Any:
        m = self._market(params, required=False)
        symbols = None if m is None else [m.symbol]
        return [self._position_json(p) for p in self.core.positions(symbols)]

    def _asset_json(self) -> dict[str, Any]:
        core = self.core
        now = self.now_ms()
        wallet = core.wallet_balance
        upnl = core.unrealized_pnl()
        free = core.free_margin
        initial = sum(float(p["initialMargin"]) for p in core.positions())
        maint = sum(float(p["maintenanceMargin"]) for p in core.positions())
        return {
            "asset": core.currency,
            "walletBalance": _s(wallet),
            "unrealizedProfit": _s(upnl),
            "marginBalance": _s(wallet + upnl),
            "maintMargin": _s(maint),
            "initialMargin": _s(initial),
            "positionInitialMargin": _s(initial),
            "openOrderInitialMargin": "0",
            "crossWalletBalance": _s(core.cross_wallet_balance),
            "crossUnPnl": _s(upnl),
            "availableBalance": _s(free),
            "maxWithdrawAmount": _s(max(free, 0.0)),
            "marginAvailable": True,
            "updateTime": now,
        }

    def ep_account(self, params: dict[str, str], fault: Fault | None) -> Any:
        core = self.core
        asset = self._asset_json()
        # the totals are USDT's in single-asset mode, every asset's (in USD) in multi-assets mode
        extra = self.collateral_usd()

        def total(key: str) -> str:
            return _s(float(asset[key]) + extra)

        return {
            "totalInitialMargin": asset["initialMargin"],
            "totalMaintMargin": asset["maintMargin"],
            "totalWalletBalance": total("walletBalance"),
            "totalUnrealizedProfit": asset["unrealizedProfit"],
            "totalMarginBalance": total("marginBalance"),
            "totalPositionInitialMargin": asset["positionInitialMargin"],
            "totalOpenOrderInitialMargin": "0",
            "totalCrossWalletBalance": total("crossWalletBalance"),
            "totalCrossUnPnl": asset["crossUnPnl"],
            "availableBalance": total("availableBalance"),
            "maxWithdrawAmount": total("maxWithdrawAmount"),
            "assets": [asset, *self.collateral_json(int(asset["updateTime"]))],
            "positions": [
                {
                    "symbol": self.core.market(p["symbol"]).id,
                    "positionSide": "BOTH",
                    "positionAmt": _s((1 if p["side"] == "long" else -1) * p["contracts"]),
                    "unrealizedProfit": _s(p["unrealizedPnl"]),
                    "isolatedMargin": _s(p["info"]["isolatedMargin"]),
                    "notional": _s(p["notional"]),
                    "isolatedWallet": _s(p["info"]["isolatedWallet"]),
                    "initialMargin": _s(p["initialMargin"]),
                    "maintMargin": _s(p["maintenanceMargin"]),
                    "updateTime": p["timestamp"],
                }
                for p in core.positions()
            ],
        }

    def ep_balance(self, params: dict[str, str], fault: Fault | None) -> Any:
        asset = self._asset_json()
        others = [
            {
                "accountAlias": "emulator",
                "asset": a["asset"],
                "balance": a["walletBalance"],
                "crossWalletBalance": a["crossWalletBalance"],
                "crossUnPnl": "0.0",
                "availableBalance": a["availableBalance"],
                "maxWithdrawAmount": a["maxWithdrawAmount"],
                "marginAvailable": a["marginAvailable"],
                "updateTime": a["updateTime"],
            }
            for a in self.collateral_json(int(asset["updateTime"]))
        ]
        return [
            {
                "accountAlias": "emulator",
                "asset": asset["asset"],
                "balance": asset["walletBalance"],
                "crossWalletBalance": asset["crossWalletBalance"],
                "crossUnPnl": asset["crossUnPnl"],
                "availableBalance": asset["availableBalance"],
                "maxWithdrawAmount": asset["maxWithdrawAmount"],
                "marginAvailable": True,
                "updateTime": asset["updateTime"],
            },
            *others,
        ]

    def ep_leverage(self, params: dict[str, str], fault: Fault | None) -> Any:
        m = self._market(params)
        assert m is not None
        text = params.get("leverage", "")
        if not text.isdigit():
            raise ApiError(-1100, "Illegal characters found in parameter 'leverage'.")
        lev = int(text)
        try:
            self.core.set_leverage(lev, m.symbol)
        except BaseError:
            raise ApiError(-4028, f"Leverage {lev} is not valid") from None
        tiers = m.rules.tiers
        cap = next((t.max_notional for t in reversed(tiers) if t.max_leverage >= lev), 0.0)
        return {"leverage": lev, "maxNotionalValue": _s(cap), "symbol": m.id}

    def ep_margin_type(self, params: dict[str, str], fault: Fault | None) -> Any:
        m = self._market(params)
        assert m is not None
        wanted = params.get("marginType", "").upper()
        if wanted not in ("ISOLATED", "CROSSED"):
            raise ApiError(-1116, "Invalid marginType.")
        mode = "isolated" if wanted == "ISOLATED" else "cross"
        if mode == "isolated":
            self.refuse_isolated_in_multi_assets()
        if self.core.margin_mode(m.symbol) == mode:
            raise ApiError(-4046, "No need to change margin type.")
        try:
            self.core.set_margin_mode(mode, m.symbol)
        except OperationRejected:
            if self.core.position(m.symbol) is not None:
                raise ApiError(
                    -4048, "Margin type cannot be changed if there exists position."
                ) from None
            raise ApiError(
                -4047, "Margin type cannot be changed if there exists open orders."
            ) from None
        return {"code": 200, "msg": "success"}

    def ep_api_restrictions(self, params: dict[str, str], fault: Fault | None) -> Any:
        return dict(self.permissions)
