"""Point models (0-D): forward Euler and classical RK4 over a batch of members.

Each member is one cell with its own current and parameters. The formulas below are the
one copy used by the numpy (vectorised over members) and numba (a kernel, parallel over
members) backends, and by the exact reaction steps of the operator-split solver.
"""

from __future__ import annotations

import numpy as np

from ..backends import kernels
from ..models import reaction_by_code
from .base import Order, Solver, State, register


def euler_point(code, v, w, I, p, dt):
    """Forward Euler: y + dt f(y)."""
    dv, dw = reaction_by_code(code, v, w, I, p)
    return v + dt * dv, w + dt * dw


def rk4_point(code, v, w, I0, Ih, I1, p, dt):
    """Classical RK4 with the current evaluated at t, t + dt/2 and t + dt."""
    h = 0.5 * dt
    k1v, k1w = reaction_by_code(code, v, w, I0, p)
    k2v, k2w = reaction_by_code(code, v + h * k1v, w + h * k1w, Ih, p)
    k3v, k3w = reaction_by_code(code, v + h * k2v, w + h * k2w, Ih, p)
    k4v, k4w = reaction_by_code(code, v + dt * k3v, w + dt * k3w, I1, p)
    s = dt / 6.0
    return (
        v + s * (k1v + 2.0 * k2v + 2.0 * k3v + k4v),
        w + s * (k1w + 2.0 * k2w + 2.0 * k3w + k4w),
    )


SCHEMES = {"euler": 0, "rk4": 1}


class PointSolver(Solver):
    geometry = "point"

    def __init__(self, problem):
        super().__init__(problem)
        if self.backend == "cupy":
            from ..backends import namespace

            self.xp = namespace("cupy")
        else:
            self.xp = np
        self.code = problem.kinetics.family.code
        n = problem.size
        self.params = np.ascontiguousarray(
            np.stack([np.broadcast_to(np.asarray(x, float), (n,)) for x in problem.kinetics.values])
        )

    def _current(self, t):
        return self.problem.current.current(t)

    def step(self, state, t, dt):
        return self.advance(state, t, dt, 1)

    def advance(self, state, t, dt, nsteps):
        if self.backend == "numba":
            cur = self.problem.current
            out_v, out_w = np.empty_like(state.v), np.empty_like(state.w)
            kernels().point_advance(
                self.code, SCHEMES[self.name], state.v, state.w, cur.base, cur.t0, cur.t1,
                cur.amplitude, self.params, t, dt, nsteps, out_v, out_w,
            )
            return State(out_v, out_w)
        v, w = state.v, state.w
        p = tuple(self.xp.asarray(row) for row in self.params)
        for i in range(nsteps):
            v, w = self._formula(v, w, p, t + i * dt, dt)
        return State(v, w)


@register
class EulerPoint(PointSolver):
    name = "euler"
    order = Order(time=1)

    def _formula(self, v, w, p, t, dt):
        return euler_point(self.code, v, w, self.xp.asarray(self._current(t)), p, dt)


@register
class RK4Point(PointSolver):
    name = "rk4"
    order = Order(time=4)

    def _formula(self, v, w, p, t, dt):
        xp = self.xp
        i0, ih, i1 = (xp.asarray(self._current(s)) for s in (t, t + 0.5 * dt, t + dt))
        return rk4_point(self.code, v, w, i0, ih, i1, p, dt)
