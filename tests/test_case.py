"""Case files: every kind of bad input gets one line, exit status 2 and no complete store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fhnpde.case import CaseError, load_case
from fhnpde.cli import main

ROOT = Path(__file__).resolve().parents[1]
DIVERGENT = yaml.safe_load((ROOT / "cases" / "divergent.yaml").read_text())


def write_case(tmp_path, data=None, text=None, name="case.yaml"):
    p = tmp_path / name
    if text is None:
        text = yaml.safe_dump(data)
    p.write_text(text)
    return p


def edit(path: str, value, base=DIVERGENT):
    import copy

    data = copy.deepcopy(base)
    keys = path.split(".")
    node = data
    for k in keys[:-1]:
        node = node[k]
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return data


_DELETE = object()

BAD = [
    # (id, data or text, expected fragments of the single error line)
    ("missing key", edit("time.dt", _DELETE), ["time.dt", "missing required key"]),
    ("unknown key", edit("time.dtt", 0.1), ["time.dtt", "unknown key"]),
    ("unknown top key", edit("solvr", {"method": "explicit"}), ["solvr", "unknown key"]),
    ("wrong type", edit("time.dt", "fast"), ["time.dt", "must be a number", "'fast'"]),
    ("wrong type int", edit("domain.nx", 80.5), ["domain.nx", "must be an integer"]),
    ("negative size", edit("domain.nx", -5), ["domain.nx", "must be >= 3", "-5"]),
    ("negative length", edit("domain.length", -1.0), ["domain.length", "must be > 0"]),
    ("negative dt", edit("time.dt", -0.1), ["time.dt", "must be > 0", "-0.1"]),
    ("unstable dt", edit("time.dt", 0.05), ["time.dt", "stability limit 0.03125",
                                              "solver.force"]),
    ("unknown solver", edit("solver.method", "leapfrog"), ["solver.method", "unknown solver",
                                                            "explicit"]),
    ("unknown backend", edit("solver.backend", "fortran"), ["solver.backend", "numba"]),
    ("point solver on cable", edit("solver.method", "rk4"), ["solver.method", "point models"]),
    ("bad kinetics param", edit("model.params.eps", 0.0), ["model.params", "eps must be > 0"]),
    ("unknown kinetics", edit("model.kinetics", "hh"), ["model.kinetics", "unknown kinetics"]),
    ("bad profile kind", edit("initial.v", {"kind": "sine"}), ["initial.v", "gaussian"]),
    ("dt not dividing", edit("time.save_every", 1.01), ["time.save_every",
                                                          "whole number of steps"]),
    ("unreadable yaml", "name: x\ntime: {t_end: 1, dt: [\n", ["not valid YAML", "line"]),
    ("not a mapping", "- just\n- a list\n", ["must be a YAML mapping"]),
    ("empty file", "", ["the file is empty"]),
]


@pytest.mark.parametrize(("data", "fragments"), [(b[1], b[2]) for b in BAD],
                         ids=[b[0] for b in BAD])
def test_bad_case_exits_2_with_one_line(tmp_path, capsys, data, fragments):
    out = tmp_path / "out.zarr"
    p = write_case(tmp_path, text=data) if isinstance(data, str) else write_case(tmp_path, data)
    code = main(["run", str(p), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"fhnpde: error: {p}")
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])
    assert not out.exists()


def test_missing_file(tmp_path, capsys):
    code = main(["run", str(tmp_path / "nope.yaml"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0
    assert "nope.yaml: no such case file" in err


def test_unwritable_output_path(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    code = main(["run", str(ROOT / "cases" / "divergent.yaml"), "--quiet",
                 "--out", str(blocker / "run.zarr")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0
    assert "--out" in err
    assert "cannot write" in err
    assert f"{blocker} is a file, not a folder" in err
    assert not (blocker / "run.zarr").exists()


def test_existing_store_is_not_replaced_without_overwrite(tmp_path, capsys):
    out = tmp_path / "run.zarr"
    args = ["run", str(ROOT / "cases" / "divergent.yaml"), "--quiet", "--out", str(out),
            "--set", "time.t_end=2"]
    assert main(args) == 0
    assert main(args) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_overwrite_refuses_to_delete_a_non_store(tmp_path, capsys):
    precious = tmp_path / "data"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    args = ["run", str(ROOT / "cases" / "divergent.yaml"), "--quiet", "--out", str(precious),
            "--overwrite", "--set", "time.t_end=2"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "is not a store written by fhnpde" in err
    assert "refusing to replace it" in err
    assert (precious / "thesis.tex").exists()


@pytest.mark.parametrize(("override", "fragments"), [
    ("time.dt=abc", ["time.dt", "must be a number", "'abc'"]),
    ("solver.metod=rk4", ["solver.metod", "unknown key"]),
    ("domain.nx=2", ["domain.nx", "must be >= 3"]),
    ("nodots", ["expected KEY=VALUE"]),
    ("stimuli.3.amplitude=1", ["stimuli.3", "no list item"]),
])
def test_bad_overrides(override, fragments):
    with pytest.raises(CaseError) as info:
        load_case(ROOT / "cases" / "divergent.yaml", [override])
    for frag in fragments:
        assert frag in str(info.value)


def test_overrides_are_typed_and_nested():
    case = load_case(ROOT / "cases" / "divergent.yaml",
                     ["time.dt=1e-2", "initial.v.amplitude=0.5", "solver.backend=numpy",
                      "stimuli=[{kind: box, x: [0, 2], amplitude: 0.5}]"])
    assert case.time.dt == 0.01
    assert isinstance(case.time.dt, float)
    assert case.initial.v.amplitude == 0.5
    assert case.solver.backend == "numpy"
    assert case.stimuli[0].t == [0.0, None]


def test_shipped_cases_validate():
    for path in sorted((ROOT / "cases").glob("*.yaml")):
        if path.name.startswith("sweep"):
            continue  # sweep files have their own schema
        case = load_case(path)
        assert case.name == path.stem


def test_divergent_case_is_the_design_case():
    case = load_case(ROOT / "cases" / "divergent.yaml")
    assert (case.domain.length, case.domain.nx, case.domain.boundary) == (200.0, 801, "neumann")
    v = case.initial.v
    assert (v.kind, v.center, v.width, v.amplitude) == ("gaussian", 100.0, 5.0, 1.0)
    assert (case.time.t_end, case.time.dt, case.time.save_every) == (300.0, 0.02, 1.0)
    assert case.solver.method == "explicit"
    assert case.model.params == {"k": 1.0, "a": 0.1, "eps": 0.01, "gamma": 0.5}


def test_no_traceback_from_the_command_line(tmp_path):
    p = write_case(tmp_path, edit("time.dt", -0.1))
    proc = subprocess.run([sys.executable, "-m", "fhnpde", "run", str(p), "--quiet"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"fhnpde: error: {p}: time.dt: must be > 0, got -0.1"
