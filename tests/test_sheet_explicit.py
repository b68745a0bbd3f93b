"""The explicit solver on sheets (DESIGN section 9) against independent references: the
cable it must reduce to, the analytic heat kernel and the predicted leading error of the
five-point stencil, fitted orders through the convergence study, the exact speed of a
planar bistable front at 30 degrees to the grid, the symmetries of the square, the 2-D
stability limit, and the threaded kernel against the serial one."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from fhnpde.case import CaseError
from fhnpde.driver import build_solver
from tests.helpers import SMALL_CABLE, final_state, make_case

BACKENDS = ["numpy", "numba"]

# The cable of tests.helpers laid along x on a sheet with 9 rows: no datum depends on y.
SHEET_OF_CABLE = copy.deepcopy(SMALL_CABLE)
SHEET_OF_CABLE["domain"] = {"length": [40.0, 6.0], "nx": [81, 9], "boundary": "neumann"}

# Pure diffusion (k = 0: the Nagumo kinetics add nothing to v) of a Gaussian on a torus.
HEAT = {
    "name": "heat_sheet",
    "model": {"kinetics": "nagumo", "params": {"k": 0.0, "a": 0.1, "eps": 0.01, "gamma": 0.5},
              "diffusion": 1.0},
    "domain": {"length": [20.0, 20.0], "nx": [64, 64], "boundary": "periodic"},
    "initial": {"v": {"kind": "gaussian", "center": [10.0, 10.0], "width": 2.0}, "w": 0.0},
    "time": {"t_end": 0.4, "dt": 0.02},
    "solver": {"method": "explicit", "backend": "numba"},
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_y_independent_sheet_is_the_cable(backend, boundary):
    """Same x-grid, same data on every row, a stimulus box without a y range: every row of
    the sheet equals the cable to 1e-12 (v and w)."""
    sets = [f"solver.backend={backend}", f"domain.boundary={boundary}",
            "stimuli=[{x: [0.0, 3.0], t: [0.0, 2.0], amplitude: 0.3}]"]
    _, v_cable, w_cable = final_state(make_case(SMALL_CABLE, *sets))
    problem, v_sheet, w_sheet = final_state(make_case(SHEET_OF_CABLE, *sets))
    assert problem.geometry == "sheet"
    assert v_sheet.shape == (9, 81)
    np.testing.assert_allclose(v_sheet, np.broadcast_to(v_cable, (9, 81)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(w_sheet, np.broadcast_to(w_cable, (9, 81)), rtol=0, atol=1e-12)
    assert np.ptp(v_cable) > 0.1  # the pulse did something


def heat_kernel(grid, t, center, width, diffusion, images=2):
    """exp(-|r - c|^2 / s^2) diffused for a time t on the torus: the plane's heat kernel
    (s^2 -> s^2 + 4 D t, amplitude s^2 / (s^2 + 4 D t)) summed over periodic images."""
    y, x = np.meshgrid(grid.y, grid.x, indexing="ij")
    lx, ly = grid.length
    s2 = width**2 + 4.0 * diffusion * t
    total = np.zeros(grid.shape)
    for m in range(-images, images + 1):
        for n in range(-images, images + 1):
            r2 = (x - center[0] + m * lx) ** 2 + (y - center[1] + n * ly) ** 2
            total += np.exp(-r2 / s2)
    return width**2 / s2 * total


def predicted_leading_error(grid, v0, t, dt, diffusion, space_order=2):
    """The leading term of the scheme's error at time t, mode by mode on the torus: forward
    Euler with the five-point stencil decays the Fourier mode k at the rate
    ``-D |k|^2 + D (dx^2 kx^4 + dy^2 ky^4) / 12 - dt D^2 |k|^4 / 2 + ...`` (Taylor series
    of the stencil's symbol and of log(1 + dt lambda) / dt), so its error after a time t is
    ``t (D (dx^2 kx^4 + dy^2 ky^4) / 12 - dt D^2 |k|^4 / 2) exp(-D |k|^2 t)`` times the
    mode's initial amplitude. With the fourth-order stencil (``space_order`` 4) the symbol
    is ``|k|^2 - (dx^4 kx^6 + dy^4 ky^6) / 90 + ...`` and the spatial term
    ``D (dx^4 kx^6 + dy^4 ky^6) / 90``."""
    ny, nx = grid.shape
    kx = 2 * np.pi * np.fft.fftfreq(nx, d=grid.dx)
    ky = 2 * np.pi * np.fft.fftfreq(ny, d=grid.dy)
    KY, KX = np.meshgrid(ky, kx, indexing="ij")
    k2 = KX**2 + KY**2
    if space_order == 4:
        spatial = diffusion * (grid.dx**4 * KX**6 + grid.dy**4 * KY**6) / 90.0
    else:
        spatial = diffusion * (grid.dx**2 * KX**4 + grid.dy**2 * KY**4) / 12.0
    rate_error = spatial - dt * diffusion**2 * k2**2 / 2.0
    return np.real(np.fft.ifft2(t * rate_error * np.exp(-diffusion * k2 * t) * np.fft.fft2(v0)))


@pytest.mark.parametrize(("nx", "dt"), [(64, 0.02), (96, 0.005), (128, 0.001)])
def test_heat_kernel_error_is_the_predicted_leading_term(nx, dt):
    """Reaction off, periodic: the error against the analytic heat kernel is at most twice
    (and at least half) the error the stencil's leading terms predict, in the max norm."""
    case = make_case(HEAT, f"domain.nx=[{nx}, {nx}]", f"time.dt={dt}")
    problem, v, _ = final_state(case)
    grid, t = problem.grid, case.time.t_end
    exact = heat_kernel(grid, t, (10.0, 10.0), 2.0, 1.0)
    # the case's Gaussian is not periodic: it misses its images, 1e-11 at the edges
    v0 = heat_kernel(grid, 0.0, (10.0, 10.0), 2.0, 1.0)
    np.testing.assert_allclose(problem.v0, v0, rtol=0, atol=1e-10)
    error = np.max(np.abs(v - exact))
    predicted = np.max(np.abs(predicted_leading_error(grid, v0, t, dt, 1.0)))
    print(f"nx {nx} dt {dt}: max error {error:.4e}, predicted {predicted:.4e}, "
          f"ratio {error / predicted:.3f}")
    assert 0.5 * predicted <= error <= 2.0 * predicted, (error, predicted)


def test_heat_kernel_orders_through_the_convergence_study():
    """The convergence study on the sheet: order 1 in dt (against scipy BDF on the same
    grid) and 2 in dx (dt following dx^2; against the solver two levels finer)."""
    from fhnpde.studies import convergence_study

    in_dt = convergence_study(make_case(HEAT, "domain.nx=[48, 48]", "time.dt=0.04"), "dt",
                              levels=4, reference="scipy")
    assert in_dt.declared_order == 1
    assert in_dt.fitted_order_max == pytest.approx(1.0, abs=0.15), in_dt.report()
    assert in_dt.fitted_order_rmse == pytest.approx(1.0, abs=0.15), in_dt.report()
    assert "48x48" in in_dt.report()
    in_dx = convergence_study(make_case(HEAT, "domain.nx=[32, 32]", "time.dt=0.08"), "dx",
                              levels=3, reference="self")
    assert in_dx.declared_order == 2
    assert [lv.nx for lv in in_dx.levels] == [[32, 32], [64, 64], [128, 128]]
    assert in_dx.fitted_order_max == pytest.approx(2.0, abs=0.15), in_dx.report()
    assert in_dx.fitted_order_rmse == pytest.approx(2.0, abs=0.15), in_dx.report()


def front_speed_at_30_degrees(nx: int, dt: float, *sets: str) -> tuple[float, float]:
    """(measured, exact) speed of the Nagumo front (eps -> 0, w = 0, k = D = 1, a = 0.25)
    ``U(xi) = 1 / (1 + exp(xi sqrt(k / (2 D))))`` started exactly on a 60 x 60 sheet of
    nx x nx nodes, its normal at 30 degrees to x: the level v = 1/2 along the normal (rows
    of the middle fifth, crossing found by linear interpolation), recorded every 2 time
    units to t = 24, fitted by a line from t = 4 (past the start's adjustment to the
    lattice). The exact speed is sqrt(2 k D) (1/2 - a)."""
    k, diffusion, a, length = 1.0, 1.0, 0.25, 60.0
    case = make_case({
        "name": "front30",
        "model": {"kinetics": "nagumo", "params": {"k": k, "a": a, "eps": 1e-12, "gamma": 0.0},
                  "diffusion": diffusion},
        "domain": {"length": [length, length], "nx": [nx, nx]},
        "time": {"t_end": 24.0, "dt": dt},
        "solver": {"method": "explicit", "backend": "numba"}}, *sets)
    problem, solver = build_solver(case)
    grid = problem.grid
    theta = np.deg2rad(30.0)
    normal = np.array([np.cos(theta), np.sin(theta)])
    y, x = np.meshgrid(grid.y, grid.x, indexing="ij")
    xi = normal[0] * x + normal[1] * y - 0.5 * length
    problem.v0[...] = 1.0 / (1.0 + np.exp(xi * np.sqrt(k / (2.0 * diffusion))))
    rows = range(int(0.4 * grid.shape[0]), int(0.6 * grid.shape[0]))

    def front_position(v):
        along = []
        for j in rows:
            r = v[j]
            i = np.flatnonzero((r[:-1] >= 0.5) & (r[1:] < 0.5))[0]
            xc = grid.x[i] + (r[i] - 0.5) / (r[i] - r[i + 1]) * grid.dx
            along.append(normal[0] * xc + normal[1] * grid.y[j])
        return np.mean(along)

    every = round(2.0 / dt)
    state, t, times, positions = solver.init(), 0.0, [], []
    for _ in range(12):
        state = solver.advance(state, t, dt, every)
        t += every * dt
        times.append(t)
        positions.append(front_position(np.asarray(state.v)))
    times, positions = np.array(times), np.array(positions)
    use = times >= 4.0
    return np.polyfit(times[use], positions[use], 1)[0], np.sqrt(2 * k * diffusion) * (0.5 - a)


def test_planar_bistable_front_at_30_degrees_moves_at_the_exact_speed():
    """v_t = D lap v + k v (1 - v)(v - a) (Nagumo, eps -> 0, w = 0) has the travelling front
    U(xi) = 1 / (1 + exp(xi sqrt(k / (2 D)))) of speed c = sqrt(2 k D) (1/2 - a). Started
    exactly, with its normal at 30 degrees to x (:func:`front_speed_at_30_degrees`), it moves
    at c within 0.5 % (measured: -0.07 % at dx = 0.25)."""
    speed, exact = front_speed_at_30_degrees(241, 0.01)
    assert speed == pytest.approx(exact, rel=0.005), (speed, exact)


SYMMETRIC = {
    "name": "radial",
    "model": {"kinetics": "nagumo", "params": {"k": 1.0, "a": 0.1, "eps": 0.01, "gamma": 0.5},
              "diffusion": 1.0},
    "domain": {"length": [30.0, 30.0], "nx": [61, 61], "boundary": "neumann"},
    "initial": {"v": {"kind": "gaussian", "center": [15.0, 15.0], "width": 3.0}, "w": 0.0},
    "stimuli": [{"x": [12.5, 17.5], "y": [12.5, 17.5], "t": [0.0, 1.0], "amplitude": 0.2}],
    "time": {"t_end": 15.0, "dt": 0.05},
    "solver": {"method": "explicit", "backend": "numpy"},
}


def square_symmetries(v):
    """The 8 images of a square field under the dihedral group of the square."""
    out = []
    for k in range(4):
        r = np.rot90(v, k)
        out += [r, r.T]
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
@pytest.mark.parametrize("space_order", [2, 4])
def test_radially_symmetric_state_keeps_the_symmetries_of_the_square(backend, boundary,
                                                                     space_order):
    """A radially symmetric pulse and a centred square stimulus on a square sheet: v and w
    are invariant under the 8 symmetries of the square to 1e-12 while the pulse grows into
    an expanding disc; with the five-point stencil and the fourth-order one (at dt = 0.04:
    its limit is 3/4 of the five-point one, 0.046875 at dx = 0.5)."""
    sets = [f"solver.backend={backend}", f"domain.boundary={boundary}",
            f"solver.space_order={space_order}"]
    if space_order == 4:
        sets += ["time.dt=0.04"]
    if boundary == "periodic":  # 60 nodes of dx = 0.5: node 30 is the centre again
        sets += ["domain.nx=[60, 60]"]
    problem, v, w = final_state(make_case(SYMMETRIC, *sets))
    started = np.mean(problem.v0 > 0.5)
    if boundary == "periodic":
        # reflections about node 30 map node i to 60 - i (mod 60): nodes 1..59 onto
        # themselves, so the square's symmetries act on the field without row/column 0
        v, w = v[1:, 1:], w[1:, 1:]
    for field in (v, w):
        for image in square_symmetries(field):
            np.testing.assert_allclose(image, field, rtol=0, atol=1e-12)
    excited = np.mean(v > 0.5)  # the pulse spread: a disc far wider than its start
    assert excited > 3 * started, (excited, started)


def test_the_2d_stability_limit_is_checked():
    """dt <= dx^2 dy^2 / (2 D (dx^2 + dy^2)): 1/(2 (1/0.25 + 1/1)) = 0.1 at dx = 0.5,
    dy = 1 and D = 1. Beyond it the case is refused with the limit in the message unless
    forced; forced, the checkerboard mode grows; at it, nothing grows."""
    base = {**HEAT, "domain": {"length": [16.0, 16.0], "nx": [32, 16], "boundary": "periodic"},
            "time": {"t_end": 20.0, "dt": 0.1}}
    _, solver = build_solver(make_case(base))
    assert solver.stability_limit(0.1) == pytest.approx(0.1, rel=1e-15)
    with pytest.raises(CaseError, match=r"time\.dt: 0\.11 exceeds the stability limit 0\.1 of "
                                        r"the explicit scheme \(dx\^2 dy\^2 / \(2 D"):
        build_solver(make_case(base, "time.dt=0.11", "time.t_end=22"))
    _, v, _ = final_state(make_case(base, "time.dt=0.11", "time.t_end=22", "solver.force=true"))
    assert not np.all(np.abs(v) < 10)  # blew up from round-off
    _, v, _ = final_state(make_case(base))
    assert np.abs(v).max() <= 1.0


@pytest.mark.parametrize(("ny", "nx"), [(7, 40_000), (600, 450), (1200, 250)])
def test_threaded_kernel_is_bit_for_bit_the_serial_kernel(ny, nx):
    """Fewer rows than blocks, mirror and ring edges, a current: the threaded sheet kernel
    gives exactly the serial kernel's result."""
    from fhnpde.backends import kernels

    k = kernels("fhnpde.solvers.explicit_numba")
    rng = np.random.default_rng(3)
    v, w, current = rng.random((ny, nx)), 0.1 * rng.random((ny, nx)), rng.random((ny, nx))
    params = (1.0, 0.1, 0.01, 0.5)
    for ghosts in ((1, nx - 2, 1, ny - 2), (nx - 1, 0, ny - 1, 0)):
        outs = []
        for kernel in (k.sheet_step_serial, k.sheet_step_parallel):
            out_v, out_w = np.empty_like(v), np.empty_like(w)
            kernel(0, v, w, current, params, 0.01, 1.0, 4.0, 9.0, *ghosts, out_v, out_w)
            outs.append((out_v, out_w))
        np.testing.assert_array_equal(outs[0][0], outs[1][0])
        np.testing.assert_array_equal(outs[0][1], outs[1][1])
    # and the serial kernel is the array formula
    from fhnpde.grid import SheetGrid
    from fhnpde.schemes import forward_euler_sheet_node

    grid = SheetGrid((nx - 1.0, ny - 1.0), (nx, ny))
    left, right, below, above = grid.neighbours(v)
    ref_v, ref_w = forward_euler_sheet_node(left, right, below, above, v, w, current, 0, params,
                                            0.01, 1.0, 4.0, 9.0)
    out_v, out_w = np.empty_like(v), np.empty_like(w)
    k.sheet_step_serial(0, v, w, current, params, 0.01, 1.0, 4.0, 9.0, 1, nx - 2, 1, ny - 2,
                        out_v, out_w)
    np.testing.assert_allclose(out_v, ref_v, rtol=0, atol=1e-13)
    np.testing.assert_allclose(out_w, ref_w, rtol=0, atol=1e-13)


def test_stability_study_finds_the_2d_limit():
    """The stability study on a sheet (a radial pulse, so no mode is absent from the data):
    the largest stable dt is the five-point limit dx^2 dy^2 / (2 D (dx^2 + dy^2)), up to
    the small margin the kinetics' damping at rest adds (measured: 1.011 x at dx = 1)."""
    from fhnpde.studies import stability_study

    case = make_case(SYMMETRIC, "domain.nx=[21, 21]", "solver.backend=numba", "time.dt=0.1",
                     "time.t_end=40")
    study = stability_study(case, ["explicit"], rtol=0.01, cap_factor=4.0)
    dx = 30.0 / 20
    assert study.explicit_limit == pytest.approx(dx**4 / (2 * 2 * dx**2), rel=1e-12)
    assert "dx^2 dy^2/(2D(dx^2+dy^2))" in study.report()
    (result,) = study.results
    assert 1.0 <= result.largest_stable_dt / study.explicit_limit <= 1.05, study.report()
