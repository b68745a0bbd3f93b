"""What both studies share: a case at another resolution (:func:`case_with`,
:func:`refined_nx`), one run of it in memory to its end (:func:`run_to_end`), and the
ranges of the studies' arguments, which the studies check for the command line and the
Python API alike."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..case import Case, CaseError, parse_case

DEFAULT_OUT = "runs/studies"
ORDER_BOUNDS = (1e-3, 20.0)

# Ranges of the studies' numeric arguments, enforced by the studies and the command line's parser
# (whose help repeats the reasons).
# --levels: two levels give one observed order; each further level multiplies the finest
# run's work by R (dt) or about R^(1+q) (dx), and the self reference is two levels finer.
LEVELS_RANGE = (2, 8)
# --ratio: an integer so that every grid holds the coarser grids' nodes; beyond 10 a few
# levels span so many decades that the finest runs cost 10^levels times the coarsest.
RATIO_RANGE = (2, 10)
# --rtol: the bracket's relative width. Below 1e-6 the bisection spends runs on digits the
# stability criterion does not determine (an instability must grow from round-off within
# t_end); a bracket below the float resolution (1e-16) would never close.
RTOL_RANGE = (1e-6, 0.5)
# --cap: a multiple (> 1) of the explicit limit dx^2/(2D) where the upward search stops;
# unconditionally stable solvers reach it, so it bounds their search.
CAP_RANGE = (1.0, 1e6)
# No single run of a study may take more steps than this (about 10^3 s at 1 us per step):
# beyond it a --t-end or a refinement is a typo, not a study.
MAX_STEPS = 10**9
# Nor may the finest grid of a convergence study in dx have more nodes than this (its state
# and work arrays alone would take gigabytes).
MAX_NODES = 10**7




def case_with(case: Case, changes: dict[str, Any]) -> Case:
    """A copy of ``case`` with dotted keys replaced, validated again (CaseError if invalid)."""
    data = case.to_dict()
    for path, value in changes.items():
        node = data
        keys = path.split(".")
        for key in keys[:-1]:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
        node[keys[-1]] = value
    return parse_case(data, source=None)


def geometry_of(case: Case) -> str:
    """"point", "cable" or "sheet" (the solver registry's geometry of the case)."""
    return case.geometry


def refined_nx(nx, boundary: str, factor: int):
    """Nodes of a grid ``factor`` times finer that holds every node of the ``nx`` grid (a
    sheet's ``[nx, ny]``: each direction refined)."""
    if isinstance(nx, list | tuple):
        return [refined_nx(n, boundary, factor) for n in nx]
    return nx * factor if boundary == "periodic" else (nx - 1) * factor + 1


def nodes_of(nx) -> int:
    """Nodes of a grid of ``nx`` (a number, or a sheet's ``[nx, ny]``)."""
    return math.prod(nx) if isinstance(nx, list | tuple) else int(nx)


def every_kth_node(v: np.ndarray, stride: int, shape: tuple[int, ...]) -> np.ndarray:
    """The nodes of a ``stride`` times coarser grid of ``shape`` held by the fine field
    ``v`` (a cable's or a sheet's: every direction strided)."""
    picked = v[(slice(None, None, stride),) * v.ndim]
    return picked[tuple(slice(0, n) for n in shape)]


def step_count(t_end: float, dt: float) -> int:
    return max(1, math.ceil(t_end / dt * (1.0 - 1e-12)))


def check_run_length(t_end: float, dt: float, key: str, what: str = "each run") -> None:
    """CaseError when a run of ``t_end`` at ``dt`` would take more than MAX_STEPS steps."""
    steps = t_end / dt
    if steps > MAX_STEPS:
        raise CaseError(f"{what} would take {steps:.3g} steps of dt = {dt:.3g} to reach "
                        f"t = {t_end:g}, more than {MAX_STEPS:.0e}; lower --t-end"
                        + (", --levels or --ratio" if key == "--levels" else "")
                        + " or raise time.dt", key=key)


def run_to_end(case: Case, *, check: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Run ``case`` in-process from 0 to ``time.t_end``; (v, w) at the end as numpy arrays.

    The solver is built by :func:`fhnpde.driver.build_solver` (which refuses a dt beyond the
    stability limit unless ``check`` is False) and advanced in one ``advance`` call; no
    store is written. Raises :class:`~fhnpde.driver.NumericalFailure` on a non-finite result.
    """
    from ..backends import to_numpy
    from ..driver import NumericalFailure, build_solver

    if not check:
        case = case_with(case, {"solver.force": True})
    _, solver = build_solver(case)
    state = solver.advance(solver.init(), 0.0, case.time.dt, case.time.n_steps)
    out = solver.output_state(state)
    v, w = to_numpy(out.v).astype(float), to_numpy(out.w).astype(float)
    if not (np.isfinite(v).all() and np.isfinite(w).all()):
        raise NumericalFailure(
            f"the {case.solver.method} solution blew up at dt = {case.time.dt:g}"
            + (f", nx = {case.domain.nx}" if case.domain else "")
            + "; lower time.dt"
        )
    return v, w


def grid_of(case: Case):
    """The case's grid: a :class:`~fhnpde.grid.UniformGrid` or, for a sheet, a
    :class:`~fhnpde.grid.SheetGrid`."""
    from ..grid import SheetGrid, UniformGrid

    d = case.domain
    cls = SheetGrid if d.is_sheet else UniformGrid
    return cls(d.length, d.nx, d.boundary, d.boundary_order)
