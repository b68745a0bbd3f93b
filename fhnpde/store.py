"""The run store: an xarray Dataset in zarr, appended along ``time`` while a run goes on.

Layout (DESIGN §7): cable runs have ``v``, ``w`` over ``(time, x)``, sheet runs over
``(time, y, x)`` (DESIGN §9; coordinates ``x`` and ``y``); point runs over
``(member, time)`` with the varied inputs as coordinates on ``member``. Attributes:
``fhnpde_version``, ``case`` (the resolved case as YAML), ``solver``, ``status``
(``running | complete | failed | interrupted``) and ``stats`` (a mapping).

Outputs are buffered and written a whole chunk at a time (``output.chunk_mb`` per chunk,
or at the latest every ``flush_seconds``), so a long run never holds its history in memory
and the store can be opened at any moment; ``status`` stays ``running`` until the last
chunk is on disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import time as _time
import warnings
from pathlib import Path

import numpy as np

from .backends import to_numpy
from .case import CaseError


def _quiet_zarr():
    """Silence zarr's note that consolidated metadata is not yet in the v3 spec."""
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
    return ctx


def is_store(path: Path) -> bool:
    return (path / "zarr.json").exists() or (path / ".zgroup").exists()


class StoreWriteError(RuntimeError):
    """Writing the store failed (disk full, file too large, I/O error): the run ends failed."""


def prepare_path(path: str | Path, overwrite: bool, key: str = "output.path") -> Path:
    """Check that a store can be written at ``path`` before anything runs.

    Nothing is deleted here: an existing store is only checked to be one that ``--overwrite``
    may replace (see :mod:`fhnpde.storefs`); it is replaced once the new store exists.
    """
    from .storefs import check_target

    p = Path(path)
    check_target(p, overwrite, key)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        probe = p.parent / f".fhnpde-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise CaseError(
            f"cannot write to {p} ({reason}); choose a writable path with --out", key=key
        ) from None
    return p


def write_root_attributes(path: str | Path, attrs: dict) -> None:
    """Update the root group's attributes in one atomic write of its ``zarr.json``, keeping
    the consolidated metadata it holds (a status is never half written, and a reader never
    sees a root without its consolidated metadata)."""
    meta = Path(path) / "zarr.json"
    data = json.loads(meta.read_bytes())
    data.setdefault("attributes", {}).update(json.loads(json.dumps(attrs, default=str)))
    tmp = meta.with_name(f"zarr.json.{os.getpid()}.partial")
    try:
        tmp.write_text(json.dumps(data, indent=2))  # NaN as zarr itself writes it
        os.replace(tmp, meta)
    finally:
        tmp.unlink(missing_ok=True)


def set_attrs(path: str | Path, **attrs) -> None:
    """Update root attributes in one atomic write (:func:`write_root_attributes`);
    StoreWriteError naming the store and the OS error if it cannot be written."""
    try:
        write_root_attributes(path, attrs)
    except OSError as exc:
        raise StoreWriteError(f"cannot write the attributes of {path} "
                              f"({exc.strerror or exc}); free some space or check the "
                              "folder's permissions, then run again") from None


def open_run(path: str | Path):
    """Open a run or sweep store as an xarray.Dataset (lazily).

    The store is checked first (:func:`fhnpde.storecheck.check_store`): a path that is not a
    store fhnpde wrote, damaged metadata, a missing array or a missing chunk is a
    :class:`CaseError` naming it, instead of a traceback or NaN where data was lost.
    A store whose status is ``running`` gets ``attrs["writer"]``: ``live`` while its writer
    holds the lock beside it, ``gone`` once that process has ended without writing a final
    status (SIGKILL, an OOM kill: see :func:`fhnpde.storefs.writer_state`).
    """
    import xarray as xr

    from .storecheck import check_store

    p = Path(path)
    check_store(p)
    ctx = _quiet_zarr()
    try:
        ds = xr.open_zarr(str(p))
    finally:
        ctx.__exit__(None, None, None)
    stats = ds.attrs.get("stats")
    if isinstance(stats, str):
        ds.attrs["stats"] = json.loads(stats)
    if ds.attrs.get("status") == "running":
        # the stored status cannot change once its writer is killed: say who is writing it
        from .storefs import writer_state

        ds.attrs["writer"] = writer_state(p)
    return ds


LONG_NAMES = {"v": "membrane potential (fast variable)",
              "w": "recovery variable (slow variable)"}


def field_time_chunk(outputs: int, size: int) -> int:
    """Outputs per chunk of a sweep's kept fields (one member, ``size`` nodes or cells):
    8 MiB of float64 at most, at least one output."""
    return max(1, min(outputs, (8 * 2**20) // (8 * size)))


def field_attrs(name: str) -> dict:
    """The attributes of the field ``v`` or ``w`` in every store (runs and sweeps)."""
    return {"units": "1", "long_name": LONG_NAMES[name]}


def time_attrs() -> dict:
    """The attributes of the ``time`` coordinate in every store."""
    return {"units": "1", "long_name": "time"}


def x_attrs() -> dict:
    """The attributes of the ``x`` coordinate (node positions of a cable) in every store."""
    return {"units": "1", "long_name": "position along the cable"}


def sheet_coord_attrs(axis: str) -> dict:
    """The attributes of a sheet's ``x`` or ``y`` coordinate (node positions)."""
    return {"units": "1", "long_name": f"position along {axis} on the sheet"}


class RunLayout:
    """What a run's outputs are called and how they are shaped (DESIGN §7): one description
    serves the zarr store (:class:`StoreWriter`) and the in-memory Dataset
    (:class:`MemoryRecorder`, ``fhnpde.solve``), so the two cannot drift apart.

    ``kind``: ``cable`` (dims ``(time, x)``), ``sheet`` (``(time, y, x)``) or ``point``
    (``(member, time)``, the varied inputs as coordinates on ``member``). ``coords``: name ->
    (dim, values, attrs). ``attrs``: the root attributes. ``extras``: name -> (dims after
    ``time``, attrs with an optional ``dtype``) for further per-output variables (e.g.
    ``active_nodes``).
    """

    def __init__(self, kind: str, coords: dict, attrs: dict, extras: dict | None = None):
        if kind not in ("cable", "sheet", "point"):
            raise ValueError(f"unknown layout {kind!r}; valid: cable, sheet, point")
        self.kind = kind
        self.coords = coords
        self.attrs = attrs
        self.extras = dict(extras or {})
        #: the shape of one output of ``v`` (or ``w``): (nodes,), (ny, nx) or (members,)
        self.field_shape = tuple(len(coords[d][1]) for d in self.field_dims if d != "time")
        self.size = int(np.prod(self.field_shape))

    @property
    def field_dims(self) -> tuple[str, ...]:
        return {"cable": ("time", "x"), "sheet": ("time", "y", "x"),
                "point": ("member", "time")}[self.kind]

    @property
    def along_time(self) -> bool:
        """True when ``time`` is the first dim of the fields (cables and sheets)."""
        return self.kind != "point"

    def field_attrs(self, name: str) -> dict:
        attrs = field_attrs(name)
        extra_coords = " ".join(n for n, (dim, _, _) in self.coords.items() if n != dim)
        if extra_coords:
            attrs["coordinates"] = extra_coords
        return attrs

    def extra_shape(self, name: str) -> tuple[int, ...]:
        """The shape of one output of an extra variable."""
        dims = self.extras[name][0]
        return tuple(len(self.coords[d][1]) if d in self.coords else 1 for d in dims)

    def extra_dtype(self, name: str) -> str:
        return self.extras[name][1].get("dtype", "f8")

    def extra_attrs(self, name: str) -> dict:
        return {k: v for k, v in self.extras[name][1].items() if k != "dtype"}

    def dataset(self, times, v, w, extras: dict, attrs: dict):
        """The outputs as an xarray.Dataset laid out as the store holds them: ``v``, ``w``
        shaped (outputs, size), ``extras[name]`` (outputs, *extra_shape)."""
        import xarray as xr

        times = np.asarray(times, dtype="f8")
        n = times.shape[0]
        coords = {name: xr.Variable((dim,), np.asarray(values), attrs)
                  for name, (dim, values, attrs) in self.coords.items()}
        coords["time"] = xr.Variable(("time",), times, time_attrs())
        data = {}
        for name, values in (("v", v), ("w", w)):
            values = np.asarray(values, dtype="f8").reshape(n, *self.field_shape)
            if self.kind == "point":
                values = values.T
            attrs_v = {k: a for k, a in self.field_attrs(name).items() if k != "coordinates"}
            data[name] = xr.Variable(self.field_dims, values, attrs_v)
        for name, (edims, _) in self.extras.items():
            values = np.asarray(extras[name], dtype=self.extra_dtype(name))
            data[name] = xr.Variable(("time", *edims),
                                     values.reshape((n, *self.extra_shape(name))),
                                     self.extra_attrs(name))
        return xr.Dataset(data, coords=coords, attrs={**self.attrs, **attrs})


class MemoryRecorder:
    """Observer that keeps every output in memory and builds the run's Dataset at the end
    (``fhnpde.solve`` without a store): the store's layout, status and stats."""

    def __init__(self, layout: RunLayout):
        self.layout = layout
        self._times: list[float] = []
        self._v: list[np.ndarray] = []
        self._w: list[np.ndarray] = []
        self._extra: dict[str, list] = {k: [] for k in layout.extras}
        self.status = "running"
        self.stats: dict = {}

    def start(self, info) -> None:
        pass

    def output(self, t, state) -> None:
        self._v.append(np.array(to_numpy(state.v), dtype="f8"))
        self._w.append(np.array(to_numpy(state.w), dtype="f8"))
        for name in self._extra:
            self._extra[name].append(np.array(to_numpy(state.aux[name])))
        self._times.append(float(t))

    def finish(self, status, stats) -> None:
        self.status, self.stats = status, dict(stats)

    def dataset(self, **attrs):
        size = self.layout.size
        n = len(self._times)
        v = np.asarray(self._v).reshape(n, size)
        w = np.asarray(self._w).reshape(n, size)
        extras = {k: np.asarray(vals) for k, vals in self._extra.items()}
        return self.layout.dataset(self._times, v, w, extras,
                                   {"status": self.status, "stats": self.stats, **attrs})


class StoreWriter:
    """Observer that appends outputs to a zarr store in whole chunks.

    Written by :mod:`fhnpde.zarrfiles` (the zarr v3 layout, without importing zarr; xarray
    is not needed to write, only to read): every array
    carries ``dimension_names``, so ``xarray.open_zarr`` sees dims ``(time, x)`` for a cable
    and ``(member, time)`` for a point ensemble; non-dimension coordinates are named in the
    data variables' ``coordinates`` attribute. After every flush the metadata is
    re-consolidated, so a reader opening the store mid-run sees a consistent snapshot of
    the outputs written so far.

    Names, dims and attributes come from its :class:`RunLayout` (the extras, e.g.
    ``active_nodes``, are read from ``state.aux`` at each output).

    How it ends, whatever ends the run: the empty store is built beside ``path`` and swapped
    into place under the writer's lock (:mod:`fhnpde.storefs`); a chunk and its metadata are
    written with signals held (:mod:`fhnpde.signals`), and a failed write (disk full, file
    size limit, I/O error) shrinks every array back to the outputs written before it and
    raises :class:`StoreWriteError`, after which :meth:`finish` writes only the final status.
    ``finish`` always writes the status (signals are dropped while it does) and releases the
    lock.
    """

    def __init__(self, path, layout: RunLayout, *, chunk_mb=4.0, flush_seconds=30.0,
                 n_outputs=None, overwrite=False, key="output.path"):
        self.path = Path(path)
        self.layout = layout
        self.extras = layout.extras
        self.overwrite = overwrite
        self.key = key
        self.size = layout.size
        per_output = 8 * self.size * 2
        chunk = max(1, int(chunk_mb * 2**20 // per_output))
        if n_outputs is not None:
            chunk = min(chunk, max(1, n_outputs))
        self.chunk = chunk
        self.flush_seconds = flush_seconds
        self._times: list[float] = []
        self._v = np.empty((chunk, *layout.field_shape))
        self._w = np.empty((chunk, *layout.field_shape))
        self._extra: dict[str, list] = {k: [] for k in self.extras}
        self._group = None
        self._lock = None
        self._broken: StoreWriteError | None = None
        self._last_flush = _time.monotonic()
        self.outputs_written = 0
        self.final_status_error: str | None = None

    # -- observer protocol --

    def start(self, info) -> None:
        self._create()

    def output(self, t, state) -> None:
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
        from . import signals

        if self._group is None:
            return
        with signals.swallowed():
            try:
                # a write that fails now keeps the outputs before it; the status says failed
                with contextlib.suppress(StoreWriteError):
                    self.flush()
                if self._broken is not None and status == "complete":
                    status = "failed"
                final = {"status": status, "stats": stats}
                if self._broken is not None:
                    final["error"] = str(self._broken)
                try:
                    write_root_attributes(self.path, final)
                except OSError as exc:
                    self.final_status_error = (
                        f"the final status could not be written to {self.path} "
                        f"({exc.strerror or exc})")
            finally:
                if self._lock is not None:
                    self._lock.release()
                    self._lock = None

    @property
    def error(self) -> StoreWriteError | None:
        """The write that failed, if one did (the store then holds the outputs before it)."""
        return self._broken

    # -- writing --

    def _consolidate(self) -> None:
        self._group.consolidate()

    def _unwritable(self, exc: OSError) -> CaseError:
        return CaseError(
            f"cannot write to {self.path} ({exc.strerror or exc}); choose a writable path",
            key=self.key,
        )

    def _create(self) -> None:
        """Build the empty store beside its path and move it into place (replacing an old
        store of ours only with ``overwrite``), so that a reader never finds a half-made
        store and an old store survives a run that cannot start."""
        from . import signals
        from .storefs import WriterLock, install, staging_dir

        with signals.deferred():
            lock = WriterLock.acquire(self.path, self.key)
            try:
                try:
                    staging = staging_dir(self.path)
                except OSError as exc:
                    raise self._unwritable(exc) from None
                try:
                    try:
                        self._build(staging)
                        self._consolidate()
                    except OSError as exc:
                        raise self._unwritable(exc) from None
                    install(staging, self.path, self.overwrite, self.key)
                finally:
                    if os.path.lexists(staging):  # ours; gone once installed
                        import shutil

                        shutil.rmtree(staging, ignore_errors=True)
                self._group.moved_to(self.path)
            except BaseException:
                self._group = None
                lock.release()
                raise
            self._lock = lock

    def _build(self, staging: Path) -> None:
        from .zarrfiles import ZarrGroupFiles

        lay = self.layout
        group = ZarrGroupFiles(staging)
        group.create({**lay.attrs, "status": "running"})
        for name, (dim, values, attrs) in lay.coords.items():
            values = np.asarray(values)
            group.create_array(name, values.shape, values.shape, values.dtype, [dim], attrs,
                               data=values)
        group.create_array("time", (0,), (self.chunk,), "f8", ["time"], time_attrs(),
                           fill=np.nan)
        if lay.along_time:
            shape, chunks, axis = (0, *lay.field_shape), (self.chunk, *lay.field_shape), 0
        else:
            shape, chunks, axis = (self.size, 0), (self.size, self.chunk), 1
        for name in ("v", "w"):
            group.create_array(name, shape, chunks, "f8", lay.field_dims,
                               lay.field_attrs(name), fill=np.nan, axis=axis)
        for name, (edims, _) in lay.extras.items():
            eshape = lay.extra_shape(name)
            group.create_array(name, (0, *eshape), (self.chunk, *eshape),
                               lay.extra_dtype(name), ["time", *edims],
                               lay.extra_attrs(name))
        self._group = group

    def _resize_all(self, n: int) -> None:
        """Every array along ``time`` to ``n`` outputs."""
        for name in ("v", "w", *self.extras, "time"):
            self._group[name].resize(n)

    def flush(self) -> None:
        """Write the buffered outputs; on an OSError shrink back and raise StoreWriteError."""
        from . import signals

        n = len(self._times)
        if n == 0 or self._group is None:
            return
        if self._broken is not None:
            raise self._broken
        with signals.deferred():
            start = self.outputs_written
            try:
                self._write(start, n)
            except OSError as exc:
                self._broken = StoreWriteError(
                    f"writing {self.path} failed after {start} outputs "
                    f"({exc.strerror or exc}); the store keeps those {start} outputs "
                    "and is marked failed")
                # readers must see every array with the same number of outputs; if even
                # this fails, the consolidated metadata of the last good flush still holds
                with contextlib.suppress(OSError):
                    self._resize_all(start)
                    self._consolidate()
                raise self._broken from None
            self.outputs_written += n
            self._times.clear()
            for name in self.extras:
                self._extra[name].clear()
            self._last_flush = _time.monotonic()

    def _write(self, start: int, n: int) -> None:
        g = self._group
        self._resize_all(start + n)
        if self.layout.along_time:
            g["v"].write(start, self._v[:n])
            g["w"].write(start, self._w[:n])
        else:
            g["v"].write(start, self._v[:n].T)
            g["w"].write(start, self._w[:n].T)
        for name in self.extras:
            arr = g[name]
            arr.write(start, np.asarray(self._extra[name]).reshape((n, *arr.shape[1:])))
        g["time"].write(start, np.asarray(self._times))
        self._consolidate()
