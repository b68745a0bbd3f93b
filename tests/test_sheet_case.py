"""Sheet case files: pairs make a sheet, profiles and stimuli with y extents, their values on
the nodes, and one-line errors naming the key for every misuse of the new keys."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest

from fhnpde.case import CaseError
from fhnpde.problem import build_problem
from tests.helpers import SMALL_CABLE, make_case

SHEET = {
    "name": "sheet",
    "model": {"kinetics": "nagumo", "params": {"k": 1.0, "a": 0.1, "eps": 0.01, "gamma": 0.5}},
    "domain": {"length": [10.0, 6.0], "nx": [21, 13]},
    "initial": {"v": {"kind": "gaussian", "center": [4.0, 3.0], "width": 1.0}, "w": 0.0},
    "stimuli": [{"x": [1.0, 3.0], "y": [2.0, 5.0], "t": [0.0, 1.0], "amplitude": 0.5}],
    "time": {"t_end": 1.0, "dt": 0.01},
    "solver": {"method": "explicit", "backend": "numpy"},
}


def test_pairs_make_a_sheet_and_its_problem():
    case = make_case(SHEET)
    assert case.is_sheet
    assert case.geometry == "sheet"
    assert case.domain.spacings == (0.5, 0.5)
    assert case.domain.size == 21 * 13
    problem = build_problem(case)
    assert problem.geometry == "sheet"
    assert problem.v0.shape == problem.w0.shape == (13, 21)
    assert problem.size == 273
    y, x = np.meshgrid(problem.grid.y, problem.grid.x, indexing="ij")
    np.testing.assert_allclose(problem.v0, np.exp(-((x - 4.0) ** 2 + (y - 3.0) ** 2)),
                               rtol=0, atol=1e-15)


def test_elliptic_gaussian_stripe_and_boxes_on_the_nodes():
    problem = build_problem(make_case(
        SHEET, "initial.v={kind: gaussian, center: [4.0, 3.0], width: [2.0, 0.5]}",
        "initial.w={kind: gaussian, center: 4.0, width: 2.0, base: 0.1}"))
    y, x = np.meshgrid(problem.grid.y, problem.grid.x, indexing="ij")
    np.testing.assert_allclose(problem.v0, np.exp(-((x - 4) / 2) ** 2 - ((y - 3) / 0.5) ** 2),
                               rtol=0, atol=1e-15)
    np.testing.assert_allclose(problem.w0, 0.1 + np.exp(-((x - 4) / 2) ** 2), rtol=0,
                               atol=1e-15)  # a stripe: every row the cable's pulse
    problem = build_problem(make_case(
        SHEET, "initial.v={kind: box, x: [2.0, 4.0], y: [1.0, 2.0], amplitude: 2.0, base: 1.0}",
        "initial.w={kind: box, x: [2.0, 4.0]}"))
    inside = (x >= 2) & (x <= 4) & (y >= 1) & (y <= 2)
    np.testing.assert_array_equal(problem.v0, np.where(inside, 3.0, 1.0))
    np.testing.assert_array_equal(problem.w0, np.where((x >= 2) & (x <= 4), 1.0, 0.0))


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_a_stimulus_box_delivers_its_charge_on_the_sheet(boundary):
    """Cell-averaged boxes: the current integrates to amplitude x area, and a box without y
    covers the whole height; off-node edges included."""
    case = make_case(SHEET, f"domain.boundary={boundary}",
                     "stimuli=[{x: [1.2, 3.3], y: [2.1, 4.6], t: [0.0, 1.0], amplitude: 0.5},"
                     " {x: [6.0, 7.0], t: [0.5, 1.0], amplitude: 2.0}]")
    problem = build_problem(case)
    grid = problem.grid
    first = problem.current.current(0.2)
    assert first.shape == (13, 21)
    assert grid.integral(first) == pytest.approx(0.5 * 2.1 * 2.5, rel=1e-12)
    both = problem.current.current(0.7)
    height = grid.length[1]
    assert grid.integral(both - first) == pytest.approx(2.0 * 1.0 * height, rel=1e-12)
    assert np.all(both[:, 0] == 0.0)
    assert np.ptp(both[:, 13], axis=0) == 0.0  # x = 6.5: the same on every row


def test_a_sheet_run_is_stored_over_time_y_x(tmp_path):
    from fhnpde.driver import run_case
    from fhnpde.store import open_run

    case = make_case(SHEET, f"output.path={tmp_path / 'sheet.zarr'}", "time.save_every=0.5")
    result = run_case(case)
    assert result.status == "complete"
    ds = open_run(tmp_path / "sheet.zarr")
    assert ds["v"].dims == ("time", "y", "x")
    assert ds["v"].shape == (3, 13, 21)
    assert ds["x"].attrs == {"units": "1", "long_name": "position along x on the sheet"}
    assert ds["y"].attrs == {"units": "1", "long_name": "position along y on the sheet"}
    np.testing.assert_array_equal(ds["y"].values, np.arange(13) * 0.5)
    problem = build_problem(case)
    np.testing.assert_array_equal(ds["v"].values[0], problem.v0)
    import fhnpde

    mem = fhnpde.solve(case)
    np.testing.assert_array_equal(mem["v"].values, ds["v"].values)
    assert mem["v"].dims == ("time", "y", "x")


BAD = [
    (["domain.nx=21"], "domain.nx: must be a pair [x, y] like length"),
    (["domain.length=10.0"], "domain.length: must be a pair [x, y] like nx"),
    (["domain.nx=[21, 2]"], "domain.nx"),
    (["domain.nx=[21, 13, 5]"], "domain.nx"),
    (["domain.length=[10.0, 1e-310]"], "domain.length.1: 1e-310 with nx = 13 gives the node "
                                       "spacing dy"),
    (["solver.method=crank-nicolson"], "solver.method: 'crank-nicolson' does not solve sheets; "
                                       "for a sheet use one of explicit, split"),
    (["solver.method=rk4"], "solver.method: 'rk4' solves point models; for a sheet"),
    (["stimuli.0.y=[5.0, 2.0]"], "stimuli.0.y: must be [start, end] with start <= end"),
    (["stimuli.0.x=null"], "stimuli.0.x: is required on a sheet: give [x0, x1]"),
    (["initial.v={kind: gaussian, center: 4.0, width: [1.0, 2.0]}"],
     "initial.v.width: a pair [wx, wy] needs center as a pair [x, y]"),
    (["initial.v={kind: gaussian, center: [4.0, 3.0], width: [1.0, 0.0]}"],
     "initial.v.width"),
    (["initial.v={kind: box, x: [1.0, 2.0], y: [3.0, 1.0]}"],
     "initial.v.y: must be [start, end] with start <= end"),
]


@pytest.mark.parametrize(("sets", "message"), BAD)
def test_bad_sheet_keys_are_one_line_errors_naming_the_key(sets, message):
    with pytest.raises(CaseError) as info:
        make_case(SHEET, *sets)
    text = str(info.value)
    assert "\n" not in text
    assert message in text, text


CABLE_WITH_Y = [
    ("stimuli=[{x: [0.0, 2.0], y: [0.0, 1.0], t: [0.0, 1.0], amplitude: 0.5}]",
     "stimuli.0.y: is a y range on a cable; remove it, or make the domain a sheet "
     "(domain.length and domain.nx as pairs)"),
    ("initial.v={kind: box, x: [0.0, 2.0], y: [0.0, 1.0]}", "initial.v.y: is a y range on a "
                                                            "cable"),
    ("initial.w={kind: gaussian, center: [1.0, 2.0], width: 1.0}",
     "initial.w.center: is a pair [x, y] on a cable"),
]


@pytest.mark.parametrize(("setting", "message"), CABLE_WITH_Y)
def test_a_y_extent_on_a_cable_is_an_error(setting, message):
    with pytest.raises(CaseError) as info:
        make_case(SMALL_CABLE, setting)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_y_range_without_a_domain_is_an_error():
    from tests.helpers import CELL

    with pytest.raises(CaseError, match=r"stimuli\.0\.y: has no meaning without a domain"):
        make_case(CELL, "stimuli=[{y: [0.0, 1.0], t: [0.0, 1.0], amplitude: 0.5}]")


def test_the_cli_exits_2_on_a_bad_sheet_key(tmp_path):
    import yaml

    data = copy.deepcopy(SHEET)
    data["domain"]["nx"] = 21
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = subprocess.run([sys.executable, "-m", "fhnpde", "run", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "domain.nx: must be a pair [x, y] like length" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.fixture
def sheet_store(tmp_path):
    from fhnpde.driver import run_case

    path = tmp_path / "sheet.zarr"
    run_case(make_case(SHEET, f"output.path={path}", "time.save_every=0.25"))
    return path


def test_plot_draws_snapshots_and_a_gif_movie(sheet_store, tmp_path):
    from PIL import Image

    from fhnpde.plotting import plot_store

    png, gif = tmp_path / "s.png", tmp_path / "s.gif"
    assert plot_store(sheet_store, png, movie=gif) == png
    assert Image.open(png).size[0] > 400
    with Image.open(gif) as movie:
        assert movie.n_frames == 5  # one frame per output: t = 0, 0.25, ..., 1
        first = np.asarray(movie.convert("L"))
        movie.seek(4)
        last = np.asarray(movie.convert("L"))
    assert np.abs(first.astype(int) - last).max() > 10  # the frames differ: v changed


def test_movie_errors_are_one_line_and_exit_2(sheet_store, tmp_path):
    from fhnpde.plotting import plot_store

    with pytest.raises(CaseError, match=r"--movie: .*has extension \.avi; an animation is "
                                        r"written as \.gif or \.mp4"):
        plot_store(sheet_store, tmp_path / "s.png", movie=tmp_path / "s.avi")
    from fhnpde.driver import run_case

    cable = tmp_path / "cable.zarr"
    run_case(make_case(SMALL_CABLE, f"output.path={cable}"))
    with pytest.raises(CaseError, match="--movie: animations are drawn of sheet stores"):
        plot_store(cable, tmp_path / "c.png", movie=tmp_path / "c.gif")
    proc = subprocess.run([sys.executable, "-m", "fhnpde", "plot", str(sheet_store), "--movie",
                           str(tmp_path / "x.webm")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "--movie" in proc.stderr
