"""Fitting case values to recorded runs (issue 17): fhnpde.fit and python -m fhnpde fit."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="fitting needs torch (pip install torch)")

import fhnpde  # noqa: E402
from fhnpde.case import CaseError  # noqa: E402
from fhnpde.cli import main  # noqa: E402

torch.set_num_threads(1)

TRUE = {"model.params.a": 0.1, "model.params.eps": 0.01, "model.diffusion": 1.0}
START = {"model.params.a": 0.15, "model.params.eps": 0.02, "model.diffusion": 1.3}
CASES = Path(__file__).parents[1] / "cases"


def divergent(nx=101, dt=0.1, method="explicit"):
    """cases/divergent.yaml (a = 0.1, eps = 0.01, D = 1) cut to t_end 50, on torch."""
    return fhnpde.load_case(CASES / "divergent.yaml").with_changes({
        "time.t_end": 50.0, "time.dt": dt, "domain.nx": nx, "solver.method": method,
        "solver.backend": "torch", "solver.tridiagonal": "cyclic-reduction"})


def recorded(case):
    return fhnpde.solve(case.with_changes({"solver.backend": "numpy"}))


def noisy_every_fourth_node(ds, seed=0):
    """v at every 4th node and every output with Gaussian noise of 1 % of max |v|."""
    obs = ds[["v"]].isel(x=slice(None, None, 4)).load()
    rng = np.random.default_rng(seed)
    obs["v"] = obs.v + 0.01 * float(np.abs(ds.v).max()) * rng.standard_normal(obs.v.shape)
    return obs


def relative_errors(values):
    return {p: abs(values[p] / TRUE[p] - 1.0) for p in TRUE}


def test_fit_recovers_the_parameters_noise_free():
    case = divergent()
    t0 = time.perf_counter()
    result = fhnpde.fit(case, recorded(case), list(TRUE), START)
    seconds = time.perf_counter() - t0
    errors = relative_errors(result.values)
    assert max(errors.values()) < 1e-3, (errors, result.message)
    assert result.history[0] > 1e8 * result.loss  # the loss fell by 8 orders or more
    assert result.iterations == len(result.history) - 1
    assert result.case.model.params["a"] == result.values["model.params.a"]
    print(f"noise-free: {result.iterations} iterations, {result.evaluations} gradients, "
          f"{seconds:.1f} s, errors {errors}")


def test_fit_recovers_the_parameters_from_noisy_partial_data():
    case = divergent()
    obs = noisy_every_fourth_node(recorded(case))
    t0 = time.perf_counter()
    result = fhnpde.fit(case, obs, ["a", "eps", "diffusion"],
                        {"a": 0.15, "eps": 0.02, "diffusion": 1.3})
    seconds = time.perf_counter() - t0
    errors = relative_errors(result.values)
    assert max(errors.values()) < 0.05, (errors, result.message)
    print(f"1 % noise, every 4th node: {result.iterations} iterations, {result.evaluations} "
          f"gradients, {seconds:.1f} s, errors {errors}")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["explicit", "crank-nicolson"])
def test_fit_at_the_real_size(method):
    """The same recovery on the divergent case's own grid (nx 801, dt 0.02 explicit)."""
    case = divergent(801, 0.02 if method == "explicit" else 0.1, method)
    ds = recorded(case)
    for data, tol in ((ds, 1e-3), (noisy_every_fourth_node(ds), 0.05)):
        t0 = time.perf_counter()
        result = fhnpde.fit(case, data, list(TRUE), START)
        errors = relative_errors(result.values)
        assert max(errors.values()) < tol, (errors, result.message)
        print(f"{method} nx 801: {result.iterations} iterations, {result.evaluations} "
              f"gradients, {time.perf_counter() - t0:.1f} s, errors {errors}")


def test_adam_lowers_the_loss_and_bounds_hold():
    case = divergent().with_changes({"time.t_end": 20.0})
    ds = recorded(case)
    result = fhnpde.fit(case, ds, ["a"], {"a": 0.15}, method="adam", max_iter=15, lr=0.05)
    assert result.loss < 0.5 * result.history[0]
    assert len(result.history) == 16
    bounded = fhnpde.fit(case, ds, ["a"], {"a": 0.15}, bounds={"a": (0.12, None)},
                         max_iter=20)
    assert bounded.values["model.params.a"] == pytest.approx(0.12, rel=1e-9)


@pytest.mark.parametrize(("options", "key", "text"), [
    ({"start": {"eps": 0.02}}, "model.params.eps", "not in wrt"),
    ({"bounds": {"model.diffusion": (0, 2)}}, "model.diffusion", "not in wrt"),
    ({"method": "newton"}, "method", "valid methods: lbfgs, adam"),
    ({"start": {"a": 1.5}}, "model.params", "must lie in"),  # the case's own check
])
def test_fit_errors(options, key, text):
    case = divergent().with_changes({"time.t_end": 5.0})
    with pytest.raises(CaseError, match=text) as info:
        fhnpde.fit(case, recorded(case), ["a"], **options)
    assert info.value.key == key


# --- the command line ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fit_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit")
    case = divergent().with_changes({"time.t_end": 30.0, "output.path": str(root / "d.zarr")})
    (root / "case.yaml").write_text(case.to_yaml())
    assert main(["run", str(root / "case.yaml"), "--quiet", "--set", "solver.backend=numpy"]) == 0
    return root


def test_cli_fit_writes_the_fitted_case_table_and_plot(fit_files, capsys):
    out = fit_files / "out"
    code = main(["fit", str(fit_files / "case.yaml"), "--data", str(fit_files / "d.zarr"),
                 "--wrt", "model.params.a,model.params.eps", "--start", "model.params.a=0.15",
                 "--start", "eps=0.02", "--out", str(out)])
    assert code == 0
    fitted = fhnpde.load_case(out / "fitted.yaml")
    assert fitted.model.params["a"] == pytest.approx(0.1, rel=1e-3)
    assert fitted.model.params["eps"] == pytest.approx(0.01, rel=1e-3)
    rows = (out / "fit.csv").read_text().splitlines()
    assert rows[0] == "key,start,fitted,gradient"
    assert rows[1].startswith("model.params.a,0.15,")
    losses = np.loadtxt(out / "loss.csv", delimiter=",", skiprows=1)
    assert losses[-1, 1] < 1e-8 * losses[0, 1]
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert "model.params.eps" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "text"), [
    (["--wrt", "model.params.zz"], "model.params.zz: is not a key of the case"),
    (["--wrt", "time.dt"], "time.dt: is a number, but not one"),
    (["--wrt", "a", "--set", "solver.backend=numpy"], "solver.backend: gradients need"),
    (["--wrt", "a", "--set", "domain.nx=100"], "--data: is on another grid"),
    (["--wrt", "a", "--set", "time.save_every=0.7"], "--data: time 1 is not an output time"),
    (["--wrt", "a", "--start", "a=x"], "--start: expected KEY=NUMBER"),
    (["--wrt", "a", "--data", "/nonexistent/d.zarr"], "--data: "),
])
def test_cli_fit_bad_input_is_one_line_and_exit_2(fit_files, capsys, args, text):
    argv = ["fit", str(fit_files / "case.yaml"), "--data", str(fit_files / "d.zarr"),
            "--out", str(fit_files / "bad"), "--quiet", *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert text in err
    assert err.count("\n") == 1


def test_registering_fit_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, fhnpde, fhnpde.gradients, fhnpde.gradients.command, fhnpde.cli; "
            "fhnpde.cli.build_parser(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[1]).stdout.strip()
    assert out == "False"


def test_fit_trace_follows_the_iterations():
    case = divergent().with_changes({"time.t_end": 10.0})
    result = fhnpde.fit(case, recorded(case), ["a"], {"a": 0.12}, max_iter=5)
    assert len(result.trace) == result.iterations
    times = [t for t, _ in result.trace]
    assert times == sorted(times)
    assert result.trace[-1][1]["model.params.a"] == pytest.approx(result.values["model.params.a"])
