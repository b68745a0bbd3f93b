"""The two-stage SDIRK cable solver (third order, A-stable): order against scipy BDF on the same
grid, its amplification of the stiffest diffusion mode against the method's stability
function, backends and tridiagonal methods on a ring, restarts, and its Newton counters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fhnpde.solvers.sdirk import GAMMA
from tests.helpers import (
    SMALL_CABLE,
    compiled_and_array_runs,
    final_state,
    fitted_order,
    make_case,
    mol_reference,
)

SDIRK = "solver.method=sdirk3"


def test_third_order_in_time_against_scipy_bdf_on_the_same_grid():
    base = make_case(SMALL_CABLE, SDIRK, "solver.backend=numba", "time.t_end=10",
                     "solver.newton.rtol=1e-12")
    _, v_ref, w_ref = mol_reference(base)
    dts = np.array([0.125, 0.0625, 0.03125])
    errors = []
    for dt in dts:
        _, v, w = final_state(make_case(SMALL_CABLE, SDIRK, "solver.backend=numba",
                                        "time.t_end=10", f"time.dt={dt}",
                                        "solver.newton.rtol=1e-12"))
        errors.append(max(np.abs(v - v_ref).max(), np.abs(w - w_ref).max()))
    assert fitted_order(dts, errors) == pytest.approx(3.0, abs=0.15)
    assert errors[-1] < 1e-7


def stability_function(z):
    """R(z) of the two-stage SDIRK method: 1 + z b^T (I - z A)^-1 1."""
    a = np.array([[GAMMA, 0.0], [1 - 2 * GAMMA, GAMMA]])
    return 1 + z * np.array([0.5, 0.5]) @ np.linalg.solve(np.eye(2) - z * a, np.ones(2))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_the_stiffest_diffusion_mode_decays_by_the_stability_function(backend):
    """A grid-scale zigzag (the Laplacian's eigenvector of eigenvalue -4 D / dx^2 with mirror
    ends) at dt D / dx^2 = 400, near rest where the reaction is linear and slow: each step
    multiplies it by R(z), z = dt (-4 D / dx^2 + f_v(0)), which tends to 1 - sqrt(3) = -0.73;
    Richardson-extrapolated Crank–Nicolson would multiply it by about 5/3."""
    nx, dt, steps = 81, 100.0, 3
    case = make_case(SMALL_CABLE, SDIRK, f"solver.backend={backend}", f"time.dt={dt}",
                     f"time.t_end={steps * dt}", f"time.save_every={steps * dt}",
                     "initial.v={kind: gaussian, center: 20.0, width: 3.0, amplitude: 0.0}")
    from fhnpde.driver import build_solver

    problem, solver = build_solver(case)
    dx = problem.grid.dx
    zigzag = 1e-6 * (-1.0) ** np.arange(nx)
    state = solver.init()
    state.v[:] = zigzag
    out = solver.advance(state, 0.0, dt, steps)
    z = dt * (-4 * problem.diffusion / dx**2 - problem.kinetics.params["k"]
              * problem.kinetics.params["a"])
    r = stability_function(z)
    assert abs(r) < 1
    assert r == pytest.approx(1 - math.sqrt(3), abs=0.01)
    np.testing.assert_allclose(out.v, r**steps * zigzag, rtol=1e-3, atol=1e-15)


@pytest.mark.parametrize("method", ["thomas", "cyclic-reduction", "scipy"])
def test_backends_and_tridiagonal_methods_agree_on_a_ring_with_a_stimulus(cases_dir, method):
    sets = [SDIRK, "time.t_end=40", "time.dt=0.5", "time.save_every=40",
            "domain.boundary=periodic"]
    ref, other = compiled_and_array_runs(cases_dir / "impulse_train.yaml", sets, method)
    assert np.abs(ref[1]).max() > 0.5  # a pulse is on the ring
    # Newton stops at rtol 1e-8 by the same rule in both; the paths differ within it
    np.testing.assert_allclose(other[1], ref[1], rtol=0, atol=1e-9)
    np.testing.assert_allclose(other[2], ref[2], rtol=0, atol=1e-9)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_restarts_and_counters(backend):
    from fhnpde.driver import build_solver

    case = make_case(SMALL_CABLE, SDIRK, f"solver.backend={backend}", "time.dt=0.25",
                     "solver.newton.rtol=1e-13")
    _, solver = build_solver(case)
    once = solver.advance(solver.init(), 0.0, 0.25, 20)
    stats = solver.stats()
    assert stats["newton_steps"] == 20
    # two stages, each at least one iteration
    assert 2 <= stats["newton_mean_per_step"] <= 6
    state = solver.init()
    for k in range(4):
        state = solver.advance(state, 5 * k * 0.25, 0.25, 5)
    # a restart changes only Newton's starting guess: equal to the tolerance
    np.testing.assert_allclose(state.v, once.v, rtol=0, atol=1e-11)
    np.testing.assert_allclose(state.w, once.w, rtol=0, atol=1e-11)
