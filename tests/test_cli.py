"""Commands: plot, info, and what `import fhnpde` loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from fhnpde.cli import main
from fhnpde.driver import run_case
from fhnpde.plotting import pulse_positions
from tests.helpers import CELL, SMALL_CABLE, make_case

ROOT = Path(__file__).resolve().parents[1]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_plot_cable_and_point(tmp_path, capsys):
    run_case(make_case(SMALL_CABLE, "time.save_every=0.5"), out=tmp_path / "c.zarr")
    run_case(make_case(CELL, "ensemble={size: 5, vary: {v0: [0, 0.8]}}",
                       "time.save_every=0.1"), out=tmp_path / "p.zarr")
    for name in ("c", "p"):
        out = tmp_path / f"{name}.png"
        assert main(["plot", str(tmp_path / f"{name}.zarr"), "--out", str(out)]) == 0
        w, h = _png_size(out)
        assert w > 800
        assert h > 400


def test_plot_missing_store_is_bad_input(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "none.zarr")]) == 2
    assert "is not a zarr store" in capsys.readouterr().err


def test_pulse_positions_finds_each_peak():
    x = np.linspace(0, 100, 1001)
    v = np.exp(-((x - 20) / 2) ** 2) + 0.8 * np.exp(-((x - 70) / 2) ** 2)
    np.testing.assert_allclose(pulse_positions(v, x, 0.3), [20.0, 70.0])
    assert pulse_positions(0 * v, x).size == 0


def test_info_lists_versions_and_backends(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    import numpy

    assert f"numpy          {numpy.__version__}" in out
    assert "numba          yes" in out
    assert "CUDA GPU" in out


def test_import_fhnpde_is_light():
    code = ("import sys, fhnpde, fhnpde.case, fhnpde.models; "
            "heavy = [m for m in ('numba', 'cupy', 'torch', 'xarray', 'zarr', 'matplotlib', "
            "'onnxruntime', 'tensorrt', 'dask') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_usage_errors_exit_2(capsys):
    import pytest

    with pytest.raises(SystemExit) as info:
        main(["run"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_level_crossings_interpolates_fronts_and_backs():
    from fhnpde.plotting import level_crossings

    x = np.linspace(0, 10, 11)
    v = np.array([0, 0, 0.2, 0.4, 0.8, 0.8, 0.4, 0.2, 0, 0, 0], dtype=float)
    np.testing.assert_allclose(level_crossings(v, x, 0.3), [2.5, 6.5])
