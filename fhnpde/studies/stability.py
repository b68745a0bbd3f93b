"""The stability study (``python -m fhnpde stability``): the largest stable dt per solver.

For each solver the largest dt that runs the case to ``t_end`` is bisected (in log dt, to a
relative bracket ``rtol``) between the explicit limit ``dx^2 / (2 D)`` (a point case: its
``time.dt``) and ``cap`` times it. A run is unstable when it blows up or fails at one of its
checkpoints, or when a grid-scale zigzag (:func:`grid_scale_oscillation`) keeps rising
(:func:`probe_stability` holds the thresholds). The criterion, why it watches the zigzag
rise, and the measured limits: docs/convergence.md.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..case import Case, CaseError
from .runs import (
    CAP_RANGE,
    MAX_STEPS,
    RTOL_RANGE,
    case_with,
    check_run_length,
    geometry_of,
    grid_of,
    step_count,
)


def grid_scale_oscillation(v: np.ndarray, span: int = 4) -> float:
    """Amplitude of the grid-scale zigzag in a profile (0.0 if there is none).

    With ``d_i = v_{i+1} - v_i``, node ``i`` is a *zigzag node* when ``d_{i-1}`` and ``d_i``
    have opposite signs and so have ``d_i`` and ``d_{i+1}`` (nodes ``i`` and ``i+1`` are
    both local extrema, which no resolved smooth profile has); its amplitude is
    ``min(|d_{i-1}|, |d_i|, |d_{i+1}|)``. Only runs of at least ``span`` consecutive zigzag
    nodes count (an unstable mode is a wave packet many nodes long; a lone kink at the edge
    of a box-shaped source is not). Returns the largest amplitude in those runs. On a sheet
    ``(ny, nx)``: the largest over its rows and its columns.
    """
    v = np.asarray(v, dtype=float)
    if v.ndim == 2:
        lines = [*v, *v.T]
        return max(grid_scale_oscillation(line, span) for line in lines)
    d = np.diff(v, axis=-1)
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
    """The explicit limit on the case's grid: dx^2 / (2 D) on a cable, dx^2 dy^2 / (2 D
    (dx^2 + dy^2)) on a sheet (None for point cases or D = 0)."""
    if case.domain is None or case.model.diffusion == 0:
        return None
    rate = sum(1.0 / (h * h) for h in case.domain.spacings)
    return 1.0 / (2.0 * case.model.diffusion * rate)


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
    from ..backends import to_numpy
    from ..driver import NumericalFailure, build_solver

    t_end = float(case.time.t_end if t_end is None else t_end)
    n = step_count(t_end, dt)
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
    from ..driver import build_solver
    from ..solvers import solver_class

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
        if step_count(t_run, dt) > MAX_STEPS:
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
    limit_formula: str = "dx^2/(2D)"  # of the explicit limit: dx^2 dy^2/(2D(dx^2+dy^2)) on sheets

    def report(self) -> str:
        lines = [f"stability of {self.case_name}: t_end = {self.t_end:g}"
                 + (f", dx = {self.dx:g}, D = {self.diffusion:g}" if self.dx else "")]
        if self.explicit_limit is not None:
            lines.append(f"explicit limit {self.limit_formula} = {self.explicit_limit:.6g}; "
                         "search capped at "
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
    from ..solvers import REGISTRY, load_all

    load_all()
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
    check_run_length(float(case.time.t_end if t_end is None else t_end),
                      yard if yard is not None else case.time.dt, "--t-end",
                      "each trial run at the " + ("explicit limit" if yard else "case's dt"))
    results = [largest_stable_dt(case, n, cap_factor=cap_factor, rtol=rtol, t_end=t_end,
                                 progress=progress) for n in names]
    return StabilityStudy(
        case_name=case.name, dx=grid_of(case).dx if case.domain else None,
        diffusion=case.model.diffusion, t_end=float(case.time.t_end if t_end is None else t_end),
        explicit_limit=_yardstick(case), cap_factor=cap_factor, rtol=rtol, results=results,
        limit_formula="dx^2 dy^2/(2D(dx^2+dy^2))" if case.is_sheet else "dx^2/(2D)",
    )
