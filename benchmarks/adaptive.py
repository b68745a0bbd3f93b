"""Adaptive-grid vs uniform explicit solver on cases/divergent_adaptive.yaml.

Both run on the same base grid (nx = 3201, dt = 1/640) with the numba backend, after a
warm-up run that compiles the kernels. Each repeat runs the two back to back; the table
gives medians over repeats of wall time, node updates and their ratios (each ratio taken
within one repeat, then the median). Front error: the largest distance between the
leading edges (outermost crossings of v = 0.3) of the run and of the reference at
t = 100 and 200. The reference is the uniform explicit solver on the base grid, or with
``--fine`` the explicit solver on a grid twice as fine (nx = 6401, dt = 1/2560).

For an honest picture the table also lists uniform explicit runs on coarser grids at
their largest convenient stable dt: the adaptive solver must use the base grid's dt
(its front zones are at the base spacing), a uniform coarse grid need not.

    .venv/bin/python benchmarks/adaptive.py [--repeats 3] [--fine]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fhnpde.case import load_case  # noqa: E402
from fhnpde.driver import build_solver  # noqa: E402

CASE = ROOT / "cases" / "divergent_adaptive.yaml"
FRONT_TIMES = (100.0, 200.0)


def leading_edges(v: np.ndarray, x: np.ndarray, level: float = 0.3) -> np.ndarray:
    above = np.flatnonzero(v > level)
    if above.size == 0:
        return np.array([np.nan, np.nan])
    i, j = above[0], above[-1]
    left = x[i - 1] + (level - v[i - 1]) / (v[i] - v[i - 1]) * (x[i] - x[i - 1])
    right = x[j] + (level - v[j]) / (v[j + 1] - v[j]) * (x[j + 1] - x[j])
    return np.array([left, right])


def run(overrides: list[str], t_end: float) -> dict:
    """Run the case in memory; wall time covers the stepping only (no store)."""
    case = load_case(CASE, [f"time.t_end={t_end}", *overrides])
    problem, solver = build_solver(case)
    dt = case.time.dt
    state, step, fronts = solver.init(), 0, {}
    wall = 0.0
    for t in (*[s for s in FRONT_TIMES if s < t_end], t_end):
        n = round(t / dt) - step
        t0 = time.perf_counter()
        state = solver.advance(state, step * dt, dt, n)
        wall += time.perf_counter() - t0
        step += n
        if t in FRONT_TIMES:
            fronts[t] = leading_edges(np.asarray(solver.output_state(state).v), problem.grid.x)
    stats = solver.stats()
    updates = stats.get("active_node_updates", step * problem.grid.nx)
    return {"wall": wall, "updates": int(updates), "fronts": fronts, "stats": stats,
            "nx": problem.grid.nx, "dt": dt}


def front_error(res: dict, ref: dict) -> list[float]:
    return [float(np.max(np.abs(res["fronts"][t] - ref["fronts"][t]))) for t in FRONT_TIMES]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--t-end", type=float, default=300.0)
    ap.add_argument("--fine", action="store_true",
                    help="reference: explicit on nx = 6401 (slow) instead of the base grid")
    args = ap.parse_args(argv)

    # warm-up: compile every kernel once
    run([], 1.0)
    run(["solver.method=explicit"], 1.0)

    adaptive_runs, explicit_runs, wall_ratios = [], [], []
    for _ in range(args.repeats):
        a = run([], args.t_end)
        e = run(["solver.method=explicit"], args.t_end)
        adaptive_runs.append(a)
        explicit_runs.append(e)
        wall_ratios.append(e["wall"] / a["wall"])
    a, e = adaptive_runs[0], explicit_runs[0]
    coarse = {
        "explicit nx=1601 dt=1/160": run(["solver.method=explicit", "domain.nx=1601",
                                          "time.dt=0.00625"], args.t_end),
        "explicit nx=801 dt=1/40": run(["solver.method=explicit", "domain.nx=801",
                                        "time.dt=0.025"], args.t_end),
    }
    if args.fine:
        ref = run(["solver.method=explicit", "domain.nx=6401", "time.dt=0.000390625"],
                  max(FRONT_TIMES))
        ref_name = "explicit nx=6401 dt=1/2560"
    else:
        ref, ref_name = e, "explicit on the base grid"

    def med(runs, key):
        return statistics.median(r[key] for r in runs)

    print(f"case {CASE.name}, t_end = {args.t_end:g}, {args.repeats} repeats "
          f"(median wall), numba backend; front error vs {ref_name}")
    print(f"{'run':34s} {'node updates':>14s} {'wall s':>8s} {'err t=100':>10s} "
          f"{'err t=200':>10s}")
    rows = [("adaptive nx=3201 dt=1/640", a, med(adaptive_runs, "wall")),
            ("explicit nx=3201 dt=1/640", e, med(explicit_runs, "wall"))]
    rows += [(name, r, r["wall"]) for name, r in coarse.items()]
    for name, r, wall in rows:
        err = front_error(r, ref)
        print(f"{name:34s} {r['updates']:14.4g} {wall:8.3f} {err[0]:10.3f} {err[1]:10.3f}")
    st = a["stats"]
    print(f"adaptive: mean active nodes {st['mean_active_nodes']:.1f} of {a['nx']} "
          f"(fraction {st['mean_active_fraction']:.4f}, {1 / st['mean_active_fraction']:.1f}x "
          f"fewer), max {st['max_active_nodes']}, {st['regrids']} active-set choices")
    print(f"ratios explicit/adaptive on the same base grid: node updates "
          f"{e['updates'] / a['updates']:.1f}x, wall time {statistics.median(wall_ratios):.1f}x "
          f"(per-repeat: {', '.join(f'{r:.2f}' for r in wall_ratios)})")


if __name__ == "__main__":
    main()
