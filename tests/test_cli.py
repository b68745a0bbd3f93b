"""Commands: plot, info, and what `import fhnpde` loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fhnpde.cli import main
from fhnpde.driver import run_case
from fhnpde.plotting import pulse_positions
from tests.helpers import CELL, SMALL_CABLE, make_case

ROOT = Path(__file__).resolve().parents[1]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_plot_cable_and_point(tmp_path, capsys, monkeypatch):
    """The pictures show the stored numbers: the space-time mesh is v, the pulse peaks lie on
    the travelling pulses, the profiles and trajectories are the stored curves."""
    import matplotlib.figure
    import xarray as xr

    drawn = {}
    real_savefig = matplotlib.figure.Figure.savefig

    def keep(fig, out, *args, **kwargs):
        drawn[Path(out).stem] = [
            {"title": ax.get_title(), "labels": (ax.get_xlabel(), ax.get_ylabel()),
             "mesh": [np.asarray(c.get_array()) for c in ax.collections
                      if hasattr(c, "get_coordinates")],
             "lines": [(np.asarray(ln.get_xdata(), float), np.asarray(ln.get_ydata(), float),
                        ln.get_label()) for ln in ax.get_lines()]}
            for ax in fig.axes]
        return real_savefig(fig, out, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    cable = make_case(SMALL_CABLE, "time.save_every=0.5", "time.t_end=40.0",
                      "domain.length=80.0", "domain.nx=161", "initial.v.center=40.0")
    run_case(cable, out=tmp_path / "c.zarr")
    run_case(make_case(CELL, "ensemble={size: 5, vary: {v0: [0, 0.8]}}",
                       "time.save_every=0.1"), out=tmp_path / "p.zarr")
    for name in ("c", "p"):
        out = tmp_path / f"{name}.png"
        assert main(["plot", str(tmp_path / f"{name}.zarr"), "--out", str(out)]) == 0
        w, h = _png_size(out)
        assert w > 800
        assert h > 400

    c = xr.open_zarr(tmp_path / "c.zarr")
    space_time, profiles = drawn["c"][0], drawn["c"][2]
    assert space_time["labels"] == ("x", "t")
    assert "[complete]" in space_time["title"]
    np.testing.assert_array_equal(space_time["mesh"][0].reshape(c.v.shape), c.v.values)
    px, pt, _ = next(ln for ln in space_time["lines"] if "pulse peaks" in ln[2])
    late = pt == c.time.values[-1]  # two pulses, symmetric about the centre, moving apart
    assert late.sum() == 2
    np.testing.assert_allclose(np.sort(px[late]) - 40.0, [-px[late].max() + 40.0,
                                                          px[late].max() - 40.0], atol=0.5)
    early = pt == 32.0
    assert np.ptp(px[late]) > np.ptp(px[early]) > 0
    for _, vs, label in profiles["lines"]:
        k = int(np.flatnonzero(c.time.values == float(label.split("= ")[1]))[0])
        np.testing.assert_array_equal(vs, c.v.values[k])

    p = xr.open_zarr(tmp_path / "p.zarr")
    trajectories, phase = drawn["p"][0], drawn["p"][1]
    assert trajectories["labels"] == ("t", "v")
    assert phase["labels"] == ("v", "w")
    assert len(trajectories["lines"]) == 5
    for m, (ts, vs, _) in enumerate(trajectories["lines"]):
        np.testing.assert_array_equal(ts, p.time.values)
        np.testing.assert_array_equal(vs, p.v.values[m])
    np.testing.assert_array_equal(phase["lines"][0][1], p.w.values[0])


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


def test_the_run_command_imports_only_what_a_run_needs(tmp_path):
    """``python -m fhnpde run`` (explicit, then crank-nicolson) adds to what ``import
    fhnpde`` loaded no other command's modules (studies, cluster, sweeps, fits), no other
    solver's module, and neither sockets, temporary files, logging, threads nor OpenSSL."""
    code = ("import sys, fhnpde\n"
            "before = set(sys.modules)\n"
            "from fhnpde.cli import main\n"
            f"args = ['run', 'cases/divergent.yaml', '--quiet', '--overwrite', '--set', "
            f"'time.t_end=2', '--out', {str(tmp_path / 'r.zarr')!r}]\n"
            "assert main(args) == 0\n"
            "assert main([*args, '--set', 'solver.method=crank-nicolson']) == 0\n"
            "print(sorted(m for m in set(sys.modules) - before if m.startswith(("
            "'fhnpde.studies', "
            "'fhnpde.cluster', 'fhnpde.sweep', 'fhnpde.gradients', 'fhnpde.solvers.', 'logging', "
            "'socket', '_hashlib', 'tempfile', 'threading'))))\n")
    # the first process compiles the kernels if the cache is cold (importing numba)
    outs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, cwd=ROOT).stdout.strip() for _ in range(2)]
    assert outs[1] == str(sorted(["fhnpde.solvers.base", "fhnpde.solvers.options",
                              "fhnpde.solvers.explicit", "fhnpde.solvers.crank_nicolson",
                              "fhnpde.solvers.ode"]))


@pytest.mark.parametrize("argv", [
    ["run", "--help"], ["run"], ["run", "a.yaml", "--max-wall", "0"],
    ["run", "a.yaml", "--frob"], ["run", "a.yaml", "extra"],
    ["run", "a.yaml", "--set", "time.dt=1", "--set", "x=2", "--overwrite", "--quiet", "--force",
     "--out", "o.zarr", "--max-wall", "5"],
])
def test_the_run_parser_alone_parses_as_the_whole_parser(argv, capsys):
    """What :func:`main` builds for ``run`` (the run command alone) answers every command line
    that starts with ``run`` as the whole parser does: the same values, help and errors."""
    from fhnpde.cli import build_parser

    answers = []
    for parser in (build_parser(), build_parser("run")):
        try:
            args = vars(parser.parse_args(argv))
            answers.append(("parsed", {k: v for k, v in args.items() if k != "func"},
                            args["func"].__name__))
        except SystemExit as exc:
            answers.append(("exit", exc.code))
        answers.append(capsys.readouterr())
    assert answers[:2] == answers[2:]


def test_the_commands_are_the_parsers():
    from fhnpde.cli import COMMANDS, build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert tuple(sub.choices) == COMMANDS


EXIT_PROBE = """
import atexit, os, sys, threading, time
from fhnpde.cli import exit_process

class Torn:
    def __del__(self, write=os.write):  # the module's globals may be gone by then
        write(1, b" torn down")

torn = Torn()
atexit.register(lambda: print("atexit ran"))
mode = sys.argv[1]
if mode == "thread":
    threading.Thread(target=lambda: (time.sleep(0.2), print("thread done"))).start()
if mode == "profiled":
    sys.setprofile(lambda *a: None)
print("out", end="")
print("err", end="", file=sys.stderr)
exit_process(3)
"""


@pytest.mark.parametrize("mode", ["plain", "thread", "profiled"])
def test_exit_process_exits_as_a_normal_exit_would(mode):
    """Status, atexit handlers and buffered output as at a normal exit; the teardown (an
    object's finaliser here) is skipped unless a thread or a profiler still needs it."""
    done = subprocess.run([sys.executable, "-c", EXIT_PROBE, mode], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 3
    assert done.stderr == "err"
    lines = done.stdout.replace("out", "", 1).split()
    assert done.stdout.startswith("out")
    assert "atexit ran" in done.stdout
    assert ("thread done" in done.stdout) == (mode == "thread")
    assert ("torn down" in done.stdout) == (mode != "plain"), lines


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="threads listed in /proc")
def test_python_m_fhnpde_run_starts_no_blas_threads(tmp_path):
    """``python -m fhnpde run`` calls no BLAS: numpy's OpenBLAS starts no thread pool for it
    (one thread at the end of the run), unless the user asked for threads."""
    (tmp_path / "sitecustomize.py").write_text(
        "import atexit, os\n"
        "atexit.register(lambda: print('threads', len(os.listdir('/proc/self/task'))))\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])
    cmd = [sys.executable, "-m", "fhnpde", "run", "cases/divergent.yaml", "--quiet",
           "--overwrite", "--set", "time.t_end=1", "--out", str(tmp_path / "r.zarr")]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["threads", "1"]
    if (os.cpu_count() or 1) > 1:  # the pool, when the user sets it
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                              env={**env, "OPENBLAS_NUM_THREADS": "2"})
        assert done.stdout.split() == ["threads", "2"]


@pytest.mark.parametrize(("argv", "orig", "command"), [
    (["-m", "run", "a.yaml"], ["python", "-X", "importtime", "-m", "fhnpde", "run", "a.yaml"],
     "run"),
    (["-m", "info"], ["python", "-m", "fhnpde", "info"], "info"),
    (["-m", "run"], ["python", "-m", "fhnpde.version", "run"], None),  # another module's main
    (["-m", "run"], ["python", "-mfhnpde", "run"], None),  # not recognised: left alone
    (["prog.py", "run"], ["python", "prog.py", "run"], None),  # import fhnpde in a program
    (["-m"], ["python", "-m", "fhnpde"], None),
])
def test_the_package_knows_when_it_loads_for_python_m_fhnpde(argv, orig, command,
                                                             monkeypatch):
    import fhnpde

    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(sys, "orig_argv", orig)
    assert fhnpde._command_loading() == command


def test_python_m_fhnpde_collects_no_garbage_while_its_modules_load(tmp_path):
    """gc is off from the package's first line to the end of fhnpde/__main__.py's imports
    (then the modules are frozen and gc is on again); another module's main is left alone."""
    (tmp_path / "sitecustomize.py").write_text(
        "import atexit, gc, sys\n"
        "seen = []\n"
        "gc.callbacks.append(lambda phase, info: phase == 'start' and seen.append(\n"
        "    'fhnpde.cli' in sys.modules))\n"
        "atexit.register(lambda: print(gc.isenabled(), gc.get_freeze_count() > 0,\n"
        "                              seen.count(False)))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    run = subprocess.run([sys.executable, "-m", "fhnpde", "run", "cases/divergent.yaml",
                          "--quiet", "--overwrite", "--set", "time.t_end=1", "--out",
                          str(tmp_path / "r.zarr")], capture_output=True, text=True, cwd=ROOT,
                         env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["True", "True", "0"]  # none before the CLI had loaded
    other = subprocess.run([sys.executable, "-m", "fhnpde.version", "run"], capture_output=True,
                           text=True, cwd=ROOT, env=env)
    enabled, frozen, before = other.stdout.split()
    assert (enabled, frozen) == ("True", "False")
    assert int(before) > 0


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
