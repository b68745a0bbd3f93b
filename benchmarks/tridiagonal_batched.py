"""Batched factorised tridiagonal solves (the ADI half-step's work) against the triad bandwidth.

    python benchmarks/tridiagonal_batched.py [--repeats 5] [--quick]

One constant matrix (a diffusion operator, ``I - s L``) is factorised once by
``fhnpde.tridiagonal.factorize(..., method="thomas")``; B right-hand sides of n rows are
solved with it, as an ADI half-step does over all rows (or columns) of a sheet:

- ``rows``:      rhs (B, n), systems along the last axis, ``fact.solve(rhs, out=x)``
                 (threads over chunks of systems, four systems interleaved per thread; a
                 result of 16 MiB or more written by non-temporal stores);
- ``rows, new``: the same without ``out=`` (a fresh result array every call: first-touch
                 page faults included);
- ``columns``:   rhs (n, B), systems along axis -2 (the columns of a C-order array),
                 ``fact.solve(rhs, axis=-2, out=x)``: the sweep runs down the rows,
                 vectorised over the columns, with no transposed copy;
- ``T+solve+T``: the columns the other way, ``solve(rhs.T).T`` copied back to C order.

Bytes counted per unknown: read rhs, write x = 16 (the factors, 3 n doubles, stay in cache;
no write-allocate counted, as for the triad ``a = b + s c``, 24 bytes per element, numba
threaded, 2^25 doubles, measured in the same run before and after). Every figure is the
median of ``--repeats`` timings, each of four calls in a row after an untimed one (a run
solves back to back; a first parallel call after a pause also wakes the sleeping worker
threads, which the single timed calls of an earlier version charged to every way), the
ways interleaved (each repeat times every way once); the triad is timed the same way.
Target: >= 60 % of the triad.
"""

from __future__ import annotations

import argparse
import os
import statistics

import numba
import numpy as np
from triad import median_time, triad_bandwidth

from fhnpde import tridiagonal as td

BYTES_PER_UNKNOWN = 16


def diffusion_matrix(n: int, s: float = 0.5):
    """``I - s L`` of the mirror-node Laplacian (dx = 1): the matrix of an ADI half-step."""
    lower = np.full(n, -s)
    upper = np.full(n, -s)
    diag = np.full(n, 1.0 + 2.0 * s)
    upper[0] = lower[-1] = -2.0 * s
    return lower, diag, upper


def rates(nsys: int, n: int, repeats: int) -> dict[str, float]:
    """Unknowns per second of each way of solving B = nsys systems of n rows."""
    rng = np.random.default_rng(1)
    fact = td.factorize(*diffusion_matrix(n))
    rows = rng.standard_normal((nsys, n))
    cols = np.ascontiguousarray(rows.T)
    x_rows = np.empty_like(rows)
    x_cols = np.empty_like(cols)
    ways = {
        "rows": lambda: fact.solve(rows, out=x_rows),
        "rows, new": lambda: fact.solve(rows),
        "columns": lambda: fact.solve(cols, axis=-2, out=x_cols),
        "T+solve+T": lambda: np.ascontiguousarray(fact.solve(np.ascontiguousarray(cols.T)).T),
    }
    times = {name: [] for name in ways}
    for fn in ways.values():
        fn()  # compile, first touch
    for _ in range(repeats):  # interleaved; each timing over 4 calls in a row after one
        # untimed call, as a run makes its solves back to back (the first parallel call after
        # a pause also pays for waking the sleeping worker threads)
        for name, fn in ways.items():
            times[name].append(median_time(fn, 1, inner=4, warm=True))
    return {name: nsys * n / statistics.median(t) for name, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="only 512, 2048 and 4096")
    args = ap.parse_args()
    sizes = (512, 2048, 4096) if args.quick else (512, 1024, 2048, 4096)
    print(f"numba {numba.__version__}, threads {numba.get_num_threads()}, {os.cpu_count()} cpus, "
          f"median of {args.repeats}; load average at start {os.getloadavg()[0]:.2f}")
    before = triad_bandwidth(args.repeats)
    table = [(b, n, rates(b, n, args.repeats)) for b in sizes for n in sizes]
    after = triad_bandwidth(args.repeats)
    bw = statistics.median([before, after])
    print(f"STREAM triad: {bw / 1e9:.2f} GB/s (before {before / 1e9:.2f}, after "
          f"{after / 1e9:.2f}); load average at end {os.getloadavg()[0]:.2f}")
    names = list(table[0][2])
    print("fraction of the triad (16 bytes per unknown), and unknowns/s in millions")
    print(f"{'B x n':>12} " + " ".join(f"{name:>16}" for name in names)
          + f" {'columns/T+s+T':>14}")
    for b, n, rate in table:
        cells = " ".join(
            f"{rate[k] * BYTES_PER_UNKNOWN / bw:7.0%} {rate[k] / 1e6:8.0f}" for k in names
        )
        print(f"{f'{b} x {n}':>12} {cells} {rate['columns'] / rate['T+solve+T']:14.2f}")


if __name__ == "__main__":
    main()
