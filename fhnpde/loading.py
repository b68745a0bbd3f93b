"""Loading cases: reading a user's YAML file safely, ``--set`` overrides, and turning
pydantic's validation errors into one :class:`~fhnpde.errors.CaseError` whose message names
the file, the key path and what is wrong, e.g. ``cases/x.yaml: time.dt: must be > 0, got
-0.1``. The schema itself is :mod:`fhnpde.schema`.
"""

from __future__ import annotations

import copy
import os
import stat
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from . import yamlio
from .errors import KEY_CHARS, CaseError, one_line, quote, split_keyed
from .schema import Case, key_part

# --- YAML ------------------------------------------------------------------------------

# The one reader of every YAML the project reads: see fhnpde.yamlio for what it refuses.
MAX_FILE_BYTES = yamlio.MAX_BYTES


def yaml_load(text: str) -> Any:
    """Parse YAML text with :class:`fhnpde.yamlio.Loader` (yaml.YAMLError on any problem)."""
    return yamlio.load(text)


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
    errors = exc.errors()
    # Prefer the most specific message: a union (a number or a profile) reports one error
    # per member, and the member the user meant is the one that got furthest.
    priority = ("value_error", "extra_forbidden", "missing", "union_tag_invalid",
                "union_tag_not_found", "literal_error")

    def rank(err):
        kind = err["type"]
        return (priority.index(kind) if kind in priority else len(priority), -len(err["loc"]))

    chosen = min(errors, key=rank)
    path, message = explain_error(chosen)
    return CaseError(message, source=source, key=path or None)


# --- loading -----------------------------------------------------------------------------


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


def apply_overrides(data: dict, overrides: list[str] | None, source: str) -> dict:
    """Apply ``key.path=value`` strings (values parsed as YAML) to a raw case mapping.

    A value that is not valid YAML is taken as the string it is (``--set name=a: b``); one
    that the reader refuses (too deep, too large, a duplicate key) is an error.
    """
    data = copy.deepcopy(data)
    for item in overrides or []:
        if "=" not in item:
            raise CaseError(
                f"--set {quote(item)}: expected KEY=VALUE, e.g. --set time.dt=0.01",
                source=source,
            )
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not k for k in key.split(".")):
            raise CaseError(f"--set {quote(item)}: empty key path", source=source)
        try:
            value = yaml_load(raw) if raw.strip() else None
        except yamlio.YAMLLimitError as exc:
            raise CaseError(f"--set {quote(item)}: {yamlio.describe_error(exc)}",
                            source=source) from None
        except yaml.YAMLError:
            value = raw
        set_key_path(data, key, value, source)
    return data


def parse_case(data: Any, source: str = "<case>") -> Case:
    """Validate a raw mapping into a :class:`Case`, or raise one :class:`CaseError`."""
    if not isinstance(data, dict):
        raise CaseError(
            f"a case file must be a YAML mapping of keys, got {type(data).__name__}",
            source=source,
        )
    try:
        return Case.model_validate(data)
    except ValidationError as exc:
        raise validation_error_to_case_error(exc, source) from None


def read_text(path: str | Path, what: str = "case file") -> str:
    """The text of a user's YAML file, read safely; CaseError naming the file otherwise.

    Only a regular file is read (a directory, device, FIFO or socket is refused without
    waiting on it: the file is opened non-blocking and checked on its descriptor), at most
    :data:`MAX_FILE_BYTES` of it, and it must be UTF-8.
    """
    source = str(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise CaseError(f"no such {what}; check the path", source=source) from None
    except IsADirectoryError:
        raise CaseError(f"is a directory, not a {what}", source=source) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL character in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CaseError(f"cannot open the file ({one_line(reason, 80)}); check the path "
                        "and its permissions", source=source) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise CaseError(f"is a directory, not a {what}", source=source)
        raise CaseError(f"is not a regular file (a device, pipe or socket); give the path "
                        f"of a YAML {what}", source=source)
    with os.fdopen(fd, "rb") as fh:
        try:
            raw = fh.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise CaseError(f"cannot read the file ({one_line(exc.strerror or str(exc), 80)})",
                            source=source) from None
    if len(raw) > MAX_FILE_BYTES:
        raise CaseError(f"is larger than {MAX_FILE_BYTES // 2**20} MiB, far more than any "
                        f"{what} needs; give the right file", source=source)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CaseError(f"is not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}); "
                        "save it as UTF-8", source=source) from None


def read_case_data(path: str | Path, what: str = "case file") -> Any:
    """Read and parse a user's YAML file (see :func:`read_text`); CaseError if it cannot be
    read or parsed, or is empty."""
    source = str(path)
    text = read_text(path, what)
    try:
        data = yaml_load(text)
    except yaml.YAMLError as exc:
        raise CaseError(yamlio.describe_error(exc), source=source) from None
    if data is None:
        raise CaseError("the file is empty", source=source)
    return data


def load_case(path: str | Path, overrides: list[str] | None = None) -> Case:
    """Load, override and validate a case file."""
    source = str(path)
    data = read_case_data(path)
    if not isinstance(data, dict):
        raise CaseError(
            f"a case file must be a YAML mapping of keys, got {type(data).__name__}",
            source=source,
        )
    data = apply_overrides(data, overrides, source)
    case = parse_case(data, source)
    if case.output.path is None:
        case.output.path = f"runs/{case.name}.zarr"
    return case
