"""The sweep machinery on sheet members: the template over (member, time, y, x), each
member's region equal to its single run, and the cable-only summaries not measured with the
reason stated in the store."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import yaml

pytest.importorskip("dask", reason="sweeps need dask (the 'distributed' extra)")

from fhnpde import run as run_single  # noqa: E402
from fhnpde.case import load_case  # noqa: E402
from fhnpde.store import open_run  # noqa: E402
from fhnpde.sweep import load_sweep, prepare_store, run_member  # noqa: E402
from tests.test_sheet_case import SHEET  # noqa: E402

BASE = {**copy.deepcopy(SHEET), "name": "sheet_member", "stimuli": [],
        "initial": {"v": {"kind": "gaussian", "center": [4.0, 3.0], "width": 2.5}, "w": 0.0},
        "time": {"t_end": 6.0, "dt": 0.02, "save_every": 0.5}}


def test_sheet_members_run_into_a_sweep_store(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({
        "name": "sheets", "base": "base.yaml", "keep": "fields",
        "vary": {"initial.v.amplitude": {"values": [0.05, 1.0]}}}))
    sweep = load_sweep(tmp_path / "sweep.yaml")
    store = tmp_path / "s.zarr"
    prepare_store(sweep, store, overwrite=False)
    summaries = [run_member(str(store), i, case, 0.3, None, True)
                 for i, case in enumerate(sweep.cases)]
    ds = open_run(store)
    assert ds["v"].dims == ("member", "time", "y", "x")
    assert ds["v"].shape == (2, 13, 13, 21)
    assert ds["y"].attrs["long_name"] == "position along y on the sheet"
    assert "not measured" in ds.attrs["summaries_note"]
    for i, amp in enumerate([0.05, 1.0]):
        ref = run_single(load_case(tmp_path / "base.yaml", [f"initial.v.amplitude={amp}"]),
                         out=tmp_path / f"r{i}.zarr")
        v = open_run(ref.path)["v"].values
        np.testing.assert_allclose(ds["v"].values[i], v, rtol=1e-12, atol=1e-13)
        # pulses: the most upstrokes through 0.3 at one node, read from the single run
        ups = ((v[:-1] <= 0.3) & (v[1:] > 0.3)).sum(axis=0).max()
        assert int(ds["pulses"].values[i]) == ups == summaries[i]["pulses"]
        assert int(ds["propagated"].values[i]) == -1
        assert math.isnan(float(ds["speed"].values[i]))
        assert math.isnan(float(ds["t_arrival"].values[i]))
        assert int(ds["status"].values[i]) == 1
    assert ds["pulses"].values.tolist() == [0, 1]  # the small bump decays, the large fires
