"""The paper core's history: closed trades and the liquidation engine's actions.

``History`` is append-only and deterministic; ``PaperCore`` exposes its lists as ``trades`` and
``liquidations``, and ``snapshot()`` / ``restore`` carry them.
"""

from __future__ import annotations

from paper.core.records import LiquidationEvent, Trade


class History:
    """What happened on the account, in order."""

    __slots__ = ("liquidations", "trades")

    def __init__(self) -> None:
        #: One ``Trade`` per closing fill (partial closes included).
        self.trades: list[Trade] = []
        #: One ``LiquidationEvent`` per liquidation-engine action.
        self.liquidations: list[LiquidationEvent] = []
