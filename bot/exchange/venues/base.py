"""What every venue shares: the venue-neutral order, a ccxt request, and the ``Venue`` interface.

``OrderSpec`` is what ``bot.trading.planning`` asks for, in **base units** (an entry, a stop or
take-profit on the mark price, a reduce-only exit); a ``Venue`` turns it into the arguments of
ccxt's unified ``create_order`` for its exchange (``request``), converting amounts to the
exchange's contracts where it counts in contracts (``to_contracts`` / ``from_contracts``), and
says how the bot's own conditional orders are listed, looked up and cancelled, how a symbol and
the account are set up (margin mode, leverage, one-way position mode), what its demo mode is
and what its refusals mean (``classify``). The base class is Binance's behaviour; each venue
module overrides what differs and cites the ccxt 4.5 code it relies on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any, Literal

OrderSide = Literal["buy", "sell"]
SpecKind = Literal["entry", "stop", "take_profit", "exit"]
#: Round-trip labels of an exit (what the paper exchange books a close as).
ExitReason = Literal["strategy", "guard", "manual"]
MarginModeName = Literal["isolated", "cross"]
#: What a venue's refusal means to the bot (``Venue.classify``).
ErrorKind = Literal[
    "would_trigger_immediately",
    "min_notional",
    "reduce_only_rejected",
    "position_mode",
    "no_change",
]
SetupMethod = Literal["set_margin_mode", "set_leverage", "set_position_mode"]


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """One exchange order, venue-neutral (``bot.exchange.venue`` gives it its parameters)."""

    kind: SpecKind
    symbol: str
    side: OrderSide
    amount: float
    type: Literal["market", "limit"] = "market"
    #: Limit price (``type == "limit"``).
    price: float | None = None
    #: Trigger price of a stop or take-profit; triggers on the mark price.
    trigger: float | None = None
    reduce_only: bool = False
    #: Protects (or closes) the whole position whatever its size (stops and take-profits).
    close_position: bool = False
    #: Why an exit closes (labels the round trip): strategy, guard or manual.
    reason: ExitReason | None = None
    #: Free detail kept with the order (the rule or cause), e.g. ``no_overnight:session_flat``.
    tag: str = ""


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """The arguments of one ccxt ``create_order`` call (without the client order id)."""

    symbol: str
    type: str
    side: str
    amount: float
    price: float | None
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SetupCall:
    """One ccxt call that sets a symbol or the account up: ``getattr(client, method)(*args,
    params)``; a refusal the venue classifies as ``no_change`` counts as done."""

    method: SetupMethod
    args: tuple[Any, ...]
    params: dict[str, Any] = field(default_factory=dict)


def contract_size(market: Mapping[str, Any] | None) -> float:
    """Base units per contract of a ccxt market (``contractSize``; 1 when absent)."""
    if not market:
        return 1.0
    size = market.get("contractSize")
    value = float(size) if size else 1.0
    return value if value > 0.0 and math.isfinite(value) else 1.0


class Venue:
    """Binance USDⓈ-M's behaviour, which the other venues override where they differ.

    ``request`` gives a spec its parameters (``stopLossPrice`` / ``takeProfitPrice`` with
    ``workingType=MARK_PRICE``, ``closePosition`` or ``reduceOnly``); the bot's conditional
    orders are fetched and cancelled with ``trigger=True``; amounts are base units.
    """

    #: The ccxt exchange id.
    id = "binanceusdm"
    #: Refusal codes by meaning (``classify``); the code's pattern in ccxt's error text.
    error_codes: Mapping[ErrorKind, frozenset[str]] = {
        # -2021 "Order would immediately trigger."; -4164 "Order's notional must be no smaller
        # than ..."; -2022 "ReduceOnly Order is rejected."; -4061 "Order's position side does not
        # match user's setting."; -4046 "No need to change margin type."
        "would_trigger_immediately": frozenset({"-2021"}),
        "min_notional": frozenset({"-4164"}),
        "reduce_only_rejected": frozenset({"-2022"}),
        "position_mode": frozenset({"-4061"}),
        "no_change": frozenset({"-4046", "-4059"}),
    }
    _code_re = re.compile(r'"code"\s*:\s*"?(-?\d+)')
    #: Whether ``request`` and ``order_in_base`` need the symbol's ccxt market (amounts in
    #: contracts, or a per-order margin mode); Binance's do not.
    needs_market = False
    #: Whether the margin mode is the account's, not the position's (Bybit's unified account:
    #: ccxt leaves a position's ``marginMode`` None, so the mode set up is assumed).
    account_wide_margin = False
    #: Most fills one ``fetch_my_trades`` page returns (Binance ``userTrades``: 1,000).
    trades_page = 1000
    #: A full page holds the newest fills after ``since`` (older ones are paged with ``until``),
    #: not the oldest (Binance: the oldest; the next page starts at the last one).
    trades_newest_first = False

    def request(
        self,
        spec: OrderSpec,
        market: Mapping[str, Any] | None = None,
        margin_mode: MarginModeName | None = None,
    ) -> OrderRequest:
        """The ``create_order`` arguments of ``spec`` (Binance: ``market`` and ``margin_mode``
        change nothing; the symbol's margin mode is set up front)."""
        params: dict[str, Any] = {}
        if spec.kind in ("stop", "take_profit"):
            key = "stopLossPrice" if spec.kind == "stop" else "takeProfitPrice"
            params[key] = spec.trigger
            params["workingType"] = "MARK_PRICE"
        if spec.close_position:
            params["closePosition"] = True
        elif spec.reduce_only:
            params["reduceOnly"] = True
        return OrderRequest(spec.symbol, spec.type, spec.side, spec.amount, spec.price, params)

    def client_id_params(self, spec: OrderSpec, client_id: str) -> dict[str, Any]:
        """How the client order id of ``spec`` is passed to ``create_order``."""
        return {"clientOrderId": client_id}

    def trigger_params(self) -> dict[str, Any]:
        """Parameters that address the trigger (conditional) order book in fetch / cancel."""
        return {"trigger": True}

    def cancel_params(self, order: Mapping[str, Any]) -> dict[str, Any]:
        """Parameters that cancel ``order`` (a ccxt order): the trigger book for a trigger."""
        return self.trigger_params() if _is_trigger(order) else {}

    def fetch_order_params(self) -> dict[str, Any]:
        """Parameters every ``fetch_order`` needs (Binance: none)."""
        return {}

    def mark_params(self) -> dict[str, Any]:
        """Parameters ``fetch_mark_price`` needs (Binance: none)."""
        return {}

    def lookup_params(self, client_id: str, trigger: bool) -> dict[str, Any]:
        """``fetch_order("", symbol, params)`` parameters that find an order by client id."""
        params: dict[str, Any] = {"clientOrderId": client_id}
        if trigger:
            params.update(self.trigger_params())
        return params

    # ------------------------------------------------------------------ amounts

    def to_contracts(self, amount: float, market: Mapping[str, Any] | None) -> float:
        """Base units to the exchange's order amount (contracts of ``contractSize``)."""
        size = contract_size(market)
        if size == 1.0:
            return amount
        step = _amount_step(market) or 0.0
        contracts = Decimal(repr(round(amount / size, 9)))
        if step > 0.0:
            lots = (contracts / Decimal(repr(step))).to_integral_value(rounding=ROUND_DOWN)
            contracts = lots * Decimal(repr(step))
        return float(contracts)

    def from_contracts(self, contracts: float, market: Mapping[str, Any] | None) -> float:
        """The exchange's order amount back to base units."""
        size = contract_size(market)
        if size == 1.0:
            return contracts
        return float(Decimal(repr(contracts)) * Decimal(repr(size)))

    def order_in_base(
        self, order: Mapping[str, Any], market: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """A ccxt order with ``amount`` / ``filled`` / ``remaining`` in base units.

        ccxt leaves an order's amounts in the exchange's contracts (OKX); positions carry their
        ``contractSize`` and ``bot.exchange.shapes`` converts them already.
        """
        out = dict(order)
        if contract_size(market) == 1.0:
            return out
        for key in ("amount", "filled", "remaining"):
            value = out.get(key)
            if isinstance(value, int | float):
                out[key] = self.from_contracts(float(value), market)
        return out

    def trade_in_base(
        self, trade: Mapping[str, Any], market: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """A ccxt trade (fill) with ``amount`` in base units (ccxt keeps OKX's ``fillSz``
        contracts as the amount; its ``cost`` already is ``price * amount * contractSize``)."""
        out = dict(trade)
        value = out.get("amount")
        if contract_size(market) != 1.0 and isinstance(value, int | float):
            out["amount"] = self.from_contracts(float(value), market)
        return out

    # ------------------------------------------------------------------ set-up and modes

    def setup_calls(
        self, symbol: str, margin_mode: MarginModeName, leverage: float
    ) -> list[SetupCall]:
        """The calls that put ``symbol`` in ``margin_mode`` at ``leverage`` (in order)."""
        return [
            SetupCall("set_margin_mode", (margin_mode, symbol)),
            SetupCall("set_leverage", (leverage, symbol)),
        ]

    def account_setup_calls(self) -> list[SetupCall]:
        """Calls that put the account in one-way position mode (Binance: none; the live
        adapter checks ``fetch_position_mode`` and refuses hedge mode)."""
        return []

    def demo(self, client: Any) -> None:
        """Point ``client`` at the venue's demo trading (Binance: ``enable_demo_trading``,
        ccxt 4.5 ``binance.py``: ``urls['api'] = urls['demo']``, demo-fapi.binance.com; the
        futures testnet that ``set_sandbox_mode`` reaches is gone). Demo has no ``sapi``: the
        API-key permission call raises ``NotSupported`` locally."""
        client.enable_demo_trading(True)

    def client_options(self) -> dict[str, Any]:
        """ccxt options the venue's client is built with (besides guardbot's defaults)."""
        return {}

    # ------------------------------------------------------------------ fills

    def trade_client_id(self, trade: Mapping[str, Any]) -> str | None:
        """The client id of the order a ccxt trade belongs to, when the trade names it.

        Binance: the user-data stream's ``ORDER_TRADE_UPDATE`` carries it as ``c`` (ccxt keeps
        the raw order in ``info``); REST ``userTrades`` does not (look the order up by its id).
        """
        info = trade.get("info") or {}
        for value in (info.get("c"), info.get("clientOrderId"), trade.get("clientOrderId")):
            if isinstance(value, str) and value:
                return value
        return None

    def fill_queries(self) -> tuple[dict[str, Any], ...]:
        """The ``fetch_my_trades`` params that together list every fill of the account (one
        query each): Binance's ``userTrades`` lists them all, the exchange's own closes too."""
        return ({},)

    def fill_origin(
        self, client_id: str | None, trade: Mapping[str, Any]
    ) -> Literal["liquidation", "adl"] | None:
        """Whether a fill is the exchange's own close of the position (None: someone's order).

        Binance (``ORDER_TRADE_UPDATE`` documentation): a liquidation order's client id starts
        with ``autoclose-``, an auto-deleverage's is ``adl_autoclose``.
        """
        if client_id is None:
            return None
        if client_id.startswith("autoclose-"):
            return "liquidation"
        if client_id == "adl_autoclose":
            return "adl"
        return None

    # ------------------------------------------------------------------ refusals

    def error_code(self, exc: BaseException) -> str | None:
        """The exchange's error code in a ccxt exception's text, if any."""
        found = self._code_re.search(str(exc))
        return found.group(1) if found else None

    def classify(self, exc: BaseException) -> ErrorKind | None:
        """What a refusal means (``error_codes``), None when it is none of those."""
        code = self.error_code(exc)
        if code is None:
            return None
        for kind, codes in self.error_codes.items():
            if code in codes:
                return kind
        return None


def _is_trigger(order: Mapping[str, Any]) -> bool:
    for key in ("triggerPrice", "stopPrice", "stopLossPrice", "takeProfitPrice"):
        if order.get(key):
            return True
    return False


def _amount_step(market: Mapping[str, Any] | None) -> float | None:
    if not market:
        return None
    precision = market.get("precision") or {}
    step = precision.get("amount")
    return float(step) if step else None
