"""The explicit solver's fourth-order stencils (``solver.space_order: 4``) on cables and sheets
against independent references: the decay of cosine modes, which the stencil's symbol gives
exactly (every edge treatment included); the analytic heat kernel, its error the predicted
leading term and fourth order in dx, also through the convergence study (against itself and
against scipy BDF with the same operator); the cable it must reduce to; a planar bistable
front's exact speed at 30 degrees to the grid; the stability limit 3 dx^2 / (8 D) per
direction; the threaded kernels against the serial ones and the array formula; and the
case's checks. (The symmetries of the square: tests.test_sheet_explicit, both stencils.)"""

from __future__ import annotations

import numpy as np
import pytest

from fhnpde.case import CaseError
from fhnpde.driver import build_solver
from tests.helpers import SMALL_CABLE, final_state, make_case
from tests.test_sheet_explicit import (
    HEAT,
    SHEET_OF_CABLE,
    front_speed_at_30_degrees,
    heat_kernel,
    predicted_leading_error,
)

BACKENDS = ["numpy", "numba"]
ORDER4 = "solver.space_order=4"

# pure diffusion (k = 0: the Nagumo kinetics add nothing to v)
DIFFUSION_ONLY = {"k": 0.0, "a": 0.1, "eps": 0.01, "gamma": 0.5}


def symbol(kappa, dx):
    """-(the fourth-order second difference) of cos(kappa x), divided by cos(kappa x):
    (30 - 32 cos(kappa dx) + 2 cos(2 kappa dx)) / (12 dx^2) (it tends to kappa^2)."""
    return (30.0 - 32.0 * np.cos(kappa * dx) + 2.0 * np.cos(2.0 * kappa * dx)) / (12.0 * dx * dx)


def run_from(case, v0):
    """Final v of a case started from the array v0 (w = 0)."""
    problem, solver = build_solver(case)
    problem.v0[...] = v0
    state = solver.advance(solver.init(), 0.0, case.time.dt, case.time.n_steps)
    return problem, np.asarray(state.v)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_cosine_modes_decay_as_the_symbol_says_on_a_cable(backend, boundary):
    """cos(kappa x) with kappa = m pi / L (no-flux: the mirror's even extension is the cosine
    itself) or 2 pi m / L (ring) is an eigenvector of the stencil, every end node included:
    after N forward-Euler steps it is (1 - dt D mu)^N cos(kappa x), mu the symbol, to 1e-13.
    A wrong outer ghost would break it at the two nodes nearest each end."""
    length, nx, dt, steps, diffusion = 20.0, 41, 0.05, 40, 1.3
    case = make_case(SMALL_CABLE, f"domain.length={length}", f"domain.nx={nx}",
                     f"domain.boundary={boundary}", f"time.dt={dt}", f"time.t_end={dt * steps}",
                     f"model.diffusion={diffusion}", "model.params.k=0.0", "stimuli=[]",
                     f"solver.backend={backend}", ORDER4)
    for m in (1, 3, 7):
        grid = build_solver(case)[0].grid
        kappa = (m * np.pi if boundary == "neumann" else 2.0 * np.pi * m) / length
        _, v = run_from(case, np.cos(kappa * grid.x))
        factor = (1.0 - dt * diffusion * symbol(kappa, grid.dx)) ** steps
        np.testing.assert_allclose(v, factor * np.cos(kappa * grid.x), rtol=0, atol=1e-13)
        assert factor < 0.99  # the mode decayed


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_cosine_modes_decay_as_the_symbol_says_on_a_sheet(backend, boundary):
    """cos(kx x) cos(ky y) on a sheet with dx != dy: the factor per step is
    1 - dt D (mu(kx, dx) + mu(ky, dy)), to 1e-13 on every node (the edge rows and columns
    read through both directions' outer ghosts)."""
    lx, ly, nx, ny, dt, steps = 20.0, 12.0, 41, 25, 0.03, 30
    case = make_case(HEAT, f"domain.length=[{lx}, {ly}]", f"domain.nx=[{nx}, {ny}]",
                     f"domain.boundary={boundary}", f"time.dt={dt}", f"time.t_end={dt * steps}",
                     f"solver.backend={backend}", ORDER4)
    grid = build_solver(case)[0].grid
    y, x = np.meshgrid(grid.y, grid.x, indexing="ij")
    for mx, my in ((1, 2), (5, 3)):
        scale = np.pi if boundary == "neumann" else 2.0 * np.pi
        kx, ky = scale * mx / lx, scale * my / ly
        mode = np.cos(kx * x) * np.cos(ky * y)
        _, v = run_from(case, mode)
        factor = (1.0 - dt * (symbol(kx, grid.dx) + symbol(ky, grid.dy))) ** steps
        np.testing.assert_allclose(v, factor * mode, rtol=0, atol=1e-13)
        assert factor < 0.99


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_y_independent_sheet_is_the_fourth_order_cable(backend, boundary):
    """The cable laid along x on a sheet with 9 rows, a stimulus without a y range: every row
    equals the fourth-order cable to 1e-12 (v and w), and differs from the second-order one."""
    sets = [f"solver.backend={backend}", f"domain.boundary={boundary}",
            "stimuli=[{x: [0.0, 3.0], t: [0.0, 2.0], amplitude: 0.3}]"]
    _, v_cable, w_cable = final_state(make_case(SMALL_CABLE, *sets, ORDER4))
    _, v_sheet, w_sheet = final_state(make_case(SHEET_OF_CABLE, *sets, ORDER4))
    np.testing.assert_allclose(v_sheet, np.broadcast_to(v_cable, v_sheet.shape), rtol=0,
                               atol=1e-12)
    np.testing.assert_allclose(w_sheet, np.broadcast_to(w_cable, w_sheet.shape), rtol=0,
                               atol=1e-12)
    _, v_second, _ = final_state(make_case(SMALL_CABLE, *sets))
    assert np.ptp(v_cable) > 0.1
    assert np.abs(v_second - v_cable).max() > 1e-4


@pytest.mark.parametrize(("nx", "dt"), [(24, 0.005), (32, 0.0002), (48, 0.00005)])
def test_heat_kernel_error_is_the_predicted_fourth_order_term(nx, dt):
    """Reaction off, periodic: the max error against the analytic heat kernel is within a
    factor 2 of the predicted leading term (spatial and temporal together; the symbol is
    |k|^2 - (dx^4 kx^6 + dy^4 ky^6) / 90 + ..., tests.test_sheet_explicit's
    predicted_leading_error)."""
    case = make_case(HEAT, f"domain.nx=[{nx}, {nx}]", f"time.dt={dt}", ORDER4)
    problem, v, _ = final_state(case)
    grid, t = problem.grid, case.time.t_end
    exact = heat_kernel(grid, t, (10.0, 10.0), 2.0, 1.0)
    v0 = heat_kernel(grid, 0.0, (10.0, 10.0), 2.0, 1.0)
    error = np.max(np.abs(v - exact))
    predicted = np.max(np.abs(predicted_leading_error(grid, v0, t, dt, 1.0, space_order=4)))
    print(f"nx {nx} dt {dt}: max error {error:.4e}, predicted {predicted:.4e}, "
          f"ratio {error / predicted:.3f}")
    assert 0.5 * predicted <= error <= 2.0 * predicted, (error, predicted)


def test_heat_kernel_error_falls_as_dx_to_the_fourth():
    """Same run, dt = 1e-5 so that the spatial error leads: halving dx twice divides the max
    error against the analytic heat kernel by about 2^4 each time (measured: 3.7e-3, 2.6e-4,
    1.5e-5, fitted order 3.95; 4 +- 0.15 asked), where the five-point stencil gives order
    2 and an error 70x larger on the finest grid."""
    errors = {2: [], 4: []}
    sizes = (20, 40, 80)
    for nx in sizes:
        for order in (2, 4):
            case = make_case(HEAT, f"domain.nx=[{nx}, {nx}]", "time.dt=1e-5",
                             f"solver.space_order={order}")
            problem, v, _ = final_state(case)
            exact = heat_kernel(problem.grid, case.time.t_end, (10.0, 10.0), 2.0, 1.0)
            errors[order].append(np.max(np.abs(v - exact)))
    h = 20.0 / np.array(sizes)
    fitted = {order: np.polyfit(np.log(h), np.log(e), 1)[0] for order, e in errors.items()}
    print(errors, fitted)
    assert fitted[4] == pytest.approx(4.0, abs=0.15), errors
    assert fitted[2] == pytest.approx(2.0, abs=0.15), errors
    assert errors[4][-1] < 0.02 * errors[2][-1]


def test_convergence_study_fits_order_four_in_dx():
    """The convergence command on a ring cable (a Gaussian, reaction off): dt follows dx^4
    (declared orders 4 / 1), the reference is the solver two levels finer; fitted 4 +- 0.15
    in both norms."""
    from fhnpde.studies import convergence_study

    case = make_case(SMALL_CABLE, "domain.length=20.0", "domain.nx=24", "domain.boundary=periodic",
                     "initial.v={kind: gaussian, center: 10.0, width: 2.0, amplitude: 1.0}",
                     "model.params.k=0.0", "stimuli=[]", "time.dt=0.1", "time.t_end=0.4",
                     ORDER4)
    result = convergence_study(case, "dx", levels=3, reference="self")
    assert result.declared_order == 4
    assert [lv.nx for lv in result.levels] == [24, 48, 96]
    assert "dx/dx0)^4" in result.report()
    assert result.fitted_order_max == pytest.approx(4.0, abs=0.15), result.report()
    assert result.fitted_order_rmse == pytest.approx(4.0, abs=0.15), result.report()


def test_planar_front_speed_at_30_degrees():
    """The exact Nagumo front at 30 degrees to the grid (as tests.test_sheet_explicit's
    five-point test at dx = 0.25): at dx = 0.5 and dt = 0.02 its speed is sqrt(2 k D) (1/2 - a)
    within 0.5 %, and the fourth-order stencil's error is less than half the five-point
    stencil's (measured: -0.064 % against -0.22 %)."""
    speed4, exact = front_speed_at_30_degrees(121, 0.02, ORDER4)
    speed2, _ = front_speed_at_30_degrees(121, 0.02)
    print(speed4 / exact - 1, speed2 / exact - 1)
    assert speed4 == pytest.approx(exact, rel=0.005), (speed4, exact)
    assert abs(speed4 - exact) < 0.5 * abs(speed2 - exact)


def test_stability_limits_are_checked():
    """3 dx^2 / (8 D) on a cable (dx = 0.5, D = 1: 0.09375), 3 / (8 D (1/dx^2 + 1/dy^2)) on a
    sheet (dx = 0.5, dy = 1: 0.075): beyond, refused with the limit and its formula unless
    forced, and forced the checkerboard grows; at the limit nothing grows."""
    sheet = {**HEAT, "domain": {"length": [16.0, 16.0], "nx": [32, 16], "boundary": "periodic"},
             "time": {"t_end": 15.0, "dt": 0.075}}
    cable = {**HEAT, "domain": {"length": 16.0, "nx": 32, "boundary": "periodic"},
             "initial": {"v": {"kind": "gaussian", "center": 8.0, "width": 2.0}, "w": 0.0},
             "time": {"t_end": 15.0, "dt": 0.09375}}
    for base, limit, formula in ((cable, 0.09375, r"3 dx\^2 / \(8 D\)"),
                                 (sheet, 0.075, r"3 dx\^2 dy\^2 / \(8 D")):
        _, solver = build_solver(make_case(base, ORDER4))
        assert solver.stability_limit(limit) == pytest.approx(limit, rel=1e-15)
        over = f"time.dt={limit * 1.1!r}"
        with pytest.raises(CaseError, match=r"time\.dt: .* exceeds the stability limit "
                                            rf"{limit:g} of the explicit scheme \({formula}"):
            build_solver(make_case(base, ORDER4, over, "time.t_end=16.5"))
        _, v, _ = final_state(make_case(base, ORDER4, over, "time.t_end=16.5",
                                        "solver.force=true"))
        assert not np.all(np.abs(v) < 10)
        _, v, _ = final_state(make_case(base, ORDER4))
        assert np.abs(v).max() <= 1.0


def test_threaded_kernels_are_bit_for_bit_the_serial_kernels_and_the_formula():
    """Mirror and ring edges, a current, fewer rows than blocks: the threaded cable and sheet
    kernels give exactly the serial kernels' results, and those are the array formula."""
    from fhnpde.backends import kernels
    from fhnpde.grid import SheetGrid, UniformGrid
    from fhnpde.schemes import forward_euler4_node, forward_euler4_sheet_node

    k = kernels("fhnpde.solvers.explicit_numba")
    rng = np.random.default_rng(5)
    params = (1.0, 0.1, 0.01, 0.5)
    for ny, nx in ((7, 30_000), (300, 451)):
        v, w, current = rng.random((ny, nx)), 0.1 * rng.random((ny, nx)), rng.random((ny, nx))
        for boundary in ("neumann", "periodic"):
            grid = SheetGrid((nx - 1.0, ny - 1.0), (nx, ny), boundary)
            edges = tuple(i for axis in grid.axes for i in (*axis.ghosts, *axis.outer_ghosts))
            outs = []
            for kernel in (k.sheet4_step_serial, k.sheet4_step_parallel):
                out_v, out_w = np.empty_like(v), np.empty_like(w)
                kernel(1 if boundary == "periodic" else 0, v, w, current, params, 0.01, 1.0,
                       4.0, 9.0, *edges, out_v, out_w)
                outs.append((out_v, out_w))
            np.testing.assert_array_equal(outs[0][0], outs[1][0])
            np.testing.assert_array_equal(outs[0][1], outs[1][1])
            far = grid.far_neighbours(v)
            near = grid.neighbours(v)
            ref = forward_euler4_sheet_node(far[0], near[0], near[1], far[1], far[2], near[2],
                                            near[3], far[3], v, w, current,
                                            1 if boundary == "periodic" else 0, params, 0.01,
                                            1.0, 4.0, 9.0)
            np.testing.assert_allclose(outs[0][0], ref[0], rtol=0, atol=1e-13)
            np.testing.assert_allclose(outs[0][1], ref[1], rtol=0, atol=1e-13)
    n = 300_001
    v, w, current = rng.random(n), 0.1 * rng.random(n), rng.random(n)
    for boundary in ("neumann", "periodic"):
        grid = UniformGrid(n - 1.0, n, boundary)
        outs = []
        for kernel in (k.explicit4_step_serial, k.explicit4_step_parallel):
            out_v, out_w = np.empty_like(v), np.empty_like(w)
            kernel(0, v, w, current, params, 0.01, 1.0, 4.0, *grid.ghosts, *grid.outer_ghosts,
                   out_v, out_w)
            outs.append((out_v, out_w))
        np.testing.assert_array_equal(outs[0][0], outs[1][0])
        np.testing.assert_array_equal(outs[0][1], outs[1][1])
        (left, right), (far_left, far_right) = grid.neighbours(v), grid.far_neighbours(v)
        ref = forward_euler4_node(far_left, left, v, right, far_right, w, current, 0, params,
                                  0.01, 1.0, 4.0)
        np.testing.assert_allclose(outs[0][0], ref[0], rtol=0, atol=1e-13)
        np.testing.assert_allclose(outs[0][1], ref[1], rtol=0, atol=1e-13)


def test_outer_ghost_indices():
    """Two nodes beyond each end: the mirror's v_{-2} = v_2 and v_{n+1} = v_{n-3}; the
    ring's v_{-2} = v_{n-2} and v_{n+1} = v_1; and the far neighbours read through them."""
    from fhnpde.grid import UniformGrid

    v = np.arange(6.0) ** 2  # 0 1 4 9 16 25
    mirror, ring = UniformGrid(5.0, 6), UniformGrid(6.0, 6, "periodic")
    assert mirror.outer_ghosts == (2, 3)
    assert ring.outer_ghosts == (4, 1)
    far_left, far_right = mirror.far_neighbours(v)
    np.testing.assert_array_equal(far_left, [4, 1, 0, 1, 4, 9])
    np.testing.assert_array_equal(far_right, [4, 9, 16, 25, 16, 9])
    far_left, far_right = ring.far_neighbours(v)
    np.testing.assert_array_equal(far_left, [16, 25, 0, 1, 4, 9])
    np.testing.assert_array_equal(far_right, [4, 9, 16, 25, 0, 1])


@pytest.mark.parametrize(("sets", "message"), [
    (["solver.space_order=3"], r"solver\.space_order: must be 2 or 4, got 3"),
    (["solver.space_order=4", "solver.method=split", "time.dt=0.1"],
     r"solver\.space_order: 4 is the explicit solver's fourth-order stencil, but the method "
     r"is split; remove it or use method: explicit"),
    (["solver.space_order=4", "domain.boundary_order=1"],
     r"solver\.space_order: the fourth-order stencil reads the mirror nodes two away from a "
     r"no-flux end: it needs domain\.boundary_order: 2, not 1"),
])
def test_case_errors(sets, message):
    with pytest.raises(CaseError, match=message):
        build_solver(make_case(SMALL_CABLE, *sets))


def test_space_order_two_is_left_out_of_the_case_dump():
    """A case that does not name space_order dumps (and so fingerprints) as before the key."""
    assert "space_order" not in make_case(SMALL_CABLE).to_dict()["solver"]
    assert make_case(SMALL_CABLE, ORDER4).to_dict()["solver"]["space_order"] == 4


def test_gradients_refuse_the_fourth_order_stencil():
    from fhnpde.gradients.run import check_case

    check_case(make_case(SMALL_CABLE, "solver.backend=torch"))  # the second-order one is fine
    with pytest.raises(CaseError, match=r"fourth-order stencil has no differentiable path"):
        check_case(make_case(SMALL_CABLE, ORDER4, "solver.backend=torch"))


def test_scipy_reference_has_the_fourth_order_operator():
    """``--reference scipy`` integrates the method of lines with the case's own operator (BDF,
    rtol 1e-10): in dt the fourth-order solver converges to it at order 1 (with the
    three-point operator in the reference the error would stall at the two operators'
    difference), and in dx, with the reference two levels finer, at order 4."""
    from fhnpde.studies import convergence_study

    ring = ["domain.length=20.0", "domain.boundary=periodic", "model.params.k=0.0", "stimuli=[]",
            "initial.v={kind: gaussian, center: 10.0, width: 2.0, amplitude: 1.0}",
            "time.t_end=0.4", ORDER4]
    in_dt = convergence_study(make_case(SMALL_CABLE, *ring, "domain.nx=40", "time.dt=0.05"),
                              "dt", levels=4, reference="scipy")
    assert in_dt.fitted_order_max == pytest.approx(1.0, abs=0.15), in_dt.report()
    in_dx = convergence_study(make_case(SMALL_CABLE, *ring, "domain.nx=24", "time.dt=0.1"),
                              "dx", levels=3, reference="scipy")
    assert in_dx.fitted_order_max == pytest.approx(4.0, abs=0.15), in_dx.report()
    assert in_dx.fitted_order_rmse == pytest.approx(4.0, abs=0.15), in_dx.report()
