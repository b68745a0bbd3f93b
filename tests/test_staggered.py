"""The staggered, linearly implicit Crank–Nicolson solver (NEURON's scheme): its steps against
a dense-matrix transcription of the equations, order 2 against scipy BDF on the same grid,
restarts, backends, a ring, and the divergent case's fronts."""

from __future__ import annotations

import numpy as np
import pytest

from fhnpde.plotting import level_crossings
from tests.helpers import (
    SMALL_CABLE,
    compiled_and_array_runs,
    final_state,
    fitted_order,
    make_case,
    mol_reference,
)

STAGGERED = "solver.method=staggered-cn"


def dense_reference_steps(case, nsteps):
    """The scheme written out with a dense matrix (numpy.linalg.solve), on the mirror-node
    Laplacian: w half a step ahead, v by the linearised trapezoidal rule, w back at the end."""
    from fhnpde.problem import build_problem

    problem = build_problem(case)
    k, a, eps, gamma = (problem.kinetics.params[p] for p in ("k", "a", "eps", "gamma"))
    n, dx, dt = problem.grid.nx, problem.grid.dx, case.time.dt
    lap = (np.diag(np.full(n - 1, 1.0), -1) - 2 * np.eye(n) + np.diag(np.full(n - 1, 1.0), 1))
    lap[0, 1] = lap[-1, -2] = 2.0  # mirror nodes
    lap *= problem.diffusion / dx**2

    def w_step(w, v, tau):  # trapezoidal rule for w_t = eps (v - gamma w), v held
        return (w * (1 - 0.5 * tau * eps * gamma) + tau * eps * v) / (1 + 0.5 * tau * eps * gamma)

    v, w = problem.v0.copy(), w_step(problem.w0.copy(), problem.v0, 0.5 * dt)
    for _ in range(nsteps):
        f = k * (v * (1 - v) * (v - a) - w)
        fv = k * (-3 * v**2 + 2 * (1 + a) * v - a)
        matrix = np.eye(n) - 0.5 * dt * (lap + np.diag(fv))
        v = v + np.linalg.solve(matrix, dt * (lap @ v + f))
        w = w_step(w, v, dt)
    return v, w_step(w, v, -0.5 * dt)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_steps_are_the_equations_written_out(backend):
    case = make_case(SMALL_CABLE, STAGGERED, f"solver.backend={backend}", "time.dt=0.5",
                     "time.t_end=10")
    v_ref, w_ref = dense_reference_steps(case, 20)
    _, v, w = final_state(case)
    np.testing.assert_allclose(v, v_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(w, w_ref, rtol=0, atol=1e-12)


def test_second_order_in_time_against_scipy_bdf_on_the_same_grid():
    base = make_case(SMALL_CABLE, STAGGERED, "solver.backend=numba", "time.t_end=10")
    _, v_ref, w_ref = mol_reference(base)
    dts = np.array([0.5, 0.25, 0.125, 0.0625])
    errors = []
    for dt in dts:
        _, v, w = final_state(make_case(SMALL_CABLE, STAGGERED, "solver.backend=numba",
                                        "time.t_end=10", f"time.dt={dt}"))
        errors.append(max(np.abs(v - v_ref).max(), np.abs(w - w_ref).max()))
    assert fitted_order(dts, errors) == pytest.approx(2.0, abs=0.1)
    assert errors[-1] < 1e-4


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_restarting_each_output_interval_is_one_run(backend):
    """advance moves w half a step ahead and back by exact inverses: the state in between
    carries nothing else, so many short calls give one long call's result."""
    from fhnpde.driver import build_solver

    case = make_case(SMALL_CABLE, STAGGERED, f"solver.backend={backend}", "time.dt=0.25")
    _, solver = build_solver(case)
    once = solver.advance(solver.init(), 0.0, 0.25, 40)
    state = solver.init()
    for k in range(8):
        state = solver.advance(state, 5 * k * 0.25, 0.25, 5)
    np.testing.assert_allclose(state.v, once.v, rtol=0, atol=1e-13)
    np.testing.assert_allclose(state.w, once.w, rtol=0, atol=1e-13)


@pytest.mark.parametrize("method", ["thomas", "cyclic-reduction", "scipy"])
def test_backends_and_tridiagonal_methods_agree_on_a_ring_with_a_stimulus(cases_dir, method):
    sets = [STAGGERED, "time.t_end=40", "time.dt=0.2", "time.save_every=40",
            "domain.boundary=periodic"]
    ref, other = compiled_and_array_runs(cases_dir / "impulse_train.yaml", sets, method)
    assert ref[0].grid.periodic
    assert np.abs(ref[1]).max() > 0.5  # a pulse is on the ring
    np.testing.assert_allclose(other[1], ref[1], rtol=0, atol=1e-11)
    np.testing.assert_allclose(other[2], ref[2], rtol=0, atol=1e-11)


def test_divergent_fronts_at_dt_half_within_0_05_of_the_time_converged_grid(cases_dir):
    """At dt = 0.5 (16x the explicit limit) the fronts of nx = 801 lie within 0.05 of the
    same grid's time-converged solution (Crank–Nicolson at dt = 0.02); Crank–Nicolson with
    Newton at dt = 0.5 is 0.25 away (measured: 0.015 and 0.25)."""
    from fhnpde.case import load_case

    def fronts(*sets):
        case = load_case(cases_dir / "divergent.yaml", ["time.t_end=200", *sets])
        problem, v, _ = final_state(case)
        return level_crossings(v, problem.grid.x, 0.3)

    ref = fronts("solver.method=crank-nicolson", "time.dt=0.02")
    got = fronts(STAGGERED, "time.dt=0.5")
    cn = fronts("solver.method=crank-nicolson", "time.dt=0.5")
    assert got.size == ref.size == cn.size == 4
    assert np.abs(got - ref).max() < 0.05
    assert np.abs(cn - ref).max() > 0.15
