"""What every part of the Binance emulator shares: its registries over the paper core.

Binance wants client order ids unique among *open* orders only, so the emulator keeps its own
registry of client ids and order ids (the core never sees them), the external ids of orders
acknowledged as NEW that fill later (``_Pending``), and per-order overlays (an order that expired
after a partial fill). Account settings the paper core does not model live here too: hedge
(dual-side) position mode and the API key's permissions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bot.emulator.binance.shapes import _missing, _Pending
from bot.emulator.server import ApiError, EmulatorServer
from paper.config import PaperConfig
from paper.core import PaperCore
from paper.markets import PaperMarket


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

    def _ext(self, core_id: str) -> str:
        return self._core_to_ext.get(core_id, core_id)

    def _core_id(self, ext_id: str) -> str:
        return self._ext_to_core.get(ext_id, ext_id)
