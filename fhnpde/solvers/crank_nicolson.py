r"""Crank–Nicolson (the trapezoidal rule in time) with Newton's method, for cables and cells.

**Cable.** Central differences in space and the trapezoidal rule in time for both variables
(Crank & Nicolson 1947; for reaction–diffusion systems e.g. Hundsdorfer & Verwer,
*Numerical Solution of Time-Dependent Advection-Diffusion-Reaction Equations*, 2003, II.1):

.. math::

    v^{n+1} - v^n = \tfrac{\Delta t}{2}\big(D L v^{n+1} + f(v^{n+1}, w^{n+1}, I^{n+1})
                    + D L v^n + f(v^n, w^n, I^n)\big)

    w^{n+1} - w^n = \tfrac{\Delta t}{2}\big(g(v^{n+1}, w^{n+1}) + g(v^n, w^n)\big)

with ``L`` the three-point Laplacian read through the grid's ghost nodes (mirror node for
no-flux ends: second order; a ring for ``periodic``). The recovery ``g = alpha v - beta w +
delta`` is affine in ``w``, so the second equation gives ``w^{n+1}`` as an affine function of
``v^{n+1}`` at every node,

.. math::

    w^{n+1} = c_0 + c_1 v^{n+1},\qquad
    c_0 = \frac{w^n + \tfrac{\Delta t}{2}(g^n + \delta)}{1 + \tfrac{\Delta t}{2}\beta},\qquad
    c_1 = \frac{\tfrac{\Delta t}{2}\alpha}{1 + \tfrac{\Delta t}{2}\beta},

and substituting it leaves one nonlinear equation per node for ``v^{n+1}``,
``F(v) = v - (Δt/2)(D L v + f(v, c_0 + c_1 v, I^{n+1})) - [v^n + (Δt/2)(D L v^n + f^n)] = 0``,
whose Jacobian ``I - (Δt/2) D L - (Δt/2) diag(f_v + f_w c_1)`` is tridiagonal (plus two
corner entries on a ring, handled by the Sherman–Morrison formula). Newton's method starts
from the previous steps and stops when the error left in the step is estimated to be below
``rtol * max(1, max|v|)`` (``NewtonOptions.rtol``, ``solver.newton.rtol`` in a case; the
``1`` keeps the test meaningful near the resting state ``v = 0``); after ``max_iter``
iterations without that, the run fails (exit status 1).

*Starting guess* (``NewtonOptions.predictor``): ``extrapolate`` (default) starts from the
line through the last two steps, ``2 v^n - v^{n-1}``, whose error is O(Δt²) instead of the
O(Δt) of ``previous`` (``v^n``). Only the guess changes, not the equations, so the
converged solution is the same to within the Newton tolerance. The first step of every
``advance`` call (one per output interval) starts from ``v^n``, which keeps ``advance`` a
pure function of the state.

*Stopping* (:func:`fhnpde.schemes.newton_error_left`): Newton converges quadratically, so
after an update δ the error left is about ``K |δ|²``, the size of the update that would
come next. ``K`` is measured in the run, as ``|δ_k| / |δ_(k-1)|²`` whenever a step takes
two iterations, and the largest value seen is kept (until the first measurement the error
left is taken to be ``|δ|`` itself). With a good starting guess the first update is already
small, so most
steps end after one iteration, where testing the update itself against ``rtol`` always
took a second one just to see it small. On the divergent case (nx = 801, t = 200) with the
default ``rtol = 1e-8``: iterations per step 2.0 at Δt = 0.5 .. 0.2, 1.1 at Δt = 0.125,
1.0 at Δt <= 0.1, and the fronts lie within 1.4e-9 (Δt = 0.5), 1.3e-10 (0.2), 9.4e-6
(0.125), 3.9e-6 (0.1) of a solve at ``rtol = 1e-12``, against time errors of 0.24 .. 0.0095
at those steps. On oscillating cells (``cell_ensemble.yaml``, Δt = 0.05, t = 20) the default
leaves 3e-6, 0.14 % of the time error.

Second order in time and in space; no stability limit (A-stable), but Newton needs the
Jacobian to stay diagonally dominant, which holds for ``Δt/2 max f_v < 1``.

**Point models.** The same trapezoidal rule per cell, ``y^{n+1} = y^n + (Δt/2)(F(y^{n+1}) +
F(y^n))`` with ``y = (v, w)``, solved by Newton with the 2x2 Jacobian inverted in closed form
(Cramer's rule), batched over the ensemble (numba: one member per thread). Second order.

The node formulas (:mod:`fhnpde.schemes`) are the single copy used by the array path
(vectorised over nodes or members) and by the numba kernels of
:mod:`fhnpde.solvers.crank_nicolson_numba`; the Laplacian's bands and the ring's corner
correction are those of :mod:`fhnpde.operators`.
"""

from __future__ import annotations

import numpy as np

from .. import native
from ..backends import kernels
from ..errors import NumericalFailure
from ..models import reaction_by_code, recovery_by_code
from ..operators import laplacian_bands, solve_with_corners
from ..schemes import (
    cn_known_part,
    cn_newton_node,
    newton_error_left,
    newton_error_left_batch,
    newton_guess,
    trapezoid_newton_point,
    trapezoid_w_affine,
)
from .base import ArrayPath, Order, Scratch, State, SteppedSolver, register
from .ode import PointSolver
from .options import tridiagonal_method

KERNELS = "fhnpde.solvers.crank_nicolson_numba"

#: rows of n floats the cable kernel works in (``cn_cable_advance``'s ``work``)
CN_WORK = 13

def newton_failure(t: float, dt: float, iterations: int, update: float,
                   where: str = "") -> NumericalFailure:
    return NumericalFailure(
        f"Newton's method did not converge in the Crank–Nicolson step from t = {t:g} "
        f"(dt = {dt:g}{where}): the update was still {update:.3g} after {iterations} "
        "iterations; lower time.dt or raise solver.newton.max_iter / solver.newton.rtol"
    )


class NewtonCounters:
    """Newton iterations per step, kept in ``solver.counters`` for the store's stats; sets
    ``self.newton`` (the options of Newton's method) after the solver's own set-up."""

    def __init__(self, problem, options=None):
        super().__init__(problem, options)
        self.newton = self.options.newton
        self.counters.update(newton_iterations=0, newton_steps=0, newton_max_per_step=0)

    def count_newton(self, total: int, steps: int, most: int) -> None:
        """Add ``total`` iterations over ``steps`` (member-)steps, at most ``most`` in one."""
        c = self.counters
        c["newton_iterations"] = int(c.get("newton_iterations", 0) + int(total))
        c["newton_steps"] = int(c.get("newton_steps", 0) + int(steps))
        c["newton_max_per_step"] = int(max(c.get("newton_max_per_step", 0), int(most)))

    def stats(self):
        out = dict(self.counters)
        if out.get("newton_steps"):
            out["newton_mean_per_step"] = round(out["newton_iterations"] / out["newton_steps"], 4)
        return out


# --- cable ----------------------------------------------------------------------------------


class TridiagonalCable(SteppedSolver):
    """Set-up shared by the implicit cable solvers (Crank–Nicolson, staggered CN, SDIRK):
    tridiagonal method, ``1/dx²``, kinetics, Laplacian bands and the operator
    ``-theta Δt D L``. Subclasses name ``theta`` and their step classes, ``compiled_steps``
    (backend numba with tridiagonal thomas) and ``array_steps`` (every other combination).
    """

    geometry = "cable"
    #: the implicit operator is ``-theta Δt D L``
    theta: float = 0.5
    #: each solver's step classes: the compiled kernel's and the array code's
    compiled_steps: type
    array_steps: type

    def __init__(self, problem, options=None):
        super().__init__(problem, options)
        # the compiled kernels run their own Thomas sweep: the method is not loaded for them
        compiled = self.backend == "numba" and self.options.tridiagonal == "thomas"
        self.method = tridiagonal_method(self.options.tridiagonal, self.backend, self.xp,
                                         load=not compiled)
        self.inv_dx2 = 1.0 / problem.grid.dx**2
        self.code = problem.kinetics.family.code
        self.params = tuple(float(x) for x in problem.kinetics.values)
        self.recovery = tuple(float(x) for x in recovery_by_code(self.code, self.params))
        self.lap = laplacian_bands(problem.grid)
        self.steps = (self.compiled_steps if compiled else self.array_steps)(self)

    def operator(self, dt):
        """Bands and corners of ``-theta Δt D L`` (constant over a run at fixed dt)."""
        if getattr(self, "_op_dt", None) != dt:
            scale = -self.theta * dt * self.problem.diffusion
            self._op = tuple(scale * b for b in self.lap)
            self._op_dt = dt
        return self._op


class ArrayCableSteps(ArrayPath):
    """Crank–Nicolson steps as array code on ``xp`` with any tridiagonal method."""

    def advance(self, state, t, dt, nsteps):
        before, k_est = None, 0.0
        for s in range(nsteps):
            (state, k_est), before = self.step(state, before, k_est, t + s * dt, dt), state.v
        return state

    def step(self, state, before, k_est, t, dt):
        """One step: (new state, updated ``k_est``); ``before`` is v one step earlier (None:
        not known), ``k_est`` Newton's constant so far (:func:`newton_error_left`)."""
        from .. import tridiagonal

        s, xp = self.solver, self.xp
        newton = s.newton
        grid, D, h, p = s.problem.grid, s.problem.diffusion, 0.5 * dt, s.params
        alpha, beta, delta, dfdw = s.recovery
        cur = s.problem.current
        i0 = s.asarray(cur.current(t))
        i1 = s.asarray(cur.current(t + dt))
        v0, w0 = state.v, state.w
        f0, g0 = reaction_by_code(s.code, v0, w0, i0, p)
        left, right = grid.neighbours(v0, xp)
        known = cn_known_part(left, v0, right, f0, h, D, s.inv_dx2)
        c0, c1 = trapezoid_w_affine(w0, g0, h, alpha, beta, delta)
        op_lower, op_diag, op_upper, top, bottom = (
            s.asarray(b) if np.ndim(b) else b for b in s.operator(dt)
        )

        def linear_solve(lower, diag, upper, rhs):
            return tridiagonal.solve(lower, diag, upper, rhs, method=s.method)

        v = newton_guess(v0, before, newton.extrapolate and before is not None)
        v = xp.asarray(v, copy=True) if v is v0 else v
        previous = 0.0
        for it in range(1, newton.max_iter + 1):
            left, right = grid.neighbours(v, xp)
            residual, jdiag = cn_newton_node(s.code, left, v, right, known, c0, c1, i1, p,
                                             dfdw, h, D, s.inv_dx2)
            try:
                update = solve_with_corners(linear_solve, op_lower, jdiag + op_diag, op_upper,
                                            top, bottom, -residual, xp)
            except ArithmeticError as exc:  # PivotError: the Jacobian lost dominance
                raise NumericalFailure(
                    f"the Newton system of the Crank–Nicolson step from t = {t:g} could not be "
                    f"solved ({exc}); lower time.dt"
                ) from None
            v = v + update
            size = float(xp.max(xp.abs(update)))
            if not np.isfinite(size):
                break
            scale = max(1.0, float(xp.max(xp.abs(v))))
            error, k_est = newton_error_left(size, previous, k_est, scale, newton.quadratic)
            if error <= newton.rtol * scale:
                s.count_newton(it, 1, it)
                return State(v, c0 + c1 * v), k_est
            previous = size
        raise newton_failure(t, dt, it, size)


class CompiledCableSteps:
    """Whole Crank–Nicolson steps in one numba kernel (Newton + Thomas inside,
    :func:`fhnpde.solvers.crank_nicolson_numba.cn_cable_advance`)."""

    def __init__(self, solver):
        self.solver = solver
        self.kernels = native.kernels(KERNELS)
        self.kernels.load("cn_cable_advance")  # with the solver, not in the time loop
        # arrays rather than tuples: numba's dispatcher types a tuple argument slowly
        self.params = np.array(solver.params)
        self.recovery = np.array(solver.recovery)
        self.scratch = Scratch()

    def advance(self, state, t, dt, nsteps):
        s = self.solver
        newton = s.newton
        cur = s.problem.current
        op_lower, op_diag, op_upper, top, bottom = s.operator(dt)
        out_v, out_w = np.empty_like(state.v), np.empty_like(state.w)
        iterations = self.scratch.zeros("iterations", (nsteps,), np.int64)
        work = self.scratch.empty("work", (CN_WORK, state.v.shape[0]))
        cell = self.scratch.empty("cell", (1,), np.int64)
        status, failed_step, info, value = self.kernels.cn_cable_advance(
            s.code, state.v, state.w, cur.base, cur.mask_rows, cur.t0, cur.t1, cur.amplitude,
            self.params, self.recovery, float(t), float(dt), int(nsteps),
            float(s.problem.diffusion), s.inv_dx2, *s.problem.grid.ghosts,
            op_lower, op_diag, op_upper, float(top), float(bottom),
            float(newton.rtol), int(newton.max_iter), newton.extrapolate, newton.quadratic,
            out_v, out_w, iterations, work, cell,
        )
        done = iterations[: failed_step if status else nsteps]
        s.count_newton(done.sum(), done.size, done.max(initial=0))
        if status == 1:
            raise newton_failure(t + failed_step * dt, dt, newton.max_iter, value)
        if status == 2:
            raise NumericalFailure(
                f"the Newton system of the Crank–Nicolson step from t = {t + failed_step * dt:g} "
                f"has a zero or non-finite pivot at row {info} (Thomas's algorithm does not "
                "pivot); lower time.dt"
            )
        return State(out_v, out_w)


# --- point models ---------------------------------------------------------------------------


@register
class CrankNicolsonCable(NewtonCounters, TridiagonalCable):
    """Crank–Nicolson with Newton on a uniform cable; tridiagonal solves by
    ``options.tridiagonal``.

    With backend numba and tridiagonal thomas whole steps run in one compiled kernel
    (residual, Jacobian, Thomas's sweep: :class:`CompiledCableSteps`); every other
    combination runs the same formulas as array code and solves through
    :func:`fhnpde.tridiagonal.solve` (:class:`ArrayCableSteps`).
    """

    name = "crank-nicolson"
    order = Order(time=2, space=2)
    theta = 0.5

    compiled_steps, array_steps = CompiledCableSteps, ArrayCableSteps


@register
class CrankNicolsonPoint(NewtonCounters, PointSolver):
    """The trapezoidal rule with a 2x2 Newton solve per member, batched over the ensemble."""

    name = "crank-nicolson"
    order = Order(time=2)

    def __init__(self, problem, options=None):
        super().__init__(problem, options)
        if self.backend != "numba":
            self.steps = ArrayPointSteps(self)

    def compiled_steps(self):
        return CompiledPointSteps(self)


class ArrayPointSteps(ArrayPath):
    """Trapezoidal steps of every member as array code on ``xp``."""

    def advance(self, state, t, dt, nsteps):
        xp = self.xp
        s = self.solver
        p = tuple(s.asarray(row) for row in s.params)
        v, w = state.v, state.w
        before, k_est = None, xp.zeros_like(v)
        for i in range(nsteps):
            (v, w, k_est), before = self.step(v, w, before, k_est, p, t + i * dt, dt), (v, w)
        return State(v, w)

    def step(self, v0, w0, before, k_est, p, t, dt):
        """One step of every member: (v, w, k_est); ``before`` is (v, w) one step earlier
        (None: not known), ``k_est`` each member's Newton constant so far
        (:func:`newton_error_left_batch`)."""
        s, xp, h = self.solver, self.xp, 0.5 * dt
        newton = s.newton
        i0 = s.current(t)
        i1 = s.current(t + dt)
        f0, g0 = reaction_by_code(s.code, v0, w0, i0, p)
        if newton.extrapolate and before is not None:
            v, w = newton_guess(v0, before[0], True), newton_guess(w0, before[1], True)
        else:
            v, w = xp.asarray(v0, copy=True), xp.asarray(w0, copy=True)
        active = xp.ones_like(v, dtype=xp.bool)
        previous = xp.zeros_like(v)
        total = 0
        for it in range(1, newton.max_iter + 1):
            total += int(xp.count_nonzero(active))
            dv, dw = trapezoid_newton_point(s.code, v, w, v0, w0, f0, g0, i1, p, h)
            dv = xp.where(active, dv, 0.0)
            dw = xp.where(active, dw, 0.0)
            v, w = v + dv, w + dw
            scale = xp.maximum(1.0, xp.maximum(xp.abs(v), xp.abs(w)))
            size = xp.maximum(xp.abs(dv), xp.abs(dw))  # 0 for members already done
            error, k_est = newton_error_left_batch(size, previous, k_est, scale,
                                                   newton.quadratic, xp)
            active = active & ~(error <= newton.rtol * scale)
            previous = size
            if not bool(xp.any(active)):
                s.count_newton(total, v.shape[0], it)
                return v, w, k_est
        bad = int(xp.argmax(xp.where(active, 1, 0)))
        size = float(max(abs(float(dv[bad])), abs(float(dw[bad]))))
        raise newton_failure(t, dt, newton.max_iter, size, where=f", member {bad}")


class CompiledPointSteps:
    """Trapezoidal steps of every member in a numba kernel, one member per thread."""

    def __init__(self, solver):
        self.solver = solver
        self.kernels = kernels(KERNELS)

    def advance(self, state, t, dt, nsteps):
        s = self.solver
        newton = s.newton
        cur = s.problem.current
        m = state.v.shape[0]
        out_v, out_w = np.empty_like(state.v), np.empty_like(state.w)
        total = np.zeros(m, dtype=np.int64)  # per member: iterations over the nsteps,
        steps = np.zeros(m, dtype=np.int64)  # steps completed,
        most = np.zeros(m, dtype=np.int64)  # most iterations in one step,
        failed = np.full(m, -1, dtype=np.int64)  # step that failed (-1: none),
        update = np.zeros(m)  # and the last update there
        self.kernels.cn_point_advance(
            s.code, state.v, state.w, cur.base, cur.t0, cur.t1, cur.amplitude, s.params,
            float(t), float(dt), int(nsteps), float(newton.rtol), int(newton.max_iter),
            newton.extrapolate, newton.quadratic,
            out_v, out_w, total, steps, most, failed, update,
        )
        s.count_newton(total.sum(), steps.sum(), most.max(initial=0))
        bad = np.flatnonzero(failed >= 0)
        if bad.size:
            j = int(bad[0])
            raise newton_failure(t + int(failed[j]) * dt, dt, newton.max_iter,
                                 float(update[j]), where=f", member {j}")
        return State(out_v, out_w)
