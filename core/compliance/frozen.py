"""Frozen dataclasses built without one ``object.__setattr__`` call per field.

The ``__init__`` a frozen dataclass gets stores each field through
``object.__setattr__`` (the class refuses plain assignment): about 0.7 µs a
field, 15 µs for an :class:`~core.compliance.evaluate.Evaluation` of 22
fields, and the engine builds several such objects per incident.
:func:`quick_init` gives such a class an ``__init__`` with the same
parameters (names, order, defaults, annotations) that fills the new
instance's ``__dict__`` in one update. Instances stay frozen (assignment
still raises ``FrozenInstanceError``), equal, hashable and printed as
before: only their construction changes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

__all__ = ["quick_init"]

T = TypeVar("T")


def quick_init(cls: type[T]) -> type[T]:
    """Replace the frozen dataclass ``cls``'s ``__init__`` by one that fills ``__dict__`` at once.

    Raises:
        TypeError: ``cls`` is not a frozen dataclass, or it has what this
            ``__init__`` does not do: a ``__post_init__``, default factories,
            keyword-only or ``init=False`` fields, ``InitVar`` or slots.
    """
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        msg = f"{cls.__name__}: not a frozen dataclass"
        raise TypeError(msg)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    unsupported = (
        hasattr(cls, "__post_init__")
        or hasattr(cls, "__slots__")
        or any(f.default_factory is not dataclasses.MISSING for f in fields)
        or any(f.kw_only or not f.init for f in fields)
        or any(isinstance(v, dataclasses.InitVar) for v in vars(cls).get("__annotations__", {}))
    )
    if unsupported:
        msg = f"{cls.__name__}: quick_init does not build this dataclass"
        raise TypeError(msg)
    names = [f.name for f in fields]
    defaults = {
        f"_default_{f.name}": f.default for f in fields if f.default is not dataclasses.MISSING
    }
    args = ", ".join(n if f"_default_{n}" not in defaults else f"{n}=_default_{n}" for n in names)
    items = ", ".join(f"{n!r}: {n}" for n in names)
    source = f"def __init__(self, {args}):\n    self.__dict__.update({{{items}}})\n"
    namespace: dict[str, Any] = {}
    exec(source, dict(defaults), namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = {**{f.name: f.type for f in fields}, "return": None}
    setattr(cls, "__init__", init)  # noqa: B010 - a method assigned on the class
    return cls
