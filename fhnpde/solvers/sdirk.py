r"""Two-stage SDIRK, third order in time: a higher-order implicit scheme for cables.

The singly diagonally implicit Runge–Kutta method of Nørsett (1974) and Crouzeix (1975)
(Hairer & Wanner, *Solving Ordinary Differential Equations II*, 2nd ed., IV.6, Table 6.1's
two-stage method of order 3), for ``y = (v, w)``, ``y' = F(t, y)``:

.. math::

    Y_1 = y^n + \gamma\Delta t\, F(t_n + \gamma\Delta t, Y_1),\qquad
    Y_2 = y^n + (1 - 2\gamma)\Delta t\, K_1 + \gamma\Delta t\, F(t_n + (1-\gamma)\Delta t, Y_2)

    y^{n+1} = y^n + \tfrac{\Delta t}{2}(K_1 + K_2),\qquad
    K_i = F(t_n + c_i\Delta t, Y_i),\qquad \gamma = \tfrac{3 + \sqrt 3}{6}

Order 3 and A-stable (``|R(∞)| = \sqrt 3 - 1 < 1``), so no stability limit from the
diffusion. Unlike extrapolating Crank–Nicolson (Richardson: ``(4 y_{Δt/2} - y_{Δt}) / 3``,
order 4), whose amplification tends to ``5/3`` for stiff modes and so grows the
grid-scale diffusion modes at any ``Δt D / dx² >> 1``, it stays bounded on the stiff
diffusion of a cable.

Each stage is a Crank–Nicolson-shaped problem: the recovery is affine in ``w``, so ``W_i`` is
an affine function of ``V_i`` at every node (:func:`fhnpde.schemes.trapezoid_w_affine` with
``γ Δt``), leaving ``V - γΔt (D L V + f(V, c_0 + c_1 V, I)) = known`` with a tridiagonal
Jacobian: :func:`fhnpde.schemes.cn_newton_node` with ``γ Δt`` in place of ``Δt/2``. Newton
stops as Crank–Nicolson's (``solver.newton``); stage 1 starts from ``v^n`` moved along the
last step's slope (``predictor: extrapolate``), stage 2 from ``v^n`` moved along ``K_1``.
``K_i`` is taken from the solved stage, ``(Y_i - known_i) / (γΔt)``, not by evaluating ``F``
again. Two Newton solves per step (1-2 iterations each); third order in time, second in
space.
"""

from __future__ import annotations

import math

import numpy as np

from .. import native
from ..errors import NumericalFailure
from ..operators import solve_with_corners
from ..schemes import cn_newton_node, newton_error_left, trapezoid_w_affine
from .base import ArrayPath, Order, Scratch, State, register
from .crank_nicolson import NewtonCounters, TridiagonalCable

KERNELS = "fhnpde.solvers.sdirk_numba"

#: rows of n floats the kernel works in (``sdirk_cable_advance``'s ``work`` and ``more``)
SDIRK_WORK, SDIRK_MORE = 6, 8

GAMMA = (3.0 + math.sqrt(3.0)) / 6.0
#: (γ, a21, b1, b2, c1, c2)
TABLEAU = (GAMMA, 1.0 - 2.0 * GAMMA, 0.5, 0.5, GAMMA, 1.0 - GAMMA)


def stage_failure(t: float, dt: float, detail: str) -> NumericalFailure:
    return NumericalFailure(
        f"the SDIRK step from t = {t:g} (dt = {dt:g}) failed: {detail}; lower time.dt or "
        "raise solver.newton.max_iter / solver.newton.rtol"
    )


class ArraySdirkSteps(ArrayPath):
    """SDIRK steps as array code on ``xp`` with any tridiagonal method."""

    def advance(self, state, t, dt, nsteps):
        v, w = state.v, state.w
        slope = None
        self.k_est = 0.0  # Newton's constant, measured within the call (as the kernel's)
        for k in range(nsteps):
            v_new, w = self.step(v, w, slope, t + k * dt, dt)
            slope, v = (v_new - v) / dt, v_new
        return State(v, w)

    def stage(self, known_v, known_w, guess, t_stage, dt):
        """Solve one stage: (V, W) with ``V - γΔt (D L V + f(V, W, I)) = known_v`` and
        ``W = known_w + γΔt g(V, W)``; Newton iterations counted into ``its``."""
        from .. import tridiagonal

        s, xp = self.solver, self.xp
        newton, grid = s.newton, s.problem.grid
        alpha, beta, delta, dfdw = s.recovery
        h = GAMMA * dt
        im = s.asarray(s.problem.current.current(t_stage))
        c0, c1 = trapezoid_w_affine(known_w, 0.0, h, alpha, beta, delta)
        op_lower, op_diag, op_upper, top, bottom = (
            s.asarray(b) if np.ndim(b) else b for b in s.operator(dt))

        def linear_solve(lower, diag, upper, rhs):
            return tridiagonal.solve(lower, diag, upper, rhs, method=s.method)

        v = guess
        previous = 0.0
        for it in range(1, newton.max_iter + 1):
            left, right = grid.neighbours(v, xp)
            residual, jdiag = cn_newton_node(s.code, left, v, right, known_v, c0, c1, im,
                                             s.params, dfdw, h, s.problem.diffusion, s.inv_dx2)
            try:
                update = solve_with_corners(linear_solve, op_lower, jdiag + op_diag, op_upper,
                                            top, bottom, -residual, xp)
            except ArithmeticError as exc:  # PivotError: the Jacobian lost dominance
                raise stage_failure(t_stage, dt, str(exc)) from None
            v = v + update
            size = float(xp.max(xp.abs(update)))
            if not math.isfinite(size):
                break
            scale = max(1.0, float(xp.max(xp.abs(v))))
            error, self.k_est = newton_error_left(size, previous, self.k_est, scale,
                                                  newton.quadratic)
            if error <= newton.rtol * scale:
                self.its += it
                return v, c0 + c1 * v
            previous = size
        raise stage_failure(t_stage, dt, f"Newton's update was still {size:.3g} after "
                            f"{newton.max_iter} iterations")

    def step(self, v, w, slope, t, dt):
        gam, a21, b1, b2, cs1, cs2 = TABLEAU
        h = gam * dt
        s = self.solver
        self.its = 0
        guess = v + cs1 * dt * slope if (s.newton.extrapolate and slope is not None) else v
        v1, w1 = self.stage(v, w, guess, t + cs1 * dt, dt)
        k1v, k1w = (v1 - v) / h, (w1 - w) / h
        known_v, known_w = v + dt * a21 * k1v, w + dt * a21 * k1w
        v2, w2 = self.stage(known_v, known_w, v + cs2 * dt * k1v, t + cs2 * dt, dt)
        k2v, k2w = (v2 - known_v) / h, (w2 - known_w) / h
        s.count_newton(self.its, 1, self.its)
        return v + dt * (b1 * k1v + b2 * k2v), w + dt * (b1 * k1w + b2 * k2w)


class CompiledSdirkSteps:
    """Whole runs of SDIRK steps in one numba kernel
    (:func:`fhnpde.solvers.sdirk_numba.sdirk_cable_advance`)."""

    def __init__(self, solver):
        self.solver = solver
        self.kernels = native.kernels(KERNELS)
        self.kernels.load("sdirk_cable_advance")  # with the solver, not in the time loop
        self.params = np.array(solver.params)
        self.recovery = np.array(solver.recovery)
        self.tableau = np.array(TABLEAU)
        self.scratch = Scratch()

    def advance(self, state, t, dt, nsteps):
        s = self.solver
        newton = s.newton
        cur = s.problem.current
        op_lower, op_diag, op_upper, top, bottom = s.operator(dt)
        out_v, out_w = np.empty_like(state.v), np.empty_like(state.w)
        iterations = self.scratch.zeros("iterations", (nsteps,), np.int64)
        n = state.v.shape[0]
        work = self.scratch.empty("work", (SDIRK_WORK, n))
        more = self.scratch.empty("more", (SDIRK_MORE, n))
        status, failed, row, value = self.kernels.sdirk_cable_advance(
            s.code, state.v, state.w, cur.base, cur.mask_rows, cur.t0, cur.t1, cur.amplitude,
            self.params, self.recovery, self.tableau, float(t), float(dt), int(nsteps),
            float(s.problem.diffusion), s.inv_dx2, *s.problem.grid.ghosts,
            op_lower, op_diag, op_upper, float(top), float(bottom),
            float(newton.rtol), int(newton.max_iter), newton.extrapolate, newton.quadratic,
            out_v, out_w, iterations, work, more, self.scratch.empty("cell", (1,), np.int64),
        )
        done = iterations[: failed if status else nsteps]
        s.count_newton(done.sum(), done.size, done.max(initial=0))
        if status == 1:
            raise stage_failure(t + failed * dt, dt, f"Newton's update was still {value:.3g} "
                                f"after {newton.max_iter} iterations")
        if status == 2:
            raise stage_failure(t + failed * dt, dt, f"a zero or non-finite pivot at row {row} "
                                "(Thomas's algorithm does not pivot)")
        return State(out_v, out_w)


@register
class SdirkCable(NewtonCounters, TridiagonalCable):
    """Two-stage, third-order SDIRK on a uniform cable (Newton + tridiagonal per stage).

    With backend numba and tridiagonal thomas whole runs of steps go through one compiled
    kernel; every other combination runs the same formulas as array code through
    :func:`fhnpde.tridiagonal.solve`.
    """

    name = "sdirk3"
    order = Order(time=3, space=2)
    theta = GAMMA

    compiled_steps, array_steps = CompiledSdirkSteps, ArraySdirkSteps
