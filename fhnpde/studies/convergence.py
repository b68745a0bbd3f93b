"""The convergence study (``python -m fhnpde convergence``): observed orders in dt or dx.

A case runs at ``levels`` resolutions ``h_k = h_0 / R^k`` (``dx``: ``nx - 1`` multiplied by
``R``, so every grid holds the coarser grids' nodes); the error of ``v`` at the final time on
each level's nodes, in the rms and max norms, is measured against the same solver two levels
finer (``self``) or an independent solution (``scipy``, :mod:`fhnpde.studies.references`),
and the orders are fitted by :mod:`fhnpde.studies.orders`. When dx varies, dt follows it as
:math:`\\Delta t_k = \\Delta t_0 (\\Delta x_k / \\Delta x_0)^{p_x / p_t}` (the declared orders),
so the temporal error cannot hide the spatial order. The method and the measured orders of
every solver: docs/convergence.md.
"""

from __future__ import annotations

import csv
import math
import time as _time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..case import Case, CaseError
from .orders import fitted_order, observed_orders
from .references import method_of_lines_reference, point_reference
from .runs import (
    LEVELS_RANGE,
    MAX_NODES,
    RATIO_RANGE,
    case_with,
    check_run_length,
    every_kth_node,
    geometry_of,
    grid_of,
    nodes_of,
    refined_nx,
    run_to_end,
    step_count,
)


@dataclass
class ConvergenceLevel:
    """One resolution of a convergence study and its errors against the reference."""

    level: int
    h: float
    dt: float
    dx: float | None
    nx: int | list[int] | None  # a sheet's [nx, ny]
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
        head = f"{'level':>5} {'dt':>11} {'dx':>10} {'nx':>9} {'rmse':>11} {'order':>6} " \
               f"{'max error':>11} {'order':>6}"
        lines += ["", head, "-" * len(head)]
        for lv in self.levels:
            lines.append(
                f"{lv.level:>5} {lv.dt:>11.4e} "
                f"{(f'{lv.dx:.4e}' if lv.dx is not None else '-'):>10} "
                f"{_fmt_nx(lv.nx):>9} {lv.rmse:>11.4e} "
                f"{_fmt_order(lv.order_rmse):>6} {lv.max_error:>11.4e} "
                f"{_fmt_order(lv.order_max):>6}"
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
                                 _fmt_nx(lv.nx, ""), lv.steps,
                                 f"{lv.rmse:.6e}", _csv_order(lv.order_rmse),
                                 f"{lv.max_error:.6e}", _csv_order(lv.order_max)])
        return path


def _fmt_nx(nx, missing: str = "-") -> str:
    """``nx`` of a cable, ``nx x ny`` of a sheet."""
    if nx is None:
        return missing
    return "x".join(str(n) for n in nx) if isinstance(nx, list | tuple) else str(nx)


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
        changes["time.dt"] = t_end / step_count(t_end, target)
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
    from ..driver import build_solver

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
        raise CaseError("--vary dx needs a cable or a sheet: this case has no domain; use "
                        "--vary dt")
    t_end = float(case.time.t_end if t_end is None else t_end)
    if not (t_end > 0 and math.isfinite(t_end)):
        raise CaseError(f"--t-end must be a finite number > 0, got {t_end}")
    check_run_length(t_end, case.time.dt, "--t-end")
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
        dx0 = grid_of(base).dx
        dt_rule = (
            f"dt = dt0 (dx/dx0)^{q:g} with dt0 = {base.time.dt:g}, dx0 = {dx0:g} "
            f"(exponent = declared space order {declared.space} / time order {declared.time}; "
            f"rounded down to divide t_end): the temporal error shrinks like dx^{declared.space}, "
            "as fast as the spatial error, so it cannot lower the observed order"
        )

    # the finest run (the self reference is two levels finer), sized before it is built
    k = levels + 1 if reference == "self" else levels - 1
    dt_fine = base.time.dt / float(ratio) ** (k if vary == "dt" else q * k)
    check_run_length(t_end, dt_fine, "--levels", f"the finest run (level {k})")
    if vary == "dx":
        nx_fine = nodes_of(refined_nx(base.domain.nx, base.domain.boundary, ratio**k))
        if nx_fine > MAX_NODES:
            raise CaseError(f"the finest grid (level {k}) would have {nx_fine:.3g} nodes, more "
                            f"than {MAX_NODES:.0e}; lower --levels or --ratio", key="--levels")
    cases = [_level_case(base, vary, k, ratio, t_end, q) for k in range(levels)]
    results = []
    for k, c in enumerate(cases):
        say(f"level {k}: dt = {c.time.dt:.4g}"
            + (f", nx = {_fmt_nx(c.domain.nx)}" if c.domain else ""))
        results.append(run_to_end(c))

    ref_level = levels + 1
    ref_case = _level_case(base, vary, ref_level, ratio, t_end, q)
    if reference == "self":
        say(f"reference: {built.name}, dt = {ref_case.time.dt:.4g}"
            + (f", nx = {_fmt_nx(ref_case.domain.nx)}" if ref_case.domain else ""))
        v_ref, _ = run_to_end(ref_case)
        h_ref = ref_case.time.dt if vary == "dt" else grid_of(ref_case).dx
        ref_text = (f"the same solver two levels finer ({vary} = {h_ref:.4g}"
                    + (f", dt = {ref_case.time.dt:.4g}" if vary == "dx" else "") + ")")
    elif geometry in ("cable", "sheet"):
        h_ref = 0.0
        if vary == "dx":
            nx_ref = _fmt_nx(ref_case.domain.nx)
            say(f"reference: method of lines (BDF) on nx = {nx_ref}")
            v_ref, _ = method_of_lines_reference(ref_case)
            ref_text = (f"scipy solve_ivp (BDF, rtol 1e-10) on the method of lines with "
                        f"nx = {nx_ref} (dx = {grid_of(ref_case).dx:.4g}), "
                        "two levels finer than the finest level")
        else:
            say(f"reference: method of lines (BDF) on nx = {_fmt_nx(base.domain.nx)}")
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
            sub = every_kth_node(v_ref, ratio ** (ref_level - k), v.shape)
            h = grid_of(c).dx
        else:
            sub = v_ref
            h = c.time.dt
        diff = v - sub
        rows.append(ConvergenceLevel(
            level=k, h=h, dt=c.time.dt, dx=grid_of(c).dx if c.domain else None,
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


def _member_count(case: Case) -> int:
    from ..problem import sample_ensemble

    members = sample_ensemble(case)
    return len(next(iter(members.values()))) if members else 1
