"""The neural reaction step in the split solver: it reproduces the exact-reaction run of the
divergent case, refuses cases it was not trained for (exit 2, one line), counts states that
leave its training box, and the shipped model is what its recorded config trains."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fhnpde.case import CaseError, load_case
from fhnpde.driver import build_solver, run_case
from fhnpde.plotting import level_crossings

pytest.importorskip("onnxruntime", reason="the shipped case runs the model in onnxruntime")

ROOT = Path(__file__).resolve().parents[2]
CASE = ROOT / "cases" / "divergent_neural.yaml"
SHIPPED = ROOT / "models" / "itnn_cable"
EXACT = "reaction={kind: exact, scheme: rk4, substeps: 4}"


@pytest.fixture(autouse=True)
def _from_repository_root(monkeypatch):
    """Model paths in cases are read from the current directory (the repository root)."""
    monkeypatch.chdir(ROOT)


def _run(tmp_path, name, *sets):
    case = load_case(CASE, ["time.t_end=100", "time.save_every=10", *sets])
    result = run_case(case, out=tmp_path / f"{name}.zarr")
    import xarray as xr

    return result, xr.open_zarr(result.path)


def test_neural_split_reproduces_exact_reaction_on_a_short_divergent_run(tmp_path):
    res_n, neural = _run(tmp_path, "neural")
    res_e, exact = _run(tmp_path, "exact", EXACT)
    assert res_n.status == res_e.status == "complete"
    x = neural.x.values
    for t in (50.0, 100.0):
        fn = level_crossings(neural.v.sel(time=t).values, x, 0.5)
        fe = level_crossings(exact.v.sel(time=t).values, x, 0.5)
        assert len(fn) == len(fe) == 4  # two pulses: a front and a back each
        # the outer crossings are the two fronts; measured 0.08 at t = 100
        assert abs(fn[0] - fe[0]) < 0.3, (t, fn, fe)
        assert abs(fn[-1] - fe[-1]) < 0.3, (t, fn, fe)
        np.testing.assert_allclose(fn[0], 200.0 - fn[-1], atol=1e-3)  # symmetric
    dv = neural.v.values - exact.v.values
    rmse = float(np.sqrt(np.mean(dv**2)))
    assert rmse < 0.01, rmse  # measured 0.0011 over t in [0, 100] (outputs every 10)
    stats = neural.attrs["stats"]
    stats = json.loads(stats) if isinstance(stats, str) else stats
    assert stats["neural_calls"] == 100
    assert stats["neural_nodes_outside_box"] == 0


def test_torch_runtime_gives_the_same_run(tmp_path):
    pytest.importorskip("torch", reason="the torch runtime needs torch")
    case = load_case(CASE, ["time.t_end=20", "time.save_every=20"])
    outs = {}
    for runtime in ("onnxruntime", "torch"):
        neural = f"reaction={{kind: neural, model: models/itnn_cable, runtime: {runtime}}}"
        c = load_case(CASE, ["time.t_end=20", "time.save_every=20", neural])
        _, solver = build_solver(c)
        outs[runtime] = solver.advance(solver.init(), 0.0, 1.0, 20)
    np.testing.assert_allclose(outs["torch"].v, outs["onnxruntime"].v, rtol=0, atol=1e-5)
    assert case.reaction.runtime == "onnxruntime"


def test_one_batched_call_per_step(monkeypatch):
    from surrogates.runtime import OnnxRuntime

    calls = []
    original = OnnxRuntime.__call__

    def spy(self, x):
        calls.append(x.shape)
        return original(self, x)

    monkeypatch.setattr(OnnxRuntime, "__call__", spy)
    _, solver = build_solver(load_case(CASE, ["time.t_end=5", "time.save_every=5"]))
    assert calls == [(1, 4), (7, 4)]  # the probe of the model file when it is opened
    calls.clear()
    solver.advance(solver.init(), 0.0, 1.0, 5)
    assert calls == [(801, 4)] * 5  # (v, w, I, a) of every node


@pytest.mark.parametrize(("sets", "key", "text"), [
    (["model.params.eps=0.02"], "model.params.eps", "trained for eps = 0.01, not 0.02"),
    (["model.kinetics=fitzhugh", "model.params={}"], "model.kinetics",
     "trained for nagumo kinetics, not fitzhugh"),
    (["time.dt=0.5"], "time.dt", "dt_r = 1, so the split step must be 1, not 0.5"),
    (["reaction.model=models/no_such_model"], "reaction.model", "no such model directory"),
    (["model.params.a=0.2"], "model.params.a", "trained for a in [0.05, 0.13], not 0.2"),
    (["reaction.runtime=tensorflow"], "reaction.runtime", "unknown runtime"),
])
def test_mismatches_exit_2_with_one_line(tmp_path, capsys, sets, key, text):
    from fhnpde.cli import main

    args = ["run", str(CASE), "--out", str(tmp_path / "s.zarr"), "--quiet"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"{key}: " in err[0], err[0]
    assert text in err[0], err[0]
    assert not (tmp_path / "s.zarr").exists()


def test_a_single_current_model_refuses_stimuli(tmp_path, capsys):
    """A model trained at one fixed current (model.json: fixed.I, no I range) cannot take a
    stimulus of another amplitude."""
    from fhnpde.cli import main

    model = tmp_path / "one_current"
    shutil.copytree(SHIPPED, model)
    meta = json.loads((model / "model.json").read_text())
    del meta["state_box"]["I"]
    meta["fixed"] = {"I": 0.0}
    (model / "model.json").write_text(json.dumps(meta))
    args = ["run", str(CASE), "--out", str(tmp_path / "s.zarr"), "--quiet",
            "--set", f"reaction.model={model}",
            "--set", "stimuli=[{kind: box, x: [0, 2], amplitude: 0.5}]"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "stimuli: " in err[0]
    assert "single current I = 0" in err[0], err[0]


def test_missing_model_through_python_m_fhnpde(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "fhnpde", "run", str(CASE), "--out", str(tmp_path / "s.zarr"),
         "--set", "reaction.model=models/missing"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "reaction.model: no such model directory" in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_leaving_the_box_warns_once_and_is_counted_in_the_store(tmp_path):
    """An initial bump 0.15 higher than the training box's top in v starts outside it."""
    from surrogates.reaction import OutOfBoxWarning

    top = json.loads((SHIPPED / "model.json").read_text())["state_box"]["v"][1]
    amplitude = f"initial.v.amplitude={top + 0.15}"
    with pytest.warns(OutOfBoxWarning, match="left the training box") as record:
        res, ds = _run(tmp_path, "outside", amplitude, "time.t_end=10")
    assert len([w for w in record if w.category is OutOfBoxWarning]) == 1
    stats = res.stats
    # the first reaction step sees v after a diffusion half-step: count its nodes above 1.05
    _, solver = build_solver(load_case(CASE, [amplitude]))
    first = int(np.count_nonzero(solver.diffusion(1.0)(solver.init().v) > top))
    assert first > 0
    assert stats["neural_nodes_outside_box"] >= first
    assert 1 <= stats["neural_steps_outside_box"] <= 10
    stored = ds.attrs["stats"]
    stored = json.loads(stored) if isinstance(stored, str) else stored
    assert stored["neural_nodes_outside_box"] == stats["neural_nodes_outside_box"]


def test_dt_mismatch_inside_the_step_is_a_case_error():
    from surrogates.reaction import NeuralReaction

    case = load_case(CASE)
    _, solver = build_solver(case)
    assert isinstance(solver.reaction, NeuralReaction)
    v = np.zeros(801)
    with pytest.raises(CaseError, match="not 0.5"):
        solver.reaction(v, v, v, 0.5)


def _recorded_config(tmp_path, *overrides):
    from surrogates.config import load_config

    return load_config(SHIPPED / "config.yaml", [
        f"data.path={tmp_path}/data.zarr", f"training.out={tmp_path}/model", *overrides])


def test_shipped_model_starts_from_its_recorded_data_and_seed(tmp_path):
    """The recorded config makes the same data (fingerprint) and, with seed 0, the same
    initial network: the validation loss before the first step equals the shipped one."""
    torch = pytest.importorskip("torch", reason="training needs torch")
    from surrogates.data import data_fingerprint, ensure_data, load_data
    from surrogates.train import Objective, build_surrogate

    meta = json.loads((SHIPPED / "model.json").read_text())
    cfg = _recorded_config(tmp_path)
    assert data_fingerprint(cfg) == meta["data_fingerprint"]
    assert cfg.training.seed == meta["training"]["seed"] == 0
    data = load_data(ensure_data(cfg))
    torch.manual_seed(cfg.training.seed)
    model = build_surrogate(cfg, data)
    objective = Objective(cfg, model, data, torch.Generator().manual_seed(cfg.training.seed))
    rows = (SHIPPED / "history.csv").read_text().splitlines()[1:]
    shipped = {int(r.split(",")[0]): float(r.split(",")[2]) for r in rows}
    assert objective.validation_loss() == pytest.approx(shipped[0], rel=1e-6)


@pytest.mark.slow
def test_shipped_model_retrains_bit_for_bit(tmp_path):
    """The whole recorded training (about 7 minutes on one thread) gives model.pt exactly."""
    torch = pytest.importorskip("torch", reason="training needs torch")
    from surrogates.train import train

    result = train(_recorded_config(tmp_path))
    got = torch.load(result.directory / "model.pt", weights_only=True)
    want = torch.load(SHIPPED / "model.pt", weights_only=True)
    assert got.keys() == want.keys()
    for name in want:
        assert torch.equal(got[name], want[name]), name
