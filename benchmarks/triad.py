"""The memory-bandwidth yardstick shared by the throughput benchmarks: a STREAM-style triad
``a = b + s * c`` (numba, threaded; read b, c, write a = 24 bytes per element, no
write-allocate counted) and the median timing the benchmarks use.

Imported by the scripts of this folder (``python benchmarks/x.py`` puts the folder on
``sys.path``): ``from triad import median_time, triad_bandwidth``.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
from numba import njit, prange

BYTES_PER_TRIAD = 24


@njit(parallel=True, cache=True)
def triad(a, b, c, s):
    for i in prange(a.shape[0]):
        a[i] = b[i] + s * c[i]


def median_time(fn, repeats: int, inner: int = 1, warm: bool = True) -> float:
    """Median over ``repeats`` of the seconds one call of ``fn`` takes, each timing over
    ``inner`` calls; ``warm``: one unmeasured call first (compilation, page faults)."""
    if warm:
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times)


def triad_bandwidth(repeats: int, n: int = 2**25, inner: int = 3) -> float:
    """Bytes per second of the triad on ``n`` doubles (median of ``repeats`` timings)."""
    rng = np.random.default_rng(0)
    a, b, c = np.empty(n), rng.random(n), rng.random(n)
    return BYTES_PER_TRIAD * n / median_time(lambda: triad(a, b, c, 3.0), repeats, inner)
