"""ccxt's unified structures read as the guards' types, in one place.

What an exchange (live through ccxt, or the paper exchange, which speaks the same shapes) returns
is turned here into what the guards judge: ``position_from_ccxt`` / ``account_from_ccxt`` (a ccxt
position with the symbol's open orders gives a ``Position`` with its live stop and take-profit),
``wallet_balance``, ``market_rules`` (a ccxt market and its leverage tiers give ``MarketRules``),
and the reading of an order: ``order_role`` (entry, reduce, stop or take-profit),
``trigger_price`` and ``closes_position``. Pure: no I/O.

Venues (``venue=`` the ccxt id): ccxt's unified structures differ where the exchanges do.
Binance is the default and reads as before. OKX counts amounts in contracts: a market's
``precision.amount`` and ``limits.amount`` are contracts (scaled by ``contractSize`` here) and
its tiers are sizes in contracts (``guards.tiers_from_ccxt(model="okx", contract_size=...)``);
its balance's ``total`` is equity, so the wallet is the currency's ``cashBal``; an algo order
with ``closeFraction`` 1 closes the whole position. Bybit's tiers are read under its model
(``mmDeduction``). Orders' amounts stay in the exchange's units: see
``bot.exchange.venue.Venue.order_in_base``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

from guards import (
    Account,
    LiquidationModel,
    MarginMode,
    MarketRules,
    Position,
    Side,
    tiers_from_ccxt,
)

OrderRole = Literal["entry", "reduce", "stop", "take_profit"]


def _info(order: Mapping[str, Any]) -> Mapping[str, Any]:
    info = order.get("info")
    return info if isinstance(info, Mapping) else {}


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def closes_position(order: Mapping[str, Any]) -> bool:
    """Binance's ``closePosition``, or an OKX algo order closing the whole position."""
    info = _info(order)
    return _truthy(info.get("closePosition")) or str(info.get("closeFraction") or "") == "1"


def trigger_price(order: Mapping[str, Any]) -> float | None:
    for key in ("triggerPrice", "stopPrice", "stopLossPrice", "takeProfitPrice"):
        value = order.get(key)
        if value:
            return float(value)
    return None


def order_role(order: Mapping[str, Any]) -> OrderRole:
    """Entry, reduce, stop or take-profit, from a ccxt order structure."""
    info = _info(order)
    reducing = _truthy(order.get("reduceOnly")) or closes_position(order)
    trigger = trigger_price(order)
    if trigger is not None and reducing:
        kind = str(order.get("type") or "") + str(info.get("orderType") or info.get("type") or "")
        tp = order.get("takeProfitPrice")
        if (tp and float(tp) == trigger) or "take_profit" in kind.lower():
            return "take_profit"
        return "stop"
    return "reduce" if reducing else "entry"


def wallet_balance(balance: Mapping[str, Any], currency: str = "USDT") -> float:
    """Wallet balance (realised, without unrealised PnL) from a ccxt balance structure."""
    info = balance.get("info")
    if isinstance(info, Mapping):
        for key in ("totalWalletBalance", "walletBalance"):
            if info.get(key) is not None:
                return float(info[key])
        okx = _okx_cash(info, currency)
        if okx is not None:
            return okx
        for asset in info.get("assets") or []:
            if (
                isinstance(asset, Mapping)
                and asset.get("asset") == currency
                and asset.get("walletBalance") is not None
            ):
                return float(asset["walletBalance"])
    account = balance.get(currency)
    if isinstance(account, Mapping) and account.get("total") is not None:
        return float(account["total"])
    return 0.0


def free_margin(balance: Mapping[str, Any], currency: str = "USDT") -> float:
    """Margin free for new orders, from a ccxt balance structure: Binance's account-wide
    ``availableBalance`` (in multi-assets mode every margin asset's, in USD, as
    ``totalWalletBalance`` is), else the currency's ``free``."""
    info = balance.get("info")
    if isinstance(info, Mapping) and info.get("availableBalance") is not None:
        return float(info["availableBalance"])
    account = balance.get(currency)
    if isinstance(account, Mapping) and account.get("free") is not None:
        return float(account["free"])
    return 0.0


def _okx_cash(info: Mapping[str, Any], currency: str) -> float | None:
    """OKX ``/account/balance``: ``data[0].details[ccy].cashBal`` (ccxt's total is ``eq``)."""
    data = info.get("data")
    if not isinstance(data, list) or not data or not isinstance(data[0], Mapping):
        return None
    for detail in data[0].get("details") or []:
        if isinstance(detail, Mapping) and detail.get("ccy") == currency:
            cash = detail.get("cashBal")
            if cash not in (None, ""):
                return float(cash)
    return None


def _margin_mode(p: Mapping[str, Any], default: MarginMode | None) -> MarginMode:
    """ccxt's ``marginMode``; else ``default``; else Bybit's ``info.tradeMode`` (0 cross, 1
    isolated: ccxt 4.5 leaves ``marginMode`` None on Bybit); else isolated."""
    mode = p.get("marginMode")
    if mode is None and default is not None:
        return default
    if mode is None:
        trade_mode = _info(p).get("tradeMode")
        if trade_mode is not None and str(trade_mode) in ("0", "1"):
            return "cross" if str(trade_mode) == "0" else "isolated"
    return "cross" if str(mode or "isolated") == "cross" else "isolated"


def position_from_ccxt(
    p: Mapping[str, Any],
    orders: Sequence[Mapping[str, Any]] = (),
    margin_mode: MarginMode | None = None,
) -> Position:
    """The guards' ``Position`` from a ccxt position and the symbol's open orders.

    ``margin_mode``: the mode to assume when ccxt does not say (Bybit's unified account sets it
    account-wide: the mode the bot set up).
    """
    symbol = str(p["symbol"])
    side: Side = "short" if str(p.get("side")) == "short" else "long"
    amount = abs(float(p.get("contracts") or 0.0)) * float(p.get("contractSize") or 1.0)
    entry = float(p.get("entryPrice") or 0.0)
    mode = _margin_mode(p, margin_mode)
    notional = abs(float(p.get("notional") or amount * entry))
    leverage = p.get("leverage")
    if not leverage:
        initial = float(p.get("initialMargin") or 0.0)
        leverage = notional / initial if initial > 0 else 1.0
    lev = float(leverage)
    info = _info(p)
    margin_raw = info.get("isolatedWallet") if mode == "isolated" else None
    if margin_raw is None or float(margin_raw) == 0.0:
        margin_raw = p.get("positionMargin") if mode == "isolated" else None
    if (margin_raw is None or margin_raw == "") and mode == "isolated":
        margin_raw = info.get("margin") or None  # OKX's isolated margin
    margin = float(margin_raw) if margin_raw else notional / lev
    stop = take = None
    exit_side = "sell" if side == "long" else "buy"
    for o in orders:
        if o.get("symbol") != symbol or str(o.get("side")) != exit_side:
            continue
        role = order_role(o)
        if role == "stop" and stop is None:
            stop = trigger_price(o)
        elif role == "take_profit" and take is None:
            take = trigger_price(o)
    stamp = p.get("timestamp")
    return Position(
        symbol=symbol,
        side=side,
        amount=amount,
        entry_price=entry,
        margin_mode=mode,
        leverage=lev,
        margin=margin,
        stop_price=stop,
        take_profit=take,
        opened_at=float(stamp) / 1000.0 if stamp else 0.0,
    )


def account_from_ccxt(
    balance: Mapping[str, Any],
    positions: Sequence[Mapping[str, Any]],
    orders: Sequence[Mapping[str, Any]] = (),
    currency: str = "USDT",
    margin_mode: MarginMode | None = None,
) -> Account:
    """The guards' ``Account`` from ccxt balance, positions and open orders (``margin_mode``: as
    for ``position_from_ccxt``)."""
    found: dict[str, Position] = {}
    for p in positions:
        if float(p.get("contracts") or 0.0) > 0.0:
            pos = position_from_ccxt(p, orders, margin_mode)
            found[pos.symbol] = pos
    return Account(wallet_balance(balance, currency), found, currency)


def _step(value: Any, mode: int) -> float:
    """A precision as a step size (ccxt's TICK_SIZE mode = 4 already is one)."""
    if value is None:
        return 0.0
    number = float(value)
    return number if mode == 4 else 10.0 ** (-number)


#: The liquidation model of each ccxt exchange id with its own (others: Binance's).
VENUE_MODELS: Mapping[str, LiquidationModel] = {"bybit": "bybit", "okx": "okx"}


def market_rules(
    market: Mapping[str, Any],
    tier_entries: Sequence[Mapping[str, Any]],
    precision_mode: int = 4,
    venue: str | None = None,
) -> MarketRules:
    """The guards' ``MarketRules`` of a ccxt market and its ccxt leverage tiers.

    ``venue`` (a ccxt id): Bybit's and OKX's liquidation models and OKX's contracts (see the
    module docstring); None or another id reads them as Binance's.
    """
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    amount_limits = limits.get("amount") or {}
    cost_limits = limits.get("cost") or {}
    model = VENUE_MODELS.get(venue or "")
    taker = float(market.get("taker") or 0.0005)
    if model is None:
        return MarketRules(
            symbol=str(market["symbol"]),
            tiers=tiers_from_ccxt(tier_entries),
            amount_step=_step(precision.get("amount"), precision_mode) or 0.001,
            price_step=_step(precision.get("price"), precision_mode) or 0.1,
            min_amount=float(amount_limits.get("min") or 0.0),
            min_notional=float(cost_limits.get("min") or 0.0),
            taker_fee=taker,
            maker_fee=float(market.get("maker") or 0.0002),
        )
    size = float(market.get("contractSize") or 1.0) if model == "okx" else 1.0
    step = _step(precision.get("amount"), precision_mode) or 0.001
    return MarketRules(
        symbol=str(market["symbol"]),
        tiers=tiers_from_ccxt(tier_entries, model=model, contract_size=size),
        amount_step=_scaled(step, size),
        price_step=_step(precision.get("price"), precision_mode) or 0.1,
        min_amount=_scaled(float(amount_limits.get("min") or 0.0), size),
        min_notional=float(cost_limits.get("min") or 0.0),
        taker_fee=taker,
        maker_fee=float(market.get("maker") or 0.0002),
        # OKX's liquidation fee is the taker fee on the notional; Bybit's trigger has none
        liquidation_fee_rate=taker if model == "okx" else 0.0,
        liquidation_model=model,
    )


def _scaled(contracts: float, size: float) -> float:
    """Contracts to base units without binary noise (0.01 x 0.1 = 0.001)."""
    if size == 1.0:
        return contracts
    return float(Decimal(repr(contracts)) * Decimal(repr(size)))
