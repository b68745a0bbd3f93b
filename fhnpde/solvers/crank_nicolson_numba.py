"""numba kernels of the Crank–Nicolson solvers (:mod:`fhnpde.solvers.crank_nicolson`).

Imported only with the numba backend, through ``fhnpde.backends.kernels(...)``. The kernels
hold no formulas of their own: the node functions of :mod:`fhnpde.schemes`, the applied
current of :mod:`fhnpde.stimulus` and the corner correction of :mod:`fhnpde.operators` are
registered as jitable by :mod:`fhnpde.compiled` and called node by node, and the
tridiagonal sweep is the one of :mod:`fhnpde.tridiagonal.thomas`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ..compiled import JIT_NUMPY_ERRORS
from ..models import reaction_by_code
from ..operators import corner_factor, corner_shift
from ..schemes import (
    cn_known_part,
    cn_newton_node,
    newton_error_left,
    newton_guess,
    trapezoid_newton_point,
    trapezoid_w_affine,
)
from ..stimulus import box_active, boxes_current, node_currents
from ..tridiagonal.thomas import thomas_system

# |x| as a bit pattern: the sign bit cleared
_ABS_BITS = np.int64(0x7FFFFFFFFFFFFFFF)


@njit(**JIT_NUMPY_ERRORS)
def max_abs(bits, cell, cell_float):
    """max |x[i]| of the float64 array x whose int64 view is ``bits``, exactly; NaN if any
    x[i] is NaN. Non-negative IEEE doubles are ordered like their bit patterns, and NaN's
    patterns lie above inf's, so the maximum is taken over the patterns with the sign bit
    cleared: an integer maximum, which vectorises without fast-math flags (a floating-point
    one does not: the update loop with float maxima took 0.65 us on 801 nodes, with these
    0.12 us). ``cell``/``cell_float``: one int64 and its float64 view, to turn the pattern
    back into a number."""
    m = np.int64(0)
    for i in range(bits.shape[0]):
        m = max(m, bits[i] & _ABS_BITS)
    cell[0] = m
    return cell_float[0]


@njit(**JIT_NUMPY_ERRORS)
def boxes_switch(t_a, t_b, t0s, t1s):
    """True when some box is active at one of the times t_a, t_b and not at the other."""
    for k in range(t0s.shape[0]):
        if box_active(t_a, t0s[k], t1s[k]) != box_active(t_b, t0s[k], t1s[k]):
            return True
    return False


@njit(**JIT_NUMPY_ERRORS, inline="always")
def solve_cable_system(op_lower, jd, op_upper, rhs, x, u, z, scratch, periodic, top, bottom):
    """x of the cable's tridiagonal system (``op_lower``, ``jd``, ``op_upper``) x = rhs, by
    Thomas; on a ring the corners (``top``, ``bottom``) by Sherman–Morrison
    (:mod:`fhnpde.operators`): ``jd``'s ends are shifted, T z = u is solved as well (``u``
    zero but at its ends, which are set here) and x corrected. Returns Thomas's
    ``(row, pivot)`` of a bad pivot, or ``(-1, 0.0)``."""
    if not periodic:
        return thomas_system(op_lower, jd, op_upper, rhs, x, scratch)
    n = jd.shape[0]
    gamma, jd[0], jd[n - 1] = corner_shift(jd[0], jd[n - 1], top, bottom)
    row, piv = thomas_system(op_lower, jd, op_upper, rhs, x, scratch)
    if row >= 0:
        return row, piv
    u[0] = gamma
    u[n - 1] = bottom
    row, piv = thomas_system(op_lower, jd, op_upper, u, z, scratch)
    if row >= 0:
        return row, piv
    fact = corner_factor(x[0], x[n - 1], z[0], z[n - 1], top, gamma)
    for i in range(n):
        x[i] -= fact * z[i]
    return -1, 0.0


@njit(**JIT_NUMPY_ERRORS)
def start_node(i, left, code, vn, wn, right, i0, p, h, diffusivity, inv_dx2, alpha, beta,
                delta, guess, known, c0, vk, vprev):
    """Node i's part of a step that Newton does not change (known part, w's affine map) and
    its starting guess; returns c1 (the same at every node)."""
    f, g = reaction_by_code(code, vn[i], wn[i], i0[i], p)
    known[i] = cn_known_part(left, vn[i], right, f, h, diffusivity, inv_dx2)
    c0[i], c1 = trapezoid_w_affine(wn[i], g, h, alpha, beta, delta)
    vk[i] = newton_guess(vn[i], vprev[i], guess)
    vprev[i] = vn[i]
    return c1


@njit(**JIT_NUMPY_ERRORS)
def cn_cable_advance(code, v, w, base, masks, t0s, t1s, amps, params, recovery, t, dt, nsteps,
                     diffusivity, inv_dx2, g0, gn, op_lower, op_diag, op_upper, top, bottom,
                     rtol, max_iter, extrapolate, quadratic, out_v, out_w, iterations, work,
                     cell):
    """``nsteps`` Crank–Nicolson steps of a cable, Newton + Thomas inside; result in out_v/out_w.

    ``op_*``, ``top``, ``bottom``: bands and corners of ``-(dt/2) D L``. Newton starts from
    ``newton_guess`` (``extrapolate``: from the last two steps, from the second step of the
    call on) and stops on ``newton_error_left`` (its constant K measured within the call).
    Returns ``(status, step, row, value)``: status 0 done; 1 Newton did not converge in step
    ``step`` (``value`` = last update); 2 a zero or non-finite pivot at
    ``row``. ``iterations[s]`` receives the Newton iterations of step s.

    Every buffer is the caller's (``work``: 13 rows of n floats, ``cell``: one
    int64), so the kernel allocates nothing and loads without numba (:mod:`fhnpde.native`).
    """
    n = v.shape[0]
    h = 0.5 * dt
    p = (params[0], params[1], params[2], params[3])
    alpha, beta, delta, dfdw = recovery[0], recovery[1], recovery[2], recovery[3]
    periodic = top != 0.0 or bottom != 0.0
    vn, wn = out_v, out_w
    for i in range(n):
        vn[i] = v[i]
        wn[i] = w[i]
    known, c0, i0, i1, vk, jd, rhs = work[0], work[1], work[2], work[3], work[4], work[5], work[6]
    x, z, u, scratch, vprev, products = work[7], work[8], work[9], work[10], work[11], work[12]
    for i in range(n):
        u[i] = 0.0
    x_bits, vk_bits = x.view(np.int64), vk.view(np.int64)
    cell_float = cell.view(np.float64)
    c1 = 0.0
    size = 0.0
    k_est = 0.0  # Newton's quadratic constant, measured (newton_error_left)
    previous_ts = t
    for step in range(nsteps):
        ts = t + step * dt
        # I(x, t) depends on t only through the set of active boxes: recomputed when it
        # changes (as AppliedCurrent.current), not at every step
        if step == 0 or boxes_switch(previous_ts, ts, t0s, t1s):
            node_currents(ts, base, masks, t0s, t1s, amps, i0, products)
        if step == 0 or boxes_switch(previous_ts + dt, ts + dt, t0s, t1s):
            node_currents(ts + dt, base, masks, t0s, t1s, amps, i1, products)
        previous_ts = ts
        guess = extrapolate and step > 0
        # as in Newton's loop below: the end nodes read their ghosts, the interior no branch
        c1 = start_node(0, vn[g0], code, vn, wn, vn[1], i0, p, h, diffusivity, inv_dx2,
                         alpha, beta, delta, guess, known, c0, vk, vprev)
        for i in range(1, n - 1):
            start_node(i, vn[i - 1], code, vn, wn, vn[i + 1], i0, p, h, diffusivity,
                        inv_dx2, alpha, beta, delta, guess, known, c0, vk, vprev)
        start_node(n - 1, vn[n - 2], code, vn, wn, vn[gn], i0, p, h, diffusivity, inv_dx2,
                    alpha, beta, delta, guess, known, c0, vk, vprev)
        converged = False
        previous = 0.0
        for it in range(1, max_iter + 1):
            # the end nodes read their ghosts (nx >= 3); the interior loop has no branches
            r, d = cn_newton_node(code, vk[g0], vk[0], vk[1], known[0], c0[0], c1, i1[0],
                                  p, dfdw, h, diffusivity, inv_dx2)
            rhs[0] = -r
            jd[0] = d + op_diag[0]
            for i in range(1, n - 1):
                r, d = cn_newton_node(code, vk[i - 1], vk[i], vk[i + 1], known[i], c0[i], c1,
                                      i1[i], p, dfdw, h, diffusivity, inv_dx2)
                rhs[i] = -r
                jd[i] = d + op_diag[i]
            r, d = cn_newton_node(code, vk[n - 2], vk[n - 1], vk[gn], known[n - 1], c0[n - 1],
                                  c1, i1[n - 1], p, dfdw, h, diffusivity, inv_dx2)
            rhs[n - 1] = -r
            jd[n - 1] = d + op_diag[n - 1]
            row, piv = solve_cable_system(op_lower, jd, op_upper, rhs, x, u, z, scratch,
                                          periodic, top, bottom)
            if row >= 0:
                return 2, step, row, piv
            for i in range(n):
                vk[i] += x[i]
            size = max_abs(x_bits, cell, cell_float)  # NaN if the update holds a NaN
            vmax = max_abs(vk_bits, cell, cell_float)
            if not math.isfinite(size):
                size = math.nan
                break
            scale = max(1.0, vmax)
            error, k_est = newton_error_left(size, previous, k_est, scale, quadratic)
            if error <= rtol * scale:
                converged = True
                iterations[step] = it
                break
            previous = size
        if not converged:
            return 1, step, -1, size
        for i in range(n):
            vn[i] = vk[i]
            wn[i] = c0[i] + c1 * vk[i]
    return 0, nsteps, -1, 0.0


@njit(**JIT_NUMPY_ERRORS, parallel=True)
def cn_point_advance(code, v, w, base_current, t0s, t1s, amps, params, t, dt, nsteps, rtol,
                     max_iter, extrapolate, quadratic, out_v, out_w, total, steps, most, failed,
                     update):
    """``nsteps`` trapezoidal steps of every member (one per thread), a 2x2 Newton per step
    starting from ``newton_guess``.

    Per member: ``total`` iterations, ``steps`` completed, ``most`` iterations in one step;
    ``failed`` = the step whose Newton iteration did not converge (-1: none) and ``update`` its
    last update size. A failed member stops there; its output is its last good state.
    """
    h = 0.5 * dt
    for m in prange(v.shape[0]):
        vm = v[m]
        wm = w[m]
        p = (params[0, m], params[1, m], params[2, m], params[3, m])
        vp = vm
        wp = wm
        tot = 0
        mx = 0
        done = 0
        k_est = 0.0
        for s in range(nsteps):
            ts = t + s * dt
            i0 = base_current[m] + boxes_current(ts, t0s, t1s, amps)
            i1 = base_current[m] + boxes_current(ts + dt, t0s, t1s, amps)
            f0, g0 = reaction_by_code(code, vm, wm, i0, p)
            guess = extrapolate and s > 0
            vk = newton_guess(vm, vp, guess)
            wk = newton_guess(wm, wp, guess)
            vp = vm
            wp = wm
            ok = False
            its = 0
            size = 0.0
            previous = 0.0
            for _ in range(max_iter):
                dv, dw = trapezoid_newton_point(code, vk, wk, vm, wm, f0, g0, i1, p, h)
                vk += dv
                wk += dw
                its += 1
                size = max(abs(dv), abs(dw))
                if not (abs(dv) <= math.inf and abs(dw) <= math.inf):  # NaN or inf
                    size = math.nan
                    break
                scale = max(1.0, max(abs(vk), abs(wk)))
                error, k_est = newton_error_left(size, previous, k_est, scale, quadratic)
                if error <= rtol * scale:
                    ok = True
                    break
                previous = size
            tot += its
            if not ok:
                failed[m] = s
                update[m] = size
                break
            mx = max(mx, its)
            done += 1
            vm = vk
            wm = wk
        out_v[m] = vm
        out_w[m] = wm
        total[m] = tot
        steps[m] = done
        most[m] = mx


__all__ = ["cn_cable_advance", "cn_point_advance", "max_abs"]
