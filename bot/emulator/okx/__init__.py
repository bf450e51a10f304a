"""The emulator speaking OKX v5 (USDT-margined perpetual swaps, net position mode).

``OkxEmulator`` serves the ``/api/v5`` endpoints ccxt 4.5's ``okx`` client calls for
instruments, tickers, mark prices, position tiers, the account (currencies, configuration,
balance, positions, leverage, position mode), orders — ordinary ones and the algo
(conditional) book — and the fills history over the paper core under the ``okx`` liquidation
profile, in contracts, signed as OKX signs and refused with OKX's codes (``base``: signing,
the simulated-trading header, shapes and contracts; ``market``, ``account``, ``orders``,
``fills``). No streams: a ccxt client uses it with ``streams=False``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from bot.emulator.okx.account import OkxAccount
from bot.emulator.okx.fills import OkxFills
from bot.emulator.okx.market import OkxMarket
from bot.emulator.okx.orders import OkxOrders

ROUTES: Final[Mapping[tuple[str, str], tuple[str, bool]]] = {
    ("GET", "/api/v5/public/time"): ("ep_time", False),
    ("GET", "/api/v5/public/instruments"): ("ep_instruments", False),
    ("GET", "/api/v5/market/ticker"): ("ep_ticker", False),
    ("GET", "/api/v5/public/mark-price"): ("ep_mark_price", False),
    ("GET", "/api/v5/public/position-tiers"): ("ep_position_tiers", False),
    ("GET", "/api/v5/asset/currencies"): ("ep_currencies", True),
    ("GET", "/api/v5/account/config"): ("ep_config", True),
    ("GET", "/api/v5/account/balance"): ("ep_balance", True),
    ("GET", "/api/v5/account/positions"): ("ep_positions", True),
    ("POST", "/api/v5/account/set-leverage"): ("ep_set_leverage", True),
    ("POST", "/api/v5/account/set-position-mode"): ("ep_set_position_mode", True),
    ("POST", "/api/v5/trade/batch-orders"): ("ep_batch_orders", True),
    ("POST", "/api/v5/trade/order"): ("ep_order", True),
    ("GET", "/api/v5/trade/order"): ("ep_get_order", True),
    ("GET", "/api/v5/trade/orders-pending"): ("ep_orders_pending", True),
    ("POST", "/api/v5/trade/cancel-order"): ("ep_cancel_order", True),
    ("POST", "/api/v5/trade/order-algo"): ("ep_order_algo", True),
    ("GET", "/api/v5/trade/order-algo"): ("ep_get_algo", True),
    ("GET", "/api/v5/trade/orders-algo-pending"): ("ep_algos_pending", True),
    ("POST", "/api/v5/trade/cancel-algos"): ("ep_cancel_algos", True),
    ("GET", "/api/v5/trade/fills-history"): ("ep_fills_history", True),
}


class OkxEmulator(OkxFills, OkxOrders, OkxAccount, OkxMarket):
    """OKX v5 over a ``PaperCore``; see the package docstring."""

    routes = ROUTES


__all__ = ["ROUTES", "OkxEmulator"]
