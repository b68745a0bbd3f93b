"""The run store: an xarray Dataset in zarr, appended along ``time`` while a run goes on.

Layout (DESIGN §7): cable runs have ``v``, ``w`` over ``(time, x)``; point runs over
``(member, time)`` with the varied inputs as coordinates on ``member``. Attributes:
``fhnpde_version``, ``case`` (the resolved case as YAML), ``solver``, ``status``
(``running | complete | failed | interrupted``) and ``stats`` (a mapping).

Outputs are buffered and written a whole chunk at a time (``output.chunk_mb`` per chunk,
or at the latest every ``flush_seconds``), so a long run never holds its history in memory
and the store can be opened at any moment; ``status`` stays ``running`` until the last
chunk is on disk.
"""

from __future__ import annotations

import json
import shutil
import time as _time
import warnings
from pathlib import Path

import numpy as np

from .case import CaseError


def _quiet_zarr():
    """Silence zarr's note that consolidated metadata is not yet in the v3 spec."""
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
    return ctx


def is_store(path: Path) -> bool:
    return (path / "zarr.json").exists() or (path / ".zgroup").exists()


def prepare_path(path: str | Path, overwrite: bool, key: str = "output.path") -> Path:
    """Check that a store can be written at ``path`` before anything runs."""
    p = Path(path)
    if p.exists():
        if not overwrite:
            raise CaseError(
                f"{p} already exists; pass --overwrite to replace it or choose another path",
                key=key,
            )
        if p.is_dir() and (is_store(p) or not any(p.iterdir())):
            shutil.rmtree(p)
        else:
            raise CaseError(
                f"{p} exists and is not a zarr store; refusing to replace it, choose another path",
                key=key,
            )
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        probe = p.parent / f".fhnpde-write-test-{p.name}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise CaseError(
            f"cannot write to {p} ({reason}); choose a writable path with --out", key=key
        ) from None
    return p


def set_attrs(path: str | Path, **attrs) -> None:
    """Update root attributes and re-consolidate the metadata."""
    import zarr

    ctx = _quiet_zarr()
    try:
        group = zarr.open_group(str(path), mode="r+")
        group.attrs.update(attrs)
        zarr.consolidate_metadata(str(path))
    finally:
        ctx.__exit__(None, None, None)


def open_run(path: str | Path):
    """Open a run store as an xarray.Dataset (lazily)."""
    import xarray as xr

    p = Path(path)
    if not is_store(p):
        raise CaseError("is not a zarr store written by fhnpde", source=str(p))
    ds = xr.open_zarr(str(p))
    stats = ds.attrs.get("stats")
    if isinstance(stats, str):
        ds.attrs["stats"] = json.loads(stats)
    return ds


class StoreWriter:
    """Observer that appends outputs to a zarr store in whole chunks.

    Written with zarr directly (xarray is not needed to write, only to read): every array
    carries ``dimension_names``, so ``xarray.open_zarr`` sees dims ``(time, x)`` for a cable
    and ``(member, time)`` for a point ensemble; non-dimension coordinates are named in the
    data variables' ``coordinates`` attribute. After every flush the metadata is
    re-consolidated, so a reader opening the store mid-run sees a consistent snapshot of
    the outputs written so far.

    ``coords``: name -> (dim, values, attrs). ``extras``: name -> (dims after ``time``,
    attrs) for further per-output variables (e.g. ``active_nodes``), handed to
    :meth:`output` as a mapping.
    """

    def __init__(self, path, *, layout, coords, attrs, extras=None, chunk_mb=4.0,
                 flush_seconds=30.0, n_outputs=None):
        self.path = Path(path)
        self.layout = layout
        self.coords = coords
        self.attrs = attrs
        self.extras = dict(extras or {})
        self.size = len(coords["x"][1]) if layout == "cable" else len(coords["member"][1])
        per_output = 8 * self.size * 2
        chunk = max(1, int(chunk_mb * 2**20 // per_output))
        if n_outputs is not None:
            chunk = min(chunk, max(1, n_outputs))
        self.chunk = chunk
        self.flush_seconds = flush_seconds
        self._times: list[float] = []
        self._v = np.empty((chunk, self.size))
        self._w = np.empty((chunk, self.size))
        self._extra: dict[str, list] = {k: [] for k in self.extras}
        self._group = None
        self._last_flush = _time.monotonic()
        self.outputs_written = 0

    # -- observer protocol --

    def start(self, info) -> None:
        self._create()

    def output(self, t, state) -> None:
        from .backends import to_numpy

        k = len(self._times)
        self._v[k] = to_numpy(state.v)
        self._w[k] = to_numpy(state.w)
        self._times.append(float(t))
        for name in self.extras:
            self._extra[name].append(to_numpy(state.aux[name]))
        if len(self._times) == self.chunk or (
            _time.monotonic() - self._last_flush > self.flush_seconds
        ):
            self.flush()

    def finish(self, status, stats) -> None:
        if self._group is None:
            return
        self.flush()
        self._group.attrs.update({"status": status, "stats": stats})
        self._consolidate()

    # -- writing --

    def _consolidate(self, path: Path | None = None) -> None:
        import zarr

        ctx = _quiet_zarr()
        try:
            zarr.consolidate_metadata(str(path or self.path))
        finally:
            ctx.__exit__(None, None, None)

    def _unwritable(self, exc: OSError) -> CaseError:
        return CaseError(
            f"cannot write to {self.path} ({exc.strerror or exc}); choose a writable path",
            key="output.path",
        )

    def _create(self) -> None:
        """Build the empty store beside its path and rename it into place, so that a reader
        never finds a half-made store (no consolidated metadata, missing arrays)."""
        import os
        import shutil

        import zarr

        staging = self.path.with_name(f".{self.path.name}.creating-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            group = zarr.open_group(str(staging), mode="w", zarr_format=3,
                                    attributes={**self.attrs, "status": "running"})
            extra_coords = " ".join(n for n, (dim, _, _) in self.coords.items() if n != dim)
            for name, (dim, values, attrs) in self.coords.items():
                values = np.asarray(values)
                arr = group.create_array(name, shape=values.shape, dtype=values.dtype,
                                         dimension_names=[dim], attributes=attrs)
                arr[:] = values
            group.create_array("time", shape=(0,), chunks=(self.chunk,), dtype="f8",
                               dimension_names=["time"], fill_value=np.nan,
                               attributes={"units": "1", "long_name": "time"})
            if self.layout == "cable":
                dims, shape, chunks = ["time", "x"], (0, self.size), (self.chunk, self.size)
            else:
                dims, shape, chunks = ["member", "time"], (self.size, 0), (self.size, self.chunk)
            long = {"v": "membrane potential (fast variable)",
                    "w": "recovery variable (slow variable)"}
            for name in ("v", "w"):
                attrs = {"units": "1", "long_name": long[name]}
                if extra_coords:
                    attrs["coordinates"] = extra_coords
                group.create_array(name, shape=shape, chunks=chunks, dtype="f8",
                                   dimension_names=dims, fill_value=np.nan, attributes=attrs)
            for name, (edims, eattrs) in self.extras.items():
                eshape = tuple(self.size if d in ("x", "member") else 1 for d in edims)
                group.create_array(name, shape=(0, *eshape), chunks=(self.chunk, *eshape),
                                   dtype=eattrs.get("dtype", "f8"),
                                   dimension_names=["time", *edims],
                                   attributes={k: v for k, v in eattrs.items() if k != "dtype"})
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise self._unwritable(exc) from None
        self._consolidate(staging)
        try:
            os.replace(staging, self.path)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise self._unwritable(exc) from None
        self._group = zarr.open_group(str(self.path), mode="r+", use_consolidated=False)

    def flush(self) -> None:
        n = len(self._times)
        if n == 0 or self._group is None:
            return
        g = self._group
        start = g["time"].shape[0]
        stop = start + n
        if self.layout == "cable":
            for name, buf in (("v", self._v), ("w", self._w)):
                g[name].resize((stop, self.size))
                g[name][start:stop] = buf[:n]
        else:
            for name, buf in (("v", self._v), ("w", self._w)):
                g[name].resize((self.size, stop))
                g[name][:, start:stop] = buf[:n].T
        for name in self.extras:
            arr = g[name]
            arr.resize((stop, *arr.shape[1:]))
            arr[start:stop] = np.asarray(self._extra[name]).reshape((n, *arr.shape[1:]))
            self._extra[name].clear()
        g["time"].resize((stop,))
        g["time"][start:stop] = self._times
        self._consolidate()
        self.outputs_written += n
        self._times.clear()
        self._last_flush = _time.monotonic()
