"""The adaptive-grid solver and the non-uniform derivatives it is built on: convergence
orders of the stencils, conservation, interpolation, equality with the uniform explicit
solver on the full base grid, node counts and front accuracy on the divergent case."""

from __future__ import annotations

import numpy as np
import pytest

from fhnpde import refinement
from fhnpde.case import CaseError, load_case
from fhnpde.driver import build_solver, run_case
from fhnpde.nonuniform import NodeSet, interpolate_nodes
from fhnpde.solvers.adaptive import Refinement, RegridClock
from tests.helpers import SMALL_CABLE, final_state, fitted_order, make_case

BACKENDS = ["numpy", "numba"]
L = 2.0


def _smooth_grid(m: int) -> np.ndarray:
    """Nodes x = g(s) on [0, L] with g smooth and g' varying by a factor ~3."""
    s = np.linspace(0.0, 1.0, m)
    return L * (s + 0.3 * np.sin(np.pi * s) ** 2 * (s - 0.5))


def _rough_grid(m: int) -> np.ndarray:
    """Spacings alternating h and 2h: b - a = O(h), the worst case of the 3-point stencil."""
    gaps = np.where(np.arange(m - 1) % 2 == 0, 1.0, 2.0)
    return L * np.concatenate([[0.0], np.cumsum(gaps)]) / gaps.sum()


def _errors(make, m_values, f, fx, fxx):
    h, e1, e2 = [], [], []
    for m in m_values:
        x = make(m)
        nodes = NodeSet(x, L)
        inner = slice(1, -1)  # the stencils proper; the ends are tested separately
        e1.append(np.max(np.abs(nodes.first_derivative(f(x))[inner] - fx(x)[inner])))
        e2.append(np.max(np.abs(nodes.second_derivative(f(x))[inner] - fxx(x)[inner])))
        h.append(np.max(np.diff(x)))
    return h, e1, e2


SMOOTH = (lambda x: np.sin(2 * x + 0.3), lambda x: 2 * np.cos(2 * x + 0.3),
          lambda x: -4 * np.sin(2 * x + 0.3))


def test_first_derivative_is_second_order_on_any_grid():
    for make in (_smooth_grid, _rough_grid):
        h, e1, _ = _errors(make, [41, 81, 161, 321], *SMOOTH)
        assert fitted_order(h, e1) == pytest.approx(2.0, abs=0.15), (make.__name__, e1)


def test_second_derivative_is_second_order_on_a_smooth_grid():
    h, _, e2 = _errors(_smooth_grid, [41, 81, 161, 321], *SMOOTH)
    assert fitted_order(h, e2) == pytest.approx(2.0, abs=0.15), e2


def test_second_derivative_is_first_order_on_a_rough_grid():
    """Spacings h, 2h: the error (b - a)/3 v_xxx is O(h), as the derivation says."""
    h, _, e2 = _errors(_rough_grid, [41, 81, 161, 321], *SMOOTH)
    assert fitted_order(h, e2) == pytest.approx(1.0, abs=0.1), e2
    # ... and matches the leading term (b - a)/3 v_xxx at the centre node.
    x = _rough_grid(321)
    nodes = NodeSet(x, L)
    a, b = nodes.spacings
    err = nodes.second_derivative(SMOOTH[0](x)) - SMOOTH[2](x)
    lead = (b - a) / 3 * (-8 * np.cos(2 * x + 0.3))
    assert np.max(np.abs(err - lead)[1:-1]) < 0.05 * np.max(np.abs(lead))


def test_mirror_end_is_second_order_on_a_non_uniform_grid():
    """v = cos(pi x / L) has v_x = 0 at both ends; the mirror-node v_xx there converges
    at order 2 although the end intervals differ in size."""
    errs, hs = [], []
    for m in (21, 41, 81, 161):
        x = _smooth_grid(m)
        v = np.cos(np.pi * x / L)
        vxx = NodeSet(x, L).second_derivative(v)
        exact = -((np.pi / L) ** 2) * v
        errs.append(max(abs(vxx[0] - exact[0]), abs(vxx[-1] - exact[-1])))
        hs.append(max(x[1] - x[0], x[-1] - x[-2]))
    assert fitted_order(hs, errs) == pytest.approx(2.0, abs=0.15), errs
    # the first-order end (ghost = v_0) does not converge at the end at all
    x = _smooth_grid(161)
    first = NodeSet(x, L, boundary_order=1).second_derivative(np.cos(np.pi * x / L))
    assert abs(first[0] + (np.pi / L) ** 2) > 1.0


def test_uniform_spacing_gives_the_uniform_second_difference():
    from fhnpde.grid import UniformGrid

    grid = UniformGrid(10.0, 101)
    v = np.random.default_rng(1).normal(size=101)
    nodes = NodeSet(grid.x, grid.length)
    np.testing.assert_allclose(nodes.second_derivative(v), grid.laplacian(v), rtol=1e-12,
                               atol=1e-9)


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_second_derivative_sums_to_zero_against_the_weights(boundary):
    """Mirror ends (or a ring) and trapezoidal weights: the fluxes telescope, so pure
    diffusion conserves sum(weights * v) on any node set."""
    rng = np.random.default_rng(2)
    x = np.sort(rng.uniform(0.0, 10.0, 60))
    x[0] = 0.0
    if boundary == "neumann":
        x[-1] = 10.0
    nodes = NodeSet(x, 10.0, boundary)
    v = rng.normal(size=60)
    total = np.sum(nodes.weights * nodes.second_derivative(v))
    assert abs(total) < 1e-10 * np.sum(np.abs(nodes.weights * nodes.second_derivative(v)))
    assert np.sum(nodes.weights) == pytest.approx(10.0, rel=1e-14)


def test_interpolation_keeps_old_nodes_and_is_linear_between():
    rng = np.random.default_rng(3)
    x_old = np.sort(rng.uniform(0, 1, 30))
    x_new = np.sort(np.concatenate([x_old[::2], rng.uniform(x_old[0], x_old[-1], 25)]))
    v_old = rng.normal(size=30)
    out = interpolate_nodes(x_old, np.stack([v_old, 2 * v_old]), x_new)
    kept = np.isin(x_new, x_old)
    assert np.array_equal(out[0][kept], v_old[np.searchsorted(x_old, x_new[kept])])
    np.testing.assert_array_equal(out[1], 2 * out[0])
    # a line is reproduced exactly; a parabola within H^2/8 max|v''| (here v'' = 2)
    line = interpolate_nodes(x_old, 3 * x_old - 1, x_new)
    np.testing.assert_allclose(line, 3 * x_new - 1, atol=1e-14)
    para = interpolate_nodes(x_old, x_old**2, x_new)
    pos = np.clip(np.searchsorted(x_old, x_new), 1, 29)
    bound = (x_old[pos] - x_old[pos - 1]) ** 2 / 8 * 2
    assert np.all(np.abs(para - x_new**2) <= bound + 1e-15)
    assert np.max(np.abs(para - x_new**2) / bound) > 0.1  # the bound is not vacuous


@pytest.mark.parametrize("form", ["sequential", "array"])
def test_grading_leaves_no_jump_larger_than_two(form):
    rng = np.random.default_rng(4)
    for periodic in (False, True):
        active = rng.uniform(size=500) < 0.05
        active[0] = True
        active[-1] = active[-1] or not periodic
        active[200:230] = True
        if form == "sequential":
            refinement.grade_active(active, 500, periodic)
        else:
            active = refinement.grade_active_array(active, 500, periodic, np)
        index = np.flatnonzero(active)
        gaps = np.diff(np.concatenate([index, [index[0] + 500]]) if periodic else index)
        pairs = np.stack([gaps, np.roll(gaps, -1)])[:, : gaps.size - (0 if periodic else 1)]
        assert np.all(pairs.max(axis=0) <= 2 * pairs.min(axis=0))


def test_array_form_of_the_rules_matches_the_sequential_form():
    """Zones, grading by levels and the 2:1 grading of :mod:`fhnpde.refinement`, on random
    strides, intervals and active sets of cables and rings (coarse strides up to half the
    nodes, as :class:`Refinement` allows)."""
    rng = np.random.default_rng(5)
    checked = {"zones": 0, "levels": 0, "grading": 0}
    for _ in range(400):
        n = int(rng.integers(5, 300))
        periodic = bool(rng.integers(2))
        # intervals [lo, hi] (some reaching past the ends), against cover_range's loop
        lo = rng.integers(-n // 2, n + n // 2, size=int(rng.integers(0, 6)))
        hi = lo + rng.integers(0, n // 3 + 1, size=lo.size)
        need = np.full(n, 2, dtype=np.int64)
        for a, b in zip(lo, hi, strict=True):
            refinement.cover_range(need, int(a), int(b), 1, n, periodic)
        zones = refinement.covered_nodes(lo, hi, n, periodic, np)
        np.testing.assert_array_equal(zones, need == 1)
        checked["zones"] += int(zones.any())
        # grading by levels, against balance_strides
        coarse = 1 << int(rng.integers(0, int(np.log2(max(1, (n - 1) // 2))) + 1))
        need = np.minimum(rng.choice([1, 2, 4, 8, 16, 32], size=n), coarse).astype(np.int64)
        need[rng.uniform(size=n) < 0.7] = coarse
        graded = need.copy()
        refinement.balance_strides(graded, coarse, n, periodic)
        by_array = refinement.balance_strides_array(need, coarse, n, periodic, np)
        np.testing.assert_array_equal(by_array, graded)
        checked["levels"] += int(np.any(graded != need))
        # the 2:1 grading, against grade_active
        active = rng.uniform(size=n) < rng.uniform(0.01, 0.5)
        active[0] = True
        active[-1] = active[-1] or not periodic
        graded = active.copy()
        refinement.grade_active(graded, n, periodic)
        np.testing.assert_array_equal(refinement.grade_active_array(active, n, periodic, np),
                                      graded)
        checked["grading"] += int(np.any(graded != active))
    assert min(checked.values()) > 50, checked  # the rules did act, not only keep inputs


def test_spacings_round_down_to_powers_of_two():
    case = make_case(SMALL_CABLE, "solver.method=adaptive", "domain.nx=401",
                     "solver.adaptive.coarse_dx=3.0", "solver.adaptive.wave_dx=0.7",
                     "solver.adaptive.fine_dx=0.01")
    from fhnpde.problem import build_problem

    r = Refinement.from_spec(case.solver.adaptive, build_problem(case).grid)  # dx = 0.1
    assert (r.coarse_stride, r.wave_stride, r.fine_stride) == (16, 4, 1)


# --- the solver ------------------------------------------------------------------------


def _full_grid_case(*sets):
    """Every base node active: coarse_dx at (or below) the base spacing."""
    return make_case(SMALL_CABLE, "solver.method=adaptive", "solver.adaptive.coarse_dx=0.01",
                     "time.t_end=20", "time.save_every=20", *sets)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("extra", [
    (),
    ("domain.boundary_order=1",),
    ("domain.boundary=periodic",),
    ("stimuli=[{x: [0.0, 2.0], t: [1.0, 3.0], amplitude: 0.5}]",),
])
def test_full_base_grid_reproduces_the_explicit_solver(backend, extra):
    adaptive = _full_grid_case(f"solver.backend={backend}", *extra)
    explicit = make_case(SMALL_CABLE, "time.t_end=20", "time.save_every=20",
                         f"solver.backend={backend}", *extra)
    _, v_a, w_a = final_state(adaptive)
    _, v_e, w_e = final_state(explicit)
    assert np.max(np.abs(v_e)) > 0.1  # something happened
    np.testing.assert_allclose(v_a, v_e, rtol=0, atol=1e-12)
    np.testing.assert_allclose(w_a, w_e, rtol=0, atol=1e-12)


ADAPTING = ("solver.method=adaptive", "domain.length=100.0", "domain.nx=801",
            "initial.v.center=50.0", "time.dt=0.00625", "time.t_end=20",
            "time.save_every=5", "solver.adaptive.regrid_every=0.1")


def test_numba_and_numpy_backends_agree_while_adapting():
    _, v_np, w_np = final_state(make_case(SMALL_CABLE, *ADAPTING, "solver.backend=numpy"))
    _, v_nb, w_nb = final_state(make_case(SMALL_CABLE, *ADAPTING, "solver.backend=numba"))
    np.testing.assert_allclose(v_nb, v_np, rtol=0, atol=1e-12)
    np.testing.assert_allclose(w_nb, w_np, rtol=0, atol=1e-12)


@pytest.mark.parametrize("extra", [(), ("domain.boundary=periodic",),
                                   ("domain.boundary_order=1",)])
def test_array_form_chooses_the_nodes_of_the_compiled_form(extra):
    """Every choice of an adapting numba run, made again by the array form from the same
    values: the same nodes."""
    case = make_case(SMALL_CABLE, *ADAPTING, "solver.backend=numba", *extra)
    _, solver = build_solver(case)
    compiled = solver.steps.select_active
    choices = []

    def both(*args):
        index = compiled(*args)
        choices.append(np.array_equal(refinement.select_active_array(*args, xp=np), index))
        return index

    solver.steps.select_active = both
    dt = case.time.dt
    state = solver.advance(solver.init(), 0.0, dt, round(10 / dt))
    assert len(choices) == 100  # t = 0 and every 0.1 up to 9.9
    assert all(choices)
    assert 0 < state.aux["index"].size < 801 / 2  # it adapted


def test_advance_equals_step_by_step():
    case = make_case(SMALL_CABLE, *ADAPTING, "time.t_end=1.6", "time.save_every=1.6",
                     "solver.backend=numba")
    _, solver = build_solver(case)
    dt = case.time.dt
    at_once = solver.advance(solver.init(), 0.0, dt, 256)
    state = solver.init()
    for i in range(0, 256, 37):
        state = solver.advance(state, i * dt, dt, min(37, 256 - i))
    assert np.array_equal(state.aux["index"], at_once.aux["index"])
    np.testing.assert_array_equal(state.v, at_once.v)


def test_unstable_dt_is_refused_with_the_smallest_spacing_limit():
    case = make_case(SMALL_CABLE, "solver.method=adaptive", "time.dt=0.25",
                     "time.save_every=5", "solver.adaptive.regrid_every=0.5")
    with pytest.raises(CaseError, match=r"0\.125.*dx_min\^2 / \(2 D\)"):
        build_solver(case)
    forced = make_case(SMALL_CABLE, "solver.method=adaptive", "time.dt=0.25",
                       "time.save_every=5", "solver.force=true")
    build_solver(forced)


def test_cupy_without_a_gpu_is_refused_with_a_sentence():
    from fhnpde.backends import cupy_usable

    if cupy_usable():
        pytest.skip("cupy has a GPU here: the adaptive solver runs on it (benchmarks/gpu_check.py)")
    case = make_case(SMALL_CABLE, "solver.method=adaptive", "solver.backend=cupy")
    with pytest.raises(CaseError, match="^solver.backend: cupy is not usable here") as info:
        build_solver(case)
    assert len(str(info.value).splitlines()) == 1


def test_unknown_adaptive_key_is_refused():
    with pytest.raises(CaseError, match="solver.adaptive.coarse_spacing: unknown key"):
        make_case(SMALL_CABLE, "solver.method=adaptive", "solver.adaptive.coarse_spacing=2")


def test_removed_every_key_is_refused_with_its_replacement():
    with pytest.raises(CaseError) as info:
        make_case(SMALL_CABLE, "solver.method=adaptive", "solver.adaptive.every=16")
    message = str(info.value)
    assert message.startswith("<test>: solver.adaptive.every: was removed")
    assert "regrid_every: N * time.dt" in message
    assert len(message.splitlines()) == 1


def test_regrid_interval_must_be_whole_steps_of_dt():
    """0.2 (the default) is not whole steps of dt = 0.03: one line naming the key and the
    nearest multiple; a whole multiple and a forced run are accepted."""
    short = ("solver.method=adaptive", "time.dt=0.03", "time.t_end=3", "time.save_every=0.3")
    with pytest.raises(CaseError) as info:
        make_case(SMALL_CABLE, *short)
    assert str(info.value) == (
        "<test>: solver.adaptive.regrid_every: 0.2 is not a whole number of steps of "
        "time.dt = 0.03; give a multiple of time.dt (e.g. 0.21) so that the regrid times stay "
        "put when dt is refined")
    with pytest.raises(CaseError, match="regrid_every: 0.01 is not a whole"):
        make_case(SMALL_CABLE, *short, "solver.adaptive.regrid_every=0.01")
    with pytest.raises(CaseError, match="regrid_every: 1e.300 / time.dt"):
        make_case(SMALL_CABLE, *short, "solver.adaptive.regrid_every=1e300", "time.dt=1e-10")
    make_case(SMALL_CABLE, *short, "solver.adaptive.regrid_every=0.21")
    make_case(SMALL_CABLE, *short, "solver.force=true")
    # only the adaptive solver regrids
    make_case(SMALL_CABLE, *short[1:])


def test_regrid_clock_counts_whole_steps_and_crossings():
    whole = RegridClock(0.2, 1 / 640)
    assert whole.steps == 128
    assert [n for n in range(1, 400) if whole.regrids_at(n)] == [128, 256, 384]
    assert [whole.next_after(n) for n in (0, 127, 128)] == [128, 128, 256]
    # not whole steps (forced runs): the first step at or after each multiple of 0.2
    odd = RegridClock(0.2, 0.03)
    regrids = [n for n in range(1, 40) if odd.regrids_at(n)]
    assert regrids == [n for n in range(1, 40) if int(n * 0.03 / 0.2 + 1e-9) >
                       int((n - 1) * 0.03 / 0.2 + 1e-9)] == [7, 14, 20, 27, 34]
    assert [odd.next_after(n) for n in (0, 6, 7, 14, 19)] == [7, 7, 14, 20, 20]
    assert RegridClock(0.2, 0.25).steps == 1  # shorter than a step: every step
    assert RegridClock(1e300, 1e-300).next_after(10**6) > 10**18  # never


@pytest.mark.parametrize("backend", BACKENDS)
def test_regrid_times_do_not_depend_on_dt(backend):
    """The active set is chosen at the multiples of regrid_every whatever dt: halving dt
    keeps the number of choices (choosing every N *steps* doubled them)."""
    counts = []
    for dt in (0.00625, 0.003125):
        case = make_case(SMALL_CABLE, *ADAPTING, f"time.dt={dt}", "time.t_end=2",
                         "time.save_every=1", f"solver.backend={backend}")
        _, solver = build_solver(case)
        state = solver.init()
        for i in range(2):  # two calls, as the driver makes one per output
            state = solver.advance(state, i * 1.0, dt, round(1.0 / dt))
        counts.append(solver.stats()["regrids"])
    assert counts == [19, 19]  # t = 0.1, 0.2, ..., 1.9 (the one at 2.0 precedes a next step)


def test_store_holds_active_nodes_and_mask(tmp_path):
    import xarray as xr

    case = make_case(SMALL_CABLE, *ADAPTING, "solver.backend=numba")
    result = run_case(case, out=tmp_path / "a.zarr")
    assert result.status == "complete"
    ds = xr.open_zarr(result.path)
    assert ds["v"].dims == ("time", "x")
    assert ds.sizes["x"] == 801
    assert ds["active_nodes"].dims == ("time",)
    assert ds["active_mask"].dims == ("time", "x")
    assert ds["active_mask"].dtype == bool
    mask = ds["active_mask"].values
    np.testing.assert_array_equal(mask.sum(axis=1), ds["active_nodes"].values)
    assert mask[:, 0].all()
    assert mask[:, -1].all()
    assert ds["active_nodes"].values.max() < 801 / 2
    # graded: neighbouring intervals differ by at most a factor two at every output
    for row in mask:
        gaps = np.diff(np.flatnonzero(row))
        assert np.all(np.maximum(gaps[1:], gaps[:-1]) <= 2 * np.minimum(gaps[1:], gaps[:-1]))
    stats = ds.attrs["stats"]
    assert 0 < stats["mean_active_fraction"] < 0.5
    assert stats["active_node_updates"] == pytest.approx(
        stats["mean_active_fraction"] * 801 * stats["steps"], rel=1e-9)


def leading_edges(v: np.ndarray, x: np.ndarray, level: float = 0.3) -> np.ndarray:
    """(left, right) leading-edge positions: the outermost crossings of v = level,
    linearly interpolated between nodes."""
    above = np.flatnonzero(v > level)
    i, j = above[0], above[-1]
    left = x[i - 1] + (level - v[i - 1]) / (v[i] - v[i - 1]) * (x[i] - x[i - 1])
    right = x[j] + (level - v[j]) / (v[j + 1] - v[j]) * (x[j + 1] - x[j])
    return np.array([left, right])


def test_divergent_case_few_nodes_and_accurate_fronts(cases_dir):
    """cases/divergent_adaptive.yaml (base nx = 3201) against the uniform explicit solver
    on the same base grid: at most 1/10 of the nodes on average, fronts at t = 100 and 200
    within 0.5 (measured: 15.8x fewer nodes, errors 0.037 and 0.263)."""
    path = cases_dir / "divergent_adaptive.yaml"
    fronts = {}
    for method in ("adaptive", "explicit"):
        case = load_case(path, [f"solver.method={method}"])
        problem, solver = build_solver(case)
        dt = case.time.dt
        state, step = solver.init(), 0
        for t in (100, 200, 300):
            n = round(t / dt) - step
            state = solver.advance(state, step * dt, dt, n)
            step += n
            if t <= 200:
                v = solver.output_state(state).v
                fronts[method, t] = leading_edges(np.asarray(v), problem.grid.x)
        if method == "adaptive":
            stats = solver.stats()
    assert stats["mean_active_fraction"] <= 0.1, stats
    for t in (100, 200):
        err = np.max(np.abs(fronts["adaptive", t] - fronts["explicit", t]))
        assert err < 0.5, (t, fronts["adaptive", t], fronts["explicit", t])
    # the two pulses have really travelled (about 50 length units per 100 time units)
    assert fronts["explicit", 200][0] < 15
    assert fronts["explicit", 200][1] > 185
