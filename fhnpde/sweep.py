"""Parameter sweeps: many runs of one case, one dask task per member, one zarr store.

A sweep file names a base case and what to vary, with the key paths of ``--set``::

    name: sweep_threshold
    base: divergent.yaml             # a case file (relative to this file) or an inline case
    set: {time.t_end: 200.0}         # fixed overrides for every member (optional)
    sample: grid                     # grid | latin-hypercube | uniform
    vary:
      model.params.a: {values: [0.05, 0.1, 0.15]}   # listed values
      initial.v.amplitude: [0.1, 0.6]               # a range: `points` values (grid) or samples
    points: 11                       # grid only: values per range
    size: 100                        # latin-hypercube / uniform: number of members
    seed: 0
    keep: summary                    # summary | fields (v, w of every member: big)
    summary: {threshold: 0.3, edge: null}
    output: {path: runs/sweep_threshold.zarr}

Every member is built and checked (schema, stability limit) before anything runs; one bad
key or value fails the whole sweep with one :class:`~fhnpde.case.CaseError` (exit 2).

The store (``xarray.open_zarr``) has a ``member`` dimension whose coordinates are the
varied values (one coordinate per key path, named by it). Per-member variables, computed
on the workers:

- ``status`` (int8): 0 pending, 1 complete, 2 failed (a numerical failure, e.g. blow-up);
  written last, so it is the member's completion flag;
- ``propagated`` (int8, cables): 1 if a pulse peak came within ``edge`` of the far end,
  i.e. reached the distance :math:`s_{far}` from the source, where for a no-flux cable of
  length L with source at :math:`x_s`, :math:`s_{far} = \\max(x_s, L - x_s)` (both ends
  when the source is central) and on a ring :math:`s_{far} = L/2`;
- ``pulses``: the largest number of pulse peaks seen in one profile (cables), or the
  largest number of upstrokes of v through ``threshold`` of any cell (point cases);
- ``speed``: conduction speed, the least-squares slope of :math:`d(t)`, the distance from
  the source of the farthest peak, over the first passage of :math:`d` through
  :math:`[s_{far}/4,\\ 3 s_{far}/4]` (away from initiation and from the wall); NaN when the
  pulse never crossed that window or crossed it within fewer than two outputs;
- ``t_arrival``: first output time at which :math:`d \\ge s_{far} - edge` (NaN if never);
- ``t_reached``, ``steps``, ``wall_time_s``: how far and how fast the member ran;
- ``v``, ``w`` over ``(member, time, x)`` (cables) or ``(member, time, cell)`` (point
  cases), only with ``keep: fields``.

The source is the position of the largest initial v when it exceeds ``threshold``, else
the centre of the first stimulus box, else the cable's centre. Peaks are those of
:func:`fhnpde.plotting.pulse_positions` (the largest node of each run of nodes above
``threshold``); ``edge`` defaults to 5 % of the cable's length.

Writing: the client writes a template (``to_zarr(compute=False)``: metadata and
coordinates only, chunk size 1 along ``member``); each task writes only its member's
region (``region=``), so no two workers touch the same chunk, then its ``status``.
A rerun into the same store skips members whose status is not 0, and a store that holds a
different sweep is refused unless ``--overwrite``.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import math
import os
import shutil
import sys
import time as _time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from .case import (
    MAX_COUNT,
    Case,
    CaseError,
    FiniteFloat,
    Pair,
    PositiveFloat,
    _from_validation_error,
    _key_part,
    _set_path,
    parse_case,
    quote,
    read_case_data,
)

__all__ = [
    "STATUS_CODES",
    "Sweep",
    "SweepResult",
    "SweepSpec",
    "front_summary",
    "load_sweep",
    "run_member",
    "run_sweep",
]

STATUS_CODES = {"pending": 0, "complete": 1, "failed": 2}
SUMMARY_VARIABLES = ("propagated", "pulses", "speed", "t_arrival", "t_reached", "steps",
                     "wall_time_s")


# --- the sweep file ------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# Integers as wide as the int64 a member's value may end in (a case's counts are smaller).
Number = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)] | FiniteFloat
# load_sweep builds and checks every member's case (about 1 ms each) before anything runs.
MAX_MEMBERS = 100_000


class ValueList(_Strict):
    """Listed values of one key: ``{values: [0.1, 0.2]}``."""

    values: list[Number] = Field(min_length=1)


class SummarySpec(_Strict):
    threshold: FiniteFloat = 0.3
    edge: PositiveFloat | None = None


class SweepOutput(_Strict):
    path: str | None = None


class SweepSpec(_Strict):
    """A validated sweep file (the members are built by :func:`load_sweep`)."""

    name: str
    description: str = ""
    base: str | dict[str, Any]
    set: dict[str, Any] = Field(default_factory=dict)
    sample: Literal["grid", "latin-hypercube", "uniform"] = "grid"
    vary: dict[str, Pair | ValueList] = Field(min_length=1)
    points: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 11
    size: Annotated[int, Field(ge=1, le=MAX_COUNT)] | None = None
    seed: Annotated[int, Field(ge=0, le=2**64 - 1)] = 0
    keep: Literal["summary", "fields"] = "summary"
    summary: SummarySpec = Field(default_factory=SummarySpec)
    output: SweepOutput = Field(default_factory=SweepOutput)

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        for key, spec in self.vary.items():
            if not key or any(not part for part in key.split(".")):
                raise ValueError(f"vary\x00{quote(key)} is not a key path like model.params.a")
            if isinstance(spec, list) and spec[1] < spec[0]:
                raise ValueError(f"vary.{_key_part(key)}\x00must be [low, high] with low <= "
                                 f"high, got {list(spec)}")
            if isinstance(spec, list) and not math.isfinite(spec[1] - spec[0]):
                raise ValueError(f"vary.{_key_part(key)}\x00the range [{spec[0]:g}, "
                                 f"{spec[1]:g}] is wider than a float holds (high - low "
                                 "overflows); narrow it")
            if key in self.set:
                raise ValueError(f"set.{_key_part(key)}\x00is also varied; keep it in one of "
                                 "set or vary")
        for key in self.set:
            if not key or any(not part for part in key.split(".")):
                raise ValueError(f"set\x00{quote(key)} is not a key path like time.t_end")
        if self.sample != "grid" and self.size is None:
            raise ValueError(f"size\x00is required for sample: {self.sample}")
        if self.sample == "grid":
            members = math.prod(len(spec.values) if isinstance(spec, ValueList)
                                else 1 if spec[0] == spec[1] else self.points
                                for spec in self.vary.values())
            what = "points" if any(isinstance(s, list) for s in self.vary.values()) else "vary"
        else:
            members, what = self.size, "size"
        if members > MAX_MEMBERS:
            raise ValueError(f"{what}\x00the sweep would have {members:,} members, more than "
                             f"the {MAX_MEMBERS:,} one sweep file may hold (each is built and "
                             "checked before anything runs); split it into several sweeps")
        return self


def _spec_error(exc: ValidationError, source: str, data: dict) -> CaseError:
    # Messages raised by SweepSpec's validator carry "key\x00message"; case.py splits them.
    err = _from_validation_error(exc, source)
    if any(e["type"] == "value_error" for e in exc.errors()):
        return err
    # A vary entry's type errors name union members; say what an entry may be instead.
    vary = data.get("vary")
    if err.key == "vary" and vary == {}:
        return CaseError("needs at least one key path, e.g. model.params.a: [0.05, 0.15]",
                         source=source, key="vary")
    if isinstance(vary, dict) and err.key and err.key.startswith("vary."):
        for k, entry in vary.items():
            if err.key == f"vary.{k}" or err.key.startswith(f"vary.{k}."):
                return CaseError(
                    "must be a range [low, high] or {values: [v1, v2, ...]} of numbers, "
                    f"got {quote(entry)}", source=source, key=f"vary.{_key_part(k)}",
                )
    return err


def _member_values(spec: SweepSpec) -> dict[str, np.ndarray]:
    """The varied values of every member, one array per key, in member order (the same
    sampling as a point ensemble's, :func:`fhnpde.problem.sample_points`)."""
    from .problem import sample_points

    return sample_points(spec.vary, spec.sample, spec.size, spec.seed, spec.points,
                         size_key="size")


def _python(value: Any) -> Any:
    """A numpy scalar as the plain Python number the strict case schema expects."""
    return value.item() if isinstance(value, np.generic) else value


def describe_member(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_python(v):g}" if isinstance(_python(v), float) else f"{k}={v}"
                     for k, v in values.items())


@dataclass
class Sweep:
    """A sweep file, validated, with every member's validated case."""

    spec: SweepSpec
    source: str
    base: dict
    values: dict[str, np.ndarray]
    cases: list[Case]
    fingerprint: str

    @property
    def size(self) -> int:
        return len(self.cases)

    def member_values(self, i: int) -> dict[str, Any]:
        return {k: _python(v[i]) for k, v in self.values.items()}


def load_sweep(path: str | Path, *, force: bool = False,
               out: str | Path | None = None) -> Sweep:
    """Read a sweep file and build and check every member's case (CaseError on any problem).

    Each member's case is the base case with ``set`` and then the member's values applied
    at their key paths, validated by the case schema and by its solver's stability check.
    Before any member is built, the number of members is counted from the spec and the
    client's memory and the store's disk (at ``out``) are checked unless ``force``
    (:func:`fhnpde.resources.check_sweep`).
    """
    source = str(path)
    data = read_case_data(path, "sweep file")
    if not isinstance(data, dict):
        raise CaseError(
            f"a sweep file must be a YAML mapping of keys, got {type(data).__name__}",
            source=source,
        )
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise _spec_error(exc, source, data) from None
    if isinstance(spec.base, str):
        base_path = Path(spec.base)
        if not base_path.is_absolute():
            base_path = Path(path).parent / base_path
        try:
            base = read_case_data(base_path)
        except CaseError as exc:
            raise CaseError(f"{exc.source}: {exc.detail}", source=source, key="base") from None
        if not isinstance(base, dict):
            raise CaseError(f"{base_path} is not a YAML mapping of case keys", source=source,
                            key="base")
    else:
        base = copy.deepcopy(spec.base)
    for key, value in spec.set.items():
        _set_path(base, key, value, source)
    from .resources import check_sweep

    check_sweep(spec, base, out or spec.output.path or f"runs/{spec.name}.zarr", force=force,
                source=source, notes=False, path_key="--out" if out else "output.path")
    try:
        values = _member_values(spec)
    except CaseError as exc:
        raise exc.with_source(source) from None
    n = len(next(iter(values.values())))
    cases = [_member_case(base, {k: v[i] for k, v in values.items()}, i, n, source)
             for i in range(n)]
    if spec.keep == "fields":
        _check_same_shapes(cases, values, source)
    digest = hashlib.sha256()
    digest.update(spec.keep.encode())
    digest.update(spec.summary.model_dump_json().encode())
    for case in cases:
        digest.update(case.to_yaml().encode())
    return Sweep(spec, source, base, values, cases, digest.hexdigest()[:16])


def _member_case(base: dict, values: dict[str, Any], i: int, n: int, source: str) -> Case:
    from .driver import build_solver

    data = copy.deepcopy(base)
    where = f"in member {i} of {n} ({describe_member(values)})"
    try:
        for key, value in values.items():
            _set_path(data, key, _python(value), source)
        case = parse_case(data, source)
        build_solver(case)
    except CaseError as exc:
        raise CaseError(f"{exc.detail}, {where}", source=source, key=exc.key) from None
    return case


def _layout(case: Case) -> tuple[np.ndarray, tuple[str, np.ndarray]]:
    """Output times and the per-output axis (``x`` nodes or ``cell`` indices) of a case."""
    from .driver import output_times
    from .problem import build_problem

    t = case.time
    times = output_times(t.n_steps, t.steps_per_output, t.dt)
    problem = build_problem(case)
    if problem.is_cable:
        return times, ("x", problem.grid.x)
    return times, ("cell", np.arange(problem.size))


def _check_same_shapes(cases: list[Case], values: dict, source: str) -> None:
    times0, (dim0, axis0) = _layout(cases[0])
    for i, case in enumerate(cases[1:], start=1):
        times, (dim, axis) = _layout(case)
        if (dim != dim0 or times.shape != times0.shape or axis.shape != axis0.shape
                or not np.allclose(times, times0) or not np.allclose(axis, axis0)):
            member = describe_member({k: v[i] for k, v in values.items()})
            raise CaseError(
                "keep: fields needs every member on the same nodes and output times, but "
                f"member {i} ({member}) differs from member 0; vary neither domain nor time "
                "keys, or use keep: summary",
                source=source, key="keep",
            )


# --- summaries (on the workers) ------------------------------------------------------------


def front_summary(times: np.ndarray, reach: np.ndarray, far: float, edge: float) -> dict:
    """Arrival, propagation and speed from the farthest-peak distance ``reach(t)``.

    ``reach[k]`` is the distance from the source of the farthest pulse peak at ``times[k]``
    (NaN when there is none). ``far`` is the distance to the far end. The speed is the
    least-squares slope of reach(t) over its first passage through [far/4, 3 far/4].
    """
    times = np.asarray(times, dtype=float)
    reach = np.asarray(reach, dtype=float)
    arrived = np.flatnonzero(reach >= far - edge)
    t_arrival = float(times[arrived[0]]) if arrived.size else math.nan
    inside = (reach >= 0.25 * far) & (reach <= 0.75 * far)
    speed = math.nan
    first = np.flatnonzero(inside)
    if first.size:
        k0 = first[0]
        after = np.flatnonzero(~inside[k0:])
        k1 = k0 + (after[0] if after.size else inside.size - k0)
        if k1 - k0 >= 2:
            speed = float(np.polyfit(times[k0:k1], reach[k0:k1], 1)[0])
    return {"propagated": int(arrived.size > 0), "t_arrival": t_arrival, "speed": speed}


class CableSummary:
    """Observer: pulse peaks of every output profile -> propagation, pulses, speed."""

    def __init__(self, threshold: float, edge: float | None):
        self.threshold = threshold
        self.edge = edge
        self.times: list[float] = []
        self.reach: list[float] = []
        self.pulses = 0

    def start(self, info) -> None:
        problem = info.solver.problem
        grid = problem.grid
        self.x = np.asarray(grid.x)
        self.length = float(problem.case.domain.length)
        self.periodic = problem.case.domain.boundary == "periodic"
        self.source = self._source(problem)
        self.far = self.length / 2 if self.periodic else max(self.source,
                                                              self.length - self.source)
        if self.edge is None:
            self.edge = 0.05 * self.length

    def _source(self, problem) -> float:
        v0 = np.asarray(problem.v0)
        if v0.max() > self.threshold:
            return float(self.x[np.argmax(v0)])
        for stim in problem.case.stimuli:
            if stim.amplitude != 0 and stim.x is not None:
                return 0.5 * (stim.x[0] + stim.x[1])
        return self.length / 2

    def output(self, t, state) -> None:
        from .backends import to_numpy
        from .plotting import pulse_positions

        peaks = pulse_positions(to_numpy(state.v), self.x, self.threshold)
        self.pulses = max(self.pulses, int(peaks.size))
        if peaks.size:
            d = np.abs(peaks - self.source)
            if self.periodic:
                d = np.minimum(d, self.length - d)
            self.reach.append(float(d.max()))
        else:
            self.reach.append(math.nan)
        self.times.append(float(t))

    def finish(self, status, stats) -> None:
        pass

    def values(self) -> dict:
        if not self.times:
            return {"propagated": 0, "pulses": 0, "speed": math.nan, "t_arrival": math.nan}
        front = front_summary(np.array(self.times), np.array(self.reach), self.far, self.edge)
        return {**front, "pulses": self.pulses}


class PointSummary:
    """Observer: upstrokes of v through ``threshold`` per cell (point cases)."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.previous = None
        self.count = None
        self.times: list[float] = []

    def start(self, info) -> None:
        pass

    def output(self, t, state) -> None:
        from .backends import to_numpy

        v = np.atleast_1d(to_numpy(state.v))
        if self.previous is None:
            self.count = np.zeros(v.shape, dtype=np.int64)
        else:
            self.count += (self.previous <= self.threshold) & (v > self.threshold)
        self.previous = v.copy()
        self.times.append(float(t))

    def finish(self, status, stats) -> None:
        pass

    def values(self) -> dict:
        pulses = int(self.count.max()) if self.count is not None else 0
        return {"propagated": 0, "pulses": pulses, "speed": math.nan, "t_arrival": math.nan}


class FieldRecorder:
    """Observer: keeps v and w of every output of one member (for ``keep: fields``)."""

    def __init__(self, n_outputs: int, size: int):
        self.v = np.full((n_outputs, size), np.nan)
        self.w = np.full((n_outputs, size), np.nan)
        self.k = 0

    def start(self, info) -> None:
        pass

    def output(self, t, state) -> None:
        from .backends import to_numpy

        self.v[self.k] = to_numpy(state.v)
        self.w[self.k] = to_numpy(state.w)
        self.k += 1

    def finish(self, status, stats) -> None:
        pass


def _write_region(store: str, index: int, variables: dict[str, np.ndarray]) -> None:
    """Write one member's slice (leading axis = member) of each variable, straight to zarr.

    The template fixed every array's shape, dtype and chunks (1 along member), so this only
    writes the member's own chunks; no metadata is touched (zarr rather than xarray's
    ``to_zarr(region=...)``, which would cost each worker xarray's import and a metadata
    read per call for the same bytes).
    """
    import zarr

    group = zarr.open_group(store, mode="r+", use_consolidated=False)
    for name, data in variables.items():
        group[name][index:index + 1] = data


def warm_worker(case: Case) -> None:
    """Load what a member needs (modules, compiled kernels) by building its solver and
    taking one step, so the first member on a fresh worker does not pay for it. Run on every
    worker at start-up (see :func:`fhnpde.cluster.run_tasks`)."""
    import zarr  # noqa: F401  (the region writes)

    from .driver import build_solver

    try:
        _, solver = build_solver(case)
        solver.advance(solver.init(), 0.0, case.time.dt, 1)
    except Exception:  # best effort: the member itself reports any error
        return


def run_member(store: str, index: int, case: Case, threshold: float, edge: float | None,
               keep_fields: bool) -> dict:
    """Run one member in this process and write its region of the sweep store.

    Idempotent: it rewrites the whole region, then the ``status`` flag, so a member whose
    worker died half-way is simply run again. A numerical failure (blow-up, overflow) is
    recorded as ``failed`` with the summaries of the outputs before it; any other
    exception propagates (a bug: the member stays pending and a rerun retries it).
    Returns the member's summary (a small dict) to the client.
    """
    from .driver import BlowUpGuard, build_solver, integrate, output_times

    wall0 = _time.perf_counter()
    problem, solver = build_solver(case)
    summary = (CableSummary(threshold, edge) if problem.is_cable else PointSummary(threshold))
    observers = [BlowUpGuard(), summary]
    if keep_fields:
        t = case.time
        n_out = len(output_times(t.n_steps, t.steps_per_output, t.dt))
        recorder = FieldRecorder(n_out, problem.size if not problem.is_cable else problem.grid.nx)
        observers.append(recorder)
    try:
        result = integrate(solver, solver.init(), case, observers)
        status, message, stats = result.status, result.message, result.stats
    except ArithmeticError as exc:  # numpy overflow raised as an error: a numerical failure
        status, message, stats = "failed", f"{type(exc).__name__}: {exc}", {}
    if status not in ("complete", "failed"):
        raise RuntimeError(f"member {index} ended as {status!r}: {message}")
    values = summary.values()
    values["t_reached"] = float(stats.get("t_reached", summary.times[-1] if summary.times
                                          else 0.0))
    values["steps"] = int(stats.get("steps", 0))
    values["wall_time_s"] = _time.perf_counter() - wall0
    dtypes = {"propagated": np.int8, "pulses": np.int32, "steps": np.int64}
    variables = {name: np.asarray([values[name]], dtype=dtypes.get(name, "f8"))
                 for name in SUMMARY_VARIABLES}
    if keep_fields:
        for name in ("v", "w"):
            variables[name] = getattr(recorder, name)[None]
    _write_region(store, index, variables)
    _write_region(store, index, {"status": np.asarray([STATUS_CODES[status]], np.int8)})
    return {"index": index, "status": status, "message": message, **values}


# --- the store -------------------------------------------------------------------------------


_ATTRS = {
    "status": {"long_name": "member status", "flag_values": [0, 1, 2],
               "flag_meanings": "pending complete failed"},
    "propagated": {"long_name": "a pulse reached the far end of the cable (1) or not (0)"},
    "pulses": {"long_name": "largest number of pulses at once (cable) or of upstrokes (point)"},
    "speed": {"long_name": "measured conduction speed", "units": "1"},
    "t_arrival": {"long_name": "time the first pulse reached the far end", "units": "1"},
    "t_reached": {"long_name": "time the member's run reached", "units": "1"},
    "steps": {"long_name": "time steps taken"},
    "wall_time_s": {"long_name": "wall time of the member on its worker", "units": "s"},
}


def _template(sweep: Sweep):
    """The store's Dataset: numpy coordinates, lazy (dask) data chunked 1 along member."""
    import dask.array as da
    import xarray as xr

    from . import __version__

    n = sweep.size
    coords: dict[str, Any] = {"member": ("member", np.arange(n), {"long_name": "sweep member"})}
    for key, vals in sweep.values.items():
        coords[key] = ("member", np.asarray(vals), {"long_name": f"varied key {key}"})
    dtypes = {"status": np.int8, "propagated": np.int8, "pulses": np.int32, "steps": np.int64}
    data = {}
    for name in ("status", *SUMMARY_VARIABLES):
        dtype = dtypes.get(name, np.float64)
        fill = 0 if np.issubdtype(dtype, np.integer) else np.nan
        data[name] = ("member", da.full(n, fill, dtype=dtype, chunks=1), _ATTRS[name])
    if sweep.spec.keep == "fields":
        times, (dim, axis) = _layout(sweep.cases[0])
        coords["time"] = ("time", times, {"units": "1", "long_name": "time"})
        if dim == "x":
            coords["x"] = ("x", axis, {"units": "1", "long_name": "position along the cable"})
        else:
            coords["cell"] = ("cell", axis, {"long_name": "cell of a point ensemble"})
        per_time = 8 * axis.size
        tchunk = max(1, min(times.size, (8 * 2**20) // per_time))
        long = {"v": "membrane potential (fast variable)", "w": "recovery variable (slow variable)"}
        for name in ("v", "w"):
            arr = da.full((n, times.size, axis.size), np.nan, chunks=(1, tchunk, axis.size))
            data[name] = (("member", "time", dim), arr, {"units": "1", "long_name": long[name]})
    attrs = {
        "fhnpde_version": __version__,
        "layout": "sweep",
        "title": sweep.spec.name,
        "description": sweep.spec.description,
        "sweep": yaml.safe_dump(sweep.spec.model_dump(mode="json"), sort_keys=False),
        "base_case": yaml.safe_dump(sweep.base, sort_keys=False),
        "varied": list(sweep.values),
        "keep": sweep.spec.keep,
        "fingerprint": sweep.fingerprint,
        "members": n,
        "status": "running",
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _open_attrs(path: Path) -> dict:
    """The store's root attributes (CaseError naming the file when its metadata is damaged)."""
    from .storecheck import root_attributes

    return root_attributes(path)


def _statuses(path: Path) -> np.ndarray:
    """Every member's status code (CaseError when the ``status`` array is missing or a
    chunk of it does not decode)."""
    from .storecheck import sweep_statuses

    return sweep_statuses(path)


def check_store(sweep: Sweep, path: Path, overwrite: bool) -> bool:
    """True if ``path`` holds this sweep's store (to be reused); False if a new one is to be
    written there (with ``overwrite``, replacing a store of ours once the new template
    exists: :func:`write_template`). Refuses a path holding something else."""
    from .store import is_store, prepare_path
    from .storefs import check_name

    check_name(path, key="--out")
    if path.exists() and is_store(path) and not overwrite:
        attrs = _open_attrs(path)
        if attrs.get("layout") == "sweep" and attrs.get("fingerprint") == sweep.fingerprint:
            return True
        raise CaseError(
            f"{path} holds a different run or sweep; pass --overwrite to replace it or "
            "choose another --out",
            key="--out",
        )
    prepare_path(path, overwrite, key="--out")
    return False


def write_template(sweep: Sweep, path: Path, overwrite: bool = False) -> None:
    """The template store: metadata, coordinates and fill values; every member pending.

    Built beside ``path`` and moved into place (:func:`fhnpde.storefs.install`), so an old
    store is replaced only once the new one exists; the caller holds ``path``'s lock."""
    from .storefs import install, staging_dir

    staging = staging_dir(path)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore",
                                    message="Consolidated metadata is currently not part")
            _template(sweep).to_zarr(str(staging), mode="w", compute=False, zarr_format=3,
                                     consolidated=True)
        install(staging, path, overwrite, key="--out")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def prepare_store(sweep: Sweep, path: Path, overwrite: bool) -> bool:
    """Create the template store, or reuse the store of the same sweep; True if reused."""
    from .storefs import WriterLock

    if check_store(sweep, path, overwrite):
        return True
    lock = WriterLock.acquire(path, key="--out")
    try:
        write_template(sweep, path, overwrite)
    finally:
        lock.release()
    return False


# --- running ---------------------------------------------------------------------------------


@dataclass
class SweepResult:
    """How a sweep ended: counts of members and where the store is."""

    path: str
    members: int
    ran: int
    skipped: int
    complete: int
    failed: int
    pending: int
    status: str
    wall_time_s: float
    errors: dict[int, str] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)


def run_sweep(sweep: Sweep | str | Path, *, out: str | Path | None = None,
              scheduler: str | None = None, workers: int | None = None,
              overwrite: bool = False, quiet: bool = True,
              dashboard: bool = False, force: bool = False) -> SweepResult:
    """Run every member not yet complete on dask.distributed; return the tally.

    ``scheduler``: an existing cluster's address (its workers must reach the store path and
    import fhnpde); otherwise a LocalCluster of ``workers`` processes on 127.0.0.1, serving
    dask's dashboard only with ``dashboard`` (:func:`fhnpde.cluster.local_cluster`). The
    store is ``out``, else the sweep's ``output.path``, else ``runs/<name>.zarr``. Memory
    (client and local workers) and disk are checked first unless ``force``
    (:func:`fhnpde.resources.check_sweep`).
    """
    from .cluster import max_workers, require_distributed
    from .resources import check_sweep
    from .storefs import WriterLock

    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep, force=force, out=out)
    require_distributed("python -m fhnpde sweep")
    path = Path(out or sweep.spec.output.path or f"runs/{sweep.spec.name}.zarr").resolve()
    check_sweep(sweep.spec, sweep.base, path, workers=0 if scheduler else workers or max_workers(),
                force=force, source=sweep.source, path_key="--out" if out else "output.path")
    reuse = check_store(sweep, path, overwrite)  # bad paths fail here, before any cluster
    lock = WriterLock.acquire(path, key="--out")  # refuses a second writer of this store
    try:
        return _run_locked(sweep, path, reuse, overwrite, scheduler, workers, quiet,
                           dashboard)
    finally:
        lock.release()


def _run_locked(sweep: Sweep, path: Path, reuse: bool, overwrite: bool, scheduler, workers,
                quiet: bool, dashboard: bool = False) -> SweepResult:
    from . import signals
    from .cluster import Task, run_tasks
    from .store import set_attrs

    done = (_statuses(path) != STATUS_CODES["pending"] if reuse
            else np.zeros(sweep.size, dtype=bool))
    summary = sweep.spec.summary
    tag = hashlib.sha256(f"{path}:{sweep.fingerprint}".encode()).hexdigest()[:12]
    tasks = [
        Task(f"fhnpde-sweep-{tag}-{i}", run_member,
             (str(path), i, case, summary.threshold, summary.edge, sweep.spec.keep == "fields"))
        for i, case in enumerate(sweep.cases)
    ]
    index = {t.key: i for i, t in enumerate(tasks)}
    failures: dict[int, str] = {}
    if reuse:
        attrs = _open_attrs(path)
        failures.update({int(k): v for k, v in (attrs.get("failures") or {}).items()})

    def record(task, result):
        if result["status"] == "failed":
            failures[result["index"]] = result["message"]

    if reuse and not done.all():
        set_attrs(path, status="running")
    cpus = os.cpu_count() or 1
    env = {"NUMBA_NUM_THREADS": str(max(1, cpus // (workers or cpus)))}
    first = sweep.cases[int(np.argmin(done))]
    status = "failed"
    written = [reuse]  # whether the store at path is this sweep's (else: nothing to mark)

    def template():
        write_template(sweep, path, overwrite)
        written[0] = True

    try:
        # a new store's template is written while the workers warm up (both take about a
        # second on a fresh machine); the tasks are submitted after both
        report = run_tasks(tasks, is_complete=lambda t: bool(done[index[t.key]]),
                           scheduler=scheduler, workers=workers, on_result=record,
                           desc=sweep.spec.name, quiet=quiet, worker_env=env,
                           dashboard=dashboard, warm_up=(warm_worker, (first,)),
                           before_submit=None if reuse else template)
        status = None
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP (fhnpde.signals)
        status = "interrupted"
        raise
    finally:
        # the final status is written whatever arrives meanwhile (a second Ctrl-C, SIGTERM)
        with signals.swallowed():
            if written[0]:
                codes = _statuses(path)
                counts = {name: int((codes == code).sum())
                          for name, code in STATUS_CODES.items()}
                if status is None:
                    status = "complete" if counts["pending"] == 0 else "failed"
                set_attrs(path, status=status, members_complete=counts["complete"],
                          members_failed=counts["failed"], members_pending=counts["pending"],
                          failures={str(k): v for k, v in sorted(failures.items())})
    errors = {index[k]: f"{type(e).__name__}: {e}" for k, e in report.errors.items()}
    return SweepResult(str(path), sweep.size, report.ran, report.skipped, counts["complete"],
                       counts["failed"], counts["pending"], status, report.wall_time_s,
                       errors, dict(sorted(failures.items())))


def sweep_command(args) -> int:
    """``python -m fhnpde sweep``: exit 0 when every member ran to an end (complete or
    failed numerically, both recorded), 1 when some could not be run (they stay pending
    and a rerun retries them), 2 on bad input, 130 on Ctrl-C."""
    dashboard = getattr(args, "dashboard", False)
    if args.scheduler:  # options of the local cluster mean nothing for an existing one
        for flag, given in (("--workers", args.workers is not None), ("--dashboard", dashboard)):
            if given:
                raise CaseError("applies to the local cluster only, not to the one at "
                                f"--scheduler {args.scheduler}; leave out one of the two",
                                key=flag)
    force = getattr(args, "force", False)
    sweep = load_sweep(args.sweep, force=force, out=args.out)
    if args.workers is not None and args.workers < 1:
        raise CaseError(f"must be >= 1, got {args.workers}", key="--workers")
    result = run_sweep(sweep, out=args.out, scheduler=args.scheduler, workers=args.workers,
                       overwrite=args.overwrite, quiet=args.quiet, dashboard=dashboard,
                       force=force)
    if not args.quiet:
        line = (f"{sweep.spec.name}: {result.members} members ({result.ran} run, "
                f"{result.skipped} already done): {result.complete} complete, "
                f"{result.failed} failed numerically")
        if result.pending:
            line += f", {result.pending} not run"
        print(f"{line} -> {result.path}")
        for i, msg in result.failures.items():
            print(f"  member {i} ({describe_member(sweep.member_values(i))}) failed: {msg}")
    for i, msg in itertools.islice(result.errors.items(), 5):
        print(f"fhnpde: error: member {i} ({describe_member(sweep.member_values(i))}) "
              f"could not be run: {msg}", file=sys.stderr)
    return 0 if result.pending == 0 else 1
