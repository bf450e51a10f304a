"""When another sweep can change nothing: the calm a sweep leaves, so a driver may skip sweeps.

A sweep that returned no action stays empty while nothing it looks at moves beyond what it
tolerates. ``Calm`` says how far: until the time ``until``; while each symbol's mark stays
strictly inside its band (``bands``: the liquidation rule's reduce zone, widened to the circuit
breaker's); while the equity stays above the loss limits' floors (``loss_limits``: the factors
of the day's start equity and of the peak, read against the engine's state at the time); and
while the account (positions, their stops, the resting orders) is the very object it was
computed for. Every rule that sweeps says its own part (``Rule.calm``); a rule that cannot
promise anything returns None, and then nothing is calm.

``GuardEngine.calm(ctx)`` builds it after a sweep; ``GuardEngine.still_calm`` answers, in a few
comparisons, whether the next sweep may be skipped, feeding the equity to the state as the sweep
would have. Replay uses it to skip what cannot change a decision; results are the same as
sweeping at every candle (a test runs both).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from guards.account import account_view
from guards.state import GuardState
from guards.types import Account, GuardContext

NO_BANDS: Mapping[str, tuple[float, float]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Calm:
    """Where a sweep can change nothing (see the module docstring)."""

    #: Sweep again at or after this time (epoch s).
    until: float = math.inf
    #: Per symbol: the mark must stay strictly inside ``(low, high)``.
    bands: Mapping[str, tuple[float, float]] = field(default_factory=lambda: NO_BANDS)
    #: ``(daily, drawdown)``: calm while equity > day start × daily and > peak × drawdown.
    loss_limits: tuple[float, float] | None = None
    #: The account it holds for (set by the engine; compared by identity).
    account: Account | None = None

    def merge(self, other: Calm) -> Calm:
        """Both calms at once: the earlier time, the narrower bands, the higher floors."""
        bands = dict(self.bands)
        _narrow(bands, other.bands)
        limits = _higher(self.loss_limits, other.loss_limits)
        return Calm(min(self.until, other.until), bands, limits, self.account or other.account)

    def band(self, symbol: str) -> tuple[float, float] | None:
        return self.bands.get(symbol)


def _narrow(bands: dict[str, tuple[float, float]], more: Mapping[str, tuple[float, float]]) -> None:
    """Narrow ``bands`` in place to their intersection with ``more`` (symbol by symbol)."""
    for symbol, (lo, hi) in more.items():
        old = bands.get(symbol)
        bands[symbol] = (lo, hi) if old is None else (max(lo, old[0]), min(hi, old[1]))


def _higher(
    limits: tuple[float, float] | None, more: tuple[float, float] | None
) -> tuple[float, float] | None:
    """The higher of two ``loss_limits`` factor pairs, factor by factor (None: no limit)."""
    if more is None:
        return limits
    if limits is None:
        return more
    return (max(limits[0], more[0]), max(limits[1], more[1]))


#: A rule's answer when its sweep depends on nothing that moves while the account is unchanged.
ALWAYS = Calm()


class Calming(Protocol):
    """A sweeping rule as ``calm_of`` sees it (``guards.rules.base.Rule``)."""

    def calm(self, ctx: GuardContext) -> Calm | None: ...


def calm_of(
    ctx: GuardContext,
    sweepers: Sequence[Calming],
    state: GuardState,
    stale_price_s: float,
    refreshed: Collection[str] = (),
) -> Calm | None:
    """The calm after a sweep at ``ctx`` that returned nothing (``GuardEngine.calm``).

    The engine's own part: the marks of open positions not in ``refreshed`` go stale
    ``stale_price_s`` after their time, and a halt with an end expires then; the rest is each
    sweeping rule's ``calm``.
    """
    if account_view(ctx).missing_mark is not None:
        return None
    until = math.inf
    for symbol in ctx.account.positions:
        if symbol not in refreshed:
            until = min(until, ctx.marks[symbol].ts + stale_price_s)
    halt = state.halt
    if halt is not None and halt.until is not None:
        until = min(until, halt.until)
    # every rule's part merged as ``Calm.merge`` does, into one Calm at the end
    bands: dict[str, tuple[float, float]] | None = None
    limits: tuple[float, float] | None = None
    for rule in sweepers:
        part = rule.calm(ctx)
        if part is None:
            return None
        if part.until < until:
            until = part.until
        if part.bands:
            if bands is None:
                bands = dict(part.bands)
            else:
                _narrow(bands, part.bands)
        limits = _higher(limits, part.loss_limits)
    return Calm(until, {} if bands is None else bands, limits, ctx.account)


def above_floors(calm: Calm, state: GuardState, equity: float) -> bool:
    """Is ``equity`` above the loss limits' floors, read against the state now?"""
    limits = calm.loss_limits
    if limits is None:
        return True
    base = state.day_start_equity
    peak = state.equity_peak
    if base is not None and not equity > base * limits[0]:
        return False
    return peak is None or equity > peak * limits[1]


__all__ = ["ALWAYS", "Calm", "above_floors", "calm_of"]
