"""Tridiagonal solvers side by side: Thomas (numba) and cyclic reduction (numpy) against
LAPACK gtsv through scipy, plus a STREAM-style triad to put Thomas's bandwidth in context.

    python benchmarks/tridiagonal.py [--quick]

Every number is the median of several timed repeats after one warm-up call (so numba's
compilation is excluded). Unknowns per second = systems * n / time. gtsv is called the way a
scipy user would: ``scipy.linalg.lapack.dgtsv(dl, d, du, b)`` (f2py copies its inputs),
looped in Python over a batch. Thomas and cyclic reduction go through the public
``fhnpde.tridiagonal.solve`` (validation and broadcasting included).

Bandwidth: Thomas must at least read lower, diag, upper, rhs and write x (5 arrays) and it
writes and reads one scratch vector (2 more): 7 * n * 8 bytes in float64. The triad
``a = b + s * c`` (numba, parallel over all cores, arrays far larger than the caches) moves
3 * N * 8 bytes (STREAM's count, without write-allocate traffic). It is measured twice: on
all cores (the target's reference) and on one core, since one system's sweep is a chain of
dependent rows that runs on one core and can draw only what one core can.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numba  # noqa: E402
from scipy.linalg import lapack  # noqa: E402
from triad import triad  # noqa: E402

from fhnpde import tridiagonal as td  # noqa: E402


def timed(fn, repeats: int, *args, **kwargs) -> float:
    """Median wall time of fn(*args, **kwargs) over `repeats` calls, after one warm-up call."""
    fn(*args, **kwargs)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def system(rng, shape, n):
    lower = rng.uniform(-1, 1, shape + (n,))
    upper = rng.uniform(-1, 1, shape + (n,))
    diag = np.abs(lower) + np.abs(upper) + rng.uniform(0.5, 1.5, shape + (n,))
    rhs = rng.standard_normal(shape + (n,))
    return lower, diag, upper, rhs


@numba.njit
def _triad_one_core(a, b, c, s):
    for i in range(a.shape[0]):
        a[i] = b[i] + s * c[i]


def triad_bandwidth(n: int, repeats: int, kernel=triad) -> float:
    """STREAM triad a = b + s c, bytes/s counted as 3 * n * 8."""
    a = np.zeros(n)
    b = np.ones(n)
    c = np.full(n, 2.0)
    t = timed(kernel, repeats, a, b, c, 3.0)
    return 3 * n * 8 / t


def gtsv_loop(dl, diag, du, rhs) -> None:
    """LAPACK gtsv on each system of a batch, one scipy call each."""
    for j in range(diag.shape[0]):
        lapack.dgtsv(dl[j], diag[j], du[j], rhs[j])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    sizes = [10**3, 10**4, 10**5, 10**6] + ([] if args.quick else [10**7])

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"numba {numba.__version__} ({numba.get_num_threads()} threads), numpy {np.__version__}"
    )
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    triad = triad_bandwidth(1 << 25, 10)  # 3 x 256 MiB
    triad_1 = triad_bandwidth(1 << 25, 10, _triad_one_core)
    print(f"STREAM triad (numba, 3 x 256 MiB): {triad / 1e9:.1f} GB/s on all cores, "
          f"{triad_1 / 1e9:.1f} GB/s on one\n")

    head = (
        f"{'n':>10} {'gtsv':>9} {'thomas':>9} {'th.fact':>9} {'cyc.red':>9} "
        f"{'thomas/gtsv':>12} {'cr/gtsv':>8} {'thomas GB/s':>12} {'of triad':>9} "
        f"{'of 1-core triad':>15}"
    )
    print("one system, float64, unknowns/s in millions (th.fact: factorize once, solve timed)")
    print(head)
    for n in sizes:
        lower, diag, upper, rhs = system(rng, (), n)
        reps = max(3, min(50, int(3e7 // n)))
        dl, du = lower[1:].copy(), upper[:-1].copy()
        t_gtsv = timed(lapack.dgtsv, reps, dl, diag, du, rhs)
        t_thomas = timed(td.solve, reps, lower, diag, upper, rhs)
        fact = td.factorize(lower, diag, upper)
        t_fact = timed(fact.solve, reps, rhs)
        t_cr = timed(
            td.solve, max(3, reps // 4), lower, diag, upper, rhs, method="cyclic-reduction"
        )
        bw = 7 * n * 8 / t_thomas
        frac = (f"{bw / triad:9.0%} {bw / triad_1:15.0%}" if n >= 10**6
                else f"{'':9} {'':15}")
        print(
            f"{n:>10} {n / t_gtsv / 1e6:9.1f} {n / t_thomas / 1e6:9.1f} {n / t_fact / 1e6:9.1f} "
            f"{n / t_cr / 1e6:9.1f} {t_gtsv / t_thomas:12.2f} {t_gtsv / t_cr:8.2f} "
            f"{bw / 1e9:12.2f} {frac}"
        )

    print(
        f"\nbatches, float64 ({numba.get_num_threads()} threads for Thomas; gtsv looped over "
        "the batch), unknowns/s in millions"
    )
    print(
        f"{'systems x n':>14} {'gtsv':>9} {'thomas':>9} {'cyc.red':>9} {'thomas/gtsv':>12} "
        f"{'cr/gtsv':>8}"
    )
    batches = [(4096, 1024), (256, 16384)] + ([] if args.quick else [(65536, 64)])
    for nsys, n in batches:
        lower, diag, upper, rhs = system(rng, (nsys,), n)
        dl, du = lower[:, 1:].copy(), upper[:, :-1].copy()

        t_gtsv = timed(gtsv_loop, 3, dl, diag, du, rhs)
        t_thomas = timed(td.solve, 10, lower, diag, upper, rhs)
        t_cr = timed(td.solve, 3, lower, diag, upper, rhs, method="cyclic-reduction")
        u = nsys * n
        print(
            f"{f'{nsys} x {n}':>14} {u / t_gtsv / 1e6:9.1f} {u / t_thomas / 1e6:9.1f} "
            f"{u / t_cr / 1e6:9.1f} {t_gtsv / t_thomas:12.2f} {t_gtsv / t_cr:8.2f}"
        )
    print(
        f"\nload average at end: {os.getloadavg()[0]:.2f} (other work on the machine skews timings)"
    )


if __name__ == "__main__":
    main()
