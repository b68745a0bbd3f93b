"""Strang splitting and the reaction steps: orders, references, reuse of the factorisation,
agreement of tridiagonal methods and backends, and the neural entry's error."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from fhnpde.case import CaseError, load_case
from fhnpde.driver import build_solver
from fhnpde.models import Kinetics
from fhnpde.reaction import REACTIONS, ExactReaction, ReactionStep, reaction_step
from tests.helpers import SMALL_CABLE, final_state, fitted_order, make_case, mol_reference

TRIDIAGONAL = ["thomas", "cyclic-reduction", "scipy"]
NAGUMO = {"k": 1.0, "a": 0.1, "eps": 0.01, "gamma": 0.5}


def divergent(cases_dir, *sets):
    return load_case(cases_dir / "divergent.yaml", ["solver.method=split", *sets])


# --- orders ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("t_end", [20.0, 40.0])
def test_time_order_two_with_rk4_substeps_on_divergent_case(cases_dir, t_end):
    sets = ("domain.nx=401", f"time.t_end={t_end}", f"time.save_every={t_end}",
            "reaction={kind: exact, scheme: rk4, substeps: 1}")
    _, v_ref, _ = final_state(divergent(cases_dir, *sets, "time.dt=0.0125"))
    dts = [0.4, 0.2, 0.1, 0.05]
    errs = [np.max(np.abs(final_state(divergent(cases_dir, *sets, f"time.dt={dt}"))[1] - v_ref))
            for dt in dts]
    order = fitted_order(dts, errs)
    assert order == pytest.approx(2.0, abs=0.2), (errs, order)


def test_space_order_two_on_divergent_case(cases_dir):
    sets = ("time.dt=0.05", "time.t_end=20", "time.save_every=20")
    _, v_ref, _ = final_state(divergent(cases_dir, *sets, "domain.nx=3201"))
    nxs = [101, 201, 401, 801]
    errs = [np.max(np.abs(final_state(divergent(cases_dir, *sets, f"domain.nx={nx}"))[1]
                          - v_ref[:: 3200 // (nx - 1)])) for nx in nxs]
    order = fitted_order([200.0 / (nx - 1) for nx in nxs], errs)
    assert order == pytest.approx(2.0, abs=0.2), (errs, order)


def test_euler_substeps_make_it_first_order(cases_dir):
    sets = ("domain.nx=201", "time.t_end=20", "time.save_every=20",
            "reaction={kind: exact, scheme: euler, substeps: 1}")
    case = divergent(cases_dir, *sets, "time.dt=0.1")
    _, solver = build_solver(case)
    assert solver.order.time == 1
    _, v_ref, _ = final_state(divergent(cases_dir, *sets, "time.dt=0.00625"))
    dts = [0.2, 0.1, 0.05, 0.025]
    errs = [np.max(np.abs(final_state(divergent(cases_dir, *sets, f"time.dt={dt}"))[1] - v_ref))
            for dt in dts]
    assert fitted_order(dts, errs) == pytest.approx(1.0, abs=0.2), errs
    # more substeps shrink the error constant (the reaction error dominates here)
    _, v4, _ = final_state(divergent(cases_dir, *sets[:3], "time.dt=0.2",
                                     "reaction={kind: exact, scheme: euler, substeps: 4}"))
    assert np.max(np.abs(v4 - v_ref)) < 0.5 * errs[0]


@pytest.mark.parametrize("merged", [False, True], ids=["symmetric", "merged"])
@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_against_scipy_bdf_on_the_same_grid(boundary, merged):
    """Second order against scipy BDF on the same grid, with the symmetric steps and with
    the inner half-steps merged (solver.merge_diffusion: one diffusion solve per step)."""
    sets = (f"domain.boundary={boundary}", "initial.v.center=12.0", "solver.method=split",
            "solver.backend=numba", f"solver.merge_diffusion={str(merged).lower()}")
    _, v_ref, w_ref = mol_reference(make_case(SMALL_CABLE, *sets))
    dts = [0.2, 0.1, 0.05]
    errs = []
    for dt in dts:
        _, v, w = final_state(make_case(SMALL_CABLE, *sets, f"time.dt={dt}"))
        errs.append(max(np.max(np.abs(v - v_ref)), np.max(np.abs(w - w_ref))))
    assert fitted_order(dts, errs) == pytest.approx(2.0, abs=0.15), errs
    assert errs[-1] < 1e-4


# --- the diffusion half-step ----------------------------------------------------------------------


def test_factorised_once_and_conserves_the_integral():
    """Pure diffusion (k = 0, w ~ 0): the CN half-steps conserve the trapezoidal integral, and
    the matrix is factorised once for the whole run."""
    case = make_case(SMALL_CABLE, "solver.method=split", "model.params.k=0.0",
                     "model.params.eps=1e-9", "time.dt=0.5", "time.t_end=20",
                     "time.save_every=20", "solver.backend=numba")
    problem, solver = build_solver(case)
    state = solver.init()
    for i in range(40):
        state = solver.step(state, 0.5 * i, 0.5)
    grid = problem.grid
    assert grid.integral(state.v) == pytest.approx(grid.integral(problem.v0), rel=1e-12)
    assert solver.stats()["factorizations"] == 1


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_tridiagonal_methods_give_the_same_answer(cases_dir, boundary):
    sets = ("time.dt=0.5", "time.t_end=40", f"domain.boundary={boundary}")
    results = {m: final_state(divergent(cases_dir, *sets, f"solver.tridiagonal={m}"))
               for m in TRIDIAGONAL}
    _, v0, w0 = results["thomas"]
    for method in TRIDIAGONAL[1:]:
        _, v, w = results[method]
        assert np.max(np.abs(v - v0)) < 1e-12, method
        assert np.max(np.abs(w - w0)) < 1e-12, method


def test_backends_agree(cases_dir):
    sets = ("time.dt=0.25", "time.t_end=30",
            "stimuli=[{kind: box, x: [0.0, 2.0], t: [5.0, 15.0], amplitude: 0.5}]",
            "reaction={kind: exact, scheme: rk4, substeps: 3}")
    _, v1, w1 = final_state(divergent(cases_dir, *sets, "solver.backend=numba"))
    _, v2, w2 = final_state(divergent(cases_dir, *sets, "solver.backend=numpy"))
    np.testing.assert_allclose(v1, v2, rtol=0, atol=1e-13)
    np.testing.assert_allclose(w1, w2, rtol=0, atol=1e-13)


def test_divergent_split_case_file_puts_fronts_near_the_same_grid_reference(cases_dir):
    """The shipped case (dt = 0.5) against CN at dt = 0.01 on the same grid, at t = 100."""
    from tests.test_crank_nicolson import crossings, run_to

    case = load_case(cases_dir / "divergent_split.yaml")
    assert (case.solver.method, case.time.dt) == ("split", 0.5)
    (v,), solver = run_to(case, (100.0,))
    (v_ref,), _ = run_to(load_case(cases_dir / "divergent.yaml",
                                   ["solver.method=crank-nicolson", "time.dt=0.01"]), (100.0,))
    x = solver.problem.grid.x
    got, ref = crossings(v, x), crossings(v_ref, x)
    assert got.size == ref.size == 4
    assert np.max(np.abs(got - ref)) < 0.1


# --- reaction steps -------------------------------------------------------------------------------


@pytest.mark.parametrize(("scheme", "order"), [("euler", 1), ("rk4", 4)])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_exact_reaction_orders_against_solve_ivp(scheme, order, backend):
    """Nodes with different states and currents, one call; error vs DOP853 over dt = 2."""
    from scipy.integrate import solve_ivp

    kin = Kinetics.create("nagumo", NAGUMO)
    v0 = np.linspace(-0.2, 1.0, 7)
    w0 = np.linspace(0.0, 0.2, 7)
    current = np.linspace(0.0, 0.3, 7)
    ref = np.array([
        solve_ivp(lambda t, y, i=i: np.array(kin.reaction(y[0], y[1], i)), (0.0, 2.0),
                  [a, b], method="DOP853", rtol=1e-13, atol=1e-14).y[:, -1]
        for a, b, i in zip(v0, w0, current, strict=True)
    ])
    subs = [4, 8, 16, 32]
    errs = []
    for m in subs:
        step = ExactReaction(kin, scheme, m, backend)
        assert isinstance(step, ReactionStep)
        v, w = step(v0, w0, current, 2.0)
        errs.append(max(np.max(np.abs(v - ref[:, 0])), np.max(np.abs(w - ref[:, 1]))))
    assert step.order == order
    assert fitted_order([2.0 / m for m in subs], errs) == pytest.approx(order, abs=0.2), errs
    # inputs untouched
    assert v0[0] == -0.2
    assert w0[-1] == 0.2


def test_reaction_registry_errors_name_the_valid_kinds(monkeypatch):
    class Spec:
        kind = "chemistry"

    with pytest.raises(CaseError,
                       match="unknown reaction kind 'chemistry'; valid kinds: exact, neural"):
        reaction_step(Spec(), None)


def test_neural_without_surrogates_is_a_clear_case_error(cases_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "surrogates", None)  # import surrogates -> ModuleNotFoundError
    monkeypatch.delitem(sys.modules, "surrogates.reaction", raising=False)
    case = divergent(cases_dir, "reaction={kind: neural, model: model.onnx}")
    with pytest.raises(CaseError, match=r"reaction.kind: 'neural' needs the surrogates package"):
        build_solver(case)


def test_neural_through_cli_exits_2_without_surrogates(cases_dir, tmp_path, monkeypatch, capsys):
    from fhnpde.cli import main

    monkeypatch.setitem(sys.modules, "surrogates", None)
    monkeypatch.delitem(sys.modules, "surrogates.reaction", raising=False)
    rc = main(["run", str(cases_dir / "divergent_split.yaml"), "--set",
               "reaction={kind: neural, model: model.onnx}", "--out", str(tmp_path / "s.zarr")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "surrogates" in err
    assert "Traceback" not in err
    assert not (tmp_path / "s.zarr").exists()


def test_a_registered_reaction_step_drives_the_split_solver(cases_dir, monkeypatch):
    """The protocol as a neural model will use it: the split solver calls the registered
    factory and then the step once per time step with every node's (v, w, I)."""
    calls = []

    class Recorder:
        kind = "recorder"
        order = None

        def __init__(self, problem):
            self.inner = ExactReaction(problem.kinetics, "rk4", 1, "numpy")

        def __call__(self, v, w, current, dt):
            calls.append((v.shape, w.shape, np.shape(current), dt))
            return self.inner(v, w, current, dt)

    built = []

    def factory(spec, problem, options, dt):
        built.append((options.backend, dt))
        return Recorder(problem)

    monkeypatch.setitem(REACTIONS, "neural", factory)
    case = divergent(cases_dir, "reaction={kind: neural, model: none}", "time.dt=0.5",
                     "time.t_end=5", "time.save_every=5")
    problem, solver = build_solver(case)
    assert built == [(case.solver.backend, 0.5)]  # built once, told the backend and the step
    solver.advance(solver.init(), 0.0, 0.5, 10)
    assert calls == [((801,), (801,), (801,), 0.5)] * 10


# --- merged diffusion half-steps (solver.merge_diffusion) -------------------------------------


def test_merged_half_steps_are_the_symmetric_steps_with_inner_halves_combined():
    """One step is the symmetric step; over n steps, merging changes the result by the
    scheme's own error only, and the inner diffusion steps are full CN steps of dt: the
    merged advance equals composing the pieces by hand to the bit."""
    case = make_case(SMALL_CABLE, "solver.method=split", "solver.backend=numba",
                     "initial.v.center=12.0", "time.dt=0.1")
    merged = case.with_changes({"solver.merge_diffusion": True})
    _, plain = build_solver(case)
    problem, fused = build_solver(merged)
    s0 = plain.init()
    np.testing.assert_array_equal(fused.advance(s0, 0.0, 0.1, 1).v, plain.advance(s0, 0.0, 0.1,
                                                                                    1).v)
    n = 30
    got = fused.advance(s0, 0.0, 0.1, n)
    half, full = plain.diffusion(0.1), plain.diffusion(0.1, 0.1)
    v, w = half(s0.v), s0.w
    for i in range(n):
        v, w = plain.react(v, w, plain.asarray(problem.current.current((i + 0.5) * 0.1)), 0.1)
        v = full(v) if i < n - 1 else half(v)
    np.testing.assert_array_equal(got.v, v)
    np.testing.assert_array_equal(got.w, w)
    symmetric = plain.advance(s0, 0.0, 0.1, n)
    assert 0 < np.abs(got.v - symmetric.v).max() < 1e-3
    assert fused.stats()["factorizations"] == 2  # the half-step's matrix and the step's


def test_merge_diffusion_is_the_split_solvers_option():
    with pytest.raises(CaseError, match=r"solver\.merge_diffusion: merges the split solver's "
                                        r"diffusion half-steps, but the method is explicit"):
        make_case(SMALL_CABLE, "solver.method=explicit", "solver.merge_diffusion=true")
    # a case that does not use it dumps as before the key existed
    assert "merge_diffusion" not in make_case(SMALL_CABLE, "solver.method=split").to_yaml()
    assert "merge_diffusion: true" in make_case(SMALL_CABLE, "solver.method=split",
                                                "solver.merge_diffusion=true").to_yaml()
