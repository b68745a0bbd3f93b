"""Forward Euler in time, second-order central differences in space, on a uniform cable.

.. math::

    v_i^{n+1} = v_i^n + \\Delta t \\left( D \\frac{v_{i-1}^n - 2 v_i^n + v_{i+1}^n}{\\Delta x^2}
                + f(v_i^n, w_i^n, I_i^n) \\right), \\qquad
    w_i^{n+1} = w_i^n + \\Delta t\\, g(v_i^n, w_i^n)

Order 1 in time, 2 in space (with the mirror-node boundary). Stable for
``dt <= dx^2 / (2 D)`` (the diffusion part; von Neumann analysis of the heat equation).
"""

from __future__ import annotations

import numpy as np

from ..backends import kernels, namespace
from ..grid import second_difference
from ..models import reaction_by_code
from .base import Order, Solver, State, register


def forward_euler_node(v_left, v, v_right, w, I, code, p, dt, diffusivity, inv_dx2):
    """One forward-Euler step of node values; the one formula every backend uses."""
    dv, dw = reaction_by_code(code, v, w, I, p)
    return (
        v + dt * (diffusivity * second_difference(v_left, v, v_right, inv_dx2) + dv),
        w + dt * dw,
    )


def diffusion_limit(dx: float, diffusivity: float) -> float | None:
    """dx^2 / (2 D), the forward-Euler limit of the three-point Laplacian."""
    return None if diffusivity == 0 else dx * dx / (2.0 * diffusivity)


@register
class ExplicitSolver(Solver):
    name = "explicit"
    geometry = "cable"
    order = Order(time=1, space=2)

    def __init__(self, problem):
        super().__init__(problem)
        self.xp = namespace(self.backend)
        grid = problem.grid
        self.inv_dx2 = 1.0 / grid.dx**2
        self.params = tuple(float(x) for x in problem.kinetics.values)
        self.code = problem.kinetics.family.code

    def stability_limit(self, dt):
        return diffusion_limit(self.problem.grid.dx, self.problem.diffusion)

    def limit_formula(self):
        return "dx^2 / (2 D)"

    def init(self) -> State:
        xp = self.xp
        return State(xp.asarray(self.problem.v0).copy(), xp.asarray(self.problem.w0).copy())

    def step(self, state, t, dt):
        if self.backend == "numba":
            return self.advance(state, t, dt, 1)
        xp = self.xp
        left, right = self.problem.grid.neighbours(state.v, xp)
        current = xp.asarray(self.problem.current.current(t))
        v, w = forward_euler_node(
            left, state.v, right, state.w, current, self.code, self.params, dt,
            self.problem.diffusion, self.inv_dx2,
        )
        return State(v, w)

    def advance(self, state, t, dt, nsteps):
        if self.backend != "numba":
            return super().advance(state, t, dt, nsteps)
        k = kernels()
        g0, gn = self.problem.grid.ghosts
        v, w = state.v.copy(), state.w.copy()
        out_v, out_w = np.empty_like(v), np.empty_like(w)
        args = (self.params, dt, self.problem.diffusion, self.inv_dx2, g0, gn)
        if v.size < k.PARALLEL_MIN_NODES:
            # short cables: whole runs of steps with an unchanging current in one call
            for first, count in self.problem.current.segments(t, dt, nsteps):
                current = self.problem.current.current(t + first * dt)
                k.explicit_advance_serial(self.code, v, w, current, *args, count, out_v, out_w)
                v, out_v = out_v, v
                w, out_w = out_w, w
            return State(v, w)
        for i in range(nsteps):
            current = self.problem.current.current(t + i * dt)
            k.explicit_step_parallel(self.code, v, w, current, *args, out_v, out_w)
            v, out_v = out_v, v
            w, out_w = out_w, w
        return State(v, w)
