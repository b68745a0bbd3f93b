"""numba kernels of the Crank–Nicolson solvers and the exact reaction step.

Imported only when those run with the numba backend, through
``fhnpde.backends.kernels("fhnpde._kernels_cn")`` (which caches them under a fingerprint of
the package source). Like :mod:`fhnpde._kernels`, the kernels hold no formulas of their
own: the plain-Python functions of :mod:`fhnpde.solvers.crank_nicolson` (and of
:mod:`fhnpde.models` and :mod:`fhnpde.solvers.ode`, registered by ``_kernels``) are
registered as jitable and called node by node, and the tridiagonal sweep is the one of
:mod:`fhnpde.tridiagonal.thomas`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from numba.extending import register_jitable

from . import models
from .backends import kernels
from .solvers import crank_nicolson as cn
from .stimulus import box_active, boxes_current
from .tridiagonal.thomas import thomas_system

_kernels = kernels()  # registers the formulas of models, grid, stimulus and ode as jitable

for _f in (
    models.nagumo_recovery,
    models.fitzhugh_recovery,
    cn.recovery_by_code,
    cn.trapezoid_w_affine,
    cn.cn_known_part,
    cn.cn_newton_node,
    cn.trapezoid_newton_point,
    cn.newton_guess,
    cn.newton_error_left,
):
    register_jitable(_f)

reaction_by_code = models.reaction_by_code
recovery_by_code = cn.recovery_by_code
trapezoid_w_affine = cn.trapezoid_w_affine
cn_known_part = cn.cn_known_part
cn_newton_node = cn.cn_newton_node
trapezoid_newton_point = cn.trapezoid_newton_point
newton_guess = cn.newton_guess
newton_error_left = cn.newton_error_left
euler_point = _kernels.euler_point
rk4_point = _kernels.rk4_point

PARALLEL_MIN_NODES = _kernels.PARALLEL_MIN_NODES

# error_model "numpy": a division by zero gives inf/nan (caught by the Newton checks) instead
# of a Python exception, which keeps the checks out of the loops
_JIT = {"cache": True, "error_model": "numpy"}


@njit(**_JIT)
def _node_currents(t, base, masks, t0s, t1s, amps, out):
    """I(x_i, t): the steady part plus every box active at t (as AppliedCurrent.current)."""
    n = out.shape[0]
    for i in range(n):
        out[i] = base[i]
    for k in range(t0s.shape[0]):
        if box_active(t, t0s[k], t1s[k]) > 0.0:
            for i in range(n):
                out[i] += amps[k] * masks[k, i]


# |x| as a bit pattern: the sign bit cleared
_ABS_BITS = np.int64(0x7FFFFFFFFFFFFFFF)


@njit(**_JIT)
def _max_abs(bits, cell, cell_float):
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


@njit(**_JIT)
def _start_node(i, left, code, vn, wn, right, i0, p, h, diffusivity, inv_dx2, alpha, beta,
                delta, guess, known, c0, vk, vprev):
    """Node i's part of a step that Newton does not change (known part, w's affine map) and
    its starting guess; returns c1 (the same at every node)."""
    f, g = reaction_by_code(code, vn[i], wn[i], i0[i], p)
    known[i] = cn_known_part(left, vn[i], right, f, h, diffusivity, inv_dx2)
    c0[i], c1 = trapezoid_w_affine(wn[i], g, h, alpha, beta, delta)
    vk[i] = newton_guess(vn[i], vprev[i], guess)
    vprev[i] = vn[i]
    return c1


@njit(**_JIT)
def cn_cable_advance(code, v, w, base, masks, t0s, t1s, amps, params, recovery, t, dt, nsteps,
                     diffusivity, inv_dx2, g0, gn, op_lower, op_diag, op_upper, top, bottom,
                     rtol, max_iter, extrapolate, quadratic, out_v, out_w, iterations):
    """``nsteps`` Crank–Nicolson steps of a cable, Newton + Thomas inside; result in out_v/out_w.

    ``op_*``, ``top``, ``bottom``: bands and corners of ``-(dt/2) D L``. Newton starts from
    ``newton_guess`` (``extrapolate``: from the last two steps, from the second step of the
    call on) and stops on ``newton_error_left`` (its constant K measured within the call). Returns ``(status, step, row, value)``: status 0 done; 1 Newton did not
    converge in step ``step`` (``value`` = last update); 2 a zero or non-finite pivot at
    ``row``. ``iterations[s]`` receives the Newton iterations of step s.
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
    known = np.empty(n)
    c0 = np.empty(n)
    i0 = np.empty(n)
    i1 = np.empty(n)
    vk = np.empty(n)
    jd = np.empty(n)
    rhs = np.empty(n)
    x = np.empty(n)
    z = np.empty(n)
    u = np.zeros(n)
    scratch = np.empty(n)
    vprev = np.empty(n)
    x_bits, vk_bits = x.view(np.int64), vk.view(np.int64)
    cell = np.empty(1, np.int64)
    cell_float = cell.view(np.float64)
    c1 = 0.0
    size = 0.0
    k_est = 0.0  # Newton's quadratic constant, measured (newton_error_left)
    for step in range(nsteps):
        ts = t + step * dt
        _node_currents(ts, base, masks, t0s, t1s, amps, i0)
        _node_currents(ts + dt, base, masks, t0s, t1s, amps, i1)
        guess = extrapolate and step > 0
        # as in Newton's loop below: the end nodes read their ghosts, the interior no branch
        c1 = _start_node(0, vn[g0], code, vn, wn, vn[1], i0, p, h, diffusivity, inv_dx2,
                         alpha, beta, delta, guess, known, c0, vk, vprev)
        for i in range(1, n - 1):
            _start_node(i, vn[i - 1], code, vn, wn, vn[i + 1], i0, p, h, diffusivity,
                        inv_dx2, alpha, beta, delta, guess, known, c0, vk, vprev)
        _start_node(n - 1, vn[n - 2], code, vn, wn, vn[gn], i0, p, h, diffusivity, inv_dx2,
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
            if periodic:  # Sherman–Morrison, as crank_nicolson.solve_with_corners
                gamma = -jd[0]
                jd[0] -= gamma
                jd[n - 1] -= top * bottom / gamma
                row, piv = thomas_system(op_lower, jd, op_upper, rhs, x, scratch)
                if row >= 0:
                    return 2, step, row, piv
                u[0] = gamma
                u[n - 1] = bottom
                row, piv = thomas_system(op_lower, jd, op_upper, u, z, scratch)
                if row >= 0:
                    return 2, step, row, piv
                fact = (x[0] + top * x[n - 1] / gamma) / (1.0 + z[0] + top * z[n - 1] / gamma)
                for i in range(n):
                    x[i] -= fact * z[i]
            else:
                row, piv = thomas_system(op_lower, jd, op_upper, rhs, x, scratch)
                if row >= 0:
                    return 2, step, row, piv
            for i in range(n):
                vk[i] += x[i]
            size = _max_abs(x_bits, cell, cell_float)  # NaN if the update holds a NaN
            vmax = _max_abs(vk_bits, cell, cell_float)
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


@njit(**_JIT, parallel=True)
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


@njit(cache=True)
def _reaction_nodes(start, stop, code, scheme, v, w, current, params, dt, substeps, out_v,
                    out_w):
    h = dt / substeps
    shared = params.shape[1] == 1
    for i in range(start, stop):
        j = 0 if shared else i
        p = (params[0, j], params[1, j], params[2, j], params[3, j])
        vi = v[i]
        wi = w[i]
        I = current[i]
        for _ in range(substeps):
            if scheme == 0:
                vi, wi = euler_point(code, vi, wi, I, p, h)
            else:
                vi, wi = rk4_point(code, vi, wi, I, I, I, p, h)
        out_v[i] = vi
        out_w[i] = wi


@njit(cache=True)
def reaction_serial(code, scheme, v, w, current, params, dt, substeps, out_v, out_w):
    _reaction_nodes(0, v.shape[0], code, scheme, v, w, current, params, dt, substeps, out_v,
                    out_w)


@njit(cache=True, parallel=True)
def reaction_parallel(code, scheme, v, w, current, params, dt, substeps, nchunks, out_v,
                      out_w):
    n = v.shape[0]
    size = (n + nchunks - 1) // nchunks
    for c in prange(nchunks):
        start = c * size
        stop = min(n, start + size)
        if start < stop:
            _reaction_nodes(start, stop, code, scheme, v, w, current, params, dt, substeps,
                            out_v, out_w)


def reaction_advance(code, scheme, v, w, current, params, dt, substeps, out_v, out_w):
    """Advance every node's (v, w) by ``substeps`` Euler (scheme 0) or RK4 (1) steps over dt,
    the current held at ``current``; serial for short cables, threaded beyond
    PARALLEL_MIN_NODES nodes (or for any ensemble-sized work of many substeps)."""
    n = v.shape[0]
    if n * substeps >= PARALLEL_MIN_NODES:
        import numba

        reaction_parallel(code, scheme, v, w, current, params, dt, substeps,
                          numba.get_num_threads() * 4, out_v, out_w)
    else:
        reaction_serial(code, scheme, v, w, current, params, dt, substeps, out_v, out_w)


__all__ = ["cn_cable_advance", "cn_point_advance", "reaction_advance"]
