"""The files of a zarr v3 group, written without importing zarr.

A run's store (:class:`fhnpde.store.StoreWriter`) is a handful of arrays appended along
``time``. Importing zarr costs more than a whole cable run (0.1-0.25 s, its codecs and
asyncio machinery), so the writer produces the zarr v3 layout itself; every reader
(``xarray.open_zarr``, ``zarr.open_group``, :mod:`fhnpde.storecheck`) reads it as any zarr
store, and the tests read every store through zarr.

What is written, and only this (zarr v3 core specification):

- ``zarr.json`` of the group: its attributes and, after every :meth:`ZarrGroupFiles.consolidate`,
  the consolidated metadata of its arrays (``kind: inline``, as zarr's
  ``consolidate_metadata`` writes it), so a reader opening the store mid-run sees one
  consistent snapshot;
- ``NAME/zarr.json`` of each array: a regular chunk grid, the default chunk key encoding
  with ``/``, ``dimension_names``, and the codecs ``bytes`` (little endian) and ``crc32c``:
  a chunk is the raw values in C order followed by their CRC-32C, so a chunk whose bytes
  were changed or cut short fails to decode (zarr raises) instead of reading as other
  numbers. No compression: fields of float64 compress to about 80 % with zstd, at more
  cost than writing the bytes;
- ``NAME/c/I/J/...`` chunk files, always whole (an edge chunk holds the fill value beyond
  the array's shape, as zarr writes it).

Every file goes through :func:`put`: written beside its path and renamed over it, so a
reader never sees half a file and a failed write (disk full, file too large) leaves the
previous version. Data types: booleans, integers and floats (what run stores hold).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

ZARR_JSON = "zarr.json"
CHUNK_KEY_ENCODING = {"name": "default", "configuration": {"separator": "/"}}
CODECS = [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]
#: bytes checksummed per call: no copy of a whole chunk, and small enough that each block
#: comes from (and goes back to) the allocator's heap instead of fresh pages (1 MiB blocks
#: each mapped afresh: 1.6 ms of page faults for a 1.9 MB chunk, 64 KiB blocks 0.18 ms)
CRC_BLOCK = 1 << 16


def put(path: Path, *parts) -> None:
    """Write ``parts`` (bytes-like objects, one after the other) to ``path`` atomically: into
    a file beside it, then renamed over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        try:
            fh = open(tmp, "wb")
        except FileNotFoundError:  # the folder is new
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(tmp, "wb")
        with fh:
            for part in parts:
                fh.write(part)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def encode_chunk(values: np.ndarray) -> tuple[memoryview, bytes]:
    """A chunk's file in two parts: the C-contiguous ``values`` as raw bytes (a view, not a
    copy), then their CRC-32C (four bytes, little endian: the ``bytes`` and ``crc32c``
    codecs)."""
    import google_crc32c  # a dependency of zarr, C code: 8 ms to import

    raw = memoryview(values).cast("B")
    crc = 0
    for start in range(0, raw.nbytes, CRC_BLOCK):  # google_crc32c reads bytes objects only
        crc = google_crc32c.extend(crc, raw[start:start + CRC_BLOCK].tobytes())
    return raw, crc.to_bytes(4, "little")


def decode_chunk(data: bytes, dtype: np.dtype, shape) -> np.ndarray:
    """The values of a chunk's file written by :func:`encode_chunk` (a writable copy);
    ValueError when its checksum does not match."""
    import google_crc32c

    if len(data) != 4 + int(np.prod(shape)) * dtype.itemsize or \
            google_crc32c.value(data[:-4]) != int.from_bytes(data[-4:], "little"):
        raise ValueError("the chunk's bytes do not match its checksum")
    return np.frombuffer(data[:-4], dtype=dtype).reshape(shape).copy()


def json_bytes(obj) -> bytes:
    """JSON as zarr writes it (indented; NaN and infinities as the bare words Python's json
    module reads back)."""
    return json.dumps(obj, indent=2).encode()


def data_type(dtype) -> np.dtype:
    """The numpy dtype of an array this module can write; ValueError for any other."""
    dt = np.dtype(dtype)
    if dt.kind not in "biuf":
        raise ValueError(f"a run store holds booleans, integers and floats, not {dt}")
    return dt.newbyteorder("<") if dt.itemsize > 1 else dt


def fill_json(value, dtype: np.dtype):
    """A fill value in the form zarr v3 metadata gives it."""
    if dtype.kind == "b":
        return bool(value)
    if dtype.kind in "iu":
        return int(value)
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


class ArrayFiles:
    """One array of the group: its metadata in memory, its chunks on disk.

    Appending runs along one axis (``time``); the other axes are one chunk each, so a chunk
    is found by its index along that axis alone.
    """

    def __init__(self, root: Path, name: str, shape, chunks, dtype, dims, fill, attrs,
                 axis: int = 0):
        self.name = name
        self.root = root
        self.shape = tuple(int(n) for n in shape)
        self.chunks = tuple(int(n) for n in chunks)
        self.dtype = data_type(dtype)
        self.dims = list(dims)
        self.fill = fill
        self.attrs = dict(attrs)
        self.axis = axis
        if len(self.chunks) != len(self.shape) or len(self.dims) != len(self.shape):
            raise ValueError(f"array {name!r}: shape {self.shape}, chunks {self.chunks} and "
                             f"dims {self.dims} differ in length")
        for ax, (n, c) in enumerate(zip(self.shape, self.chunks, strict=True)):
            if ax != axis and c < n:
                raise ValueError(f"array {name!r}: only axis {axis} may have several chunks")

    @property
    def dir(self) -> Path:
        return self.root / self.name

    def metadata(self) -> dict:
        return {
            "shape": list(self.shape),
            "data_type": self.dtype.name,
            "chunk_grid": {"name": "regular",
                           "configuration": {"chunk_shape": list(self.chunks)}},
            "chunk_key_encoding": CHUNK_KEY_ENCODING,
            "fill_value": fill_json(self.fill, self.dtype),
            "codecs": CODECS,
            "attributes": self.attrs,
            "dimension_names": self.dims,
            "zarr_format": 3,
            "node_type": "array",
            "storage_transformers": [],
        }

    def write_metadata(self) -> None:
        put(self.dir / ZARR_JSON, json_bytes(self.metadata()))

    def chunk_path(self, index: int) -> Path:
        key = ["0"] * len(self.shape)
        key[self.axis] = str(index)
        return self.dir.joinpath("c", *key)

    def resize(self, length: int) -> None:
        """Set the length along the appending axis; chunks wholly beyond it are removed (as
        zarr's ``resize`` does), then the metadata is written."""
        shape = list(self.shape)
        shape[self.axis] = int(length)
        old = self.shape[self.axis]
        self.shape = tuple(shape)
        step = self.chunks[self.axis]
        for index in range(-(-length // step), -(-old // step)):
            self.chunk_path(index).unlink(missing_ok=True)
        self.write_metadata()

    def write(self, start: int, values: np.ndarray) -> None:
        """Write ``values`` at positions ``start ..`` along the appending axis (inside the
        shape). A chunk written in part before is read back and completed."""
        values = np.asarray(values, dtype=self.dtype)
        stop = start + values.shape[self.axis]
        if start < 0 or stop > self.shape[self.axis]:
            raise ValueError(f"array {self.name!r}: positions {start} to {stop} lie outside "
                             f"its length {self.shape[self.axis]}")
        step = self.chunks[self.axis]
        for index in range(start // step, -(-stop // step)):
            first = index * step
            lo, hi = max(start, first), min(stop, first + step)
            path = self.chunk_path(index)
            source = [slice(None)] * len(self.shape)
            source[self.axis] = slice(lo - start, hi - start)
            part = values[tuple(source)]
            if (lo, hi) == (first, first + step) and part.flags.c_contiguous:
                put(path, *encode_chunk(part))  # a whole chunk, as it lies in memory
                continue
            if lo > first and path.exists():
                chunk = decode_chunk(path.read_bytes(), self.dtype, self.chunks)
            else:
                chunk = np.full(self.chunks, self.fill, dtype=self.dtype)
            target = [slice(None)] * len(self.shape)
            target[self.axis] = slice(lo - first, hi - first)
            chunk[tuple(target)] = part
            put(path, *encode_chunk(chunk))


class ZarrGroupFiles:
    """A zarr v3 group of :class:`ArrayFiles` at ``path`` (its root attributes on disk)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.arrays: dict[str, ArrayFiles] = {}

    def create(self, attrs: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        put(self.path / ZARR_JSON,
            json_bytes({"attributes": attrs, "zarr_format": 3, "node_type": "group"}))

    def create_array(self, name: str, shape, chunks, dtype, dims, attrs, *, fill=0,
                     axis: int = 0, data=None) -> ArrayFiles:
        arr = ArrayFiles(self.path, name, shape, chunks, dtype, dims, fill, attrs, axis)
        arr.write_metadata()
        if data is not None and arr.shape[axis]:
            arr.write(0, data)
        self.arrays[name] = arr
        return arr

    def moved_to(self, path: str | Path) -> None:
        """The group's files were moved (renamed) to ``path``: write there from now on."""
        self.path = Path(path)
        for arr in self.arrays.values():
            arr.root = self.path

    def __getitem__(self, name: str) -> ArrayFiles:
        return self.arrays[name]

    def consolidate(self) -> None:
        """Rewrite the group's ``zarr.json`` with the metadata of every array (and the root
        attributes as they are on disk)."""
        meta = self.path / ZARR_JSON
        root = json.loads(meta.read_bytes())
        root["consolidated_metadata"] = {
            "kind": "inline", "must_understand": False,
            "metadata": {name: arr.metadata() for name, arr in sorted(self.arrays.items())}}
        put(meta, json_bytes(root))
