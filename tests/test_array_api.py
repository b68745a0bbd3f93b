"""The array paths on the array API standard: every registered solver runs whole cases on
``array_api_strict`` arrays on a non-CPU device (which refuse any implicit conversion to
numpy, standing in for a GPU library) and on torch CPU tensors, and matches the numpy
backend to 1e-12."""

from __future__ import annotations

import numpy as np
import pytest

from fhnpde.case import load_case
from fhnpde.driver import BlowUpGuard, build_solver, integrate, run_layout
from fhnpde.store import MemoryRecorder

xps = pytest.importorskip("array_api_strict", reason="array-api-strict is a dev dependency")

# (case file, solver, overrides): each registered solver whose array path is array code
CABLE = ["explicit", "adaptive", "crank-nicolson", "split", "staggered-cn", "sdirk3"]
POINT = ["euler", "rk4", "crank-nicolson"]
SHEET = ["explicit", "split"]
RUNS = [
    *[("sheet_planar.yaml", m, ["domain.nx=[41, 31]", "time.t_end=5", "time.save_every=1"])
      for m in SHEET],
    *[("divergent.yaml", m, ["time.t_end=5", "time.save_every=1"]) for m in CABLE],
    *[("impulse_train.yaml", m, ["time.t_end=20", "time.save_every=5"]) for m in CABLE],
    *[("cell_ensemble.yaml", m, ["time.t_end=5", "time.save_every=1"]) for m in POINT],
    ("divergent_adaptive.yaml", "adaptive", ["time.t_end=5", "time.save_every=1"]),
    # the fourth-order stencils: the outer ghosts of both edges, mirror and ring
    ("sheet_planar.yaml", "explicit", ["domain.nx=[41, 31]", "time.t_end=5",
                                       "time.save_every=1", "solver.space_order=4"]),
    ("divergent.yaml", "explicit", ["time.t_end=5", "time.save_every=1",
                                    "solver.space_order=4"]),
    ("divergent.yaml", "explicit", ["time.t_end=5", "time.save_every=1",
                                    "solver.space_order=4", "domain.boundary=periodic"]),
]


def case_for(cases_dir, name, method, sets, backend):
    implicit = ("crank-nicolson", "split", "staggered-cn", "sdirk3")
    extra = ["time.dt=0.1"] if method in implicit and "cell" not in name else []
    return load_case(cases_dir / name, [*sets, *extra, f"solver.method={method}",
                                        f"solver.backend={backend}",
                                        "solver.tridiagonal=cyclic-reduction"])


def run(case, **where):
    problem, solver = build_solver(case, **where)
    recorder = MemoryRecorder(run_layout(case, problem, solver))
    result = integrate(solver, solver.init(), case, [BlowUpGuard(), recorder])
    return result, recorder.dataset()


def test_every_registered_solver_is_covered():
    from fhnpde.solvers import REGISTRY, load_all

    load_all()
    covered = ({("cable", m) for m in CABLE} | {("point", m) for m in POINT}
               | {("sheet", m) for m in SHEET})
    assert set(REGISTRY) == covered


@pytest.mark.parametrize(("name", "method", "sets"), RUNS)
def test_strict_namespace_on_a_device_matches_numpy(cases_dir, name, method, sets):
    case = case_for(cases_dir, name, method, sets, "numpy")
    _, ref = run(case)
    device = xps.Device("device1")
    result, ds = run(case, namespace=xps, device=device)
    assert result.status == "complete", result.message
    assert ds.attrs["status"] == "complete"
    assert ds.sizes["time"] == ref.sizes["time"] > 2
    for var in ("v", "w"):
        np.testing.assert_allclose(ds[var].values, ref[var].values, rtol=0, atol=1e-12)
    assert float(np.abs(ref["v"].values).max()) > 0.05  # the run did something


@pytest.mark.parametrize(("name", "method", "sets"), RUNS)
def test_torch_backend_matches_numpy(cases_dir, name, method, sets):
    torch = pytest.importorskip("torch", reason="torch is in the surrogates extra")
    _, ref = run(case_for(cases_dir, name, method, sets, "numpy"))
    case = case_for(cases_dir, name, method, sets, "torch")
    problem, solver = build_solver(case)
    assert isinstance(solver.init().v, torch.Tensor)
    result, ds = run(case)
    assert result.status == "complete", result.message
    for var in ("v", "w"):
        np.testing.assert_allclose(ds[var].values, ref[var].values, rtol=0, atol=1e-12)


def test_fhnpde_solve_with_torch(cases_dir):
    pytest.importorskip("torch", reason="torch is in the surrogates extra")
    import fhnpde

    case = load_case(cases_dir / "divergent.yaml", ["time.t_end=2", "time.save_every=1"])
    ds = fhnpde.solve(case.with_changes({"solver.backend": "torch"}))
    ref = fhnpde.solve(case.with_changes({"solver.backend": "numpy"}))
    assert ds.attrs["status"] == "complete"
    np.testing.assert_allclose(ds["v"].values, ref["v"].values, rtol=0, atol=1e-12)


def test_strict_arrays_refuse_numpy_here():
    """The stand-in is meaningful: its device arrays cannot silently become numpy arrays."""
    a = xps.asarray([1.0, 2.0], device=xps.Device("device1"))
    with pytest.raises((RuntimeError, TypeError, ValueError)):
        np.asarray(a)
    from fhnpde.backends import to_numpy

    np.testing.assert_array_equal(to_numpy(a), [1.0, 2.0])


def test_adaptive_run_on_a_device_writes_a_complete_store(cases_dir, tmp_path):
    """cases/divergent_adaptive.yaml end to end on strict device arrays into a zarr store:
    the active set is chosen on the device (data-dependent shapes, which array_api_strict
    permits with these flags), and the store equals the numpy run's."""
    from fhnpde.driver import store_writer
    from fhnpde.store import open_run

    assert xps.get_array_api_strict_flags()["data_dependent_shapes"]
    assert xps.get_array_api_strict_flags()["boolean_indexing"]
    case = load_case(cases_dir / "divergent_adaptive.yaml",
                     ["time.t_end=5", "time.save_every=1", "solver.backend=numpy"])
    _, ref = run(case)
    problem, solver = build_solver(case, namespace=xps, device=xps.Device("device1"))
    state = solver.init()
    assert state.aux["index"].device == xps.Device("device1")
    path = tmp_path / "adaptive.zarr"
    writer = store_writer(case, problem, solver, path)
    result = integrate(solver, state, case, [BlowUpGuard(), writer])
    assert result.status == "complete", result.message
    ds = open_run(path)
    assert ds.attrs["status"] == "complete"
    assert ds.sizes["time"] == ref.sizes["time"] == 6
    for var in ("v", "w"):
        np.testing.assert_allclose(ds[var].values, ref[var].values, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ds["active_mask"].values, ref["active_mask"].values)
    np.testing.assert_array_equal(ds["active_nodes"].values, ref["active_nodes"].values)
    assert 0 < ds["active_nodes"].values.max() < problem.grid.nx / 4  # it adapted
    assert result.stats["regrids"] == 24  # t = 0.2, ..., 4.8 (the one at 5.0 precedes no step)


def test_cpu_only_tridiagonal_methods_are_refused_off_numpy(cases_dir):
    case = load_case(cases_dir / "divergent.yaml", ["solver.method=crank-nicolson",
                                                    "solver.backend=torch",
                                                    "solver.tridiagonal=thomas"])
    from fhnpde.case import CaseError

    with pytest.raises(CaseError, match="solver.tridiagonal: 'thomas' runs on numpy arrays"):
        build_solver(case)
