"""The Python API (DESIGN §8): fhnpde.solve, Case.from_dict, Case.with_changes."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

import fhnpde
from fhnpde.cli import main
from tests.helpers import CELL, SMALL_CABLE

ROOT = Path(__file__).resolve().parents[1]
CASES = sorted(p for p in (ROOT / "cases").glob("*.yaml")
               if "base" not in yaml.safe_load(p.read_text()))  # sweep files name a base


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_solve_gives_what_run_stores_on_every_shipped_case(path, tmp_path, capsys):
    if "neural" in path.stem:
        pytest.importorskip("onnxruntime", reason="the neural case needs onnxruntime")
    store = tmp_path / "run.zarr"
    assert main(["run", str(path), "--quiet", "--out", str(store)]) == 0
    stored = xr.open_zarr(store)
    ds = fhnpde.solve(path)
    assert ds.attrs["status"] == stored.attrs["status"] == "complete"
    assert set(ds.data_vars) == set(stored.data_vars)
    assert set(ds.coords) == set(stored.coords)
    for name in (*ds.data_vars, *ds.coords):
        assert ds[name].dims == stored[name].dims, name
        assert ds[name].dtype == stored[name].dtype, name
        np.testing.assert_array_equal(ds[name].values, stored[name].values, err_msg=name)
        assert ds[name].attrs == stored[name].attrs, name
    for key in ("fhnpde_version", "case", "solver", "title", "description"):
        assert ds.attrs[key] == stored.attrs[key]
    assert ds.attrs["stats"]["steps"] == stored.attrs["stats"]["steps"]


def test_solve_with_a_store_returns_the_store(tmp_path):
    store = tmp_path / "s.zarr"
    ds = fhnpde.solve(SMALL_CABLE, store=store)
    assert ds.attrs["status"] == "complete"
    np.testing.assert_array_equal(ds.v.values, xr.open_zarr(store).v.values)
    with pytest.raises(fhnpde.CaseError, match="already exists"):
        fhnpde.solve(SMALL_CABLE, store=store)
    assert fhnpde.solve(SMALL_CABLE, store=store, overwrite=True).attrs["status"] == "complete"


def test_mapping_and_case_and_with_changes():
    case = fhnpde.Case.from_dict(SMALL_CABLE)
    assert case.output.path == "runs/small_cable.zarr"
    finer = case.with_changes({"time.dt": 0.025, "solver.method": "crank-nicolson"})
    assert (finer.time.dt, finer.solver.method) == (0.025, "crank-nicolson")
    assert (case.time.dt, case.solver.method) == (0.05, "explicit")  # unchanged
    a = fhnpde.solve(case)
    b = fhnpde.solve(copy.deepcopy(SMALL_CABLE))
    np.testing.assert_array_equal(a.v.values, b.v.values)
    c = fhnpde.solve(finer)
    assert c.attrs["solver"] == "crank-nicolson"
    assert c.attrs["stats"]["steps"] == 200
    # two schemes on the same cable agree to their time error (explicit: first order)
    assert float(abs(c.v[-1] - a.v[-1]).max()) < 5e-3


def test_bad_input_raises_case_error_with_the_key():
    case = fhnpde.Case.from_dict(SMALL_CABLE)
    with pytest.raises(fhnpde.CaseError) as info:
        case.with_changes({"time.dt": -0.1})
    assert info.value.key == "time.dt"
    with pytest.raises(fhnpde.CaseError) as info:
        fhnpde.solve({**SMALL_CABLE, "time": {"t_end": 5.0, "dt": 0.2}})
    assert info.value.key == "time.dt"
    assert "stability limit" in str(info.value)
    with pytest.raises(fhnpde.CaseError) as info:
        case.with_changes({"domain.lenght": 10.0})
    assert info.value.key == "domain.lenght"
    with pytest.raises(fhnpde.CaseError, match="takes a Case"):
        fhnpde.solve(42)


def test_a_blow_up_returns_the_outputs_before_it():
    ds = fhnpde.solve(fhnpde.Case.from_dict(SMALL_CABLE).with_changes(
        {"time.dt": 0.5, "solver.force": True, "time.t_end": 50.0, "time.save_every": 0.5}))
    assert ds.attrs["status"] == "failed"
    assert "blew up" in ds.attrs["message"]
    assert 1 <= ds.sizes["time"] < 101
    assert np.isfinite(ds.v.values).all()
    assert ds.attrs["stats"]["t_reached"] < 50.0


def test_point_ensemble_layout_in_memory():
    ds = fhnpde.solve(fhnpde.Case.from_dict(CELL).with_changes(
        {"ensemble": {"size": 5, "seed": 1, "vary": {"I": [0.08, 0.12]}},
         "time.save_every": 1.0}))
    assert ds.v.dims == ("member", "time")
    assert ds.v.shape == (5, 6)
    assert ds.I.dims == ("member",)
    assert ds.attrs["status"] == "complete"


def test_memory_estimate_refuses_what_would_not_fit(monkeypatch):
    from fhnpde import resources

    monkeypatch.setattr(resources, "available_memory", lambda: 10 * 2**20)
    case = fhnpde.Case.from_dict(SMALL_CABLE).with_changes({"time.save_every": 0.05,
                                                           "time.t_end": 500.0})
    with pytest.raises(fhnpde.CaseError, match="outputs kept in memory"):
        fhnpde.solve(case)
