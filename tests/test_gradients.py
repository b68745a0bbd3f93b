"""Gradients through the solvers (DESIGN §10, issue 17): the differentiable tridiagonal solve,
torch runs equal to numpy, gradients against central finite differences of the same solver,
Crank–Nicolson's implicit-function rule, checkpointing, and the errors a user can cause."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="gradients need torch (pip install torch)")

import fhnpde  # noqa: E402
from fhnpde.case import CaseError  # noqa: E402
from fhnpde.gradients import api, data, run, tridiagonal, wrt  # noqa: E402
from tests.helpers import (  # noqa: E402
    CELL,
    central_difference,
    check_gradients_against_central_differences,
    make_case,
    torch_outputs,
)

torch.set_num_threads(1)

# the divergent case (cases/divergent.yaml) cut to t_end 50 on a coarser grid (dx = 2), its
# pulse started at x = 30 so that the left half meets the wall by t = 50 (no gradient vanishes
# by symmetry), a stimulus box far from it; Newton converged far below the finite
# differences' resolution
DIVERGENT = fhnpde.load_case(Path(__file__).parents[1] / "cases" / "divergent.yaml").with_changes({
    "time.t_end": 50.0, "time.dt": 0.1, "time.save_every": 5.0, "domain.nx": 101,
    "initial.v.center": 30.0,
    "solver.backend": "torch", "solver.tridiagonal": "cyclic-reduction",
    "solver.newton.rtol": 1e-12,
    "stimuli": [{"x": [150.0, 160.0], "t": [2.0, 6.0], "amplitude": 0.05}],
})
WRT = ["model.params.a", "model.params.eps", "model.params.k", "model.diffusion",
       "initial.v.amplitude", "initial.v.center", "initial.v.width", "initial.w",
       "stimuli.0.amplitude"]
SOLVERS = ["explicit", "crank-nicolson", "split"]


def divergent(method: str, *sets):
    """The case with ``method`` (dt 0.25 for the A-stable ones: fewer steps, faster tests)."""
    dt = 0.1 if method == "explicit" else 0.25
    return DIVERGENT.with_changes({"solver.method": method, "time.dt": dt, **dict(sets)})


def final_mean_square(r):
    return (r.v[-1] ** 2).mean()


# --- the tridiagonal solve -------------------------------------------------------------------


def _cpu_methods():
    from fhnpde.tridiagonal import METHODS

    return [m for m, spec in METHODS.items() if spec.placement != "cuda"]


@pytest.mark.parametrize("method", _cpu_methods())
@pytest.mark.parametrize("shapes", [[(9,)] * 4, [(9,), (3, 9), (9,), (2, 1, 9)]],
                         ids=["one", "broadcast"])
def test_tridiagonal_gradcheck(method, shapes):
    gen = torch.Generator().manual_seed(1)

    def rand(shape, shift=0.0):
        return (shift + torch.rand(shape, generator=gen, dtype=torch.float64)).requires_grad_()

    args = (rand(shapes[0], -0.5), rand(shapes[1], 3.0), rand(shapes[2], -0.5), rand(shapes[3]))
    assert torch.autograd.gradcheck(lambda *a: tridiagonal.solve(*a, method=method), args,
                                    eps=1e-6, atol=1e-9, rtol=1e-7)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_tridiagonal_gradcheck_cuda():
    args = [torch.rand(9, dtype=torch.float64, device="cuda") for _ in range(4)]
    args[1] = args[1] + 3.0
    args = [a.requires_grad_() for a in args]
    assert torch.autograd.gradcheck(
        lambda *a: tridiagonal.solve(*a, method="cyclic-reduction-cuda"), args)


def test_tridiagonal_backward_is_one_transposed_solve(monkeypatch):
    calls = []
    original = tridiagonal._solve_tensors

    def counted(lower, diag, upper, rhs, method):
        calls.append((lower.detach().clone(), upper.detach().clone()))
        return original(lower, diag, upper, rhs, method)

    monkeypatch.setattr(tridiagonal, "_solve_tensors", counted)
    n = 6
    lower, upper = torch.arange(1.0, n + 1), -torch.arange(1.0, n + 1)
    diag = torch.full((n,), 10.0, requires_grad=True)
    x = tridiagonal.solve(lower.double(), diag.double(), upper.double(),
                          torch.ones(n, dtype=torch.float64), "thomas")
    x.sum().backward()
    assert len(calls) == 2  # forward, and one solve backward
    lower_t, upper_t = calls[1]
    assert lower_t[1:].tolist() == upper[:-1].tolist()  # A^T: the bands swapped and shifted
    assert upper_t[:-1].tolist() == lower[1:].tolist()


# --- forward values and gradients ------------------------------------------------------------


@pytest.mark.parametrize("method", SOLVERS)
def test_torch_forward_equals_numpy(method):
    case = divergent(method)
    ds = fhnpde.solve(case.with_changes({"solver.backend": "numpy"}))
    r = torch_outputs(case)
    assert np.abs(r.v.numpy() - ds.v.values).max() <= 1e-12
    assert np.abs(r.w.numpy() - ds.w.values).max() <= 1e-12
    assert np.allclose(r.t, ds.time.values, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", SOLVERS)
def test_gradients_match_central_differences(method):
    """Every wrt kind, two losses (the mean square of v at the end; the squared error against a
    recorded run with other parameters), against central differences of the same solver."""
    case = divergent(method)
    recorded = fhnpde.solve(case.with_changes({"model.params.a": 0.12, "model.diffusion": 1.1,
                                               "solver.backend": "numpy"}))
    losses = [final_mean_square, data.squared_error(case, recorded)]
    check_gradients_against_central_differences(case, losses, WRT)


@pytest.mark.parametrize("method", SOLVERS)
def test_gradients_on_a_ring(method):
    """The ring's corner entries (Sherman–Morrison) on the differentiable path."""
    case = divergent(method, ("domain.boundary", "periodic"), ("time.t_end", 20.0))
    targets = wrt.resolve(case, ["model.diffusion", "initial.v.center"])
    _, grads = api.evaluate(case, targets, final_mean_square)
    for t in targets:
        fd = central_difference(case, t.path, [final_mean_square], 1e-5 * abs(t.value))[0]
        assert grads[t.path] == pytest.approx(fd, rel=1e-6), t.path


@pytest.mark.parametrize("kinetics", ["nagumo", "fitzhugh"])
def test_explicit_adjoint_compiled_and_arrays(kinetics, monkeypatch):
    """The explicit backward pass by its numba kernel and by torch operations (the path of
    tensors on a GPU) against each other and against central differences, for both kinetics
    families (every parameter of the family, the diffusivity and a stimulus amplitude)."""
    if kinetics == "nagumo":
        case = divergent("explicit", ("time.t_end", 20.0))
    else:
        case = divergent("explicit", ("time.t_end", 20.0), ("model.kinetics", "fitzhugh"),
                         ("model.params", {"c": 1.2, "a": 0.7, "b": 0.8, "tau": 12.5}),
                         ("initial.v.base", -1.2), ("initial.w", -0.6))
    fam = case.model.kinetics
    paths = [f"model.params.{q}" for q in
             fhnpde.models.FAMILIES[fam].params] + ["model.diffusion", "stimuli.0.amplitude"]
    targets = wrt.resolve(case, paths)
    compiled = api.evaluate(case, targets, final_mean_square)
    monkeypatch.setattr(run, "FORCE_ARRAY_ADJOINT", True)
    arrays = api.evaluate(case, targets, final_mean_square)
    assert compiled[0] == arrays[0]
    largest = max(abs(g) for g in arrays[1].values())
    for t in targets:  # sums in another order: round-off
        assert compiled[1][t.path] == pytest.approx(arrays[1][t.path], rel=1e-11,
                                                    abs=1e-14 * largest), t.path
        fd = central_difference(case, t.path, [final_mean_square],
                                1e-5 * max(abs(t.value), 0.01))[0]
        assert compiled[1][t.path] == pytest.approx(fd, rel=1e-6), t.path
        if t.path != "model.params.gamma":  # gamma: g_gamma = -eps w, w ~ 0 near rest
            assert abs(fd) > 1e-6 * compiled[0], f"{t.path}: a vanishing gradient"


@pytest.mark.parametrize("method", ["euler", "rk4", "crank-nicolson"])
def test_point_solver_gradients(method):
    case = make_case(CELL, f"solver.method={method}", "solver.backend=torch",
                     "solver.newton.rtol=1e-13", "time.t_end=3.0", "time.save_every=0.5")
    case = case.with_changes({"stimuli": [{"t": [0.5, 1.5], "amplitude": 0.2}]})
    ds = fhnpde.solve(case.with_changes({"solver.backend": "numpy"}))
    r = torch_outputs(case)
    assert np.abs(r.v.numpy() - ds.v.transpose("time", "member").values).max() <= 1e-12
    paths = ["model.params.a", "model.params.eps", "model.params.k", "initial.v",
             "stimuli.0.amplitude"]
    targets = wrt.resolve(case, paths)

    def loss(r):
        return (r.v ** 2).mean() + (r.w[-1] ** 2).mean()

    _, grads = api.evaluate(case, targets, loss)
    for t in targets:
        fd = central_difference(case, t.path, [loss], 1e-6 * max(abs(t.value), 0.1))[0]
        assert grads[t.path] == pytest.approx(fd, rel=1e-6), t.path


@pytest.mark.parametrize("method", ["explicit", "crank-nicolson"])
def test_checkpointing_changes_no_gradient(method):
    """Checkpointed (explicit: its own adjoint; Crank–Nicolson: autograd on the recomputed
    interval) against the whole run's autograd graph."""
    case = divergent(method, ("time.t_end", 20.0))
    targets = wrt.resolve(case, WRT)
    a = api.evaluate(case, targets, final_mean_square, checkpoint=True)
    b = api.evaluate(case, targets, final_mean_square, checkpoint=False)
    assert a[0] == b[0]
    largest = max(abs(g) for g in b[1].values())
    for path in a[1]:  # sums in another order: round-off relative to the largest gradient
        assert a[1][path] == pytest.approx(b[1][path], rel=1e-12, abs=1e-14 * largest), path


def test_crank_nicolson_backward_solves_once_per_step(monkeypatch):
    """The implicit-function rule: one transposed solve per step in the backward pass, however
    many Newton iterations the step took."""
    case = divergent("crank-nicolson", ("time.t_end", 10.0), ("time.save_every", 10.0))
    backward = []
    original = tridiagonal.TridiagonalSolve.backward

    def counted(ctx, grad):
        backward.append(1)
        return original(ctx, grad)

    monkeypatch.setattr(tridiagonal.TridiagonalSolve, "backward", staticmethod(counted))
    api.evaluate(case, wrt.resolve(case, ["model.params.a"]), final_mean_square,
                 checkpoint=False)
    steps = case.time.n_steps
    assert len(backward) == steps
    # the solver's own counters: Newton took more iterations than steps
    _, solver = fhnpde.driver.build_solver(case)
    solver.advance(solver.init(), 0.0, case.time.dt, steps)
    assert solver.stats()["newton_iterations"] > steps


def test_gradient_api_and_loss_errors():
    case = divergent("explicit", ("time.t_end", 5.0))
    value, grads = fhnpde.gradient(case, final_mean_square, "a,diffusion")
    assert set(grads) == {"model.params.a", "model.diffusion"}
    assert value > 0
    with pytest.raises(TypeError, match="scalar"):
        fhnpde.gradient(case, lambda r: r.v[-1], ["model.params.a"])
    with pytest.raises(CaseError, match="loss must be a function"):
        fhnpde.gradient(case, 3, ["model.params.a"])


@pytest.mark.parametrize(("changes", "paths", "key", "text"), [
    ({}, ["model.params.zz"], "model.params.zz", "is not a key of the case"),
    ({}, ["domain"], "domain", "is not a number in the case"),
    ({}, ["time.dt"], "time.dt", "not one the solvers differentiate"),
    ({}, ["initial.v.kind"], "initial.v.kind", "is not a number"),
    ({}, ["a", "model.params.a"], "model.params.a", "named twice"),
    ({}, [], None, "wrt is empty"),
    ({"solver.backend": "numpy"}, ["a"], "solver.backend", "need solver.backend: torch"),
    ({"solver.method": "adaptive"}, ["a"], "solver.method", "no differentiable path"),
    ({"solver.method": "split", "solver.merge_diffusion": True}, ["a"],
     "solver.merge_diffusion", "merged diffusion half-steps have no differentiable path"),
    ({"domain.nx": [21, 11], "domain.length": [200.0, 100.0], "initial.v.center": [30.0, 50.0]},
     ["initial.v.center"], "initial.v.center", "name one of its numbers: initial.v.center.0"),
])
def test_bad_wrt_and_cases_are_one_line_errors(changes, paths, key, text):
    case = divergent("explicit").with_changes(changes)
    with pytest.raises(CaseError, match=text) as info:
        fhnpde.gradient(case, final_mean_square, paths)
    assert info.value.key == key
    assert "\n" not in str(info.value)


def test_data_on_another_grid_or_times_is_refused():
    case = divergent("explicit", ("time.t_end", 10.0))
    ds = fhnpde.solve(case.with_changes({"solver.backend": "numpy"}))
    other = fhnpde.solve(case.with_changes({"solver.backend": "numpy", "domain.nx": 100}))
    with pytest.raises(CaseError, match="another grid") as info:
        data.squared_error(case, other)
    assert info.value.key == "data"
    with pytest.raises(CaseError, match="not an output time"):
        data.squared_error(case, ds.assign_coords(time=ds.time + 0.5))
    with pytest.raises(CaseError, match="has no variable"):
        data.squared_error(case, ds[["w"]])
    # a subset of nodes and times is fine, and NaN (not observed) is left out
    part = ds[["v"]].isel(x=slice(1, None, 4), time=[0, 2])
    part["v"][1, 3] = np.nan
    loss = data.squared_error(case, part)
    assert float(loss(torch_outputs(case))) == pytest.approx(0.0, abs=1e-28)


def _graph_nodes(tensor) -> int:
    seen, stack = set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(n for n, _ in node.next_functions)
    return len(seen)


def test_checkpointing_keeps_one_node_per_interval_not_per_step():
    """The forward pass of a checkpointed run records one node per output interval; the
    steps inside are recorded only while the backward pass recomputes them."""
    from fhnpde.gradients.api import leaves

    case = divergent("explicit", ("time.t_end", 20.0))  # 200 steps, 4 intervals
    targets = wrt.resolve(case, ["model.params.a", "model.diffusion"])
    nodes = {}
    for checkpoint in (True, False):
        tensors = leaves(targets)
        r = run.trajectory(run.case_with(case, targets, tensors), targets, tensors,
                           checkpoint=checkpoint)
        nodes[checkpoint] = _graph_nodes(r.v[-1])
    assert nodes[True] <= 4 * 4  # an interval node, its parameters' accumulators, a stack
    assert nodes[False] > 10 * case.time.n_steps
