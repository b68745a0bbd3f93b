"""numba kernels of the explicit cable solver (:mod:`fhnpde.solvers.explicit`).

Imported only with the numba backend, through ``fhnpde.backends.kernels(...)``. The node
update is :func:`fhnpde.schemes.forward_euler_node`, registered as jitable by
:mod:`fhnpde.compiled`; the end nodes read their outer neighbour through the ghost indices.
"""

from __future__ import annotations

from numba import njit, prange

from ..compiled import PARALLEL_MIN_NODES
from ..schemes import forward_euler_node


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
    if nsteps % 2 == 0:  # the last step wrote into v, w
        out_v[:] = a_v
        out_w[:] = a_w


def explicit_step_kernel(n: int):
    """The serial kernel for small cables, the threaded one beyond PARALLEL_MIN_NODES."""
    return explicit_step_parallel if n >= PARALLEL_MIN_NODES else explicit_step_serial


__all__ = ["PARALLEL_MIN_NODES", "explicit_advance_serial", "explicit_rows",
           "explicit_step_kernel", "explicit_step_parallel", "explicit_step_serial"]
