"""The engine's data check: market rules, fresh marks and a judgeable intent, before the rules.

``data_verdict(intent, ctx, stale_price_s)`` is the ``data`` verdict of ``GuardEngine.check``
(run after loss_limit; a refusal here leaves the later rules ``not_evaluated``):

- no market rules for the symbol, or no leverage tiers → ``missing_market``;
- no mark for the symbol, or one older than ``stale_price_s`` → ``stale_price``;
- a non-positive or non-finite amount, price or leverage (``guards.intents.invalid_reason``)
  → ``invalid_intent``;
- a missing mark of an open position, or the oldest such mark older than ``stale_price_s``
  (from the context's ``AccountView``) → ``stale_price``.

Otherwise ``allow`` with the time of the check, the mark and its age (``approve`` reads the
time back from it).
"""

from __future__ import annotations

from guards.account import account_view
from guards.intents import invalid_reason
from guards.types import GuardContext, OrderIntent, Verdict, new_verdict

__all__ = ["DATA", "data_verdict"]

#: The name data verdicts carry.
DATA = "data"


def data_verdict(intent: OrderIntent, ctx: GuardContext, stale_s: float) -> Verdict:
    """The data check of ``intent`` at ``ctx`` (see the module docstring)."""
    symbol = intent.symbol
    market = ctx.markets.get(symbol)
    if market is None or not market.tiers:
        what = "no market rules" if market is None else "no leverage tiers"
        return Verdict(DATA, "reject", "missing_market", f"{what} for {symbol}")
    now = ctx.now
    mark = ctx.marks.get(symbol)
    if mark is None:
        return Verdict(
            DATA, "reject", "stale_price", f"no mark price for {symbol}", None, {"age_s": None}
        )
    age = now - mark.ts
    if not age <= stale_s:
        return Verdict(
            DATA,
            "reject",
            "stale_price",
            f"mark of {symbol} is {age:.1f} s old (max {stale_s:g} s)",
            None,
            {"symbol": symbol, "age_s": age, "stale_price_s": stale_s},
        )
    price = mark.price
    problem = invalid_reason(intent, price)
    if problem:
        return Verdict(DATA, "reject", "invalid_intent", problem)
    view = account_view(ctx)
    if view.missing_mark is not None:
        return Verdict(
            DATA,
            "reject",
            "stale_price",
            f"no mark price for open position {view.missing_mark}",
            None,
            {"symbol": view.missing_mark, "age_s": None},
        )
    oldest = now - view.oldest_mark_ts
    if oldest > stale_s:
        return Verdict(
            DATA,
            "reject",
            "stale_price",
            f"mark of open position {view.oldest_symbol} is {oldest:.1f} s old (max {stale_s:g} s)",
            None,
            {"symbol": view.oldest_symbol, "age_s": oldest, "stale_price_s": stale_s},
        )
    return new_verdict(DATA, "allow", "ok", "", None, {"now": now, "mark": price, "age_s": age})
