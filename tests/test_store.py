"""The run store: round trips with plain xarray, chunking, status on every ending."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import fhnpde
from fhnpde.cli import main
from fhnpde.driver import build_solver, integrate, run_case
from tests.helpers import CELL, SMALL_CABLE, make_case, signal_run

ROOT = Path(__file__).resolve().parents[1]


def test_cable_round_trip_with_plain_xarray(tmp_path):
    case = make_case(SMALL_CABLE, "time.save_every=0.5", "output.chunk_mb=0.002")
    result = run_case(case, out=tmp_path / "r.zarr")
    assert result.status == "complete"
    ds = xr.open_zarr(tmp_path / "r.zarr")  # no fhnpde involved in reading
    assert ds.v.dims == ("time", "x")
    assert ds.w.dims == ("time", "x")
    assert ds.v.dtype == np.float64
    np.testing.assert_allclose(ds.time.values, np.arange(11) * 0.5)
    np.testing.assert_allclose(ds.x.values, np.linspace(0, 40, 81))
    assert ds.x.attrs["long_name"]
    assert ds.v.attrs["long_name"]
    # fixed chunks along time (0.002 MB holds one output of 2 x 81 doubles)
    assert ds.v.encoding["chunks"] == (1, 81)
    assert ds.attrs["status"] == "complete"
    assert ds.attrs["solver"] == "explicit"
    assert ds.attrs["fhnpde_version"] == fhnpde.__version__
    assert ds.attrs["stats"]["steps"] == 100
    # the resolved case is stored and parses back
    again = fhnpde.case.parse_case(fhnpde.case.yaml_load(ds.attrs["case"]))
    assert again.time.dt == case.time.dt
    # the stored final profile is the solver's final state
    problem, solver = build_solver(case)
    final = solver.advance(solver.init(), 0.0, 0.05, 100)
    np.testing.assert_array_equal(ds.v.values[-1], final.v)


def test_chunks_are_fixed_and_many(tmp_path):
    case = make_case(SMALL_CABLE, "time.save_every=0.05", "output.chunk_mb=0.01")
    run_case(case, out=tmp_path / "r.zarr")
    import zarr

    arr = zarr.open_group(str(tmp_path / "r.zarr"), mode="r")["v"]
    per_chunk = int(0.01 * 2**20 // (8 * 81 * 2))
    assert arr.chunks == (per_chunk, 81)
    assert arr.shape == (101, 81)


def test_point_ensemble_layout(tmp_path):
    case = make_case(CELL, "ensemble={size: 7, seed: 2, vary: {I: [0.08, 0.12], v0: [0, 0.8]}}",
                     "time.save_every=1.0")
    run_case(case, out=tmp_path / "p.zarr")
    ds = xr.open_zarr(tmp_path / "p.zarr")
    assert ds.v.dims == ("member", "time")
    assert ds.v.shape == (7, 6)
    assert set(ds.coords) >= {"member", "time", "I", "v0"}
    np.testing.assert_array_equal(ds.v.values[:, 0], ds.v0.values)


class _StopAt:
    """Observer that presses Ctrl-C at a given output time, after checking the store."""

    def __init__(self, t_stop, path):
        self.t_stop, self.path = t_stop, path
        self.seen_running = None

    def start(self, info):
        pass

    def output(self, t, state):
        if t >= self.t_stop:
            self.seen_running = xr.open_zarr(self.path).attrs["status"]
            raise KeyboardInterrupt

    def finish(self, status, stats):
        pass


def test_interrupted_run_keeps_its_outputs(tmp_path):
    path = tmp_path / "i.zarr"
    case = make_case(SMALL_CABLE, "time.save_every=0.5", "output.chunk_mb=0.002")
    stop = _StopAt(2.0, path)
    result = run_case(case, out=path, observers=[stop])
    assert result.status == "interrupted"
    assert stop.seen_running == "running"
    ds = xr.open_zarr(path)
    assert ds.attrs["status"] == "interrupted"
    # outputs 0, 0.5, ..., 1.5 were complete when Ctrl-C arrived at t = 2.0
    np.testing.assert_allclose(ds.time.values, [0.0, 0.5, 1.0, 1.5])
    assert np.isfinite(ds.v.values).all()


def test_blow_up_is_failed_with_exit_1(tmp_path, capsys):
    out = tmp_path / "b.zarr"
    code = main(["run", str(ROOT / "cases" / "divergent.yaml"), "--quiet", "--out", str(out),
                 "--set", "time.dt=0.05", "--set", "solver.force=true",
                 "--set", "time.t_end=100"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.count("\n") == 0
    assert "blew up" in err
    assert "marked failed" in err
    ds = xr.open_zarr(out)
    assert ds.attrs["status"] == "failed"
    assert ds.sizes["time"] >= 1
    assert np.isfinite(ds.v.values).all()  # the non-finite output is not stored
    assert ds.attrs["stats"]["t_reached"] < 100


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT semantics differ on Windows")
def test_ctrl_c_from_the_shell_marks_the_store_interrupted(tmp_path):
    out = tmp_path / "s.zarr"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fhnpde", "run", str(ROOT / "cases" / "divergent.yaml"),
         "--quiet", "--out", str(out), "--set", "time.t_end=1e5", "--set", "output.chunk_mb=0.02",
         "--set", "solver.backend=numpy"],
        stderr=subprocess.PIPE, text=True)
    err = signal_run(proc, out, signal.SIGINT)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted" in err
    ds = xr.open_zarr(out)
    assert ds.attrs["status"] == "interrupted"
    assert ds.sizes["time"] >= 2
    assert np.isfinite(ds.v.values).all()


def test_store_is_running_while_the_run_goes_on(tmp_path):
    path = tmp_path / "m.zarr"
    case = make_case(SMALL_CABLE, "time.save_every=0.5", "output.chunk_mb=0.002")
    problem, solver = build_solver(case)
    from fhnpde.driver import store_writer

    writer = store_writer(case, problem, solver, path)
    seen = []

    class Peek:
        def start(self, info):
            pass

        def output(self, t, state):
            if t in (1.0, 3.0):
                ds = xr.open_zarr(path)
                seen.append((ds.attrs["status"], ds.sizes["time"]))

        def finish(self, status, stats):
            pass

    integrate(solver, solver.init(), case, [writer, Peek()])
    assert seen == [("running", 3), ("running", 7)]
    assert xr.open_zarr(path).attrs["status"] == "complete"


def test_open_run_reads_the_stats(tmp_path):
    run_case(make_case(SMALL_CABLE), out=tmp_path / "o.zarr")
    ds = fhnpde.open_run(tmp_path / "o.zarr")
    assert ds.attrs["stats"]["node_updates"] == 100 * 81


def test_wall_clock_limit_interrupts(tmp_path, capsys):
    out = tmp_path / "w.zarr"
    code = main(["run", str(ROOT / "cases" / "divergent.yaml"), "--quiet", "--out", str(out),
                 "--set", "solver.backend=numpy", "--set", "time.t_end=1e4",
                 "--max-wall", "0.5"])
    assert code == 130
    assert "wall-clock limit of 0.5 s" in capsys.readouterr().err
    ds = xr.open_zarr(out)
    assert ds.attrs["status"] == "interrupted"
    assert 0 < ds.attrs["stats"]["t_reached"] < 1e4
