"""The hand-written ``__init__`` of ``Verdict`` and ``Decision`` is the dataclass's own, faster.

Both classes spell out their ``__init__`` (storing through the slot descriptors); it must take
exactly the fields, in order, with the fields' defaults, set every field, and leave the objects
frozen and comparable like any frozen dataclass.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from guards.types import EMPTY_FIGURES, Decision, OrderIntent, Verdict


def field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return inspect.Parameter.empty


@pytest.mark.parametrize("cls", [Verdict, Decision])
def test_init_takes_the_fields_with_their_defaults(cls: type) -> None:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    fields = dataclasses.fields(cls)
    assert [p.name for p in params] == [f.name for f in fields]
    assert [p.default for p in params] == [field_default(f) for f in fields]
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)


@pytest.mark.parametrize("cls", [Verdict, Decision])
def test_init_sets_every_field(cls: type) -> None:
    values = {f.name: object() for f in dataclasses.fields(cls)}
    by_position = cls(*values.values())
    by_keyword = cls(**values)
    for name, value in values.items():
        assert getattr(by_position, name) is value and getattr(by_keyword, name) is value
    with pytest.raises(dataclasses.FrozenInstanceError):
        by_keyword.code = "other"


def test_objects_behave_as_frozen_dataclasses() -> None:
    v = Verdict("stop_loss", "allow")
    assert (v.code, v.reason, v.amount, v.figures) == ("ok", "", None, EMPTY_FIGURES)
    assert v == Verdict("stop_loss", "allow", "ok", "", None, {}) != Verdict("x", "allow")
    assert repr(v) == (
        "Verdict(rule='stop_loss', outcome='allow', code='ok', reason='', amount=None, "
        "figures=mappingproxy({}))"
    )
    assert dataclasses.replace(v, code="x").code == "x"
    intent = OrderIntent("A", "long", 1.0)
    d = Decision("allow", intent, 1.0, "ok", "all guards passed", (v,))
    assert d.stop_price is None and d.allowed
    assert dataclasses.replace(d, verdicts=()) == Decision(
        "allow", intent, 1.0, "ok", "all guards passed"
    )
