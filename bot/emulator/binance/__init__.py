"""The emulator speaking Binance USDⓈ-M futures (the subset the live adapter uses).

``BinanceEmulator`` serves ``/fapi/v1``, ``/fapi/v2``, ``/fapi/v3`` and ``/sapi/v1`` over the
paper core, so a real ccxt ``binanceusdm`` client pointed at it (API URLs overridden) trades
exactly as paper mode does: market data (``market``), account and signing (``account``),
position and asset modes (``modes``: one-way / hedge, single- / multi-assets), orders
(``orders``), market history (``history``: klines, mark-price klines, funding rates), the
user-data stream (``userdata``: listen key and private websocket; ``events``: what it carries),
trades and order history (``fills``: userTrades, allOrders, allAlgoOrders, forceOrders), shared
registries (``base``) and Binance's shapes and error codes (``shapes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from bot.emulator.binance.account import BinanceAccount
from bot.emulator.binance.fills import BinanceFills
from bot.emulator.binance.history import BinanceHistory
from bot.emulator.binance.market import BinanceMarket

ROUTES: Final[Mapping[tuple[str, str], tuple[str, bool]]] = {
    ("GET", "/fapi/v1/ping"): ("ep_ping", False),
    ("GET", "/fapi/v1/time"): ("ep_time", False),
    ("GET", "/fapi/v1/exchangeInfo"): ("ep_exchange_info", False),
    ("GET", "/fapi/v1/ticker/24hr"): ("ep_ticker_24hr", False),
    ("GET", "/fapi/v1/ticker/price"): ("ep_ticker_price", False),
    ("GET", "/fapi/v2/ticker/price"): ("ep_ticker_price", False),
    ("GET", "/fapi/v1/premiumIndex"): ("ep_premium_index", False),
    ("GET", "/fapi/v1/klines"): ("ep_klines", False),
    ("GET", "/fapi/v1/markPriceKlines"): ("ep_mark_price_klines", False),
    ("GET", "/fapi/v1/fundingRate"): ("ep_funding_rate", False),
    ("GET", "/fapi/v1/leverageBracket"): ("ep_leverage_bracket", True),
    ("GET", "/fapi/v2/leverageBracket"): ("ep_leverage_bracket", True),
    ("GET", "/fapi/v3/positionRisk"): ("ep_position_risk", True),
    ("GET", "/fapi/v2/positionRisk"): ("ep_position_risk", True),
    ("GET", "/fapi/v3/account"): ("ep_account", True),
    ("GET", "/fapi/v2/account"): ("ep_account", True),
    ("GET", "/fapi/v2/balance"): ("ep_balance", True),
    ("GET", "/fapi/v3/balance"): ("ep_balance", True),
    ("POST", "/fapi/v1/leverage"): ("ep_leverage", True),
    ("POST", "/fapi/v1/marginType"): ("ep_margin_type", True),
    ("GET", "/fapi/v1/positionSide/dual"): ("ep_position_side_dual", True),
    ("POST", "/fapi/v1/positionSide/dual"): ("ep_set_position_side_dual", True),
    ("GET", "/fapi/v1/multiAssetsMargin"): ("ep_multi_assets", True),
    ("POST", "/fapi/v1/multiAssetsMargin"): ("ep_set_multi_assets", True),
    ("POST", "/fapi/v1/order"): ("ep_new_order", True),
    ("GET", "/fapi/v1/order"): ("ep_get_order", True),
    ("DELETE", "/fapi/v1/order"): ("ep_cancel_order", True),
    ("GET", "/fapi/v1/openOrders"): ("ep_open_orders", True),
    ("DELETE", "/fapi/v1/allOpenOrders"): ("ep_cancel_all", True),
    ("POST", "/fapi/v1/algoOrder"): ("ep_new_algo_order", True),
    ("GET", "/fapi/v1/algoOrder"): ("ep_get_algo_order", True),
    ("DELETE", "/fapi/v1/algoOrder"): ("ep_cancel_algo_order", True),
    ("GET", "/fapi/v1/openAlgoOrders"): ("ep_open_algo_orders", True),
    ("DELETE", "/fapi/v1/algoOpenOrders"): ("ep_cancel_all_algo", True),
    ("GET", "/fapi/v1/userTrades"): ("ep_user_trades", True),
    ("GET", "/fapi/v1/allOrders"): ("ep_all_orders", True),
    ("GET", "/fapi/v1/allAlgoOrders"): ("ep_all_algo_orders", True),
    ("GET", "/fapi/v1/forceOrders"): ("ep_force_orders", True),
    ("POST", "/fapi/v1/listenKey"): ("ep_listen_key_new", False),
    ("PUT", "/fapi/v1/listenKey"): ("ep_listen_key_keepalive", False),
    ("DELETE", "/fapi/v1/listenKey"): ("ep_listen_key_close", False),
    ("GET", "/sapi/v1/account/apiRestrictions"): ("ep_api_restrictions", True),
}


#: USER_STREAM endpoints: the API key, no signature.
API_KEY_ROUTES: Final[frozenset[tuple[str, str]]] = frozenset(
    {
        ("POST", "/fapi/v1/listenKey"),
        ("PUT", "/fapi/v1/listenKey"),
        ("DELETE", "/fapi/v1/listenKey"),
    }
)


class BinanceEmulator(BinanceFills, BinanceAccount, BinanceHistory, BinanceMarket):
    """Binance USDⓈ-M futures over a ``PaperCore``; see the package docstring."""

    routes = ROUTES
    api_key_routes = API_KEY_ROUTES


__all__ = ["API_KEY_ROUTES", "ROUTES", "BinanceEmulator"]
