"""The durable paper adapter: the paper exchange of a running bot, persisted in the store.

``DurablePaperExchange`` is ``paper.exchange.PaperExchange`` (the async ccxt-shaped face of the
paper core) whose state is saved in the state store before any change is acknowledged, so a
paper session survives a ``kill -9`` like a live account does. ``paper_exchange`` resumes it
from the store's snapshot (or opens a fresh account on the bundled markets).
"""

from __future__ import annotations

from typing import Any

import structlog

from bot.settings import Settings
from bot.state.safe import SafeStore
from bot.state.store import Store
from paper.core import PaperCore
from paper.exchange import PaperExchange
from paper.markets import load_markets

log = structlog.get_logger("paper")

PAPER_SNAPSHOT_KEY = "paper.snapshot"


class PaperSetupError(Exception):
    """The paper account cannot be opened (e.g. a symbol with no bundled market)."""


class DurablePaperExchange(PaperExchange):
    """A paper exchange whose state is in the store before any change is acknowledged.

    Every order, cancel or setting change saves the core's snapshot before returning to the
    caller (who records the ack after), and the price hook saves it when a price filled or
    triggered anything: a ``kill -9`` at any point loses nothing that was acknowledged.

    With a ``SafeStore`` that cannot write, the snapshot waits in its backlog (newest only) and
    the order still goes out: bookkeeping never blocks a close (entries are refused upstream).
    """

    def __init__(self, core: PaperCore, store: Store | SafeStore) -> None:
        super().__init__(core)
        self.store = store
        self._seen = self._fingerprint()

    def _fingerprint(self) -> tuple[int, int, int, float]:
        c = self.core
        return (len(c.trades), len(c.liquidations), len(c.open_orders()), c.wallet_balance)

    def persist(self) -> None:
        # with history: closed orders keep their client ids (duplicates stay detectable and
        # every acknowledged fill stays provable after a restart)
        snap = self.core.snapshot(history=True)
        if isinstance(self.store, SafeStore):
            self.store.write(
                "paper_snapshot", lambda s: s.kv_set(PAPER_SNAPSHOT_KEY, snap), PAPER_SNAPSHOT_KEY
            )
        else:
            self.store.kv_set(PAPER_SNAPSHOT_KEY, snap)
        self._seen = self._fingerprint()

    def on_price(self, symbol: str, price: float, ts: float, gap: bool = False) -> None:
        """Price the paper book (fills, stops, liquidations) and persist if anything moved;
        ``gap``: no trading since the previous price (a feed that resumes after an outage)."""
        self.core.on_price(symbol, price, int(ts * 1000), gap=gap)
        if self._fingerprint() != self._seen:
            self.persist()

    async def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: float,
        price: float | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        try:
            return await super().create_order(symbol, type, side, amount, price, params)
        finally:
            self.persist()

    async def cancel_order(
        self, id: str, symbol: str | None = None, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            return await super().cancel_order(id, symbol, params)
        finally:
            self.persist()

    async def set_leverage(
        self, leverage: float, symbol: str | None = None, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            return await super().set_leverage(leverage, symbol, params)
        finally:
            self.persist()

    async def set_margin_mode(
        self, marginMode: str, symbol: str | None = None, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            return await super().set_margin_mode(marginMode, symbol, params)
        finally:
            self.persist()


def paper_exchange(settings: Settings, store: Store | SafeStore) -> DurablePaperExchange:
    """The paper account, resumed from the store's snapshot when there is one."""
    snap = store.kv_get(PAPER_SNAPSHOT_KEY)
    if isinstance(snap, dict):
        core = PaperCore.restore(snap, settings.paper)
        log.info(
            "paper_resumed", wallet=core.wallet_balance, positions=len(core.account().positions)
        )
    else:
        try:
            markets = load_markets(settings.exchange.symbols, settings.paper)
        except KeyError as exc:
            raise PaperSetupError(f"no bundled paper market for {exc}") from None
        core = PaperCore(settings.paper, markets)
    exchange = DurablePaperExchange(core, store)
    exchange.persist()
    return exchange


def save_paper(store: Store | SafeStore, exchange: Any) -> None:
    if isinstance(exchange, DurablePaperExchange):
        exchange.persist()
