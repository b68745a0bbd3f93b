"""Models and training: PINN residual, short trainings against stated thresholds,
reproducibility, the saved model directory, vector fields and diagnostics."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the surrogates extra (torch) is not installed")

from fhnpde.models import Kinetics  # noqa: E402
from surrogates.diagnostics import (  # noqa: E402
    cell_coverage,
    cosine_similarity,
    exact_field,
    field_scores,
    model_field,
    phase_portrait,
)
from surrogates.models import load_model, physics_residual, predict  # noqa: E402
from surrogates.train import train  # noqa: E402

# --- PINN physics residual -----------------------------------------------------------------


class HermiteInterpolant:
    """Piecewise cubic Hermite interpolant of (v, w)(t) with exact nodal slopes (torch)."""

    def __init__(self, t, y, dy):
        self.t = torch.as_tensor(t, dtype=torch.float64)
        self.y = torch.as_tensor(y, dtype=torch.float64)
        self.dy = torch.as_tensor(dy, dtype=torch.float64)
        self.h = float(t[1] - t[0])

    def __call__(self, x):
        tq = x[:, 0]
        k = torch.clamp((tq.detach() / self.h).long(), 0, len(self.t) - 2)
        s = ((tq - self.t[k]) / self.h).unsqueeze(1)
        h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
        h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
        return (h00 * self.y[k] + h10 * self.h * self.dy[k]
                + h01 * self.y[k + 1] + h11 * self.h * self.dy[k + 1])


def _exact_interpolant(kin, y0, I, t_end, h):
    from scipy.integrate import solve_ivp

    t = np.arange(0.0, t_end + h / 2, h)
    sol = solve_ivp(lambda _, y: list(kin.reaction(y[0], y[1], I)), (0, t[-1]), y0,
                    method="DOP853", rtol=1e-12, atol=1e-14, t_eval=t)
    y = sol.y.T
    dy = np.stack(kin.reaction(y[:, 0], y[:, 1], I), 1)
    return HermiteInterpolant(t, y, dy)


def test_pinn_residual_vanishes_on_the_exact_solution_only():
    kin = Kinetics.create("nagumo", {"k": 10.0, "a": 0.4, "eps": 0.04, "gamma": 4.0})
    exact = _exact_interpolant(kin, [0.5, 0.0], 0.1, 25.0, 0.005)
    x = torch.linspace(0.0, 24.99, 997, dtype=torch.float64).unsqueeze(1)
    r_exact = physics_residual(exact, x, kin, ["t"], {"I": 0.1}).detach().abs()
    # the interpolant's derivative is O(h^3) off the ODE's: |r| << the field's size (~1)
    assert float(r_exact.max()) < 2e-4
    # the same solution with another current (I = 0.12) is not a solution at I = 0.1
    wrong = _exact_interpolant(kin, [0.5, 0.0], 0.12, 25.0, 0.005)
    r_wrong = physics_residual(wrong, x, kin, ["t"], {"I": 0.1}).detach().abs()
    assert float(r_wrong[:, 0].mean()) > 0.1
    assert float(r_wrong.max()) > 1e3 * float(r_exact.max())


# --- short trainings -----------------------------------------------------------------------


def test_ddnn_problem_a_short_training(problem_a_data, tmp_path):
    cfg, data = problem_a_data
    cfg = cfg.model_copy(deep=True)
    cfg.training.iterations = 600
    cfg.training.validate_every = 50
    cfg.training.batch_size = None
    cfg.training.lr = 3e-3
    res = train(cfg, out=tmp_path / "ddnn", data=data)
    # the trajectory varies over ~1 in v; a trivial model (the mean) has MAE ~0.3
    baseline = np.abs(data["y_val"] - data["y_train"].mean(0)).mean()
    assert baseline > 0.1
    assert res.metrics["mae"] < 0.02, res.metrics
    assert res.metrics["mae"] < baseline / 10


def test_pinn_problem_a_short_training(problem_a_data, tmp_path):
    cfg, data = problem_a_data
    cfg = cfg.model_copy(deep=True)
    cfg.model.kind = "pinn"
    cfg.model.pinn.collocation = 256
    cfg.model.pinn.physics_weight = 0.1
    cfg.training.iterations = 300
    cfg.training.validate_every = 50
    cfg.training.batch_size = None
    cfg.training.lr = 3e-3
    res = train(cfg, out=tmp_path / "pinn", data=data)
    assert res.metrics["mae"] < 0.05, res.metrics
    model, _ = load_model(tmp_path / "pinn")
    kin = Kinetics.create("nagumo", cfg.kinetics.params)
    x = torch.linspace(0.0, 25.0, 200).unsqueeze(1)
    r = physics_residual(model, x, kin, ["t"], {"I": 0.1}).detach().abs().mean()
    assert float(r) < 0.5


def test_itnn_beats_identity(itnn_data, tmp_path):
    cfg, data = itnn_data
    cfg = cfg.model_copy(deep=True)
    cfg.model.widths = [32, 32]
    cfg.training.iterations = 1500
    cfg.training.batch_size = 512
    cfg.training.validate_every = 100
    cfg.training.lr = 3e-3
    res = train(cfg, out=tmp_path / "itnn", data=data)
    identity = np.abs(data["x_val"][:, :2] - data["y_val"]).mean()
    assert res.metrics["mae"] < identity / 10, (res.metrics["mae"], identity)
    assert "rollout_mae_v" in res.metrics


def test_neural_ode_reduces_trajectory_loss(node_data, tmp_path):
    cfg, data = node_data
    cfg = cfg.model_copy(deep=True)
    cfg.model.widths = [32, 32]
    cfg.model.neural_ode.window = 5
    cfg.training.iterations = 200
    cfg.training.validate_every = 20
    cfg.training.lr = 1e-2
    res = train(cfg, out=tmp_path / "node", data=data)
    assert res.history[0]["iteration"] == 0  # the untrained model's loss
    first, best = res.history[0]["val_loss"], min(h["val_loss"] for h in res.history)
    # measured: 370x lower (training seeds 1-3: 180-440x)
    assert best < first / 50, (first, best)


def test_training_is_reproducible(problem_a_data, tmp_path):
    cfg, data = problem_a_data
    cfg = cfg.model_copy(deep=True)
    cfg.model.widths = [16, 16]
    cfg.training.iterations = 60
    cfg.training.validate_every = 20
    cfg.training.batch_size = 32
    weights = []
    for run in ("a", "b"):
        train(cfg, out=tmp_path / run, data=data)
        weights.append(torch.load(tmp_path / run / "model.pt", weights_only=True))
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    cfg.training.seed = 1
    train(cfg, out=tmp_path / "c", data=data)
    other = torch.load(tmp_path / "c" / "model.pt", weights_only=True)
    assert not torch.equal(other["net.0.weight"], weights[0]["net.0.weight"])


def test_saved_directory_has_what_export_needs(itnn_data, tmp_path):
    cfg, data = itnn_data
    cfg = cfg.model_copy(deep=True)
    cfg.model.widths = [8, 8]
    cfg.training.iterations = 20
    cfg.training.validate_every = 10
    res = train(cfg, out=tmp_path / "m", data=data)
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    for key in ("kind", "inputs", "outputs", "widths", "activations", "normalisation",
                "kinetics", "dt_r", "state_box", "validation", "training", "parameters"):
        assert key in meta, key
    assert meta["dt_r"] == 1.0
    assert meta["kinetics"]["name"] == "nagumo"
    assert meta["kinetics"]["params"]["k"] == 10.0
    assert meta["state_box"]["v"] == [-0.15, 1.15]
    assert (tmp_path / "m" / "config.yaml").exists()
    assert (tmp_path / "m" / "history.csv").exists()
    model, _ = load_model(tmp_path / "m")
    again = predict(model, data["x_val"])
    assert np.abs(again - data["y_val"]).mean() == pytest.approx(res.metrics["mae"], rel=1e-5)
    from fhnpde.case import CaseError

    with pytest.raises(CaseError, match="already holds a trained model"):
        train(cfg, out=tmp_path / "m", data=data)


# --- vector fields --------------------------------------------------------------------------


class _ExactField(torch.nn.Module):
    def __init__(self, kin):
        super().__init__()
        self.kin = kin

    def forward(self, x):
        fv, fw = self.kin.reaction(x[:, 0], x[:, 1], x[:, 2])
        return torch.stack([fv, fw], 1)


def test_exact_field_scores_cosine_one():
    kin = Kinetics.create("fitzhugh", {})
    V, W = np.meshgrid(np.linspace(-2, 2, 21), np.linspace(-1, 1, 21))
    for current in (0.2, 0.5):
        exact = exact_field(kin, V.ravel(), W.ravel(), current)
        as_model = model_field(_ExactField(kin), {"kind": "neural-ode"}, V, W, current)
        assert cosine_similarity(as_model, exact) == pytest.approx(1.0, abs=1e-6)
        assert cosine_similarity(-exact, exact) == pytest.approx(-1.0, abs=1e-12)
        rotated = np.stack([-exact[:, 1], exact[:, 0]], 1)
        assert cosine_similarity(rotated, exact) == pytest.approx(0.0, abs=1e-12)


def test_field_scores_against_closed_forms():
    kin = Kinetics.create("fitzhugh", {})
    V, W = np.meshgrid(np.linspace(-2, 2, 21), np.linspace(-1, 1, 21))
    g = exact_field(kin, V.ravel(), W.ravel(), 0.5)
    # the right direction, 3 % too long everywhere: cosines 1, relative L2 0.03
    s = field_scores(1.03 * g, g)
    assert s["cosine_per_point"] == pytest.approx(1.0, abs=1e-12)
    assert s["cosine_flat"] == pytest.approx(1.0, abs=1e-12)
    assert s["rel_l2"] == pytest.approx(0.03, rel=1e-9)
    # rotated by theta everywhere: both cosines cos(theta), relative L2 2 sin(theta / 2)
    th = 0.3
    rot = np.stack([np.cos(th) * g[:, 0] - np.sin(th) * g[:, 1],
                    np.sin(th) * g[:, 0] + np.cos(th) * g[:, 1]], 1)
    s = field_scores(rot, g)
    assert s["cosine_per_point"] == pytest.approx(np.cos(th), abs=1e-12)
    assert s["cosine_flat"] == pytest.approx(np.cos(th), abs=1e-12)
    assert s["rel_l2"] == pytest.approx(2 * np.sin(th / 2), rel=1e-9)
    # dv/dt doubled: the two cosines differ, each from its own sum over the nodes
    gv, gw = g[:, 0], g[:, 1]
    per_point = np.mean([(2 * a * a + b * b) / (np.hypot(2 * a, b) * np.hypot(a, b))
                         for a, b in zip(gv, gw, strict=True)])
    sv, sw = float(np.sum(gv**2)), float(np.sum(gw**2))
    s = field_scores(np.stack([2 * gv, gw], 1), g)
    assert s["cosine_per_point"] == pytest.approx(per_point, rel=1e-12)
    assert s["cosine_flat"] == pytest.approx((2 * sv + sw) / np.sqrt((4 * sv + sw) * (sv + sw)),
                                             rel=1e-12)
    assert s["rel_l2"] == pytest.approx(np.sqrt(sv / (sv + sw)), rel=1e-12)
    assert abs(s["cosine_flat"] - s["cosine_per_point"]) > 1e-3


def test_cell_coverage_counts_cells_between_nodes():
    V, W = np.meshgrid(np.linspace(0, 4, 5), np.linspace(0, 2, 3))  # 4 x 2 = 8 cells
    assert cell_coverage(np.empty((0, 2)), V, W) == 0.0
    # two states in one cell, one in another, one outside the grid: 2 of 8 cells
    states = np.array([[0.5, 0.5], [0.6, 0.4], [3.5, 1.5], [5.0, 1.0]])
    assert cell_coverage(states, V, W) == pytest.approx(2 / 8)
    centres = np.array([[i + 0.5, j + 0.5] for i in range(4) for j in range(2)])
    assert cell_coverage(centres, V, W) == 1.0


def test_trajectory_model_field_is_du_dt_at_t0():
    # u(t, v0, w0, I) = (v0, w0) + sin(t) F(v0, w0, I): du/dt at t = 0 is the field F
    kin = Kinetics.create("fitzhugh", {})
    field = _ExactField(kin)

    class Trajectory(torch.nn.Module):
        def forward(self, x):
            t, v0, w0, current = x[:, 0:1], x[:, 1], x[:, 2], x[:, 3]
            f = field(torch.stack([v0, w0, current], 1))
            return torch.stack([v0, w0], 1) + torch.sin(t) * f

    V, W = np.meshgrid(np.linspace(-2, 2, 9), np.linspace(-1, 1, 5))
    meta = {"kind": "pinn", "inputs": ["t", "v0", "w0", "I"]}
    got = model_field(Trajectory(), meta, V, W, 0.5)
    np.testing.assert_allclose(got, exact_field(kin, V.ravel(), W.ravel(), 0.5), atol=1e-5)


def test_phase_portrait_of_a_scaled_exact_field_on_both_grids():
    from surrogates import CONFIGS
    from surrogates.config import load_config

    cfg = load_config(CONFIGS / "neural_ode.yaml")
    kin = Kinetics.create("fitzhugh", cfg.kinetics.params)

    class Scaled(_ExactField):
        def forward(self, x):
            return 1.1 * super().forward(x)

    meta = {"kind": "neural-ode", "kinetics": {"name": "fitzhugh",
                                               "params": dict(cfg.kinetics.params)}}
    # one state inside the training grid, one outside it but inside the wider one
    states = np.array([[0.05, 0.05], [2.2, 1.2]])
    for widen, span_v, span_w in ((1.0, 2.0, 1.0), (1.25, 2.5, 1.25)):
        pp = phase_portrait(Scaled(kin), meta, cfg, widen=widen, states=states)
        V, W = pp["grid"]
        assert (V.min(), V.max(), W.min(), W.max()) == pytest.approx(
            (-span_v, span_v, -span_w, span_w))
        n = cfg.diagnostics.grid_points
        assert pp["coverage"] == pytest.approx((1 if widen == 1.0 else 2) / (n - 1) ** 2)
        for r in pp["regimes"].values():
            assert r["rel_l2"] == pytest.approx(0.1, rel=1e-5)
            assert r["cosine_flat"] == pytest.approx(1.0, abs=1e-6)
            assert r["cosine_per_point"] == pytest.approx(1.0, abs=1e-6)


def test_itnn_field_of_an_exact_euler_step():
    # an "ITNN" that takes one Euler step has the increment / dt_r equal to the field
    kin = Kinetics.create("nagumo", {"k": 10.0, "a": 0.4, "eps": 0.04, "gamma": 4.0})
    field = _ExactField(kin)

    class EulerStep(torch.nn.Module):
        def forward(self, x):
            return x[:, :2] + 0.5 * field(x)

    v, w = np.meshgrid(np.linspace(-0.1, 1.0, 11), np.linspace(0.0, 0.2, 11))
    got = model_field(EulerStep(), {"kind": "itnn", "dt_r": 0.5}, v, w, 0.1)
    np.testing.assert_allclose(got, exact_field(kin, v.ravel(), w.ravel(), 0.1), atol=1e-5)


def test_interrupted_training_resumes_from_its_checkpoint(problem_a_data, tmp_path, monkeypatch):
    from surrogates import train as train_module

    cfg, data = problem_a_data
    cfg = cfg.model_copy(deep=True)
    cfg.model.widths = [16, 16]
    cfg.training.iterations = 40
    cfg.training.validate_every = 10
    cfg.training.checkpoint_every = 20
    cfg.training.batch_size = 32
    train(cfg, out=tmp_path / "whole", data=data)

    original = train_module.Objective.validation_loss
    calls = {"n": 0}

    def interrupt_at_30(self):
        calls["n"] += 1
        if calls["n"] == 4:  # iterations 0, 10, 20, then 30: Ctrl-C
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(train_module.Objective, "validation_loss", interrupt_at_30)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out=tmp_path / "cut", data=data)
    assert (tmp_path / "cut" / "checkpoint.pt").exists()
    monkeypatch.setattr(train_module.Objective, "validation_loss", original)
    res = train(cfg, out=tmp_path / "cut", data=data)
    assert not (tmp_path / "cut" / "checkpoint.pt").exists()
    assert [h["iteration"] for h in res.history] == [0, 10, 20, 30, 40]
    a = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "model.pt", weights_only=True)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_evaluate_scores_the_field_of_an_itnn_on_both_grids(itnn_data, tmp_path):
    from surrogates.diagnostics import evaluate, summary

    cfg, data = itnn_data
    cfg = cfg.model_copy(deep=True)
    cfg.model.widths = [16]
    cfg.training.iterations = 20
    cfg.training.validate_every = 10
    train(cfg, out=tmp_path / "m", data=data)
    report = evaluate(tmp_path / "m", plots=False)
    pp = report["phase_portrait"]
    train_grid, wide = pp["training_region"], pp["wider"]
    assert train_grid["grid_v"] == pytest.approx([-0.15, 1.15])
    assert wide["grid_v"] == pytest.approx([-0.15 - 0.1625, 1.15 + 0.1625])
    assert wide["grid_w"] == pytest.approx([-0.025, 0.225])
    # 4,000 uniform states in the box that is the training grid: every one of its 400 cells;
    # the wider grid's cells are 1.25x as large and its box edges fall on cell edges, two
    # cells in from each side: 16 x 16 of its 20 x 20 cells lie in the box
    assert train_grid["cells_with_training_data"] == 1.0
    assert wide["cells_with_training_data"] == pytest.approx(16 * 16 / 400)
    for g in (train_grid, wide):
        for r in g["regimes"].values():
            assert -1.0 <= r["cosine_flat"] <= 1.0
            assert r["rel_l2"] >= np.sqrt(max(0.0, 1 - r["cosine_flat"] ** 2)) - 1e-9
    assert pp["cosine"]["low"] == train_grid["regimes"]["low"]["cosine_per_point"]
    assert "100% of cells hold training states" in summary(report)
