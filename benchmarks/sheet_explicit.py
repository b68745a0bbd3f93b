"""Throughput of the numba explicit sheet step (five-point stencil) against the machine's
memory bandwidth.

One forward-Euler step of an ``N x N`` sheet (fp64; default N = 2048: 4.2e6 nodes, 168 MB
moved per step) by ``fhnpde.solvers.explicit_numba.sheet_step_parallel`` (contiguous blocks
of rows shared out over numba's threads), beside a STREAM-style triad ``a = b + s * c``
(numba, threaded, 2^25 doubles) measured in the same run, before and after.

Bytes counted (no write-allocate for either, so the two are compared alike):
  sheet step: read v, w, I; write v', w'  -> 40 bytes per node (the rows above and below a
              row are read again from cache: three rows of 2048 doubles are 48 kB)
  triad:      read b, c; write a          -> 24 bytes per element
Target: the step moves its bytes at >= 70 % of the triad's bandwidth.

    python benchmarks/sheet_explicit.py [--n 2048] [--repeats 7]

Measured (2 shared cores, load average 6-7 from other jobs, numba 0.68, 2 threads), three
runs: triad 12.6-13.6 GB/s; serial kernel 3.4-3.6e8 node-updates/s = 100-113 % of the
triad; threaded kernel 1.3-2.2e8 = 40-66 % (two threads on two busy cores wait for each
other at every step's barrier: the target is not shown on this machine). The serial sheet
kernel runs at the cable kernel's speed (1.4e8 each at 4.2e6 nodes, same run).
"""

from __future__ import annotations

import argparse
import statistics

import numba
import numpy as np
from triad import median_time, triad_bandwidth

from fhnpde.backends import kernels

_kernels = kernels()

BYTES_PER_NODE = 40


def step_rate(n: int, repeats: int, kernel) -> float:
    """Node-updates per second of one step of an n x n no-flux sheet (mirror edges)."""
    rng = np.random.default_rng(0)
    v, w, cur = rng.random((n, n)), 0.1 * rng.random((n, n)), np.zeros((n, n))
    out_v, out_w = np.empty_like(v), np.empty_like(w)
    params = (1.0, 0.1, 0.01, 0.5)

    def one():
        kernel(0, v, w, cur, params, 0.01, 1.0, 16.0, 16.0, 1, n - 2, 1, n - 2, out_v, out_w)

    inner = max(1, int(2e7 // (n * n)))
    return n * n / median_time(one, repeats, inner)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2048, help="nodes along each side")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    print(f"numba {numba.__version__}, threads {numba.get_num_threads()}, "
          f"median of {args.repeats} runs")
    bw_before = triad_bandwidth(args.repeats)
    parallel = step_rate(args.n, args.repeats, _kernels.sheet_step_parallel)
    serial = step_rate(args.n, args.repeats, _kernels.sheet_step_serial)
    bw_after = triad_bandwidth(args.repeats)
    bw = statistics.median([bw_before, bw_after])
    print(f"STREAM triad: {bw / 1e9:.2f} GB/s (before {bw_before / 1e9:.2f}, "
          f"after {bw_after / 1e9:.2f})")
    print(f"{'kernel':>10} {'N x N':>11} {'node-updates/s':>15} {'GB/s moved':>11} "
          f"{'of triad':>9}")
    for name, rate in (("threaded", parallel), ("serial", serial)):
        moved = rate * BYTES_PER_NODE
        flag = "  (target >= 70%)" if name == "threaded" else ""
        print(f"{name:>10} {f'{args.n}x{args.n}':>11} {rate:>15.3e} {moved / 1e9:>11.2f} "
              f"{moved / bw:>9.0%}{flag}")


if __name__ == "__main__":
    main()
