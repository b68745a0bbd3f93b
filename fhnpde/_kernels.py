"""numba kernels. Imported only when the numba backend is used (``backends.kernels()``).

The kernels contain no formulas of their own: the plain-Python formula functions of
:mod:`fhnpde.models`, :mod:`fhnpde.grid`, :mod:`fhnpde.stimulus` and the solver modules
are registered as jitable here and called node by node, so numpy and numba compute the
same expressions. Import this module through ``backends.kernels()``: it caches the
kernels in a directory keyed by a hash of the whole package, so an edited formula is
never served from a stale cache.
"""

from __future__ import annotations

from numba import njit, prange
from numba.extending import register_jitable

from . import grid, models, stimulus
from .solvers import explicit, ode

for _f in (
    models.nagumo_reaction,
    models.fitzhugh_reaction,
    models.nagumo_dreaction_dv,
    models.fitzhugh_dreaction_dv,
    models.reaction_by_code,
    models.dreaction_dv_by_code,
    grid.second_difference,
    stimulus.box_active,
    stimulus.boxes_current,
    explicit.forward_euler_node,
    ode.euler_point,
    ode.rk4_point,
):
    register_jitable(_f)

forward_euler_node = explicit.forward_euler_node
boxes_current = stimulus.boxes_current
euler_point = ode.euler_point
rk4_point = ode.rk4_point

PARALLEL_MIN_NODES = 262_144  # measured: below this one thread is faster than two


@njit(cache=True)
def _explicit_ends(code, v, w, current, p, dt, diffusivity, inv_dx2, g0, gn, out_v, out_w):
    """The two end nodes, which read their outer neighbour through the ghost indices."""
    n = v.shape[0]
    out_v[0], out_w[0] = forward_euler_node(
        v[g0], v[0], v[1], w[0], current[0], code, p, dt, diffusivity, inv_dx2
    )
    out_v[n - 1], out_w[n - 1] = forward_euler_node(
        v[n - 2], v[n - 1], v[gn], w[n - 1], current[n - 1], code, p, dt, diffusivity, inv_dx2
    )


# The serial and the threaded kernel are two functions (numba's cache tells compilations
# apart by function, not by the parallel flag); their loops differ only in range/prange.


@njit(cache=True)
def explicit_step_serial(code, v, w, current, p, dt, diffusivity, inv_dx2, g0, gn, out_v, out_w):
    for i in range(1, v.shape[0] - 1):
        out_v[i], out_w[i] = forward_euler_node(
            v[i - 1], v[i], v[i + 1], w[i], current[i], code, p, dt, diffusivity, inv_dx2
        )
    _explicit_ends(code, v, w, current, p, dt, diffusivity, inv_dx2, g0, gn, out_v, out_w)


@njit(cache=True, parallel=True)
def explicit_step_parallel(code, v, w, current, p, dt, diffusivity, inv_dx2, g0, gn, out_v,
                           out_w):
    for i in prange(1, v.shape[0] - 1):
        out_v[i], out_w[i] = forward_euler_node(
            v[i - 1], v[i], v[i + 1], w[i], current[i], code, p, dt, diffusivity, inv_dx2
        )
    _explicit_ends(code, v, w, current, p, dt, diffusivity, inv_dx2, g0, gn, out_v, out_w)


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


__all__ = ["explicit_step_kernel", "point_advance"]
