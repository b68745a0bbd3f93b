"""Observed and fitted orders of accuracy from errors at several resolutions.

If the error behaves as :math:`u_h - u = C h^p`, a reference computed with the same scheme
at :math:`h_\\mathrm{ref}` carries its own error, and

.. math::

    e_k = \\|u_{h_k} - u_{h_\\mathrm{ref}}\\| = c\\,(h_k^p - h_\\mathrm{ref}^p).

The observed order between levels ``k-1`` and ``k`` is the ``p`` that solves
``e_{k-1} / e_k = (h_{k-1}^p - h_ref^p) / (h_k^p - h_ref^p)``; the fitted order is the
least-squares fit of ``log e_k = log c + log(h_k^p - h_ref^p)`` over all levels. With an
independent reference ``h_ref = 0`` and these are ``log(e_{k-1}/e_k) / log R`` and the slope
of ``log e`` against ``log h``. See docs/convergence.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .runs import (
    ORDER_BOUNDS,
)


def _log_model(h: np.ndarray, p: float, h_ref: float) -> np.ndarray:
    """log(h^p - h_ref^p), written to stay accurate for small p and h_ref << h."""
    h = np.asarray(h, dtype=float)
    if h_ref <= 0.0:
        return p * np.log(h)
    return p * np.log(h) + np.log(-np.expm1(p * np.log(h_ref / h)))


def observed_orders(h: Sequence[float], errors: Sequence[float], h_ref: float = 0.0) -> np.ndarray:
    """Order between consecutive levels: the ``p`` with
    ``e_{k-1}/e_k = (h_{k-1}^p - h_ref^p) / (h_k^p - h_ref^p)`` (NaN for the first level).

    ``h_ref = 0`` gives ``log(e_{k-1}/e_k) / log(h_{k-1}/h_k)``. Where no ``p`` in
    (0.001, 20) fits (a non-decreasing error) the uncorrected formula is returned.
    """
    from scipy.optimize import brentq

    h = np.asarray(h, dtype=float)
    e = np.asarray(errors, dtype=float)
    out = np.full(h.size, np.nan)
    for k in range(1, h.size):
        if not (e[k - 1] > 0 and e[k] > 0):
            continue
        plain = math.log(e[k - 1] / e[k]) / math.log(h[k - 1] / h[k])
        if h_ref <= 0.0:
            out[k] = plain
            continue
        target = math.log(e[k - 1] / e[k])

        def gap(p, k=k, target=target):
            pair = _log_model(h[[k - 1, k]], p, h_ref)
            return pair[0] - pair[1] - target

        lo, hi = ORDER_BOUNDS
        if gap(lo) < 0.0 < gap(hi):
            out[k] = brentq(gap, lo, hi, xtol=1e-10)
        else:
            out[k] = plain
    return out


def fitted_order(h: Sequence[float], errors: Sequence[float], h_ref: float = 0.0) -> float:
    """Least-squares order: minimises ``sum_k (log e_k - log c - log(h_k^p - h_ref^p))^2``.

    With ``h_ref = 0`` it is the slope of the regression line of ``log e`` on ``log h``;
    that slope is also returned when no ``p`` in (0.001, 20) fits (an error that hardly
    falls with ``h``).
    """
    from scipy.optimize import minimize_scalar

    h = np.asarray(h, dtype=float)
    e = np.asarray(errors, dtype=float)
    keep = e > 0
    h, e = h[keep], e[keep]
    if h.size < 2:
        return float("nan")
    log_e = np.log(e)
    if h_ref <= 0.0:
        return float(np.polyfit(np.log(h), log_e, 1)[0])

    def sse(p):
        r = log_e - _log_model(h, p, h_ref)
        r = r - r.mean()
        return float(r @ r)

    grid = np.linspace(*ORDER_BOUNDS, 400)
    best = grid[int(np.argmin([sse(p) for p in grid]))]
    step = grid[1] - grid[0]
    res = minimize_scalar(sse, bounds=(max(ORDER_BOUNDS[0], best - step),
                                       min(ORDER_BOUNDS[1], best + step)),
                          method="bounded", options={"xatol": 1e-8})
    if res.x < 2 * ORDER_BOUNDS[0] or res.x > ORDER_BOUNDS[1] - 1e-3:
        # no order in (0.001, 20) fits (the error hardly falls): the plain slope says more
        return float(np.polyfit(np.log(h), log_e, 1)[0])
    return float(res.x)
