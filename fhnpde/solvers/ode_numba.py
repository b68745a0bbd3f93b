"""numba kernel of the point solvers (:mod:`fhnpde.solvers.ode`): one member per thread.

Imported only with the numba backend, through ``fhnpde.backends.kernels(...)``; the steps
are :func:`fhnpde.schemes.euler_point` and :func:`fhnpde.schemes.rk4_point`.
"""

from __future__ import annotations

from numba import njit, prange

from .. import compiled  # noqa: F401 - registers the formulas as jitable
from ..schemes import euler_point, rk4_point
from ..stimulus import boxes_current


@njit(cache=True, parallel=True)
def point_advance(code, scheme, v, w, base_current, t0s, t1s, amps, params, t, dt, nsteps,
                  out_v, out_w):
    """Advance every member ``nsteps`` steps of Euler (scheme 0) or RK4 (scheme 1)."""
    for m in prange(v.shape[0]):
        vm = v[m]
        wm = w[m]
        p = (params[0, m], params[1, m], params[2, m], params[3, m])
        for s in range(nsteps):
            ts = t + s * dt
            i0 = base_current[m] + boxes_current(ts, t0s, t1s, amps)
            if scheme == 0:
                vm, wm = euler_point(code, vm, wm, i0, p, dt)
            else:
                ih = base_current[m] + boxes_current(ts + 0.5 * dt, t0s, t1s, amps)
                i1 = base_current[m] + boxes_current(ts + dt, t0s, t1s, amps)
                vm, wm = rk4_point(code, vm, wm, i0, ih, i1, p, dt)
        out_v[m] = vm
        out_w[m] = wm


__all__ = ["point_advance"]
