"""Crank–Nicolson with Newton: cable and point models, against references and by self-convergence.

Orders are fitted on the divergent case (shortened to t_end = 20..40) against a refined
reference on the same grid (time) or at the same dt (space), and must be 2 within ±0.2.
"""

from __future__ import annotations

import numpy as np
import pytest

from fhnpde.case import load_case
from fhnpde.driver import NumericalFailure, build_solver
from fhnpde.operators import laplacian_bands, solve_with_corners
from fhnpde.plotting import level_crossings
from tests.helpers import (
    CELL,
    SMALL_CABLE,
    final_state,
    fitted_order,
    make_case,
    mol_reference,
    point_reference,
)

TRIDIAGONAL = ["thomas", "cyclic-reduction", "scipy"]


def divergent(cases_dir, *sets):
    return load_case(cases_dir / "divergent.yaml", list(sets))


def run_to(case, times):
    """v at each of ``times`` (multiples of dt) in one in-memory run; and the solver."""
    _, solver = build_solver(case)
    dt = case.time.dt
    state, done, out = solver.init(), 0, []
    for t in times:
        n = round(t / dt)
        state = solver.advance(state, done * dt, dt, n - done)
        done = n
        out.append(np.asarray(state.v).copy())
    return out, solver


crossings = level_crossings  # front and back of every pulse at v = 0.3


# --- the operator ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("boundary", "order"), [("neumann", 2), ("neumann", 1), ("periodic", 2)])
def test_laplacian_bands_reproduce_the_grid_laplacian(boundary, order):
    from fhnpde.grid import UniformGrid

    grid = UniformGrid(10.0, 11, boundary, order)
    v = np.random.default_rng(0).random(grid.nx)
    lower, diag, upper, top, bottom = laplacian_bands(grid)
    dense = np.diag(diag) + np.diag(lower[1:], -1) + np.diag(upper[:-1], 1)
    dense[0, -1] += top
    dense[-1, 0] += bottom
    np.testing.assert_allclose(dense @ v, grid.laplacian(v), rtol=1e-13, atol=1e-12)
    # and solve_with_corners inverts the shifted operator exactly
    a, b, c = -0.3 * lower, 1.0 - 0.3 * diag, -0.3 * upper
    full = np.eye(grid.nx) - 0.3 * dense
    x = solve_with_corners(
        lambda *args: __import__("fhnpde.tridiagonal").tridiagonal.solve(*args, method="scipy"),
        a, b, c, -0.3 * top, -0.3 * bottom, v,
    )
    np.testing.assert_allclose(full @ x, v, rtol=1e-13, atol=1e-13)


# --- cable: orders --------------------------------------------------------------------------------


@pytest.mark.parametrize("t_end", [20.0, 40.0])
def test_time_order_two_on_divergent_case(cases_dir, t_end):
    """Same grid (nx = 401) for every level, so the spatial error is common and cancels."""
    sets = ("solver.method=crank-nicolson", "domain.nx=401", f"time.t_end={t_end}",
            f"time.save_every={t_end}")
    _, v_ref, _ = final_state(divergent(cases_dir, *sets, "time.dt=0.0125"))
    dts = [0.4, 0.2, 0.1, 0.05]
    errs = [np.max(np.abs(final_state(divergent(cases_dir, *sets, f"time.dt={dt}"))[1] - v_ref))
            for dt in dts]
    order = fitted_order(dts, errs)
    assert order == pytest.approx(2.0, abs=0.2), (errs, order)
    assert errs[0] < 2e-3 * t_end / 20


def test_space_order_two_on_divergent_case(cases_dir):
    """Same dt for every grid, so the time error is common; reference 4x finer than the
    finest level, compared at the coarse nodes."""
    sets = ("solver.method=crank-nicolson", "time.dt=0.05", "time.t_end=20",
            "time.save_every=20")
    _, v_ref, _ = final_state(divergent(cases_dir, *sets, "domain.nx=3201"))
    nxs = [101, 201, 401, 801]
    errs = []
    for nx in nxs:
        _, v, _ = final_state(divergent(cases_dir, *sets, f"domain.nx={nx}"))
        errs.append(np.max(np.abs(v - v_ref[:: 3200 // (nx - 1)])))
    hs = [200.0 / (nx - 1) for nx in nxs]
    order = fitted_order(hs, errs)
    assert order == pytest.approx(2.0, abs=0.2), (errs, order)


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_against_scipy_bdf_on_the_same_grid(boundary):
    """The method-of-lines solution by BDF at rtol 1e-11 is the exact semi-discrete solution:
    CN's difference from it is its time error, which must fall 4x per halving of dt."""
    base = make_case(SMALL_CABLE, f"domain.boundary={boundary}", "initial.v.center=12.0",
                     "solver.method=crank-nicolson")
    _, v_ref, w_ref = mol_reference(base)
    dts = [0.2, 0.1, 0.05]
    errs = []
    for dt in dts:
        _, v, w = final_state(make_case(SMALL_CABLE, f"domain.boundary={boundary}",
                                        "initial.v.center=12.0", "solver.method=crank-nicolson",
                                        f"time.dt={dt}"))
        errs.append(max(np.max(np.abs(v - v_ref)), np.max(np.abs(w - w_ref))))
    assert fitted_order(dts, errs) == pytest.approx(2.0, abs=0.15), errs
    assert errs[-1] < 5e-5


# --- cable: the done-when checks ------------------------------------------------------------------


@pytest.fixture(scope="module")
def fine_fronts():
    """Fronts at t = 100, 200 of a fine reference: nx = 3201 (dx = 1/16), dt = 0.05."""
    from pathlib import Path

    cases = Path(__file__).resolve().parents[1] / "cases"
    case = load_case(cases / "divergent.yaml",
                     ["solver.method=crank-nicolson", "domain.nx=3201", "time.dt=0.05"])
    profiles, _ = run_to(case, (100.0, 200.0))
    x = np.linspace(0.0, 200.0, 3201)
    return [crossings(v, x) for v in profiles]


def test_dt_half_puts_fronts_within_0_6_of_fine_reference(cases_dir, fine_fronts):
    """The divergent case at dt = 0.5 (16x the explicit limit dx^2 / (2D) = 0.03125)."""
    case = divergent(cases_dir, "solver.method=crank-nicolson", "time.dt=0.5")
    profiles, solver = run_to(case, (100.0, 200.0))
    x = solver.problem.grid.x
    for t, v, ref in zip((100, 200), profiles, fine_fronts, strict=True):
        got = crossings(v, x)
        assert got.size == ref.size == 4, (t, got, ref)  # two pulses, front and back each
        assert np.max(np.abs(got - ref)) < 0.6, (t, got, ref)
    stats = solver.stats()
    assert stats["newton_steps"] == 400
    assert 1 <= stats["newton_mean_per_step"] <= stats["newton_max_per_step"] <= 8


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_tridiagonal_methods_give_the_same_answer(cases_dir, boundary, backend):
    sets = ("solver.method=crank-nicolson", "time.dt=0.5", "time.t_end=20",
            f"domain.boundary={boundary}", f"solver.backend={backend}")
    results = {m: final_state(divergent(cases_dir, *sets, f"solver.tridiagonal={m}"))
               for m in TRIDIAGONAL}
    _, v0, w0 = results["thomas"]
    assert np.abs(v0).max() > 0.5  # pulses are under way
    for method in TRIDIAGONAL[1:]:
        _, v, w = results[method]
        assert np.max(np.abs(v - v0)) < 1e-12, method
        assert np.max(np.abs(w - w0)) < 1e-12, method


def test_compiled_and_array_code_agree(cases_dir):
    sets = ("solver.method=crank-nicolson", "time.dt=0.25", "time.t_end=30",
            "stimuli=[{kind: box, x: [0.0, 2.0], t: [5.0, 15.0], amplitude: 0.5}]")
    _, v1, w1 = final_state(divergent(cases_dir, *sets, "solver.backend=numba"))
    _, v2, w2 = final_state(divergent(cases_dir, *sets, "solver.backend=numpy"))
    np.testing.assert_allclose(v1, v2, rtol=0, atol=1e-13)
    np.testing.assert_allclose(w1, w2, rtol=0, atol=1e-13)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_extrapolated_newton_guess_saves_iterations_not_accuracy(cases_dir, backend):
    """Starting Newton from 2 v^n - v^(n-1) changes the guess, not the equations: both
    predictors reach the same solution to within what the default tolerance leaves (at most
    rtol = 1e-8 per step, 400 steps: 4e-6; measured 4e-8), the extrapolated one in fewer
    iterations (its first update is small enough to stop on: 1.2 per step against 2.0)."""
    sets = ("solver.method=crank-nicolson", "time.dt=0.1", "time.t_end=40",
            f"solver.backend={backend}")
    runs = {}
    for predictor in ("previous", "extrapolate"):
        problem, solver = build_solver(divergent(cases_dir, *sets,
                                                 f"solver.newton.predictor={predictor}"))
        state = solver.advance(solver.init(), 0.0, 0.1, 400)
        runs[predictor] = (state, solver.stats())
    (old, old_stats), (new, new_stats) = runs["previous"], runs["extrapolate"]
    assert np.abs(new.v).max() > 0.5  # pulses are under way
    np.testing.assert_allclose(new.v, old.v, rtol=0, atol=4e-7)
    np.testing.assert_allclose(new.w, old.w, rtol=0, atol=4e-7)
    assert old_stats["newton_mean_per_step"] >= 1.9
    assert new_stats["newton_mean_per_step"] <= old_stats["newton_mean_per_step"] - 0.6


@pytest.mark.parametrize("dt", [0.5, 0.1])
def test_default_newton_tolerance_is_far_below_the_time_error(cases_dir, dt):
    """The default rtol moves the solution by a small fraction of the scheme's own time
    error (estimated by halving dt): measured 6e-6 of it at dt = 0.5 (Newton 1.2e-8, time
    1.8e-3) and 6e-4 at dt = 0.1 (4.7e-8 against 7.3e-5), at t = 50."""
    sets = ("solver.method=crank-nicolson", "time.t_end=50")
    _, v, w = final_state(divergent(cases_dir, *sets, f"time.dt={dt}"))
    _, v_tight, _ = final_state(divergent(cases_dir, *sets, f"time.dt={dt}",
                                          "solver.newton.rtol=1e-12"))
    _, v_half, _ = final_state(divergent(cases_dir, *sets, f"time.dt={dt / 2}"))
    assert np.abs(v).max() > 0.5
    newton_error = np.abs(v - v_tight).max()
    time_error = np.abs(v - v_half).max()
    assert newton_error < 2e-3 * time_error, (newton_error, time_error)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_stopping_on_the_update_solves_each_step_to_round_off(cases_dir, backend):
    """``solver.newton.stop: update`` (the update itself below rtol): quadratic convergence
    leaves an error of order rtol^2, so rtol = 1e-6 matches a solve at rtol = 1e-12 (to
    2e-13 measured), at one more iteration per step than the error estimate."""
    sets = ("solver.method=crank-nicolson", "time.dt=0.1", "time.t_end=50",
            f"solver.backend={backend}")
    _, v, w = final_state(divergent(cases_dir, *sets, "solver.newton.stop=update",
                                    "solver.newton.rtol=1e-6"))
    _, v_tight, w_tight = final_state(divergent(cases_dir, *sets, "solver.newton.rtol=1e-12"))
    assert np.abs(v).max() > 0.5
    np.testing.assert_allclose(v, v_tight, rtol=0, atol=1e-11)
    np.testing.assert_allclose(w, w_tight, rtol=0, atol=1e-11)
    its = {}
    for stop in ("update", "error-estimate"):
        _, solver = build_solver(divergent(cases_dir, *sets, f"solver.newton.stop={stop}"))
        solver.advance(solver.init(), 0.0, 0.1, 500)
        its[stop] = solver.stats()["newton_mean_per_step"]
    assert its["update"] >= its["error-estimate"] + 0.8, its
    # the point models honour the key as well
    for stop, fewest in (("update", 2.0), ("error-estimate", 1.0)):
        case = load_case(cases_dir / "cell_ensemble.yaml",
                         ["ensemble.size=16", "solver.method=crank-nicolson", "time.dt=0.05",
                          "time.t_end=5", "time.save_every=5", f"solver.backend={backend}",
                          f"solver.newton.stop={stop}"])
        _, solver = build_solver(case)
        solver.advance(solver.init(), 0.0, 0.05, 100)
        assert fewest <= solver.stats()["newton_mean_per_step"] < fewest + 0.5


def test_newton_error_estimate_on_a_known_root():
    """newton_error_left on Newton's iteration for x^2 = 2 from x = 3: K is measured from
    two updates (the true constant is 1/(2 sqrt 2) = 0.354), and stopping on the estimate
    leaves an error below rtol, one iteration before the update itself drops below rtol."""
    from fhnpde.schemes import newton_error_left

    for rtol in (1e-4, 1e-8, 1e-12):
        x, previous, k_est, its = 3.0, 0.0, 0.0, 0
        while True:
            update = -(x * x - 2.0) / (2.0 * x)
            x += update
            its += 1
            error, k_est = newton_error_left(abs(update), previous, k_est, 1.0, True)
            if error <= rtol:
                break
            previous = abs(update)
        assert abs(x - np.sqrt(2.0)) <= rtol
        assert 0.2 < k_est < 0.6
        # the old test (update below rtol) needs one more iteration from the same start
        y, step, plain = 3.0, 1.0, 0
        while abs(step) > rtol:
            step = -(y * y - 2.0) / (2.0 * y)
            y += step
            plain += 1
        assert its == plain - 1


def test_batched_newton_error_estimate_is_the_scalar_one():
    """The point models' array code applies newton_error_left member by member."""
    from fhnpde.schemes import newton_error_left, newton_error_left_batch

    rng = np.random.default_rng(7)
    m = 500
    size = 10.0 ** rng.uniform(-16, 0, m)
    previous = np.where(rng.random(m) < 0.3, 0.0, 10.0 ** rng.uniform(-16, 0, m))
    size[:20] = 0.0  # members already converged
    k_est = np.where(rng.random(m) < 0.5, 0.0, rng.uniform(0, 2, m))
    scale = rng.uniform(1, 3, m)
    for quadratic in (True, False):
        error, k_new = newton_error_left_batch(size, previous, k_est, scale, quadratic, np)
        for j in range(m):
            e, k = newton_error_left(size[j], previous[j], k_est[j], scale[j], quadratic)
            assert (error[j], k_new[j]) == (e, k)


def test_point_model_predictors_agree(cases_dir):
    """The batched 0-D trapezoidal rule: both Newton guesses give the same ensemble to within
    what the default rtol = 1e-8 leaves per step, the extrapolated one in fewer iterations.

    Over 400 steps that is 4e-6 for cells that do not amplify perturbations (99 % of the
    members: measured 8e-7); a cell near its excitation threshold amplifies them (member
    113: 8.2e-5, still 1/20 of the ensemble's time error at this dt, 1.7e-3)."""
    finals = {}
    for predictor in ("previous", "extrapolate"):
        case = load_case(cases_dir / "cell_ensemble.yaml",
                         ["solver.method=crank-nicolson", "time.dt=0.05", "time.t_end=20",
                          "time.save_every=20", f"solver.newton.predictor={predictor}"])
        _, solver = build_solver(case)
        state = solver.advance(solver.init(), 0.0, 0.05, 400)
        finals[predictor] = (state, solver.stats())
    (old, old_stats), (new, new_stats) = finals["previous"], finals["extrapolate"]
    for ours, theirs in ((new.v, old.v), (new.w, old.w)):
        gap = np.abs(ours - theirs)
        assert np.quantile(gap, 0.99) < 4e-6
        assert gap.max() < 2e-4
    assert new_stats["newton_iterations"] < 0.7 * old_stats["newton_iterations"]


def test_divergent_case_stays_symmetric(cases_dir):
    _, v, w = final_state(divergent(cases_dir, "solver.method=crank-nicolson", "time.dt=0.5",
                                    "time.t_end=60"))
    np.testing.assert_allclose(v, v[::-1], rtol=0, atol=1e-11)
    np.testing.assert_allclose(w, w[::-1], rtol=0, atol=1e-11)


def test_pure_diffusion_conserves_the_integral():
    """k = 0 and w = 0: v_t = D v_xx with no-flux ends conserves the trapezoidal integral."""
    case = make_case(SMALL_CABLE, "solver.method=crank-nicolson", "model.params.k=0.0",
                     "model.params.eps=1e-9", "time.dt=0.5", "time.t_end=20",
                     "time.save_every=20", "solver.backend=numba")
    problem, v, _ = final_state(case)
    grid = problem.grid
    assert grid.integral(v) == pytest.approx(grid.integral(problem.v0), rel=1e-12)


# --- failures and commands ------------------------------------------------------------------------


def test_kernel_max_abs_is_numpys_max_abs():
    """The cable kernel's max-norm (an integer maximum over bit patterns) equals numpy's
    max(abs(x)) exactly, and is NaN when x holds a NaN, inf when it holds an inf."""
    from fhnpde.backends import kernels

    max_abs = kernels("fhnpde.solvers.crank_nicolson_numba").max_abs
    cell = np.empty(1, np.int64)
    rng = np.random.default_rng(3)
    cases = [rng.standard_normal(801) * 10.0 ** rng.integers(-300, 300, 801),
             -np.abs(rng.standard_normal(5)), np.array([-0.0, 0.0]), np.zeros(3),
             np.array([1e-320, -5e-324]), np.array([1.0, -np.inf, 2.0])]
    for x in cases:
        assert max_abs(x.view(np.int64), cell, cell.view(np.float64)) == np.max(np.abs(x))
    x = rng.standard_normal(801)
    for bad in (np.nan, -np.nan):
        x[400] = bad
        assert np.isnan(max_abs(x.view(np.int64), cell, cell.view(np.float64)))


def test_newton_failure_is_a_numerical_failure(cases_dir):
    case = divergent(cases_dir, "solver.method=crank-nicolson", "time.dt=0.5",
                     "solver.newton.max_iter=1")
    _, solver = build_solver(case)
    with pytest.raises(NumericalFailure, match="Newton's method did not converge.*max_iter"):
        solver.advance(solver.init(), 0.0, 0.5, 4)


def test_cli_runs_any_cable_case_with_crank_nicolson(cases_dir, tmp_path):
    import xarray as xr

    from fhnpde.cli import main

    out = tmp_path / "cn.zarr"
    rc = main(["run", str(cases_dir / "divergent.yaml"), "--set", "solver.method=crank-nicolson",
               "--set", "time.dt=0.5", "--out", str(out), "--quiet"])
    assert rc == 0
    ds = xr.open_zarr(out)
    assert ds.attrs["status"] == "complete"
    assert ds.attrs["solver"] == "crank-nicolson"
    stats = ds.attrs["stats"]
    assert stats["steps"] == 600
    assert stats["newton_steps"] == 600
    assert stats["newton_iterations"] >= 600
    assert stats["newton_max_per_step"] >= 1
    assert np.isfinite(ds.v.values).all()


def test_cli_newton_failure_exits_1_and_marks_store_failed(cases_dir, tmp_path, capsys):
    import xarray as xr

    from fhnpde.cli import main

    out = tmp_path / "cn.zarr"
    rc = main(["run", str(cases_dir / "divergent_cn.yaml"), "--set", "solver.newton.max_iter=1",
               "--out", str(out), "--quiet"])
    assert rc == 1
    assert "Newton" in capsys.readouterr().err
    assert xr.open_zarr(out).attrs["status"] == "failed"


def test_divergent_cn_case_file(cases_dir):
    case = load_case(cases_dir / "divergent_cn.yaml")
    assert case.solver.method == "crank-nicolson"
    assert case.time.dt == 0.5


# --- point models ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_point_order_two_against_solve_ivp(backend):
    """A stiff cell (Nagumo k = 10) to t = 5 against DOP853 at rtol 1e-13."""
    v_ref, w_ref = point_reference({"k": 10.0, "a": 0.4, "eps": 0.04, "gamma": 4.0},
                                   0.5, 0.0, 0.0, 5.0)
    dts = [0.05, 0.025, 0.0125, 0.00625]
    errs = []
    for dt in dts:
        case = make_case(CELL, "solver.method=crank-nicolson", f"solver.backend={backend}",
                         f"time.dt={dt}", "solver.newton.rtol=1e-13")
        _, v, w = final_state(case)
        errs.append(max(abs(v[0] - v_ref), abs(w[0] - w_ref)))
    order = fitted_order(dts, errs)
    assert order == pytest.approx(2.0, abs=0.1), (errs, order)


SAMPLE_TIMES = np.arange(1.0, 26.0)


@pytest.fixture(scope="module")
def ensemble_reference():
    """20 members of the cell_ensemble case (Nagumo k = 10): v at t = 1, 2, .., 25 by DOP853."""
    from pathlib import Path

    from scipy.integrate import solve_ivp

    from fhnpde.models import Kinetics
    from fhnpde.problem import build_problem

    cases = Path(__file__).resolve().parents[1] / "cases"
    case = load_case(cases / "cell_ensemble.yaml", ["ensemble.size=20"])
    problem = build_problem(case)
    refs = []
    for m in range(problem.size):
        params = {k: float(np.broadcast_to(v, (problem.size,))[m])
                  for k, v in problem.kinetics.params.items()}
        kin = Kinetics.create("nagumo", params)
        current = float(problem.current.base[m])
        sol = solve_ivp(lambda t, y, kin=kin, current=current: np.array(
                            kin.reaction(y[0], y[1], current)),
                        (0.0, 25.0), [problem.v0[m], problem.w0[m]], method="DOP853",
                        rtol=1e-12, atol=1e-13, t_eval=SAMPLE_TIMES)
        refs.append(sol.y[0])
    return np.array(refs).T  # (time, member)


def ensemble_trajectory(cases_dir, method, dt, backend="numba"):
    case = load_case(cases_dir / "cell_ensemble.yaml",
                     ["ensemble.size=20", f"solver.method={method}", f"time.dt={dt}",
                      "time.save_every=1.0", f"solver.backend={backend}"])
    with np.errstate(all="ignore"):  # Euler's blow-up overflows on purpose
        profiles, _ = run_to(case, SAMPLE_TIMES)
    return np.array(profiles)


def rms(a):
    return float(np.sqrt(np.mean(np.square(a))))


def test_stiff_cell_ensemble_stable_and_accurate_where_euler_blows_up(cases_dir,
                                                                       ensemble_reference):
    """Nagumo k = 10 (the cell_ensemble kinetics), 20 members, v sampled at t = 1 .. 25.

    At dt = 0.5 forward Euler blows up. CN stays in the physical range and is as accurate as
    Euler at half the step (RMS error over members and times ~0.04 of a v range of 1.13;
    the largest single error, ~0.3, is an upstroke arriving a fraction of a step early or
    late). At dt = 0.25 CN is 4x more accurate than Euler at the same step.
    """
    ref = ensemble_reference
    euler = ensemble_trajectory(cases_dir, "euler", 0.5)
    assert not np.isfinite(euler).all()  # the blow-up
    cn = ensemble_trajectory(cases_dir, "crank-nicolson", 0.5)
    assert np.isfinite(cn).all()
    # bounded: within the reference's range widened by 0.15 (the trapezoidal rule overshoots
    # an upstroke it does not resolve by ~0.1, it does not run away)
    assert ref.min() - 0.15 < cn.min()
    assert cn.max() < ref.max() + 0.15
    assert rms(cn - ref) < 0.05
    assert np.max(np.abs(cn - ref)) < 0.4
    euler_quarter = ensemble_trajectory(cases_dir, "euler", 0.25)
    assert np.isfinite(euler_quarter).all()
    assert rms(cn - ref) < 1.25 * rms(euler_quarter - ref)
    cn_quarter = ensemble_trajectory(cases_dir, "crank-nicolson", 0.25)
    assert rms(cn_quarter - ref) < 0.25 * rms(euler_quarter - ref)
    cn_fine = ensemble_trajectory(cases_dir, "crank-nicolson", 0.1)
    assert rms(cn_fine - ref) < 0.002
    assert np.max(np.abs(cn_fine - ref)) < 0.02


def test_point_backends_agree_and_count_newton(cases_dir):
    sets = ["ensemble.size=64", "solver.method=crank-nicolson", "time.dt=0.1",
            "time.t_end=10.0", "time.save_every=10.0"]
    results = {}
    for backend in ("numba", "numpy"):
        case = load_case(cases_dir / "cell_ensemble.yaml", [*sets, f"solver.backend={backend}"])
        problem, solver = build_solver(case)
        state = solver.advance(solver.init(), 0.0, 0.1, 100)
        results[backend] = (state, solver.stats())
    (s1, st1), (s2, st2) = results["numba"], results["numpy"]
    np.testing.assert_allclose(s1.v, s2.v, rtol=0, atol=1e-12)
    np.testing.assert_allclose(s1.w, s2.w, rtol=0, atol=1e-12)
    assert st1["newton_steps"] == st2["newton_steps"] == 64 * 100
    assert st1["newton_iterations"] == st2["newton_iterations"]
    # every member's first step takes two iterations at least (no Newton constant measured yet)
    assert st1["newton_iterations"] >= st1["newton_steps"] + 64
    assert 1 < st1["newton_mean_per_step"] <= st1["newton_max_per_step"] <= 10


def test_point_newton_failure_names_the_member(cases_dir):
    case = load_case(cases_dir / "cell_ensemble.yaml",
                     ["ensemble.size=8", "solver.method=crank-nicolson", "time.dt=0.1",
                      "solver.newton.max_iter=1"])
    _, solver = build_solver(case)
    with pytest.raises(NumericalFailure, match="member"):
        solver.advance(solver.init(), 0.0, 0.1, 5)


@pytest.mark.parametrize(("method", "dt"), [("crank-nicolson", 0.25), ("staggered-cn", 0.5),
                                           ("sdirk3", 1.0)])
def test_held_work_arrays_carry_nothing_between_calls(method, dt):
    """The compiled implicit steps keep their work rows between calls (``Scratch``): a solver
    that stepped before gives, bit for bit, what a fresh one gives from the same state."""
    case = make_case(SMALL_CABLE, f"solver.method={method}", f"time.dt={dt}",
                     "solver.backend=numba")
    _, used = build_solver(case)
    s1 = used.advance(used.init(), 0.0, dt, 7)
    s2 = used.advance(s1, 7 * dt, dt, 5)
    assert used.steps.scratch.empty("work", used.steps.scratch._held["work"].shape) is \
        used.steps.scratch._held["work"]
    _, fresh = build_solver(case)
    again = fresh.advance(s1, 7 * dt, dt, 5)
    assert again.v.tobytes() == s2.v.tobytes()
    assert again.w.tobytes() == s2.w.tobytes()
