"""Architecture search on dask (restartable, failures recorded, equal to serial training),
the table + Pareto plot, and the command line.

The dask tests share one LocalCluster of 2 single-threaded worker processes (the
``--scheduler`` path); the CLI test with ``--workers 2`` starts its own (the default path).
Candidates are tiny (problem A, 200 training points, 40 iterations), so the file stays well
under 2 minutes.
"""

from __future__ import annotations

import csv
import json
import logging

import pytest

torch = pytest.importorskip("torch", reason="the surrogates extra (torch) is not installed")

from surrogates import search as search_module  # noqa: E402
from surrogates.__main__ import main  # noqa: E402
from surrogates.models import load_model  # noqa: E402
from surrogates.search import (  # noqa: E402
    candidate_config,
    is_finished,
    pareto_front,
    run_search,
    sample_architectures,
)

TINY = {"training.iterations": 40, "training.validate_every": 20, "search.timing_batch": 2000}


def tiny(cfg):
    cfg = cfg.model_copy(deep=True)
    cfg.training.iterations = TINY["training.iterations"]
    cfg.training.validate_every = TINY["training.validate_every"]
    cfg.search.timing_batch = TINY["search.timing_batch"]
    return cfg


def read_rows(directory):
    with open(directory / "results.csv") as fh:
        return list(csv.DictReader(fh))


def stamps(directory):
    """Modification times (ns) of every file of every candidate's model directory."""
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns
            for p in sorted((directory / "models").rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def scheduler():
    """A LocalCluster of 2 worker processes (1 thread each); yields its address."""
    distributed = pytest.importorskip("distributed", reason="needs dask.distributed (the "
                                      "'distributed' extra)")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None,
                                       silence_logs=logging.ERROR)
    yield cluster.scheduler_address
    cluster.close()


@pytest.fixture(scope="module")
def dask_search(problem_a_data, scheduler, tmp_path_factory):
    """A 3-candidate search run on the shared cluster, then run again: (cfg, dir, first,
    file times after the first run, second, keys of every task the scheduler ran)."""
    import distributed

    cfg = tiny(problem_a_data[0])
    out = tmp_path_factory.mktemp("search") / "s"
    with distributed.Client(scheduler) as client, distributed.get_task_stream(client) as stream:
        first = run_search(cfg, scheduler=scheduler, count=3, out=out)
        after_first = stamps(out)
        second = run_search(cfg, scheduler=scheduler, count=3, out=out)
    keys = [t["key"] for t in stream.data]
    return cfg, out, first, after_first, second, keys


def test_sampling_is_balanced_over_shapes(problem_a_data):
    cfg, _ = problem_a_data
    spec = cfg.search.model_copy(update={"count": 20})
    archs = sample_architectures(spec)
    shapes = [a["shape"] for a in archs]
    assert {shapes.count(s) for s in set(shapes)} == {4}
    for a in archs:
        assert sum(a["widths"]) <= 256
        assert set(a["widths"]) <= {16, 32, 64, 128}
        assert len(a["activations"]) == len(a["widths"]) in (2, 3)
    assert sample_architectures(spec) == archs  # seeded
    # draw i does not depend on the count: a larger count extends a search
    assert sample_architectures(spec.model_copy(update={"count": 7})) == archs[:7]


def test_search_on_dask_trains_each_candidate_once_and_writes_the_table(dask_search):
    _, out, first, _, _, keys = dask_search
    ids = [a["id"] for a in json.loads((out / "candidates.json").read_text())]
    assert len(ids) == 3
    assert sorted(first["trained"]) == sorted(ids)
    # the scheduler ran one task per candidate over both runs, and nothing else (the data
    # store is read inside the task, not as dask tasks of its own)
    tag = keys[0].split("-")[2]
    assert sorted(keys) == sorted(f"surrogates-search-{tag}-{i}" for i in ids)
    assert first["failed"] == {}
    rows = read_rows(out)
    assert sorted(r["model"] for r in rows) == sorted(ids)
    for r in rows:
        assert r["status"] == "trained"
        assert r["error"] == ""
        assert float(r["mae"]) > 0
        assert float(r["inference_s_per_1e6"]) > 0
        assert int(r["iterations"]) == 40
        assert int(r["neurons"]) == sum(map(int, r["widths"].split("x")))
        meta = json.loads((out / "models" / r["model"] / "model.json").read_text())
        assert float(r["mae"]) == meta["validation"]["mae"]
        assert meta["activations"] == r["activations"].split(",")
    assert [float(r["mae"]) for r in rows] == sorted(float(r["mae"]) for r in rows)
    assert any(r["pareto"] == "True" for r in rows)
    assert (out / "pareto.png").stat().st_size > 1000
    assert "| model | shape |" in (out / "results.md").read_text()


def test_rerun_trains_nothing(dask_search):
    _, out, _, after_first, second, _ = dask_search
    assert second["trained"] == []
    assert second["failed"] == {}
    assert len(second["rows"]) == 3
    # no file of any model directory was written again (timing.json included)
    assert stamps(out) == after_first
    assert sum(name.endswith("model.pt") for name in after_first) == 3


def test_dask_training_equals_serial_training(dask_search, tmp_path):
    """Weights and validation errors of a worker's training are bit-identical to a serial
    training of the same candidate in this process (same seed, one thread)."""
    from surrogates.data import load_data
    from surrogates.train import train

    cfg, out, _, _, _, _ = dask_search
    arch = json.loads((out / "candidates.json").read_text())[0]
    threads = torch.get_num_threads()
    try:
        serial = train(candidate_config(cfg.to_dict(), arch), out=tmp_path / "serial",
                       data=load_data(cfg.data_path))
    finally:
        torch.set_num_threads(threads)
    worker_model, worker_meta = load_model(out / "models" / arch["id"])
    serial_model, _ = load_model(tmp_path / "serial")
    worker_state, serial_state = worker_model.state_dict(), serial_model.state_dict()
    assert worker_state.keys() == serial_state.keys()
    for name, tensor in serial_state.items():
        assert torch.equal(worker_state[name], tensor), name
    assert worker_meta["validation"] == serial.metrics
    assert worker_meta["validation"]["mae"] > 0


def test_failed_candidate_is_recorded_and_the_rest_complete(problem_a_data, scheduler,
                                                            tmp_path, monkeypatch):
    cfg = tiny(problem_a_data[0])
    real = sample_architectures

    def with_broken_candidate(spec):
        archs = real(spec)
        archs[1] = {**archs[1], "activations": ["softsign"] * len(archs[1]["widths"])}
        return archs

    monkeypatch.setattr(search_module, "sample_architectures", with_broken_candidate)
    out = tmp_path / "s"
    res = run_search(cfg, scheduler=scheduler, count=3, out=out)
    ids = [a["id"] for a in real(cfg.search.model_copy(update={"count": 3}))]
    assert sorted(res["trained"]) == sorted([ids[0], ids[2]])
    assert set(res["failed"]) == {ids[1]}
    assert "unknown activation 'softsign'" in res["failed"][ids[1]]
    assert is_finished(out / "models" / ids[0])
    assert is_finished(out / "models" / ids[2])
    assert not is_finished(out / "models" / ids[1])
    rows = read_rows(out)
    assert [r["model"] for r in rows][-1] == ids[1]  # failed rows come last
    status = {r["model"]: r for r in rows}
    assert status[ids[1]]["status"] == "failed"
    assert status[ids[1]]["mae"] == ""
    assert status[ids[1]]["pareto"] == "False"
    assert "softsign" in status[ids[1]]["error"]
    assert {status[i]["status"] for i in (ids[0], ids[2])} == {"trained"}
    assert "failed: " in (out / "results.md").read_text()
    # a rerun with the candidate repaired trains only the one that failed
    monkeypatch.setattr(search_module, "sample_architectures", real)
    before = stamps(out)
    again = run_search(cfg, scheduler=scheduler, count=3, out=out)
    assert again["trained"] == [ids[1]]
    assert again["failed"] == {}
    after = stamps(out)
    assert {k: v for k, v in after.items() if not k.startswith(f"models/{ids[1]}/")} == before
    assert {r["status"] for r in read_rows(out)} == {"trained"}


def test_pareto_front():
    rows = [{"model": "a", "mae": 1.0, "inference_s_per_1e6": 1.0},
            {"model": "b", "mae": 0.5, "inference_s_per_1e6": 2.0},
            {"model": "c", "mae": 0.6, "inference_s_per_1e6": 2.5},
            {"model": "d", "mae": 2.0, "inference_s_per_1e6": 0.5}]
    assert pareto_front(rows) == {"a", "b", "d"}


def test_cli_search_local_cluster_then_scheduler(problem_a_data, scheduler, tmp_path, capsys):
    """``--workers 2`` starts a LocalCluster; a rerun through ``--scheduler`` finds every
    model and trains none; ``--workers 0`` is bad input."""
    from surrogates import CONFIGS

    cfg = problem_a_data[0]
    sets = [f"data.path={cfg.data_path}", "data.train.size=200", "data.validation.size=400",
            "data.solver.backend=numpy", *(f"{k}={v}" for k, v in TINY.items())]
    args = ["search", str(CONFIGS / "problem_a.yaml"), *(a for s in sets for a in ("--set", s)),
            "--count", "2", "--out", str(tmp_path / "s"), "--quiet"]
    assert main([*args, "--workers", "2"]) == 0
    assert "2 models (2 trained now, 0 found)" in capsys.readouterr().out
    assert main([*args, "--scheduler", scheduler]) == 0
    assert "2 models (0 trained now, 2 found)" in capsys.readouterr().out
    assert main([*args, "--workers", "0"]) == 2
    assert "--workers: must be >= 1" in capsys.readouterr().err


def test_cli_generate_train_evaluate(tmp_path, capsys):
    import math

    from surrogates import CONFIGS

    cfg = str(CONFIGS / "neural_ode.yaml")
    sets = ["--set", f"data.path={tmp_path}/d.zarr", "--set", "data.train.size=16",
            "--set", "data.validation.size=4", "--set", "data.steps=10",
            "--set", "data.solver.backend=numpy", "--set", "model.widths=[32, 32]",
            "--set", "training.iterations=600", "--set", "training.lr=1.0e-2",
            "--set", "training.validate_every=50"]
    assert main(["generate", cfg, *sets]) == 0
    assert "trajectories data" in capsys.readouterr().out
    assert main(["train", cfg, *sets, "--out", str(tmp_path / "m"), "--quiet"]) == 0
    assert main(["evaluate", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "vector field on the training region v [-2, 2] x w [-1, 1]" in out
    assert "vector field on the 1.25x wider grid v [-2.5, 2.5] x w [-1.25, 1.25]" in out
    assert "quiescent (I=0.2): per-point cosine" in out
    report = json.loads((tmp_path / "m" / "evaluation.json").read_text())
    pp = report["phase_portrait"]
    assert set(pp["cosine"]) == {"quiescent", "spiking"}
    for grid in (pp["training_region"], pp["wider"]):
        assert 0.0 < grid["cells_with_training_data"] < 1.0  # 16 short trajectories
        for r in grid["regimes"].values():
            assert all(math.isfinite(r[k]) for k in ("cosine_per_point", "cosine_flat", "rel_l2"))
            # |f - g| / |g| >= sin of the angle between the flattened fields
            assert r["rel_l2"] >= math.sqrt(max(0.0, 1.0 - r["cosine_flat"] ** 2)) - 1e-9
    # after 600 iterations the field is learned in rough: over training seeds 0-4 and data
    # seeds 0 and 5 the flattened cosine was 0.80-0.996 and the relative L2 0.10-0.61 in both
    # regimes (this seed: 0.98, 0.21); a barely trained model (20 iterations) stays below
    # 0.6 in at least one regime, with relative L2 above 0.8
    for r in pp["training_region"]["regimes"].values():
        assert r["cosine_flat"] > 0.75, r
        assert r["rel_l2"] < 0.7, r
    assert pp["cosine"]["spiking"] == pp["training_region"]["regimes"]["spiking"][
        "cosine_per_point"]
    assert (tmp_path / "m" / "phase_portrait.png").exists()


def test_cli_bad_input_exits_2(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "no model.json" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndata: {kind: trajectory, fixed: {v0: 0.5, w0: 0.0, I: 0.1},"
                   " train: {size: 1}, validation: {size: 1}}\n"
                   "model: {kind: ddnn, widths: [4]}\nfoo: 1\n")
    assert main(["train", str(bad)]) == 2
    assert "foo: unknown key" in capsys.readouterr().err
