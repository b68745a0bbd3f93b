"""Running a sweep: one dask task per member (:func:`run_member`, on the workers), the
client's loop over them (:func:`run_sweep`) and the ``python -m fhnpde sweep`` command."""

from __future__ import annotations

import hashlib
import itertools
import os
import sys
import time as _time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..case import Case, CaseError
from .spec import Sweep, describe_member, load_sweep
from .store import (
    STATUS_CODES,
    SUMMARY_VARIABLES,
    check_store,
    member_statuses,
    open_attrs,
    variable_dtype,
    write_region,
    write_template,
)
from .summaries import CableSummary, FieldRecorder, PointSummary, SheetSummary


def warm_worker(case: Case) -> None:
    """Load what a member needs (modules, compiled kernels) by building its solver and
    taking one step, so the first member on a fresh worker does not pay for it. Run on every
    worker at start-up (see :func:`fhnpde.cluster.run_tasks`)."""
    import zarr  # noqa: F401  (the region writes)

    from ..driver import build_solver

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
    from ..driver import BlowUpGuard, build_solver, integrate, output_times

    wall0 = _time.perf_counter()
    problem, solver = build_solver(case)
    summary = (SheetSummary(threshold) if problem.is_sheet
               else CableSummary(threshold, edge) if problem.is_cable
               else PointSummary(threshold))
    observers = [BlowUpGuard(), summary]
    if keep_fields:
        t = case.time
        n_out = len(output_times(t.n_steps, t.steps_per_output, t.dt))
        recorder = FieldRecorder(n_out, problem.grid.shape if problem.is_cable
                                 else (problem.size,))
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
    variables = {name: np.asarray([values[name]], dtype=variable_dtype(name))
                 for name in SUMMARY_VARIABLES}
    if keep_fields:
        for name in ("v", "w"):
            variables[name] = getattr(recorder, name)[None]
    write_region(store, index, variables)
    write_region(store, index, {"status": np.asarray([STATUS_CODES[status]],
                                                      variable_dtype("status"))})
    return {"index": index, "status": status, "message": message, **values}


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
    from ..cluster import max_workers, require_distributed
    from ..resources import check_sweep
    from ..storefs import WriterLock

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
    from .. import signals
    from ..cluster import Task, run_tasks
    from ..store import set_attrs

    done = (member_statuses(path) != STATUS_CODES["pending"] if reuse
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
        attrs = open_attrs(path)
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
                codes = member_statuses(path)
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
