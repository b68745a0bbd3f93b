"""Every error a user can cause on the command line ends in one sentence, never a traceback.

Each bad invocation of ``python -m fhnpde`` below runs as a subprocess (as a user runs it,
with the real ``main``, signal handlers and stderr) and must

- exit with status 2 (bad input, DESIGN §6);
- print exactly one non-empty line on stderr: ``fhnpde: error: ...`` naming the input, or,
  for what argparse itself refuses, its usage (wrapped over indented lines) and then one
  ``python -m fhnpde CMD: error: ...`` line;
- print no ``Traceback`` on stdout or stderr;
- say what the case expects (a word of the message), so that a different failure that
  happens to exit 2 does not pass.

A NUL byte cannot be passed to a subprocess (``execve`` arguments are C strings), so those
cases call ``main`` in this process instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from fhnpde.cli import main
from tests.helpers import SMALL_CABLE, make_case

ROOT = Path(__file__).resolve().parents[1]
LONG = "x" * 5000


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A folder with a case, a sweep, stores whole and damaged, a file and a folder."""
    from fhnpde.driver import run_case
    from fhnpde.store import set_attrs
    from fhnpde.sweep import load_sweep, run_member, write_template

    w = tmp_path_factory.mktemp("cli")
    case = make_case(SMALL_CABLE, "time.save_every=0.5", "output.chunk_mb=0.004")
    data = case.to_dict()
    data["output"] = {"path": str(w / "runs" / "small.zarr")}
    (w / "small.yaml").write_text(yaml.safe_dump(data))
    (w / "a_file.txt").write_text("not a store\n")
    (w / "a_dir").mkdir()
    (w / "a_dir.png").mkdir()

    run_case(case, out=w / "c.zarr")
    damage = {
        "trunc_chunk": lambda p: (p / "v/c/1/0").write_bytes((p / "v/c/1/0").read_bytes()[:20]),
        "empty_chunk": lambda p: (p / "v/c/2/0").write_bytes(b""),
        "lost_chunk": lambda p: (p / "w/c/2/0").unlink(),
        "lost_array": lambda p: shutil.rmtree(p / "w"),
        "bad_root": lambda p: (p / "zarr.json").write_text("not json"),
        "cut_root": lambda p: (p / "zarr.json").write_bytes((p / "zarr.json").read_bytes()[:300]),
        "cut_array_meta": lambda p: (p / "v/zarr.json").write_bytes(
            (p / "v/zarr.json").read_bytes()[:120]),
    }
    for name, hurt in damage.items():
        shutil.copytree(w / "c.zarr", w / f"{name}.zarr")
        hurt(w / f"{name}.zarr")

    import xarray as xr

    foreign = xr.Dataset({"temperature": (("a", "b"), np.ones((3, 4)))})
    foreign.to_zarr(w / "foreign.zarr", zarr_format=3, consolidated=False)
    foreign.to_zarr(w / "foreign2.zarr", zarr_format=2)

    base = case.to_dict()
    base.pop("output")
    (w / "base.yaml").write_text(yaml.safe_dump(base))
    (w / "sweep.yaml").write_text(yaml.safe_dump({
        "name": "s", "base": "base.yaml",
        "vary": {"initial.v.amplitude": {"values": [0.2, 1.0]}}}))
    sweep = load_sweep(w / "sweep.yaml")
    write_template(sweep, w / "s.zarr")
    for i, member in enumerate(sweep.cases):
        run_member(str(w / "s.zarr"), i, member, 0.3, None, False)
    set_attrs(w / "s.zarr", status="complete", members_complete=2, members_failed=0,
              members_pending=0)
    for name, hurt in {"s_nostatus": lambda p: shutil.rmtree(p / "status"),
                       "s_loststatus": lambda p: (p / "status/c/1").unlink(),
                       "s_lostsummary": lambda p: (p / "t_reached/c/0").unlink()}.items():
        shutil.copytree(w / "s.zarr", w / f"{name}.zarr")
        hurt(w / f"{name}.zarr")
    return w


# (argv, a word the error line must contain); paths are relative to the world folder.
CASES = {
    # argparse's own refusals
    "no-command": ([], "required"),
    "unknown-command": (["frobnicate"], "invalid choice"),
    "run-without-case": (["run"], "case"),
    "run-unknown-flag": (["run", "small.yaml", "--bogus"], "--bogus"),
    "info-unknown-flag": (["info", "--bogus"], "--bogus"),
    "plot-unknown-flag": (["plot", "c.zarr", "--bogus"], "--bogus"),
    "convergence-without-vary": (["convergence", "small.yaml"], "--vary"),
    "convergence-unknown-vary": (["convergence", "small.yaml", "--vary", "dq"], "invalid choice"),
    "run-max-wall-negative": (["run", "small.yaml", "--max-wall", "-1"], "--max-wall"),
    "run-max-wall-nan": (["run", "small.yaml", "--max-wall", "nan"], "finite"),
    "run-max-wall-text": (["run", "small.yaml", "--max-wall", "soon"], "expected a number"),
    # cases
    "run-missing-case": (["run", "nothere.yaml"], "nothere.yaml"),
    "run-directory-as-case": (["run", "a_dir"], "a_dir"),
    "run-unknown-set-key": (["run", "small.yaml", "--set", "model.nokey=1"], "nokey"),
    "run-set-without-value": (["run", "small.yaml", "--set", "time.dt"], "time.dt"),
    "run-out-is-a-file": (["run", "small.yaml", "--out", "a_file.txt"], "a_file.txt"),
    "run-out-in-a-files-child": (["run", "small.yaml", "--out", "a_file.txt/x.zarr"],
                                 "a_file.txt"),
    "run-out-name-too-long": (["run", "small.yaml", "--out", LONG + ".zarr"], "--out"),
    # plot: stores
    "plot-missing-store": (["plot", "none.zarr"], "is not a zarr store"),
    "plot-a-file": (["plot", "a_file.txt"], "is a file"),
    "plot-a-folder": (["plot", "a_dir"], "no zarr.json"),
    "plot-a-case-file": (["plot", "small.yaml"], "is a file"),
    "plot-foreign-store": (["plot", "foreign.zarr"], "fhnpde did not write"),
    "plot-zarr-v2-store": (["plot", "foreign2.zarr"], "version 2"),
    "plot-truncated-chunk": (["plot", "trunc_chunk.zarr"], "v/c/1/0"),
    "plot-empty-chunk": (["plot", "empty_chunk.zarr"], "v/c/2/0"),
    "plot-deleted-chunk": (["plot", "lost_chunk.zarr"], "w/c/2/0"),
    "plot-deleted-array": (["plot", "lost_array.zarr"], "'w'"),
    "plot-root-not-json": (["plot", "bad_root.zarr"], "zarr.json is not valid JSON"),
    "plot-root-cut-short": (["plot", "cut_root.zarr"], "zarr.json is not valid JSON"),
    "plot-array-meta-cut-short": (["plot", "cut_array_meta.zarr"], "v/zarr.json"),
    "plot-sweep-without-status": (["plot", "s_nostatus.zarr"], "'status'"),
    "plot-sweep-lost-status-chunk": (["plot", "s_loststatus.zarr"], "status/c/1"),
    "plot-sweep-lost-summary-chunk": (["plot", "s_lostsummary.zarr"], "t_reached/c/0"),
    # plot: --out
    "plot-out-unknown-extension": (["plot", "c.zarr", "--out", "p.foo"], ".png"),
    "plot-out-no-extension": (["plot", "c.zarr", "--out", "p"], "no extension"),
    "plot-out-in-a-files-child": (["plot", "c.zarr", "--out", "a_file.txt/p.png"],
                                  "a_file.txt is a file"),
    "plot-out-a-folder": (["plot", "c.zarr", "--out", "a_dir.png"], "is a folder"),
    "plot-out-trailing-slash": (["plot", "c.zarr", "--out", "new_dir/"], "names a folder"),
    "plot-out-name-too-long": (["plot", "c.zarr", "--out", LONG + ".png"], "too long"),
    "plot-out-unwritable": (["plot", "c.zarr", "--out", "/proc/fhnpde-test/p.png"],
                            "cannot write"),
    # convergence
    "convergence-levels-1": (["convergence", "small.yaml", "--vary", "dt", "--levels", "1"],
                             "--levels"),
    "convergence-levels-99": (["convergence", "small.yaml", "--vary", "dt", "--levels", "99"],
                              "--levels"),
    "convergence-levels-text": (["convergence", "small.yaml", "--vary", "dt", "--levels", "x"],
                                "expected an integer"),
    "convergence-ratio-1": (["convergence", "small.yaml", "--vary", "dt", "--ratio", "1"],
                            "--ratio"),
    "convergence-ratio-1000": (["convergence", "small.yaml", "--vary", "dt", "--ratio",
                                "1000"], "--ratio"),
    "convergence-t-end-0": (["convergence", "small.yaml", "--vary", "dt", "--t-end", "0"],
                            "--t-end"),
    "convergence-t-end-inf": (["convergence", "small.yaml", "--vary", "dt", "--t-end", "inf"],
                              "finite"),
    "convergence-t-end-huge": (["convergence", "small.yaml", "--vary", "dt", "--t-end",
                                "1e300"], "steps"),
    "convergence-finest-too-fine": (["convergence", "small.yaml", "--vary", "dx", "--levels",
                                     "8", "--ratio", "10"], "--levels"),
    "convergence-out-a-file": (["convergence", "small.yaml", "--vary", "dt", "--out",
                                "a_file.txt"], "not a folder"),
    "convergence-missing-case": (["convergence", "nothere.yaml", "--vary", "dt"],
                                 "nothere.yaml"),
    # stability
    "stability-rtol-tiny": (["stability", "small.yaml", "--rtol", "1e-300"], "--rtol"),
    "stability-rtol-zero": (["stability", "small.yaml", "--rtol", "0"], "--rtol"),
    "stability-rtol-nan": (["stability", "small.yaml", "--rtol", "nan"], "finite"),
    "stability-rtol-two": (["stability", "small.yaml", "--rtol", "2"], "--rtol"),
    "stability-cap-one": (["stability", "small.yaml", "--cap", "1"], "--cap"),
    "stability-cap-huge": (["stability", "small.yaml", "--cap", "1e9"], "--cap"),
    "stability-cap-inf": (["stability", "small.yaml", "--cap", "inf"], "finite"),
    "stability-t-end-negative": (["stability", "small.yaml", "--t-end", "-1"], "--t-end"),
    "stability-t-end-huge": (["stability", "small.yaml", "--t-end", "1e300"], "steps"),
    "stability-unknown-solver": (["stability", "small.yaml", "--solver", "bogus"], "--solver"),
    "stability-point-solver-on-a-cable": (["stability", "small.yaml", "--solver", "rk4"],
                                          "valid solvers"),
    "stability-out-in-a-files-child": (["stability", "small.yaml", "--out", "a_file.txt/o"],
                                       "a_file.txt is a file"),
    # sweep
    "sweep-workers-0": (["sweep", "sweep.yaml", "--workers", "0"], "--workers"),
    "sweep-workers-huge": (["sweep", "sweep.yaml", "--workers", "100000"], "one per core"),
    "sweep-workers-text": (["sweep", "sweep.yaml", "--workers", "two"], "expected an integer"),
    "sweep-workers-with-scheduler": (["sweep", "sweep.yaml", "--workers", "1", "--scheduler",
                                      "tcp://127.0.0.1:9"], "--workers"),
    "sweep-dashboard-with-scheduler": (["sweep", "sweep.yaml", "--dashboard", "--scheduler",
                                        "tcp://127.0.0.1:9"], "--dashboard"),
    "sweep-missing-file": (["sweep", "nothere.yaml"], "nothere.yaml"),
    "sweep-resume-without-status": (["sweep", "sweep.yaml", "--out", "s_nostatus.zarr"],
                                    "'status'"),
    "sweep-resume-root-not-json": (["sweep", "sweep.yaml", "--out", "bad_root.zarr"],
                                   "zarr.json is not valid JSON"),
}


def assert_one_line_error(code: int, out: str, err: str, word: str) -> None:
    assert "Traceback" not in out + err, err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    if lines[0].startswith("usage: "):  # argparse: its usage, wrapped, then one error line
        assert all(line.startswith(" ") for line in lines[1:-1]), err
        error = lines[-1]
        assert error.startswith("python -m fhnpde"), err
        assert ": error: " in error, err
    else:
        assert len(lines) == 1, err
        error = lines[0]
        assert error.startswith("fhnpde: error: "), err
    assert word in error, error


@pytest.mark.parametrize(("argv", "word"), list(CASES.values()), ids=list(CASES))
def test_bad_invocation_is_one_line_and_exit_2(world, argv, word):
    if any(a.startswith("/proc/") for a in argv) and not Path("/proc").is_dir():
        pytest.skip("needs /proc (Linux) for a path where no file can be made")
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "fhnpde", *argv], cwd=world, env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, word)


@pytest.mark.parametrize(
    ("argv", "word"),
    [
        (["plot", "c.zarr", "--out", "p\x00.png"], "NUL byte"),
        (["plot", "c\x00.zarr"], "NUL byte"),
        (["convergence", "small.yaml", "--vary", "dt", "--out", "o\x00"], "NUL byte"),
        (["stability", "small.yaml", "--out", "o\x00"], "NUL byte"),
        (["run", "small.yaml", "--out", "x\x00.zarr"], "NUL"),
    ],
    ids=["plot-out", "plot-store", "convergence-out", "stability-out", "run-out"],
)
def test_a_nul_byte_in_a_path_is_one_line_and_exit_2(world, monkeypatch, capsys, argv, word):
    monkeypatch.chdir(world)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's refusals
        code = exc.code
    captured = capsys.readouterr()
    assert_one_line_error(code, captured.out, captured.err, word)

