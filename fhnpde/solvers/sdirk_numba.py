"""numba kernel of the SDIRK cable solver (:mod:`fhnpde.solvers.sdirk`).

Imported only with the numba backend, through ``fhnpde.backends.kernels(...)``. Each stage
is the Crank–Nicolson Newton problem of :mod:`fhnpde.schemes` (``cn_newton_node`` with the
stage's ``γ Δt`` in place of ``Δt/2`` and its own known part), solved by Thomas's sweep of
:mod:`fhnpde.tridiagonal.thomas`; the formulas are registered as jitable by
:mod:`fhnpde.compiled`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..compiled import JIT_NUMPY_ERRORS
from ..schemes import cn_newton_node, newton_error_left, trapezoid_w_affine
from ..stimulus import node_currents
from .crank_nicolson_numba import max_abs, solve_cable_system


@njit(**JIT_NUMPY_ERRORS)
def stage_newton(code, g0, gn, known, c0, c1, im, p, dfdw, h, diffusivity, inv_dx2, op_lower,
                 op_diag, op_upper, top, bottom, rtol, max_iter, quadratic, vk, k_est, work,
                 cell):
    """Newton's method for one stage, ``vk - h (D L vk + f(vk, c0 + c1 vk, im)) = known``,
    from the guess in ``vk`` (overwritten by the solution). ``work``: 6 x n scratch,
    ``cell``: one int64 (for :func:`max_abs`).

    Returns ``(status, iterations, row_or_minus_one, value, k_est)``: status 0 converged,
    1 no convergence (value = last update), 2 a zero or non-finite pivot at ``row``.
    """
    n = vk.shape[0]
    jd, rhs, x, z, u, scratch = work[0], work[1], work[2], work[3], work[4], work[5]
    cell_float = cell.view(np.float64)
    x_bits, vk_bits = x.view(np.int64), vk.view(np.int64)
    periodic = top != 0.0 or bottom != 0.0
    previous = 0.0
    size = 0.0
    for it in range(1, max_iter + 1):
        r, d = cn_newton_node(code, vk[g0], vk[0], vk[1], known[0], c0[0], c1, im[0], p, dfdw,
                              h, diffusivity, inv_dx2)
        rhs[0] = -r
        jd[0] = d + op_diag[0]
        for i in range(1, n - 1):
            r, d = cn_newton_node(code, vk[i - 1], vk[i], vk[i + 1], known[i], c0[i], c1,
                                  im[i], p, dfdw, h, diffusivity, inv_dx2)
            rhs[i] = -r
            jd[i] = d + op_diag[i]
        r, d = cn_newton_node(code, vk[n - 2], vk[n - 1], vk[gn], known[n - 1], c0[n - 1], c1,
                              im[n - 1], p, dfdw, h, diffusivity, inv_dx2)
        rhs[n - 1] = -r
        jd[n - 1] = d + op_diag[n - 1]
        if periodic:  # u is zero but at the ends that solve_cable_system sets
            for i in range(n):
                u[i] = 0.0
        row, piv = solve_cable_system(op_lower, jd, op_upper, rhs, x, u, z, scratch, periodic,
                                      top, bottom)
        if row >= 0:
            return 2, it, row, piv, k_est
        for i in range(n):
            vk[i] += x[i]
        size = max_abs(x_bits, cell, cell_float)
        if not math.isfinite(size):
            return 1, it, -1, math.nan, k_est
        scale = max(1.0, max_abs(vk_bits, cell, cell_float))
        error, k_est = newton_error_left(size, previous, k_est, scale, quadratic)
        if error <= rtol * scale:
            return 0, it, -1, size, k_est
        previous = size
    return 1, max_iter, -1, size, k_est


@njit(**JIT_NUMPY_ERRORS)
def sdirk_cable_advance(code, v, w, base, masks, t0s, t1s, amps, params, recovery, tableau, t,
                        dt, nsteps, diffusivity, inv_dx2, g0, gn, op_lower, op_diag, op_upper,
                        top, bottom, rtol, max_iter, extrapolate, quadratic, out_v, out_w,
                        iterations, work, more, cell):
    """``nsteps`` steps of the two-stage SDIRK method; result in out_v/out_w.

    ``tableau`` = (γ, a21, b1, b2, c1, c2); ``op_*``, ``top``, ``bottom``: bands and corners
    of ``-γ Δt D L``. Returns ``(status, step, row, value)`` as
    :func:`fhnpde.solvers.crank_nicolson_numba.cn_cable_advance`; ``iterations[s]``: the
    Newton iterations of step s, both stages.

    Every buffer is the caller's (``work``: 6 rows of n floats for :func:`stage_newton`,
    ``more``: 8 rows, ``cell``: one int64), so the kernel allocates nothing and loads without
    numba (:mod:`fhnpde.native`).
    """
    n = v.shape[0]
    gam, a21, b1, b2, cs1, cs2 = (tableau[0], tableau[1], tableau[2], tableau[3], tableau[4],
                                  tableau[5])
    h = gam * dt
    p = (params[0], params[1], params[2], params[3])
    alpha, beta, delta, dfdw = recovery[0], recovery[1], recovery[2], recovery[3]
    vn, wn = out_v, out_w
    for i in range(n):
        vn[i] = v[i]
        wn[i] = w[i]
    known, c0, im, vk, k1v, k1w = more[0], more[1], more[2], more[3], more[4], more[5]
    slope, products = more[6], more[7]  # slope: (v^n - v^(n-1)) / dt, the guess's slope
    for i in range(n):
        slope[i] = 0.0
    k_est = 0.0
    for step in range(nsteps):
        ts = t + step * dt
        guess = extrapolate and step > 0
        # stage 1: known part y^n
        node_currents(ts + cs1 * dt, base, masks, t0s, t1s, amps, im, products)
        cw1 = 0.0
        for i in range(n):
            known[i] = vn[i]
            c0[i], cw1 = trapezoid_w_affine(wn[i], 0.0, h, alpha, beta, delta)
            vk[i] = vn[i] + cs1 * dt * slope[i] if guess else vn[i]
        status, its, row, value, k_est = stage_newton(
            code, g0, gn, known, c0, cw1, im, p, dfdw, h, diffusivity, inv_dx2, op_lower,
            op_diag, op_upper, top, bottom, rtol, max_iter, quadratic, vk, k_est, work, cell)
        if status:
            return status, step, row, value
        total = its
        for i in range(n):
            k1v[i] = (vk[i] - vn[i]) / h
            k1w[i] = (c0[i] + cw1 * vk[i] - wn[i]) / h
        # stage 2: known part y^n + Δt a21 K1
        node_currents(ts + cs2 * dt, base, masks, t0s, t1s, amps, im, products)
        for i in range(n):
            known[i] = vn[i] + dt * a21 * k1v[i]
            c0[i], cw1 = trapezoid_w_affine(wn[i] + dt * a21 * k1w[i], 0.0, h, alpha, beta,
                                            delta)
            vk[i] = vn[i] + cs2 * dt * k1v[i]
        status, its, row, value, k_est = stage_newton(
            code, g0, gn, known, c0, cw1, im, p, dfdw, h, diffusivity, inv_dx2, op_lower,
            op_diag, op_upper, top, bottom, rtol, max_iter, quadratic, vk, k_est, work, cell)
        if status:
            return status, step, row, value
        iterations[step] = total + its
        for i in range(n):
            k2v = (vk[i] - known[i]) / h
            k2w = (c0[i] + cw1 * vk[i] - (wn[i] + dt * a21 * k1w[i])) / h
            v_new = vn[i] + dt * (b1 * k1v[i] + b2 * k2v)
            slope[i] = (v_new - vn[i]) / dt
            vn[i] = v_new
            wn[i] = wn[i] + dt * (b1 * k1w[i] + b2 * k2w)
    return 0, nsteps, -1, 0.0


__all__ = ["sdirk_cable_advance", "stage_newton"]
