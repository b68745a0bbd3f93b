"""numba kernels of the ADI half-step (:class:`fhnpde.solvers.split.PeacemanRachfordADI` on
the numba and numpy backends with method ``thomas``).

What the half-step runs: ``implicit_half``, each direction's explicit part ``v + s d2 v``
formed inside its batched Thomas sweep (one pass over the sheet per direction, no rhs
array; see the section below). ``explicit_half`` is the explicit part alone, written into a
buffer the caller keeps (the unfused form, which the tests compare the fused one with); the
array path's temporaries (neighbour copies, products) each cost a fresh 2 MB array and its
page faults at 512 x 512, more than the arithmetic. The second difference is
:func:`fhnpde.grid.second_difference` (registered as jitable by :mod:`fhnpde.compiled`); the
edge rows/columns read their outer neighbour through the ghost indices. Imported through
``fhnpde.backends.kernels(...)``.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from ..compiled import PARALLEL_MIN_NODES
from ..grid import second_difference
from ..tridiagonal.thomas import (
    _JIT,
    _backward_four,
    _forward_four,
    _substitute_system,
    strided_width,
)


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


# -- fused half-steps: the explicit part formed inside the batched Thomas sweep ---------------
#
# One pass instead of two per direction: the right-hand side (I + s L_other) v of a group of
# systems is formed into a small scratch block (in L1) just before the sweep reads it, not
# into a whole-sheet buffer first. The recurrences are those of the factorised Thomas kernels
# (fhnpde.tridiagonal.thomas), the rhs the formula of explicit_y_rows / explicit_x_rows.
# Every kernel here has the Thomas kernels' numba options (_SWEEP = thomas._JIT): numba
# compiles a callee with its caller's fastmath flags (whichever caller compiles it first,
# and caches that), so one set of flags along the whole call chain keeps every result
# independent of the order in which kernels are first compiled. With FMA contraction allowed
# the rhs may round differently from explicit_y_rows / explicit_x_rows (no contraction): the
# fused half-step equals the unfused one (rhs buffer, then solve) to round-off (tested).

_SWEEP = _JIT


@njit(**_SWEEP)
def rhs_y_block(v, s, inv_d2, g0, gn, j, m, out):
    """``out[k] = v[j+k] + s d2y v[j+k]``, k = 0 .. m-1 (the formula of explicit_y_rows)."""
    ny, nx = v.shape
    for k in range(m):
        jj = j + k
        jm = g0 if jj == 0 else jj - 1
        jp = gn if jj == ny - 1 else jj + 1
        for i in range(nx):
            out[k, i] = v[jj, i] + s * second_difference(v[jm, i], v[jj, i], v[jp, i], inv_d2)


@njit(**_SWEEP)
def implicit_x_rows(v, s, inv_d2, g0, gn, r, l, cp, x, lo, hi, scratch):
    """Rows lo .. hi-1 of ``x = (I - s L_x)^{-1} (I + s d2y) v`` (before any ring
    correction), the factorisation (r, l, cp) of ``I - s L_x`` shared by the rows: the rhs of
    four rows at a time into ``scratch`` (4, nx), then four interleaved Thomas sweeps
    forward and back."""
    j = lo
    while j + 4 <= hi:
        rhs_y_block(v, s, inv_d2, g0, gn, j, 4, scratch)
        _forward_four(r, l, scratch, 0, x, j)
        _backward_four(cp, x, j)
        j += 4
    while j < hi:
        rhs_y_block(v, s, inv_d2, g0, gn, j, 1, scratch)
        _substitute_system(r, l, cp, scratch[0], x[j])
        j += 1


@njit(**_SWEEP, parallel=True)
def implicit_x_threaded(v, s, inv_d2, g0, gn, r, l, cp, x, nchunks):
    ny, nx = v.shape
    for c in prange(nchunks):
        scratch = np.empty((4, nx))
        implicit_x_rows(v, s, inv_d2, g0, gn, r, l, cp, x, c * ny // nchunks,
                        (c + 1) * ny // nchunks, scratch)


@njit(**_SWEEP)
def rhs_x_edges(v, s, inv_d2, g0, gn, i):
    """``v + s d2x v`` at the two edge columns of row i (their outer neighbours through the
    ghosts)."""
    nx = v.shape[1]
    first = v[i, 0] + s * second_difference(v[i, g0], v[i, 0], v[i, 1], inv_d2)
    last = v[i, nx - 1] + s * second_difference(v[i, nx - 2], v[i, nx - 1], v[i, gn], inv_d2)
    return first, last


@njit(**_SWEEP)
def forward_row(v, s, inv_d2, g0, gn, ri, li, x, i, k0, k1):
    """Row i of the column sweep's forward recurrence over columns k0 .. k1-1, its rhs
    ``v[i, k] + s d2x v[i, k]`` formed in the same loop: ``x[i, k] = rhs r[i] - l[i] x[i-1,
    k]`` (row 0: ``x[0, k] = rhs r[0]``, li ignored). The inner loop runs over slices from
    index 0 (no negative-index wrap-around to check, so LLVM vectorises it)."""
    nx = v.shape[1]
    a, b = max(k0, 1), min(k1, nx - 1)  # the interior columns of the block
    left, mid, right = v[i, a - 1 : b - 1], v[i, a:b], v[i, a + 1 : b + 1]
    out = x[i, a:b]
    first, last = rhs_x_edges(v, s, inv_d2, g0, gn, i)
    if i == 0:
        for k in range(b - a):
            out[k] = (mid[k] + s * second_difference(left[k], mid[k], right[k], inv_d2)) * ri
        if k0 == 0:
            x[0, 0] = first * ri
        if k1 == nx:
            x[0, nx - 1] = last * ri
        return
    prev = x[i - 1, a:b]
    for k in range(b - a):
        rhs = mid[k] + s * second_difference(left[k], mid[k], right[k], inv_d2)
        out[k] = rhs * ri - li * prev[k]
    if k0 == 0:
        x[i, 0] = first * ri - li * x[i - 1, 0]
    if k1 == nx:
        x[i, nx - 1] = last * ri - li * x[i - 1, nx - 1]


@njit(**_SWEEP)
def implicit_y_columns(v, s, inv_d2, g0, gn, r, l, cp, x, k0, k1):
    """Columns k0 .. k1-1 of ``x = (I - s L_y)^{-1} (I + s d2x) v`` (before any ring
    correction): the systems run down the columns, so each row of the recurrences is a
    contiguous loop over the columns (vectorised), the rhs formed in the forward sweep's loop
    (no rhs array). The recurrences are those of
    ``fhnpde.tridiagonal.thomas._substitute_columns``."""
    ny = v.shape[0]
    for i in range(ny):
        forward_row(v, s, inv_d2, g0, gn, r[i], l[i], x, i, k0, k1)
    for i in range(ny - 2, -1, -1):
        ci = cp[i]
        out, below = x[i, k0:k1], x[i + 1, k0:k1]
        for k in range(k1 - k0):
            out[k] = out[k] - ci * below[k]


@njit(**_SWEEP, parallel=True)
def implicit_y_threaded(v, s, inv_d2, g0, gn, r, l, cp, x, width):
    nx = v.shape[1]
    nblocks = (nx + width - 1) // width
    for blk in prange(nblocks):
        k0 = blk * width
        implicit_y_columns(v, s, inv_d2, g0, gn, r, l, cp, x, k0, min(k0 + width, nx))


def serial(nodes: int) -> bool:
    """Whether a sweep over ``nodes`` nodes runs its serial loops: below PARALLEL_MIN_NODES
    or with one numba thread."""
    return nodes < PARALLEL_MIN_NODES or numba.get_num_threads() == 1


def implicit_half(axis: int, v, s: float, inv_d2: float, ghosts, factors, out,
                  scratch) -> None:
    """One direction of a Peaceman–Rachford half-step into ``out``: ``axis`` -1 solves
    ``(I - s L_x) out = (I + s d2y) v`` over all rows, -2 ``(I - s L_y) out = (I + s d2x) v``
    over all columns; ``factors``: (r, l, cp) of the shared factorisation; ``scratch``: (4,
    nx), the serial row sweep's rhs block (threads make their own; columns need none). Threaded
    from PARALLEL_MIN_NODES nodes on with more than one numba thread."""
    g0, gn = ghosts
    r, l, cp = factors
    ny, nx = v.shape
    threads = numba.get_num_threads()
    if axis == -1:
        if serial(v.size):
            implicit_x_rows(v, s, inv_d2, g0, gn, r, l, cp, out, 0, ny, scratch)
        else:
            implicit_x_threaded(v, s, inv_d2, g0, gn, r, l, cp, out, min(ny // 4 or 1, threads))
    elif serial(v.size):
        implicit_y_columns(v, s, inv_d2, g0, gn, r, l, cp, out, 0, nx)
    else:
        implicit_y_threaded(v, s, inv_d2, g0, gn, r, l, cp, out, strided_width(nx, 1, threads))
