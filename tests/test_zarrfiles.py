"""The zarr v3 files fhnpde writes without zarr (fhnpde.zarrfiles), read back by zarr and
xarray: appends across chunk boundaries, shrinking, the layouts of runs, data types."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from fhnpde.zarrfiles import ZarrGroupFiles

ROOT = Path(__file__).resolve().parents[1]


def _group(path: Path) -> ZarrGroupFiles:
    g = ZarrGroupFiles(path)
    g.create({"title": "t", "nan": float("nan"), "nested": {"a": [1, 2]}})
    g.create_array("x", (5,), (5,), "f8", ["x"], {"units": "1"}, data=np.linspace(0, 1, 5))
    g.create_array("time", (0,), (3,), "f8", ["time"], {}, fill=np.nan)
    g.create_array("v", (0, 5), (3, 5), "f8", ["time", "x"], {"long_name": "v"}, fill=np.nan)
    g.create_array("sheet", (0, 2, 5), (3, 2, 5), "f4", ["time", "y", "x"], {}, fill=np.nan)
    g.create_array("m", (4, 0), (4, 3), "f8", ["member", "time"], {}, fill=np.nan, axis=1)
    g.create_array("mask", (0, 5), (3, 5), "bool", ["time", "x"], {})
    g.create_array("count", (0,), (3,), "i8", ["time"], {})
    g.consolidate()
    return g


@pytest.mark.parametrize("pieces", [(2, 4, 1, 1), (3, 3, 2), (8,), (1,) * 8, (5, 3)])
def test_appends_read_back_through_zarr_and_xarray_after_every_flush(tmp_path, pieces):
    rng = np.random.default_rng(len(pieces))
    v, m = rng.random((8, 5)), rng.random((4, 8))
    sheet = rng.random((8, 2, 5)).astype("f4")
    g = _group(tmp_path / "g.zarr")
    pos = 0
    for n in pieces:
        for name in ("time", "v", "sheet", "m", "mask", "count"):
            g[name].resize(pos + n)
        g["time"].write(pos, np.arange(pos, pos + n) / 2)
        g["v"].write(pos, v[pos:pos + n])
        g["sheet"].write(pos, sheet[pos:pos + n])
        g["m"].write(pos, m[:, pos:pos + n])
        g["mask"].write(pos, v[pos:pos + n] > 0.5)
        g["count"].write(pos, np.arange(pos, pos + n))
        g.consolidate()
        pos += n
        ds = xr.open_zarr(tmp_path / "g.zarr")  # consolidated metadata
        np.testing.assert_array_equal(ds.v.values, v[:pos])
        np.testing.assert_array_equal(ds.sheet.values, sheet[:pos])
        np.testing.assert_array_equal(ds.m.values, m[:, :pos])
        np.testing.assert_array_equal(ds.mask.values, v[:pos] > 0.5)
        np.testing.assert_array_equal(ds["count"].values, np.arange(pos))
        np.testing.assert_array_equal(ds.time.values, np.arange(pos) / 2)
        assert ds.v.dims == ("time", "x")
        assert ds.m.dims == ("member", "time")
        assert ds.sheet.dtype == np.float32
        assert ds.mask.dtype == bool
        z = zarr.open_group(str(tmp_path / "g.zarr"), mode="r", use_consolidated=False)
        np.testing.assert_array_equal(z["v"][:], v[:pos])  # each array's own metadata
        assert z["v"].chunks == (3, 5)
        assert z["m"].chunks == (4, 3)
        assert z["v"].fill_value is not None
        assert np.isnan(z["v"].fill_value)
    assert np.isnan(ds.attrs["nan"])
    assert ds.attrs["nested"] == {"a": [1, 2]}
    np.testing.assert_array_equal(ds.x.values, np.linspace(0, 1, 5))
    assert ds.x.attrs == {"units": "1"}
    assert ds.v.attrs == {"long_name": "v"}


def test_shrinking_removes_the_chunks_beyond_and_keeps_the_rest(tmp_path):
    g = _group(tmp_path / "g.zarr")
    v = np.arange(40.0).reshape(8, 5)
    g["v"].resize(8)
    g["v"].write(0, v)
    g["v"].resize(4)
    g.consolidate()
    chunks = sorted(p.relative_to(tmp_path / "g.zarr/v").as_posix()
                    for p in (tmp_path / "g.zarr/v/c").rglob("*") if p.is_file())
    assert chunks == ["c/0/0", "c/1/0"]
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "g.zarr/v"))[:], v[:4])
    g["v"].resize(6)  # grows again: the kept part of chunk 1 is completed, not refilled
    g["v"].write(4, v[4:6] + 100)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "g.zarr/v"))[:],
                                  np.concatenate([v[:4], v[4:6] + 100]))


def test_the_metadata_is_what_zarr_itself_writes(tmp_path):
    ours = _group(tmp_path / "ours.zarr")
    ours["v"].resize(4)
    ours["v"].write(0, np.ones((4, 5)))
    theirs = zarr.open_group(str(tmp_path / "theirs.zarr"), mode="w", zarr_format=3)
    arr = theirs.create_array("v", shape=(4, 5), chunks=(3, 5), dtype="f8",
                              dimension_names=["time", "x"], fill_value=np.nan,
                              attributes={"long_name": "v"},
                              compressors=[zarr.codecs.Crc32cCodec()])
    arr[:] = 1.0
    mine = json.loads((tmp_path / "ours.zarr/v/zarr.json").read_text())
    zarrs = json.loads((tmp_path / "theirs.zarr/v/zarr.json").read_text())
    assert mine == zarrs
    for key in ("c/0/0", "c/1/0"):
        assert (tmp_path / "ours.zarr/v" / key).read_bytes() == \
            (tmp_path / "theirs.zarr/v" / key).read_bytes()


def test_writes_outside_the_shape_and_other_dtypes_are_refused(tmp_path):
    g = _group(tmp_path / "g.zarr")
    g["v"].resize(2)
    with pytest.raises(ValueError, match="outside its length 2"):
        g["v"].write(1, np.zeros((2, 5)))
    with pytest.raises(ValueError, match="booleans, integers and floats"):
        g.create_array("s", (2,), (2,), "U3", ["s"], {})
    with pytest.raises(ValueError, match="only axis 0 may have several chunks"):
        g.create_array("bad", (0, 6), (3, 5), "f8", ["time", "x"], {})


def test_a_run_does_not_import_zarr(tmp_path):
    code = (
        "import sys, fhnpde\n"
        "from fhnpde.case import load_case\n"
        "from fhnpde.driver import run_case\n"
        f"case = load_case({str(ROOT / 'cases/divergent.yaml')!r})\n"
        "case = case.with_changes({'time.t_end': 5.0, 'solver.backend': 'numpy'})\n"
        f"r = run_case(case, out={str(tmp_path / 'r.zarr')!r})\n"
        "assert r.status == 'complete', r.status\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('zarr', 'numcodecs')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"
    ds = xr.open_zarr(tmp_path / "r.zarr")
    assert ds.attrs["status"] == "complete"
    assert ds.v.shape == (6, 801)
