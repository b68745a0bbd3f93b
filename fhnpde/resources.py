"""How much memory and disk a run or a sweep will take, estimated before anything runs.

Everything here reads the validated case (or sweep file) alone and allocates nothing of the
run's size, so a case asking for 10^12 nodes or 10^10 outputs is refused in milliseconds
with one :class:`~fhnpde.case.CaseError` (exit 2) instead of a ``MemoryError`` traceback,
an OOM kill, or a disk filled half-way through a run.

**Memory** (the peak of the process, bytes): a cable or point ensemble holds a number of
float64 arrays over its nodes (members)::

    memory = LIBRARIES + RUNTIME + 8 * size * arrays + store buffer + 16 * outputs (+ extras)

- ``arrays`` per node (cable) = 5 + stimuli (x, v0, w0, the current's base and value, one
  mask per stimulus box) + 2 (the state the loop holds) + the solver's work arrays
  (:data:`CABLE_WORK`) + :data:`UNTRACKED`;
- ``arrays`` per member (point) = varied inputs + 3 (v0, w0, current base) + the kinetics'
  parameters (stacked per member by the point solvers) + 1 (the store's ``member``
  coordinate) + 2 (state) + :data:`POINT_WORK` + :data:`UNTRACKED`;
- the store writer's buffer is ``chunk`` outputs x size x 2 variables x 8 bytes
  (:class:`fhnpde.store.StoreWriter`), counted twice: the buffer and the copy in which
  :mod:`fhnpde.zarrfiles` assembles one variable's chunk that is written in part;
- the output times: ``driver.output_times`` and the writer's own count of them, 8 bytes
  per output each.

The work factors are the arrays each solver holds at its peak beyond the state it was
handed, counted from the code and checked with tracemalloc on cables of 2,000,001 nodes and
ensembles of 2,000,000 members (``tracemalloc`` peak of ``run_case`` divided by 8 bytes x
size agrees with the formula to within one array for every solver and backend). The
resident-set peak exceeds tracemalloc's count by 1 to 3.5 arrays per node (allocations
inside compiled numba code and zarr's codecs, which tracemalloc does not see; allocator
slack; :data:`UNTRACKED`) and by a part that does not grow with the size
(:data:`RUNTIME`: the arenas of numba's threads, zarr's buffers). With the modules loaded,
the resident-set peak of ``run_case`` at 10^6 nodes or members measured 0.73-0.86 times
``memory - LIBRARIES`` on cables and 0.85-0.93 on point ensembles, over the solvers and
backends of ``tests/test_resources.py`` (which holds it to 0.67-1.1). :data:`LIBRARIES`
is what the modules a run loads (numba, zarr, scipy) add to a fresh process.

**Disk** (bytes): every array of the store (``v``, ``w``, ``time``, coordinates and the
adaptive solver's ``active_nodes``/``active_mask``), ``data_bytes`` being the sum of their
``nbytes`` (what ``xarray.open_zarr(path).nbytes`` reports) and ``disk`` the upper bound of
what the store takes: every chunk file at its full chunk size (edge chunks are stored
whole) rounded up to the file system's block, plus the metadata. A run store's chunks are
not compressed (:mod:`fhnpde.zarrfiles`: raw bytes and a 4-byte checksum), so a run's store
takes about this; a sweep store's are (zarr's default codec) and are usually smaller.

**Sweeps** (:func:`estimate_sweep`): the client holds per member its validated case, its
task, its share of the template's task graph and of the scheduler's state
(:data:`CLIENT_PER_MEMBER`, measured 31 KB) and builds one member at a time to check it;
each local worker holds :data:`WORKER_BASE` and one member's run (without the store
writer; with ``keep: fields`` the member's whole v, w history). The store holds the
per-member summaries in chunks of one member, one file each, and with ``keep: fields``
every member's v, w. Members' sizes (nodes, outputs) are taken as the largest over the
corners of the varied values.

Available memory is ``MemAvailable`` of ``/proc/meminfo`` (else ``os.sysconf``), lowered
to what a cgroup's memory limit leaves; free disk is :func:`shutil.disk_usage` of the
nearest existing folder of the output path. The check (:func:`check_run`,
:func:`check_sweep`) refuses an estimate above either unless forced (``--force``), and
notes on stderr an output above :data:`LARGE_OUTPUT` that fits.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .case import Case, CaseError

__all__ = [
    "CABLE_WORK",
    "SHEET_WORK",
    "POINT_WORK",
    "Estimate",
    "available_memory",
    "check_run",
    "check_sweep",
    "estimate_run",
    "estimate_sweep",
    "free_disk",
    "human_bytes",
    "n_outputs",
    "sweep_members",
]

KiB, MiB, GiB = 2**10, 2**20, 2**30
F8 = 8  # bytes of a float64

#: Work arrays per node of each cable solver, beyond the state it is handed, by backend
#: kind ("numba": compiled kernels; "array": numpy/cupy array code), at the solver's peak.
CABLE_WORK: dict[str, dict[str, int]] = {
    # numba: v, w copies and the two output buffers of the kernel, plus the current and
    # the blow-up guard's masks; array code: neighbours, Laplacian and reaction temporaries.
    "explicit": {"numba": 5, "array": 8},
    # the CN diffusion's bands and factorisation (3), two half-steps' right-hand sides and
    # solutions, and the reaction step's outputs (numba) or RK4 stages (array code).
    "split": {"numba": 12, "array": 17},
    # the Laplacian's bands and -(dt/2) D L's (6), out buffers and the fused kernel's
    # Newton work (residual, Jacobian, Thomas's sweep) or the array code's temporaries.
    "crank-nicolson": {"numba": 20, "array": 24},
    # the same bands (6), out buffers and the kernel's current, matrix diagonal, right-hand
    # side, solution and corner vectors (numba) or the array code's temporaries.
    "staggered-cn": {"numba": 15, "array": 17},
    # the same bands (6), out buffers, the kernel's stage work (known part, w's map, current,
    # guess, K1 of v and w, the last slope, 6 rows of Newton and Thomas scratch), or the
    # array code's stages and temporaries.
    "sdirk3": {"numba": 21, "array": 30},
    # with every node active (the worst case): the compact active arrays, spacings,
    # interpolation to the base grid (its positions, offsets and one row's temporaries,
    # the peak of the numba path) and the choice of the active set (the array form's
    # v_x, v_xx, v_t, strides and interval counts; the compiled form's need, v_x, v_xx,
    # 4 arrays allocated inside compiled code, which tracemalloc does not see).
    "adaptive": {"numba": 17, "array": 19},
}

#: Work arrays per node of each sheet solver (as :data:`CABLE_WORK`). Measured with
#: tracemalloc on 1001 x 1001 sheets against 1,002,001-node cables: the numba path holds
#: what the cable's does (one array less: the sheet has no per-node x), the array path 3
#: more (the neighbours below and above, and the second direction's difference).
SHEET_WORK: dict[str, dict[str, int]] = {
    "explicit": {"numba": 5, "array": 11},
    # ADI split (main's, measured on 1001 x 1001 sheets: 12.5 and 19.0 arrays per node in
    # all, the same count as explicit's 10.1 and 17.0 in all with these factors)
    "split": {"numba": 6, "array": 13},
}

#: Work arrays per member of each point solver, beyond the state it is handed.
POINT_WORK: dict[str, dict[str, int]] = {
    "euler": {"numba": 2, "array": 7},
    "rk4": {"numba": 2, "array": 14},
    "crank-nicolson": {"numba": 8, "array": 31},
}

#: Arrays per node that the resident set holds beyond tracemalloc's count (measured 1-3.5).
UNTRACKED = 3
#: Modules a run imports as it goes (numba, zarr, scipy): measured 130-195 MiB with
#: numba, under 20 MiB without.
LIBRARIES = 224 * MiB
#: What a run adds that does not grow with its size (numba's thread arenas, zarr's codec
#: buffers): measured 25-40 MiB.
RUNTIME = 32 * MiB
#: Client memory per sweep member (case, task, template graph, scheduler state), measured
#: 31 KB at 1,200 members (6.7 KB the validated cases, 24 KB during run_sweep).
CLIENT_PER_MEMBER = 48 * KiB
#: A local worker process and its nanny with fhnpde, numba and zarr loaded (measured 255 MiB).
WORKER_BASE = 256 * MiB
#: Extra per-output variables of a solver: name -> (bytes per output per node, per output).
EXTRAS: dict[str, dict[str, tuple[int, int]]] = {
    "adaptive": {"active_nodes": (0, 8), "active_mask": (1, 0)},
}
#: Store metadata (zarr.json files, the case as YAML) allowance.
METADATA = 64 * KiB
#: An output above this gets a note on stderr even when it fits.
LARGE_OUTPUT = 1 * GiB
#: Bytes per output of a sweep member's summary lists (times and reach as Python floats).
SUMMARY_PER_OUTPUT = 64
#: Bytes per member of the sweep's summary variables: status, propagated (int8), pulses
#: (int32), steps (int64), speed, t_arrival, t_reached, wall_time_s (float64).
SWEEP_SUMMARY = {"status": 1, "propagated": 1, "pulses": 4, "speed": 8, "t_arrival": 8,
                 "t_reached": 8, "steps": 8, "wall_time_s": 8}


@dataclass
class Estimate:
    """What a run or sweep will take: memory (bytes, peak) and its store on disk (bytes).

    ``disk`` is the uncompressed upper bound (full chunks, block-rounded files, metadata);
    ``data_bytes`` the sum of the stored arrays' ``nbytes``. ``memory_parts`` names where
    the memory goes; ``key``/``fix`` say which input to change when it does not fit.
    """

    what: str
    memory: int
    disk: int
    data_bytes: int
    memory_parts: dict[str, int] = field(default_factory=dict)
    memory_key: str | None = None
    memory_fix: tuple[str, ...] = ()
    disk_fix: tuple[str, ...] = ()


# --- counting --------------------------------------------------------------------------------


def n_outputs(time) -> int:
    """Number of outputs of a case's ``time`` spec: ``len(driver.output_times(...))``."""
    n, per = time.n_steps, time.steps_per_output
    return -(-n // per) + 1


def _nodes(domain) -> int:
    nx = domain.nx
    return math.prod(nx) if isinstance(nx, list | tuple) else int(nx)


def _vary_counts(vary: Mapping[str, Any], points: int) -> list[int]:
    """Number of values along each varied key of a grid: a list's length, else ``points``
    (1 for a range whose ends are equal)."""
    counts = []
    for spec in vary.values():
        if isinstance(spec, list | tuple):
            counts.append(1 if spec[0] == spec[1] else points)
        else:
            counts.append(len(spec.values))
    return counts


def ensemble_members(case: Case) -> int:
    """Members of a point case: ``ensemble.size``, or the grid's product (1 without one)."""
    ens = case.ensemble
    if ens is None:
        return 1
    if ens.sample == "grid" and ens.size is None:
        return math.prod(_vary_counts(ens.vary, ens.points))
    return int(ens.size)  # a grid whose size differs from its product is refused later


def sweep_members(spec) -> int:
    """Members of a sweep, from its validated spec alone (no values built)."""
    if spec.sample == "grid" and spec.size is None:
        return math.prod(_vary_counts(spec.vary, spec.points))
    return int(spec.size)


def _store_chunk(size: int, outputs: int, chunk_mb: float) -> int:
    """Outputs per chunk of the store writer: the rule of :class:`fhnpde.store.StoreWriter`."""
    chunk = max(1, int(chunk_mb * 2**20 // (F8 * size * 2)))
    return min(chunk, max(1, outputs))


def _roundup(n: int, block: int) -> int:
    return -(-n // block) * block


def _chunked(length: int, chunk: int, chunk_bytes: int, block: int) -> int:
    """Disk of an array split into ``ceil(length / chunk)`` files of ``chunk_bytes`` each
    (edge chunks stored whole), each file rounded up to ``block`` after the codec's
    header (a few bytes per 128 KiB of incompressible data)."""
    files = -(-length // chunk) if length else 0
    return files * _roundup(chunk_bytes + chunk_bytes // 1024 + 64, block)


def _coordinate(nbytes: int, block: int) -> int:
    """Disk of a coordinate: one chunk file (a run store's) or zarr's automatic chunks (a
    sweep store's, one file per MiB at most); the larger of the two is counted."""
    return _roundup(nbytes, block) + block * (1 + nbytes // MiB)


def _kind(case: Case) -> str:
    s = case.solver
    if s.backend != "numba":
        return "array"
    if case.is_cable and s.method == "crank-nicolson" and s.tridiagonal != "thomas":
        return "array"  # only numba + thomas runs the fused kernel
    return "numba"


def _work(table: dict[str, dict[str, int]], method: str, kind: str) -> int:
    """A solver's work arrays; a solver missing from the table (a newly registered one)
    gets the largest factor of its geometry, until it is measured."""
    if method in table:
        return table[method][kind]
    return max(f[kind] for f in table.values())


def _n_params(case: Case) -> int:
    from .models import family

    return len(family(case.model.kinetics).params)


def estimate_run(case: Case, *, store: bool = True, block: int = 4096) -> Estimate:
    """Memory and disk of running ``case`` (with ``store``: into a store, as ``run``)."""
    outputs = n_outputs(case.time)
    method, kind = case.solver.method, _kind(case)
    times = 2 * F8 * outputs
    if case.is_cable:
        size = _nodes(case.domain)
        work = SHEET_WORK if case.is_sheet else CABLE_WORK
        arrays = 5 + len(case.stimuli) + 2 + _work(work, method, kind) + UNTRACKED
        size_key, size_name = "domain.nx", f"{size:,} nodes"
    else:
        size = ensemble_members(case)
        varied = len(case.ensemble.vary) if case.ensemble else 0
        arrays = (varied + 3 + _n_params(case) + 1 + 2 + _work(POINT_WORK, method, kind)
                  + UNTRACKED)
        size_key, size_name = "ensemble.size", f"{size:,} members"
    parts = {size_name: F8 * size * arrays, f"{outputs:,} output times": times}
    extras = EXTRAS.get(method, {}) if case.is_cable else {}
    disk = data = 0
    if store:
        chunk = _store_chunk(size, outputs, case.output.chunk_mb)
        row = F8 * size
        # the buffer of both variables and zarr's encoded copy of one variable's chunk
        parts["store buffer"] = 2 * chunk * row + 2 * chunk * row
        for per_node, per_output in extras.values():
            parts["store buffer"] += 2 * chunk * (per_node * size + per_output)
        data = 2 * outputs * row + F8 * outputs + F8 * size  # v, w, time, x (member)
        disk = (2 * _chunked(outputs, chunk, chunk * row, block)
                + _chunked(outputs, chunk, F8 * chunk, block) + _coordinate(F8 * size, block))
        if not case.is_cable:
            varied = len(case.ensemble.vary) if case.ensemble else 0
            data += varied * F8 * size
            disk += varied * _coordinate(F8 * size, block)
        for per_node, per_output in extras.values():
            nbytes = per_node * size + per_output
            data += outputs * nbytes
            disk += _chunked(outputs, chunk, chunk * nbytes, block)
        disk += METADATA + block * (6 + len(extras))
    memory = LIBRARIES + RUNTIME + sum(parts.values())
    fewer = ("coarsen the grid (domain.nx)" if case.is_cable
             else "run fewer members (ensemble.size, or the grid's points)")
    if parts[f"{outputs:,} output times"] > parts[size_name]:
        key = "time"
        fix = ("shorten the run (time.t_end)", "save less often (time.save_every)")
    else:
        key, fix = size_key, (fewer,)
    disk_fix = ("save less often (time.save_every)", "shorten the run (time.t_end)", fewer)
    return Estimate("the run", memory, disk, data, parts, key, fix, disk_fix)


# --- sweeps ----------------------------------------------------------------------------------


def _member_corners(spec, base: dict, source: str, limit: int = 256) -> list[Case]:
    """Validated member cases at the corners of the varied values (each key's smallest and
    largest value; with more than ``limit`` corners, only the all-smallest and all-largest
    ones), which bound the members' nodes and outputs. Corners that do not validate are
    left out: the members' own validation reports them."""
    from .case import parse_case, set_key_path

    ends = []
    for item in spec.vary.values():
        values = list(item) if isinstance(item, list | tuple) else list(item.values)
        ends.append(sorted({min(values), max(values)}))
    corners = itertools.product(*ends)
    if math.prod(len(e) for e in ends) > limit:
        corners = [tuple(e[0] for e in ends), tuple(e[-1] for e in ends)]
    cases = []
    for corner in corners:
        data = copy.deepcopy(base)
        try:
            for key, value in zip(spec.vary, corner, strict=True):
                set_key_path(data, key, value, source)
            cases.append(parse_case(data, source))
        except CaseError:
            continue
    return cases


def estimate_sweep(spec, base: dict, *, source: str = "<sweep>", workers: int = 0,
                   block: int = 4096) -> Estimate:
    """Memory and disk of a sweep from its validated spec and base case data (with ``set``
    applied): the client's share per member, ``workers`` local workers each running one
    member at a time (0: the workers are elsewhere), and the sweep store."""
    members = sweep_members(spec)
    fields = spec.keep == "fields"
    member_memory, outputs, size = 0, 0, 0
    for case in _member_corners(spec, base, source):
        run = estimate_run(case, store=False, block=block)
        o = n_outputs(case.time)
        s = _nodes(case.domain) if case.is_cable else ensemble_members(case)
        own = run.memory - LIBRARIES - RUNTIME + SUMMARY_PER_OUTPUT * o
        own += 2 * F8 * s * (o if fields else 1)  # FieldRecorder, or the point summary
        member_memory, outputs, size = max(member_memory, own), max(outputs, o), max(size, s)
    varied = len(spec.vary)
    parts = {
        f"{members:,} members on the client": CLIENT_PER_MEMBER * members
        + 2 * F8 * varied * members,
        "checking one member": member_memory,
    }
    if workers:
        parts[f"{workers} local workers"] = workers * (WORKER_BASE + RUNTIME + member_memory)
    data = members * (sum(SWEEP_SUMMARY.values()) + F8 * (1 + varied))
    disk = sum(members * _roundup(b + 64, block) for b in SWEEP_SUMMARY.values())
    disk += (1 + varied) * _coordinate(F8 * members, block)
    if fields and outputs:
        from .store import field_time_chunk

        tchunk = field_time_chunk(outputs, size)
        data += 2 * members * outputs * size * F8 + F8 * (outputs + size)
        disk += 2 * members * _chunked(outputs, tchunk, F8 * tchunk * size, block)
        disk += _coordinate(F8 * outputs, block) + _coordinate(F8 * size, block)
    disk += METADATA + block * 2 * (len(SWEEP_SUMMARY) + varied + 3)
    memory = LIBRARIES + sum(parts.values())
    smaller = "make each member smaller (domain.nx, ensemble.size, time.save_every)"
    fewer = "vary fewer values (points, size or the listed values)"
    if workers and parts[f"{workers} local workers"] >= max(parts.values()):
        key, fix = "--workers", ("use fewer --workers", smaller)
    elif parts["checking one member"] >= max(parts.values()):
        key, fix = "base", (smaller,)
    else:
        key, fix = "vary", (fewer,)
    disk_fix = (fewer,) if not fields else ("use keep: summary", fewer, smaller)
    return Estimate("the sweep", memory, disk, data, parts, key, fix, disk_fix)


# --- what is available -----------------------------------------------------------------------


def _cgroup_room() -> int | None:
    """What this process's cgroup memory limit leaves (None: no limit found)."""
    candidates = []
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            hier, _, rel = line.split(":", 2)
            if hier == "0":  # cgroup v2
                d = Path("/sys/fs/cgroup") / rel.lstrip("/")
                candidates.append((d / "memory.max", d / "memory.current"))
    except (OSError, ValueError):
        pass
    v1 = Path("/sys/fs/cgroup/memory")
    candidates.append((v1 / "memory.limit_in_bytes", v1 / "memory.usage_in_bytes"))
    for limit_file, usage_file in candidates:
        try:
            limit = limit_file.read_text().strip()
            usage = int(usage_file.read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:
            return max(0, int(limit) - usage)
    return None


def available_memory() -> int | None:
    """Bytes of memory a new allocation can get: MemAvailable (else free pages), lowered to
    what a cgroup limit leaves; None when neither can be read."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            avail = None
    room = _cgroup_room()
    if room is not None:
        avail = room if avail is None else min(avail, room)
    return avail


def _existing_parent(path: str | Path) -> Path:
    """The nearest existing folder of ``path`` (a name the system refuses, e.g. too long,
    counts as missing: writing it fails later with its own message)."""
    p = Path(os.path.abspath(path))
    while p != p.parent:
        try:
            if p.exists():
                return p
        except OSError:
            pass
        p = p.parent
    return p


def free_disk(path: str | Path) -> tuple[int | None, int, Path]:
    """(free bytes, block size, folder) of the nearest existing folder of ``path``."""
    where = _existing_parent(path)
    free, block = None, 4096
    if hasattr(os, "statvfs"):  # what shutil.disk_usage reads on POSIX, read once
        try:
            st = os.statvfs(where)
            free, block = st.f_bavail * st.f_frsize, st.f_bsize or 4096
        except OSError:
            pass
    else:
        import shutil

        try:
            free = shutil.disk_usage(where).free
        except OSError:
            pass
    return free, block, where


def human_bytes(n: float) -> str:
    """``n`` bytes in binary units, three significant digits: ``1.5 GiB``, ``167 TiB``."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
    value = float(n)
    for unit in units:
        if abs(value) < 1024 or unit == units[-1]:
            break
        value /= 1024
    if unit == "B":
        return f"{int(n)} B"
    return f"{value:.3g} {unit}" if value < 1e4 else f"{value:.3g} {unit}".replace("e+", "e")


# --- the check -------------------------------------------------------------------------------


def _options(*fixes: str) -> str:
    """``a, b, or c``."""
    return ", ".join(fixes[:-1]) + (", or " if len(fixes) > 2 else " or ") + fixes[-1]


def _stderr_note(message: str) -> None:
    print(f"fhnpde: note: {message}", file=sys.stderr)


def check(estimate: Estimate, path: str | Path | None, *, force: bool = False,
          path_key: str = "output.path", source: str | None = None, notes: bool = True,
          note: Callable[[str], None] = _stderr_note, memory: int | None = None,
          free: int | None = None) -> None:
    """Refuse (CaseError) an estimate above the available memory or the free disk at
    ``path`` unless ``force``; note a store above LARGE_OUTPUT that fits (or is forced).
    ``memory``/``free`` override what is measured (for tests)."""
    avail = available_memory() if memory is None else memory
    if free is None and path is not None:
        free, _, where = free_disk(path)
    else:
        where = _existing_parent(path) if path is not None else None
    too_much = avail is not None and estimate.memory > avail
    too_big = free is not None and path is not None and estimate.disk > free
    what = estimate.what
    if too_much:
        parts = ", ".join(f"{name}: {human_bytes(b)}" for name, b in estimate.memory_parts.items()
                          if b >= estimate.memory / 100)
        text = (f"{what} needs about {human_bytes(estimate.memory)} of memory ({parts}) but "
                f"{human_bytes(avail)} is available; "
                f"{_options(*estimate.memory_fix, 'pass --force to run anyway')}")
        if not force:
            raise CaseError(text, source=source, key=estimate.memory_key)
        if notes:
            note(f"--force: running although {what} needs about "
                 f"{human_bytes(estimate.memory)} of memory and {human_bytes(avail)} is "
                 "available")
    if too_big:
        fixes = _options(*estimate.disk_fix, "write it elsewhere (--out)",
                         "pass --force to run anyway")
        text = (f"the store needs up to {human_bytes(estimate.disk)} (uncompressed) but "
                f"{where} has {human_bytes(free)} free; {fixes}")
        if not force:
            raise CaseError(text, source=source, key=path_key)
        if notes:
            note(f"--force: writing up to {human_bytes(estimate.disk)} (uncompressed) to "
                 f"{path} although {where} has {human_bytes(free)} free")
    elif notes and path is not None and estimate.disk > LARGE_OUTPUT:
        room = f"; {human_bytes(free)} free there" if free is not None else ""
        note(f"the store {path} will take up to {human_bytes(estimate.disk)} "
             f"(uncompressed){room}")


def check_run(case: Case, path: str | Path | None, *, force: bool = False,
              path_key: str = "output.path", **kwargs) -> Estimate:
    """Estimate a run of ``case`` into the store at ``path`` and check it (see :func:`check`)."""
    block = free_disk(path)[1] if path is not None else 4096
    estimate = estimate_run(case, block=block)
    check(estimate, path, force=force, path_key=path_key, **kwargs)
    return estimate


def check_sweep(spec, base: dict, path: str | Path | None, *, workers: int = 0,
                force: bool = False, source: str | None = None, path_key: str = "--out",
                **kwargs) -> Estimate:
    """Estimate a sweep (``workers`` local worker processes; 0 when they run elsewhere)
    into the store at ``path`` and check it (see :func:`check`)."""
    block = free_disk(path)[1] if path is not None else 4096
    estimate = estimate_sweep(spec, base, source=source or "<sweep>", workers=workers,
                              block=block)
    check(estimate, path, force=force, path_key=path_key, source=source, **kwargs)
    return estimate
