r"""Analysis of stored runs: the tip of a spiral wave and its rotation period.

**Tip** (Barkley, Kness & Tuckerman 1990, *Phys. Rev. A* 42, 2489; Barkley 1991, *Physica D*
49, 61): the point where the isoline ``v = v_iso`` crosses the isoline ``w = w_iso``. In each
cell of the sheet (four neighbouring nodes) both fields are interpolated bilinearly,

.. math::

    f(\xi, \eta) = f_{00} (1-\xi)(1-\eta) + f_{10}\, \xi (1-\eta) + f_{01} (1-\xi)\, \eta
                 + f_{11}\, \xi \eta, \qquad (\xi, \eta) \in [0, 1]^2,

and ``f - v_iso = 0``, ``g - w_iso = 0`` are solved exactly: each is ``A + B ξ + C η + D ξ η
= 0``; eliminating η from the first, ``η = -(A + B ξ) / (C + D ξ)``, leaves a quadratic in ξ.
Only cells where both fields cross their levels are examined. When several cells hold a
crossing (e.g. a wave break far from the tip, or two spirals), the one nearest the previous
tip is kept (the first time: the one nearest the centre of the sheet).

**Period**: the tip's angle about the mean tip position (over ``t >= t_min``), unwrapped in
time, is fitted by a straight line ``theta = theta_0 + omega t`` (least squares); the period
is ``2 pi / |omega|``, the turns ``|theta_end - theta_start| / 2 pi``. The outputs must be
closer than half a period, so that the unwrapping sees every turn.
"""

from __future__ import annotations

import math

import numpy as np


def _bilinear_coefficients(f):
    """(A, B, C, D) of ``A + B xi + C eta + D xi eta`` for every cell of f (ny, nx)."""
    f00, f10 = f[:-1, :-1], f[:-1, 1:]
    f01, f11 = f[1:, :-1], f[1:, 1:]
    return f00, f10 - f00, f01 - f00, f11 - f10 - f01 + f00


def _crosses(f):
    """Cells where f changes sign (or touches zero) among its four corners."""
    corners = (f[:-1, :-1], f[:-1, 1:], f[1:, :-1], f[1:, 1:])
    lo = np.minimum.reduce(corners)
    hi = np.maximum.reduce(corners)
    return (lo <= 0) & (hi >= 0)


def cell_crossings(v, w, v_iso: float, w_iso: float) -> np.ndarray:
    """Every crossing of the isolines ``v = v_iso`` and ``w = w_iso`` in one snapshot
    (ny, nx), as rows (j + eta, i + xi) in node units (j along y, i along x)."""
    f = np.asarray(v, dtype=float) - v_iso
    g = np.asarray(w, dtype=float) - w_iso
    cells = np.argwhere(_crosses(f) & _crosses(g))
    if cells.size == 0:
        return np.zeros((0, 2))
    j, i = cells[:, 0], cells[:, 1]
    a1, b1, c1, d1 = (c[j, i] for c in _bilinear_coefficients(f))
    a2, b2, c2, d2 = (c[j, i] for c in _bilinear_coefficients(g))
    # (a2 + b2 xi)(c1 + d1 xi) - (c2 + d2 xi)(a1 + b1 xi) = q2 xi^2 + q1 xi + q0 = 0
    q2 = b2 * d1 - d2 * b1
    q1 = a2 * d1 + b2 * c1 - c2 * b1 - d2 * a1
    q0 = a2 * c1 - c2 * a1
    out = []
    for k in range(cells.shape[0]):
        for xi in _roots_in_unit(q2[k], q1[k], q0[k]):
            den1, den2 = c1[k] + d1[k] * xi, c2[k] + d2[k] * xi
            # eta from the better conditioned of the two equations
            if abs(den1) >= abs(den2):
                eta = -(a1[k] + b1[k] * xi) / den1 if den1 != 0 else math.nan
            else:
                eta = -(a2[k] + b2[k] * xi) / den2
            if -1e-12 <= eta <= 1 + 1e-12:
                out.append((j[k] + min(max(eta, 0.0), 1.0), i[k] + xi))
    return np.array(out).reshape(-1, 2)


def _roots_in_unit(a: float, b: float, c: float) -> list[float]:
    """Real roots of ``a x^2 + b x + c`` in [0, 1] (a linear equation when a is ~0)."""
    scale = max(abs(a), abs(b), abs(c))
    if scale == 0:
        return []
    if abs(a) <= 1e-14 * scale:
        roots = [-c / b] if b != 0 else []
    else:
        disc = b * b - 4 * a * c
        if disc < 0:
            return []
        sq = math.sqrt(disc)
        q = -0.5 * (b + math.copysign(sq, b))  # no cancellation (Numerical Recipes 5.6)
        roots = [q / a] + ([c / q] if q != 0 else [])
    return [min(max(r, 0.0), 1.0) for r in roots if -1e-12 <= r <= 1 + 1e-12]


def spiral_tip(ds, v_iso: float | None = None, w_iso: float | None = None,
               t_min: float | None = None):
    """The spiral tip of a sheet run and its rotation period (see the module docstring).

    ``ds``: a sheet run (``fhnpde.solve``, ``fhnpde.open_run`` or ``xarray.open_zarr``) with
    ``v``, ``w`` over ``(time, y, x)``. ``v_iso``, ``w_iso``: the levels of the isolines
    (None: the middle of the field's range over the run). ``t_min``: outputs before it are
    left out of the period (the start-up of the spiral); None: from the first tip found.

    Returns an ``xarray.Dataset`` over ``time`` with the tip ``x``, ``y`` (NaN where no
    crossing was found) and the scalars ``period``, ``turns`` (full rotations over the fitted
    interval) and ``center_x``, ``center_y`` (the mean tip position); the attributes repeat
    ``v_iso``, ``w_iso``, ``t_min``.
    """
    import xarray as xr

    if "y" not in ds.dims or "x" not in ds.dims:
        raise ValueError("spiral_tip needs a sheet run: v and w over (time, y, x)")
    v, w = ds["v"], ds["w"]
    if v_iso is None:
        v_iso = 0.5 * (float(v.min()) + float(v.max()))
    if w_iso is None:
        w_iso = 0.5 * (float(w.min()) + float(w.max()))
    x, y = np.asarray(ds["x"], dtype=float), np.asarray(ds["y"], dtype=float)
    dx, dy = x[1] - x[0], y[1] - y[0]
    times = np.asarray(ds["time"], dtype=float)
    tips = np.full((times.size, 2), np.nan)  # (y, x)
    previous = np.array([0.5 * (y[0] + y[-1]), 0.5 * (x[0] + x[-1])])
    for k in range(times.size):
        found = cell_crossings(np.asarray(v[k]), np.asarray(w[k]), v_iso, w_iso)
        if found.shape[0] == 0:
            continue
        points = np.column_stack([y[0] + found[:, 0] * dy, x[0] + found[:, 1] * dx])
        tips[k] = points[np.argmin(np.sum((points - previous) ** 2, axis=1))]
        previous = tips[k]
    period, turns, centre = _rotation(times, tips[:, 1], tips[:, 0], t_min)
    scalar = {"units": "1"}
    return xr.Dataset(
        {
            "x": ("time", tips[:, 1], {"long_name": "spiral tip x", "units": "1"}),
            "y": ("time", tips[:, 0], {"long_name": "spiral tip y", "units": "1"}),
            "period": ((), period, {"long_name": "rotation period", "units": "1"}),
            "turns": ((), turns, {"long_name": "rotations in the fitted interval", **scalar}),
            "center_x": ((), centre[0], {"long_name": "mean tip x", **scalar}),
            "center_y": ((), centre[1], {"long_name": "mean tip y", **scalar}),
        },
        coords={"time": ("time", times, dict(ds["time"].attrs))},
        attrs={"v_iso": v_iso, "w_iso": w_iso,
               "t_min": math.nan if t_min is None else float(t_min)},
    )


def _rotation(times, tx, ty, t_min):
    """(period, turns, (centre x, centre y)) from a tip trajectory; NaNs if under 3 points."""
    ok = np.isfinite(tx) & np.isfinite(ty)
    if t_min is not None:
        ok &= times >= t_min
    if ok.sum() < 3:
        return math.nan, math.nan, (math.nan, math.nan)
    t, px, py = times[ok], tx[ok], ty[ok]
    cx, cy = float(px.mean()), float(py.mean())
    theta = np.unwrap(np.arctan2(py - cy, px - cx))
    omega = np.polyfit(t, theta, 1)[0]
    period = 2 * math.pi / abs(omega) if omega != 0 else math.inf
    turns = abs(theta[-1] - theta[0]) / (2 * math.pi)
    return float(period), float(turns), (cx, cy)


__all__ = ["cell_crossings", "spiral_tip"]
