"""fhnpde.analysis.spiral_tip on synthetic rotating fields with a known tip and period.

1. Two linear fields whose zero isolines are lines crossing at a tip moving on a circle:
   bilinear interpolation is exact for them, so the tip is recovered to round-off (1e-10)
   and the period of the uniform circular motion to 1e-9 (relative).
2. A smooth nonlinear rotating field (an Archimedean-spiral phase around a moving core):
   the tip to 2 % of dx, the period to 1e-6 (relative).
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from fhnpde.analysis import cell_crossings, spiral_tip


def sheet(times, x, y, field):
    v, w = field(times[:, None, None], x[None, None, :], y[None, :, None])
    return xr.Dataset({"v": (("time", "y", "x"), v), "w": (("time", "y", "x"), w)},
                      coords={"time": times, "y": y, "x": x})


def circle(t, centre=(20.3, 18.7), radius=4.1, period=11.3):
    phase = 2 * np.pi * t / period
    return centre[0] + radius * np.cos(phase), centre[1] + radius * np.sin(phase), phase


def linear_field(t, x, y):
    tx, ty, phase = circle(t)
    # isolines through the tip, turning with it (never parallel: a right angle between them)
    c, s = np.cos(0.3 * phase), np.sin(0.3 * phase)
    return (x - tx) * c + (y - ty) * s + 0.2, -(x - tx) * s + (y - ty) * c - 0.1


def test_linear_isolines_give_the_tip_to_round_off():
    period = 11.3
    times = np.arange(0, 6 * period, period / 40)[:240]  # six whole turns, 40 per turn
    x = np.linspace(0.0, 40.0, 81)
    y = np.linspace(0.0, 36.0, 73)
    ds = sheet(times, x, y, linear_field)
    tip = spiral_tip(ds, v_iso=0.2, w_iso=-0.1)
    tx, ty, _ = circle(times)
    assert np.abs(tip.x.values - tx).max() < 1e-10
    assert np.abs(tip.y.values - ty).max() < 1e-10
    assert abs(float(tip.period) / period - 1) < 1e-9
    assert abs(float(tip.turns) - 6 * 239 / 240) < 1e-9
    assert abs(float(tip.center_x) - 20.3) < 1e-9
    assert abs(float(tip.center_y) - 18.7) < 1e-9


def spiral_field(t, x, y, period=9.7, pitch=12.0):
    """v = A cos(phase), w = A sin(phase), A = tanh(r), phase = angle - 2 pi r / pitch -
    2 pi t / period about a core moving on a circle of radius 1.5: smooth, and v = 0 meets
    w = 0 only at the core."""
    cx, cy, _ = circle(t, centre=(15.0, 15.0), radius=1.5, period=period)
    dx, dy = x - cx, y - cy
    r = np.hypot(dx, dy)
    ph = np.arctan2(dy, dx) - 2 * np.pi * r / pitch - 2 * np.pi * t / period
    amp = np.tanh(r)
    return amp * np.cos(ph), amp * np.sin(ph)


def test_nonlinear_spiral_tip_and_period():
    period = 9.7
    times = np.linspace(0, 8 * period, 8 * 32, endpoint=False)
    x = np.linspace(0.0, 30.0, 121)  # dx = 0.25
    y = np.linspace(0.0, 30.0, 121)
    tip = spiral_tip(sheet(times, x, y, spiral_field), v_iso=0.0, w_iso=0.0)
    cx, cy, _ = circle(times, centre=(15.0, 15.0), radius=1.5, period=period)
    err = np.hypot(tip.x.values - cx, tip.y.values - cy).max()
    assert err < 0.02 * 0.25
    assert abs(float(tip.period) / period - 1) < 1e-6
    assert 7.9 < float(tip.turns) < 8.0


def test_no_crossing_gives_nan_and_bad_input_is_refused():
    times = np.arange(3.0)
    x = y = np.linspace(0, 1, 5)
    ds = sheet(times, x, y, lambda t, x, y: (0 * t + 0 * x + 0 * y + 1.0,
                                              0 * t + 0 * x + 0 * y - 1.0))
    tip = spiral_tip(ds, v_iso=0.0, w_iso=0.0)
    assert np.isnan(tip.x.values).all()
    assert np.isnan(float(tip.period))
    cable = xr.Dataset({"v": (("time", "x"), np.zeros((2, 3))),
                        "w": (("time", "x"), np.zeros((2, 3)))})
    with pytest.raises(ValueError, match="needs a sheet run"):
        spiral_tip(cable)


def test_cell_crossings_single_cell():
    # v = xi - 0.25, w = eta - 0.75 on one cell: the crossing at (eta, xi) = (0.75, 0.25)
    v = np.array([[0.0, 1.0], [0.0, 1.0]]) - 0.25
    w = np.array([[0.0, 0.0], [1.0, 1.0]]) - 0.75
    np.testing.assert_allclose(cell_crossings(v, w, 0.0, 0.0), [[0.75, 0.25]], atol=1e-15)


def test_sheet_plot_draws_the_tip_of_a_spiral_only(tmp_path):
    """plot_sheet overlays the tip's path when a tip turns at least once (the synthetic
    spiral), and nothing on a field without one."""
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    from fhnpde.plotting import plot_sheet, spiral_tip_or_none

    period = 9.7
    times = np.linspace(0, 3 * period, 3 * 16, endpoint=False)
    x = y = np.linspace(0.0, 30.0, 61)
    ds = sheet(times, x, y, spiral_field)
    tip = spiral_tip_or_none(ds)
    assert tip is not None
    assert float(tip.turns) > 2.5
    out = plot_sheet(ds, tmp_path / "spiral.png")
    assert out.stat().st_size > 1000
    flat = sheet(times, x, y, lambda t, x, y: (np.cos(x - t) + 0 * y, np.sin(x - t) + 0 * y))
    assert spiral_tip_or_none(flat) is None
