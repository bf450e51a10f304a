"""An order intent as the engine judges it: validity of its figures, and resize adjustments.

``invalid_reason(intent, mark)`` says why an intent or its mark cannot be judged (``""`` when
fine): every amount, price and leverage must be a positive finite number. ``adjusted(intent,
verdict)`` is the order a ``resize`` verdict leaves for the later rules (its amount, and the
stop or leverage it sets through ``SET_STOP`` / ``SET_LEVERAGE``).
"""

from __future__ import annotations

import math

from guards.types import OrderIntent, Verdict

__all__ = ["SET_LEVERAGE", "SET_STOP", "adjusted", "invalid_reason"]

#: Verdict figure keys through which a ``resize`` verdict changes the order for later rules.
SET_STOP = "set_stop_price"
SET_LEVERAGE = "set_leverage"


def adjusted(intent: OrderIntent, verdict: Verdict) -> OrderIntent:
    """The order as a resize verdict leaves it (amount, and stop/leverage when set)."""
    figures = verdict.figures
    stop = figures.get(SET_STOP) if figures else None
    leverage = figures.get(SET_LEVERAGE) if figures else None
    return OrderIntent(
        symbol=intent.symbol,
        side=intent.side,
        amount=intent.amount if verdict.amount is None else verdict.amount,
        price=intent.price,
        order_type=intent.order_type,
        leverage=float(leverage) if isinstance(leverage, int | float) else intent.leverage,
        margin_mode=intent.margin_mode,
        stop_price=float(stop) if isinstance(stop, int | float) else intent.stop_price,
        take_profit=intent.take_profit,
        reduce_only=intent.reduce_only,
        kind=intent.kind,
        margin_amount=intent.margin_amount,
        client_id=intent.client_id,
        tag=intent.tag,
    )


def _finite_positive(value: float | None) -> bool:
    return value is not None and value > 0.0 and math.isfinite(value)


def invalid_reason(intent: OrderIntent, mark: float) -> str:
    """Why the intent or mark cannot be judged ("" if fine).

    Each figure is tested as ``_finite_positive`` does (not None, > 0, finite), written out in
    line: the engine asks this of every order it judges.
    """
    isfinite = math.isfinite
    if not (mark is not None and mark > 0.0 and isfinite(mark)):
        return f"mark price {mark!r} is not a positive number"
    if intent.kind == "add_margin":
        if not _finite_positive(intent.margin_amount):
            return f"margin amount {intent.margin_amount!r} is not a positive number"
        return ""
    amount = intent.amount
    if not (amount is not None and amount > 0.0 and isfinite(amount)):
        return f"amount {amount!r} is not a positive number"
    leverage = intent.leverage
    if not (leverage is not None and leverage > 0.0 and isfinite(leverage)):
        return f"leverage {leverage!r} is not a positive number"
    if intent.order_type == "limit" and not _finite_positive(intent.price):
        return f"limit price {intent.price!r} is not a positive number"
    stop = intent.stop_price
    if stop is not None and not (stop > 0.0 and isfinite(stop)):
        return f"stop price {stop!r} is not a positive number"
    tp = intent.take_profit
    if tp is not None and not (tp > 0.0 and isfinite(tp)):
        return f"take-profit {tp!r} is not a positive number"
    return ""
