"""Forward Euler in time, second-order central differences in space, on a uniform cable.

.. math::

    v_i^{n+1} = v_i^n + \\Delta t \\left( D \\frac{v_{i-1}^n - 2 v_i^n + v_{i+1}^n}{\\Delta x^2}
                + f(v_i^n, w_i^n, I_i^n) \\right), \\qquad
    w_i^{n+1} = w_i^n + \\Delta t\\, g(v_i^n, w_i^n)

Order 1 in time, 2 in space (with the mirror-node boundary). Stable for
``dt <= dx^2 / (2 D)`` (the diffusion part; von Neumann analysis of the heat equation).

With ``solver.space_order: 4`` the second difference is the fourth-order five-point one,
``(-v_{i-2} + 16 v_{i-1} - 30 v_i + 16 v_{i+1} - v_{i+2}) / (12 dx^2)`` (the nodes two away
from an end read through the outer ghost indices, :mod:`fhnpde.grid`): order 1 in time, 4 in
space. Its symbol ``(30 - 32 cos(k dx) + 2 cos(2 k dx)) / (12 dx^2)`` is largest at the
checkerboard, ``16 / (3 dx^2)``, so forward Euler is stable for ``dt <= 3 dx^2 / (8 D)``;
with dt tied to dx^2 at the limit the temporal error is O(dx^2), but its constant is small:
on the planar Nagumo front of ``benchmarks/sheet_peers.py`` the front error at dx = 2 falls
from 1.18 (second order) to 0.26, the second-order error at dx = 1.

On a sheet (DESIGN section 9) the Laplacian is the five-point stencil
``(v_{i-1,j} - 2 v_{ij} + v_{i+1,j}) / dx^2 + (v_{i,j-1} - 2 v_{ij} + v_{i,j+1}) / dy^2``;
its most negative eigenvalue is ``-4 / dx^2 - 4 / dy^2`` (the checkerboard mode), so forward
Euler is stable for ``dt <= dx^2 dy^2 / (2 D (dx^2 + dy^2))`` (with dx = dy: dx^2 / (4 D)).
The fourth-order sheet stencil is the sum of the two directions' fourth-order differences
(the nine-point cross); stable for ``dt <= 3 / (8 D (1 / dx^2 + 1 / dy^2))``.
"""

from __future__ import annotations

import numpy as np

from .. import native
from ..backends import PARALLEL_MIN_NODES
from ..schemes import forward_euler_update
from .base import ArrayPath, Order, State, SteppedSolver, register
from .options import OptionError

KERNELS = "fhnpde.solvers.explicit_numba"


#: the space orders of the explicit solver's stencils
SPACE_ORDERS = (2, 4)

#: the largest eigenvalue of minus each stencil's second difference, times dx^2 (the
#: checkerboard mode): 4 for the three-point difference, 16/3 for the fourth-order one
CHECKERBOARD = {2: 4.0, 4: 16.0 / 3.0}


def diffusion_limit(dx: float, diffusivity: float, space_order: int = 2) -> float | None:
    """The forward-Euler limit of a cable's second difference: 2 / (D lambda_max), that is
    dx^2 / (2 D) (three-point) or 3 dx^2 / (8 D) (fourth order)."""
    if diffusivity == 0:
        return None
    return 2.0 * dx * dx / (diffusivity * CHECKERBOARD[space_order])


def sheet_diffusion_limit(dx: float, dy: float, diffusivity: float,
                          space_order: int = 2) -> float | None:
    """The forward-Euler limit of a sheet's Laplacian: dx^2 dy^2 / (2 D (dx^2 + dy^2))
    (five-point), 3 / (8 D (1/dx^2 + 1/dy^2)) (fourth order)."""
    if diffusivity == 0:
        return None
    return 2.0 / (diffusivity * CHECKERBOARD[space_order] * (1.0 / (dx * dx) + 1.0 / (dy * dy)))


class ArraySteps(ArrayPath):
    """The array path, cable or sheet: :func:`~fhnpde.schemes.forward_euler_update` with the
    grid's Laplacian of the solver's space order (:meth:`fhnpde.grid.UniformGrid.laplacian`,
    :meth:`fhnpde.grid.SheetGrid.laplacian`) on whole arrays of the namespace ``xp``, one
    step at a time: the very operations of the numba kernels' node formulas, so the two
    paths agree bit for bit."""

    def advance(self, state, t, dt, nsteps):
        s, xp = self.solver, self.xp
        problem = s.problem
        v, w = state.v, state.w
        for i in range(nsteps):
            current = s.asarray(problem.current.current(t + i * dt))
            v, w = forward_euler_update(problem.grid.laplacian(v, xp, s.space_order), v, w,
                                        current, s.code, s.params, dt, problem.diffusion)
        return State(v, w)


class CompiledSteps:
    """The numba path: runs shorter than the threading threshold go in whole runs of
    steps with an unchanging current, one serial call each; long ones one threaded call a
    step. ``kernels_by_order`` names the (serial, threaded) kernels of each space order;
    their arguments are ``(code, v, w, current, params, dt)`` and :meth:`arguments_after_dt`,
    which are fixed for the solver's life and so gathered once, with the kernel, in the
    constructor (a run of 30 steps on a 31 x 31 sheet lasts about 60 us; profiled, the
    kernel's lookup and the ghost indices' properties at every call were about 40 % of an
    ``advance``'s cost besides its kernel)."""

    kernels_by_order = {2: ("explicit_advance_serial", "explicit_step_parallel"),
                        4: ("explicit4_advance_serial", "explicit4_step_parallel")}

    def __init__(self, solver):
        self.solver = solver
        self.kernels = native.kernels(KERNELS)
        # the kernel is loaded (natively, or by numba) with the solver, not in the time loop
        self.threaded = solver.problem.grid.size >= PARALLEL_MIN_NODES
        serial, threaded = self.kernels_by_order[solver.space_order]
        self.kernel = self.kernels.load(threaded if self.threaded else serial)
        self.after_dt = self.arguments_after_dt()

    def arguments_after_dt(self) -> tuple:
        s = self.solver
        grid = s.problem.grid
        outer = grid.outer_ghosts if s.space_order == 4 else ()
        return (s.problem.diffusion, s.inv_dx2, *grid.ghosts, *outer)

    def advance(self, state, t, dt, nsteps):
        s, kernel = self.solver, self.kernel
        problem = s.problem
        v, w = state.v.copy(), state.w.copy()
        out_v, out_w = np.empty_like(v), np.empty_like(w)
        args = (s.params, dt, *self.after_dt)
        if not self.threaded:
            for first, count in problem.current.segments(t, dt, nsteps):
                current = problem.current.current(t + first * dt)
                kernel(s.code, v, w, current, *args, count, out_v, out_w)
                v, out_v = out_v, v
                w, out_w = out_w, w
            return State(v, w)
        for i in range(nsteps):
            current = problem.current.current(t + i * dt)
            kernel(s.code, v, w, current, *args, out_v, out_w)
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
        self.space_order = self.options.space_order
        if self.space_order not in SPACE_ORDERS:
            raise OptionError(f"the explicit solver's stencils are of order "
                              f"{' or '.join(map(str, SPACE_ORDERS))} in space, not "
                              f"{self.space_order}", option="space_order")
        if self.space_order != 2:
            if problem.grid.boundary_order == 1 and not problem.grid.periodic:
                raise OptionError("the fourth-order stencil reads the mirror nodes two away "
                                  "from a no-flux end: it needs domain.boundary_order: 2, "
                                  "not 1", option="space_order")
            self.order = Order(time=1, space=self.space_order)
        self.inv_dx2 = 1.0 / problem.grid.dx**2
        self.params = tuple(float(x) for x in problem.kinetics.values)
        self.code = problem.kinetics.family.code
        self.steps = (self.compiled_steps(self) if self.backend == "numba"
                      else self.array_steps(self))

    def stability_limit(self, dt):
        return diffusion_limit(self.problem.grid.dx, self.problem.diffusion, self.space_order)

    def limit_formula(self):
        return "dx^2 / (2 D)" if self.space_order == 2 else "3 dx^2 / (8 D)"



class SheetCompiledSteps(CompiledSteps):
    """The numba path on a sheet: as :class:`CompiledSteps`, the large sheets' calls threaded
    over blocks of rows."""

    kernels_by_order = {2: ("sheet_advance_serial", "sheet_step_parallel"),
                        4: ("sheet4_advance_serial", "sheet4_step_parallel")}

    def arguments_after_dt(self) -> tuple:
        s = self.solver
        edges = tuple(i for axis in s.problem.grid.axes
                      for i in (axis.ghosts + axis.outer_ghosts if s.space_order == 4
                                else axis.ghosts))
        return (s.problem.diffusion, s.inv_dx2, s.inv_dy2, *edges)


@register
class ExplicitSheetSolver(ExplicitSolver):
    """Forward Euler with the five-point Laplacian on a sheet (see the module docstring)."""

    geometry = "sheet"
    compiled_steps = SheetCompiledSteps

    def __init__(self, problem, options=None):
        self.inv_dy2 = 1.0 / problem.grid.dy**2
        super().__init__(problem, options)

    def stability_limit(self, dt):
        grid = self.problem.grid
        return sheet_diffusion_limit(grid.dx, grid.dy, self.problem.diffusion, self.space_order)

    def limit_formula(self):
        return ("dx^2 dy^2 / (2 D (dx^2 + dy^2))" if self.space_order == 2
                else "3 dx^2 dy^2 / (8 D (dx^2 + dy^2))")
