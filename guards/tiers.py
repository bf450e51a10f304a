"""Leverage tiers (maintenance-margin brackets): parsing from ccxt and lookup by notional.

``tiers_from_ccxt`` turns one symbol's ccxt ``fetch_leverage_tiers`` list into validated, sorted
``Tiers``; ``tiers_by_symbol`` does it for a whole ``{symbol: [...]}`` mapping; ``tier_index``
finds the bracket of a notional. ``tier_table`` gives the lookup data of a tiers tuple, kept on a
``Tiers`` object (every ``MarketRules`` holds one) and rebuilt per call for any other sequence.

The maintenance amount (Binance's ``cum``, Bybit's ``mmDeduction``) is read from ``info.cum``
(Binance), ``info.mmDeduction`` (Bybit; empty for a lowest tier) or ``maintAmt`` (freqtrade's
fixtures); when none is given it is derived from continuity of the maintenance margin across
brackets, as Binance and Bybit both document it:
``cum_i = cum_{i-1} + min_notional_i * (mmr_i - mmr_{i-1})`` with ``cum_1 = 0``.

A venue's ``LiquidationModel`` (``model=``) rides on the ``Tiers``. Under ``okx`` ccxt's
``minNotional`` / ``maxNotional`` are OKX's ``minSz`` / ``maxSz``, position sizes in *contracts*
(ccxt ``okx.parse_market_leverage_tiers``): ``tiers_from_ccxt(..., model="okx",
contract_size=...)`` turns them into base units, and each bracket starts where the previous
one ends (OKX publishes 0-3,000 then 3,001-6,000 contracts). Bybit and OKX count a bracket's
upper bound in (Bybit: "position value of 2,000,000 USDT or below"; OKX: "max. amount"), Binance
counts it in the next bracket; ``TierTable.index`` follows the model.

Pure: no I/O. Reading the bundled tier file is the caller's job.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

from guards.types import LiquidationModel, Tier, Tiers

__all__ = [
    "TierTable",
    "Tiers",
    "position_tier_index",
    "tier_index",
    "tier_table",
    "tiers_by_symbol",
    "tiers_from_ccxt",
]

_REL_TOL = 1e-9


def _number(entry: Mapping[str, Any], key: str, *, default: float | None = None) -> float:
    value = entry.get(key)
    if value is None:
        if default is None:
            raise ValueError(f"tier entry has no {key!r}: {dict(entry)!r}")
        return default
    number = float(value)
    if math.isnan(number):
        raise ValueError(f"tier entry has a NaN {key!r}")
    return number


def _given_maint_amount(entry: Mapping[str, Any]) -> float | None:
    if entry.get("maintAmt") is not None:
        return float(entry["maintAmt"])
    info = entry.get("info")
    if isinstance(info, Mapping):
        if info.get("cum") is not None:
            return float(info["cum"])
        deduction = info.get("mmDeduction")
        if deduction is not None and deduction != "":
            return float(deduction)
    return None


def tiers_from_ccxt(
    entries: Sequence[Mapping[str, Any]],
    *,
    model: LiquidationModel | None = None,
    contract_size: float = 1.0,
) -> Tiers:
    """Validated ``Tier``s, sorted by ``min_notional``, from one symbol's ccxt tier list.

    A missing or ``None`` ``maxNotional`` (open-ended last bracket) becomes ``inf``. Raises
    ``ValueError`` when the list is empty, brackets overlap or leave gaps, a rate is not in
    (0, 1), rates decrease with size, or a leverage is not positive. ``model`` is kept on the
    returned ``Tiers``; under ``okx`` the bounds are contracts, scaled by ``contract_size`` to
    base units, and a bracket's lower bound is the previous one's upper bound (see the module
    docstring).
    """
    if not entries:
        raise ValueError("no leverage tiers")
    if not (contract_size > 0.0 and math.isfinite(contract_size)):
        raise ValueError(f"contract size must be positive, not {contract_size}")
    by_size = model == "okx"
    if by_size:
        rows = sorted(entries, key=lambda e: _number(e, "maxNotional", default=math.inf))
    else:
        rows = sorted(entries, key=lambda e: _number(e, "minNotional"))
    tiers: list[Tier] = []
    for entry in rows:
        if by_size:
            high = _number(entry, "maxNotional", default=math.inf) * contract_size
            low = tiers[-1].max_notional if tiers else 0.0
        else:
            low = _number(entry, "minNotional")
            high = _number(entry, "maxNotional", default=math.inf)
        mmr = _number(entry, "maintenanceMarginRate")
        leverage = _number(entry, "maxLeverage")
        if not 0.0 < mmr < 1.0:
            raise ValueError(f"maintenance margin rate {mmr} not in (0, 1) at notional {low}")
        if not leverage > 0.0:
            raise ValueError(f"max leverage {leverage} not positive at notional {low}")
        if not low < high:
            raise ValueError(f"empty tier [{low}, {high})")
        given = _given_maint_amount(entry)
        if tiers:
            prev = tiers[-1]
            if not math.isclose(prev.max_notional, low, rel_tol=_REL_TOL, abs_tol=_REL_TOL):
                raise ValueError(
                    f"tiers not contiguous: one ends at {prev.max_notional}, next starts at {low}"
                )
            if mmr < prev.mmr:
                raise ValueError(f"maintenance margin rate falls from {prev.mmr} to {mmr}")
            amount = given if given is not None else prev.maint_amount + low * (mmr - prev.mmr)
            if by_size:
                amount = 0.0  # OKX's model has no maintenance amount
        else:
            if low < 0.0:
                raise ValueError(f"first tier starts at a negative notional {low}")
            amount = given if given is not None else 0.0
        if not math.isfinite(amount):
            raise ValueError(f"maintenance amount {amount} not finite at notional {low}")
        tiers.append(Tier(low, high, mmr, amount, leverage))
    return Tiers(tiers, model)


def tiers_by_symbol(
    data: Mapping[str, Sequence[Mapping[str, Any]]], *, model: LiquidationModel | None = None
) -> dict[str, Tiers]:
    """``tiers_from_ccxt`` for each symbol of a ``fetch_leverage_tiers`` result.

    The ``ValueError`` of a bad list names its symbol. (OKX's lists need each market's
    contract size: call ``tiers_from_ccxt`` per symbol.)
    """
    result: dict[str, Tiers] = {}
    for symbol, entries in data.items():
        try:
            result[symbol] = tiers_from_ccxt(entries, model=model)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{symbol}: {exc}") from exc
    return result


class TierTable:
    """Per-tiers lookup data, built once per ``Tiers`` object (see ``tier_table``).

    Tier ``j`` covers notionals ``[lows[j], highs[j])`` with ``lows[0] = 0`` and
    ``highs[-1] = inf``, the same split ``index`` uses, so a notional below the first bracket
    counts as the first and one beyond the last as the last. Under the ``bybit`` and ``okx``
    models a bracket holds its upper bound (``(lows[j], highs[j]]``), and under ``okx`` the
    bounds are position sizes (``by_size``; ``index_at`` picks the key).
    """

    __slots__ = (
        "by_size",
        "cums",
        "highs",
        "inclusive",
        "lows",
        "memo",
        "mmrs",
        "model",
        "tiers",
        "uppers",
        "zeros",
    )

    def __init__(self, tiers: tuple[Tier, ...], model: LiquidationModel | None = None) -> None:
        if not tiers:
            raise ValueError("no leverage tiers")
        for prev, cur in pairwise(tiers):
            if cur.min_notional < prev.min_notional:
                raise ValueError("tiers must be sorted by min_notional")
        for tier in tiers:
            if not 0.0 < tier.mmr < 1.0:
                raise ValueError(f"maintenance margin rate {tier.mmr} not in (0, 1)")
        self.tiers = tiers
        #: Upper bounds of every tier but the last: what ``index`` bisects.
        self.uppers = tuple(t.max_notional for t in tiers[:-1])
        self.lows = (0.0, *self.uppers)
        self.highs = (*self.uppers, math.inf)
        self.mmrs = tuple(t.mmr for t in tiers)
        self.cums = tuple(t.maint_amount for t in tiers)
        self.zeros = (0.0,) * len(tiers)
        #: Free slot for callers' derived per-tier data (e.g. liquidation thresholds).
        self.memo: dict[tuple[object, ...], tuple[float, ...]] = {}
        self.model: LiquidationModel | None = model
        #: Brackets by position size (OKX), not notional.
        self.by_size = model == "okx"
        #: A bracket holds its upper bound (Bybit, OKX).
        self.inclusive = model in ("bybit", "okx")

    def index(self, notional: float) -> int:
        """0-based index of the tier holding ``notional`` (a size under ``by_size``)."""
        if self.inclusive:
            return bisect_left(self.uppers, notional)
        return bisect_right(self.uppers, notional)

    def index_at(self, amount: float, price: float) -> int:
        """0-based index of the tier of a position of ``amount`` (base units) at ``price``."""
        return self.index(amount if self.by_size else amount * price)


def tier_table(tiers: Sequence[Tier]) -> TierTable:
    """The ``TierTable`` of ``tiers``: kept on a ``Tiers`` object, else built for this call.

    ``MarketRules.tiers`` is always a ``Tiers``, so a hot-path lookup costs an attribute read,
    not a pass over the tiers. Tiers must already be sorted (as ``tiers_from_ccxt`` returns
    them); they are never re-sorted.
    """
    if type(tiers) is Tiers:
        table = tiers._table
        if type(table) is TierTable:
            return table
        table = TierTable(tiers, tiers.model)
        tiers._table = table
        return table
    return TierTable(tuple(tiers))


def tier_index(notional: float, tiers: Sequence[Tier]) -> int:
    """Index (0-based) of the tier whose [min, max) holds ``notional``.

    A notional at a bracket's upper bound belongs to the next bracket (Bybit and OKX tiers:
    to this one); one beyond the last bracket maps to the last, one below the first to the
    first. Under ``okx`` the argument is a position size (see ``position_tier_index``).
    """
    return tier_table(tiers).index(notional)


def position_tier_index(amount: float, price: float, tiers: Sequence[Tier]) -> int:
    """Index (0-based) of the tier of a position of ``amount`` at ``price`` under its model.

    The notional ``amount * price`` decides, except under ``okx`` (the size ``amount``).
    """
    return tier_table(tiers).index_at(amount, price)
