"""Throughput of the numba explicit cable step against the machine's memory bandwidth.

Prints, for N = 1e3 .. 1e7 nodes (fp64), node-updates per second of one forward-Euler
step (``fhnpde.solvers.explicit_numba.explicit_step_kernel``: the serial kernel below
262,144 nodes, the threaded one above) and the bytes per second it moves, beside a
STREAM-style triad ``a = b + s * c`` (numba, threaded, arrays of 2^25 doubles) measured in
the same run.

Bytes counted (no write-allocate for either, so the two are compared alike):
  explicit step: read v, w, I; write v', w'  -> 40 bytes per node
  triad:         read b, c; write a          -> 24 bytes per element
Target: at N >= 4e6 the step moves its bytes at >= 70 % of the triad's bandwidth.

    python benchmarks/explicit_step.py [--repeats 7]
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


def step_rate(n: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    v, w, cur = rng.random(n), 0.1 * rng.random(n), np.zeros(n)
    out_v, out_w = np.empty(n), np.empty(n)
    kernel = _kernels.explicit_step_kernel(n)
    params = (1.0, 0.1, 0.01, 0.5)

    def one():
        kernel(0, v, w, cur, params, 0.01, 1.0, 16.0, 1, n - 2, out_v, out_w)

    inner = max(1, int(2e7 // n))
    return n / median_time(one, repeats, inner)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    print(f"numba {numba.__version__}, threads {numba.get_num_threads()}, "
          f"median of {args.repeats} runs")
    bw_before = triad_bandwidth(args.repeats)
    rows = []
    for n in (1_000, 10_000, 100_000, 1_000_000, 4_000_000, 10_000_000):
        rows.append((n, step_rate(n, args.repeats)))
    bw_after = triad_bandwidth(args.repeats)
    bw = statistics.median([bw_before, bw_after])
    print(f"STREAM triad: {bw / 1e9:.2f} GB/s (before {bw_before / 1e9:.2f}, "
          f"after {bw_after / 1e9:.2f})")
    print(f"{'N':>10} {'node-updates/s':>15} {'GB/s moved':>11} {'of triad':>9}")
    for n, rate in rows:
        moved = rate * BYTES_PER_NODE
        flag = "  (target >= 70%)" if n >= 4_000_000 else ""
        print(f"{n:>10.0e} {rate:>15.3e} {moved / 1e9:>11.2f} {moved / bw:>9.0%}{flag}")


if __name__ == "__main__":
    main()
