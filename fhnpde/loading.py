"""Loading cases: reading a user's YAML file safely, ``--set`` overrides, and turning the
schema's validation errors into one :class:`~fhnpde.errors.CaseError` whose message names
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

from . import yamlio
from .errors import CaseError, one_line, quote
from .keys import (  # noqa: F401 - re-exported
    case_error,
    explain_error,
    set_key_path,
    validation_error_to_case_error,
)
from .records import Invalid
from .schema import Case

# --- YAML ------------------------------------------------------------------------------

# The one reader of every YAML the project reads: see fhnpde.yamlio for what it refuses.
MAX_FILE_BYTES = yamlio.MAX_BYTES


def yaml_load(text: str) -> Any:
    """Parse YAML text with :class:`fhnpde.yamlio.Loader` (yaml.YAMLError on any problem)."""
    return yamlio.load(text)


# --- loading -----------------------------------------------------------------------------


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
        return Case.validate(data)
    except Invalid as exc:
        raise case_error(exc, source) from None


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
