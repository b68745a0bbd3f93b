"""Tridiagonal solvers side by side: Thomas (numba) and cyclic reduction (numpy) against
LAPACK gtsv through scipy, plus a STREAM-style triad to put Thomas's bandwidth in context.

    python benchmarks/tridiagonal.py [--quick]

Every number is the median of several timed repeats after one warm-up call (so numba's
compilation is excluded). Unknowns per second = systems * n / time. gtsv is called the way a
scipy user would: ``scipy.linalg.lapack.dgtsv(dl, d, du, b)`` (f2py copies its inputs),
looped in Python over a batch. Thomas and cyclic reduction go through the public
``fhnpde.tridiagonal.solve`` (validation and broadcasting included).

Bandwidth (the byte model): Thomas must at least read lower, diag, upper, rhs and write x
(5 arrays) and it writes and reads one scratch vector (2 more): 7 * n * 8 bytes in float64.
A factorised solve (``th.fact``) reads rhs and two factor vectors in its forward sweep and
writes y into x, then reads the third factor vector and x and writes x in its backward
sweep: also 7 * n * 8 bytes. No write-allocate traffic is counted, as for the triad
``a = b + s * c`` (numba, parallel over all cores, arrays far larger than the caches), which
moves 3 * N * 8 bytes (STREAM's count). The triad is measured twice: on all cores (the
target's reference) and on one core, since one system's sweep is a chain of dependent rows
that runs on one core and can draw only what one core can.

The single-system columns: ``thomas`` (``solve``, a fresh result each call), ``th.out``
(``solve(..., out=x)``, x reused: no first-touch page faults), ``th.fact`` (``factorize``
once, ``fact.solve(rhs, out=x)`` timed: for n >= TWISTED_MIN_ROWS the two-ended factorisation,
two independent chains), ``fact.1`` (the same factors solved by the one-ended forward and
backward sweep, the kernel before: ``thomas._substitute_system``). From
THREADED_HALVES_MIN_ROWS rows on two or more threads, ``th.out`` and ``th.fact`` run the
two halves on two threads; ``th.1t`` and ``fact.1t`` are the same two-ended sweeps on one
thread (the kernels ``thomas._thomas_system`` and ``thomas._substitute_twisted``), so the
table shows what the second thread buys. Their timings are interleaved (each repeat times
every way once).
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
from fhnpde.tridiagonal import thomas  # noqa: E402


def timed(fn, repeats: int, *args, **kwargs) -> float:
    """Median wall time of fn(*args, **kwargs) over `repeats` calls, after one warm-up call."""
    fn(*args, **kwargs)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(ways: dict, repeats: int) -> dict[str, float]:
    """Median wall time of each way, the ways timed in turn within every repeat (after one
    warm-up call each)."""
    for fn in ways.values():
        fn()
    times = {name: [] for name in ways}
    for _ in range(repeats):
        for name, fn in ways.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) for name, v in times.items()}


def single_system_ways(lower, diag, upper, rhs) -> dict:
    """The single-system ways of solving timed side by side (see the module docstring)."""
    dl, du = lower[1:].copy(), upper[:-1].copy()
    fact = td.factorize(lower, diag, upper)
    factors = [f[0] for f in (fact.reciprocal_pivots, fact.scaled_lower, fact.modified_upper)]
    x = np.empty(rhs.shape[-1])
    scratch = np.empty(rhs.shape[-1])
    k = thomas._CONSTANTS[rhs.dtype]
    twisted = fact.twisted or (*factors, 0.0, 0.0)  # below TWISTED_MIN_ROWS: no twisted factors
    serial_twisted = thomas._substitute_twisted if fact.twisted else (
        lambda r, l, cp, am, cm, d, x: thomas._substitute_system(r, l, cp, d, x))
    return {
        "gtsv": lambda: lapack.dgtsv(dl, diag, du, rhs),
        "thomas": lambda: td.solve(lower, diag, upper, rhs),
        "th.out": lambda: td.solve(lower, diag, upper, rhs, out=x),
        "th.1t": lambda: thomas._thomas_system(lower, diag, upper, rhs, x, scratch, k),
        "th.fact": lambda: fact.solve(rhs, out=x),
        "fact.1t": lambda: serial_twisted(*twisted, rhs, x),
        "fact.1": lambda: thomas._substitute_system(*factors, rhs, x),
    }


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
        f"{'n':>10} {'gtsv':>9} {'thomas':>9} {'th.out':>9} {'th.1t':>9} {'th.fact':>9} "
        f"{'fact.1t':>9} {'fact.1':>9} "
        f"{'cyc.red':>9} {'thomas/gtsv':>12} {'th.out GB/s':>12} {'of triad':>9} "
        f"{'of 1-core':>10} {'th.fact GB/s':>13} {'of triad':>9} {'of 1-core':>10}"
    )
    print("one system, float64, unknowns/s in millions")
    print(head)
    for n in sizes:
        lower, diag, upper, rhs = system(rng, (), n)
        reps = max(3, min(50, int(3e7 // n)))
        t = interleaved(single_system_ways(lower, diag, upper, rhs), reps)
        t["cyc.red"] = timed(
            td.solve, max(3, reps // 4), lower, diag, upper, rhs, method="cyclic-reduction"
        )
        rate = {k: n / v / 1e6 for k, v in t.items()}
        cells = ""
        for way in ("th.out", "th.fact"):
            bw = 7 * n * 8 / t[way]
            cells += f" {bw / 1e9:12.2f} " + (f"{bw / triad:9.0%} {bw / triad_1:10.0%}"
                                              if n >= 10**6 else f"{'':9} {'':10}")
        print(
            f"{n:>10} " + " ".join(f"{rate[k]:9.1f}" for k in
                                   ("gtsv", "thomas", "th.out", "th.1t", "th.fact", "fact.1t",
                                    "fact.1", "cyc.red"))
            + f" {t['gtsv'] / t['thomas']:12.2f}" + cells
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
