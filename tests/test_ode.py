"""Point-model solvers: fitted orders against scipy DOP853, batches, ensembles."""

from __future__ import annotations

import numpy as np
import pytest

from fhnpde.problem import build_problem, sample_ensemble
from tests.helpers import CELL, final_state, fitted_order, make_case, point_reference

PARAMS = {"k": 10.0, "a": 0.4, "eps": 0.04, "gamma": 4.0}


@pytest.mark.parametrize(("method", "declared", "dts"), [
    ("euler", 1, [0.004, 0.002, 0.001, 0.0005]),
    ("rk4", 4, [0.05, 0.025, 0.0125, 0.00625]),
])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_point_solver_order_against_scipy(method, declared, dts, backend):
    v_ref, w_ref = point_reference(PARAMS, 0.5, 0.0, 0.1, 5.0)
    errs = []
    for dt in dts:
        case = make_case(CELL, f"solver.method={method}", f"solver.backend={backend}",
                         f"time.dt={dt}", "stimuli=[{kind: box, amplitude: 0.1}]")
        _, v, w = final_state(case)
        errs.append(np.hypot(v[0] - v_ref, w[0] - w_ref))
    order = fitted_order(dts, errs)
    assert order == pytest.approx(declared, abs=0.15), (errs, order)


@pytest.mark.parametrize(("name", "geometry"), [("leapfrog", "cable"), ("rk4", "cable"),
                                              ("explicit", "point"), ("", "point")])
def test_an_unknown_solver_is_one_sentence_naming_the_registered_ones(name, geometry):
    """The registry lookup of a name not registered for the geometry (a point solver asked
    for a cable, too): one line listing the solvers registered for it, which are exactly the
    methods a case file may name for it; build_solver reports it at ``solver.method``."""
    from fhnpde.case import CaseError
    from fhnpde.driver import option_key
    from fhnpde.schema import CABLE_METHODS, POINT_METHODS
    from fhnpde.solvers import solver_class

    valid = sorted(CABLE_METHODS if geometry == "cable" else POINT_METHODS)
    with pytest.raises(CaseError) as info:
        solver_class(name, geometry)
    assert str(info.value) == (f"unknown solver {name!r} for a {geometry} case; valid solvers: "
                               f"{', '.join(valid)}")
    assert option_key(info.value.option) == "solver.method"
    for method in valid:  # and every name listed is one that resolves
        assert solver_class(method, geometry).geometry == geometry


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_ensemble_members_match_single_cell_references(method):
    """Members with their own I, v0, w0 and a: each equals its own scipy solution."""
    case = make_case(
        CELL, f"solver.method={method}", "solver.backend=numba", "time.dt=0.001",
        "ensemble={size: 6, sample: uniform, seed: 4, vary: {I: [0.08, 0.12], "
        "v0: [-0.1, 0.81], w0: [0, 0.12], a: [0.3, 0.45]}}",
    )
    problem, v, w = final_state(case)
    m = problem.members
    tol = 1e-2 if method == "euler" else 1e-9
    for i in range(6):
        ref = point_reference({**PARAMS, "a": m["a"][i]}, m["v0"][i], m["w0"][i], m["I"][i], 5.0)
        assert v[i] == pytest.approx(ref[0], abs=tol)
        assert w[i] == pytest.approx(ref[1], abs=tol)


def test_numba_and_numpy_point_solvers_agree():
    sets = ["ensemble={size: 50, seed: 1, vary: {I: [0.08, 0.12], v0: [-0.1, 0.81]}}",
            "stimuli=[{kind: box, t: [1.0, 2.0], amplitude: 0.3}]"]
    _, va, wa = final_state(make_case(CELL, *sets, "solver.backend=numpy"))
    _, vb, wb = final_state(make_case(CELL, *sets, "solver.backend=numba"))
    np.testing.assert_allclose(va, vb, atol=1e-13)
    np.testing.assert_allclose(wa, wb, atol=1e-13)


def test_latin_hypercube_stratifies_every_axis():
    case = make_case(CELL, "ensemble={size: 100, sample: latin-hypercube, seed: 7, "
                           "vary: {I: [0.08, 0.12], v0: [-0.1, 0.81]}}")
    m = sample_ensemble(case)
    for key, (lo, hi) in (("I", (0.08, 0.12)), ("v0", (-0.1, 0.81))):
        bins = np.floor((m[key] - lo) / (hi - lo) * 100).astype(int)
        assert sorted(bins) == list(range(100))  # one sample in each of the 100 strata
    again = sample_ensemble(case)
    np.testing.assert_array_equal(m["I"], again["I"])  # seeded


def test_grid_ensemble_is_the_product():
    case = make_case(CELL, "ensemble={sample: grid, points: 3, vary: {I: {values: [0.2, 0.5]},"
                           " v0: [-2, 2]}}")
    m = sample_ensemble(case)
    assert len(m["I"]) == 6
    assert sorted(set(zip(m["I"], m["v0"], strict=True))) == [
        (i, v) for i in (0.2, 0.5) for v in (-2.0, 0.0, 2.0)]
    problem = build_problem(case)
    np.testing.assert_array_equal(problem.v0, m["v0"])
    np.testing.assert_array_equal(problem.current.current(0.0), m["I"])


def test_uniform_sampling_stays_in_range():
    case = make_case(CELL, "ensemble={size: 500, sample: uniform, seed: 0, "
                           "vary: {w0: [0.0, 0.12]}}")
    w0 = sample_ensemble(case)["w0"]
    assert w0.min() >= 0.0
    assert w0.max() <= 0.12
    assert np.ptp(w0) > 0.1
