"""numba kernels of the explicit cable and sheet solvers (:mod:`fhnpde.solvers.explicit`).

Imported only with the numba backend, through ``fhnpde.backends.kernels(...)``. The node
update is :func:`fhnpde.schemes.forward_euler_node`, registered as jitable by
:mod:`fhnpde.compiled`; the end nodes read their outer neighbour through the ghost indices.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..compiled import PARALLEL_MIN_NODES
from ..schemes import (
    forward_euler4_node,
    forward_euler4_sheet_node,
    forward_euler_node,
    forward_euler_sheet_node,
)


@njit(cache=True)
def explicit_ends(code, v, w, current, p, dt, diffusivity, inv_dx2, g0, gn, out_v, out_w):
    """The two end nodes, which read their outer neighbour through the ghost indices."""
    n = v.shape[0]
    out_v[0], out_w[0] = forward_euler_node(
        v[g0], v[0], v[1], w[0], current[0], code, p, dt, diffusivity, inv_dx2
    )
    out_v[n - 1], out_w[n - 1] = forward_euler_node(
        v[n - 2], v[n - 1], v[gn], w[n - 1], current[n - 1], code, p, dt, diffusivity, inv_dx2
    )


@njit(cache=True)
def explicit_rows(code, v, w, current, p, dt, diffusivity, inv_dx2, lo, hi, out_v, out_w):
    """Interior nodes ``lo <= i < hi``: one plain loop, which LLVM vectorises."""
    for i in range(lo, hi):
        out_v[i], out_w[i] = forward_euler_node(
            v[i - 1], v[i], v[i + 1], w[i], current[i], code, p, dt, diffusivity, inv_dx2
        )


# The serial and the threaded kernel are two functions (numba's cache tells compilations
# apart by function, not by the parallel flag).

#: contiguous blocks of nodes the threaded kernel shares out (a constant, so the kernel
#: caches; each block is long enough for its loop to run at full vector speed)
BLOCKS = 64


@njit(cache=True)
def explicit_step_serial(code, v, w, current, p, dt, diffusivity, inv_dx2, g0, gn, out_v, out_w):
    explicit_rows(code, v, w, current, p, dt, diffusivity, inv_dx2, 1, v.shape[0] - 1,
                  out_v, out_w)
    explicit_ends(code, v, w, current, p, dt, diffusivity, inv_dx2, g0, gn, out_v, out_w)


@njit(cache=True, parallel=True)
def explicit_step_parallel(code, v, w, current, p, dt, diffusivity, inv_dx2, g0, gn, out_v,
                           out_w):
    """Contiguous blocks of interior nodes shared out over the threads, each a plain
    (vectorised) loop.

    A ``prange`` over the nodes themselves compiles to a loop LLVM does not vectorise: on
    2 threads it moved 15 GB/s at 4e6 nodes where these blocks move 38 (the serial loop 32;
    benchmarks/explicit_step.py). Every node's update is the same formula either way, so the
    results are bit for bit those of the serial kernel.
    """
    n = v.shape[0]
    for b in prange(BLOCKS):
        lo = 1 + b * (n - 2) // BLOCKS
        hi = 1 + (b + 1) * (n - 2) // BLOCKS
        explicit_rows(code, v, w, current, p, dt, diffusivity, inv_dx2, lo, hi, out_v, out_w)
    explicit_ends(code, v, w, current, p, dt, diffusivity, inv_dx2, g0, gn, out_v, out_w)


@njit(cache=True, nogil=True)
def explicit_advance_serial(code, v, w, current, p, dt, diffusivity, inv_dx2, g0, gn, nsteps,
                            out_v, out_w):
    """``nsteps`` serial steps with a fixed current; the result lands in out_v, out_w.

    v and w are used as scratch (overwritten). Compiled as one loop without the GIL, so a
    short cable pays no Python call per step and other threads run meanwhile.
    """
    a_v, a_w, b_v, b_w = v, w, out_v, out_w
    for _ in range(nsteps):
        explicit_step_serial(code, a_v, a_w, current, p, dt, diffusivity, inv_dx2, g0, gn,
                             b_v, b_w)
        a_v, b_v = b_v, a_v
        a_w, b_w = b_w, a_w
    if nsteps % 2 == 0:  # the last step wrote into v, w (an element loop: a slice copy
        for i in range(out_v.shape[0]):  # checks for overlap and may allocate, which
            out_v[i] = a_v[i]  # would keep the kernel from loading natively, fhnpde.native)
            out_w[i] = a_w[i]


# --- sheets: the five-point stencil, threaded over rows ----------------------------------


@njit(cache=True)
def sheet_rows(code, v, w, current, p, dt, diffusivity, inv_dx2, inv_dy2, gx0, gxn, gy0, gyn,
               lo, hi, out_v, out_w):
    """Rows ``lo <= j < hi`` of a sheet ``(ny, nx)``: rows 0 and ny - 1 read the row beyond
    the edge through the y ghost indices, the end nodes of each row their outer neighbour
    through the x ghost indices. The interior of a row is one plain loop over 2-D indices,
    which LLVM vectorises (measured, 101 x 101 and 401 x 401 sheets: 0.8-1.0e9 node-updates
    a second on one thread, where 1-D row views cost 0.2-0.7e9 in reference counting and
    flat indices ``k +- nx`` 0.15e9, unvectorised)."""
    ny, n = v.shape
    for j in range(lo, hi):
        jb = gy0 if j == 0 else j - 1
        ja = gyn if j == ny - 1 else j + 1
        for i in range(1, n - 1):
            out_v[j, i], out_w[j, i] = forward_euler_sheet_node(
                v[j, i - 1], v[j, i + 1], v[jb, i], v[ja, i], v[j, i], w[j, i], current[j, i],
                code, p, dt, diffusivity, inv_dx2, inv_dy2)
        out_v[j, 0], out_w[j, 0] = forward_euler_sheet_node(
            v[j, gx0], v[j, 1], v[jb, 0], v[ja, 0], v[j, 0], w[j, 0], current[j, 0], code, p,
            dt, diffusivity, inv_dx2, inv_dy2)
        out_v[j, n - 1], out_w[j, n - 1] = forward_euler_sheet_node(
            v[j, n - 2], v[j, gxn], v[jb, n - 1], v[ja, n - 1], v[j, n - 1], w[j, n - 1],
            current[j, n - 1], code, p, dt, diffusivity, inv_dx2, inv_dy2)


@njit(cache=True)
def sheet_step_serial(code, v, w, current, p, dt, diffusivity, inv_dx2, inv_dy2, gx0, gxn,
                      gy0, gyn, out_v, out_w):
    sheet_rows(code, v, w, current, p, dt, diffusivity, inv_dx2, inv_dy2, gx0, gxn, gy0, gyn,
               0, v.shape[0], out_v, out_w)


@njit(cache=True, parallel=True)
def sheet_step_parallel(code, v, w, current, p, dt, diffusivity, inv_dx2, inv_dy2, gx0, gxn,
                        gy0, gyn, out_v, out_w):
    """Contiguous blocks of rows shared out over the threads (as the cable's blocks of
    nodes: each row a plain vectorised loop); every node's update is the serial formula, so
    the result is bit for bit the serial kernel's."""
    ny = v.shape[0]
    blocks = min(BLOCKS, ny)
    for b in prange(blocks):
        lo = b * ny // blocks
        hi = (b + 1) * ny // blocks
        sheet_rows(code, v, w, current, p, dt, diffusivity, inv_dx2, inv_dy2, gx0, gxn, gy0,
                   gyn, lo, hi, out_v, out_w)


@njit(cache=True, nogil=True)
def sheet_advance_serial(code, v, w, current, p, dt, diffusivity, inv_dx2, inv_dy2, gx0, gxn,
                         gy0, gyn, nsteps, out_v, out_w):
    """``nsteps`` serial steps of a sheet with a fixed current (as
    :func:`explicit_advance_serial`: v, w are scratch; the result lands in out_v, out_w)."""
    a_v, a_w, b_v, b_w = v, w, out_v, out_w
    for _ in range(nsteps):
        sheet_step_serial(code, a_v, a_w, current, p, dt, diffusivity, inv_dx2, inv_dy2, gx0,
                          gxn, gy0, gyn, b_v, b_w)
        a_v, b_v = b_v, a_v
        a_w, b_w = b_w, a_w
    if nsteps % 2 == 0:
        out_v[:] = a_v
        out_w[:] = a_w


# --- the fourth-order stencils (solver.space_order: 4) ------------------------------------
#
# Nodes two away are read too: the two nodes nearest each end (and the two rows nearest each
# edge of a sheet) through the ghost indices (g0, gn: of x_{-1}, x_n) and the outer ghost
# indices (o0, on: of x_{-2}, x_{n+1}), fhnpde.grid. The interior loops count from 0 and
# their counter is the smallest index read: LLVM then proves every index non-negative (no
# wraparound) and vectorises them; with ``for i in range(2, n - 2)`` and ``v[i - 1]`` it did
# not, and the loop ran on gathers, 7x slower (measured). The kinetics code is tested once,
# outside the loops (the *_rows4 functions): with it inside, a loop nest with more than one
# inner loop was not unswitched and ran 3-4x slower.


@njit(cache=True, inline="always")
def through_ghosts(k, n, g0, gn, o0, on):
    """The node read at position ``k`` (-2 <= k <= n + 1) of ``n`` nodes."""
    if k < 0:
        return g0 if k == -1 else o0
    if k >= n:
        return gn if k == n else on
    return k


@njit(cache=True, inline="always")
def _interior4(code, v, w, current, p, dt, diffusivity, inv_dx2, count, shift, out_v, out_w):
    """``count`` nodes whose k-th reads v[k .. k + 4] (its own value v[k + 2]), w[k + 2] and
    current[k + 2], and writes out_v[k + shift], out_w[k + shift] (``shift`` a constant)."""
    for k in range(count):
        out_v[k + shift], out_w[k + shift] = forward_euler4_node(
            v[k], v[k + 1], v[k + 2], v[k + 3], v[k + 4], w[k + 2], current[k + 2], code, p,
            dt, diffusivity, inv_dx2)


@njit(cache=True, inline="always")
def _ends4(code, v, w, current, p, dt, diffusivity, inv_dx2, g0, gn, o0, on, lo, hi, out_v,
           out_w):
    """The two nodes nearest each end that lie in ``lo <= i < hi``, through the ghosts."""
    n = v.shape[0]
    for i in (0, 1, n - 2, n - 1):
        if lo <= i < hi:
            out_v[i], out_w[i] = forward_euler4_node(
                v[through_ghosts(i - 2, n, g0, gn, o0, on)],
                v[through_ghosts(i - 1, n, g0, gn, o0, on)], v[i],
                v[through_ghosts(i + 1, n, g0, gn, o0, on)],
                v[through_ghosts(i + 2, n, g0, gn, o0, on)], w[i], current[i], code, p, dt,
                diffusivity, inv_dx2)


@njit(cache=True, inline="always")
def _explicit_rows4(code, v, w, current, p, dt, diffusivity, inv_dx2, g0, gn, o0, on, lo, hi,
                    out_v, out_w):
    n = v.shape[0]
    first = max(lo, 2)
    # views from node first - 2, so that the loop's smallest index is its counter from 0
    # (an index such as i - 1 with i from a variable start is not proven non-negative, and
    # the loop compiles to gathers)
    _interior4(code, v[first - 2:], w[first - 2:], current[first - 2:], p, dt, diffusivity,
               inv_dx2, min(hi, n - 2) - first, 0, out_v[first:], out_w[first:])
    _ends4(code, v, w, current, p, dt, diffusivity, inv_dx2, g0, gn, o0, on, lo, hi, out_v,
           out_w)


@njit(cache=True)
def explicit_rows4(code, v, w, current, p, dt, diffusivity, inv_dx2, g0, gn, o0, on, lo, hi,
                   out_v, out_w):
    """Nodes ``lo <= i < hi`` of a cable with the fourth-order stencil."""
    if code == 0:
        _explicit_rows4(0, v, w, current, p, dt, diffusivity, inv_dx2, g0, gn, o0, on, lo, hi,
                        out_v, out_w)
    else:
        _explicit_rows4(1, v, w, current, p, dt, diffusivity, inv_dx2, g0, gn, o0, on, lo, hi,
                        out_v, out_w)


@njit(cache=True, inline="always")
def _explicit4_cable(code, v, w, current, p, dt, diffusivity, inv_dx2, g0, gn, o0, on, out_v,
                     out_w):
    """Every node of a cable: the interior one loop from node 2 (no views, so that the
    serial kernel needs nothing of numba's runtime and loads natively, fhnpde.native)."""
    n = v.shape[0]
    _interior4(code, v, w, current, p, dt, diffusivity, inv_dx2, n - 4, 2, out_v, out_w)
    _ends4(code, v, w, current, p, dt, diffusivity, inv_dx2, g0, gn, o0, on, 0, n, out_v,
           out_w)


@njit(cache=True)
def explicit4_step_serial(code, v, w, current, p, dt, diffusivity, inv_dx2, g0, gn, o0, on,
                          out_v, out_w):
    if code == 0:
        _explicit4_cable(0, v, w, current, p, dt, diffusivity, inv_dx2, g0, gn, o0, on, out_v,
                         out_w)
    else:
        _explicit4_cable(1, v, w, current, p, dt, diffusivity, inv_dx2, g0, gn, o0, on, out_v,
                         out_w)


@njit(cache=True, parallel=True)
def explicit4_step_parallel(code, v, w, current, p, dt, diffusivity, inv_dx2, g0, gn, o0, on,
                            out_v, out_w):
    """Contiguous blocks of nodes over the threads, as :func:`explicit_step_parallel`."""
    n = v.shape[0]
    for b in prange(BLOCKS):
        explicit_rows4(code, v, w, current, p, dt, diffusivity, inv_dx2, g0, gn, o0, on,
                       b * n // BLOCKS, (b + 1) * n // BLOCKS, out_v, out_w)


@njit(cache=True, nogil=True)
def explicit4_advance_serial(code, v, w, current, p, dt, diffusivity, inv_dx2, g0, gn, o0, on,
                             nsteps, out_v, out_w):
    """``nsteps`` serial steps with a fixed current (as :func:`explicit_advance_serial`)."""
    a_v, a_w, b_v, b_w = v, w, out_v, out_w
    for _ in range(nsteps):
        explicit4_step_serial(code, a_v, a_w, current, p, dt, diffusivity, inv_dx2, g0, gn, o0,
                              on, b_v, b_w)
        a_v, b_v = b_v, a_v
        a_w, b_w = b_w, a_w
    if nsteps % 2 == 0:  # an element loop, as explicit_advance_serial's (loads natively)
        for i in range(out_v.shape[0]):
            out_v[i] = a_v[i]
            out_w[i] = a_w[i]


@njit(cache=True, inline="always")
def _sheet_rows4(code, v, w, current, p, dt, diffusivity, inv_dx2, inv_dy2, gx0, gxn, ox0, oxn,
                 gy0, gyn, oy0, oyn, lo, hi, out_v, out_w, row):
    ny, n = v.shape
    for j in range(lo, hi):
        jbb = through_ghosts(j - 2, ny, gy0, gyn, oy0, oyn)
        jb = through_ghosts(j - 1, ny, gy0, gyn, oy0, oyn)
        ja = through_ghosts(j + 1, ny, gy0, gyn, oy0, oyn)
        jaa = through_ghosts(j + 2, ny, gy0, gyn, oy0, oyn)
        # row j with its two ghost values each side, so that every node of the row is one
        # vectorised loop (the four edge nodes apart, as scalars, took 35-45 % of a step on
        # 31-51 nodes a side)
        row[0] = v[j, ox0]
        row[1] = v[j, gx0]
        for i in range(n):
            row[i + 2] = v[j, i]
        row[n + 2] = v[j, gxn]
        row[n + 3] = v[j, oxn]
        for k in range(n):  # node k is row[k + 2]
            out_v[j, k], out_w[j, k] = forward_euler4_sheet_node(
                row[k], row[k + 1], row[k + 3], row[k + 4], v[jbb, k], v[jb, k], v[ja, k],
                v[jaa, k], v[j, k], w[j, k], current[j, k], code, p, dt, diffusivity, inv_dx2,
                inv_dy2)


@njit(cache=True)
def sheet_rows4(code, v, w, current, p, dt, diffusivity, inv_dx2, inv_dy2, gx0, gxn, ox0, oxn,
                gy0, gyn, oy0, oyn, lo, hi, out_v, out_w, row):
    """Rows ``lo <= j < hi`` of a sheet ``(ny, nx)`` with the fourth-order nine-point
    cross; the rows and columns nearest the edges read through the ghost indices. ``row``:
    work space of nx + 4 values."""
    if code == 0:
        _sheet_rows4(0, v, w, current, p, dt, diffusivity, inv_dx2, inv_dy2, gx0, gxn, ox0, oxn,
                     gy0, gyn, oy0, oyn, lo, hi, out_v, out_w, row)
    else:
        _sheet_rows4(1, v, w, current, p, dt, diffusivity, inv_dx2, inv_dy2, gx0, gxn, ox0, oxn,
                     gy0, gyn, oy0, oyn, lo, hi, out_v, out_w, row)


@njit(cache=True)
def sheet4_step_serial(code, v, w, current, p, dt, diffusivity, inv_dx2, inv_dy2, gx0, gxn,
                       ox0, oxn, gy0, gyn, oy0, oyn, out_v, out_w):
    sheet_rows4(code, v, w, current, p, dt, diffusivity, inv_dx2, inv_dy2, gx0, gxn, ox0, oxn,
                gy0, gyn, oy0, oyn, 0, v.shape[0], out_v, out_w, np.empty(v.shape[1] + 4))


@njit(cache=True, parallel=True)
def sheet4_step_parallel(code, v, w, current, p, dt, diffusivity, inv_dx2, inv_dy2, gx0, gxn,
                         ox0, oxn, gy0, gyn, oy0, oyn, out_v, out_w):
    """Contiguous blocks of rows over the threads, as :func:`sheet_step_parallel`."""
    ny = v.shape[0]
    blocks = min(BLOCKS, ny)
    for b in prange(blocks):
        sheet_rows4(code, v, w, current, p, dt, diffusivity, inv_dx2, inv_dy2, gx0, gxn, ox0,
                    oxn, gy0, gyn, oy0, oyn, b * ny // blocks, (b + 1) * ny // blocks, out_v,
                    out_w, np.empty(v.shape[1] + 4))


@njit(cache=True, nogil=True)
def sheet4_advance_serial(code, v, w, current, p, dt, diffusivity, inv_dx2, inv_dy2, gx0, gxn,
                          ox0, oxn, gy0, gyn, oy0, oyn, nsteps, out_v, out_w):
    """``nsteps`` serial steps of a sheet with the fourth-order stencil (as
    :func:`sheet_advance_serial`)."""
    a_v, a_w, b_v, b_w = v, w, out_v, out_w
    row = np.empty(v.shape[1] + 4)
    for _ in range(nsteps):
        sheet_rows4(code, a_v, a_w, current, p, dt, diffusivity, inv_dx2, inv_dy2, gx0, gxn,
                    ox0, oxn, gy0, gyn, oy0, oyn, 0, v.shape[0], b_v, b_w, row)
        a_v, b_v = b_v, a_v
        a_w, b_w = b_w, a_w
    if nsteps % 2 == 0:
        out_v[:] = a_v
        out_w[:] = a_w


def sheet_step_kernel(n: int):
    """The serial sheet kernel below PARALLEL_MIN_NODES nodes, the threaded one above."""
    return sheet_step_parallel if n >= PARALLEL_MIN_NODES else sheet_step_serial


def explicit_step_kernel(n: int):
    """The serial kernel for small cables, the threaded one beyond PARALLEL_MIN_NODES."""
    return explicit_step_parallel if n >= PARALLEL_MIN_NODES else explicit_step_serial


__all__ = ["PARALLEL_MIN_NODES", "explicit4_advance_serial", "explicit4_step_parallel",
           "explicit4_step_serial", "explicit_advance_serial", "explicit_rows",
           "explicit_step_kernel", "explicit_step_parallel", "explicit_step_serial",
           "sheet4_advance_serial", "sheet4_step_parallel", "sheet4_step_serial",
           "sheet_advance_serial", "sheet_step_kernel", "sheet_step_parallel",
           "sheet_step_serial", "through_ghosts"]
