r"""The node formulas of the time-stepping schemes, each written once.

Plain arithmetic on node (or member) values: the array paths of :mod:`fhnpde.solvers` call
them on whole arrays of any array-API namespace, and the numba kernels
(``fhnpde.solvers.*_numba``, ``fhnpde.reaction_numba``) call the same functions node by
node, registered as jitable by :mod:`fhnpde.compiled`. No module here imports a solver, so
the kernels depend on the formulas and the solvers on both, never the other way round.

- forward Euler (:func:`forward_euler_update`) with the three-point Laplacian, uniform
  (:func:`forward_euler_node`) and non-uniform (:func:`adaptive_euler_node`), with the
  five-point Laplacian of a sheet (:func:`forward_euler_sheet_node`), and with the
  fourth-order stencils of a cable and a sheet (:func:`forward_euler4_node`,
  :func:`forward_euler4_sheet_node`);
- forward Euler and classical RK4 for the kinetics alone (:func:`euler_point`,
  :func:`rk4_point`; the RK4 weights once, :func:`rk4_combine`);
- the trapezoidal rule (Crank–Nicolson) and its Newton iteration: see
  :mod:`fhnpde.solvers.crank_nicolson` for the derivation.
"""

from __future__ import annotations

from .grid import five_point, fourth_order_difference, nine_point_cross, second_difference
from .models import dreaction_dv_by_code, reaction_by_code, recovery_by_code
from .nonuniform import second_derivative

# --- forward Euler on a cable and a sheet --------------------------------------------------


def forward_euler_update(lap, v, w, I, code, p, dt, diffusivity):
    """One forward-Euler step of node values whose Laplacian is ``lap``."""
    dv, dw = reaction_by_code(code, v, w, I, p)
    return v + dt * (diffusivity * lap + dv), w + dt * dw


def forward_euler_node(v_left, v, v_right, w, I, code, p, dt, diffusivity, inv_dx2):
    """One forward-Euler step of node values on a uniform grid."""
    return forward_euler_update(second_difference(v_left, v, v_right, inv_dx2), v, w, I, code,
                                p, dt, diffusivity)


def forward_euler4_node(v_far_left, v_left, v, v_right, v_far_right, w, I, code, p, dt,
                        diffusivity, inv_dx2):
    """One forward-Euler step of node values with the fourth-order second difference."""
    return forward_euler_update(
        fourth_order_difference(v_far_left, v_left, v, v_right, v_far_right, inv_dx2), v, w,
        I, code, p, dt, diffusivity)


def forward_euler_sheet_node(v_left, v_right, v_below, v_above, v, w, I, code, p, dt,
                             diffusivity, inv_dx2, inv_dy2):
    """One forward-Euler step of node values on a sheet (the five-point Laplacian)."""
    return forward_euler_update(five_point(v_left, v_right, v_below, v_above, v, inv_dx2,
                                           inv_dy2), v, w, I, code, p, dt, diffusivity)


def forward_euler4_sheet_node(v_far_left, v_left, v_right, v_far_right, v_far_below, v_below,
                              v_above, v_far_above, v, w, I, code, p, dt, diffusivity, inv_dx2,
                              inv_dy2):
    """One forward-Euler step of node values on a sheet (the fourth-order nine-point
    cross)."""
    return forward_euler_update(
        nine_point_cross(v_far_left, v_left, v_right, v_far_right, v_far_below, v_below,
                         v_above, v_far_above, v, inv_dx2, inv_dy2), v, w, I, code, p, dt,
        diffusivity)


def adaptive_euler_node(v_left, v, v_right, w, I, code, p, dt, diffusivity, h_left, h_right):
    """One forward-Euler step of node values with the non-uniform three-point Laplacian."""
    return forward_euler_update(second_derivative(v_left, v, v_right, h_left, h_right), v, w,
                                I, code, p, dt, diffusivity)


# --- the kinetics alone: Euler and RK4 ----------------------------------------------------


def euler_point(code, v, w, I, p, dt):
    """Forward Euler: y + dt f(y)."""
    dv, dw = reaction_by_code(code, v, w, I, p)
    return v + dt * dv, w + dt * dw


def rk4_combine(y, k1, k2, k3, k4, dt):
    """The classical RK4 update ``y + dt/6 (k1 + 2 k2 + 2 k3 + k4)`` from its four stages
    (stages at ``y``, ``y + dt/2 k1``, ``y + dt/2 k2``, ``y + dt k3``)."""
    return y + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def rk4_point(code, v, w, I0, Ih, I1, p, dt):
    """Classical RK4 with the current evaluated at t, t + dt/2 and t + dt."""
    h = 0.5 * dt
    k1v, k1w = reaction_by_code(code, v, w, I0, p)
    k2v, k2w = reaction_by_code(code, v + h * k1v, w + h * k1w, Ih, p)
    k3v, k3w = reaction_by_code(code, v + h * k2v, w + h * k2w, Ih, p)
    k4v, k4w = reaction_by_code(code, v + dt * k3v, w + dt * k3w, I1, p)
    return rk4_combine(v, k1v, k2v, k3v, k4v, dt), rk4_combine(w, k1w, k2w, k3w, k4w, dt)


# --- the trapezoidal rule and Newton ------------------------------------------------------


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
    (``k_est == 0``), and always when not ``quadratic`` (Newton's ``stop: update``),
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
    # where not measured, previous may be 0: divide by 1 there (the value is not used)
    safe = xp.where(measured, previous, 1.0)
    k_est = xp.where(measured, xp.maximum(k_est, size / safe**2), k_est)
    return xp.where(k_est > 0.0, k_est * size * size, size), k_est


def cn_known_part(v_left, v, v_right, dv_react, half_dt, diffusivity, inv_dx2):
    """``v^n + (Δt/2)(D L v^n + f^n)``: the part of the equation known at the start of a step."""
    return v + half_dt * (
        diffusivity * second_difference(v_left, v, v_right, inv_dx2) + dv_react
    )


def cn_newton_node(code, v_left, v, v_right, known, c0, c1, I1, p, dfdw, half_dt, diffusivity,
                   inv_dx2):
    """Residual F at one node and the reaction part of the Jacobian's diagonal there.

    ``F = v - (Δt/2)(D L v + f(v, c0 + c1 v, I)) - known``; the Jacobian's diagonal is the
    returned ``1 - (Δt/2)(f_v + f_w c1)`` plus the constant diffusion part ``-(Δt/2) D L_ii``.
    """
    w = c0 + c1 * v
    f, _ = reaction_by_code(code, v, w, I1, p)
    residual = v - half_dt * (
        diffusivity * second_difference(v_left, v, v_right, inv_dx2) + f
    ) - known
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


# --- the linearly implicit, staggered Crank–Nicolson step (NEURON's) ----------------------


def staggered_w_step(w, v, tau, alpha, beta, delta):
    """The recovery over ``tau`` with ``v`` held: the trapezoidal rule for the affine
    ``w_t = alpha v - beta w + delta``, ``w' = w + tau (alpha v - beta (w + w') / 2 + delta)``.
    The same formula with ``-tau`` is its exact inverse."""
    h = 0.5 * tau
    return (w * (1.0 - h * beta) + tau * (alpha * v + delta)) / (1.0 + h * beta)


def linear_cn_node(code, v_left, v, v_right, w, I, p, dt, diffusivity, inv_dx2):
    """Right-hand side and the reaction part of the diagonal at one node of the linearly
    implicit Crank–Nicolson step ``(1 - (Δt/2)(D L + f_v)) (v' - v) = Δt (D L v + f(v, w, I))``
    (the diffusion part of the diagonal, ``-(Δt/2) D L_ii``, is constant and added apart)."""
    f, _ = reaction_by_code(code, v, w, I, p)
    rhs = dt * (diffusivity * second_difference(v_left, v, v_right, inv_dx2) + f)
    return rhs, 1.0 - 0.5 * dt * dreaction_dv_by_code(code, v, w, I, p)
