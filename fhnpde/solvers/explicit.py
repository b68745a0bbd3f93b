"""Forward Euler in time, second-order central differences in space, on a uniform cable.

.. math::

    v_i^{n+1} = v_i^n + \\Delta t \\left( D \\frac{v_{i-1}^n - 2 v_i^n + v_{i+1}^n}{\\Delta x^2}
                + f(v_i^n, w_i^n, I_i^n) \\right), \\qquad
    w_i^{n+1} = w_i^n + \\Delta t\\, g(v_i^n, w_i^n)

Order 1 in time, 2 in space (with the mirror-node boundary). Stable for
``dt <= dx^2 / (2 D)`` (the diffusion part; von Neumann analysis of the heat equation).

On a sheet (DESIGN section 9) the Laplacian is the five-point stencil
``(v_{i-1,j} - 2 v_{ij} + v_{i+1,j}) / dx^2 + (v_{i,j-1} - 2 v_{ij} + v_{i,j+1}) / dy^2``;
its most negative eigenvalue is ``-4 / dx^2 - 4 / dy^2`` (the checkerboard mode), so forward
Euler is stable for ``dt <= dx^2 dy^2 / (2 D (dx^2 + dy^2))`` (with dx = dy: dx^2 / (4 D)).
"""

from __future__ import annotations

import numpy as np

from .. import native
from ..backends import PARALLEL_MIN_NODES
from ..schemes import forward_euler_node, forward_euler_sheet_node
from .base import ArrayPath, Order, State, SteppedSolver, register

KERNELS = "fhnpde.solvers.explicit_numba"


def diffusion_limit(dx: float, diffusivity: float) -> float | None:
    """dx^2 / (2 D), the forward-Euler limit of the three-point Laplacian."""
    return None if diffusivity == 0 else dx * dx / (2.0 * diffusivity)


def sheet_diffusion_limit(dx: float, dy: float, diffusivity: float) -> float | None:
    """dx^2 dy^2 / (2 D (dx^2 + dy^2)), the forward-Euler limit of the five-point
    Laplacian."""
    if diffusivity == 0:
        return None
    return 1.0 / (2.0 * diffusivity * (1.0 / (dx * dx) + 1.0 / (dy * dy)))


class ArraySteps(ArrayPath):
    """The array path: :func:`~fhnpde.schemes.forward_euler_node` on whole arrays of the
    namespace ``xp``, one step at a time."""

    def advance(self, state, t, dt, nsteps):
        s, xp = self.solver, self.xp
        problem = s.problem
        v, w = state.v, state.w
        for i in range(nsteps):
            left, right = problem.grid.neighbours(v, xp)
            current = s.asarray(problem.current.current(t + i * dt))
            v, w = forward_euler_node(left, v, right, w, current, s.code, s.params, dt,
                                      problem.diffusion, s.inv_dx2)
        return State(v, w)


class CompiledSteps:
    """The numba path: runs shorter than the threading threshold go in whole runs of
    steps with an unchanging current, one serial call each; long ones one threaded call a
    step. The kernels are named by ``serial`` and ``parallel``; :meth:`kernel_args` gives
    the arguments after ``(code, v, w, current)``."""

    serial = "explicit_advance_serial"
    parallel = "explicit_step_parallel"

    def __init__(self, solver):
        self.solver = solver
        self.kernels = native.kernels(KERNELS)
        # the kernel is loaded (natively, or by numba) with the solver, not in the time loop
        big = solver.problem.grid.size >= PARALLEL_MIN_NODES
        self.kernels.load(self.parallel if big else self.serial)

    def kernel_args(self, dt):
        s = self.solver
        g0, gn = s.problem.grid.ghosts
        return (s.params, dt, s.problem.diffusion, s.inv_dx2, g0, gn)

    def advance(self, state, t, dt, nsteps):
        s, k = self.solver, self.kernels
        problem = s.problem
        v, w = state.v.copy(), state.w.copy()
        out_v, out_w = np.empty_like(v), np.empty_like(w)
        args = self.kernel_args(dt)
        if v.size < PARALLEL_MIN_NODES:
            serial = getattr(k, self.serial)
            for first, count in problem.current.segments(t, dt, nsteps):
                current = problem.current.current(t + first * dt)
                serial(s.code, v, w, current, *args, count, out_v, out_w)
                v, out_v = out_v, v
                w, out_w = out_w, w
            return State(v, w)
        parallel = getattr(k, self.parallel)
        for i in range(nsteps):
            current = problem.current.current(t + i * dt)
            parallel(s.code, v, w, current, *args, out_v, out_w)
            v, out_v = out_v, v
            w, out_w = out_w, w
        return State(v, w)


@register
class ExplicitSolver(SteppedSolver):
    name = "explicit"
    geometry = "cable"
    order = Order(time=1, space=2)

    compiled_steps, array_steps = CompiledSteps, ArraySteps

    def __init__(self, problem, options=None):
        super().__init__(problem, options)
        self.inv_dx2 = 1.0 / problem.grid.dx**2
        self.params = tuple(float(x) for x in problem.kinetics.values)
        self.code = problem.kinetics.family.code
        self.steps = (self.compiled_steps(self) if self.backend == "numba"
                      else self.array_steps(self))

    def stability_limit(self, dt):
        return diffusion_limit(self.problem.grid.dx, self.problem.diffusion)

    def limit_formula(self):
        return "dx^2 / (2 D)"



class SheetArraySteps(ArrayPath):
    """The array path on a sheet: :func:`~fhnpde.schemes.forward_euler_sheet_node` on whole
    ``(ny, nx)`` arrays of the namespace ``xp``."""

    def advance(self, state, t, dt, nsteps):
        s, xp = self.solver, self.xp
        problem = s.problem
        v, w = state.v, state.w
        for i in range(nsteps):
            left, right, below, above = problem.grid.neighbours(v, xp)
            current = s.asarray(problem.current.current(t + i * dt))
            v, w = forward_euler_sheet_node(left, right, below, above, v, w, current, s.code,
                                            s.params, dt, problem.diffusion, s.inv_dx2,
                                            s.inv_dy2)
        return State(v, w)


class SheetCompiledSteps(CompiledSteps):
    """The numba path on a sheet: as :class:`CompiledSteps`, the large sheets' calls threaded
    over blocks of rows."""

    serial = "sheet_advance_serial"
    parallel = "sheet_step_parallel"

    def kernel_args(self, dt):
        s = self.solver
        (gx0, gxn), (gy0, gyn) = (axis.ghosts for axis in s.problem.grid.axes)
        return (s.params, dt, s.problem.diffusion, s.inv_dx2, s.inv_dy2, gx0, gxn, gy0, gyn)


@register
class ExplicitSheetSolver(ExplicitSolver):
    """Forward Euler with the five-point Laplacian on a sheet (see the module docstring)."""

    geometry = "sheet"
    compiled_steps, array_steps = SheetCompiledSteps, SheetArraySteps

    def __init__(self, problem, options=None):
        self.inv_dy2 = 1.0 / problem.grid.dy**2
        super().__init__(problem, options)

    def stability_limit(self, dt):
        grid = self.problem.grid
        return sheet_diffusion_limit(grid.dx, grid.dy, self.problem.diffusion)

    def limit_formula(self):
        return "dx^2 dy^2 / (2 D (dx^2 + dy^2))"
