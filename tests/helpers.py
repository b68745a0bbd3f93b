"""Shared helpers for the tests: small cases built in code, runs without stores, references."""

from __future__ import annotations

import contextlib
import copy

import numpy as np
from scipy import sparse
from scipy.integrate import solve_ivp

from fhnpde.case import apply_overrides, parse_case
from fhnpde.driver import build_solver
from fhnpde.grid import UniformGrid

SMALL_CABLE = {
    "name": "small_cable",
    "model": {"kinetics": "nagumo", "params": {"k": 1.0, "a": 0.1, "eps": 0.01, "gamma": 0.5},
              "diffusion": 1.0},
    "domain": {"length": 40.0, "nx": 81, "boundary": "neumann"},
    "initial": {"v": {"kind": "gaussian", "center": 20.0, "width": 3.0, "amplitude": 1.0},
                "w": 0.0},
    "time": {"t_end": 5.0, "dt": 0.05, "save_every": 5.0},
    "solver": {"method": "explicit", "backend": "numpy"},
}

CELL = {
    "name": "cell",
    "model": {"kinetics": "nagumo", "params": {"k": 10.0, "a": 0.4, "eps": 0.04, "gamma": 4.0}},
    "initial": {"v": 0.5, "w": 0.0},
    "time": {"t_end": 5.0, "dt": 0.01, "save_every": 5.0},
    "solver": {"method": "rk4", "backend": "numpy"},
}


def make_case(base: dict, *sets: str):
    """A validated case from a base mapping and ``--set``-style overrides."""
    return parse_case(apply_overrides(copy.deepcopy(base), list(sets), "<test>"), "<test>")


def final_state(case):
    """Run a case in memory to t_end; returns (problem, State)."""
    problem, solver = build_solver(case)
    state = solver.init()
    n = case.time.n_steps
    state = solver.advance(state, 0.0, case.time.dt, n)
    state = solver.output_state(state)
    return problem, np.asarray(state.v), np.asarray(state.w)


def compiled_and_array_runs(case_file, sets, tridiagonal: str):
    """Final states (as :func:`final_state`) of a case file with ``--set`` overrides ``sets``,
    on the numba backend with Thomas's algorithm and on numpy with ``tridiagonal``."""
    from fhnpde.case import load_case

    ref = final_state(load_case(case_file, [*sets, "solver.backend=numba",
                                            "solver.tridiagonal=thomas"]))
    other = final_state(load_case(case_file, [*sets, "solver.backend=numpy",
                                              f"solver.tridiagonal={tridiagonal}"]))
    return ref, other


def mol_reference(case, rtol=1e-11, atol=1e-13):
    """Method-of-lines solution on the case's grid by scipy BDF (sparse Jacobian)."""
    from fhnpde.problem import build_problem
    from fhnpde.studies.references import solve_bdf

    problem = build_problem(case)
    grid: UniformGrid = problem.grid
    n = grid.nx
    kin = problem.kinetics
    D = problem.diffusion

    def rhs(t, y):
        v, w = y[:n], y[n:]
        dv, dw = kin.reaction(v, w, problem.current.current(t))
        return np.concatenate([D * grid.laplacian(v) + dv, dw])

    main = sparse.diags([1.0, 1.0, 1.0], [-1, 0, 1], shape=(n, n)).tolil()
    g0, gn = grid.ghosts
    main[0, g0] = 1
    main[n - 1, gn] = 1
    eye = sparse.eye(n)
    pattern = sparse.bmat([[main, eye], [eye, eye]])
    y0 = np.concatenate([problem.v0, problem.w0])
    sol = solve_bdf(rhs, (0.0, case.time.t_end), y0, rtol=rtol, atol=atol,
                    jac_sparsity=pattern)
    assert sol.success, sol.message
    return grid.x, sol.y[:n, -1], sol.y[n:, -1]


def point_reference(kinetics_params, v0, w0, I, t_end, name="nagumo"):
    """A single cell by scipy DOP853 at rtol 1e-13."""
    from fhnpde.models import Kinetics

    kin = Kinetics.create(name, kinetics_params)

    def rhs(t, y):
        return np.array(kin.reaction(y[0], y[1], I))

    sol = solve_ivp(rhs, (0.0, t_end), [v0, w0], method="DOP853", rtol=1e-13, atol=1e-14)
    assert sol.success
    return sol.y[0, -1], sol.y[1, -1]


def fitted_order(h, err) -> float:
    """Least-squares slope of log(err) against log(h)."""
    return float(np.polyfit(np.log(h), np.log(err), 1)[0])


def wait_for_outputs(path, proc, outputs: int = 2, timeout: float = 60) -> None:
    """Wait until the run ``proc`` (a Popen) has ``outputs`` outputs in its store at ``path``
    (read with plain xarray); fail if the process ends first or the time runs out."""
    import time

    import xarray as xr

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        # (OSError, ValueError, KeyError: the store is being made or mid-write: try again)
        with contextlib.suppress(OSError, ValueError, KeyError):
            if (path / "zarr.json").exists() and xr.open_zarr(path).sizes["time"] >= outputs:
                return
        time.sleep(0.1)
    raise AssertionError("the run never wrote its first outputs")


def signal_run(proc, path, *signums: int, gap: float = 0.01) -> str:
    """Send ``signums`` (``gap`` seconds apart) to the run ``proc`` once its store at ``path``
    holds outputs; return its stderr after it ended (it is killed if it does not end)."""
    import time

    try:
        wait_for_outputs(path, proc)
        for i, signum in enumerate(signums):
            if i:
                time.sleep(gap)
            proc.send_signal(signum)
        return proc.communicate(timeout=60)[1]
    finally:
        proc.kill()


# --- gradients ---------------------------------------------------------------------------------


def torch_outputs(case):
    """The case's differentiable run (fhnpde.gradients.run.trajectory) without a graph."""
    import torch

    from fhnpde.gradients import run

    with torch.no_grad():
        return run.trajectory(case)


def central_difference(case, path, losses, step):
    """d loss / d (the number at ``path``) of each loss by central differences of the same
    solver (two runs, ``step`` either side)."""
    from fhnpde.gradients import wrt

    value = wrt.resolve(case, [path])[0].value
    plus = torch_outputs(case.with_changes({path: value + step}))
    minus = torch_outputs(case.with_changes({path: value - step}))
    return [float(loss(plus) - loss(minus)) / (2 * step) for loss in losses]


def check_gradients_against_central_differences(case, losses, paths, rel=1e-6):
    """fhnpde's gradient of every loss with respect to every path equals central differences
    of the same solver to ``rel``, and neither vanishes (a zero would test nothing)."""
    import pytest

    from fhnpde.gradients import api, wrt

    targets = wrt.resolve(case, paths)
    results = [api.evaluate(case, targets, loss) for loss in losses]
    for t in targets:
        fds = central_difference(case, t.path, losses, 1e-5 * max(abs(t.value), 0.01))
        for (value, grads), fd in zip(results, fds, strict=True):
            assert value > 0
            assert grads[t.path] == pytest.approx(fd, rel=rel), t.path
            assert abs(fd) > 1e-6 * value, f"{t.path}: a gradient that vanishes tests nothing"
