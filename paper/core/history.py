"""The paper core's history: fills, funding payments, closed trades, liquidations; and the sink.

``History`` is append-only and deterministic. Fills and funding payments carry sequential ids
(1, 2, ...), so a reader keeps the last id it saw as a cursor and asks for what came after it
(``fills_since`` / ``funding_since``): a slice, no scan. The id counters survive a snapshot
taken without history, so ids never repeat.

Every record added also goes to ``recent``, in the order it happened: a funding payment; a
fill, then the ``Trade`` it closed, if any; a ``LiquidationEvent`` after the fill of the
engine's order. ``PaperCore`` empties ``recent`` when a call that can add records starts (the
slow path of ``on_price``, ``create_order``, ``apply_funding``), so it holds what the current
call caused and ``on_price`` returns it.
"""

from __future__ import annotations

from paper.core.records import CoreEvent, Fill, FundingPayment, LiquidationEvent, Trade


class History:
    """What happened on the account, in order."""

    __slots__ = ("fill_seq", "fills", "funding", "funding_seq", "liquidations", "recent", "trades")

    def __init__(self) -> None:
        #: One ``Fill`` per execution.
        self.fills: list[Fill] = []
        #: One ``FundingPayment`` per funding charge.
        self.funding: list[FundingPayment] = []
        #: One ``Trade`` per closing fill (partial closes included).
        self.trades: list[Trade] = []
        #: One ``LiquidationEvent`` per liquidation-engine action.
        self.liquidations: list[LiquidationEvent] = []
        #: Ids of the last fill / funding payment recorded (0: none yet).
        self.fill_seq = 0
        self.funding_seq = 0
        #: The records the current call into the core added (see the module docstring).
        self.recent: list[CoreEvent] = []

    def next_fill_id(self) -> int:
        return self.fill_seq + 1

    def add_fill(self, fill: Fill, trade: Trade | None = None) -> None:
        """Record ``fill`` (its id must be ``next_fill_id()``); ``trade``: the one it closed."""
        assert fill.id == self.fill_seq + 1
        self.fill_seq = fill.id
        self.fills.append(fill)
        self.recent.append(fill)
        if trade is not None:
            self.recent.append(trade)

    def add_funding(
        self,
        symbol: str,
        ts: int,
        rate: float,
        price: float,
        position: float,
        amount: float,
        currency: str,
    ) -> None:
        self.funding_seq += 1
        payment = FundingPayment(
            self.funding_seq, symbol, ts, rate, price, position, amount, currency
        )
        self.funding.append(payment)
        self.recent.append(payment)

    def add_liquidation(self, event: LiquidationEvent) -> None:
        self.liquidations.append(event)
        self.recent.append(event)

    def fills_since(self, cursor: int) -> list[Fill]:
        """Fills with an id above ``cursor`` (0: every fill kept), oldest first."""
        start = cursor - (self.fill_seq - len(self.fills))
        return self.fills[max(start, 0) :]

    def funding_since(self, cursor: int) -> list[FundingPayment]:
        """Funding payments with an id above ``cursor``, oldest first."""
        start = cursor - (self.funding_seq - len(self.funding))
        return self.funding[max(start, 0) :]
