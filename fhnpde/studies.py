"""Convergence-order and stability studies (``python -m fhnpde convergence|stability``).

Both studies work for every registered solver: they build it by name through the solver
registry (:func:`fhnpde.solvers.solver_class`), read its declared
:class:`~fhnpde.solvers.Order`, and step it in-process (``solver.advance``) without
writing a store. A solver that registers itself later is studied without changes here.

Convergence
-----------

A case is run at ``levels`` resolutions ``h_0 > h_1 > ... `` with ``h_k = h_0 / R^k``
(``h`` is ``dt``, or ``dx`` with ``nx - 1`` multiplied by ``R`` so that every grid holds the
nodes of the coarser ones). The error of level ``k`` is measured on ``v`` at the final
time, on the level's own nodes, against a reference:

- ``self`` (default): the same solver two levels finer, ``h_ref = h_{N-1} / R^2``;
- ``scipy``: an independent solution. Cables: the method of lines with fhnpde's own
  spatial operator (:meth:`fhnpde.grid.UniformGrid.laplacian`, boundary treatment
  included) integrated by ``scipy.integrate.solve_ivp`` (BDF, sparse Jacobian pattern,
  rtol 1e-10) on the level grid (``--vary dt``) or on a grid two levels finer than the
  finest level (``--vary dx``). Point models: ``solve_ivp`` (DOP853, rtol 1e-12) per member.

Norms over the nodes (or members) ``i = 1..n`` of a level:

.. math::

    e_\\mathrm{rms} = \\Big(\\frac1n \\sum_i (v_i - v^\\mathrm{ref}_i)^2\\Big)^{1/2},\\qquad
    e_\\mathrm{max} = \\max_i |v_i - v^\\mathrm{ref}_i|.

Observed order. If the error behaves as ``u_h - u = C h^p`` then a reference computed with
the same scheme at ``h_ref`` carries its own error, and

.. math::

    e_k = \\|u_{h_k} - u_{h_\\mathrm{ref}}\\| = c\\,(h_k^p - h_\\mathrm{ref}^p).

The observed order between levels ``k-1`` and ``k`` is the ``p`` that solves
``e_{k-1} / e_k = (h_{k-1}^p - h_ref^p) / (h_k^p - h_ref^p)``, and the fitted order is the
least-squares fit of ``log e_k = log c + log(h_k^p - h_ref^p)`` over all levels. With an
independent reference ``h_ref = 0`` and these are the familiar
``log(e_{k-1}/e_k) / log R`` and the slope of ``log e`` against ``log h``. (Without the
correction a first-order scheme measured against a reference only two levels finer
would appear to be of order log2(7/3) = 1.22 on its finest pair of levels.)

When ``dx`` varies, ``dt`` follows it by the rule

.. math::

    \\Delta t_k = \\Delta t_0\\,(\\Delta x_k / \\Delta x_0)^{q},\\qquad q = p_x / p_t

(declared space order over declared time order; rounded down to a divisor of ``t_end``),
so that the temporal error ``C_t \\Delta t^{p_t} \\propto \\Delta x^{p_x}`` shrinks as fast as
the spatial error and cannot lower the observed spatial order. For the explicit scheme
``q = 2``: ``dt / dx^2`` stays fixed, and so does the distance to the stability limit.

Stability
---------

For each solver the largest ``dt`` that runs the case to ``t_end`` is found by
bisection (in ``log dt``, to a relative bracket ``rtol``). A run is *unstable* if

- at one of ``checkpoints`` (40) equally spaced times a value of ``v`` or ``w`` is not finite or exceeds ``1000 max(1, |v_0|, |w_0|)``
  (blow-up), or the solver fails (Newton does not converge, a floating-point error); or
- a grid-scale oscillation grows: with the differences ``d_i = v_{i+1} - v_i``, node ``i``
  is a *zigzag node* when ``d_{i-1} d_i < 0`` and ``d_i d_{i+1} < 0`` (nodes ``i`` and
  ``i+1`` both local extrema, which no resolved smooth profile has); the zigzag amplitude
  ``sigma(v)`` is the largest ``min(|d_{i-1}|, |d_i|, |d_{i+1}|)`` over runs of at least 4
  consecutive zigzag nodes (:func:`grid_scale_oscillation`). The run is unstable when at
  a checkpoint ``sigma > tol max(1, max|v|)`` (``tol = 1e-9``) after it rose at each of the
  last ``rise = 3`` checkpoints (from zero or more) by a factor of at least ``growth = 8``
  in all. An unstable mode grows like ``|g|^n`` and rises steadily once it shows above
  the smooth profile's own differences (it may decay again later, when the solution
  leaves the region where it grows: forward Euler's limit depends on the local ``f_v``).
  A zigzag that does not rise so is not an instability: Crank–Nicolson's barely damped
  response to rough data appears at once and then decays; the kink that a source
  discontinuous in ``x`` (a box stimulus) leaves at its edge under operator splitting is
  two nodes long and fluctuates with the dynamics.

The search runs between the explicit limit ``dx^2 / (2 D)`` of the case's grid (the
yardstick; a point case uses its ``time.dt``) and a cap of ``cap`` times it (default 100). A
solver stable at the cap is reported "stable up to the cap". Where a solver declares a
theoretical limit (:meth:`Solver.stability_limit`; explicit: ``dx^2 / (2 D)``, from the von
Neumann analysis of the heat equation) the measured limit is compared with it. With the
reaction the true limit of forward Euler differs from ``dx^2 / (2 D)`` by a relative
``O(|f_v| dx^2 / D)``, and an instability must grow from round-off to ``tol`` within the run,
so the measured limit lies within a fraction of a percent to a few percent of the theory.
"""

from __future__ import annotations

import csv
import math
import os
import time as _time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .case import Case, CaseError, load_case, parse_case

__all__ = [
    "ConvergenceLevel",
    "ConvergenceResult",
    "StabilityResult",
    "convergence_study",
    "stability_study",
    "largest_stable_dt",
    "observed_orders",
    "fitted_order",
    "grid_scale_oscillation",
    "method_of_lines_reference",
    "point_reference",
    "run_to_end",
    "convergence_command",
    "stability_command",
]

DEFAULT_OUT = "runs/studies"
ORDER_BOUNDS = (1e-3, 20.0)

# Ranges of the studies' numeric arguments, enforced here and by the command line's parser
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


# --- cases at other resolutions ------------------------------------------------------------


def case_with(case: Case, changes: dict[str, Any]) -> Case:
    """A copy of ``case`` with dotted keys replaced, validated again (CaseError if invalid)."""
    data = case.model_dump(mode="json")
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
    return "cable" if case.is_cable else "point"


def refined_nx(nx: int, boundary: str, factor: int) -> int:
    """Nodes of a grid ``factor`` times finer that holds every node of the ``nx`` grid."""
    return nx * factor if boundary == "periodic" else (nx - 1) * factor + 1


def _steps(t_end: float, dt: float) -> int:
    return max(1, math.ceil(t_end / dt * (1.0 - 1e-12)))


def _check_run_length(t_end: float, dt: float, key: str, what: str = "each run") -> None:
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
    from .backends import to_numpy
    from .driver import NumericalFailure, build_solver

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


# --- independent references ------------------------------------------------------------------


def _switch_times(problem, t_end: float) -> list[float]:
    """Segment ends of [0, t_end] between which the applied current is constant in time."""
    cur = problem.current
    times = {float(t) for t in np.concatenate([cur.t0, cur.t1]) if 0.0 < t < t_end}
    return [0.0, *sorted(times), float(t_end)]


def laplacian_sparsity(grid):
    """Sparsity pattern (scipy CSR, 0/1) of ``v -> laplacian(v)`` on ``grid``, ghosts included."""
    from scipy import sparse

    i = np.arange(grid.nx)
    left, right = grid.neighbours(i)
    rows = np.concatenate([i, i, i])
    cols = np.concatenate([i, left, right])
    pattern = sparse.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(grid.nx, grid.nx))
    pattern = pattern.tocsr()
    pattern.data[:] = 1.0
    return pattern


def method_of_lines_reference(
    case: Case, *, rtol: float = 1e-10, atol: float = 1e-12
) -> tuple[np.ndarray, np.ndarray]:
    """(v, w) at ``time.t_end`` by the method of lines and ``solve_ivp`` (BDF).

    .. math::

        \\dot v_i = D\\,(L v)_i + f(v_i, w_i, I_i(t)),\\qquad \\dot w_i = g(v_i, w_i)

    with ``L`` = :meth:`UniformGrid.laplacian` (the three-point Laplacian read through the
    grid's ghost indices, so the reference has exactly the spatial operator of the solvers)
    and the kinetics of :mod:`fhnpde.models`. BDF gets the Jacobian's sparsity pattern
    ``[[L + I, I], [I, I]]`` and builds the Jacobian by grouped finite differences. The
    integration restarts where a stimulus switches on or off, so the current is smooth in
    time on every piece.
    """
    from scipy import sparse
    from scipy.integrate import solve_ivp

    from .problem import build_problem

    problem = build_problem(case)
    grid = problem.grid
    if grid is None:
        raise CaseError("the method-of-lines reference needs a domain", key="domain")
    n = grid.nx
    kinetics = problem.kinetics
    diffusion = problem.diffusion
    eye = sparse.identity(n, format="csr")
    pattern = sparse.bmat([[laplacian_sparsity(grid) + eye, eye], [eye, eye]], format="csr")
    y = np.concatenate([problem.v0, problem.w0]).astype(float)
    bounds = _switch_times(problem, case.time.t_end)
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        current = np.array(problem.current.current(0.5 * (a + b)), dtype=float)

        def rhs(t, y, current=current):
            v, w = y[:n], y[n:]
            dv, dw = kinetics.reaction(v, w, current)
            return np.concatenate([diffusion * grid.laplacian(v) + dv, dw])

        sol = solve_ivp(rhs, (a, b), y, method="BDF", rtol=rtol, atol=atol,
                        jac_sparsity=pattern)
        if not sol.success:
            raise RuntimeError(f"solve_ivp (BDF) failed on [{a}, {b}]: {sol.message}")
        y = sol.y[:, -1]
    return y[:n].copy(), y[n:].copy()


def point_reference(
    case: Case, *, method: str = "DOP853", rtol: float = 1e-12, atol: float = 1e-14
) -> tuple[np.ndarray, np.ndarray]:
    """(v, w) at ``time.t_end`` of every member by ``solve_ivp`` (one call per member).

    Each member's parameters and steady current are its own; the integration restarts
    where a stimulus switches.
    """
    from scipy.integrate import solve_ivp

    from .problem import build_problem

    problem = build_problem(case)
    size = problem.size
    reaction = problem.kinetics.family.reaction
    params = [np.broadcast_to(np.asarray(x, float), (size,)) for x in problem.kinetics.values]
    bounds = _switch_times(problem, case.time.t_end)
    currents = [np.array(problem.current.current(0.5 * (a + b)), dtype=float)
                for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    v_end, w_end = np.empty(size), np.empty(size)
    for m in range(size):
        p = tuple(float(x[m]) for x in params)
        y = np.array([problem.v0[m], problem.w0[m]], dtype=float)
        for (a, b), cur in zip(zip(bounds[:-1], bounds[1:], strict=True), currents, strict=True):
            i_m = float(cur[m])

            def rhs(t, y, i_m=i_m, p=p):
                dv, dw = reaction(y[0], y[1], i_m, *p)
                return np.array([dv, dw])

            sol = solve_ivp(rhs, (a, b), y, method=method, rtol=rtol, atol=atol)
            if not sol.success:
                raise RuntimeError(f"solve_ivp ({method}) failed for member {m}: {sol.message}")
            y = sol.y[:, -1]
        v_end[m], w_end[m] = y
    return v_end, w_end


# --- orders ----------------------------------------------------------------------------------


def _log_model(h: np.ndarray, p: float, h_ref: float) -> np.ndarray:
    """log(h^p - h_ref^p), written to stay accurate for small p and h_ref << h."""
    h = np.asarray(h, dtype=float)
    if h_ref <= 0.0:
        return p * np.log(h)
    return p * np.log(h) + np.log(-np.expm1(p * np.log(h_ref / h)))


def observed_orders(h: Sequence[float], errors: Sequence[float], h_ref: float = 0.0) -> np.ndarray:
    """Order between consecutive levels: the ``p`` with
    ``e_{k-1}/e_k = (h_{k-1}^p - h_ref^p) / (h_k^p - h_ref^p)`` (NaN for the first level).

    ``h_ref = 0`` gives ``log(e_{k-1}/e_k) / log(h_{k-1}/h_k)``. Where no ``p`` in
    (0.001, 20) fits (a non-decreasing error) the uncorrected formula is returned.
    """
    from scipy.optimize import brentq

    h = np.asarray(h, dtype=float)
    e = np.asarray(errors, dtype=float)
    out = np.full(h.size, np.nan)
    for k in range(1, h.size):
        if not (e[k - 1] > 0 and e[k] > 0):
            continue
        plain = math.log(e[k - 1] / e[k]) / math.log(h[k - 1] / h[k])
        if h_ref <= 0.0:
            out[k] = plain
            continue
        target = math.log(e[k - 1] / e[k])

        def gap(p, k=k, target=target):
            pair = _log_model(h[[k - 1, k]], p, h_ref)
            return pair[0] - pair[1] - target

        lo, hi = ORDER_BOUNDS
        if gap(lo) < 0.0 < gap(hi):
            out[k] = brentq(gap, lo, hi, xtol=1e-10)
        else:
            out[k] = plain
    return out


def fitted_order(h: Sequence[float], errors: Sequence[float], h_ref: float = 0.0) -> float:
    """Least-squares order: minimises ``sum_k (log e_k - log c - log(h_k^p - h_ref^p))^2``.

    With ``h_ref = 0`` it is the slope of the regression line of ``log e`` on ``log h``;
    that slope is also returned when no ``p`` in (0.001, 20) fits (an error that hardly
    falls with ``h``).
    """
    from scipy.optimize import minimize_scalar

    h = np.asarray(h, dtype=float)
    e = np.asarray(errors, dtype=float)
    keep = e > 0
    h, e = h[keep], e[keep]
    if h.size < 2:
        return float("nan")
    log_e = np.log(e)
    if h_ref <= 0.0:
        return float(np.polyfit(np.log(h), log_e, 1)[0])

    def sse(p):
        r = log_e - _log_model(h, p, h_ref)
        r = r - r.mean()
        return float(r @ r)

    grid = np.linspace(*ORDER_BOUNDS, 400)
    best = grid[int(np.argmin([sse(p) for p in grid]))]
    step = grid[1] - grid[0]
    res = minimize_scalar(sse, bounds=(max(ORDER_BOUNDS[0], best - step),
                                       min(ORDER_BOUNDS[1], best + step)),
                          method="bounded", options={"xatol": 1e-8})
    if res.x < 2 * ORDER_BOUNDS[0] or res.x > ORDER_BOUNDS[1] - 1e-3:
        # no order in (0.001, 20) fits (the error hardly falls): the plain slope says more
        return float(np.polyfit(np.log(h), log_e, 1)[0])
    return float(res.x)


# --- convergence -----------------------------------------------------------------------------


@dataclass
class ConvergenceLevel:
    """One resolution of a convergence study and its errors against the reference."""

    level: int
    h: float
    dt: float
    dx: float | None
    nx: int | None
    steps: int
    rmse: float
    max_error: float
    order_rmse: float = float("nan")
    order_max: float = float("nan")


@dataclass
class ConvergenceResult:
    case_name: str
    solver: str
    vary: str
    ratio: int
    t_end: float
    reference: str
    reference_text: str
    h_ref: float
    declared_order: int | None
    declared: Any
    levels: list[ConvergenceLevel]
    fitted_order_rmse: float
    fitted_order_max: float
    dt_rule: str | None = None
    dt_exponent: float | None = None
    boundary: str | None = None
    wall_time_s: float = 0.0

    def report(self) -> str:
        """The table and summary printed by the command."""
        d = self.declared
        declared = f"time {d.time}" + (f", space {d.space}" if d.space is not None else "")
        what = {"dt": "dt", "dx": "dx"}[self.vary]
        lines = [
            f"convergence of {self.case_name} in {what}: solver {self.solver} "
            f"(declared order: {declared}){', ' + self.boundary if self.boundary else ''}",
            f"error of v at t = {self.t_end:g} on the nodes of each level, against "
            f"{self.reference_text}",
        ]
        if self.dt_rule:
            lines.append(f"dt rule: {self.dt_rule}")
        head = f"{'level':>5} {'dt':>11} {'dx':>10} {'nx':>7} {'rmse':>11} {'order':>6} " \
               f"{'max error':>11} {'order':>6}"
        lines += ["", head, "-" * len(head)]
        for lv in self.levels:
            lines.append(
                f"{lv.level:>5} {lv.dt:>11.4e} "
                f"{(f'{lv.dx:.4e}' if lv.dx is not None else '-'):>10} "
                f"{(lv.nx if lv.nx is not None else '-')!s:>7} {lv.rmse:>11.4e} "
                f"{_fmt_order(lv.order_rmse):>6} {lv.max_error:>11.4e} {_fmt_order(lv.order_max):>6}"
            )
        lines += [
            "",
            f"fitted order (least squares over {len(self.levels)} levels): "
            f"{self.fitted_order_rmse:.3f} (rmse), {self.fitted_order_max:.3f} (max); "
            f"declared: {self.declared_order}",
        ]
        return "\n".join(lines)

    def write_csv(self, path: Path) -> Path:
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["level", "h", "dt", "dx", "nx", "steps", "rmse", "order_rmse",
                             "max_error", "order_max"])
            for lv in self.levels:
                writer.writerow([lv.level, f"{lv.h:.10g}", f"{lv.dt:.10g}",
                                 "" if lv.dx is None else f"{lv.dx:.10g}",
                                 "" if lv.nx is None else lv.nx, lv.steps,
                                 f"{lv.rmse:.6e}", _csv_order(lv.order_rmse),
                                 f"{lv.max_error:.6e}", _csv_order(lv.order_max)])
        return path


def _fmt_order(p: float) -> str:
    return "-" if not np.isfinite(p) else f"{p:.2f}"


def _csv_order(p: float) -> str:
    return "" if not np.isfinite(p) else f"{p:.4f}"


def _level_case(case: Case, vary: str, k: int, ratio: int, t_end: float, q: float | None):
    """The case of level ``k`` (k may exceed the study's levels: the self reference)."""
    changes: dict[str, Any] = {"time.t_end": float(t_end), "time.save_every": None}
    dt0 = case.time.dt
    if vary == "dt":
        changes["time.dt"] = dt0 / ratio**k
    else:
        dom = case.domain
        changes["domain.nx"] = refined_nx(dom.nx, dom.boundary, ratio**k)
        target = dt0 * float(ratio) ** (-q * k)
        changes["time.dt"] = t_end / _steps(t_end, target)
    return case_with(case, changes)


def convergence_study(
    case: Case,
    vary: str = "dt",
    *,
    levels: int = 4,
    ratio: int = 2,
    reference: str = "self",
    t_end: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> ConvergenceResult:
    """Measure the order of accuracy of ``case``'s solver in ``dt`` or ``dx`` (see module doc).

    The coarsest level uses the case's ``time.dt`` and ``domain.nx``; ``t_end`` replaces
    ``time.t_end`` (it must be a whole number of the coarsest steps).
    """
    from .driver import build_solver

    wall0 = _time.perf_counter()
    say = progress or (lambda msg: None)
    if vary not in ("dt", "dx"):
        raise CaseError(f"--vary must be dt or dx, got {vary!r}")
    if int(levels) != levels or not LEVELS_RANGE[0] <= levels <= LEVELS_RANGE[1]:
        raise CaseError(f"--levels must be an integer from {LEVELS_RANGE[0]} (one observed "
                        f"order) to {LEVELS_RANGE[1]}, got {levels}")
    levels = int(levels)
    if int(ratio) != ratio or not RATIO_RANGE[0] <= ratio <= RATIO_RANGE[1]:
        raise CaseError(f"--ratio must be an integer from {RATIO_RANGE[0]} to {RATIO_RANGE[1]} "
                        f"(grids must share nodes), got {ratio}")
    ratio = int(ratio)
    if reference not in ("self", "scipy"):
        raise CaseError(f"--reference must be self or scipy, got {reference!r}")
    geometry = geometry_of(case)
    if vary == "dx" and geometry == "point":
        raise CaseError("--vary dx needs a cable: this case has no domain; use --vary dt")
    t_end = float(case.time.t_end if t_end is None else t_end)
    if not (t_end > 0 and math.isfinite(t_end)):
        raise CaseError(f"--t-end must be a finite number > 0, got {t_end}")
    _check_run_length(t_end, case.time.dt, "--t-end")
    steps = t_end / case.time.dt
    if abs(steps - round(steps)) > 1e-9 * max(1.0, steps):
        raise CaseError(f"--t-end {t_end:g} is not a whole number of steps of the coarsest "
                        f"dt = {case.time.dt:g}; choose a multiple of it", key="time.t_end")
    base = case_with(case, {"time.t_end": t_end, "time.save_every": None})
    # The built solver's order: a solver may lower it for its configuration (e.g. split
    # with Euler reaction substeps is first order in time).
    _, built = build_solver(case_with(base, {"solver.force": True}))
    declared = built.order

    q = None
    dt_rule = None
    if vary == "dx":
        if declared.space is None:
            raise CaseError(f"the {built.name} solver declares no spatial order; use --vary dt")
        q = declared.space / declared.time
        dx0 = _grid_of(base).dx
        dt_rule = (
            f"dt = dt0 (dx/dx0)^{q:g} with dt0 = {base.time.dt:g}, dx0 = {dx0:g} "
            f"(exponent = declared space order {declared.space} / time order {declared.time}; "
            f"rounded down to divide t_end): the temporal error shrinks like dx^{declared.space}, "
            "as fast as the spatial error, so it cannot lower the observed order"
        )

    # the finest run (the self reference is two levels finer), sized before it is built
    k = levels + 1 if reference == "self" else levels - 1
    dt_fine = base.time.dt / float(ratio) ** (k if vary == "dt" else q * k)
    _check_run_length(t_end, dt_fine, "--levels", f"the finest run (level {k})")
    if vary == "dx":
        nx_fine = refined_nx(base.domain.nx, base.domain.boundary, ratio**k)
        if nx_fine > MAX_NODES:
            raise CaseError(f"the finest grid (level {k}) would have {nx_fine:.3g} nodes, more "
                            f"than {MAX_NODES:.0e}; lower --levels or --ratio", key="--levels")
    cases = [_level_case(base, vary, k, ratio, t_end, q) for k in range(levels)]
    results = []
    for k, c in enumerate(cases):
        say(f"level {k}: dt = {c.time.dt:.4g}" + (f", nx = {c.domain.nx}" if c.domain else ""))
        results.append(run_to_end(c))

    ref_level = levels + 1
    ref_case = _level_case(base, vary, ref_level, ratio, t_end, q)
    if reference == "self":
        say(f"reference: {built.name}, dt = {ref_case.time.dt:.4g}"
            + (f", nx = {ref_case.domain.nx}" if ref_case.domain else ""))
        v_ref, _ = run_to_end(ref_case)
        h_ref = ref_case.time.dt if vary == "dt" else _grid_of(ref_case).dx
        ref_text = (f"the same solver two levels finer ({vary} = {h_ref:.4g}"
                    + (f", dt = {ref_case.time.dt:.4g}" if vary == "dx" else "") + ")")
    elif geometry == "cable":
        h_ref = 0.0
        if vary == "dx":
            say(f"reference: method of lines (BDF) on nx = {ref_case.domain.nx}")
            v_ref, _ = method_of_lines_reference(ref_case)
            ref_text = (f"scipy solve_ivp (BDF, rtol 1e-10) on the method of lines with "
                        f"nx = {ref_case.domain.nx} (dx = {_grid_of(ref_case).dx:.4g}), "
                        "two levels finer than the finest level")
        else:
            say(f"reference: method of lines (BDF) on nx = {base.domain.nx}")
            v_ref, _ = method_of_lines_reference(base)
            ref_text = ("scipy solve_ivp (BDF, rtol 1e-10) on the method of lines with the "
                        "same grid (the exact solution in time of the semi-discrete system)")
    else:
        h_ref = 0.0
        say(f"reference: solve_ivp DOP853 per member ({_member_count(base)} members)")
        v_ref, _ = point_reference(base)
        ref_text = "scipy solve_ivp (DOP853, rtol 1e-12) per member"

    rows = []
    for k, (c, (v, _w)) in enumerate(zip(cases, results, strict=True)):
        if vary == "dx":
            stride = ratio ** (ref_level - k)
            sub = v_ref[::stride][: v.size]
            h = _grid_of(c).dx
        else:
            sub = v_ref
            h = c.time.dt
        diff = v - sub
        rows.append(ConvergenceLevel(
            level=k, h=h, dt=c.time.dt, dx=_grid_of(c).dx if c.domain else None,
            nx=c.domain.nx if c.domain else None, steps=c.time.n_steps,
            rmse=float(np.sqrt(np.mean(diff**2))), max_error=float(np.max(np.abs(diff))),
        ))
    hs = [r.h for r in rows]
    for name in ("rmse", "max_error"):
        errs = [getattr(r, name) for r in rows]
        orders = observed_orders(hs, errs, h_ref)
        for r, p in zip(rows, orders, strict=True):
            setattr(r, "order_rmse" if name == "rmse" else "order_max", float(p))
    declared_order = declared.time if vary == "dt" else declared.space
    boundary = None
    if case.domain is not None:
        d = case.domain
        boundary = f"{d.boundary} boundary" + (
            f", boundary_order {d.boundary_order}" if d.boundary == "neumann" else "")
    return ConvergenceResult(
        case_name=case.name, solver=built.name, vary=vary, ratio=ratio, t_end=t_end,
        reference=reference, reference_text=ref_text, h_ref=h_ref,
        declared_order=declared_order, declared=declared, levels=rows,
        fitted_order_rmse=fitted_order(hs, [r.rmse for r in rows], h_ref),
        fitted_order_max=fitted_order(hs, [r.max_error for r in rows], h_ref),
        dt_rule=dt_rule, dt_exponent=q, boundary=boundary,
        wall_time_s=_time.perf_counter() - wall0,
    )


def _grid_of(case: Case):
    from .grid import UniformGrid

    d = case.domain
    return UniformGrid(d.length, d.nx, d.boundary, d.boundary_order)


def _member_count(case: Case) -> int:
    from .problem import sample_ensemble

    members = sample_ensemble(case)
    return len(next(iter(members.values()))) if members else 1


# --- stability -------------------------------------------------------------------------------


def grid_scale_oscillation(v: np.ndarray, span: int = 4) -> float:
    """Amplitude of the grid-scale zigzag in a profile (0.0 if there is none).

    With ``d_i = v_{i+1} - v_i``, node ``i`` is a *zigzag node* when ``d_{i-1}`` and ``d_i``
    have opposite signs and so have ``d_i`` and ``d_{i+1}`` (nodes ``i`` and ``i+1`` are
    both local extrema, which no resolved smooth profile has); its amplitude is
    ``min(|d_{i-1}|, |d_i|, |d_{i+1}|)``. Only runs of at least ``span`` consecutive zigzag
    nodes count (an unstable mode is a wave packet many nodes long; a lone kink at the edge
    of a box-shaped source is not). Returns the largest amplitude in those runs.
    """
    d = np.diff(np.asarray(v, dtype=float), axis=-1)
    if d.size < 3:
        return 0.0
    zig = (d[:-2] * d[1:-1] < 0) & (d[1:-1] * d[2:] < 0)
    if not zig.any():
        return 0.0
    # lengths of the runs of consecutive zigzag nodes, painted onto each node of a run
    edges = np.flatnonzero(np.diff(np.concatenate([[0], zig.astype(np.int8), [0]])))
    starts, stops = edges[::2], edges[1::2]
    long_run = np.zeros_like(zig)
    for a, b in zip(starts, stops, strict=True):
        if b - a >= span:
            long_run[a:b] = True
    if not long_run.any():
        return 0.0
    amp = np.minimum(np.minimum(np.abs(d[:-2]), np.abs(d[1:-1])), np.abs(d[2:]))
    return float(amp[long_run].max())


@dataclass
class Probe:
    dt: float
    stable: bool
    reason: str = ""


@dataclass
class StabilityResult:
    """Largest stable dt of one solver on one case."""

    solver: str
    largest_stable_dt: float | None
    smallest_unstable_dt: float | None
    theory_limit: float | None
    theory_formula: str
    explicit_limit: float | None
    cap: float
    stable_to_cap: bool
    probes: list[Probe] = field(default_factory=list)

    @property
    def ratio_to_theory(self) -> float | None:
        if self.theory_limit is None or self.largest_stable_dt is None:
            return None
        return self.largest_stable_dt / self.theory_limit

    @property
    def ratio_to_explicit(self) -> float | None:
        if self.explicit_limit is None or self.largest_stable_dt is None:
            return None
        return self.largest_stable_dt / self.explicit_limit

    @property
    def failure(self) -> str:
        """Why the smallest unstable dt failed."""
        if self.smallest_unstable_dt is None:
            return ""
        for p in self.probes:
            if p.dt == self.smallest_unstable_dt and not p.stable:
                return p.reason
        return ""


def _yardstick(case: Case) -> float | None:
    """dx^2 / (2 D) on the case's grid (None for point cases or D = 0)."""
    if case.domain is None or case.model.diffusion == 0:
        return None
    dx = _grid_of(case).dx
    return dx * dx / (2.0 * case.model.diffusion)


def probe_stability(
    case: Case, solver: str, dt: float, *, t_end: float | None = None, checkpoints: int = 40,
    tol: float = 1e-9, rise: int = 3, growth: float = 8.0, bound: float = 1e3,
) -> Probe:
    """Run ``case`` with ``solver`` at ``dt`` (forced past any limit); stable or not, and why.

    The run covers ``ceil(t_end / dt)`` steps and is judged at ``checkpoints`` equally
    spaced times by the criterion of the module docstring: blow-up or solver failure, or a
    zigzag above ``tol`` that rose at each of the last ``rise`` checkpoints by ``growth``
    in all.
    """
    from .backends import to_numpy
    from .driver import NumericalFailure, build_solver

    t_end = float(case.time.t_end if t_end is None else t_end)
    n = _steps(t_end, dt)
    c = case_with(case, {"solver.method": solver, "solver.force": True, "time.dt": float(dt),
                         "time.t_end": n * float(dt), "time.save_every": None})
    problem, s = build_solver(c)
    scale = max(1.0, float(np.max(np.abs(problem.v0))), float(np.max(np.abs(problem.w0))))
    limit = bound * scale
    state = s.init()
    marks = np.unique(np.linspace(0, n, checkpoints + 1).round().astype(int))
    sigmas = [grid_scale_oscillation(to_numpy(s.output_state(state).v))] if problem.is_cable \
        else []
    with np.errstate(all="ignore"):
        for a, b in zip(marks[:-1], marks[1:], strict=True):
            try:
                state = s.advance(state, a * dt, dt, int(b - a))
            except (NumericalFailure, ArithmeticError, np.linalg.LinAlgError) as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                return Probe(dt, False, f"solver failure at t = {a * dt:.4g}: {first}")
            out = s.output_state(state)
            v, w = to_numpy(out.v), to_numpy(out.w)
            if not (np.isfinite(v).all() and np.isfinite(w).all()):
                return Probe(dt, False, f"blow-up (not finite) by t = {b * dt:.4g}")
            peak = max(float(np.max(np.abs(v))), float(np.max(np.abs(w))))
            if peak > limit:
                return Probe(dt, False, f"blow-up (|v| or |w| = {peak:.3g}) by t = {b * dt:.4g}")
            if not problem.is_cable:
                continue
            sigmas.append(grid_scale_oscillation(v))
            recent = sigmas[-(rise + 1):]
            if (len(recent) == rise + 1
                    and recent[-1] > tol * max(1.0, float(np.max(np.abs(v))))
                    and all(y > x for x, y in zip(recent[:-1], recent[1:], strict=True))
                    and recent[-1] >= growth * recent[0]):
                return Probe(dt, False, f"growing grid-scale oscillation ({recent[0]:.2g} -> "
                                        f"{recent[-1]:.2g}) by t = {b * dt:.4g}")
    return Probe(dt, True)


def largest_stable_dt(
    case: Case, solver: str, *, cap_factor: float = 100.0, rtol: float = 0.005,
    t_end: float | None = None, progress: Callable[[str], None] | None = None,
    max_halvings: int = 30,
) -> StabilityResult:
    """Bisection (in log dt) for the largest dt at which ``solver`` runs ``case`` stably.

    Searches ``(0, cap]`` with ``cap = cap_factor * yardstick`` (yardstick: the explicit
    limit ``dx^2 / (2 D)``, or ``time.dt`` for a point case): the cap first, then downward
    from the yardstick by halving until a stable dt is found, upward by doubling, then
    bisection until the bracket's ratio is below ``1 + rtol``.
    """
    from .driver import build_solver
    from .solvers import solver_class

    say = progress or (lambda msg: None)
    geometry = geometry_of(case)
    cls = solver_class(solver, geometry)
    explicit = _yardstick(case)
    yard = explicit if explicit is not None else case.time.dt
    cap = cap_factor * yard
    forced = case_with(case, {"solver.method": solver, "solver.force": True})
    _, built = build_solver(forced)
    theory = built.stability_limit(case.time.dt)
    formula = built.limit_formula() if theory is not None else ""
    probes: list[Probe] = []

    def stable(dt):
        p = probe_stability(case, cls.name, dt, t_end=t_end)
        probes.append(p)
        say(f"{cls.name}: dt = {dt:.6g} {'stable' if p.stable else 'unstable: ' + p.reason}")
        return p.stable

    def result(lo, hi, to_cap=False):
        return StabilityResult(cls.name, lo, hi, theory, formula, explicit, cap, to_cap, probes)

    if stable(cap):
        return result(cap, None, True)
    hi, lo = cap, None
    dt = min(yard, cap / 2.0)
    t_run = float(case.time.t_end if t_end is None else t_end)
    for _ in range(max_halvings):
        if _steps(t_run, dt) > MAX_STEPS:
            break  # unstable down to here: smaller dt would not end
        if stable(dt):
            lo = dt
            break
        hi, dt = dt, dt / 2.0
    if lo is None:
        return result(None, hi)
    while 2.0 * lo < hi:
        if stable(2.0 * lo):
            lo *= 2.0
        else:
            hi = 2.0 * lo
            break
    while hi / lo > 1.0 + rtol:
        mid = math.sqrt(lo * hi)
        if not lo < mid < hi:  # the bracket is down to adjacent floats
            break
        if stable(mid):
            lo = mid
        else:
            hi = mid
    return result(lo, hi)


@dataclass
class StabilityStudy:
    case_name: str
    dx: float | None
    diffusion: float
    t_end: float
    explicit_limit: float | None
    cap_factor: float
    rtol: float
    results: list[StabilityResult]

    def report(self) -> str:
        lines = [f"stability of {self.case_name}: t_end = {self.t_end:g}"
                 + (f", dx = {self.dx:g}, D = {self.diffusion:g}" if self.dx else "")]
        if self.explicit_limit is not None:
            lines.append(f"explicit limit dx^2/(2D) = {self.explicit_limit:.6g}; search capped at "
                         f"{self.cap_factor:g} x = {self.cap_factor * self.explicit_limit:.6g}; "
                         f"bisection to {100 * self.rtol:g}%")
        head = (f"{'solver':<16} {'largest stable dt':>18} {'first unstable dt':>18} "
                f"{'theory':>10} {'stable/theory':>13} {'x explicit limit':>16}")
        lines += ["", head, "-" * len(head)]
        for r in self.results:
            largest = ("none found" if r.largest_stable_dt is None
                       else f"{r.largest_stable_dt:.6g}" + (" (cap)" if r.stable_to_cap else ""))
            unstable = "-" if r.smallest_unstable_dt is None else f"{r.smallest_unstable_dt:.6g}"
            theory = "-" if r.theory_limit is None else f"{r.theory_limit:.6g}"
            rt = "-" if r.ratio_to_theory is None else f"{r.ratio_to_theory:.4f}"
            rx = "-" if r.ratio_to_explicit is None else (
                (">= " if r.stable_to_cap else "") + f"{r.ratio_to_explicit:.4g}")
            lines.append(f"{r.solver:<16} {largest:>18} {unstable:>18} {theory:>10} {rt:>13} "
                         f"{rx:>16}")
        lines.append("")
        for r in self.results:
            if r.stable_to_cap:
                lines.append(f"{r.solver}: stable up to the cap ({r.cap:.6g}); "
                             f"{len(r.probes)} run(s)")
            elif r.largest_stable_dt is None:
                lines.append(f"{r.solver}: unstable at every dt tried down to "
                             f"{r.smallest_unstable_dt:.3g} ({r.failure})")
            else:
                lines.append(f"{r.solver}: above the limit: {r.failure}; {len(r.probes)} runs"
                             + (f"; theory {r.theory_formula}" if r.theory_formula else ""))
        return "\n".join(lines)

    def write_csv(self, path: Path) -> Path:
        def num(x):
            return "" if x is None else f"{x:.10g}"

        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["solver", "largest_stable_dt", "smallest_unstable_dt",
                             "stable_to_cap", "cap", "theory_limit", "theory_formula",
                             "ratio_to_theory", "explicit_limit", "ratio_to_explicit_limit",
                             "runs", "failure_above_limit"])
            for r in self.results:
                writer.writerow([r.solver, num(r.largest_stable_dt), num(r.smallest_unstable_dt),
                                 str(r.stable_to_cap).lower(), num(r.cap), num(r.theory_limit),
                                 r.theory_formula, num(r.ratio_to_theory), num(r.explicit_limit),
                                 num(r.ratio_to_explicit), len(r.probes), r.failure])
        return path


def registered_solvers(geometry: str) -> list[str]:
    """Names of the registered solvers for ``geometry`` (explicit first for cables)."""
    from .solvers import REGISTRY, _load_all

    _load_all()
    names = sorted(n for g, n in REGISTRY if g == geometry)
    return sorted(names, key=lambda n: (n != "explicit", n))


def stability_study(
    case: Case, solvers: Sequence[str] | None = None, *, cap_factor: float = 100.0,
    rtol: float = 0.005, t_end: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> StabilityStudy:
    """:func:`largest_stable_dt` for each solver (default: every registered one)."""
    if not CAP_RANGE[0] < cap_factor <= CAP_RANGE[1]:
        raise CaseError(f"--cap must be > {CAP_RANGE[0]:g} and <= {CAP_RANGE[1]:g} (a multiple "
                        f"of the explicit limit), got {cap_factor}")
    if not RTOL_RANGE[0] <= rtol <= RTOL_RANGE[1]:
        raise CaseError(f"--rtol must lie in [{RTOL_RANGE[0]:g}, {RTOL_RANGE[1]:g}] (a finer "
                        "bracket spends runs on digits the instability criterion does not "
                        f"determine), got {rtol}")
    if t_end is not None and not (t_end > 0 and math.isfinite(t_end)):
        raise CaseError(f"--t-end must be a finite number > 0, got {t_end}")
    geometry = geometry_of(case)
    valid = registered_solvers(geometry)
    for name in solvers or ():
        if name not in valid:
            raise CaseError(f"unknown solver {name!r} for a {geometry} case; valid solvers: "
                            f"{', '.join(valid)}", key="--solver")
    names = list(dict.fromkeys(solvers)) if solvers else valid
    yard = _yardstick(case)
    _check_run_length(float(case.time.t_end if t_end is None else t_end),
                      yard if yard is not None else case.time.dt, "--t-end",
                      "each trial run at the " + ("explicit limit" if yard else "case's dt"))
    results = [largest_stable_dt(case, n, cap_factor=cap_factor, rtol=rtol, t_end=t_end,
                                 progress=progress) for n in names]
    return StabilityStudy(
        case_name=case.name, dx=_grid_of(case).dx if case.domain else None,
        diffusion=case.model.diffusion, t_end=float(case.time.t_end if t_end is None else t_end),
        explicit_limit=_yardstick(case), cap_factor=cap_factor, rtol=rtol, results=results,
    )


# --- commands --------------------------------------------------------------------------------


def _out_dir(args) -> Path:
    """The folder for the study's files, made if missing; CaseError naming ``--out`` when
    it cannot be (a file in the way, no permission, a name too long, a NUL byte)."""
    text = str(args.out or DEFAULT_OUT)
    if "\x00" in text:
        raise CaseError(f"{text!r} contains a NUL byte; give a folder name", key="--out")
    out = Path(text)
    shown = text if len(text) <= 80 else text[:60] + f"... ({len(text)} characters)"
    try:
        if out.exists() and not out.is_dir():
            raise CaseError(f"{shown} exists and is not a folder; give a folder", key="--out")
        for parent in out.parents:
            if parent.exists() and not parent.is_dir():
                raise CaseError(f"cannot make {shown}: {parent} is a file, not a folder",
                                key="--out")
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".fhnpde-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CaseError(f"cannot write in {shown} ({exc.strerror or exc}); choose a writable "
                        "folder", key="--out") from None
    return out


def _load(args) -> Case:
    return load_case(args.case, args.set)


def _with_source(exc: CaseError, source: str) -> CaseError:
    return exc if exc.source is not None else exc.with_source(source)


def convergence_command(args) -> int:
    """``python -m fhnpde convergence``: print the table, write CSV, TXT and PNG."""
    import sys

    from .driver import NumericalFailure
    from .plotting import plot_convergence

    case = _load(args)
    out = _out_dir(args)  # before the study: a bad --out must not cost its runs
    try:
        result = convergence_study(
            case, args.vary, levels=args.levels, ratio=args.ratio,
            reference=args.reference, t_end=args.t_end,
            progress=lambda m: print(m, file=sys.stderr, flush=True),
        )
    except CaseError as exc:
        raise _with_source(exc, str(args.case)) from None
    except NumericalFailure as exc:
        print(f"fhnpde: error: {exc}", file=sys.stderr)
        return 1
    stem = f"convergence-{case.name}-{result.solver}-{result.vary}"
    report = result.report()
    print(report)
    (out / f"{stem}.txt").write_text(report + "\n")
    result.write_csv(out / f"{stem}.csv")
    hs = [lv.h for lv in result.levels]
    plot_convergence(
        hs, {"rmse": [lv.rmse for lv in result.levels],
             "max error": [lv.max_error for lv in result.levels]},
        out / f"{stem}.png",
        xlabel="dt" if result.vary == "dt" else "dx",
        declared_order=result.declared_order,
        fitted={"rmse": result.fitted_order_rmse, "max error": result.fitted_order_max},
        title=f"{case.name}: {result.solver}, error of v at t = {result.t_end:g}",
        note=f"reference: {result.reference}"
        + (f"; dt ~ dx^{result.dt_exponent:g}" if result.dt_exponent is not None else "")
        + (f"; {result.boundary}" if result.boundary else ""),
    )
    print(f"\nwrote {out / stem}.csv, .txt, .png")
    return 0


def stability_command(args) -> int:
    """``python -m fhnpde stability``: print the table, write CSV, TXT and PNG."""
    import sys

    from .plotting import plot_stability

    case = _load(args)
    out = _out_dir(args)  # before the study: a bad --out must not cost its runs
    try:
        study = stability_study(
            case, args.solver, cap_factor=getattr(args, "cap", 100.0),
            rtol=getattr(args, "rtol", 0.005), t_end=getattr(args, "t_end", None),
            progress=lambda m: print(m, file=sys.stderr, flush=True),
        )
    except CaseError as exc:
        raise _with_source(exc, str(args.case)) from None
    stem = f"stability-{case.name}"
    report = study.report()
    print(report)
    (out / f"{stem}.txt").write_text(report + "\n")
    study.write_csv(out / f"{stem}.csv")
    plot_stability(
        [r.solver for r in study.results],
        [r.largest_stable_dt for r in study.results],
        [r.stable_to_cap for r in study.results],
        out / f"{stem}.png",
        explicit_limit=study.explicit_limit,
        cap=study.results[0].cap if study.results else None,
        theory=[r.theory_limit for r in study.results],
        title=f"{case.name}: largest stable dt (t_end = {study.t_end:g}"
        + (f", dx = {study.dx:g})" if study.dx else ")"),
    )
    print(f"\nwrote {out / stem}.csv, .txt, .png")
    return 0
