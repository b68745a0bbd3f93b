"""The batched ensemble trains each member exactly as a single training would."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from surrogates_helpers import small_config

from fhnpde.models import Kinetics
from surrogates.ensemble import (
    BatchedMLP,
    Problem,
    TrainSpec,
    member,
    plateau_change,
    schedule_factor,
    train_ensemble,
)
from surrogates.models import time_derivative
from surrogates.train import Objective, build_surrogate

WIDTHS = [8, 8]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks: one thread (as the study runs) is fast and deterministic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(tmp_path, kind):
    return small_config("problem_a", tmp_path, f"model.kind={kind}", "model.widths=[8, 8]",
                        "training.batch_size=null", "model.pinn.collocation=64")


def _points(seed, n=12):
    """Problem A-like points: (t, (v, w)) with t in [0, 25], one set per seed."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0.0, 25.0, n))
    y = np.stack([0.5 * np.exp(-t / 5) + 0.1 * np.sin(t), 0.1 * (1 - np.exp(-t / 3))], 1)
    return t, y


def _problem(cfg):
    return Problem(Kinetics.create(cfg.kinetics.name, cfg.kinetics.params),
                   float(cfg.data.fixed["I"]), (cfg.data.fixed["v0"], cfg.data.fixed["w0"]),
                   cfg.data.t_end, collocation=cfg.model.pinn.collocation)


def _single(cfg, t, y, seed, spec):
    """One member trained by the project's own Objective (train.py) and Adam."""
    data = {"x_train": t[:, None], "y_train": y, "x_val": t[:, None], "y_val": y,
            "attrs": {}}
    torch.manual_seed(seed)
    model = build_surrogate(cfg, data)
    gen = torch.Generator().manual_seed(spec.seed)  # the ensemble's collocation stream
    objective = Objective(cfg, model, data, gen)
    opt = torch.optim.Adam(model.net.parameters(), lr=spec.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, schedule_factor(spec.iterations, spec.warm_fraction, spec.final_factor))
    for _ in range(spec.iterations):
        opt.zero_grad(set_to_none=True)
        objective.train_loss().backward()
        opt.step()
        sched.step()
    model.eval()
    return model


@pytest.mark.parametrize("kind", ["ddnn", "pinn"])
def test_members_match_single_trainings(tmp_path, kind):
    cfg = _config(tmp_path, kind)
    seeds = [3, 4, 5]
    sets = [_points(s) for s in seeds]
    spec = TrainSpec(iterations=40, lr=3e-3, warm_fraction=0.5, final_factor=0.1,
                     record_every=20, seed=11)
    ens = BatchedMLP([member(kind, WIDTHS, 25.0, y, s)
                      for s, (_, y) in zip(seeds, sets, strict=True)])
    hist = train_ensemble(ens, kind, np.stack([t for t, _ in sets]),
                          np.stack([y for _, y in sets]), _problem(cfg), spec)
    grid = torch.linspace(0.0, 25.0, 101)
    batched = ens.to_surrogates(kind)
    moved = 0.0
    for j, (s, (t, y)) in enumerate(zip(seeds, sets, strict=True)):
        ref = _single(cfg, t, y, s, spec)
        with torch.no_grad():
            want = ref(grid[:, None])
            got = batched[j](grid[:, None])
            start = member(kind, WIDTHS, 25.0, y, s)(grid[:, None])
        moved = max(moved, float((want - start).abs().max()))
        assert torch.allclose(got, want, atol=2e-5), float((got - want).abs().max())
    assert moved > 1e-2  # the trainings did change the networks
    assert hist.iterations == [0, 20, 40]
    assert hist.array("total").shape == (3, 3)
    assert np.all(hist.array("total")[-1] < hist.array("total")[0])


def test_initial_members_are_the_project_surrogates(tmp_path):
    cfg = _config(tmp_path, "pinn")
    t, y = _points(0)
    torch.manual_seed(7)
    ref = build_surrogate(cfg, {"y_train": y})
    mine = member("pinn", WIDTHS, 25.0, y, 7)
    for (k, a), (k2, b) in zip(ref.state_dict().items(), mine.state_dict().items(),
                               strict=True):
        assert k == k2
        assert torch.equal(a, b), k


def test_forward_time_derivative_is_autograd():
    members = [member("pinn", [16, 16, 16], 25.0, _points(s)[1], s) for s in range(2)]
    ens = BatchedMLP(members)
    t = torch.linspace(0.0, 25.0, 37)
    u, du = ens.with_time_derivative(t)
    assert torch.allclose(u, ens(t))
    for j, m in enumerate(members):
        u_ref, du_ref = time_derivative(m, t[:, None])
        assert torch.allclose(u[j], u_ref, atol=1e-6)
        assert torch.allclose(du[j], du_ref, atol=1e-5, rtol=1e-4)
    # per-member times (E, n) give each member its own points
    tt = torch.stack([t, t + 1.0])
    assert torch.allclose(ens(tt)[1], members[1]((t + 1.0)[:, None]), atol=1e-6)


def test_ensemble_refuses_mixed_members():
    a = member("ddnn", [8, 8], 25.0, _points(0)[1], 0)
    b = member("ddnn", [8, 4], 25.0, _points(0)[1], 1)
    with pytest.raises(ValueError, match="widths"):
        BatchedMLP([a, b])
    with pytest.raises(ValueError, match="at least one"):
        BatchedMLP([])


def test_schedule_holds_then_decays_to_the_final_factor():
    f = schedule_factor(100, 0.4, 1e-2)
    assert f(0) == 1.0
    assert f(40) == 1.0
    assert f(41) < 1.0
    assert f(100) == pytest.approx(1e-2)
    assert f(70) == pytest.approx(1e-1)
    assert all(f(i + 1) <= f(i) for i in range(100))


def test_plateau_change_tells_a_flat_curve_from_a_falling_one():
    from surrogates.ensemble import History

    h = History()
    for i in range(11):
        h.iterations.append(10 * i)
        h.total.append(np.array([1.0 / (1 + i), 0.5 if i < 9 else 0.5 - 1e-4]))
    change = plateau_change(h, fraction=0.2)
    assert change[0] == pytest.approx(1 - (1 / 11) / (1 / 9))
    assert change[1] == pytest.approx(2e-4)
    # up to iteration 50 (records 0..5): the last fifth is record 5 alone
    early = plateau_change(h, fraction=0.2, until=50)
    assert early[0] == pytest.approx(1 - (1 / 6) / (1 / 5))
    assert early[1] == 0.0


def _linear_members(seeds):
    """Members without hidden layers: the data loss is linear least squares in the weights."""
    return [member("ddnn", [], 25.0, _points(s)[1], s) for s in seeds]


def test_finishing_reaches_the_least_squares_minimum():
    from surrogates.ensemble import FinishSpec, finish_ensemble

    seeds = [0, 1]
    sets = [_points(s) for s in seeds]
    ens = BatchedMLP(_linear_members(seeds))
    x = np.stack([t for t, _ in sets])
    y = np.stack([y for _, y in sets])
    spec = FinishSpec(max_iterations=200, window=20, chunk=5, tol=1e-9, grad_tol=1e-12)
    fin = finish_ensemble(ens, "ddnn", x, y, _problem_plain(), spec)
    assert ens.weights[0].dtype == torch.float64
    for e, (t, yy) in enumerate(sets):
        tn = (t - ens.in_offset[e, 0].item()) / ens.in_scale[e, 0].item()
        target = (yy - ens.out_offset[e].numpy()) / ens.out_scale[e].numpy()
        coef, *_ = np.linalg.lstsq(np.stack([tn, np.ones_like(tn)], 1), target, rcond=None)
        got = np.stack([ens.weights[0][e, :, 0].detach().numpy(),
                        ens.biases[0][e].detach().numpy()])
        np.testing.assert_allclose(got, coef, atol=1e-7)
        assert fin[e].converged
        assert fin[e].iterations[-1] < 200
        assert fin[e].total[-1] <= fin[e].total[0]


def _problem_plain():
    return Problem(Kinetics.create("nagumo", {}), 0.1, (0.5, 0.0), 25.0, collocation=32)


def test_finishing_stops_on_the_budget_or_the_plateau():
    from surrogates.ensemble import FinishSpec, finish_ensemble

    t, y = _points(2)
    ens = BatchedMLP([member("ddnn", WIDTHS, 25.0, y, 2)])
    short = finish_ensemble(ens, "ddnn", t[None], y[None], _problem_plain(),
                            FinishSpec(max_iterations=10, window=5, chunk=5, tol=0.0))[0]
    assert short.reason == "budget"
    assert not short.converged
    assert short.iterations == [0, 5, 10]
    assert short.total[-1] < 0.5 * short.total[0]
    # continuing from there: stops on the plateau test, its last window fell by < tol
    rest = finish_ensemble(ens, "ddnn", t[None], y[None], _problem_plain(),
                           FinishSpec(max_iterations=3000, window=100, chunk=25,
                                      tol=1e-2))[0]
    assert rest.converged, rest.reason
    last = rest.iterations[-1]
    assert last < 3000
    before = rest.total[rest.iterations.index(last - 100)]
    assert rest.total[-1] > 0.99 * before
    assert rest.total[-1] < 1e-3 * short.total[0]


@pytest.mark.parametrize("kind", ["ddnn", "pinn"])
def test_finishing_treats_each_member_alone(tmp_path, kind):
    """A member finished inside an ensemble ends where it ends finished on its own."""
    from surrogates.ensemble import FinishSpec, finish_ensemble

    cfg = _config(tmp_path, kind)
    seeds = [3, 4]
    sets = [_points(s) for s in seeds]
    x, y = np.stack([t for t, _ in sets]), np.stack([y for _, y in sets])
    spec = FinishSpec(max_iterations=30, window=10, chunk=10, tol=0.0, collocation=64)
    ens = BatchedMLP([member(kind, WIDTHS, 25.0, yy, s) for s, (_, yy) in zip(seeds, sets,
                                                                             strict=True)])
    fin = finish_ensemble(ens, kind, x, y, _problem(cfg), spec)
    alone = BatchedMLP([member(kind, WIDTHS, 25.0, sets[1][1], seeds[1])])
    fin1 = finish_ensemble(alone, kind, x[1:], y[1:], _problem(cfg), spec)
    assert fin[1].total == pytest.approx(fin1[0].total, rel=1e-12)
    for a, b in zip(ens.parameters(), alone.parameters(), strict=True):
        assert torch.allclose(a[1], b[0], atol=1e-12)
    assert not torch.allclose(ens.weights[0][0], ens.weights[0][1])


def test_fixed_collocation_has_one_time_per_stratum():
    from surrogates.ensemble import FinishSpec, fixed_collocation

    t = fixed_collocation(FinishSpec(collocation=50, seed=3), 25.0)
    assert t.dtype == torch.float64
    assert torch.equal(torch.floor(t / 0.5), torch.arange(50, dtype=torch.float64))
    assert torch.equal(t, fixed_collocation(FinishSpec(collocation=50, seed=3), 25.0))


def test_relative_drop_over_a_window():
    from surrogates.ensemble import relative_drop

    its = [0, 10, 20, 30, 40]
    assert relative_drop(its, [4.0, 2.0, 1.0, 1.0, 1.0], 20) == 0.0
    assert relative_drop(its, [4.0, 3.0, 2.0, 1.5, 1.0], 20) == pytest.approx(0.5)
    assert relative_drop(its, [4.0, 3.0, 2.0, 1.5, 1.0], 50) == float("inf")
