"""Store integrity (fhnpde/storecheck.py) and what ``plot`` makes of damaged stores and bad
``--out`` paths.

Every damage a disk or a hand can do to a store is made here on a real store, and each must
be refused with one :class:`CaseError` that names the file (the chunk, the array, the
metadata) instead of a traceback or a picture of NaN. Stores that are whole but unusual (a
run that blew up, one interrupted, an adaptive run with its per-output mask and counts, a
sweep with pending members and NaN speeds) must pass: zarr leaves out chunks that hold only
the fill value, and those are not damage.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fhnpde.case import CaseError
from fhnpde.driver import run_case
from fhnpde.storecheck import check_store, sweep_statuses
from tests.helpers import CELL, SMALL_CABLE, make_case

# 81 nodes, 11 outputs, 3 outputs per chunk: chunks c/0 .. c/3 along time
CHUNKED = ("time.save_every=0.5", "output.chunk_mb=0.004")


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> Path:
    """A whole cable store ``c.zarr`` and a point store ``p.zarr``, copied by each test."""
    root = tmp_path_factory.mktemp("stores")
    run_case(make_case(SMALL_CABLE, *CHUNKED), out=root / "c.zarr")
    run_case(make_case(CELL, "ensemble={size: 4, vary: {v0: [0, 0.8]}}", "time.save_every=0.5",
                       "output.chunk_mb=0.0001"), out=root / "p.zarr")
    return root


@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory) -> Path:
    """A 4-member sweep store with fields kept, written in this process (no cluster):
    members 0-2 complete, member 3 pending, the tally written as the sweep writes it."""
    import yaml

    from fhnpde.store import set_attrs
    from fhnpde.sweep import load_sweep, run_member, write_template

    root = tmp_path_factory.mktemp("sweep")
    base = make_case(SMALL_CABLE, "time.save_every=1.0").to_dict()
    base.pop("output")
    (root / "base.yaml").write_text(yaml.safe_dump(base))
    (root / "sweep.yaml").write_text(yaml.safe_dump({
        "name": "s", "base": "base.yaml", "keep": "fields",
        "vary": {"initial.v.amplitude": {"values": [0.1, 0.6, 1.0, 1.2]}}}))
    sweep = load_sweep(root / "sweep.yaml")
    path = root / "s.zarr"
    write_template(sweep, path)
    for i in range(3):
        run_member(str(path), i, sweep.cases[i], 0.3, None, True)
    set_attrs(path, status="failed", members_complete=3, members_failed=0, members_pending=1)
    return path


def copy_of(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def refused(path, *words: str) -> str:
    with pytest.raises(CaseError) as info:
        check_store(path)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message


# --- damage is refused, naming the file ---------------------------------------------------


def test_a_whole_store_passes_and_reports_its_layout(stores):
    assert check_store(stores / "c.zarr").layout == "cable"
    assert check_store(stores / "p.zarr").layout == "point"
    info = check_store(stores / "c.zarr")
    assert info.arrays["v"].grid == (4, 1)
    assert info.arrays["v"].key((2, 0)) == "c/2/0"


@pytest.mark.parametrize("name", ["v/c/2/0", "w/c/0/0", "time/c/3", "x/c/0"])
def test_a_deleted_chunk_is_named_with_the_outputs_it_held(stores, tmp_path, name):
    path = copy_of(stores / "c.zarr", tmp_path)
    (path / name).unlink()
    message = refused(path, name, "missing", "--overwrite")
    if name.startswith(("v", "w")):
        k = int(name.split("/")[2])
        assert f"time {3 * k} to {3 * k + 2}" in message


def test_a_deleted_chunk_of_a_point_store_is_named(stores, tmp_path):
    path = copy_of(stores / "p.zarr", tmp_path)
    victim = sorted((path / "v" / "c").rglob("*"))[-1]
    victim.unlink()
    refused(path, "v/" + victim.relative_to(path / "v").as_posix())


def test_many_deleted_chunks_are_counted(stores, tmp_path):
    path = copy_of(stores / "c.zarr", tmp_path)
    for k in range(4):
        (path / "w" / "c" / str(k) / "0").unlink()
    refused(path, "4 chunk files", "'w'", "and 1 more")


@pytest.mark.parametrize("text", [b"", b"{", b'{"attributes": {"fhnpde_version"', b"\xff\xfe",
                                  b"[1, 2]", b"[" * 100_000 + b"]" * 100_000])
def test_a_broken_root_zarr_json_is_named(stores, tmp_path, text):
    path = copy_of(stores / "c.zarr", tmp_path)
    (path / "zarr.json").write_bytes(text)
    refused(path, "zarr.json", "damaged")


def test_a_truncated_array_zarr_json_is_named(stores, tmp_path):
    path = copy_of(stores / "c.zarr", tmp_path)
    meta = path / "v" / "zarr.json"
    meta.write_bytes(meta.read_bytes()[:100])
    refused(path, "v/zarr.json", "not valid JSON")


def test_an_array_with_an_invalid_shape_is_named(stores, tmp_path):
    path = copy_of(stores / "c.zarr", tmp_path)
    meta = path / "v" / "zarr.json"
    data = json.loads(meta.read_text())
    data["shape"] = [-1, 81]
    meta.write_text(json.dumps(data))
    refused(path, "'v'", "shape")


def test_a_deleted_array_is_named(stores, tmp_path):
    path = copy_of(stores / "c.zarr", tmp_path)
    shutil.rmtree(path / "w")
    refused(path, "'w'", "missing")


def test_not_a_store_foreign_and_version_2_stores_are_told_apart(stores, tmp_path):
    import xarray as xr

    refused(tmp_path / "none.zarr", "is not a zarr store", "nothing exists")
    (tmp_path / "file.zarr").write_text("x")
    refused(tmp_path / "file.zarr", "is a file")
    (tmp_path / "empty").mkdir()
    refused(tmp_path / "empty", "no zarr.json")
    ds = xr.Dataset({"temperature": (("a",), np.arange(3.0))})
    ds.to_zarr(tmp_path / "v3.zarr", zarr_format=3, consolidated=False)
    refused(tmp_path / "v3.zarr", "fhnpde did not write", "xarray.open_zarr")
    ds.to_zarr(tmp_path / "v2.zarr", zarr_format=2)
    refused(tmp_path / "v2.zarr", "version 2")


def test_a_chunk_that_does_not_decode_is_named_when_plotted(stores, tmp_path):
    from fhnpde.plotting import plot_store

    for damage in (lambda b: b[:20], lambda b: b"", lambda b: b[::-1]):
        path = copy_of(stores / "c.zarr", tmp_path / str(id(damage)))
        chunk = path / "v" / "c" / "1" / "0"
        chunk.write_bytes(damage(chunk.read_bytes()))
        check_store(path)  # the listing is whole: only reading the bytes shows it
        with pytest.raises(CaseError) as info:
            plot_store(path, tmp_path / "p.png")
        assert "v/c/1/0 (time 3 to 5)" in str(info.value)
        assert not (tmp_path / "p.png").exists()


def test_open_run_refuses_a_damaged_store(stores, tmp_path):
    from fhnpde import open_run

    path = copy_of(stores / "c.zarr", tmp_path)
    (path / "v" / "c" / "1" / "0").unlink()
    with pytest.raises(CaseError, match="v/c/1/0"):
        open_run(path)


# --- whole but unusual stores pass ----------------------------------------------------------


def test_a_run_that_blew_up_passes_and_plots(tmp_path):
    from fhnpde.plotting import plot_store

    case = make_case(SMALL_CABLE, *CHUNKED, "time.dt=0.5", "solver.force=true",
                     "time.t_end=200.0", "time.save_every=2.0")
    with np.errstate(all="ignore"):
        result = run_case(case, out=tmp_path / "b.zarr")
    assert result.status == "failed"
    check_store(tmp_path / "b.zarr")
    assert plot_store(tmp_path / "b.zarr", tmp_path / "b.png").stat().st_size > 0


def test_an_interrupted_run_passes(tmp_path):
    class StopAtThirdOutput:
        def start(self, info):
            self.n = 0

        def output(self, t, state):
            self.n += 1
            if self.n == 5:
                raise KeyboardInterrupt("test")

        def finish(self, status, stats):
            pass

    result = run_case(make_case(SMALL_CABLE, *CHUNKED), out=tmp_path / "i.zarr",
                      observers=[StopAtThirdOutput()])
    assert result.status == "interrupted"
    info = check_store(tmp_path / "i.zarr")
    assert info.arrays["v"].shape[0] == 4


def test_an_adaptive_run_with_its_extra_per_output_arrays_passes(tmp_path):
    pytest.importorskip("numba")
    case = make_case(SMALL_CABLE, "solver.method=adaptive", "solver.backend=numba",
                     "domain.nx=161", "time.dt=0.01", "time.t_end=4.0", "time.save_every=0.5",
                     "output.chunk_mb=0.002", "solver.adaptive.coarse_dx=4.0",
                     "solver.adaptive.wave_dx=1.0", "solver.adaptive.fine_dx=0.25")
    run_case(case, out=tmp_path / "a.zarr")
    info = check_store(tmp_path / "a.zarr")
    assert "active_mask" in info.arrays


def test_a_sweep_with_a_pending_member_and_nan_speeds_passes(sweep_store):
    import xarray as xr

    info = check_store(sweep_store)
    assert info.layout == "sweep"
    np.testing.assert_array_equal(sweep_statuses(sweep_store), [1, 1, 1, 0])
    ds = xr.open_zarr(sweep_store)
    assert np.isnan(ds["speed"].values).any()  # NaN speeds: chunks absent, not damage
    assert not (sweep_store / "v" / "c" / "3").exists()  # the pending member wrote nothing


# --- sweep stores ---------------------------------------------------------------------------


def test_a_sweep_without_its_status_array_is_refused_by_every_reader(sweep_store, tmp_path):
    from fhnpde.sweep import member_statuses, open_attrs

    path = copy_of(sweep_store, tmp_path)
    shutil.rmtree(path / "status")
    refused(path, "'status'")
    with pytest.raises(CaseError, match="'status' is missing"):
        member_statuses(path)
    assert open_attrs(path)["layout"] == "sweep"
    (path / "zarr.json").write_text("{")
    with pytest.raises(CaseError, match="zarr.json is not valid JSON"):
        open_attrs(path)


def test_a_sweep_missing_a_finished_members_chunk_is_refused(sweep_store, tmp_path):
    path = copy_of(sweep_store, tmp_path)
    (path / "t_reached" / "c" / "1").unlink()
    refused(path, "t_reached/c/1 (member 1)")
    path = copy_of(sweep_store, tmp_path / "b")
    (path / "v" / "c" / "2" / "0" / "0").unlink()
    refused(path, "v/c/2/0/0 (member 2)")


def test_a_sweep_that_lost_status_chunks_is_refused(sweep_store, tmp_path):
    path = copy_of(sweep_store, tmp_path)
    (path / "status" / "c" / "1").unlink()
    refused(path, "status/c/1 (member 1)", "2 finished members", "recorded 3")


def test_a_sweep_status_chunk_that_does_not_decode_is_named(sweep_store, tmp_path):
    path = copy_of(sweep_store, tmp_path)
    (path / "status" / "c" / "0").write_bytes(b"junk")
    with pytest.raises(CaseError, match=r"status/c/0 \(member 0\)"):
        sweep_statuses(path)


# --- plot --out -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("out", "words"),
    [
        ("p.foo", ["extension .foo", "png", "pdf"]),
        ("p", ["no extension"]),
        ("a_file.txt/p.png", ["a_file.txt is a file"]),
        ("a_file.txt/deeper/p.png", ["a_file.txt is a file"]),
        ("folder/", ["names a folder"]),
        ("a_dir.png", ["is a folder"]),
        ("x" * 5000 + ".png", ["5004 characters", "File name too long"]),
        ("p\x00.png", ["NUL byte"]),
    ],
)
def test_plot_refuses_a_bad_out_before_drawing(stores, tmp_path, monkeypatch, out, words):
    from fhnpde.plotting import plot_store

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file.txt").write_text("keep me")
    (tmp_path / "a_dir.png").mkdir()
    with pytest.raises(CaseError) as info:
        plot_store(stores / "c.zarr", out)
    for word in words:
        assert word in str(info.value)
    assert str(info.value).startswith("--out: ")
    assert (tmp_path / "a_file.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_dir.png", "a_file.txt"]


@pytest.mark.parametrize("ext", ["png", "PDF", "svg"])
def test_plot_writes_the_format_its_extension_names(stores, tmp_path, ext):
    from fhnpde.plotting import plot_store

    out = plot_store(stores / "c.zarr", tmp_path / "deeper" / f"p.{ext}")
    head = out.read_bytes()[:8]
    magic = {"png": b"\x89PNG", "pdf": b"%PDF", "svg": b"<?xml"}[ext.lower()]
    assert head.startswith(magic)


def test_plot_default_out_is_beside_the_store(stores, tmp_path):
    from fhnpde.plotting import default_out

    assert default_out("runs/a.zarr") == Path("runs/a.png")
    assert default_out("runs/a.zarr/") == Path("runs/a.png")
    assert default_out(".").name == Path.cwd().with_suffix(".png").name
