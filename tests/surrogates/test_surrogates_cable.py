"""The cable reaction surrogate: its pieces against independent references, and the shipped
model over whole runs against the exact reaction (surrogates.cable, surrogates.wave)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "itnn_cable"


# --- activation times and the agreement figures ----------------------------------------------


def test_activation_times_interpolate_the_first_upward_crossing():
    from surrogates.wave import activation_times

    t = np.arange(5.0)
    v = np.array([[0.0, 0.6, 0.0, 0.1],
                  [0.2, 0.7, 0.0, 0.1],
                  [0.8, 0.2, 0.0, 0.4],   # node 0 crosses 0.5 between t = 1 and 2
                  [0.1, 0.9, 0.0, 0.4],   # node 1 starts above: 0; node 2 never: inf
                  [0.9, 0.9, 0.0, 0.5]])  # node 3 reaches exactly 0.5 at t = 4
    a = activation_times(t, v)
    np.testing.assert_allclose(a[[0, 1, 3]], [1.0 + 0.3 / 0.6, 0.0, 4.0], rtol=0, atol=1e-15)
    assert np.isinf(a[2])


def test_wave_agreement_sees_a_late_node_and_a_missed_one():
    from surrogates.wave import wave_agreement

    t = np.arange(0.0, 11.0)
    x = np.arange(4.0)
    ref = (t[:, None] >= 2.0 * x[None, :] + 1.0).astype(float)  # front at t = 2x + 1
    late = (t[:, None] >= 2.0 * x[None, :] + 1.0 + (x[None, :] == 2)).astype(float)
    a = wave_agreement(t, late, ref)
    # node 2: exact crossing at t = 4.5 (interpolated), late one at 5.5
    assert a.missed_nodes == 0
    assert a.activation_abs == pytest.approx(1.0)
    assert a.activation_rel == pytest.approx(1.0 / 4.5)
    assert not a.ok()
    missed = ref.copy()
    missed[:, 3] = 0.0
    b = wave_agreement(t, missed, ref)
    assert b.missed_nodes == 1
    assert not b.reaches_ends
    assert not b.ok()
    assert wave_agreement(t, ref, ref).ok()


# --- the split step in torch -------------------------------------------------------------------


def _neumann_cn_half_step(nx: int, dx: float, d: float, tau: float) -> np.ndarray:
    """(I - s L)^{-1} (I + s L), s = tau D / 2, mirror-node Neumann L, by scipy (dense)."""
    lap = (np.diag(np.full(nx - 1, 1.0), -1) + np.diag(np.full(nx - 1, 1.0), 1)
           - 2.0 * np.eye(nx))
    lap[0, 1] = lap[-1, -2] = 2.0
    lap /= dx**2
    s = 0.5 * tau * d
    return scipy.linalg.solve(np.eye(nx) - s * lap, np.eye(nx) + s * lap)


def test_half_step_matrix_is_the_crank_nicolson_half_step():
    from fhnpde.driver import build_solver
    from fhnpde.loading import load_case
    from surrogates.cable import exact_case, half_step_matrix

    case = exact_case(load_case(ROOT / "cases/divergent_neural.yaml",
                                ["domain.nx=81", "domain.length=20.0"]), 1)
    _, solver = build_solver(case.with_changes({"solver.backend": "numpy"}))
    got = half_step_matrix(solver, 1.0)
    want = _neumann_cn_half_step(81, 0.25, 1.0, 0.5)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)


class _ExactTorch(torch.nn.Module):
    """fhnpde's exact reaction (numba) as a torch module of (v, w, I, a) rows (no grad)."""

    def __init__(self, substeps: int):
        super().__init__()
        self.substeps = substeps

    def forward(self, x):
        from fhnpde.models import Kinetics, check_params
        from fhnpde.reaction import ExactReaction

        x = x.detach().numpy().astype(np.float64)
        params = {**check_params("nagumo", {}), "a": np.ascontiguousarray(x[:, 3])}
        r = ExactReaction(Kinetics("nagumo", params), "rk4", self.substeps, "numba")
        v, w = r(x[:, 0].copy(), x[:, 1].copy(), x[:, 2].copy(), 1.0)
        return torch.as_tensor(np.stack([v, w], 1))


def test_split_rollout_with_the_exact_reaction_replays_the_recorded_run():
    """The rollout loss's Strang step (dense half-step, batched reaction) is the solver's."""
    from fhnpde.loading import load_case
    from surrogates.cable import record_run, split_rollout

    case = load_case(ROOT / "cases/impulse_train_neural.yaml",
                     ["time.t_end=30", "domain.nx=101", "domain.length=25.0",
                      "model.params.a=0.08"])
    run = record_run(case, 4)
    assert run["states"].shape == (31, 101, 2)
    assert run["inputs"].shape == (30, 101, 3)
    np.testing.assert_array_equal(run["inputs"][:, :, 2] > 0, np.broadcast_to(
        np.arange(101) * 0.25 <= 2.0 + 0.125, (30, 101)))  # the stimulus' cells, every step
    start = torch.as_tensor(run["states"][None, 5])
    cur = torch.as_tensor(run["inputs"][None, 5:25, :, 2])
    pred = split_rollout(_ExactTorch(4), start, cur, torch.tensor([[0.08]], dtype=torch.float64),
                         torch.as_tensor(run["half_step"]), 20)[0].numpy()
    np.testing.assert_allclose(pred, run["states"][6:26], rtol=0, atol=1e-12)


# --- structure ---------------------------------------------------------------------------------


def test_rest_factored_model_keeps_rest_exactly_for_any_weights_and_a():
    from surrogates.models import Surrogate

    torch.manual_seed(3)
    m = Surrogate("itnn", ["v", "w", "I", "a"], [16, 16], ["tanh", "tanh"],
                  structure="rest-factored")
    m.set_normalisation([0.5, 0.4, 0.5, 0.09], [0.9, 0.5, 0.5, 0.04], [0.3, 0.2], [0.1, 0.01])
    a = torch.linspace(0.05, 0.13, 9)
    rest = torch.stack([torch.zeros(9), torch.zeros(9), torch.zeros(9), a], 1)
    assert torch.equal(m(rest), torch.zeros(9, 2))
    x = rest.clone()
    x[:, 0] = 1e-3
    assert (m(x) - x[:, :2]).abs().max() > 0  # away from rest the increment is the network's
    assert m.out_offset.abs().max() > 0  # ignored by the structure, whatever it holds


def test_shipped_model_in_onnxruntime_keeps_rest_exactly():
    """The exported graph (the runtime a case uses) maps rest to rest bit for bit, every a."""
    from surrogates.runtime import model_files, open_runtime

    files = model_files(str(MODEL), "onnxruntime")
    runtime = open_runtime(files, "onnxruntime")
    x = np.zeros((9, 4), dtype=np.float32)
    x[:, 3] = np.linspace(0.05, 0.13, 9)
    np.testing.assert_array_equal(runtime(x), np.zeros((9, 2), dtype=np.float32))


def test_threshold_of_the_shipped_model_is_the_exact_one():
    """Excitability of the 0-D map: the smallest v0 (w0 = 0, I = 0) from which an
    excursion above 0.5 follows within 60 steps, by bisection, model against exact."""
    from surrogates.models import load_model

    model, meta = load_model(MODEL)
    exact = _ExactTorch(100)

    def fires(step, v0, a):
        x = torch.tensor([[v0, 0.0, 0.0, a]], dtype=torch.float32)
        for _ in range(60):
            y = step(x.double() if step is exact else x)
            if float(y[0, 0]) > 0.5:
                return True
            x = torch.tensor([[float(y[0, 0]), float(y[0, 1]), 0.0, a]], dtype=torch.float32)
        return False

    with torch.no_grad():
        for a in (0.06, 0.1, 0.12):
            found = []
            for step in (model, exact):
                lo, hi = 0.0, 0.5
                for _ in range(20):
                    mid = 0.5 * (lo + hi)
                    lo, hi = (lo, mid) if fires(step, mid, a) else (mid, hi)
                found.append(hi)
            assert abs(found[0] - found[1]) < 2e-3, (a, found)


# --- the shipped model over whole runs -----------------------------------------------------------

WHOLE_RUNS = [
    ("cases/divergent_neural.yaml", {}),
    ("cases/divergent_neural.yaml", {"model.params.a": 0.08}),
    ("cases/impulse_train_neural.yaml", {}),
]


@pytest.mark.parametrize(("case", "changes"), WHOLE_RUNS, ids=["divergent", "a=0.08", "impulse"])
def test_shipped_model_keeps_the_wave_over_the_whole_run(case, changes, monkeypatch):
    """The issue's acceptance: all nodes activated, activation within 1 %, peak within 3 %."""
    from surrogates.wave import check_wave

    monkeypatch.chdir(ROOT)
    agreement, run, _ = check_wave(case, changes=changes)
    assert run.attrs["status"] == "complete"
    assert agreement.missed_nodes == 0
    assert agreement.extra_nodes == 0
    assert agreement.reaches_ends
    assert agreement.activation_rel <= 0.01, agreement
    assert agreement.peak_rel <= 0.03, agreement


def test_wave_command_reports_and_exit_status(tmp_path):
    out = tmp_path / "w.json"
    proc = subprocess.run([sys.executable, "-m", "surrogates", "wave",
                           "cases/impulse_train_neural.yaml", "--set", "time.t_end=120",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "keeps the wave" in proc.stdout
    figures = json.loads(out.read_text())
    assert figures["missed_nodes"] == 0
    assert figures["activation_rel"] <= 0.01
    bad = subprocess.run([sys.executable, "-m", "surrogates", "wave",
                          "cases/divergent_neural.yaml", "--set", "model.params.a=0.2"],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1
    assert "model.params.a" in bad.stderr
    assert "[0.05, 0.13]" in bad.stderr
    exact = subprocess.run([sys.executable, "-m", "surrogates", "wave", "cases/divergent.yaml"],
                           cwd=ROOT, capture_output=True, text=True)
    assert exact.returncode == 2
    assert exact.stderr.count("\n") == 1
    assert "cases/divergent.yaml: reaction.kind: is 'exact'" in exact.stderr


# --- reproducibility ---------------------------------------------------------------------------

_TRAIN = """
import sys, torch
sys.path.insert(0, {tests!r})
from surrogates_helpers import small_config
from surrogates.data import generate, load_data
from surrogates.train import train
cfg = small_config("itnn", {tmp!r}, "data.train.size=800", "data.validation.size=200",
                   "data.rollouts.size=4", "data.rollouts.steps=4", "training.iterations=40",
                   "training.validate_every=20", "model.itnn.rollout_weight=0.5")
generate(cfg, overwrite=True)
res = train(cfg, out={out!r}, data=load_data(cfg.data_path), overwrite=True)
assert not torch.are_deterministic_algorithms_enabled()  # restored after training
"""


def test_training_gives_the_same_weights_whatever_the_thread_environment(tmp_path):
    """training.threads fixes torch's threads; OMP/MKL settings of the machine do not leak."""
    states = []
    for i, env_threads in enumerate(("1", "2")):
        out = tmp_path / f"m{i}"
        code = _TRAIN.format(tests=str(Path(__file__).parent), tmp=str(tmp_path / f"d{i}"),
                             out=str(out))
        env = {"OMP_NUM_THREADS": env_threads, "MKL_NUM_THREADS": env_threads,
               "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        states.append(torch.load(out / "model.pt", weights_only=True))
    assert states[0].keys() == states[1].keys()
    for name in states[0]:
        assert torch.equal(states[0][name], states[1][name]), name


# --- the config's cable section ----------------------------------------------------------------


def _cable_config(**data):
    import yaml

    from surrogates import CONFIGS
    from surrogates.config import parse_config

    raw = yaml.safe_load((CONFIGS / "itnn_cable.yaml").read_text())
    raw["data"].update(data)
    return parse_config(raw, "itnn_cable.yaml")


@pytest.mark.parametrize(("change", "key"), [
    ({"cases": []}, "data.cases"),
    ({"validation_cases": None}, "data.validation_cases"),
    ({"box": {"v": [-0.4, 1.45], "w": [0.0, 1.0], "I": [0, 1], "zeta": [0, 1]}}, "data.box.zeta"),
])
def test_cable_config_errors_name_the_key(change, key):
    from fhnpde.errors import CaseError

    with pytest.raises(CaseError) as err:
        _cable_config(**change)
    assert key in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("spec", "says"), [
    ({"case": "cases/divergent.yaml"}, "split solver"),
    ({"case": "cases/divergent_neural.yaml", "set": {"model.params.a": 0.2}}, "outside data.box.a"),
    ({"case": "cases/divergent_neural.yaml", "set": {"model.params.eps": 0.02}}, "eps = 0.02"),
    ({"case": "cases/divergent_neural.yaml", "set": {"time.dt": 0.5}}, "data.dt_r"),
])
def test_cable_cases_that_do_not_fit_are_refused(spec, says, monkeypatch):
    from fhnpde.errors import CaseError
    from surrogates.data import cable_case

    monkeypatch.chdir(ROOT)
    cfg = _cable_config()
    from surrogates.config import CableCaseSpec

    with pytest.raises(CaseError) as err:
        cable_case(cfg, CableCaseSpec(**spec), "data.cases[0]")
    assert says in str(err.value)
    assert "data.cases[0]" in str(err.value)
