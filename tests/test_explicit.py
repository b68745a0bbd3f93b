"""The explicit cable solver against independent references, its orders, symmetry and
conservation."""

from __future__ import annotations

import numpy as np
import pytest

from fhnpde.case import CaseError
from fhnpde.driver import build_solver
from tests.helpers import SMALL_CABLE, final_state, fitted_order, make_case, mol_reference

BACKENDS = ["numpy", "numba"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_time_error_against_scipy_bdf_shrinks_like_dt(backend):
    """Same grid, scipy BDF at rtol 1e-11 as the exact semi-discrete solution: the
    difference is the explicit scheme's time error and must be proportional to dt."""
    base = make_case(SMALL_CABLE)
    _, v_ref, w_ref = mol_reference(base)
    dts = [0.04, 0.02, 0.01, 0.005]
    errs = []
    for dt in dts:
        case = make_case(SMALL_CABLE, f"time.dt={dt}", f"solver.backend={backend}")
        _, v, w = final_state(case)
        errs.append(np.max(np.abs(v - v_ref)))
    order = fitted_order(dts, errs)
    assert order == pytest.approx(1.0, abs=0.1), (errs, order)
    ratios = np.array(errs[:-1]) / np.array(errs[1:])
    assert np.all((ratios > 1.8) & (ratios < 2.2)), ratios
    assert errs[-1] < 2e-4


def test_space_error_falls_fourfold_when_dx_halves():
    """dt = dx^2 / 4 (so the O(dt) time error is O(dx^2) too); reference: scipy BDF on a
    grid 16x finer than the finest level, compared at common nodes."""
    fine = make_case(SMALL_CABLE, "domain.nx=1281")
    x_ref, v_ref, _ = mol_reference(fine, rtol=1e-10, atol=1e-12)
    errs, hs = [], []
    for nx in (21, 41, 81):
        dx = 40.0 / (nx - 1)
        dt = 5.0 / round(5.0 / (dx * dx / 4))
        case = make_case(SMALL_CABLE, f"domain.nx={nx}", f"time.dt={dt}")
        problem, v, _ = final_state(case)
        stride = (1281 - 1) // (nx - 1)
        errs.append(np.sqrt(np.mean((v - v_ref[::stride]) ** 2)))
        hs.append(dx)
    ratios = np.array(errs[:-1]) / np.array(errs[1:])
    assert np.all((ratios > 3.4) & (ratios < 4.6)), (errs, ratios)
    assert fitted_order(hs, errs) == pytest.approx(2.0, abs=0.15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_divergent_case_is_symmetric(backend, cases_dir):
    from fhnpde.case import load_case

    case = load_case(cases_dir / "divergent.yaml",
                     ["time.t_end=60", f"solver.backend={backend}"])
    _, v, w = final_state(case)
    assert v.max() > 0.5  # two pulses are travelling
    np.testing.assert_allclose(v, v[::-1], rtol=0, atol=1e-13)
    np.testing.assert_allclose(w, w[::-1], rtol=0, atol=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pure_diffusion_conserves_the_integral(backend):
    """Reaction off (k = 0, eps tiny): the trapezoidal integral of v is conserved by the
    mirror-node no-flux ends, to round-off, while the profile changes a lot."""
    case = make_case(SMALL_CABLE, "model.params.k=0", "time.t_end=20", "time.save_every=20",
                     f"solver.backend={backend}", "initial.v.center=5.0")
    problem, v, _ = final_state(case)
    grid = problem.grid
    before, after = grid.integral(problem.v0), grid.integral(v)
    assert np.max(np.abs(v - problem.v0)) > 0.1
    assert after == pytest.approx(before, rel=1e-13)


def test_first_order_boundary_does_not_conserve():
    """The one-sided (boundary_order 1) ends leak: evidence that the option is the
    inconsistent treatment it is documented to be."""
    case = make_case(SMALL_CABLE, "model.params.k=0", "time.t_end=20", "time.save_every=20",
                     "domain.boundary_order=1", "initial.v.center=5.0")
    problem, v, _ = final_state(case)
    grid = problem.grid
    assert abs(grid.integral(v) - grid.integral(problem.v0)) > 1e-3


def test_periodic_ring_conserves_under_diffusion():
    case = make_case(SMALL_CABLE, "domain.boundary=periodic", "model.params.k=0",
                     "time.t_end=10", "time.save_every=10", "initial.v.center=2.0")
    problem, v, _ = final_state(case)
    assert problem.grid.nx == 81
    assert problem.grid.dx == pytest.approx(40.0 / 81)
    assert np.max(np.abs(v - problem.v0)) > 0.1
    assert v.sum() == pytest.approx(problem.v0.sum(), rel=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
def test_periodic_ring_is_translation_invariant(backend):
    """Pulses that cross the seam of the ring: starting 40 nodes further on gives the same
    solution rolled by 40 nodes (the initial tails, below 1e-10, are the only difference)."""
    ring = ["domain.boundary=periodic", "initial.v.width=1.0", "initial.v.amplitude=1.2",
            "time.t_end=30", "time.save_every=30", f"solver.backend={backend}"]
    dx = 40.0 / 81
    _, va, _ = final_state(make_case(SMALL_CABLE, *ring, f"initial.v.center={10 * dx}"))
    _, vb, _ = final_state(make_case(SMALL_CABLE, *ring, f"initial.v.center={50 * dx}"))
    assert va.max() > 0.5
    np.testing.assert_allclose(np.roll(va, 40), vb, atol=1e-9)


def test_numba_and_numpy_backends_agree():
    a = make_case(SMALL_CABLE, "solver.backend=numpy",
                  "stimuli=[{kind: box, x: [0, 2], t: [0, 2.5], amplitude: 0.5}]")
    b = make_case(SMALL_CABLE, "solver.backend=numba",
                  "stimuli=[{kind: box, x: [0, 2], t: [0, 2.5], amplitude: 0.5}]")
    _, va, wa = final_state(a)
    _, vb, wb = final_state(b)
    np.testing.assert_allclose(va, vb, rtol=0, atol=1e-13)
    np.testing.assert_allclose(wa, wb, rtol=0, atol=1e-13)


@pytest.mark.parametrize("n", [5, 67, 200_003])
@pytest.mark.parametrize("ring", [False, True])
def test_numba_parallel_kernel_agrees_with_serial(n, ring):
    """The threaded kernel's blocks (fewer nodes than blocks too) give the serial result
    bit for bit, with mirror and with periodic ends."""
    from fhnpde.backends import kernels

    compiled = kernels()

    rng = np.random.default_rng(3)
    v, w, cur = rng.random(n), rng.random(n) * 0.1, rng.random(n) * 0.01
    ghosts = (n - 1, 0) if ring else (1, n - 2)
    args = (0, v, w, cur, (1.0, 0.1, 0.01, 0.5), 0.01, 1.0, 4.0, *ghosts)
    out1 = np.empty(n), np.empty(n)
    out2 = np.empty(n), np.empty(n)
    compiled.explicit_step_serial(*args, *out1)
    compiled.explicit_step_parallel(*args, *out2)
    np.testing.assert_array_equal(out1[0], out2[0])
    np.testing.assert_array_equal(out1[1], out2[1])


def test_stimulus_box_fires_the_cable():
    case = make_case(SMALL_CABLE, "initial.v=0.0", "time.t_end=40", "time.save_every=40",
                     "stimuli=[{kind: box, x: [0, 2], t: [0, 5], amplitude: 1.0}]")
    problem, v, _ = final_state(case)
    assert problem.current.current(1.0)[:6].tolist() == [1.0, 1.0, 1.0, 1.0, 0.5, 0.0]
    assert problem.current.current(6.0).max() == 0.0
    assert v.max() > 0.5  # a pulse travels away from the stimulated end


@pytest.mark.parametrize("dt", [0.126, 0.2])
def test_unstable_dt_is_refused_with_the_limit(dt):
    case = make_case(SMALL_CABLE, f"time.dt={dt}", "time.t_end=5.04" if dt == 0.126 else
                     "time.t_end=5.0", "time.save_every=5.04" if dt == 0.126 else
                     "time.save_every=5.0")
    with pytest.raises(CaseError) as info:
        build_solver(case)
    msg = str(info.value)
    assert "time.dt" in msg
    assert "stability limit 0.125" in msg
    assert "solver.force" in msg


def test_force_runs_an_unstable_dt():
    """Forced past dx^2/(2D) = 0.125, the scheme runs, and its highest-frequency mode grows
    by |1 - 4 D dt/dx^2| = 2.2 a step, as the von Neumann analysis says."""
    case = make_case(SMALL_CABLE, "time.dt=0.2", "solver.force=true", "model.params.k=0.0",
                     "initial.v=0.0")  # k = 0: v only diffuses
    _, solver = build_solver(case)
    assert solver.stability_limit(0.2) == pytest.approx(0.125)
    state = solver.init()
    zigzag = 1e-12 * (-1.0) ** np.arange(81)  # the grid's highest mode (Neumann: cosine)
    state = type(state)(v=state.v + zigzag, w=state.w, aux=state.aux)
    state = solver.advance(state, 0.0, 0.2, 10)
    growth = np.abs(np.asarray(state.v)).max() / 1e-12
    assert growth == pytest.approx(2.2**10, rel=1e-9)


@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize(("x0", "x1"), [(0.0, 2.0), (3.1, 4.37), (10.0, 10.1), (38.5, 40.0)])
def test_box_current_delivers_its_exact_charge(periodic, x0, x1):
    """Cell-averaged box currents: the quadrature of I equals amplitude * (x1 - x0)."""
    sets = [f"stimuli=[{{kind: box, x: [{x0}, {x1}], amplitude: 0.7}}]"]
    if periodic:
        sets.append("domain.boundary=periodic")
    from fhnpde.problem import build_problem

    problem = build_problem(make_case(SMALL_CABLE, *sets))
    current = problem.current.current(0.0)
    assert problem.grid.integral(current) == pytest.approx(0.7 * (x1 - x0), rel=1e-12)
    assert current.max() <= 0.7 + 1e-15


def test_box_current_wraps_around_the_seam_of_a_ring():
    from fhnpde.stimulus import coverage

    x = np.arange(8) * 1.0  # ring of circumference 8, cells [i - 0.5, i + 0.5]
    c = coverage(x, 7.25, 8.0, periodic_length=8.0)
    np.testing.assert_allclose(c, [0.5, 0, 0, 0, 0, 0, 0, 0.25])


def test_current_segments_split_exactly_where_boxes_switch():
    """The numba path advances whole runs of steps with one current: the runs must end
    exactly where a box switches on or off (t0 <= t < t1), checked step by step."""
    from fhnpde.problem import build_problem

    problem = build_problem(make_case(
        SMALL_CABLE, "stimuli=[{kind: box, x: [0, 2], t: [0.3, 0.75], amplitude: 1.0},"
                     " {kind: box, x: [10, 12], t: [0.5, null], amplitude: 0.5}]"))
    cur = problem.current
    t, dt, n = 0.1, 0.05, 30
    segs = cur.segments(t, dt, n)
    assert sum(c for _, c in segs) == n
    assert [f for f, _ in segs] == [0, 4, 8, 13]
    for first, count in segs:
        expected = cur.active(t + first * dt)
        for i in range(first, first + count):
            assert cur.active(t + i * dt) == expected
