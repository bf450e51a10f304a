"""Binance account modes: position mode (one-way / hedge) and asset mode (single- / multi-assets).

``GET``/``POST /fapi/v1/positionSide/dual`` and ``GET``/``POST /fapi/v1/multiAssetsMargin``, with
the refusals of the real exchange (codes and texts as in Binance's error list and ccxt 4.5's
``binance.py`` exception table):

- position mode: -4059 "No need to change position side." (already so), -4068 "Position side
  cannot be changed if there exists position.", -4067 "Position side cannot be changed if there
  exists open orders.";
- asset mode: -4171 "Adjusted asset mode is currently set and does not need to be adjusted
  repeatedly" (already so), -4167 "Unable to adjust to Multi-Assets mode with symbols of USDⓈ-M
  Futures under isolated-margin mode.", -4170 "Unable to adjust Multi-Assets Mode with open orders
  in USDⓈ-M Futures", and, for ``POST /fapi/v1/marginType`` under multi-assets mode, -4168
  "Unable to adjust to isolated-margin mode under the Multi-Assets mode."

In multi-assets mode the account's other margin assets (``collateral``: asset → amount, valued
1:1 in USD, e.g. USDC) count in ``totalWalletBalance`` / ``totalMarginBalance`` /
``availableBalance`` as Binance's totals do (in USD, over all assets); in single-asset mode they
are listed and the totals are USDT's alone. The paper core margins positions from USDT only.
"""

from __future__ import annotations

from typing import Any

from bot.emulator.binance.base import BinanceBase
from bot.emulator.binance.shapes import _missing
from bot.emulator.server import ApiError, Fault


def _flag(params: dict[str, str], name: str) -> bool:
    value = params.get(name)
    if value is None or value.lower() not in ("true", "false"):
        raise ApiError(-1102, _missing(name))
    return value.lower() == "true"


class BinanceModes(BinanceBase):
    """Position and asset mode endpoints of the Binance emulator."""

    def _anything_open(self) -> tuple[bool, bool]:
        """(any position, any open order) over every symbol."""
        core = self.core
        positions = any(core.position(s) is not None for s in core.symbols)
        orders = bool(core.open_orders(None)) or bool(self._pending)
        return positions, orders

    def ep_position_side_dual(self, params: dict[str, str], fault: Fault | None) -> Any:
        return {"dualSidePosition": self.hedge_mode}

    def ep_set_position_side_dual(self, params: dict[str, str], fault: Fault | None) -> Any:
        wanted = _flag(params, "dualSidePosition")
        if wanted == self.hedge_mode:
            raise ApiError(-4059, "No need to change position side.")
        positions, orders = self._anything_open()
        if positions:
            raise ApiError(-4068, "Position side cannot be changed if there exists position.")
        if orders:
            raise ApiError(-4067, "Position side cannot be changed if there exists open orders.")
        self.hedge_mode = wanted
        return {"code": 200, "msg": "success"}

    def ep_multi_assets(self, params: dict[str, str], fault: Fault | None) -> Any:
        return {"multiAssetsMargin": self.multi_assets}

    def ep_set_multi_assets(self, params: dict[str, str], fault: Fault | None) -> Any:
        wanted = _flag(params, "multiAssetsMargin")
        if wanted == self.multi_assets:
            raise ApiError(
                -4171,
                "Adjusted asset mode is currently set and does not need to be adjusted repeatedly",
            )
        core = self.core
        if wanted and any(core.margin_mode(s) == "isolated" for s in core.symbols):
            raise ApiError(
                -4167,
                "Unable to adjust to Multi-Assets mode with symbols of USDⓈ-M Futures under "
                "isolated-margin mode.",
            )
        if self._anything_open()[1]:
            raise ApiError(
                -4170, "Unable to adjust Multi-Assets Mode with open orders in USDⓈ-M Futures"
            )
        self.multi_assets = wanted
        return {"code": 200, "msg": "success"}

    def refuse_isolated_in_multi_assets(self) -> None:
        """``POST /fapi/v1/marginType marginType=ISOLATED`` under multi-assets mode."""
        if self.multi_assets:
            raise ApiError(
                -4168, "Unable to adjust to isolated-margin mode under the Multi-Assets mode."
            )

    def collateral_usd(self) -> float:
        """What the other margin assets add to the account's totals (multi-assets mode only)."""
        return sum(self.collateral.values()) if self.multi_assets else 0.0

    def collateral_json(self, now_ms: int) -> list[dict[str, Any]]:
        """The other margin assets as ``/fapi/v3/account`` lists them."""
        out = []
        for asset, amount in sorted(self.collateral.items()):
            text = repr(float(amount))
            out.append(
                {
                    "asset": asset,
                    "walletBalance": text,
                    "unrealizedProfit": "0.0",
                    "marginBalance": text,
                    "maintMargin": "0.0",
                    "initialMargin": "0.0",
                    "positionInitialMargin": "0.0",
                    "openOrderInitialMargin": "0.0",
                    "crossWalletBalance": text,
                    "crossUnPnl": "0.0",
                    "availableBalance": text if self.multi_assets else "0.0",
                    "maxWithdrawAmount": text,
                    "marginAvailable": self.multi_assets,
                    "updateTime": now_ms,
                }
            )
        return out
