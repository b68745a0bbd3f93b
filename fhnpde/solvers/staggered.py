r"""Staggered, linearly implicit Crank–Nicolson: NEURON's scheme, one tridiagonal solve a step.

NEURON's second-order method (``secondorder = 2``; Hines 1984, *Int. J. Bio-Medical
Computing* 15, 69; Hines & Carnevale, *The NEURON Book*, 2006, 4.3) solves the cable
equation by Crank–Nicolson with the membrane current linearised about the present voltage,
and advances the gating (here recovery) variables on a grid staggered by half a step, each
over a step centred on the new voltage. For ``v_t = D v_xx + f(v, w, I)``,
``w_t = g(v, w) = alpha v - beta w + delta`` with ``w`` held at ``t_n + Δt/2``:

.. math::

    \big(1 - \tfrac{\Delta t}{2}(D L + \operatorname{diag} f_v)\big)\,(v^{n+1} - v^n)
        = \Delta t\,\big(D L v^n + f(v^n, w^{n+1/2}, I^{n+1/2})\big)

    w^{n+3/2} = w^{n+1/2} + \Delta t\, g\big(v^{n+1}, \tfrac12 (w^{n+1/2} + w^{n+3/2})\big)

with ``f_v`` taken at ``(v^n, w^{n+1/2})``. The first line is the linearly implicit
trapezoidal rule (a one-stage Rosenbrock method with γ = 1/2): expanding
``(1 - (Δt/2) J)^{-1}`` shows ``v^{n+1} = v^n + Δt G + (Δt²/2)(G_v G + G_t) + O(Δt³)``, the
Taylor series of the exact solution to second order, with no Newton iteration. The second
is the trapezoidal rule for the recovery with ``v`` held at its value in the middle of the
recovery's step (NEURON integrates it exactly, ``cnexp``; both are second order). The matrix
is the Crank–Nicolson one plus the linearised current on its diagonal, tridiagonal (a ring
adds corners: Sherman–Morrison, :mod:`fhnpde.operators`): one solve per step.

The state handed in and out is ``(v, w)`` at one time, as for every solver: ``advance`` first
moves ``w`` half a step ahead with ``v`` held (:func:`fhnpde.schemes.staggered_w_step` over
``Δt/2``) and at the end moves it back by the exact inverse of that map, so calling
``advance`` once per output interval gives the same run as one call (to round-off).

Second order in time and space (the three-point Laplacian with mirror-node ends); no
stability limit from the diffusion (the trapezoidal rule is A-stable). Unlike Crank–Nicolson
with Newton it cannot fail to converge: the only failure is a zero pivot, which needs
``(Δt/2) f_v`` near 1.
"""

from __future__ import annotations

import numpy as np

from .. import native
from ..errors import NumericalFailure
from ..operators import solve_with_corners
from ..schemes import linear_cn_node, staggered_w_step
from .base import ArrayPath, Order, Scratch, State, register
from .crank_nicolson import TridiagonalCable

KERNELS = "fhnpde.solvers.staggered_numba"

#: rows of n floats the kernel works in (``staggered_cable_advance``'s ``work``)
STAGGERED_WORK = 8


def pivot_failure(t: float, detail: str) -> NumericalFailure:
    return NumericalFailure(
        f"the linear system of the staggered Crank–Nicolson step from t = {t:g} could not be "
        f"solved ({detail}); lower time.dt"
    )


class ArrayStaggeredSteps(ArrayPath):
    """Staggered Crank–Nicolson steps as array code on ``xp`` with any tridiagonal method."""

    def advance(self, state, t, dt, nsteps):
        from .. import tridiagonal

        s, xp = self.solver, self.xp
        alpha, beta, delta, _ = s.recovery
        grid, cur = s.problem.grid, s.problem.current
        op_lower, op_diag, op_upper, top, bottom = (
            s.asarray(b) if np.ndim(b) else b for b in s.operator(dt))

        def linear_solve(lower, diag, upper, rhs):
            return tridiagonal.solve(lower, diag, upper, rhs, method=s.method)

        v = state.v
        w = staggered_w_step(state.w, v, 0.5 * dt, alpha, beta, delta)
        for k in range(nsteps):
            tk = t + k * dt
            im = s.asarray(cur.current(tk + 0.5 * dt))
            left, right = grid.neighbours(v, xp)
            rhs, jd = linear_cn_node(s.code, left, v, right, w, im, s.params, dt,
                                     s.problem.diffusion, s.inv_dx2)
            try:
                update = solve_with_corners(linear_solve, op_lower, jd + op_diag, op_upper,
                                            top, bottom, rhs, xp)
            except ArithmeticError as exc:  # PivotError
                raise pivot_failure(tk, str(exc)) from None
            v = v + update
            w = staggered_w_step(w, v, dt, alpha, beta, delta)
        return State(v, staggered_w_step(w, v, -0.5 * dt, alpha, beta, delta))


class CompiledStaggeredSteps:
    """Whole runs of staggered steps in one numba kernel
    (:func:`fhnpde.solvers.staggered_numba.staggered_cable_advance`)."""

    def __init__(self, solver):
        self.solver = solver
        self.kernels = native.kernels(KERNELS)
        self.kernels.load("staggered_cable_advance")  # with the solver, not in the time loop
        self.params = np.array(solver.params)
        self.recovery = np.array(solver.recovery)
        self.scratch = Scratch()

    def advance(self, state, t, dt, nsteps):
        s = self.solver
        cur = s.problem.current
        op_lower, op_diag, op_upper, top, bottom = s.operator(dt)
        out_v, out_w = np.empty_like(state.v), np.empty_like(state.w)
        work = self.scratch.empty("work", (STAGGERED_WORK, state.v.shape[0]))
        status, step, row, pivot = self.kernels.staggered_cable_advance(
            s.code, state.v, state.w, cur.base, cur.mask_rows, cur.t0, cur.t1, cur.amplitude,
            self.params, self.recovery, float(t), float(dt), int(nsteps),
            float(s.problem.diffusion), s.inv_dx2, *s.problem.grid.ghosts,
            op_lower, op_diag, op_upper, float(top), float(bottom), out_v, out_w, work,
        )
        if status:
            raise pivot_failure(t + step * dt, f"a zero or non-finite pivot {pivot:g} at row "
                                f"{row}; Thomas's algorithm does not pivot")
        return State(out_v, out_w)


@register
class StaggeredCrankNicolson(TridiagonalCable):
    """NEURON's staggered, linearly implicit Crank–Nicolson on a uniform cable.

    With backend numba and tridiagonal thomas whole runs of steps go through one compiled
    kernel (:class:`CompiledStaggeredSteps`); every other combination runs the same formulas
    as array code through :func:`fhnpde.tridiagonal.solve` (:class:`ArrayStaggeredSteps`).
    """

    name = "staggered-cn"
    order = Order(time=2, space=2)

    theta = 0.5

    compiled_steps, array_steps = CompiledStaggeredSteps, ArrayStaggeredSteps
