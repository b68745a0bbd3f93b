"""numba kernels of the ADI half-step's explicit parts (:class:`fhnpde.solvers.split.
PeacemanRachfordADI` on the numba and numpy backends with method ``thomas``).

``out = v + s * d2 v`` along one direction of a sheet (``(ny, nx)``, C order), written into
a buffer the caller keeps: the array path's temporaries (neighbour copies, products) each
cost a fresh 2 MB array and its page faults at 512 x 512, more than the arithmetic. The
second difference is :func:`fhnpde.grid.second_difference` (registered as jitable by
:mod:`fhnpde.compiled`); the edge rows/columns read their outer neighbour through the ghost
indices. Imported through ``fhnpde.backends.kernels(...)``.
"""

from __future__ import annotations

import numba
from numba import njit, prange

from ..compiled import PARALLEL_MIN_NODES
from ..grid import second_difference


@njit(cache=True)
def explicit_y_rows(v, s, inv_d2, g0, gn, out, lo, hi):
    """Rows lo .. hi-1 of ``out = v + s d2y v`` (the neighbours one row below and above)."""
    ny, nx = v.shape
    for j in range(lo, hi):
        jm = g0 if j == 0 else j - 1
        jp = gn if j == ny - 1 else j + 1
        for i in range(nx):
            out[j, i] = v[j, i] + s * second_difference(v[jm, i], v[j, i], v[jp, i], inv_d2)


@njit(cache=True)
def explicit_x_rows(v, s, inv_d2, g0, gn, out, lo, hi):
    """Rows lo .. hi-1 of ``out = v + s d2x v`` (the neighbours left and right)."""
    nx = v.shape[1]
    for j in range(lo, hi):
        out[j, 0] = v[j, 0] + s * second_difference(v[j, g0], v[j, 0], v[j, 1], inv_d2)
        for i in range(1, nx - 1):
            out[j, i] = v[j, i] + s * second_difference(v[j, i - 1], v[j, i], v[j, i + 1],
                                                        inv_d2)
        out[j, nx - 1] = v[j, nx - 1] + s * second_difference(v[j, nx - 2], v[j, nx - 1],
                                                              v[j, gn], inv_d2)


@njit(cache=True, parallel=True)
def explicit_y_threaded(v, s, inv_d2, g0, gn, out, nchunks):
    ny = v.shape[0]
    for c in prange(nchunks):
        explicit_y_rows(v, s, inv_d2, g0, gn, out, c * ny // nchunks, (c + 1) * ny // nchunks)


@njit(cache=True, parallel=True)
def explicit_x_threaded(v, s, inv_d2, g0, gn, out, nchunks):
    ny = v.shape[0]
    for c in prange(nchunks):
        explicit_x_rows(v, s, inv_d2, g0, gn, out, c * ny // nchunks, (c + 1) * ny // nchunks)


def explicit_half(axis: int, v, s: float, inv_d2: float, ghosts, out) -> None:
    """``out = v + s d2 v`` along ``axis`` (-1: x, -2: y) of the sheet field v (ny, nx);
    threaded over blocks of rows from PARALLEL_MIN_NODES nodes on (with more than one
    numba thread)."""
    g0, gn = ghosts
    ny = v.shape[0]
    if v.size < PARALLEL_MIN_NODES or numba.get_num_threads() == 1:
        rows = explicit_x_rows if axis == -1 else explicit_y_rows
        rows(v, s, inv_d2, g0, gn, out, 0, ny)
    else:
        threaded = explicit_x_threaded if axis == -1 else explicit_y_threaded
        threaded(v, s, inv_d2, g0, gn, out, min(ny, numba.get_num_threads()))
