"""Training data: fhnpde's solver against scipy's solve_ivp, sampling, the store, config errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from surrogates_helpers import small_config

from fhnpde.case import CaseError
from fhnpde.models import Kinetics
from surrogates import CONFIGS
from surrogates.config import load_config, parse_config


def _reference(kin: Kinetics, y0, I, t_eval):
    """solve_ivp (DOP853, rtol 1e-11) of the kinetics from y0 at constant I."""

    def rhs(t, y):
        return list(kin.reaction(y[0], y[1], I))

    sol = solve_ivp(rhs, (0.0, max(float(np.max(t_eval)), 1e-12)), y0, method="DOP853",
                    rtol=1e-11, atol=1e-13, t_eval=np.sort(np.unique(t_eval)))
    return {float(t): sol.y[:, i] for i, t in enumerate(sol.t)}


def _kin(cfg):
    return Kinetics.create(cfg.kinetics.name, cfg.kinetics.params)


def test_problem_a_matches_solve_ivp(problem_a_data):
    cfg, data = problem_a_data
    x, y = data["x_train"], data["y_train"]
    ref = _reference(_kin(cfg), [0.5, 0.0], 0.1, x[:, 0])
    exact = np.array([ref[float(t)] for t in x[:, 0]])
    # RK4 at dt = 0.01 on the stiff k = 10 kinetics: error ~ dt^4
    assert np.max(np.abs(y - exact)) < 1e-6
    assert x.shape == (200, 1)
    assert data["x_val"].shape == (400, 1)


def test_times_are_stratified_and_on_the_step_grid(problem_a_data):
    cfg, data = problem_a_data
    t = data["x_train"][:, 0]
    dt, n = cfg.data.solver.dt, len(t)
    np.testing.assert_allclose(t / dt, np.round(t / dt), atol=1e-9)
    strata = np.floor(t / cfg.data.t_end * n * (1 - 1e-12)).astype(int)
    # a latin hypercube puts one point in each of the n strata (up to the snapping to dt)
    assert len(np.unique(strata)) >= 0.95 * n
    assert not np.array_equal(np.sort(t), np.sort(data["x_val"][:200, 0]))


def test_problem_c_points_match_solve_ivp(tmp_path):
    from surrogates.config import SampleSpec
    from surrogates.data import trajectory_points

    cfg = small_config("problem_c", tmp_path, "data.t_end=5.0")
    x, y = trajectory_points(cfg, SampleSpec(size=12, seed=4))
    kin = _kin(cfg)
    box = cfg.data.box
    for j, key in enumerate(("v0", "w0", "I"), start=1):
        assert box[key][0] <= x[:, j].min()
        assert x[:, j].max() <= box[key][1]
    for xi, yi in zip(x, y, strict=True):
        ref = _reference(kin, [xi[1], xi[2]], xi[3], [xi[0]])[float(xi[0])]
        np.testing.assert_allclose(yi, ref, atol=1e-6)


def test_one_step_pairs_match_solve_ivp(itnn_data):
    cfg, data = itnn_data
    kin = _kin(cfg)
    x, y = data["x_train"][:15], data["y_train"][:15]
    for xi, yi in zip(x, y, strict=True):
        ref = _reference(kin, [xi[0], xi[1]], xi[2], [1.0])[1.0]
        np.testing.assert_allclose(yi, ref, atol=1e-6)
    box = cfg.data.box
    assert box["v"][0] <= x[:, 0].min()
    assert x[:, 0].max() <= box["v"][1]
    assert data["attrs"]["dt_r"] == 1.0


def test_state_box_covers_benchmark_rollouts(itnn_data):
    # trajectories from the benchmark's initial box stay inside the ITNN state box
    cfg, data = itnn_data
    assert data["attrs"]["rollout_coverage"] == 1.0
    seq = data["rollout_val"]
    assert seq.shape == (20, 11, 2)
    assert seq[..., 0].max() > 0.9  # they fire: the box must reach the upstroke


def test_neural_ode_trajectories_match_solve_ivp(node_data):
    cfg, data = node_data
    traj, cur = data["traj_train"], data["I_train"]
    assert traj.shape == (32, 21, 2)
    assert set(np.unique(cur)) <= set(cfg.data.currents)
    assert len(np.unique(cur)) > 2  # drawn from the eight currents of the config
    times = data["time"]
    np.testing.assert_allclose(np.diff(times), cfg.data.save_dt)
    kin = _kin(cfg)
    for k in range(3):
        ref = _reference(kin, traj[k, 0], cur[k], times)
        exact = np.array([ref[float(t)] for t in times])
        np.testing.assert_allclose(traj[k], exact, atol=1e-5)


def test_shipped_configs_parse():
    names = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
    assert {"problem_a", "problem_b", "problem_c", "itnn", "neural_ode"} <= set(names)
    for name in names:
        load_config(CONFIGS / f"{name}.yaml")


def test_config_errors_name_the_key():
    raw = {"name": "x", "data": {"kind": "trajectory", "inputs": ["t", "v0"],
                                 "fixed": {"w0": 0.0, "I": 0.1}, "box": {"v0": [0.0, 1.0]},
                                 "train": {"size": 10}, "validation": {"size": 10}},
           "model": {"kind": "ddnn", "widths": [8]}}
    parse_config(raw, "cfg.yaml")
    no_box = {**raw, "data": {**raw["data"], "box": {}}}
    with pytest.raises(CaseError, match=r"cfg.yaml: data\.box\.v0: is needed"):
        parse_config(no_box, "cfg.yaml")
    with pytest.raises(CaseError, match="trainig: unknown key"):
        parse_config({**raw, "trainig": {}}, "cfg.yaml")
    with pytest.raises(CaseError, match="model.kind: itnn learns from data.kind: one-step"):
        parse_config({**raw, "model": {"kind": "itnn", "widths": [8]}}, "cfg.yaml")
    with pytest.raises(CaseError, match="model.activations: unknown activation 'gelu'"):
        parse_config({**raw, "model": {"kind": "ddnn", "widths": [8], "activations": ["gelu"]}},
                     "cfg.yaml")


def test_data_from_a_different_config_is_refused(problem_a_data):
    from surrogates.data import ensure_data

    cfg, _ = problem_a_data
    other = cfg.model_copy(deep=True)
    other.data.train.size = 201
    with pytest.raises(CaseError, match="different data section"):
        ensure_data(other)
    assert ensure_data(cfg) == cfg.data_path
