"""numba kernels of the adaptive-grid solver (:mod:`fhnpde.solvers.adaptive`).

Imported only with the numba backend, through ``fhnpde.backends.kernels(...)``. No formula
lives here: the node update of :mod:`fhnpde.schemes`, the non-uniform derivatives of
:mod:`fhnpde.nonuniform` and the active-set selection of :mod:`fhnpde.refinement` are
registered as jitable by :mod:`fhnpde.compiled` and called from here.
"""

from __future__ import annotations

from numba import njit

from .. import (
    compiled,  # noqa: F401 - registers the formulas as jitable
    refinement,
)
from ..schemes import adaptive_euler_node


@njit(cache=True)
def select_active(index, v, w, current, h_left, h_right, g0, gn, code, p, diffusivity, dx, n,
                  periodic, coarse_stride, wave_stride, fine_stride, vx_threshold,
                  vt_threshold, front_radius):
    """:func:`fhnpde.refinement.select_active`, compiled."""
    return refinement.select_active(index, v, w, current, h_left, h_right, g0, gn, code, p,
                          diffusivity, dx, n, periodic, coarse_stride, wave_stride,
                          fine_stride, vx_threshold, vt_threshold, front_radius)


@njit(cache=True)
def adaptive_euler_block(code, p, dt, diffusivity, nsteps, v, w, current, h_left, h_right,
                         g0, gn, out_v, out_w):
    """``nsteps`` forward-Euler steps on a fixed set of ``m`` active nodes.

    ``h_left``/``h_right`` are each node's spacings, ``g0``/``gn`` the ghost indices read
    left of node 0 and right of node ``m - 1``; ``current`` is constant over the block.
    Returns ``(v, w, spare_v, spare_w)``: the result and the two buffers now free.
    """
    m = v.shape[0]
    last = m - 1
    for _ in range(nsteps):
        for i in range(1, last):
            out_v[i], out_w[i] = adaptive_euler_node(
                v[i - 1], v[i], v[i + 1], w[i], current[i], code, p, dt, diffusivity,
                h_left[i], h_right[i],
            )
        out_v[0], out_w[0] = adaptive_euler_node(
            v[g0], v[0], v[1], w[0], current[0], code, p, dt, diffusivity, h_left[0],
            h_right[0],
        )
        out_v[last], out_w[last] = adaptive_euler_node(
            v[last - 1], v[last], v[gn], w[last], current[last], code, p, dt, diffusivity,
            h_left[last], h_right[last],
        )
        v, out_v = out_v, v
        w, out_w = out_w, w
    return v, w, out_v, out_w


__all__ = ["adaptive_euler_block", "select_active"]
