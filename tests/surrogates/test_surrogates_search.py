"""Architecture search (restartable, table + Pareto plot) and the command line."""

from __future__ import annotations

import csv
import json

import pytest

torch = pytest.importorskip("torch", reason="the surrogates extra (torch) is not installed")

from surrogates.__main__ import main  # noqa: E402
from surrogates.search import pareto_front, run_search, sample_architectures  # noqa: E402


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


def test_search_is_restartable_and_writes_the_table(problem_a_data, tmp_path):
    cfg, _ = problem_a_data
    cfg = cfg.model_copy(deep=True)
    cfg.training.iterations = 40
    cfg.training.validate_every = 20
    cfg.search.timing_batch = 2000
    first = run_search(cfg, workers=2, count=3, out=tmp_path / "s")
    assert len(first["trained"]) == 3
    second = run_search(cfg, workers=2, count=3, out=tmp_path / "s")
    assert second["trained"] == []  # every finished model is skipped
    with open(tmp_path / "s" / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3
    for r in rows:
        assert float(r["mae"]) > 0
        assert float(r["inference_s_per_1e6"]) > 0
        assert int(r["neurons"]) == sum(map(int, r["widths"].split("x")))
    assert [float(r["mae"]) for r in rows] == sorted(float(r["mae"]) for r in rows)
    assert any(r["pareto"] == "True" for r in rows)
    assert (tmp_path / "s" / "pareto.png").stat().st_size > 1000
    assert "| model | shape |" in (tmp_path / "s" / "results.md").read_text()


def test_pareto_front():
    rows = [{"model": "a", "mae": 1.0, "inference_s_per_1e6": 1.0},
            {"model": "b", "mae": 0.5, "inference_s_per_1e6": 2.0},
            {"model": "c", "mae": 0.6, "inference_s_per_1e6": 2.5},
            {"model": "d", "mae": 2.0, "inference_s_per_1e6": 0.5}]
    assert pareto_front(rows) == {"a", "b", "d"}


def test_cli_generate_train_evaluate(tmp_path, capsys):
    from surrogates import CONFIGS

    cfg = str(CONFIGS / "neural_ode.yaml")
    sets = ["--set", f"data.path={tmp_path}/d.zarr", "--set", "data.train.size=4",
            "--set", "data.validation.size=4", "--set", "data.steps=10",
            "--set", "data.solver.backend=numpy", "--set", "model.widths=[16]",
            "--set", "training.iterations=20", "--set", "training.validate_every=10"]
    assert main(["generate", cfg, *sets]) == 0
    assert "trajectories data" in capsys.readouterr().out
    assert main(["train", cfg, *sets, "--out", str(tmp_path / "m"), "--quiet"]) == 0
    assert main(["evaluate", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "phase-portrait cosine similarity" in out
    assert "quiescent (I=0.2)" in out
    report = json.loads((tmp_path / "m" / "evaluation.json").read_text())
    assert set(report["phase_portrait"]["cosine"]) == {"quiescent", "spiking"}
    assert -1.0 <= report["phase_portrait"]["cosine"]["spiking"] <= 1.0
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
