"""How the engine learns that a position closed, and counts the close once.

With a fills record (``bot.trading.recorder``) a close is the exchange's: the closing fill's round
trip (``on_round_trip``) carries its real reason and net PnL to the guards (stop-out counter,
cooldown, daily figures), and a liquidation or an auto-deleverage raises its own alert. A
position gone from an account read waits for its closing fills (``gone``, then ``confirm``);
only if the exchange reports none is the close estimated from the last mark, and that is logged
(``position_closed_estimated``). Without a record (unit tests of the engine) every close is the
estimate. Either way each close is counted exactly once, whichever news arrives first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import structlog

from bot.state.trips import RoundTrip
from guards import CloseReason, GuardEngine, Mark, Position

log = structlog.get_logger("engine")


class Engineish(Protocol):
    """What the close accounting uses of the engine."""

    guard: GuardEngine

    @property
    def marks(self) -> Mapping[str, Mark]: ...

    #: Why the engine itself is closing a symbol (strategy exit, guard close).
    closing: dict[str, CloseReason]

    def save_state(self) -> None: ...


class Closes:
    """The closes of one engine: counted from fills, or estimated when fills cannot tell."""

    def __init__(self, engine: Engineish) -> None:
        self.engine = engine
        #: A fills record is in use: closes wait for their fills.
        self.from_fills = False
        #: Closes counted from fills before an account read showed the position gone.
        self._counted: dict[str, bool] = {}
        #: Positions gone whose closing fills are being fetched.
        self._awaiting: dict[str, Position] = {}

    def gone(
        self, before: Mapping[str, Position], after: Mapping[str, Position], now: float
    ) -> list[tuple[str, Position]]:
        """Compare two account reads: the positions closed in between that still need their
        closing fills (``confirm``); without a fills record they are estimated at once."""
        waiting: list[tuple[str, Position]] = []
        for sym, old in before.items():
            new = after.get(sym)
            if new is not None and new.side == old.side:
                continue
            if not self.from_fills:
                self.estimate(sym, old, now)
            elif not self._counted.pop(sym, False):
                waiting.append((sym, old))
        for sym in [s for s in self._counted if s not in before and s not in after]:
            del self._counted[sym]  # closed before a read ever showed it open
        return waiting

    async def confirm(
        self, symbol: str, old: Position, now: float, sync: Callable[[], Awaitable[object]]
    ) -> None:
        """Fetch the closing fills of ``symbol`` (``sync``); if none is reported (or the
        exchange cannot be asked) the close is counted from the last mark -- never not at all."""
        self._awaiting[symbol] = old
        try:
            await sync()
        except Exception as exc:
            log.warning("close_fills_unavailable", symbol=symbol, error=repr(exc))
        if self._awaiting.pop(symbol, None) is not None:
            self.estimate(symbol, old, now, confirmed=False)

    def estimate(self, sym: str, old: Position, now: float, confirmed: bool = True) -> None:
        """Count a close at the last mark, with the reason the engine expected (else a stop)."""
        engine = self.engine
        reason = engine.closing.pop(sym, "stop")
        mark = engine.marks[sym].price if sym in engine.marks else old.entry_price
        pnl = old.unrealized_pnl(mark)
        engine.guard.on_position_closed(sym, reason, pnl, now)
        event = log.info if confirmed else log.warning
        event(
            "position_closed" if confirmed else "position_closed_estimated",
            symbol=sym,
            reason=reason,
            pnl=round(pnl, 2),
        )

    def on_round_trip(self, trip: RoundTrip) -> None:
        """A fill closed (part of) a position: the guards count the close with its recorded
        reason and PnL; a liquidation raises its own critical alert."""
        fields = {
            "symbol": trip.symbol,
            "side": trip.side,
            "amount": trip.amount,
            "entry": trip.entry_price,
            "exit": trip.exit_price,
            "pnl": round(trip.pnl, 8),
            "fees": round(trip.fees, 8),
            "net": round(trip.net, 8),
            "role": trip.role,
            "reason": trip.reason,
            "closed": trip.closed,
        }
        log.info("round_trip", **fields)
        if trip.reason == "liquidation":
            log.critical("position_liquidated", alert=True, **fields)
        elif trip.reason == "adl":
            log.warning("position_auto_deleveraged", alert=True, **fields)
        if not trip.closed:
            return
        if self._awaiting.pop(trip.symbol, None) is None:
            self._counted[trip.symbol] = True  # before the account read shows it gone
        engine = self.engine
        engine.closing.pop(trip.symbol, None)
        engine.guard.on_position_closed(trip.symbol, trip.reason, trip.net, trip.closed_at)
        engine.save_state()
