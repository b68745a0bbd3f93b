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
``rtol * max(1, max|v|)`` (``solver.newton.rtol``; the ``1`` keeps the test meaningful near
the resting state ``v = 0``); after ``solver.newton.max_iter`` iterations without that, the
run fails (exit status 1).

*Starting guess* (``solver.newton.predictor``): ``extrapolate`` (default) starts from the
line through the last two steps, ``2 v^n - v^{n-1}``, whose error is O(Δt²) instead of the
O(Δt) of ``previous`` (``v^n``). Only the guess changes, not the equations, so the
converged solution is the same to within the Newton tolerance. The first step of every
``advance`` call (one per output interval) starts from ``v^n``, which keeps ``advance`` a
pure function of the state.

*Stopping* (:func:`newton_error_left`): Newton converges quadratically, so after an update
δ the error left is about ``K |δ|²``, the size of the update that would come next. ``K`` is
measured in the run, as ``|δ_k| / |δ_(k-1)|²`` whenever a step takes two iterations, and
the largest value seen is kept (until the first measurement the error left is taken to be
``|δ|`` itself). With a good starting guess the first update is already small, so most
steps end after one iteration, where testing the update itself against ``rtol`` always
took a second one just to see it small. On the divergent case (nx = 801, t = 200) with the
default ``rtol = 1e-8``: iterations per step 2.0 at Δt = 0.5 .. 0.2, 1.1 at Δt = 0.125,
1.0 at Δt <= 0.1 (formerly 2.0, 3.0 at Δt = 0.5), and the fronts lie within 1.4e-9 (Δt = 0.5),
1.3e-10 (0.2), 9.4e-6 (0.125), 3.9e-6 (0.1) of a solve at ``rtol = 1e-12``, against time
errors of 0.24 .. 0.0095 at those steps. On oscillating cells (``cell_ensemble.yaml``,
Δt = 0.05, t = 20) the default leaves 3e-6, 0.14 % of the time error.

Second order in time and in space; no stability limit (A-stable), but Newton needs the
Jacobian to stay diagonally dominant, which holds for ``Δt/2 max f_v < 1``.

**Point models.** The same trapezoidal rule per cell, ``y^{n+1} = y^n + (Δt/2)(F(y^{n+1}) +
F(y^n))`` with ``y = (v, w)``, solved by Newton with the 2x2 Jacobian inverted in closed form
(Cramer's rule), batched over the ensemble (numba: one member per thread). Second order.

The plain-Python formulas below are the single copy used by the numpy path (vectorised over
nodes or members) and by the numba kernels of :mod:`fhnpde._kernels_cn`.
"""

from __future__ import annotations

import numpy as np

from ..backends import namespace
from ..case import CaseError
from ..models import (
    dreaction_dv_by_code,
    fitzhugh_recovery,
    nagumo_recovery,
    reaction_by_code,
)
from .base import Order, Solver, State, register
from .ode import PointSolver

# --- the formulas, written once -------------------------------------------------------------


def recovery_by_code(code, p):
    """(alpha, beta, delta, df/dw) of the family ``code``: ``w_t = alpha v - beta w + delta``."""
    if code == 0:
        return nagumo_recovery(p[0], p[1], p[2], p[3])
    return fitzhugh_recovery(p[0], p[1], p[2], p[3])


def trapezoid_w_affine(w0, dw0, half_dt, alpha, beta, delta):
    """(c0, c1) with ``w^{n+1} = c0 + c1 v^{n+1}`` from the trapezoidal rule for the recovery."""
    s = 1.0 / (1.0 + half_dt * beta)
    return (w0 + half_dt * (dw0 + delta)) * s, half_dt * alpha * s


def newton_guess(v, v_before, extrapolate):
    """Newton's starting value for the next step: ``2 v - v_before`` (``extrapolate``) or ``v``."""
    if extrapolate:
        return 2.0 * v - v_before
    return v


# an update this small relative to max(1, max|v|) is round-off: too noisy to measure K from
NEWTON_NOISE = 1e-13


def newton_error_left(size, previous, k_est, scale, quadratic):
    """(estimated error left after an update of max-norm ``size``, updated estimate of K).

    Newton converges quadratically: the next update would be about ``K size²``, and that is
    the error left once this update is applied. ``K`` is measured as ``size / previous²``
    whenever two successive updates of one step are known and both are above round-off
    (``NEWTON_NOISE * scale``), and ``k_est`` keeps the largest value measured so far in the
    call, so the estimate errs on the side of more iterations. Until a first measurement
    (``k_est == 0``), and always when not ``quadratic`` (``solver.newton.stop: update``),
    the error left is taken to be the update itself.
    """
    if not quadratic:
        return size, k_est
    if previous > NEWTON_NOISE * scale and size > NEWTON_NOISE * scale:
        k_est = max(k_est, size / (previous * previous))
    if k_est > 0.0:
        return k_est * size * size, k_est
    return size, k_est


def newton_error_left_batch(size, previous, k_est, scale, quadratic, xp):
    """:func:`newton_error_left` elementwise over arrays (one Newton iteration per member),
    for the array code of the point models; members whose update is 0 (already converged)
    leave their ``k_est`` as it is."""
    if not quadratic:
        return size, k_est
    noise = NEWTON_NOISE * scale
    measured = (previous > noise) & (size > noise)
    with np.errstate(divide="ignore", invalid="ignore"):
        k_est = xp.where(measured, xp.maximum(k_est, size / previous**2), k_est)
    return xp.where(k_est > 0.0, k_est * size * size, size), k_est


def cn_known_part(v_left, v, v_right, dv_react, half_dt, diffusivity, inv_dx2):
    """``v^n + (Δt/2)(D L v^n + f^n)``: the part of the equation known at the start of a step."""
    return v + half_dt * (
        diffusivity * (v_left - 2.0 * v + v_right) * inv_dx2 + dv_react
    )


def cn_newton_node(code, v_left, v, v_right, known, c0, c1, I1, p, dfdw, half_dt, diffusivity,
                   inv_dx2):
    """Residual F at one node and the reaction part of the Jacobian's diagonal there.

    ``F = v - (Δt/2)(D L v + f(v, c0 + c1 v, I)) - known``; the Jacobian's diagonal is the
    returned ``1 - (Δt/2)(f_v + f_w c1)`` plus the constant diffusion part ``-(Δt/2) D L_ii``.
    """
    w = c0 + c1 * v
    f, _ = reaction_by_code(code, v, w, I1, p)
    residual = v - half_dt * (diffusivity * (v_left - 2.0 * v + v_right) * inv_dx2 + f) - known
    dfdv = dreaction_dv_by_code(code, v, w, I1, p) + dfdw * c1
    return residual, 1.0 - half_dt * dfdv


def trapezoid_newton_point(code, v, w, v0, w0, f0, g0, I1, p, half_dt):
    """One Newton update (dv, dw) of one cell's trapezoidal equations (2x2, Cramer's rule).

    Equations: ``r1 = v - v0 - (Δt/2)(f(v, w, I1) + f0) = 0``,
    ``r2 = w - w0 - (Δt/2)(g(v, w) + g0) = 0``; the update solves ``J (dv, dw) = -(r1, r2)``.
    """
    f, g = reaction_by_code(code, v, w, I1, p)
    r1 = v - v0 - half_dt * (f + f0)
    r2 = w - w0 - half_dt * (g + g0)
    alpha, beta, delta, dfdw = recovery_by_code(code, p)
    j11 = 1.0 - half_dt * dreaction_dv_by_code(code, v, w, I1, p)
    j12 = -half_dt * dfdw
    j21 = -half_dt * alpha
    j22 = 1.0 + half_dt * beta
    det = j11 * j22 - j12 * j21
    return (r2 * j12 - r1 * j22) / det, (r1 * j21 - r2 * j11) / det


# --- the diffusion operator as bands ----------------------------------------------------------


def laplacian_bands(grid) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """(lower, diag, upper, top, bottom) of the three-point Laplacian with the grid's ghosts.

    Row i reads ``(v[i-1] - 2 v[i] + v[i+1]) / dx^2`` with the ends read through
    ``grid.ghosts``: the mirror node adds its weight to ``upper[0]`` / ``lower[-1]``, the
    first-order end to the diagonal, a ring to the corners ``top = A[0, n-1]`` and
    ``bottom = A[n-1, 0]`` (zero otherwise). ``lower[0]`` and ``upper[-1]`` are zero.
    """
    n = grid.nx
    s = 1.0 / grid.dx**2
    lower = np.full(n, s)
    diag = np.full(n, -2.0 * s)
    upper = np.full(n, s)
    lower[0] = upper[-1] = 0.0
    top = bottom = 0.0
    g0, gn = grid.ghosts
    if g0 == 1:
        upper[0] += s
    elif g0 == 0:
        diag[0] += s
    else:
        top = s
    if gn == n - 2:
        lower[-1] += s
    elif gn == n - 1:
        diag[-1] += s
    else:
        bottom = s
    return lower, diag, upper, top, bottom


def solve_with_corners(solve, lower, diag, upper, top, bottom, rhs, xp=np):
    """Solve a tridiagonal system with corner entries ``A[0, n-1] = top``, ``A[n-1, 0] = bottom``.

    Sherman–Morrison (Press et al., *Numerical Recipes*, 3rd ed., 2.7.2): with
    ``gamma = -diag[0]``, ``T = A - u v^T`` is tridiagonal for ``u = (gamma, 0.., bottom)``,
    ``v = (1, 0.., top / gamma)``; ``x = y - z (v.y) / (1 + v.z)`` with ``T y = rhs``,
    ``T z = u``, both found by one batched call of ``solve(lower, diag, upper, rhs2)``.
    Without corners it is one plain solve.
    """
    if top == 0.0 and bottom == 0.0:
        return solve(lower, diag, upper, rhs)
    gamma = -diag[0]
    diag = diag.copy()
    diag[0] = diag[0] - gamma
    diag[-1] = diag[-1] - top * bottom / gamma
    u = xp.zeros_like(rhs)
    u[0] = gamma
    u[-1] = bottom
    yz = solve(lower, diag, upper, xp.stack([rhs, u]))
    y, z = yz[0], yz[1]
    fact = (y[0] + top * y[-1] / gamma) / (1.0 + z[0] + top * z[-1] / gamma)
    return y - fact * z


def tridiagonal_method(method: str, backend: str) -> str:
    """The case's tridiagonal method, refused where it cannot run on the backend's arrays."""
    if backend == "cupy" and method != "cyclic-reduction":
        raise CaseError(
            f"{method!r} runs on the CPU; with backend cupy use cyclic-reduction",
            key="solver.tridiagonal",
        )
    return method


def _kernels_cn():
    """The compiled Crank–Nicolson and reaction kernels (imports numba on first use; cached
    like every fhnpde kernel, see :func:`fhnpde.backends.kernels`)."""
    from ..backends import kernels

    return kernels("fhnpde._kernels_cn")


def _numerical_failure(message: str) -> Exception:
    from ..driver import NumericalFailure

    return NumericalFailure(message)


def _newton_failure(t: float, dt: float, iterations: int, update: float, where: str = "") -> Exception:
    return _numerical_failure(
        f"Newton's method did not converge in the Crank–Nicolson step from t = {t:g} "
        f"(dt = {dt:g}{where}): the update was still {update:.3g} after {iterations} "
        "iterations; lower time.dt or raise solver.newton.max_iter / solver.newton.rtol"
    )


class _NewtonCounters:
    """Newton iterations per step, kept in ``solver.counters`` for the store's stats."""

    def _count(self, total: int, steps: int, most: int) -> None:
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


@register
class CrankNicolsonCable(_NewtonCounters, Solver):
    """Crank–Nicolson with Newton on a uniform cable; tridiagonal solves by ``solver.tridiagonal``.

    With ``backend: numba`` and ``tridiagonal: thomas`` whole steps run in one compiled kernel
    (residual, Jacobian, Thomas's sweep); every other combination runs the same formulas as
    array code and solves through :func:`fhnpde.tridiagonal.solve`.
    """

    name = "crank-nicolson"
    geometry = "cable"
    order = Order(time=2, space=2)

    def __init__(self, problem):
        super().__init__(problem)
        self.method = tridiagonal_method(self.spec.tridiagonal, self.backend)
        self.xp = namespace(self.backend)
        grid = problem.grid
        self.inv_dx2 = 1.0 / grid.dx**2
        self.code = problem.kinetics.family.code
        self.params = tuple(float(x) for x in problem.kinetics.values)
        self.recovery = tuple(float(x) for x in recovery_by_code(self.code, self.params))
        self.lap = laplacian_bands(grid)
        self.rtol = float(self.spec.newton.rtol)
        self.max_iter = int(self.spec.newton.max_iter)
        self.extrapolate = self.spec.newton.predictor == "extrapolate"
        self.quadratic = self.spec.newton.stop == "error-estimate"
        self.fused = self.backend == "numba" and self.method == "thomas"
        # arrays rather than tuples: numba's dispatcher types a tuple argument slowly
        self._params_array = np.array(self.params)
        self._recovery_array = np.array(self.recovery)
        self.counters.update(newton_iterations=0, newton_steps=0, newton_max_per_step=0)

    def init(self) -> State:
        xp = self.xp
        return State(xp.asarray(self.problem.v0).copy(), xp.asarray(self.problem.w0).copy())

    def _operator(self, dt):
        """Bands of ``-(Δt/2) D L`` (constant over a run at fixed dt)."""
        if getattr(self, "_op_dt", None) != dt:
            scale = -0.5 * dt * self.problem.diffusion
            lower, diag, upper, top, bottom = self.lap
            self._op = (scale * lower, scale * diag, scale * upper, scale * top, scale * bottom)
            self._op_dt = dt
        return self._op

    # -- array code (numpy / cupy; any tridiagonal method) --

    def step(self, state, t, dt):
        return self.advance(state, t, dt, 1)

    def _step_array(self, state, before, k_est, t, dt):
        """One step of the array code: (new state, updated ``k_est``); ``before`` is v one
        step earlier (None: not known), ``k_est`` Newton's constant so far (newton_error_left)."""
        xp = self.xp
        from .. import tridiagonal

        grid, D, h, p = self.problem.grid, self.problem.diffusion, 0.5 * dt, self.params
        alpha, beta, delta, dfdw = self.recovery
        cur = self.problem.current
        i0 = xp.asarray(cur.current(t))
        i1 = xp.asarray(cur.current(t + dt))
        v0, w0 = state.v, state.w
        f0, g0 = reaction_by_code(self.code, v0, w0, i0, p)
        left, right = grid.neighbours(v0, xp)
        known = cn_known_part(left, v0, right, f0, h, D, self.inv_dx2)
        c0, c1 = trapezoid_w_affine(w0, g0, h, alpha, beta, delta)
        op_lower, op_diag, op_upper, top, bottom = (
            xp.asarray(b) if np.ndim(b) else b for b in self._operator(dt)
        )

        def linear_solve(lower, diag, upper, rhs):
            return tridiagonal.solve(lower, diag, upper, rhs, method=self.method)

        v = newton_guess(v0, before, self.extrapolate and before is not None)
        v = v.copy() if v is v0 else v
        previous = 0.0
        for it in range(1, self.max_iter + 1):
            left, right = grid.neighbours(v, xp)
            residual, jdiag = cn_newton_node(self.code, left, v, right, known, c0, c1, i1, p,
                                             dfdw, h, D, self.inv_dx2)
            try:
                update = solve_with_corners(linear_solve, op_lower, jdiag + op_diag, op_upper,
                                            top, bottom, -residual, xp)
            except ArithmeticError as exc:  # PivotError: the Jacobian lost dominance
                raise _numerical_failure(
                    f"the Newton system of the Crank–Nicolson step from t = {t:g} could not be "
                    f"solved ({exc}); lower time.dt"
                ) from None
            v = v + update
            size = float(xp.max(xp.abs(update)))
            if not np.isfinite(size):
                break
            scale = max(1.0, float(xp.max(xp.abs(v))))
            error, k_est = newton_error_left(size, previous, k_est, scale, self.quadratic)
            if error <= self.rtol * scale:
                self._count(it, 1, it)
                return State(v, c0 + c1 * v), k_est
            previous = size
        raise _newton_failure(t, dt, it, size)

    # -- compiled (numba + thomas): whole steps in one kernel --

    def advance(self, state, t, dt, nsteps):
        if not self.fused:
            before, k_est = None, 0.0
            for s in range(nsteps):
                (state, k_est), before = self._step_array(state, before, k_est, t + s * dt,
                                                          dt), state.v
            return state
        k = _kernels_cn()
        cur = self.problem.current
        if getattr(self, "_masks", None) is None:  # the stimuli's node masks, one row each
            self._masks = (np.ascontiguousarray(np.stack(cur.masks)) if cur.masks
                           else np.zeros((0, cur.size)))
        op_lower, op_diag, op_upper, top, bottom = self._operator(dt)
        out_v, out_w = np.empty_like(state.v), np.empty_like(state.w)
        iterations = np.zeros(nsteps, dtype=np.int64)
        status, failed_step, info, value = k.cn_cable_advance(
            self.code, state.v, state.w, cur.base, self._masks, cur.t0, cur.t1, cur.amplitude,
            self._params_array, self._recovery_array, float(t), float(dt), int(nsteps),
            float(self.problem.diffusion), self.inv_dx2, *self.problem.grid.ghosts,
            op_lower, op_diag, op_upper, float(top), float(bottom),
            self.rtol, self.max_iter, self.extrapolate, self.quadratic, out_v, out_w,
            iterations,
        )
        done = iterations[: failed_step if status else nsteps]
        self._count(done.sum(), done.size, done.max(initial=0))
        if status == 1:
            raise _newton_failure(t + failed_step * dt, dt, self.max_iter, value)
        if status == 2:
            raise _numerical_failure(
                f"the Newton system of the Crank–Nicolson step from t = {t + failed_step * dt:g} "
                f"has a zero or non-finite pivot at row {info} (Thomas's algorithm does not "
                "pivot); lower time.dt"
            )
        return State(out_v, out_w)


# --- point models ---------------------------------------------------------------------------


@register
class CrankNicolsonPoint(_NewtonCounters, PointSolver):
    """The trapezoidal rule with a 2x2 Newton solve per member, batched over the ensemble."""

    name = "crank-nicolson"
    order = Order(time=2)

    def __init__(self, problem):
        super().__init__(problem)
        self.rtol = float(self.spec.newton.rtol)
        self.max_iter = int(self.spec.newton.max_iter)
        self.extrapolate = self.spec.newton.predictor == "extrapolate"
        self.quadratic = self.spec.newton.stop == "error-estimate"
        self.counters.update(newton_iterations=0, newton_steps=0, newton_max_per_step=0)

    def step(self, state, t, dt):
        return self.advance(state, t, dt, 1)

    def advance(self, state, t, dt, nsteps):
        if self.backend == "numba":
            return self._advance_compiled(state, t, dt, nsteps)
        xp = self.xp
        p = tuple(xp.asarray(row) for row in self.params)
        v, w = state.v, state.w
        before, k_est = None, xp.zeros(v.shape)
        for s in range(nsteps):
            (v, w, k_est), before = self._step_array(v, w, before, k_est, p, t + s * dt,
                                                     dt), (v, w)
        return State(v, w)

    def _step_array(self, v0, w0, before, k_est, p, t, dt):
        """One step of every member: (v, w, k_est); ``before`` is (v, w) one step earlier
        (None: not known), ``k_est`` each member's Newton constant so far
        (:func:`newton_error_left_batch`)."""
        xp, h = self.xp, 0.5 * dt
        i0 = xp.asarray(self._current(t))
        i1 = xp.asarray(self._current(t + dt))
        f0, g0 = reaction_by_code(self.code, v0, w0, i0, p)
        if self.extrapolate and before is not None:
            v, w = newton_guess(v0, before[0], True), newton_guess(w0, before[1], True)
        else:
            v, w = v0.copy(), w0.copy()
        active = xp.ones(v.shape, dtype=bool)
        previous = xp.zeros(v.shape)
        total = 0
        for it in range(1, self.max_iter + 1):
            total += int(active.sum())
            dv, dw = trapezoid_newton_point(self.code, v, w, v0, w0, f0, g0, i1, p, h)
            dv = xp.where(active, dv, 0.0)
            dw = xp.where(active, dw, 0.0)
            v, w = v + dv, w + dw
            scale = xp.maximum(1.0, xp.maximum(xp.abs(v), xp.abs(w)))
            size = xp.maximum(xp.abs(dv), xp.abs(dw))  # 0 for members already done
            error, k_est = newton_error_left_batch(size, previous, k_est, scale,
                                                   self.quadratic, xp)
            active &= ~(error <= self.rtol * scale)
            previous = size
            if not bool(active.any()):
                self._count(total, v.shape[0], it)
                return v, w, k_est
        bad = int(xp.argmax(active))
        size = float(max(abs(float(dv[bad])), abs(float(dw[bad]))))
        raise _newton_failure(t, dt, self.max_iter, size, where=f", member {bad}")

    def _advance_compiled(self, state, t, dt, nsteps):
        cur = self.problem.current
        m = state.v.shape[0]
        out_v, out_w = np.empty_like(state.v), np.empty_like(state.w)
        total = np.zeros(m, dtype=np.int64)  # per member: iterations over the nsteps,
        steps = np.zeros(m, dtype=np.int64)  # steps completed,
        most = np.zeros(m, dtype=np.int64)  # most iterations in one step,
        failed = np.full(m, -1, dtype=np.int64)  # step that failed (-1: none),
        update = np.zeros(m)  # and the last update there
        _kernels_cn().cn_point_advance(
            self.code, state.v, state.w, cur.base, cur.t0, cur.t1, cur.amplitude, self.params,
            float(t), float(dt), int(nsteps), self.rtol, self.max_iter, self.extrapolate,
            self.quadratic,
            out_v, out_w, total, steps, most, failed, update,
        )
        self._count(total.sum(), steps.sum(), most.max(initial=0))
        bad = np.flatnonzero(failed >= 0)
        if bad.size:
            j = int(bad[0])
            raise _newton_failure(t + int(failed[j]) * dt, dt, self.max_iter, float(update[j]),
                                  where=f", member {j}")
        return State(out_v, out_w)
