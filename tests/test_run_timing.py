"""The stats' clocks: ``wall_time_s`` is the time loop alone; store set-up is ``startup_s``,
numba loading or compiling kernels is ``compile_s`` (wherever it happens)."""

from __future__ import annotations

import time

import pytest

import fhnpde
from fhnpde.backends import CompileClock
from fhnpde.driver import Observer, run_case
from tests.helpers import SMALL_CABLE, make_case

numba = pytest.importorskip("numba")


class Timed(Observer):
    """Records when the loop's first output came and when the run finished; optionally
    sleeps in ``start`` (a slow store set-up) and compiles a fresh numba function at its
    second output (a kernel compiled inside the time loop), timing that compile itself."""

    def __init__(self, sleep=0.0, compile_in_loop=False):
        self.sleep, self.compile_in_loop = sleep, compile_in_loop
        self.outputs, self.compiled_s = 0, 0.0

    def start(self, info):
        time.sleep(self.sleep)

    def output(self, t, state):
        self.outputs += 1
        if self.outputs == 1:
            self.loop_t0 = time.perf_counter()
        if self.outputs == 2 and self.compile_in_loop:
            t0 = time.perf_counter()
            # a function made here has no cache: numba compiles it now
            fresh = numba.njit(lambda x: x * 2.0 + 1.0)
            assert fresh(1.0) == 3.0
            self.compiled_s = time.perf_counter() - t0

    def finish(self, status, stats):
        self.loop_t1 = time.perf_counter()


def test_compile_clock_counts_a_compile_and_nothing_else():
    with CompileClock() as clock:
        t0 = time.perf_counter()
        f = numba.njit(lambda x: x + 1)
        assert f(1) == 2
        spent = time.perf_counter() - t0
        seconds = clock.seconds
        assert f(2) == 3  # compiled already: no compiler-lock event
        time.sleep(0.05)
    assert 0.5 * spent < seconds <= spent
    assert clock.seconds == seconds
    g = numba.njit(lambda x: x - 1)
    assert g(1) == 0  # compiled after the clock closed: not counted
    assert clock.seconds == seconds


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_compile_in_the_loop_is_compile_s_not_wall_time(tmp_path, backend):
    case = make_case(SMALL_CABLE, f"solver.backend={backend}", "time.save_every=1.0")
    obs = Timed(compile_in_loop=True)
    result = run_case(case, out=tmp_path / "r.zarr", observers=[obs])
    stats = result.stats
    assert result.status == "complete"
    assert obs.compiled_s > 0.01
    assert stats["compile_s"] >= 0.9 * obs.compiled_s
    loop = obs.loop_t1 - obs.loop_t0
    # the loop's time without the compile inside it (the clock starts a little before the
    # first output and stops a little after the last: 20 ms of slack)
    assert stats["wall_time_s"] <= loop - 0.9 * obs.compiled_s + 0.02
    assert stats["wall_time_s"] > 0
    assert stats["startup_s"] > 0
    # the stored stats are the same numbers
    stored = fhnpde.open_run(tmp_path / "r.zarr").attrs["stats"]
    assert {k: stored[k] for k in ("compile_s", "wall_time_s", "startup_s")} == {
        k: stats[k] for k in ("compile_s", "wall_time_s", "startup_s")}


class SlowOutput(Observer):
    def output(self, t, state):
        time.sleep(0.02)


def test_output_s_is_the_observers_share_of_the_loop(tmp_path):
    case = make_case(SMALL_CABLE, "time.save_every=0.5")  # 11 outputs
    stats = run_case(case, out=tmp_path / "r.zarr", observers=[SlowOutput()]).stats
    assert 11 * 0.02 <= stats["output_s"] <= stats["wall_time_s"]
    # the stepping alone (100 explicit steps of 81 nodes in numpy) is milliseconds
    assert stats["wall_time_s"] - stats["output_s"] < 0.1


def test_store_set_up_is_startup_s_not_wall_time(tmp_path):
    case = make_case(SMALL_CABLE, "time.t_end=0.5")
    obs = Timed(sleep=0.3)
    stats = run_case(case, out=tmp_path / "r.zarr", observers=[obs]).stats
    assert stats["startup_s"] >= 0.3
    assert stats["wall_time_s"] < 0.2
    assert stats["compile_s"] >= 0


def test_solve_reports_the_three_clocks():
    case = make_case(SMALL_CABLE, "solver.backend=numba")
    stats = fhnpde.solve(case).attrs["stats"]
    assert {"startup_s", "compile_s", "wall_time_s"} <= set(stats)
    assert all(stats[k] >= 0 for k in ("startup_s", "compile_s", "wall_time_s"))


def test_a_numba_tridiagonal_method_is_loaded_while_the_solver_is_built():
    """numpy backend with ``tridiagonal: thomas``: numba comes with the method's module when
    the solver is built (start-up), not at the first solve inside the time loop."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from tests.helpers import SMALL_CABLE, make_case\n"
            "from fhnpde.driver import build_solver\n"
            "case = make_case(SMALL_CABLE, 'solver.method=crank-nicolson',\n"
            "                 'solver.backend=numpy', 'solver.tridiagonal=thomas')\n"
            "assert 'numba' not in sys.modules\n"
            "build_solver(case)\n"
            "print('fhnpde.tridiagonal.thomas' in sys.modules, 'numba' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=fhnpde.__file__.rsplit("/fhnpde/", 1)[0]).stdout
    assert out.split() == ["True", "True"]
