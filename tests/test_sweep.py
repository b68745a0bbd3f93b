"""Sweeps on dask.distributed: members equal single runs, restarts, lost workers, failures.

The cluster tests share one LocalCluster of 2 single-threaded worker processes (the
``--scheduler`` path); the CLI test with ``--workers 2`` starts its own (the default path).
Members are small cables (40 long, 81 nodes) so the whole file runs in well under 2 minutes.
"""

from __future__ import annotations

import copy
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

distributed = pytest.importorskip("distributed", reason="needs dask.distributed (the "
                                  "'distributed' extra)")

from fhnpde import run as run_single  # noqa: E402
from fhnpde.case import CaseError, load_case  # noqa: E402
from fhnpde.cli import main  # noqa: E402
from fhnpde.store import open_run  # noqa: E402
from fhnpde.sweep import (  # noqa: E402
    front_summary,
    load_sweep,
    prepare_store,
    run_member,
    run_sweep,
)
from tests.helpers import SMALL_CABLE  # noqa: E402

# The small cable of tests/helpers.py, longer-lived: numpy, so the workers need not load
# numba's kernels (the numba path is the same formula).
BASE = {
    **copy.deepcopy(SMALL_CABLE),
    "name": "small",
    "initial": {"v": {"kind": "gaussian", "center": 20.0, "width": 2.5, "amplitude": 1.0},
                "w": 0.0},
    "time": {"t_end": 60.0, "dt": 0.1, "save_every": 1.0},
}
A_VALUES = [0.05, 0.1]
AMPLITUDES = [0.2, 0.4, 0.6, 1.0]
SUMMARY_KEYS = ("propagated", "pulses", "speed", "t_arrival", "t_reached", "steps")


def write_yaml(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_sweep(tmp: Path, **spec) -> Path:
    write_yaml(tmp / "base.yaml", BASE)
    data = {"name": "test_sweep", "base": "base.yaml", **spec}
    return write_yaml(tmp / "sweep.yaml", data)


@pytest.fixture(scope="module")
def scheduler():
    """A LocalCluster of 2 worker processes (1 thread each); yields (address, client,
    cluster), the cluster's scheduler living in this process."""
    import logging

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None,
                                       silence_logs=logging.ERROR,
                                       env={"NUMBA_NUM_THREADS": "1"})
    client = distributed.Client(cluster)
    yield cluster.scheduler_address, client, cluster
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory, scheduler):
    """The 8-member (a x amplitude) sweep with fields kept, run on the shared cluster."""
    tmp = tmp_path_factory.mktemp("grid")
    path = write_sweep(tmp, vary={"model.params.a": {"values": A_VALUES},
                                  "initial.v.amplitude": {"values": AMPLITUDES}},
                       keep="fields")
    result = run_sweep(path, out=tmp / "sweep.zarr", scheduler=scheduler[0])
    return path, tmp / "sweep.zarr", result


def test_sweep_members_equal_single_runs(grid_sweep, tmp_path):
    path, store, result = grid_sweep
    assert (result.members, result.ran, result.complete, result.failed, result.pending) == (
        8, 8, 8, 0, 0)
    ds = open_run(store)
    assert ds.attrs["status"] == "complete"
    assert list(ds.attrs["varied"]) == ["model.params.a", "initial.v.amplitude"]
    # member order: the grid product, first key slowest
    expect = [(a, amp) for a in A_VALUES for amp in AMPLITUDES]
    got = list(zip(ds["model.params.a"].values, ds["initial.v.amplitude"].values, strict=True))
    assert got == expect
    x = ds["x"].values
    for i, (a, amp) in enumerate(expect):
        case = load_case(path.parent / "base.yaml",
                         [f"model.params.a={a}", f"initial.v.amplitude={amp}"])
        ref = run_single(case, out=tmp_path / f"ref{i}.zarr")
        assert ref.status == "complete"
        rds = open_run(ref.path)
        np.testing.assert_allclose(ds["time"].values, rds["time"].values, rtol=0, atol=1e-12)
        np.testing.assert_allclose(ds["v"].values[i], rds["v"].values, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(ds["w"].values[i], rds["w"].values, rtol=1e-12, atol=1e-13)
        # Independent reading of the reference: did v at the far-end nodes ever exceed the
        # peak threshold (0.3)? It must agree with the worker's peak-tracking summary.
        v = rds["v"].values
        reached = bool((v[:, x >= 38.0] > 0.3).any() or (v[:, x <= 2.0] > 0.3).any())
        assert int(ds["propagated"].values[i]) == int(reached), (a, amp)
        assert int(ds["status"].values[i]) == 1
        assert float(ds["t_reached"].values[i]) == 60.0
    prop = ds["propagated"].values.reshape(2, 4)
    # the grid straddles the threshold: weak impulses die, strong ones propagate,
    # and the larger a needs a larger impulse
    assert prop[:, 0].tolist() == [0, 0]
    assert prop[:, -1].tolist() == [1, 1]
    assert prop[0].sum() > prop[1].sum()


def activation_time(v: np.ndarray, t: np.ndarray, k: int, level: float = 0.5) -> float:
    """First time v at node k rises through ``level`` (linear interpolation in time)."""
    above = np.flatnonzero(v[:, k] > level)
    j = above[0]
    v0, v1 = v[j - 1, k], v[j, k]
    return t[j - 1] + (level - v0) / (v1 - v0) * (t[j] - t[j - 1])


def test_sweep_speed_matches_activation_times(tmp_path, scheduler):
    """Speed from peak tracking vs speed from upstroke times at two nodes (independent),
    on the divergent case's 200-long cable (coarser: dx 0.5, dt 0.1) where pulses are steady."""
    long = {**BASE, "domain": {"length": 200.0, "nx": 401, "boundary": "neumann"},
            "initial": {"v": {"kind": "gaussian", "center": 100.0, "width": 5.0,
                              "amplitude": 1.0}, "w": 0.0},
            "time": {"t_end": 300.0, "dt": 0.1, "save_every": 1.0}}
    write_yaml(tmp_path / "long.yaml", long)
    path = write_yaml(tmp_path / "sweep.yaml", {
        "name": "speeds", "base": "long.yaml", "keep": "fields",
        "vary": {"model.params.a": {"values": [0.02, 0.05, 0.1, 0.3]}}})
    result = run_sweep(path, out=tmp_path / "s.zarr", scheduler=scheduler[0])
    assert result.complete == 4
    ds = open_run(tmp_path / "s.zarr")
    x, t = ds["x"].values, ds["time"].values
    k1, k2 = int(np.argmin(abs(x - 130.0))), int(np.argmin(abs(x - 170.0)))
    assert ds["propagated"].values.tolist() == [1, 1, 1, 0]  # a = 0.3: no pulse survives
    assert ds["pulses"].values.tolist()[:3] == [2, 2, 2]  # one pulse each way
    assert np.isnan(ds["speed"].values[3])
    assert np.isnan(ds["t_arrival"].values[3])
    speeds = ds["speed"].values[:3]
    for i in range(3):
        v = ds["v"].values[i]
        c_ref = (x[k2] - x[k1]) / (activation_time(v, t, k2) - activation_time(v, t, k1))
        assert speeds[i] == pytest.approx(c_ref, rel=0.02)
        # the first pulse reaches within edge = 10 of x = 0 or 200 about 90/c after it forms
        assert ds["t_arrival"].values[i] == pytest.approx(90.0 / c_ref, rel=0.25)
    assert speeds[0] > speeds[1] > speeds[2]  # a higher threshold a slows the pulse


def _no_cluster(monkeypatch):
    """Make starting a local cluster or connecting to one fail the test."""
    import fhnpde.cluster

    def refuse(*args, **kwargs):
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(fhnpde.cluster, "local_cluster", refuse)
    monkeypatch.setattr(distributed, "Client", refuse)


def test_rerun_does_no_work(grid_sweep, monkeypatch):
    path, store, _ = grid_sweep
    chunks = sorted(Path(store).glob("v/c/**/*"))
    mtimes = [p.stat().st_mtime_ns for p in chunks]
    _no_cluster(monkeypatch)  # nothing to do: no cluster is started
    again = run_sweep(path, out=store, workers=2)
    assert (again.ran, again.skipped, again.complete) == (0, 8, 8)
    assert [p.stat().st_mtime_ns for p in chunks] == mtimes


def test_restart_runs_only_pending_members(tmp_path, scheduler):
    import zarr

    path = write_sweep(tmp_path, vary={"initial.v.amplitude": {"values": AMPLITUDES}})
    store = tmp_path / "sweep.zarr"
    first = run_sweep(path, out=store, scheduler=scheduler[0])
    before = open_run(store).load()
    # as if the sweep had died before members 1 and 3 finished
    zarr.open_group(str(store), mode="r+")["status"][[1, 3]] = 0
    second = run_sweep(path, out=store, scheduler=scheduler[0])
    assert (first.ran, second.ran, second.skipped, second.complete) == (4, 2, 2, 4)
    after = open_run(store).load()
    for name in SUMMARY_KEYS:
        np.testing.assert_array_equal(after[name].values, before[name].values)


def test_different_sweep_into_same_store_is_refused(grid_sweep, tmp_path):
    _, store, _ = grid_sweep
    path = write_sweep(tmp_path, vary={"initial.v.amplitude": {"values": [0.5]}})
    with pytest.raises(CaseError, match="holds a different run or sweep"):
        run_sweep(path, out=store)


def _executing(dask_worker):
    return [str(ts.key) for ts in dask_worker.state.executing]


def test_killed_worker_member_is_retried(tmp_path, scheduler):
    address, client, cluster = scheduler
    # ~1.5 s per member (numpy backend, 100,000 steps of 81 nodes at ~14 us a step): long
    # enough to be killed mid-task on workers that warmed up before the tasks came
    path = write_sweep(tmp_path, set={"solver.backend": "numpy", "time.dt": 0.001,
                                      "time.t_end": 100.0},
                       vary={"initial.v.amplitude": {"values": [0.3, 0.5, 0.7, 1.0]}})
    store = tmp_path / "sweep.zarr"
    outcome = {}
    runner = threading.Thread(
        target=lambda: outcome.update(result=run_sweep(path, out=store, scheduler=address)))
    runner.start()
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline and runner.is_alive():
        busy = {w: keys for w, keys in client.run(_executing).items()
                if any(k.startswith("fhnpde-sweep") for k in keys)}
        if busy:
            time.sleep(0.1)  # inside the member's run, well before its end
            worker = next(iter(busy))
            pid = client.run(os.getpid, workers=[worker])[worker]
            os.kill(pid, signal.SIGKILL)
            killed = (pid, busy[worker][0])
        else:
            time.sleep(0.05)
    runner.join(timeout=120)
    assert killed is not None, "no member was seen running"
    result = outcome["result"]
    assert (result.complete, result.pending, result.errors) == (4, 0, {})
    member = int(killed[1].rsplit("-", 1)[1])
    # the scheduler's own record: the member went to a worker twice (killed, then retried)
    story = cluster.scheduler.story(killed[1])
    assert sum(1 for event in story if event[2] == "processing") >= 2, story
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)
    # the retried member's results equal an undisturbed in-process run of the same member
    sweep = load_sweep(path)
    ref_store = tmp_path / "ref.zarr"
    prepare_store(sweep, ref_store, overwrite=False)
    ref = run_member(str(ref_store), member, sweep.cases[member], 0.3, None, False)
    ds = open_run(store)
    assert int(ds["status"].values[member]) == 1
    for name in SUMMARY_KEYS:
        np.testing.assert_allclose(ds[name].values[member], ref[name], rtol=1e-12)


def test_unstable_member_is_recorded_failed(tmp_path, capsys, scheduler):
    # dt 0.25 is twice the explicit limit dx^2/(2D) = 0.125, forced: those members blow up
    path = write_sweep(tmp_path, set={"solver.force": True},
                       vary={"time.dt": {"values": [0.1, 0.25]},
                             "initial.v.amplitude": {"values": [0.3, 1.0]}})
    store = tmp_path / "sweep.zarr"
    rc = main(["sweep", str(path), "--scheduler", scheduler[0], "--out", str(store)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "2 complete, 2 failed numerically" in out
    ds = open_run(store)
    assert ds["status"].values.tolist() == [1, 1, 2, 2]
    assert ds.attrs["members_failed"] == 2
    assert ds.attrs["status"] == "complete"
    assert set(ds.attrs["failures"]) == {"2", "3"}
    assert all("blew up" in m for m in ds.attrs["failures"].values())
    assert (ds["t_reached"].values[2:] < 60.0).all()
    assert (ds["t_reached"].values[:2] == 60.0).all()
    assert ds["propagated"].values[:2].tolist() == [0, 1]


def test_cli_runs_on_a_local_cluster_by_default(tmp_path, capsys):
    path = write_sweep(tmp_path, vary={"initial.v.amplitude": {"values": [0.2, 1.0]}})
    store = tmp_path / "sweep.zarr"
    rc = main(["sweep", str(path), "--workers", "1", "--out", str(store)])
    assert rc == 0
    assert "2 members (2 run, 0 already done): 2 complete, 0 failed" in capsys.readouterr().out
    ds = open_run(store)
    assert ds["status"].values.tolist() == [1, 1]
    assert ds["propagated"].values.tolist() == [0, 1]
    assert "v" not in ds  # keep: summary (the default) stores no fields
    rc = main(["sweep", str(path), "--out", str(store), "--quiet"])  # nothing left to do
    assert rc == 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"vary": {"model.params.aa": {"values": [0.1]}}}, "model.params"),
        ({"vary": {"domain.lenght": [100.0, 200.0]}}, "domain.lenght: unknown key"),
        ({"vary": {"time.dt": {"values": [0.1, 0.25]}}}, "0.25 exceeds the stability limit"),
        ({"vary": {"time.dt": {"values": [0.1, 0.3]}}}, "not a whole number of steps"),
        ({"vary": {"model.diffusion": {"values": [1.0, -1.0]}}}, "model.diffusion: must be >= 0"),
        ({"varry": {"time.dt": [0.1, 0.2]}}, "varry: unknown key"),
        ({"vary": {"time.dt": [0.1, 0.2]}, "sample": "uniform"}, "size: is required"),
        ({"vary": {"time.dt": [0.2, 0.1]}}, "low <= high"),
        ({"vary": {"time.dt": 0.1}}, "vary.time.dt: must be a range [low, high] or {values"),
        ({"vary": {}}, "vary: needs at least one key path"),
    ],
)
def test_bad_sweep_fails_fast_with_exit_2(tmp_path, capsys, monkeypatch, spec, message):
    path = write_sweep(tmp_path, **spec)
    store = tmp_path / "sweep.zarr"
    _no_cluster(monkeypatch)  # refused before any cluster starts
    rc = main(["sweep", str(path), "--out", str(store)])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err
    assert err.startswith("fhnpde: error: ")
    assert err.count("\n") == 1
    assert not store.exists()


def test_bad_member_is_named(tmp_path):
    path = write_sweep(tmp_path, vary={"time.dt": {"values": [0.1, 0.05, 0.25]}})
    with pytest.raises(CaseError, match=r"stability limit .*, in member 2 of 3 \(time\.dt=0\.25\)"):
        load_sweep(path)


def test_latin_hypercube_members(tmp_path):
    path = write_sweep(tmp_path, sample="latin-hypercube", size=16, seed=3,
                       vary={"model.params.a": [0.05, 0.15], "initial.v.amplitude": [0.2, 1.0]})
    s1, s2 = load_sweep(path), load_sweep(path)
    a = s1.values["model.params.a"]
    np.testing.assert_array_equal(a, s2.values["model.params.a"])
    assert s1.fingerprint == s2.fingerprint
    # one sample in each of the 16 strata of every range
    strata = np.sort(np.floor((a - 0.05) / 0.1 * 16).astype(int))
    np.testing.assert_array_equal(strata, np.arange(16))
    assert [c.model.params["a"] for c in s1.cases] == a.tolist()
    amp = s1.values["initial.v.amplitude"]
    assert [c.initial.v.amplitude for c in s1.cases] == amp.tolist()


def test_point_sweep_counts_spikes(tmp_path, scheduler):
    """0-D members: the upstroke count equals the one read from single runs' stores."""
    base = {"name": "cell", "model": {"kinetics": "fitzhugh",
                                      "params": {"c": 1.0, "a": 0.7, "b": 0.8, "tau": 12.5}},
            "initial": {"v": -1.2, "w": -0.6},
            "stimuli": [{"amplitude": 0.2}],
            "time": {"t_end": 150.0, "dt": 0.05, "save_every": 0.5},
            "solver": {"method": "rk4", "backend": "numpy"}}
    write_yaml(tmp_path / "cell.yaml", base)
    path = write_yaml(tmp_path / "sweep.yaml", {
        "name": "cells", "base": "cell.yaml", "keep": "fields", "summary": {"threshold": 1.0},
        "vary": {"stimuli.0.amplitude": {"values": [0.2, 0.5, 0.8]}}})
    result = run_sweep(path, out=tmp_path / "s.zarr", scheduler=scheduler[0])
    assert result.complete == 3
    ds = open_run(tmp_path / "s.zarr")
    counts = []
    for i, amp in enumerate([0.2, 0.5, 0.8]):
        ref = run_single(load_case(tmp_path / "cell.yaml", [f"stimuli.0.amplitude={amp}"]),
                         out=tmp_path / f"r{i}.zarr")
        v = open_run(ref.path)["v"].values[0]
        np.testing.assert_allclose(ds["v"].values[i, :, 0], v, rtol=1e-12, atol=1e-13)
        counts.append(int(((v[:-1] <= 1.0) & (v[1:] > 1.0)).sum()))
    assert ds["pulses"].values.tolist() == counts
    # I = 0.2: one excursion from the initial state, then rest; I = 0.5, 0.8: a spike train
    assert counts[0] == 1, counts
    assert min(counts[1:]) >= 3, counts


def test_front_summary_on_a_straight_front():
    t = np.arange(0.0, 50.0)
    reach = np.where(t >= 5, 0.8 * (t - 5), np.nan)
    s = front_summary(t, reach, far=30.0, edge=1.5)
    assert s["speed"] == pytest.approx(0.8, rel=1e-12)
    assert s["propagated"] == 1
    assert s["t_arrival"] == pytest.approx(5 + 28.5 / 0.8, abs=1.0)
    dying = np.where(t < 20, 0.5 * t, np.nan)  # stops at 9.5 of 30: never arrives
    s = front_summary(t, dying, far=30.0, edge=1.5)
    assert s["propagated"] == 0
    assert np.isnan(s["t_arrival"])
    assert s["speed"] == pytest.approx(0.5, rel=1e-12)  # crossed [7.5, 22.5] partly
    s = front_summary(t, np.full(t.shape, np.nan), far=30.0, edge=1.5)
    assert s["propagated"] == 0
    assert np.isnan(s["speed"])


@pytest.mark.parametrize(("sets", "source", "far"), [
    # v0 above the threshold: its peak
    ((), 20.0, 20.0),
    # a cable at rest: the centre of the first box that is not zero; a ring: half of it away
    (("initial.v=0.0", "stimuli=[{x: [30.0, 34.0], amplitude: 0.0}, "
      "{x: [2.0, 6.0], t: [0.0, 1.0], amplitude: 0.5}]"), 4.0, 36.0),
    (("initial.v=0.0", "domain.boundary=periodic",
      "stimuli=[{x: [2.0, 6.0], t: [0.0, 1.0], amplitude: 0.5}]"), 4.0, 20.0),
    # at rest with no current: mid-cable
    (("initial.v=0.0",), 20.0, 20.0),
])
def test_cable_summary_measures_from_the_source(sets, source, far):
    """Where the pulses start and how far the far end is, from the problem's numbers."""
    from fhnpde.driver import build_solver
    from fhnpde.sweep import CableSummary
    from tests.helpers import make_case

    _, solver = build_solver(make_case(BASE, *sets))
    summary = CableSummary(threshold=0.5, edge=None)
    summary.start(type("Info", (), {"solver": solver})())
    assert (summary.source, summary.far, summary.edge) == (source, far, 2.0)


def test_plot_draws_a_threshold_map(grid_sweep, tmp_path):
    from fhnpde.plotting import plot_store, sweep_grid

    _, store, _ = grid_sweep
    ds = open_run(store)
    (k0, k1), (u0, u1), index = sweep_grid(ds)
    assert (k0, k1) == ("model.params.a", "initial.v.amplitude")
    np.testing.assert_array_equal(u0, A_VALUES)
    np.testing.assert_array_equal(u1, AMPLITUDES)
    for i in range(2):
        for j in range(4):
            m = index[i, j]
            assert (ds[k0].values[m], ds[k1].values[m]) == (u0[i], u1[j])
    out = plot_store(store, tmp_path / "map.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000
