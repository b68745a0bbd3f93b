"""Integrity of a store on disk: is it a zarr store that fhnpde wrote, and is it whole?

A store is damaged by things no writer can prevent (a disk filled, a copy cut short, a file
deleted by hand). Opened as it is, xarray either fails deep inside zarr with a traceback (a
truncated ``zarr.json``, a chunk that does not decompress) or, worse, reads a deleted chunk
as its fill value and plots NaN without a word. :func:`check_store` reads the store's own
metadata (the root ``zarr.json`` and each array's ``zarr.json``, as plain JSON) and lists
the chunk files, so that every such store is refused with one sentence naming the file and
what to do, before anything reads the data. :func:`reading` does the same for a chunk whose
bytes do not decode, which only reading it can show.

Which chunks must exist. zarr does not write a chunk whose values all equal the array's fill
value, so a missing chunk is damage only where the data cannot equal the fill value:

- run stores (``python -m fhnpde run``): ``time``, ``v`` and ``w`` have fill value NaN and
  hold finite values only (the blow-up guard stops a run before a non-finite output reaches
  the store); ``x`` holds the nodes' positions, which are never all 0. Every chunk of these
  within the written extent (the shape in the consolidated metadata, which the writer
  updates after the chunks are on disk) must exist.
- sweep stores (``python -m fhnpde sweep``): coordinates written with the template whose
  fill value is NaN; for every member whose ``status`` is not pending, ``t_reached`` and
  ``wall_time_s`` (always finite); for every complete member, ``v`` and ``w`` when the
  sweep keeps fields. ``speed`` and ``t_arrival`` may be NaN and the integer summaries 0,
  so their chunks may legitimately be absent; a pending member has no chunks at all. The
  ``status`` chunks are checked against the counts the sweep recorded when it ended
  (``members_complete`` + ``members_failed``): fewer finished members on disk than recorded
  means ``status`` chunks were lost.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .case import CaseError

__all__ = ["ArrayMeta", "StoreInfo", "check_store", "read_json", "reading", "root_attributes",
           "sweep_statuses", "unreadable_chunks"]

RUN_FIX = "rerun the case with --overwrite to write it again"
SWEEP_FIX = "rerun the sweep with --overwrite to write it again"
NOT_A_STORE_FIX = "give the path of a store written by python -m fhnpde run or sweep"
# per-member summaries of a sweep that are finite for every member that ended
_SWEEP_FINISHED = ("t_reached", "wall_time_s")
_SWEEP_SUMMARIES = ("status", "propagated", "pulses", "speed", "t_arrival", "t_reached",
                    "steps", "wall_time_s")


# zarr metadata is a few kilobytes per array: a larger file is not one, and is not read
MAX_METADATA_BYTES = 64 * 2**20


def _fix(attrs: dict) -> str:
    return SWEEP_FIX if attrs.get("layout") == "sweep" else RUN_FIX


def _src(path: Path) -> str:
    """The store's path for a message, shortened when it is very long."""
    text = str(path)
    return text if len(text) <= 120 else f"{text[:80]}... ({len(text)} characters)"


def read_json(file: Path, store: Path, what: str) -> dict:
    """A zarr metadata document as a dict; CaseError naming the file when it is unreadable,
    not JSON (e.g. truncated) or not a JSON object."""
    source = _src(store)
    rel = file.relative_to(store).as_posix() if file != store else file.name
    try:
        if file.stat().st_size > MAX_METADATA_BYTES:
            raise CaseError(f"{what}: {rel} is {file.stat().st_size / 2**20:.0f} MiB, too large "
                            "to be zarr metadata; the store is damaged", source=source)
        text = file.read_bytes()
    except FileNotFoundError:
        raise CaseError(f"{what}: {rel} is missing; the store is damaged", source=source) from None
    except OSError as exc:
        raise CaseError(f"cannot read {rel} ({exc.strerror or exc}); check its permissions",
                        source=source) from None
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        where = (f" (line {exc.lineno}, column {exc.colno}: {exc.msg}; e.g. cut short by a "
                 "full disk or an interrupted copy)" if isinstance(exc, json.JSONDecodeError)
                 else " (not UTF-8 text)" if isinstance(exc, UnicodeDecodeError)
                 else " (nested too deeply)")
        raise CaseError(f"{what}: {rel} is not valid JSON{where}; the store is damaged",
                        source=source) from None
    if not isinstance(data, dict):
        raise CaseError(f"{what}: {rel} holds a JSON {type(data).__name__}, not zarr metadata; "
                        "the store is damaged", source=source)
    return data


def _locate(path: Path) -> None:
    """CaseError unless ``path`` is a directory holding a zarr store."""
    source = _src(path)
    if "\x00" in str(path):
        raise CaseError("the path contains a NUL byte; " + NOT_A_STORE_FIX,
                        source=repr(str(path)))
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except OSError as exc:  # e.g. a name too long for the file system
        raise CaseError(f"cannot be read ({exc.strerror or exc}); {NOT_A_STORE_FIX}",
                        source=source) from None
    if not exists:
        raise CaseError(f"is not a zarr store (nothing exists there); {NOT_A_STORE_FIX}",
                        source=source)
    if not is_dir:
        raise CaseError(f"is a file, not a zarr store (a directory); {NOT_A_STORE_FIX}",
                        source=source)
    if not (path / "zarr.json").exists():
        if (path / ".zgroup").exists():
            raise CaseError("is a zarr version 2 store, which fhnpde does not write; open it "
                            "with xarray.open_zarr instead", source=source)
        raise CaseError(f"is not a zarr store (it has no zarr.json); {NOT_A_STORE_FIX}",
                        source=source)


def root_attributes(path: str | Path) -> dict:
    """The root group's attributes of a zarr store (version 3 ``zarr.json``; version 2
    ``.zattrs``), read as JSON; CaseError naming the file when it is damaged."""
    p = Path(path)
    if (p / "zarr.json").exists() or not (p / ".zgroup").exists():
        meta = read_json(p / "zarr.json", p, "the store's metadata")
        attrs = meta.get("attributes", {})
    else:
        attrs = read_json(p / ".zattrs", p, "the store's attributes") if (
            p / ".zattrs").exists() else {}
    if not isinstance(attrs, dict):
        raise CaseError("the store's metadata: zarr.json has attributes that are not a mapping; "
                        "the store is damaged", source=_src(p))
    return attrs


@dataclass(frozen=True)
class ArrayMeta:
    """What the check needs of one array: its grid of chunks and how chunks are named."""

    name: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dims: tuple[str, ...]
    fill_nan: bool
    key_encoding: str
    separator: str

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(math.ceil(s / c) for s, c in zip(self.shape, self.chunks, strict=True))

    def key(self, index: tuple[int, ...]) -> str:
        if self.key_encoding == "v2":
            return self.separator.join(map(str, index)) or "0"
        return self.separator.join(map(str, ("c", *index)))

    def describe(self, index: tuple[int, ...]) -> str:
        """``v/c/2/0 (time 6 to 8)``: the chunk's file and the elements it holds along every
        dimension that is split into several chunks."""
        parts = []
        for dim, i, c, s, n in zip(self.dims, index, self.chunks, self.shape, self.grid,
                                   strict=True):
            if n > 1:
                last = min(s, (i + 1) * c) - 1
                parts.append(f"{dim} {i * c}" + (f" to {last}" if last > i * c else ""))
        where = f" ({', '.join(parts)})" if parts else ""
        return f"{self.name}/{self.key(index)}{where}"


def _array_meta(name: str, meta: dict, store: Path) -> ArrayMeta:
    def bad(what: str) -> CaseError:
        return CaseError(f"the metadata of array {name!r} ({name}/zarr.json) has {what}; the "
                         "store is damaged", source=str(store))

    if meta.get("node_type") != "array":
        raise bad(f"node_type {meta.get('node_type')!r} instead of 'array'")
    shape = meta.get("shape")
    if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise bad(f"an invalid shape {shape!r}")
    grid = meta.get("chunk_grid")
    chunks = (grid.get("configuration", {}).get("chunk_shape")
              if isinstance(grid, dict) and grid.get("name") == "regular"
              and isinstance(grid.get("configuration"), dict) else None)
    if (not isinstance(chunks, list) or len(chunks) != len(shape)
            or not all(isinstance(c, int) and c > 0 for c in chunks)):
        raise bad(f"an invalid chunk grid {grid!r}")
    enc = meta.get("chunk_key_encoding", {"name": "default"})
    if not isinstance(enc, dict) or enc.get("name") not in ("default", "v2"):
        raise bad(f"an unknown chunk key encoding {enc!r}")
    config = enc.get("configuration") if isinstance(enc.get("configuration"), dict) else {}
    separator = config.get("separator", "/" if enc["name"] == "default" else ".")
    if separator not in ("/", "."):
        raise bad(f"an unknown chunk key separator {separator!r}")
    dims = meta.get("dimension_names") or [f"dim_{i}" for i in range(len(shape))]
    if not isinstance(dims, list) or len(dims) != len(shape):
        raise bad(f"dimension names {dims!r} that do not match its shape")
    fill = meta.get("fill_value")
    return ArrayMeta(name, tuple(shape), tuple(chunks), tuple(str(d) for d in dims),
                     isinstance(fill, str) and fill == "NaN", enc["name"], separator)


@dataclass
class StoreInfo:
    """A checked store: its root attributes and its arrays' chunk grids."""

    path: Path
    attrs: dict
    arrays: dict[str, ArrayMeta]

    @property
    def layout(self) -> str:
        if self.attrs.get("layout") == "sweep":
            return "sweep"
        v = self.arrays.get("v")
        if v is not None and "y" in v.dims:
            return "sheet"
        return "cable" if v is not None and "x" in v.dims else "point"


def _arrays(path: Path, root: dict) -> dict[str, ArrayMeta]:
    """Every array of the store, with the shape its consolidated metadata records (what a
    reader sees) and its own ``zarr.json`` checked to be readable."""
    consolidated = root.get("consolidated_metadata")
    listed = consolidated.get("metadata") if isinstance(consolidated, dict) else None
    if listed is not None and not isinstance(listed, dict):
        raise CaseError("the store's metadata: zarr.json has consolidated metadata that is not a "
                        "mapping; the store is damaged", source=_src(path))
    try:
        on_disk = sorted(e.name for e in os.scandir(path)
                         if e.is_dir() and (Path(e.path) / "zarr.json").exists())
    except OSError as exc:
        raise CaseError(f"cannot list the store ({exc.strerror or exc}); check its permissions",
                        source=_src(path)) from None
    names = list(listed) if listed is not None else on_disk
    arrays = {}
    for name in names:
        if "/" in name:  # a node inside a sub-group: fhnpde writes none, nothing to check
            continue
        if listed is not None and name not in on_disk:
            raise CaseError(f"array {name!r} is listed in zarr.json but its directory {name}/ "
                            "(or its zarr.json) is missing; the store is damaged",
                            source=_src(path))
        own = read_json(path / name / "zarr.json", path, f"array {name!r}")
        meta = listed[name] if listed is not None else own
        if not isinstance(meta, dict):
            raise CaseError(f"the consolidated metadata of array {name!r} is not a mapping; "
                            "the store is damaged", source=_src(path))
        if meta.get("node_type") == "group":
            continue
        arrays[name] = _array_meta(name, meta, path)
        _array_meta(name, own, path)  # the file the writers and zarr itself read
    return arrays


def _required_arrays(attrs: dict, arrays: dict[str, ArrayMeta]) -> list[str]:
    if attrs.get("layout") == "sweep":
        names = ["member", *_SWEEP_SUMMARIES, *[str(k) for k in attrs.get("varied") or []]]
        if attrs.get("keep") == "fields":
            names += ["v", "w", "time"]
        return names
    names = ["v", "w", "time"]
    v = arrays.get("v")
    if v is not None:
        names += [d for d in v.dims if d != "time"]
    return names


def _present_chunks(path: Path, name: str) -> set[str]:
    """The chunk keys (``c/2/0`` or ``2.0``) found under an array's directory."""
    root = path / name
    found = set()
    for folder, _dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        for f in files:
            key = (rel / f).as_posix()
            if key != "zarr.json":
                found.add(key)
    return found


def _chunk_indices(meta: ArrayMeta, members: np.ndarray | None = None) -> Iterator[tuple]:
    """Every chunk index of ``meta``; with ``members`` (a boolean mask over the member
    axis, the first one), only the chunks holding a selected member."""
    ranges = [range(n) for n in meta.grid]
    if members is not None and ranges:
        c = meta.chunks[0]
        ranges[0] = [i for i in ranges[0] if members[i * c:(i + 1) * c].any()]
    return itertools.product(*ranges)


def _required_chunks(info: StoreInfo, statuses: np.ndarray | None) -> dict[str, list[tuple]]:
    """The chunks that must exist, by array (see the module docstring)."""
    required: dict[str, list[tuple]] = {}
    sweep = info.layout == "sweep"
    for name, meta in info.arrays.items():
        if 0 in meta.shape:
            continue
        members = None
        if sweep and name in (*_SWEEP_SUMMARIES, "v", "w"):
            if statuses is None or meta.dims[:1] != ("member",) \
                    or statuses.shape != meta.shape[:1]:
                continue  # not laid out per member: nothing to say which chunks were written
            if name in _SWEEP_FINISHED:
                members = statuses != 0
            elif name in ("v", "w"):
                members = statuses == 1
            else:
                continue  # may be all fill value (NaN speeds, 0 pulses, pending status)
        elif not (meta.fill_nan or (not sweep and name == "x")):
            continue  # a chunk of fill values is not written: absence proves nothing
        required[name] = list(_chunk_indices(meta, members))
    return required


def _read_statuses(path: Path) -> np.ndarray:
    import zarr

    with reading(path, ["status"]):
        group = zarr.open_group(str(path), mode="r", use_consolidated=False)
        return np.asarray(group["status"][:])


def _missing_message(missing: list[str], attrs: dict) -> str:
    arrays = ", ".join(repr(a) for a in sorted({m.split("/", 1)[0] for m in missing}))
    if len(missing) == 1:
        what = f"the chunk file {missing[0]} of array {arrays} is missing"
    else:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3
                                          else "")
        what = f"{len(missing)} chunk files of arrays {arrays} are missing ({shown})"
    them = "it was" if len(missing) == 1 else "they were"
    return (f"damaged store: {what}, though the store's shape says {them} written (reading "
            f"would show fill values there); {_fix(attrs)}")


def check_store(path: str | Path) -> StoreInfo:
    """Refuse, with one :class:`CaseError` sentence, a path that is not a whole fhnpde store.

    Checks, in order: the path is a directory with a root ``zarr.json`` that is valid JSON;
    the root carries ``fhnpde_version`` (fhnpde wrote it); every array fhnpde writes for
    the store's layout exists with readable metadata; every chunk that must exist within the
    written extent is on disk (module docstring). Reads no chunk data except a sweep's small
    ``status`` array. Returns what it read.
    """
    p = Path(path)
    _locate(p)
    root = read_json(p / "zarr.json", p, "the store's metadata")
    if root.get("node_type") not in (None, "group"):
        raise CaseError(f"is a zarr {root.get('node_type')}, not a group written by fhnpde; "
                        + NOT_A_STORE_FIX, source=_src(p))
    attrs = root.get("attributes", {})
    if not isinstance(attrs, dict):
        raise CaseError("the store's metadata: zarr.json has attributes that are not a mapping; "
                        "the store is damaged", source=_src(p))
    if "fhnpde_version" not in attrs:
        raise CaseError("is a zarr store that fhnpde did not write (its root has no "
                        "fhnpde_version attribute); open it with xarray.open_zarr instead",
                        source=_src(p))
    info = StoreInfo(p, attrs, _arrays(p, root))
    for name in _required_arrays(attrs, info.arrays):
        if name not in info.arrays:
            raise CaseError(f"damaged store: array {name!r} is missing (no {name}/zarr.json); "
                            + _fix(attrs), source=_src(p))
    statuses = None
    if info.layout == "sweep":
        statuses = _read_statuses(p)
        recorded = [attrs.get(k) for k in ("members_complete", "members_failed")]
        if all(isinstance(n, int) for n in recorded) and (statuses != 0).sum() < sum(recorded):
            meta = info.arrays["status"]
            present = _present_chunks(p, "status")
            lost = [meta.describe(i) for i in _chunk_indices(meta)
                    if meta.key(i) not in present]
            raise CaseError(
                f"damaged store: array 'status' records {(statuses != 0).sum()} finished "
                f"members but the sweep recorded {sum(recorded)} when it ended; status chunk "
                f"files are missing ({', '.join(lost[:3]) or 'none absent: overwritten'}); "
                + SWEEP_FIX, source=_src(p))
    missing = []
    for name, indices in _required_chunks(info, statuses).items():
        present = _present_chunks(p, name)
        meta = info.arrays[name]
        missing += [meta.describe(i) for i in indices if meta.key(i) not in present]
    if missing:
        raise CaseError(_missing_message(missing, attrs), source=_src(p))
    return info


def unreadable_chunks(path: str | Path, names=None, limit: int = 3) -> list[str]:
    """Chunks (``v/c/1/0 (time 3 to 5): Stored and computed checksum do not match ...``) whose
    bytes do not decode, found by reading every chunk of the named arrays (default: all) one
    at a time; stops after ``limit``."""
    import zarr

    p = Path(path)
    info_arrays = _arrays(p, read_json(p / "zarr.json", p, "the store's metadata"))
    group = zarr.open_group(str(p), mode="r", use_consolidated=False)
    bad: list[str] = []
    for name, meta in info_arrays.items():
        if names is not None and name not in names:
            continue
        present = _present_chunks(p, name)
        arr = group[name]
        for index in _chunk_indices(meta):
            if meta.key(index) not in present:
                continue
            try:
                arr.get_block_selection(index)
            except (RuntimeError, ValueError, OSError) as exc:  # what codecs raise on bad bytes
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                bad.append(f"{meta.describe(index)}: {reason}")
                if len(bad) >= limit:
                    return bad
    return bad


@contextmanager
def reading(path: str | Path, names=None):
    """Turn a failure to decode a store's data into one sentence naming the chunk.

    Reading a chunk whose file was cut short or overwritten fails in its codec (zstd's
    ``RuntimeError``; crc32c's ``ValueError``, as when the bytes decode to the wrong size).
    When that happens inside this block, every chunk of the arrays ``names`` (default: all)
    is read on its own; a chunk that fails is named in a :class:`CaseError`. If every chunk
    decodes, the failure was not the store's and is raised unchanged.
    """
    try:
        yield
    except (RuntimeError, ValueError, OSError) as exc:
        if isinstance(exc, CaseError):
            raise
        bad = unreadable_chunks(path, names)
        if not bad:
            raise
        attrs = root_attributes(path)
        raise CaseError(f"damaged store: chunk {'; '.join(bad)}; the file is cut short or "
                        f"overwritten; {_fix(attrs)}", source=_src(path)) from None


def sweep_statuses(path: str | Path) -> np.ndarray:
    """The ``status`` array of a sweep store; CaseError naming the store when the array is
    missing or one of its chunks does not decode."""
    p = Path(path)
    if not (p / "status" / "zarr.json").exists():
        raise CaseError("damaged sweep store: array 'status' is missing (no status/zarr.json), "
                        "so which members ran is unknown; " + SWEEP_FIX, source=_src(p))
    _array_meta("status", read_json(p / "status" / "zarr.json", p, "array 'status'"), p)
    return _read_statuses(p)
