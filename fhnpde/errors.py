"""The errors a user can cause, and the one way the project words them.

- :class:`CaseError`: bad input (a case file, a ``--set``, a path, a model file): one
  sentence naming the input and what to do; the CLI prints it as one line, exit status 2.
- :class:`NumericalFailure`: the numbers went wrong (blow-up, Newton did not converge):
  the run ends ``failed``, exit status 1.
- :func:`keyed`: the one way a validator attaches a key path below its own location.
- :func:`quote` / :func:`one_line`: user values in messages, bounded and on one line.
"""

from __future__ import annotations

import math
import reprlib
from typing import Any

__all__ = ["CaseError", "KeyedError", "NumericalFailure", "BlowUp", "key_part", "keyed", "one_line",
           "quote", "split_keyed"]


class CaseError(ValueError):
    """A problem with a case that the user can fix; its message is one sentence.

    ``str()`` is one line of bounded length whatever the parts hold: control characters are
    escaped and an over-long part is cut (the attributes keep the parts as given).
    """

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None):
        self.source = source
        self.key = key
        self.detail = message
        parts = [one_line(p, limit) for p, limit in ((source, SOURCE_CHARS), (key, KEY_CHARS))
                 if p]
        super().__init__(": ".join([*parts, one_line(message, MESSAGE_CHARS)]))

    def with_source(self, source: str) -> CaseError:
        return CaseError(self.detail, source=source, key=self.key)


# Bounds of what an error message shows (characters). A user value is quoted by `quote`.
QUOTE_CHARS = 60
SOURCE_CHARS = 300
KEY_CHARS = 120
KEY_PART_CHARS = 40
MESSAGE_CHARS = 600


def one_line(text: str, limit: int) -> str:
    """``text`` with control characters escaped, cut to ``limit`` characters with an ellipsis."""
    text = str(text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
        if len(text) > limit:
            text = text[: limit - 1] + "…"
    return text


class _BoundedRepr(reprlib.Repr):
    """``repr`` that stops early: a billion-item value costs as much as a short one."""

    def __init__(self):
        super().__init__()
        self.maxlevel = 3
        self.maxdict = 4
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = 8
        self.maxother = self.maxstring = self.maxlong = 4 * QUOTE_CHARS

    def repr_str(self, x, level):
        return repr(x[: self.maxstring])

    def repr_int(self, x, level):
        if x.bit_length() > 4 * QUOTE_CHARS:  # repr of >4300 digits raises ValueError
            return f"<an integer of about {math.ceil(x.bit_length() * math.log10(2))} digits>"
        return repr(x)

    def repr_bytes(self, x, level):
        return repr(x[: self.maxother])


_REPR = _BoundedRepr()


def key_part(key: Any) -> str:
    """One key of a key path as shown in a message (a user's key may be long or odd)."""
    return one_line(str(key), KEY_PART_CHARS)


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """The repr of a user's value for an error message: one line, at most ``limit``
    characters (then ``…``); computed without walking more of ``value`` than it shows."""
    try:
        text = _REPR.repr(value)
    except Exception:  # a value whose repr fails is still reported
        text = f"<{type(value).__name__}>"
    return one_line(text, limit)




class NumericalFailure(RuntimeError):
    """The numbers went wrong (blow-up, Newton did not converge): exit status 1."""


class BlowUp(NumericalFailure):
    """The solution became NaN or infinite."""


_KEY_SEPARATOR = "\x00"


class KeyedError(ValueError):
    """Raised inside a validator (a case record's check, or a pydantic config's) to name a
    key path below the validator's own location: ``raise keyed("x", "must be [start, end]
    ...")``; :func:`split_keyed` reads it back where the validation error is turned into a
    :class:`CaseError`."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}{_KEY_SEPARATOR}{message}")


def keyed(key: str, message: str) -> KeyedError:
    return KeyedError(key, message)


def split_keyed(text: str) -> tuple[str | None, str]:
    """(key path, message) of a :class:`KeyedError`'s text; (None, text) for any other."""
    if _KEY_SEPARATOR in text:
        key, message = text.split(_KEY_SEPARATOR, 1)
        return key, message
    return None, text
