r"""numba kernel of the explicit solver's backward pass (:meth:`ExplicitSteps.adjoint
<fhnpde.gradients.run.ExplicitSteps.adjoint>` on CPU tensors).

Imported through ``fhnpde.backends.kernels("fhnpde.gradients.adjoint_numba")``. One call per
output interval: the interval's states are recomputed by the explicit solver's own compiled
step (:func:`fhnpde.solvers.explicit_numba.explicit_step_serial`), then the adjoint of
forward Euler runs backwards over them, node by node, with the model's derivatives
(:func:`~fhnpde.models.dreaction_dv_by_code`, :func:`~fhnpde.models.recovery_by_code`,
:func:`~fhnpde.models.dreaction_dparams_by_code`; registered as jitable by
:mod:`fhnpde.compiled`). The kernel holds no formula of the kinetics.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..models import dreaction_dparams_by_code, dreaction_dv_by_code, recovery_by_code
from ..solvers.explicit_numba import explicit_step_serial


@njit(cache=True)
def laplacian_transposed(lower, diag, upper, top, bottom, x, out):
    """``out = L^T x`` for the Laplacian with bands ``(lower, diag, upper)`` (row i: columns
    i-1, i, i+1) and corners ``top = L[0, n-1]``, ``bottom = L[n-1, 0]``
    (:func:`fhnpde.operators.laplacian_bands`)."""
    n = x.shape[0]
    out[0] = diag[0] * x[0] + lower[1] * x[1] + bottom * x[n - 1]
    for i in range(1, n - 1):
        out[i] = upper[i - 1] * x[i - 1] + diag[i] * x[i] + lower[i + 1] * x[i + 1]
    out[n - 1] = upper[n - 2] * x[n - 2] + diag[n - 1] * x[n - 1] + top * x[0]


@njit(cache=True)
def explicit_interval_adjoint(code, v, w, currents, which, p, dt, diffusivity, inv_dx2, g0, gn,
                              lower, diag, upper, top, bottom, lam_v, lam_w, grad_p, grad_i,
                              want_i):
    r"""The backward pass of ``len(which)`` forward-Euler steps from ``(v, w)``.

    ``currents[which[n]]``: the current of step n. On entry ``lam_v``, ``lam_w`` hold dJ/d(v,
    w) after the last step; on return, before the first. Adds to ``grad_p[j]``
    ``Σ_n Σ_i λ_v^{n+1} f_{p_j} + λ_w^{n+1} g_{p_j}`` and to ``grad_i[c]``
    ``Σ_{n: which[n] = c} λ_v^{n+1} f_I`` if ``want_i`` (at step n's state), and returns
    ``Σ_n (L^T λ_v^{n+1})·v^n``: each times ``dt`` is the gradient. The recurrence,

    .. math::

        λ_v^n = λ_v^{n+1} + Δt \big(D L^T λ_v^{n+1} + f_v λ_v^{n+1} + α λ_w^{n+1}\big),
        \qquad λ_w^n = λ_w^{n+1} + Δt \big(f_w λ_v^{n+1} - β λ_w^{n+1}\big)

    with ``g = α v - β w + δ`` and ``f_w`` constant (the affine recovery of every family).
    """
    nsteps = which.shape[0]
    n = v.shape[0]
    vs = np.empty((nsteps, n))
    ws = np.empty((nsteps, n))
    vs[0] = v
    ws[0] = w
    for s in range(nsteps - 1):
        explicit_step_serial(code, vs[s], ws[s], currents[which[s]], p, dt, diffusivity,
                             inv_dx2, g0, gn, vs[s + 1], ws[s + 1])
    alpha, beta, _, dfdw = recovery_by_code(code, p)
    rate = np.empty(n)
    # the sums per node, over the steps, then over the nodes: a loop without a scalar sum
    # carried from node to node, which LLVM vectorises (4x faster than scalar sums)
    sums = np.zeros((5, n))
    for s in range(nsteps - 1, -1, -1):
        laplacian_transposed(lower, diag, upper, top, bottom, lam_v, rate)
        current, state_v, state_w = currents[which[s]], vs[s], ws[s]
        if want_i:  # the current's gradient, λ_v^{n+1} f_I, in a loop of its own
            into = grad_i[which[s]]
            for i in range(n):
                f_i = dreaction_dparams_by_code(code, state_v[i], state_w[i], current[i], p)[2]
                into[i] += lam_v[i] * f_i
        for i in range(n):
            vi, wi, ii = state_v[i], state_w[i], current[i]
            lv, lw = lam_v[i], lam_w[i]
            df, dg, _ = dreaction_dparams_by_code(code, vi, wi, ii, p)
            sums[0, i] += lv * df[0] + lw * dg[0]
            sums[1, i] += lv * df[1] + lw * dg[1]
            sums[2, i] += lv * df[2] + lw * dg[2]
            sums[3, i] += lv * df[3] + lw * dg[3]
            sums[4, i] += rate[i] * vi
            f_v = dreaction_dv_by_code(code, vi, wi, ii, p)
            lam_v[i] = lv + dt * (diffusivity * rate[i] + f_v * lv + alpha * lw)
            lam_w[i] = lw + dt * (dfdw * lv - beta * lw)
    for j in range(4):
        grad_p[j] += sums[j].sum()
    return sums[4].sum()
