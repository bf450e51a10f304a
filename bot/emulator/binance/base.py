"""What every part of the Binance emulator shares: its registries over the paper core.

Binance wants client order ids unique among *open* orders only, so the emulator keeps its own
registry of client ids and order ids (the core never sees them), the external ids of orders
acknowledged as NEW that fill later (``_Pending``), per-order overlays (an order that expired
after a partial fill), the matching engine's own orders (``_EngineOrder``: what a triggered stop
placed, liquidation and ADL orders) and which cancels were the user's. Account settings the
paper core does not model live here too: hedge (dual-side) position mode, multi-assets mode
and its other margin assets, and the API key's
permissions. The query-parameter checks every endpoint shares (``_int``, ``_limit``,
``_window``) as well.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from bot.emulator.binance.shapes import _EngineOrder, _missing, _Pending, _s
from bot.emulator.server import ApiError, EmulatorServer
from paper.config import PaperConfig
from paper.core import PaperCore
from paper.markets import PaperMarket

_INT_RE: Final = re.compile(r"^[0-9]{1,20}$")


class BinanceBase(EmulatorServer):
    """State shared by the Binance emulator's parts."""

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
        core: PaperCore | None = None,
        config: PaperConfig | None = None,
        symbols: Iterable[str] | None = None,
        balance: float | None = None,
        clock: Callable[[], float] | None = None,
        permissions: Mapping[str, Any] | None = None,
        hedge_mode: bool = False,
        multi_assets: bool = False,
        collateral: Mapping[str, float] | None = None,
    ) -> None:
        extra = {} if clock is None else {"clock": clock}
        super().__init__(
            api_key=api_key,
            api_secret=api_secret,
            core=core,
            config=config,
            symbols=symbols,
            balance=balance,
            **extra,
        )
        core = self.core
        self.hedge_mode = hedge_mode
        #: Multi-assets mode (``bot.emulator.binance.modes``): every symbol in cross margin.
        self.multi_assets = multi_assets
        #: The account's other margin assets (asset -> amount, 1:1 in USD), multi-assets only.
        self.collateral: dict[str, float] = dict(collateral or {})
        if multi_assets:
            for s in core.symbols:
                core.set_margin_mode("cross", s)
        self.permissions: dict[str, Any] = {
            "ipRestrict": False,
            "createTime": 1_700_000_000_000,
            "enableReading": True,
            "enableFutures": True,
            "enableWithdrawals": False,
            "enableInternalTransfer": False,
            "permitsUniversalTransfer": False,
            "enableMargin": False,
            "enableSpotAndMarginTrading": False,
            "enableVanillaOptions": False,
            "enablePortfolioMarginTrading": False,
            "enableFixApiTrade": False,
            "enableFixReadOnly": False,
        }
        if permissions:
            self.permissions.update(permissions)
        self.market_liquidations: list[dict[str, Any]] = []
        self._by_id: dict[str, PaperMarket] = {}
        for s in core.symbols:
            m = core.market(s)
            self._by_id[m.id] = m
        self._cid_by_oid: dict[str, str] = {}
        self._oids_by_cid: dict[str, list[str]] = {}
        self._overlay: dict[str, dict[str, str]] = {}
        self._pending: dict[str, _Pending] = {}
        self._ext_to_core: dict[str, str] = {}
        self._core_to_ext: dict[str, str] = {}
        self._pending_seq = 0
        self._liq_seen = 0
        #: The matching engine's own orders by external id, and by the core order id of the
        #: fill that made them (a trigger order's id, ``liquidation-N``, ``adl-N``).
        self._engine: dict[str, _EngineOrder] = {}
        self._engine_by_core: dict[str, str] = {}
        self._engine_seq = 0
        #: Core ids of the orders the user canceled (the others were canceled by the exchange:
        #: Binance shows those as EXPIRED).
        self._user_canceled: set[str] = set()

    def _market(self, params: Mapping[str, str], required: bool = True) -> PaperMarket | None:
        market_id = params.get("symbol")
        if market_id is None:
            if required:
                raise ApiError(-1102, _missing("symbol"))
            return None
        market = self._by_id.get(market_id)
        if market is None:
            raise ApiError(-1121, "Invalid symbol.")
        return market

    # -- parameters, checked as Binance checks them ------------------------------------------
    def _int(self, params: Mapping[str, str], name: str) -> int | None:
        raw = params.get(name)
        if raw is None or raw == "":
            return None
        if not _INT_RE.match(raw):
            raise ApiError(
                -1100,
                f"Illegal characters found in parameter '{name}'; legal range is "
                "'^[0-9]{1,20}$'.",
            )
        return int(raw)

    def _limit(self, params: Mapping[str, str], bounds: tuple[int, int]) -> int:
        """``limit``: ``bounds`` = (default, maximum); -1130 outside 1 .. maximum."""
        value = self._int(params, "limit")
        if value is None:
            return bounds[0]
        if not 1 <= value <= bounds[1]:
            raise ApiError(-1130, "Data sent for parameter 'limit' is not valid.")
        return value

    def _window(self, params: Mapping[str, str]) -> tuple[int | None, int | None]:
        start, end = self._int(params, "startTime"), self._int(params, "endTime")
        if start is not None and end is not None and start > end:
            raise ApiError(-1023, "Start time is greater than end time.")
        return start, end

    def _ext(self, core_id: str) -> str:
        return self._core_to_ext.get(core_id, core_id)

    def _core_id(self, ext_id: str) -> str:
        return self._ext_to_core.get(ext_id, ext_id)

    def _engine_json(self, e: _EngineOrder) -> dict[str, Any]:
        """An order of the matching engine's own (``_EngineOrder``) as ``GET /fapi/v1/order``
        shows it: filled at once."""
        return {
            "orderId": int(e.ext_id),
            "symbol": self.core.market(e.symbol).id,
            "status": "FILLED",
            "clientOrderId": e.client_id,
            "price": _s(e.price),
            "avgPrice": _s(e.avg),
            "origQty": _s(e.qty),
            "executedQty": _s(e.qty),
            "cumQty": _s(e.qty),
            "cumQuote": _s(e.qty * e.avg),
            "timeInForce": e.time_in_force,
            "type": e.type,
            "reduceOnly": e.reduce_only,
            "closePosition": e.close_position,
            "side": e.side,
            "positionSide": "BOTH",
            "stopPrice": _s(e.stop_price),
            "workingType": e.working_type,
            "priceProtect": False,
            "origType": e.orig_type,
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0,
            "time": e.time_ms,
            "updateTime": e.time_ms,
        }
