"""Members per minute of a sweep on 2 local dask workers against one process, one by one.

The members are those of ``cases/sweep_threshold.yaml`` (the divergent case over Nagumo
``a`` x Gaussian amplitude), refined so that each takes a few seconds: ``domain.nx``
3201 (dx 0.0625) and ``time.dt`` 0.0002 (under the explicit limit 0.00195), 1.5 million
steps of 3,201 nodes. Three comparisons per repeat, in one run:

- **end to end** (what a user waits for): ``python -m fhnpde sweep SWEEP --workers 2`` in a
  fresh process (validation, LocalCluster start, workers' imports and kernel loading, the
  template store, the tasks) against a fresh process that writes the template store and
  runs :func:`fhnpde.sweep.run_member` for every member one after another (imports and
  kernel loading once). The numba cache on disk is warm for both, as after a first run.
- **tasks on a running cluster** (strict): :func:`fhnpde.sweep.run_sweep` on a LocalCluster
  started beforehand (``fhnpde.cluster.local_cluster``, as ``run_sweep`` starts it), whose
  fresh workers still pay their imports and kernel loading, against the members run in
  this process *warm* (after one warm-up member), so the serial side pays no start-up;
  then once more on the same workers, now warm too (a cluster that has run a sweep before):
  the steady-state members per minute of both.
- **the machine's ceiling** (no dask): two plain processes, warmed up, each running half of
  the members one by one. What separates it from 2.0x is the hardware (two busy vCPUs run
  a member slower than one busy vCPU); what separates the dask rows from it is dask's.

Reports members per minute and the ratios; medians over repeats. Target: ratio >= 1.8 on a
2-core machine (the work is independent; what is lost is the workers' start-up, the store
writes and the scheduler's round trips).

    python benchmarks/sweep.py [--members 16] [--repeats 3] [--nx 3201] [--dt 0.0002]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from fhnpde.sweep import load_sweep, prepare_store, run_member, run_sweep, warm_worker

ROOT = Path(__file__).resolve().parents[1]


def write_sweep(folder: Path, members: int, nx: int, dt: float, t_end: float) -> Path:
    amps = [0.2, 0.3, 0.4, 0.6]
    n_a = max(1, members // len(amps))
    a_values = [round(0.02 + 0.09 * k / max(1, n_a - 1), 4) for k in range(n_a)]
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


SERIAL_SCRIPT = """
import sys
from pathlib import Path
from fhnpde.sweep import load_sweep, prepare_store, run_member
sweep = load_sweep(sys.argv[1])
store = Path(sys.argv[2])
prepare_store(sweep, store, overwrite=True)
for i, case in enumerate(sweep.cases):
    run_member(str(store), i, case, 0.3, None, False)
"""


def cold(command: list[str]) -> float:
    """Wall time of a fresh process (which must succeed)."""
    t0 = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - t0


def on_dask(path: Path, store: Path, workers: int) -> tuple[float, float]:
    """run_sweep on a LocalCluster started beforehand (its start is not timed): on its fresh
    workers, then again (into another store) on the same, now warm, workers."""
    from distributed import Client

    from fhnpde.cluster import local_cluster

    cluster = local_cluster(workers, {"NUMBA_NUM_THREADS": "1"})
    client = Client(cluster)
    client.wait_for_workers(workers)
    walls = []
    for k in range(2):
        t0 = time.perf_counter()
        result = run_sweep(path, out=store.with_name(f"{store.stem}{k}.zarr"),
                           scheduler=cluster.scheduler_address, overwrite=True)
        walls.append(time.perf_counter() - t0)
        assert result.complete == result.members, result
    client.close()
    cluster.close()
    return walls[0], walls[1]


def _run_members(store: str, cases: list, indices: list[int]) -> float:
    t0 = time.perf_counter()
    for i in indices:
        run_member(store, i, cases[i], 0.3, None, False)
    return time.perf_counter() - t0


def plain_processes(sweep, store: Path, workers: int) -> float:
    """Template store + the members split over ``workers`` warmed-up plain processes."""
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=warm_worker,
                             initargs=(sweep.cases[0],)) as pool:
        # start every process and let it warm up before the clock starts
        list(pool.map(time.sleep, [0.5] * workers))
        t0 = time.perf_counter()
        prepare_store(sweep, store, overwrite=True)
        parts = [list(range(k, sweep.size, workers)) for k in range(workers)]
        list(pool.map(_run_members, [str(store)] * workers, [sweep.cases] * workers, parts))
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=16,
                    help="a multiple of 4 (the real threshold sweep has 143)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--nx", type=int, default=3201)
    ap.add_argument("--dt", type=float, default=0.0002)
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
            e2e_serial = cold([sys.executable, "-c", SERIAL_SCRIPT, str(path),
                               str(folder / "cold_serial.zarr")])
            e2e_dask = cold([sys.executable, "-m", "fhnpde", "sweep", str(path), "--workers",
                             str(args.workers), "--out", str(folder / "cold_dask.zarr"),
                             "--overwrite", "--quiet"])
            t_serial = serial(sweep, folder / "serial.zarr")
            t_fresh, t_warm = on_dask(path, folder / "dask.zarr", args.workers)
            t_plain = plain_processes(sweep, folder / "plain.zarr", args.workers)
            rows.append((e2e_serial, e2e_dask, t_serial, t_fresh, t_warm, t_plain))
            print(f"repeat {r}: end to end: one process {e2e_serial:.2f} s, fhnpde sweep "
                  f"{e2e_dask:.2f} s, ratio {e2e_serial / e2e_dask:.2f} | running cluster: "
                  f"warm serial {t_serial:.2f} s, fresh workers {t_fresh:.2f} s, ratio "
                  f"{t_serial / t_fresh:.2f}; warm workers {t_warm:.2f} s, ratio "
                  f"{t_serial / t_warm:.2f} | plain processes {t_plain:.2f} s, ratio "
                  f"{t_serial / t_plain:.2f}", flush=True)
    med = [statistics.median(r[k] for r in rows) for k in range(6)]
    ratio_e2e = statistics.median(r[0] / r[1] for r in rows)
    ratio_fresh = statistics.median(r[2] / r[3] for r in rows)
    ratio_warm = statistics.median(r[2] / r[4] for r in rows)
    ratio_plain = statistics.median(r[2] / r[5] for r in rows)
    print(f"\n{n} members of {med[2] / n:.2f} s each (warm, serial), {args.workers} workers, "
          f"median of {args.repeats}:")
    print("| mode | wall s | members / min |")
    print("| --- | --- | --- |")
    print(f"| end to end: one fresh process, one by one | {med[0]:.2f} | {60 * n / med[0]:.1f} |")
    print(f"| end to end: python -m fhnpde sweep --workers {args.workers} | {med[1]:.2f} | "
          f"{60 * n / med[1]:.1f} |")
    print(f"| warm process, one by one | {med[2]:.2f} | {60 * n / med[2]:.1f} |")
    print(f"| run_sweep on a running {args.workers}-worker cluster, fresh workers | "
          f"{med[3]:.2f} | {60 * n / med[3]:.1f} |")
    print(f"| run_sweep on a running {args.workers}-worker cluster, warm workers | "
          f"{med[4]:.2f} | {60 * n / med[4]:.1f} |")
    print(f"| {args.workers} warm plain processes, no dask (the machine's ceiling) | "
          f"{med[5]:.2f} | {60 * n / med[5]:.1f} |")
    print(f"ratios (median of per-repeat ratios; target >= 1.8x): end to end {ratio_e2e:.2f}x; "
          f"against a warm process: fresh workers {ratio_fresh:.2f}x, warm workers "
          f"{ratio_warm:.2f}x; the machine's ceiling (plain processes) {ratio_plain:.2f}x")


if __name__ == "__main__":
    main()
