"""Key paths of a case (``time.dt``, ``stimuli.0.amplitude``): setting one in a raw mapping,
and naming one in validation errors (the case schema's :class:`~fhnpde.records.Invalid`, and
pydantic's ``ValidationError`` of the sweep and surrogate configs), turned into one
:class:`~fhnpde.errors.CaseError` whose message names the key path and what is wrong.
Used by the schema (:meth:`fhnpde.schema.Case.with_changes`), the case loader, sweeps and
surrogate configs; it imports neither the schema nor the loader, nor pydantic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import yamlio
from .errors import KEY_CHARS, CaseError, key_part, one_line, quote, split_keyed

if TYPE_CHECKING:
    from pydantic import ValidationError

    from .records import Invalid

__all__ = ["case_error", "explain_error", "most_telling", "set_key_path",
           "validation_error_to_case_error"]

# Which of several problems the user is shown: the most specific. A check's own sentence
# first, then a misspelt or missing key, a wrong kind or value, and of equals the deepest.
_PRIORITY = ("value_error", "extra_forbidden", "missing", "union_tag_invalid",
             "union_tag_not_found", "literal_error")


def most_telling(problems: list, kind=lambda p: p.kind, loc=lambda p: p.loc):
    """The problem that tells the user the most (first of equals)."""

    def rank(problem):
        k = kind(problem)
        return (_PRIORITY.index(k) if k in _PRIORITY else len(_PRIORITY), -len(loc(problem)))

    return min(problems, key=rank)


def case_error(exc: Invalid, source: str | None) -> CaseError:
    """The one :class:`CaseError` that tells the user the most about a schema's
    :class:`~fhnpde.records.Invalid`."""
    chosen = most_telling(exc.problems)
    path = ".".join(key_part(part) for part in chosen.loc)
    return CaseError(chosen.message, source=source, key=path or None)


# --- errors ------------------------------------------------------------------------------

# Names pydantic puts in an error's location for union members and tags, not keys.
_TAGS = {"gaussian", "box", "exact", "neural", "float", "int", "list[float]", "ValueList",
         "none", "list[nullable[float]]"}


def _loc_to_path(loc: tuple) -> str:
    parts: list[str] = []
    for item in loc:
        s = str(item)
        if s in _TAGS or s.startswith(("function-", "tuple[", "constrained-", "union[",
                                       "tagged-union[", "list[", "nullable[")):
            continue
        parts.append(key_part(s))
    return ".".join(parts)


def explain_error(err: dict) -> tuple[str, str]:
    """(key path, message) for one pydantic error (an item of ``ValidationError.errors()``)."""
    path = _loc_to_path(err["loc"])
    kind = err["type"]
    given = err.get("input")
    ctx = err.get("ctx") or {}
    msg = err["msg"]
    if kind == "value_error":
        text = str(ctx.get("error", msg))
        sub, text = split_keyed(text)
        if sub is not None:  # a KeyedError: its key path is below the validator's location
            path = ".".join(p for p in (path, sub) if p)
        return path, text
    if kind == "missing":
        return path, "missing required key"
    if kind == "extra_forbidden":
        return path, "unknown key (check its spelling against DESIGN.md §5)"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
              "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()))
        if isinstance(bound, int | float):
            bound = f"{bound:g}"
        return path, f"must be {op} {bound}, got {quote(given)}"
    if kind in ("float_type", "int_type", "float_parsing", "int_parsing", "int_from_float"):
        want = "an integer" if kind.startswith("int") else "a number"
        return path, f"must be {want}, got {quote(given)}"
    if kind == "finite_number":
        return path, f"must be a finite number, got {quote(given)}"
    if kind in ("string_type",):
        return path, f"must be a string, got {quote(given)}"
    if kind == "bool_type":
        return path, f"must be true or false, got {quote(given)}"
    if kind == "union_tag_invalid":  # pydantic's message repeats the tag in full
        name = str(ctx.get("discriminator", "")).strip("'")
        name = name if name.isidentifier() else "kind"
        return path, (f"{name} must be one of {ctx.get('expected_tags')}, "
                      f"got {quote(ctx.get('tag'))}")
    if kind == "literal_error":
        return path, msg.replace("Input should be", "must be") + f", got {quote(given)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return path, f"must be a mapping of keys, got {quote(given)}"
    if kind in ("too_short", "too_long"):
        return path, f"must be a list [start, end], got {quote(given)}"
    if kind in ("tuple_type", "list_type"):
        return path, f"must be a list, got {quote(given)}"
    if kind == "union_tag_not_found":
        return path, "needs a 'kind' key"
    return path, f"{msg}, got {quote(given)}"


def validation_error_to_case_error(exc: ValidationError, source: str | None) -> CaseError:
    """The one :class:`CaseError` that tells the user the most about ``exc``."""
    # A union (a number or a profile) reports one error per member, and the member the
    # user meant is the one that got furthest.
    chosen = most_telling(exc.errors(), kind=lambda e: e["type"], loc=lambda e: e["loc"])
    path, message = explain_error(chosen)
    return CaseError(message, source=source, key=path or None)


def set_key_path(data: dict, path: str, value: Any, source: str) -> None:
    """Set ``data[k1][k2]...`` for the dotted key path ``k1.k2...`` (a digit indexes a list),
    making the missing mappings on the way; CaseError naming the key path otherwise."""
    keys = path.split(".")
    if len(keys) > yamlio.MAX_DEPTH:
        raise CaseError(f"a key path of {len(keys)} parts is deeper than any case key; check "
                        "it", source=source, key=one_line(path, KEY_CHARS))
    node: Any = data
    for i, key in enumerate(keys[:-1]):
        if isinstance(node, list):
            try:
                node = node[int(key)]
                continue
            except (ValueError, IndexError):
                raise CaseError(
                    f"no list item {quote(key)}", source=source, key=".".join(keys[: i + 1])
                ) from None
        if not isinstance(node, dict):
            raise CaseError("is not a mapping", source=source, key=".".join(keys[:i]))
        if node.get(key) is None:
            if keys[i + 1].isdigit():
                raise CaseError(f"no list item {quote(keys[i + 1])} (the list is empty)",
                                source=source, key=".".join(keys[: i + 2]))
            node[key] = {}
        node = node[key]
    last = keys[-1]
    if isinstance(node, list):
        try:
            node[int(last)] = value
        except (ValueError, IndexError):
            raise CaseError(f"no list item {quote(last)}", source=source, key=path) from None
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise CaseError("is not a mapping", source=source, key=".".join(keys[:-1]))
