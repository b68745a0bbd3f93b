"""Records: the small declarative validation the case schema (:mod:`fhnpde.schema`) is
written in.

A :class:`Record` declares its keys as :class:`Key` class attributes, each with a checker
(:class:`Number`, :class:`Integer`, :class:`Text`, :class:`Flag`, :class:`OneOf`,
:class:`ListOf`, :class:`MapOf`, :class:`Either`, :class:`Tagged`, :class:`Nested`, or
:class:`Optional` of one). ``Record.validate(data)`` checks a mapping key by key: unknown keys,
missing keys, wrong types and out-of-range values are all collected, each with its key path;
only a record whose keys all passed runs its own :meth:`Record.check`, which may raise
:class:`~fhnpde.errors.KeyedError` to name a key below it. On any problem :class:`Invalid`
carries every one of them, and :func:`fhnpde.keys.most_telling` picks the one the user sees.

Types are strict: a number is an int or a float (never a bool or a string) and is stored as a
float; an integer is an int; a list is a list. Records dump back to plain Python values
(:meth:`Record.to_dict`) in key order, which is what a store records and what case
fingerprints hash.

Why not pydantic: importing it and building this schema cost about 0.15 s, a third of the
whole ``python -m fhnpde run`` process on the divergent case (issue 18); these checks are
all the case layer needs.
"""

from __future__ import annotations

import copy
import math
import operator
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from .errors import quote, split_keyed

__all__ = ["Either", "Flag", "Integer", "Invalid", "Key", "ListOf", "MapOf", "Nested", "Number",
           "OneOf", "Optional", "Problem", "Record", "Tagged", "Text"]


class Problem:
    """One failed check: its kind (the ranking of :func:`fhnpde.keys.most_telling`), its key
    path as a tuple of parts, and the message the user reads."""

    __slots__ = ("kind", "loc", "message")

    def __init__(self, kind: str, loc: tuple, message: str):
        self.kind, self.loc, self.message = kind, loc, message

    def __repr__(self) -> str:
        return f"Problem({self.kind!r}, {self.loc!r}, {self.message!r})"


class Invalid(ValueError):
    """Every problem found in one validation."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, p.loc))}: {p.message}"
                                   for p in problems[:3]))


def _fail(kind: str, loc: tuple, message: str):
    raise Invalid([Problem(kind, loc, message)])


def _value_error(loc: tuple, exc: ValueError) -> Problem:
    """A check's ValueError as a problem; a KeyedError names a key below ``loc``."""
    sub, text = split_keyed(str(exc))
    return Problem("value_error", (*loc, sub) if sub else loc, text)


# --- checkers: check(value, loc) returns the stored value or raises Invalid --------------


class Kind(ABC):
    """A value of one kind (``accepts``), named in messages by ``what``; the base of the
    scalar checkers: ``check`` refuses any other kind and returns the value."""

    what = "a value"

    @abstractmethod
    def accepts(self, value: Any) -> bool:
        """Whether ``value`` is of this kind."""

    def check(self, value: Any, loc: tuple):
        if not self.accepts(value):
            _fail("type", loc, f"must be {self.what}, got {quote(value)}")
        return value


_COMPARE = ((">", "gt", operator.gt), (">=", "ge", operator.ge), ("<=", "le", operator.le))


class Bounded(Kind):
    """A number with optional bounds ``gt``, ``ge``, ``le``."""

    def __init__(self, *, gt: float | None = None, ge: float | None = None,
                 le: float | None = None):
        self.gt, self.ge, self.le = gt, ge, le

    def bounds(self, number, given, loc: tuple) -> None:
        for op, name, holds in _COMPARE:
            bound = getattr(self, name)
            if bound is not None and not holds(number, bound):
                _fail("bound", loc, f"must be {op} {bound:g}, got {quote(given)}")


class Number(Bounded):
    """A finite float (an int is taken and stored as a float) with optional bounds."""

    what = "a number"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    def check(self, value: Any, loc: tuple) -> float:
        super().check(value, loc)
        try:
            number = float(value)
        except OverflowError:  # an int beyond a float
            _fail("type", loc, f"must be a number, got {quote(value)}")
        if not math.isfinite(number):
            _fail("type", loc, f"must be a finite number, got {quote(value)}")
        self.bounds(number, value, loc)
        return number


class Integer(Bounded):
    """An int (not a bool, not a float) with optional bounds."""

    what = "an integer"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    def check(self, value: Any, loc: tuple) -> int:
        self.bounds(super().check(value, loc), value, loc)
        return value


class Text(Kind):
    """A string."""

    what = "a string"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str)


class Flag(Kind):
    """true or false."""

    what = "true or false"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)


class OneOf:
    """One of the given values, of the same type (``1`` is not ``true``)."""

    def __init__(self, *values):
        self.values = values
        shown = [repr(v) for v in values]
        self.what = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"

    def accepts(self, value: Any) -> bool:
        return any(type(value) is type(v) and value == v for v in self.values)

    def check(self, value: Any, loc: tuple):
        if not self.accepts(value):
            _fail("literal_error", loc, f"must be {self.what}, got {quote(value)}")
        return value


class ListOf(Kind):
    """A list of items of one checker, with optional lengths; ``shape`` names it in
    messages (``"a pair [x, y]"``)."""

    def __init__(self, item, *, min_length: int | None = None, max_length: int | None = None,
                 shape: str = "a list"):
        self.item, self.min_length, self.max_length, self.what = (item, min_length,
                                                                   max_length, shape)

    def accepts(self, value: Any) -> bool:
        return isinstance(value, list)

    def check(self, value: Any, loc: tuple) -> list:
        n = len(super().check(value, loc))
        if (self.min_length is not None and n < self.min_length) or (
                self.max_length is not None and n > self.max_length):
            _fail("length", loc, f"must be {self.what}, got {quote(value)}")
        out, problems = [], []
        for i, item in enumerate(value):
            try:
                out.append(self.item.check(item, (*loc, i)))
            except Invalid as exc:
                problems += exc.problems
        if problems:
            raise Invalid(problems)
        return out


class MapOf(Kind):
    """A mapping of string keys to values of one checker."""

    what = "a mapping of keys"

    def __init__(self, value):
        self.value = value

    def accepts(self, value: Any) -> bool:
        return isinstance(value, dict)

    def check(self, value: Any, loc: tuple) -> dict:
        out, problems = {}, []
        for key, item in super().check(value, loc).items():
            if not isinstance(key, str):
                problems.append(Problem("type", (*loc, key), f"a key must be a string, got "
                                        f"{quote(key)}"))
                continue
            try:
                out[key] = self.value.check(item, (*loc, key))
            except Invalid as exc:
                problems += exc.problems
        if problems:
            raise Invalid(problems)
        return out


class Optional:
    """``None`` (YAML's null) or what the inner checker takes."""

    def __init__(self, inner):
        self.inner = inner
        self.what = inner.what

    def accepts(self, value: Any) -> bool:
        return value is None or self.inner.accepts(value)

    def check(self, value: Any, loc: tuple):
        return None if value is None else self.inner.check(value, loc)


class Either(Kind):
    """One of several checkers, chosen by the kind of the value (a number, a list, a
    mapping): the value is checked by the first that takes its kind, so its message is
    about the form the user meant; a value no member takes names them all."""

    def __init__(self, *members):
        self.members = members
        self.what = " or ".join(m.what for m in members)

    def accepts(self, value: Any) -> bool:
        return any(m.accepts(value) for m in self.members)

    def check(self, value: Any, loc: tuple):
        for member in self.members:
            if member.accepts(value):
                return member.check(value, loc)
        return super().check(value, loc)  # no member takes it: refused, naming them all


class Nested(Kind):
    """A mapping validated as the given :class:`Record`."""

    what = "a mapping of keys"

    def __init__(self, record: type[Record]):
        self.record = record

    def accepts(self, value: Any) -> bool:
        return isinstance(value, dict)

    def check(self, value: Any, loc: tuple) -> Record:
        return self.record.validate(value, loc)


class Tagged:
    """A mapping whose ``kind`` key picks the :class:`Record` that validates it; without
    the key, ``default`` (or an error when there is none)."""

    def __init__(self, choices: dict[str, type[Record]], *, key: str = "kind",
                 default: str | None = None):
        self.choices, self.key, self.default = choices, key, default
        tags = [repr(t) for t in choices]
        self.what = f"a mapping with {key} {', '.join(tags[:-1])} or {tags[-1]}"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, dict)

    def check(self, value: Any, loc: tuple) -> Record:
        if not isinstance(value, dict):
            _fail("type", loc, f"must be a mapping of keys, got {quote(value)}")
        if self.key not in value and self.default is None:
            _fail("union_tag_not_found", loc, f"needs a {self.key!r} key")
        tag = value.get(self.key, self.default)
        record = self.choices.get(tag) if isinstance(tag, str) else None
        if record is None:
            expected = ", ".join(repr(t) for t in self.choices)
            _fail("union_tag_invalid", loc, f"{self.key} must be one of {expected}, got "
                  f"{quote(tag)}")
        return record.validate(value, loc)


# --- records -----------------------------------------------------------------------------

_REQUIRED = object()


class Key:
    """One key of a record: its checker, its default (or ``factory`` making one; none means
    required), an optional ``after`` check of the stored value (a ValueError names the key),
    and ``omit_default``: left out of dumps while it holds its default (a key added later
    leaves the dumps, and the fingerprints, of the cases that do not use it as they were)."""

    def __init__(self, check, default: Any = _REQUIRED, *, factory=None, after=None,
                 omit_default: bool = False, doc: str = ""):
        self.checker, self.default, self.factory, self.after = check, default, factory, after
        self.omit_default, self.doc = omit_default, doc

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED and self.factory is None

    def make_default(self):
        if self.factory is not None:
            return self.factory()
        return copy.deepcopy(self.default)  # a shared list default is not shared


class Record:
    """A validated mapping of keys (see the module docstring). Subclasses declare ``Key``
    class attributes and may override :meth:`before` (on the raw mapping) and :meth:`check`
    (on the record, once every key passed)."""

    record_keys: ClassVar[dict[str, Key]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        keys = {}
        for base in reversed(cls.__mro__[1:]):
            keys.update(getattr(base, "record_keys", {}))
        keys.update({name: value for name, value in vars(cls).items()
                     if isinstance(value, Key)})
        cls.record_keys = keys

    def __init__(self, **values):
        validated = type(self).validate(values)
        self.__dict__.update(validated.__dict__)

    @classmethod
    def before(cls, data: dict) -> dict:
        """Hook on the raw mapping before its keys are checked."""
        return data

    def check(self) -> None:
        """Hook on the record once every key passed; raise KeyedError / ValueError."""

    @classmethod
    def validate(cls, data: Any, loc: tuple = ()) -> Record:
        """The record of ``data``; :class:`Invalid` with every problem found otherwise."""
        if not isinstance(data, dict):
            _fail("type", loc, f"must be a mapping of keys, got {quote(data)}")
        try:
            data = cls.before(data)
        except ValueError as exc:
            raise Invalid([_value_error(loc, exc)]) from None
        problems = [Problem("extra_forbidden", (*loc, key),
                            "unknown key (check its spelling against DESIGN.md §5)")
                    for key in data if key not in cls.record_keys]
        values = {}
        for name, key in cls.record_keys.items():
            where = (*loc, name)
            if name not in data:
                if key.required:
                    problems.append(Problem("missing", where, "missing required key"))
                else:
                    values[name] = key.make_default()
                continue
            try:
                value = key.checker.check(data[name], where)
                if key.after is not None:
                    value = key.after(value)
            except Invalid as exc:
                problems += exc.problems
                continue
            except ValueError as exc:
                problems.append(_value_error(where, exc))
                continue
            values[name] = value
        if problems:
            raise Invalid(problems)
        record = cls.__new__(cls)
        record.__dict__.update(values)
        try:
            record.check()
        except ValueError as exc:
            raise Invalid([_value_error(loc, exc)]) from None
        return record

    def to_dict(self) -> dict:
        """The record as plain Python values (mappings, lists, numbers, strings), in key
        order; a key marked ``omit_default`` is left out while it holds its default."""
        return {name: _plain(getattr(self, name)) for name, key in self.record_keys.items()
                if not (key.omit_default and getattr(self, name) == key.default)}

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.__dict__ == self.__dict__

    __hash__ = None  # records are mutable

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.record_keys)
        return f"{type(self).__name__}({inner})"


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
