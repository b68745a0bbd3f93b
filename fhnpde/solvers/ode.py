"""Point models (0-D): forward Euler and classical RK4 over a batch of members.

Each member is one cell with its own current and parameters. The formulas
(:func:`fhnpde.schemes.euler_point`, :func:`fhnpde.schemes.rk4_point`) are the one copy used
by the array path (vectorised over members), the numba kernel (parallel over members) and
the exact reaction steps of the operator-split solver.
"""

from __future__ import annotations

import numpy as np

from ..backends import kernels
from ..schemes import euler_point, rk4_point
from .base import ArrayPath, Order, State, SteppedSolver, register

KERNELS = "fhnpde.solvers.ode_numba"
SCHEMES = {"euler": 0, "rk4": 1}


class PointSolver(SteppedSolver):
    """A batch of cells; subclasses choose the scheme. The backend seam is ``self.steps``:
    the array path (the subclass's ``formula`` on arrays of ``xp``) or the numba kernel."""

    geometry = "point"

    def __init__(self, problem, options=None):
        super().__init__(problem, options)
        self.code = problem.kinetics.family.code
        n = problem.size
        self.params = np.ascontiguousarray(
            np.stack([np.broadcast_to(np.asarray(x, float), (n,)) for x in problem.kinetics.values])
        )
        self.steps = self.compiled_steps() if self.backend == "numba" else ArraySteps(self)

    def compiled_steps(self):
        return CompiledSteps(self)

    def current(self, t):
        return self.asarray(self.problem.current.current(t))



class ArraySteps(ArrayPath):
    """The array path of a point solver: its ``formula`` on whole arrays of ``xp``."""

    def advance(self, state, t, dt, nsteps):
        s = self.solver
        v, w = state.v, state.w
        p = tuple(s.asarray(row) for row in s.params)
        for i in range(nsteps):
            v, w = s.formula(v, w, p, t + i * dt, dt)
        return State(v, w)


class CompiledSteps:
    """The numba path: every member in its own thread (:mod:`fhnpde.solvers.ode_numba`)."""

    def __init__(self, solver):
        self.solver = solver
        self.kernels = kernels(KERNELS)

    def advance(self, state, t, dt, nsteps):
        s = self.solver
        cur = s.problem.current
        out_v, out_w = np.empty_like(state.v), np.empty_like(state.w)
        self.kernels.point_advance(
            s.code, SCHEMES[s.name], state.v, state.w, cur.base, cur.t0, cur.t1,
            cur.amplitude, s.params, t, dt, nsteps, out_v, out_w,
        )
        return State(out_v, out_w)


@register
class EulerPoint(PointSolver):
    name = "euler"
    order = Order(time=1)

    def formula(self, v, w, p, t, dt):
        return euler_point(self.code, v, w, self.current(t), p, dt)


@register
class RK4Point(PointSolver):
    name = "rk4"
    order = Order(time=4)

    def formula(self, v, w, p, t, dt):
        i0, ih, i1 = (self.current(s) for s in (t, t + 0.5 * dt, t + dt))
        return rk4_point(self.code, v, w, i0, ih, i1, p, dt)
