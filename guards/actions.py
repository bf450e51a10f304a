"""Sweep actions merged and ordered: one action per symbol and kind, most urgent first.

``order_actions`` is what ``GuardEngine.sweep`` returns its rules' actions through: a ``close``
of a symbol supersedes its ``reduce`` and ``place_stop``, the largest ``reduce`` wins, ``halt``
notices are kept once per rule and code, and the result is sorted by ``ACTION_URGENCY``.
"""

from __future__ import annotations

from guards.types import ACTION_URGENCY, Action

__all__ = ["order_actions"]


def order_actions(actions: list[Action]) -> list[Action]:
    """De-duplicate per symbol (close beats reduce/place_stop; largest reduce) and sort.

    Zero or one action is returned as it is (in a new list): nothing to merge or order.
    """
    if len(actions) <= 1:
        return list(actions)
    closing = {a.symbol for a in actions if a.kind == "close"}
    best: dict[tuple[str, str | None], Action] = {}
    for action in actions:
        kind = action.kind
        if kind in ("reduce", "place_stop") and action.symbol in closing:
            continue
        key = (f"halt:{action.rule}:{action.code}" if kind == "halt" else kind, action.symbol)
        prev = best.get(key)
        if prev is None or (kind == "reduce" and (action.amount or 0.0) > (prev.amount or 0.0)):
            best[key] = action
    return sorted(best.values(), key=lambda a: ACTION_URGENCY[a.kind])
