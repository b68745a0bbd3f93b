"""numba kernel of the staggered, linearly implicit Crank–Nicolson solver
(:mod:`fhnpde.solvers.staggered`).

Imported only with the numba backend, through ``fhnpde.backends.kernels(...)``. The node
formulas are those of :mod:`fhnpde.schemes` (registered as jitable by
:mod:`fhnpde.compiled`), the tridiagonal sweep that of :mod:`fhnpde.tridiagonal.thomas`.
"""

from __future__ import annotations

from numba import njit

from ..compiled import JIT_NUMPY_ERRORS
from ..schemes import linear_cn_node, staggered_w_step
from ..stimulus import node_currents
from .crank_nicolson_numba import boxes_switch, solve_cable_system


@njit(**JIT_NUMPY_ERRORS)
def staggered_cable_advance(code, v, w, base, masks, t0s, t1s, amps, params, recovery, t, dt,
                            nsteps, diffusivity, inv_dx2, g0, gn, op_lower, op_diag, op_upper,
                            top, bottom, out_v, out_w, work):
    """``nsteps`` staggered Crank–Nicolson steps of a cable; result in out_v/out_w.

    ``w`` is moved half a step ahead at the start and back at the end (exact inverses), so
    the state in and out is ``(v, w)`` at one time. ``op_*``, ``top``, ``bottom``: bands and
    corners of ``-(dt/2) D L``. Returns ``(status, step, row, pivot)``: status 0 done, 2 a
    zero or non-finite pivot at ``row`` in step ``step``.

    Every buffer is the caller's (``work``: 8 rows of n floats), so the kernel allocates
    nothing and loads without numba (:mod:`fhnpde.native`).
    """
    n = v.shape[0]
    h = 0.5 * dt
    p = (params[0], params[1], params[2], params[3])
    alpha, beta, delta = recovery[0], recovery[1], recovery[2]
    periodic = top != 0.0 or bottom != 0.0
    vn, wh = out_v, out_w
    for i in range(n):
        vn[i] = v[i]
        wh[i] = staggered_w_step(w[i], v[i], h, alpha, beta, delta)
    im, jd, rhs, x, z, u, scratch, products = (work[0], work[1], work[2], work[3], work[4],
                                               work[5], work[6], work[7])
    for i in range(n):
        u[i] = 0.0
    previous_ts = t
    for step in range(nsteps):
        ts = t + step * dt
        # the current at the step's midpoint, recomputed only when the active boxes change
        if step == 0 or boxes_switch(previous_ts + h, ts + h, t0s, t1s):
            node_currents(ts + h, base, masks, t0s, t1s, amps, im, products)
        previous_ts = ts
        r, d = linear_cn_node(code, vn[g0], vn[0], vn[1], wh[0], im[0], p, dt, diffusivity,
                              inv_dx2)
        rhs[0] = r
        jd[0] = d + op_diag[0]
        for i in range(1, n - 1):
            r, d = linear_cn_node(code, vn[i - 1], vn[i], vn[i + 1], wh[i], im[i], p, dt,
                                  diffusivity, inv_dx2)
            rhs[i] = r
            jd[i] = d + op_diag[i]
        r, d = linear_cn_node(code, vn[n - 2], vn[n - 1], vn[gn], wh[n - 1], im[n - 1], p, dt,
                              diffusivity, inv_dx2)
        rhs[n - 1] = r
        jd[n - 1] = d + op_diag[n - 1]
        row, piv = solve_cable_system(op_lower, jd, op_upper, rhs, x, u, z, scratch, periodic,
                                      top, bottom)
        if row >= 0:
            return 2, step, row, piv
        for i in range(n):
            vn[i] += x[i]
            wh[i] = staggered_w_step(wh[i], vn[i], dt, alpha, beta, delta)
    for i in range(n):
        wh[i] = staggered_w_step(wh[i], vn[i], -h, alpha, beta, delta)
    return 0, nsteps, -1, 0.0


__all__ = ["staggered_cable_advance"]
