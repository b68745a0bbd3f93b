"""Gradients through sheets (DESIGN §9, §10; issue 17): torch runs equal to numpy, gradients
against central finite differences of the same solver for every wrt kind, a y-independent
sheet against the cable, data observed on a sub-grid, fits on a sheet."""

from __future__ import annotations

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="gradients need torch (pip install torch)")

import fhnpde  # noqa: E402
from fhnpde.case import CaseError  # noqa: E402
from fhnpde.gradients import api, data, wrt  # noqa: E402
from tests.helpers import (  # noqa: E402
    central_difference,
    check_gradients_against_central_differences,
    make_case,
    torch_outputs,
)

torch.set_num_threads(1)

# 12 x 10 nodes (dx = dy = 1), an elliptic pulse off the centre and a stimulus box with a y
# range, so that no gradient vanishes by symmetry; a few units of time
SHEET = {
    "name": "small_sheet",
    "model": {"kinetics": "nagumo", "params": {"k": 1.0, "a": 0.1, "eps": 0.05, "gamma": 0.5},
              "diffusion": 1.0},
    "domain": {"length": [11.0, 9.0], "nx": [12, 10], "boundary": "neumann"},
    "initial": {"v": {"kind": "gaussian", "center": [4.0, 3.5], "width": [2.0, 2.5],
                      "amplitude": 1.0, "base": 0.02},
                "w": 0.01},
    "time": {"t_end": 4.0, "dt": 0.05, "save_every": 1.0},
    "solver": {"method": "explicit", "backend": "torch", "tridiagonal": "cyclic-reduction"},
    "stimuli": [{"x": [7.0, 9.0], "y": [5.0, 8.0], "t": [0.5, 2.0], "amplitude": 0.05}],
}
WRT = ["model.params.a", "model.params.eps", "model.params.k", "model.diffusion",
       "initial.v.amplitude", "initial.v.base", "initial.v.center.0", "initial.v.center.1",
       "initial.v.width.0", "initial.v.width.1", "initial.w", "stimuli.0.amplitude"]
SOLVERS = ["explicit", "split"]
BOUNDARIES = ["neumann", "periodic"]


def sheet(method: str, boundary: str = "neumann", *sets: str):
    """The small sheet with ``method`` (dt 0.1 for split: fewer steps)."""
    dt = 0.05 if method == "explicit" else 0.1
    return make_case(SHEET, f"solver.method={method}", f"domain.boundary={boundary}",
                     f"time.dt={dt}", *sets)


def final_mean_square(r):
    return (r.v[-1] ** 2).mean()


def numpy_run(case, **changes):
    return fhnpde.solve(case.with_changes({"solver.backend": "numpy", **changes}))


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("method", SOLVERS)
def test_torch_forward_equals_numpy(method, boundary):
    case = sheet(method, boundary)
    ds = numpy_run(case)
    r = torch_outputs(case)
    assert ds.v.dims == ("time", "y", "x")
    assert r.v.shape == (ds.time.size, 10, 12)
    assert np.abs(r.v.numpy() - ds.v.values).max() <= 1e-12
    assert np.abs(r.w.numpy() - ds.w.values).max() <= 1e-12
    assert np.allclose(r.t, ds.time.values, rtol=0, atol=1e-12)
    assert np.array_equal(r.x, ds.x.values)
    assert np.array_equal(r.y, ds.y.values)


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("method", SOLVERS)
def test_gradients_match_central_differences(method, boundary):
    """Every wrt kind, two losses (the mean square of v at the end; the squared error against
    a recorded run with other parameters, observed on every 2nd column, every 3rd row and
    every 2nd output), against central differences of the same solver."""
    case = sheet(method, boundary)
    recorded = numpy_run(case, **{"model.params.a": 0.12, "model.diffusion": 1.1})
    observed = recorded.isel(x=slice(None, None, 2), y=slice(None, None, 3),
                             time=slice(1, None, 2))
    losses = [final_mean_square, data.squared_error(case, observed)]
    check_gradients_against_central_differences(case, losses, WRT)


@pytest.mark.parametrize(("profile", "paths"), [
    ({"kind": "gaussian", "center": [4.0, 3.5], "width": 2.0, "amplitude": 1.0},
     ["initial.v.center.0", "initial.v.center.1", "initial.v.width", "initial.v.amplitude"]),
    ({"kind": "gaussian", "center": 4.0, "width": 2.0, "amplitude": 1.0, "base": 0.1},
     ["initial.v.center", "initial.v.width", "initial.v.base"]),
    ({"kind": "box", "x": [2.0, 5.0], "y": [1.0, 4.0], "amplitude": 0.9, "base": 0.05},
     ["initial.v.amplitude", "initial.v.base"]),
    ({"kind": "box", "x": [2.0, 5.0], "amplitude": 0.9}, ["initial.v.amplitude"]),
], ids=["round", "stripe", "box", "box-all-y"])
def test_profile_gradients(profile, paths):
    """The other profiles of a sheet: a round gaussian, a stripe across y (the cable's pulse on
    every row), a box with and without a y range; against the numpy profile and central
    differences."""
    case = sheet("explicit").with_changes({"initial.v": profile})
    assert np.abs(torch_outputs(case).v[0].numpy() - numpy_run(case).v[0].values).max() == 0.0
    targets = wrt.resolve(case, paths)
    _, grads = api.evaluate(case, targets, final_mean_square)
    for t in targets:
        fd = central_difference(case, t.path, [final_mean_square], 1e-5 * abs(t.value))[0]
        assert grads[t.path] == pytest.approx(fd, rel=1e-6), t.path
        assert abs(fd) > 1e-8, t.path


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("method", SOLVERS)
def test_sheet_without_y_gives_the_cables_gradient(method, boundary):
    """Data that do not depend on y (a stripe, a stimulus over all y): the sheet's rows are the
    cable's run (five-point = three-point, ADI = Crank–Nicolson in x), so the sum of v^2 over
    the sheet's nodes has ny times the cable's gradient."""
    ny = 5
    changes = {"initial.v": {"kind": "gaussian", "center": 4.0, "width": 2.0, "amplitude": 1.0},
               "stimuli": [{"x": [7.0, 9.0], "t": [0.5, 2.0], "amplitude": 0.05}]}
    flat = sheet(method, boundary).with_changes({**changes, "domain.nx": [12, ny]})
    cable = flat.with_changes({"domain.nx": 12, "domain.length": 11.0})
    paths = ["model.params.a", "model.params.eps", "model.diffusion", "initial.v.center",
             "initial.v.width", "initial.w", "stimuli.0.amplitude"]

    def total(r):
        return (r.v[-1] ** 2).sum() + (r.w ** 2).sum()

    sheet_value, sheet_grads = api.evaluate(flat, wrt.resolve(flat, paths), total)
    cable_value, cable_grads = api.evaluate(cable, wrt.resolve(cable, paths), total)
    assert sheet_value == pytest.approx(ny * cable_value, rel=1e-12)
    for path in paths:
        assert abs(cable_grads[path]) > 1e-6, path
        assert sheet_grads[path] == pytest.approx(ny * cable_grads[path], rel=1e-10), path


@pytest.mark.parametrize(("method", "boundary", "order"), [
    ("explicit", "neumann", 2), ("explicit", "neumann", 1), ("explicit", "periodic", 2),
    ("split", "periodic", 2)])
def test_checkpointing_changes_no_gradient(method, boundary, order):
    """Checkpointed (explicit: its own adjoint with the five-point L^T, whose edges differ
    with the boundary order; split: autograd on the recomputed interval) against the whole
    run's autograd graph."""
    case = sheet(method, boundary, f"domain.boundary_order={order}")
    targets = wrt.resolve(case, WRT)
    a = api.evaluate(case, targets, final_mean_square, checkpoint=True)
    b = api.evaluate(case, targets, final_mean_square, checkpoint=False)
    assert a[0] == b[0]
    for path in a[1]:
        assert a[1][path] == pytest.approx(b[1][path], rel=1e-12, abs=1e-16), path


def test_observed_subgrid_loss_is_the_mean_square_there():
    """squared_error on a sheet: the model selected at the data's rows, columns and times,
    against a direct computation on the numpy run; NaN left out."""
    case = sheet("explicit")
    model = numpy_run(case)
    recorded = numpy_run(case, **{"model.params.a": 0.13})
    part = recorded[["v"]].isel(x=[1, 4, 10], y=[0, 7], time=[1, 4]).load()
    part["v"][1, 1, 2] = np.nan
    expected = (model.v.sel(x=part.x, y=part.y, time=part.time) - part.v) ** 2
    loss = data.squared_error(case, part)
    assert float(loss(torch_outputs(case))) == pytest.approx(float(expected.mean()), rel=1e-12)


def test_bad_sheet_input_is_one_line_errors():
    case = sheet("explicit")
    ds = numpy_run(case)
    other = numpy_run(case, **{"domain.nx": [12, 9]})
    with pytest.raises(CaseError, match=r"y = 1\.125 is not a node") as info:
        data.squared_error(case, other)
    assert info.value.key == "data"
    with pytest.raises(CaseError, match=r"outputs have \('time', 'y', 'x'\)"):
        data.squared_error(case, ds.isel(y=0))
    with pytest.raises(CaseError, match="is a pair") as info:
        fhnpde.gradient(case, final_mean_square, ["initial.v.width"])
    assert info.value.key == "initial.v.width"
    with pytest.raises(CaseError, match="is not a key of the case"):
        fhnpde.gradient(case, final_mean_square, ["initial.v.center.2"])
    with pytest.raises(CaseError, match="is not a key of the case") as info:
        fhnpde.gradient(case.with_changes({"initial.v": {"kind": "box", "x": [1.0, 2.0]}}),
                        final_mean_square, ["initial.v.center.0"])
    assert info.value.key == "initial.v.center"


def test_fit_recovers_a_and_d_on_a_sheet():
    """Noise-free data of the split solver (a = 0.1, D = 1), from a = 0.15, D = 1.3."""
    case = sheet("split", "neumann", "time.t_end=6.0")
    t0 = time.perf_counter()
    result = fhnpde.fit(case, numpy_run(case), ["a", "diffusion"],
                        {"a": 0.15, "diffusion": 1.3})
    seconds = time.perf_counter() - t0
    errors = {"a": abs(result.values["model.params.a"] / 0.1 - 1.0),
              "D": abs(result.values["model.diffusion"] - 1.0)}
    assert max(errors.values()) < 1e-3, (errors, result.message)
    assert result.history[0] > 1e6 * result.loss
    print(f"sheet fit: {result.iterations} iterations, {result.evaluations} gradients, "
          f"{seconds:.1f} s, errors {errors}")


def test_cli_fit_on_a_sheet(tmp_path, capsys):
    from fhnpde.cli import main

    case = sheet("explicit").with_changes({"output.path": str(tmp_path / "d.zarr")})
    (tmp_path / "case.yaml").write_text(case.to_yaml())
    assert main(["run", str(tmp_path / "case.yaml"), "--quiet",
                 "--set", "solver.backend=numpy"]) == 0
    out = tmp_path / "out"
    assert main(["fit", str(tmp_path / "case.yaml"), "--data", str(tmp_path / "d.zarr"),
                 "--wrt", "model.params.a,initial.v.center.1", "--start", "a=0.13",
                 "--start", "initial.v.center.1=3.0", "--out", str(out), "--quiet"]) == 0
    fitted = fhnpde.load_case(out / "fitted.yaml")
    assert fitted.model.params["a"] == pytest.approx(0.1, rel=1e-4)
    assert fitted.initial.v.center[1] == pytest.approx(3.5, rel=1e-4)
    bad = ["fit", str(tmp_path / "case.yaml"), "--data", str(tmp_path / "d.zarr"), "--quiet",
           "--out", str(out), "--wrt", "a", "--set", "domain.nx=[12, 9]"]
    capsys.readouterr()
    assert main(bad) == 2
    err = capsys.readouterr().err
    assert "--data: is on another grid: y = " in err
    assert err.count("\n") == 1
