"""How doctor's facts are gathered: each by one part of Facts, once, lazily; and how Facts hands them on."""

from __future__ import annotations

from functools import cached_property
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")


class fact(cached_property[T]):  # noqa: N801 - a decorator, named as functools.cached_property is
    """A fact: gathered on first use (``ccq doctor <check>`` gathers only what its checks need)
    and at most once. A fact that raises is not cached: every check that uses it fails with the
    error (run_checks) and the other checks still run.

    functools.cached_property itself; a subclass because mypy reads a cached_property as a plain
    property, whose type Forwarded could not take over, and a subclass as the descriptor it is.
    """


class Forwarded(Generic[T]):
    """A part's fact as an attribute of Facts, of the same name and type: read, preset (assigned)
    and forgotten (``del``, so it is gathered again) in the part."""

    def __init__(self, part: str, gathered: fact[T]) -> None:
        self.part = part  # the attribute of Facts that holds the part
        self.gathered = gathered

    def __set_name__(self, owner: type[Any], name: str) -> None:
        # A preset value goes where the part's fact looks for it: under the fact's own name.
        if name != self.gathered.attrname:
            raise TypeError(f"{owner.__name__}.{name} forwards the fact {self.gathered.attrname!r}: "
                            "give it the fact's name")
        self.name = name

    @overload
    def __get__(self, facts: None, owner: type[Any]) -> Forwarded[T]: ...

    @overload
    def __get__(self, facts: object, owner: type[Any]) -> T: ...

    def __get__(self, facts: object | None, owner: type[Any]) -> Forwarded[T] | T:
        if facts is None:
            return self
        return self.gathered.__get__(self.part_of(facts))

    def __set__(self, facts: object, value: T) -> None:
        # Where cached_property keeps a computed value, so it is never computed.
        vars(self.part_of(facts))[self.name] = value

    def __delete__(self, facts: object) -> None:
        delattr(self.part_of(facts), self.name)

    def part_of(self, facts: object) -> object:
        part: object = getattr(facts, self.part)
        return part
