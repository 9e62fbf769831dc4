"""quick_init: frozen dataclasses built in one dict update behave as the dataclass built them."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field

import pytest

from core.compliance.evaluate import Evaluation
from core.compliance.frozen import quick_init
from core.compliance.rules import Finding


@dataclass(frozen=True)
class Plain:
    a: int
    b: str
    c: float | None = None
    d: str = "x"


@quick_init
@dataclass(frozen=True)
class Quick:
    a: int
    b: str
    c: float | None = None
    d: str = "x"


def test_same_parameters_values_and_behaviour_as_the_dataclass_init() -> None:
    assert str(inspect.signature(Quick)) == str(inspect.signature(Plain))
    q, p = Quick(1, "b"), Plain(1, "b")
    assert dataclasses.asdict(q) == dataclasses.asdict(p) == {"a": 1, "b": "b", "c": None, "d": "x"}
    assert Quick(a=1, b="b", d="y") == Quick(1, "b", None, "y")
    assert hash(Quick(1, "b")) == hash(Quick(1, "b"))
    assert repr(q) == repr(p).replace("Plain", "Quick")
    assert dataclasses.replace(q, a=2) == Quick(2, "b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.a = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        Quick(1)  # type: ignore[call-arg]


def test_the_engine_classes_use_it() -> None:
    assert Evaluation.__init__.__qualname__ == "Evaluation.__init__"
    assert "__dataclass_builtins_object__" not in Evaluation.__init__.__code__.co_names
    f = Finding("r", None, "minor", raised_at=None, deadline=None, detail="d")  # type: ignore[arg-type]
    assert f.ref is None and f.key == "r@response"  # defaults and cached properties still work


def test_what_it_does_not_build_is_refused() -> None:
    @dataclass
    class Mutable:
        a: int

    @dataclass(frozen=True)
    class Factory:
        a: list[int] = field(default_factory=list)

    @dataclass(frozen=True)
    class Post:
        a: int

        def __post_init__(self) -> None:
            pass

    for cls in (Mutable, Factory, Post):
        with pytest.raises(TypeError, match=cls.__name__):
            quick_init(cls)
