"""Members per minute of a sweep on 2 local dask workers against one process, one by one.

The members are those of ``cases/sweep_threshold.yaml`` (the divergent case over Nagumo
``a`` x Gaussian amplitude), refined so that each takes a few seconds: ``domain.nx``
3201 (dx 0.0625) and ``time.dt`` 0.00125 (under the explicit limit 0.00195), 240,000 steps
of 3,201 nodes. Per repeat, in one run:

- serial: the template store and :func:`fhnpde.sweep.run_member` for every member in this
  process (the same work a worker does, store writes included), timed warm: after one
  warm-up member, so its imports and numba start-up are not counted;
- dask: :func:`fhnpde.sweep.run_sweep` on a LocalCluster of 2 single-threaded worker
  processes started beforehand (task phase: validation, template store, the tasks, and each
  worker's first imports and numba start-up), and the same with the cluster's start-up.

Reports members per minute of each and their ratio; the median over repeats. Target:
ratio >= 1.8 on a 2-core machine (the work is independent; what is lost is the workers'
numba-cache load, the store writes and the scheduler's round trips).

    python benchmarks/sweep.py [--members 8] [--repeats 3] [--nx 3201] [--dt 0.00125]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from fhnpde.sweep import load_sweep, prepare_store, run_member, run_sweep

ROOT = Path(__file__).resolve().parents[1]


def write_sweep(folder: Path, members: int, nx: int, dt: float, t_end: float) -> Path:
    amps = [0.2, 0.3, 0.4, 0.6]
    a_values = [0.02, 0.05, 0.08, 0.11][: max(1, members // len(amps))]
    spec = {
        "name": "bench_sweep",
        "base": str(ROOT / "cases" / "divergent.yaml"),
        "set": {"domain.nx": nx, "time.dt": dt, "time.t_end": t_end},
        "vary": {"model.params.a": {"values": a_values},
                 "initial.v.amplitude": {"values": amps[: members // len(a_values)]}},
    }
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def serial(sweep, store: Path) -> float:
    """Template store + every member, one after another (the store is part of both modes)."""
    t0 = time.perf_counter()
    prepare_store(sweep, store, overwrite=True)
    for i, case in enumerate(sweep.cases):
        run_member(str(store), i, case, 0.3, None, False)
    return time.perf_counter() - t0


def on_dask(path: Path, store: Path, workers: int) -> tuple[float, float]:
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=logging.ERROR,
                           env={"NUMBA_NUM_THREADS": "1"})
    client = Client(cluster)
    client.wait_for_workers(workers)
    t1 = time.perf_counter()
    result = run_sweep(path, out=store, scheduler=cluster.scheduler_address, overwrite=True)
    t2 = time.perf_counter()
    client.close()
    cluster.close()
    assert result.complete == result.members, result
    return t2 - t1, t2 - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--nx", type=int, default=3201)
    ap.add_argument("--dt", type=float, default=0.00125)
    ap.add_argument("--t-end", type=float, default=300.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = write_sweep(folder, args.members, args.nx, args.dt, args.t_end)
        sweep = load_sweep(path)
        n = sweep.size
        # warm-up: numba kernels compiled / loaded from cache in this process
        prepare_store(sweep, folder / "warm.zarr", overwrite=True)
        run_member(str(folder / "warm.zarr"), 0, sweep.cases[0], 0.3, None, False)
        rows = []
        for r in range(args.repeats):
            t_serial = serial(sweep, folder / "serial.zarr")
            t_tasks, t_total = on_dask(path, folder / "dask.zarr", args.workers)
            rows.append((t_serial, t_tasks, t_total))
            print(f"repeat {r}: serial {t_serial:.2f} s, dask tasks {t_tasks:.2f} s, "
                  f"dask incl. cluster start {t_total:.2f} s, ratio {t_serial / t_tasks:.2f} "
                  f"({t_serial / t_total:.2f} incl. start)", flush=True)
    t_serial = statistics.median(r[0] for r in rows)
    t_tasks = statistics.median(r[1] for r in rows)
    t_total = statistics.median(r[2] for r in rows)
    ratio = statistics.median(r[0] / r[1] for r in rows)
    ratio_total = statistics.median(r[0] / r[2] for r in rows)
    print(f"\n{n} members of {t_serial / n:.2f} s each (serial), {args.workers} workers, "
          f"median of {args.repeats}:")
    print("| mode | wall s | members / min |")
    print("| --- | --- | --- |")
    print(f"| one process, one by one | {t_serial:.2f} | {60 * n / t_serial:.1f} |")
    print(f"| dask, {args.workers} workers (tasks) | {t_tasks:.2f} | {60 * n / t_tasks:.1f} |")
    print(f"| dask, incl. cluster start | {t_total:.2f} | {60 * n / t_total:.1f} |")
    print(f"ratio (median of per-repeat ratios): {ratio:.2f}x tasks, {ratio_total:.2f}x "
          "incl. cluster start (target >= 1.8x)")


if __name__ == "__main__":
    main()
