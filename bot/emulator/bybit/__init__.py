"""The emulator speaking Bybit v5 (linear USDT perpetuals, unified trading account).

``BybitEmulator`` serves the ``/v5`` endpoints ccxt 4.5's ``bybit`` client calls for markets,
tickers, risk limits, the account (API key info, account info, wallet balance, positions,
leverage, margin mode, position mode), orders (create, cancel, cancel-all, realtime, history;
conditional orders included) and executions over the paper core under the ``bybit``
liquidation profile, signed and refused as Bybit does (``base``: signing and shapes;
``market``, ``account``, ``orders``, ``fills``). No streams: a ccxt client uses it with
``streams=False``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from bot.emulator.bybit.account import BybitAccount
from bot.emulator.bybit.fills import BybitFills
from bot.emulator.bybit.market import BybitMarket
from bot.emulator.bybit.orders import BybitOrders

ROUTES: Final[Mapping[tuple[str, str], tuple[str, bool]]] = {
    ("GET", "/v5/market/time"): ("ep_time", False),
    ("GET", "/v5/market/instruments-info"): ("ep_instruments", False),
    ("GET", "/v5/market/tickers"): ("ep_tickers", False),
    ("GET", "/v5/market/risk-limit"): ("ep_risk_limit", False),
    ("GET", "/v5/asset/coin/query-info"): ("ep_coin_info", True),
    ("GET", "/v5/user/query-api"): ("ep_query_api", True),
    ("GET", "/v5/account/info"): ("ep_account_info", True),
    ("GET", "/v5/account/wallet-balance"): ("ep_wallet_balance", True),
    ("GET", "/v5/position/list"): ("ep_positions", True),
    ("POST", "/v5/position/set-leverage"): ("ep_set_leverage", True),
    ("POST", "/v5/account/set-margin-mode"): ("ep_set_margin_mode", True),
    ("POST", "/v5/position/switch-mode"): ("ep_switch_mode", True),
    ("POST", "/v5/order/create"): ("ep_create", True),
    ("POST", "/v5/order/cancel"): ("ep_cancel", True),
    ("POST", "/v5/order/cancel-all"): ("ep_cancel_all", True),
    ("GET", "/v5/order/realtime"): ("ep_realtime", True),
    ("GET", "/v5/order/history"): ("ep_history", True),
    ("GET", "/v5/execution/list"): ("ep_executions", True),
}


class BybitEmulator(BybitFills, BybitOrders, BybitAccount, BybitMarket):
    """Bybit v5 over a ``PaperCore``; see the package docstring."""

    routes = ROUTES


__all__ = ["ROUTES", "BybitEmulator"]
