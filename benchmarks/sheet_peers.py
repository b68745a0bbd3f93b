"""fhnpde's explicit sheet solver against py-pde's explicit solver (numba) on the planar case:
time to the same front error, end to end and stepping only.

The case is ``cases/sheet_planar.yaml`` (Nagumo, D = 1, a 100 x 100 no-flux sheet) with a
smooth start, ``v0 = exp(-(x/4)^2)`` across the whole height (a box would put its edges
between nodes and cells differently on the two grids, a first-order offset of the front),
run to ``--t-end`` (default 50). Its *front error* is the distance between the position of
the plane front (the last crossing of v = 0.5 along x of the row average, linearly
interpolated) and that of a reference: ``scipy.integrate.solve_ivp`` (BDF, rtol 1e-10) on
the method of lines of the 1-D cable of the same case with 16x finer spacing (nothing
depends on y, so the sheet's front is the cable's); its own error is estimated against 8x
finer.

Each solver runs a ladder of grids, halving the spacing, with dt = 0.8 x its explicit limit
dx^2 / (4 D) (rounded down to divide t_end / 10):

- fhnpde ``explicit`` (numba), nodes at both edges (dx = L / (n - 1), mirror-node
  edges): stepping only = ``solver.advance`` over the run after a one-step warm-up (the
  compiled kernels come from numba's cache), no store; end to end = ``python -m fhnpde run``
  in a fresh process (interpreter, imports, kernels from numba's cache, filled by one
  unmeasured run first as after a user's first run; the zarr store with 11 outputs).
- py-pde ``EulerSolver`` (``backend="numba"``, fixed dt) on a ``CartesianGrid`` of n cells
  (cell centres, dx = L / n, Neumann edges via ghost cells), the PDE given as expressions:
  stepping only = the second call of its stepper (the first compiles); end to end = a fresh
  process that imports py-pde, builds the PDE and runs it (py-pde compiles per process).

Both run on one thread (``NUMBA_NUM_THREADS=1``); a stepping time is the median of
``--repeats`` timings, each over enough runs to last 0.2 s. Time to the same error: each
ladder's time against its front error, interpolated linearly in log-log, at every error of
either ladder that both ladders span; printed with the ratios py-pde / fhnpde (target:
>= 10x end to end and stepping only). py-pde is optional: without it only fhnpde's ladder
is printed.

    python benchmarks/sheet_peers.py [--t-end 50] [--fhnpde 51 101 201 401 | ...]
                                     [--pypde 50 100 200 400] [--repeats 3]
                                     [--method explicit|split] [--split-dt-per-dx 1]
                                     [--merge-diffusion] [--space-order 2|4]
                                     [--stepping-only]

``--method split``: fhnpde's ladder by ADI-split (Strang around Peaceman–Rachford, one RK4
reaction step) at dt = ``--split-dt-per-dx`` x dx (rounded down to divide t_end / 10), not
bound by the explicit limit; py-pde's ladder stays its explicit Euler solver (the issue's
comparison: fhnpde's fastest way to a front error against py-pde's explicit solver);
``--merge-diffusion`` adds ``solver.merge_diffusion: true`` (one ADI step per step, the
inner half-steps merged within each of the 10 output intervals).

``--space-order 4``: fhnpde's explicit solver with the fourth-order stencil
(``solver.space_order: 4``) at 0.8 x its own limit, 3 dx^2 / (16 D); its default ladder
26 36 51 71 101 141 201 spans py-pde's errors.

Measured, py-pde 0.59.0, a quiet machine (load 0.7 before the run),
``--space-order 4 --fhnpde 26 31 33 36 41 51 71 101 141 201 --repeats 3``: front errors
3.05 (26 x 26) .. 1.5e-3 (201 x 201) against py-pde's 1.27 (50 x 50) .. 0.015 (400 x 400);
at equal front error fhnpde steps **12.6x** (error 1.27), 12.5x (1.04), 33x (0.26), 190x
(0.064) and 788x (0.015) faster and runs end to end 36-49x faster (fhnpde 0.65-0.78 s a
process, py-pde 27-33 s, most of it compiling). A stepping-only run of the default ladder
(``--space-order 4 --stepping-only --repeats 5``): 10.7x (1.27, interpolated between
26 x 26 and 36 x 36), 11.5x, 33x, 229x, 1135x.

The five-point stencil (the default, ``--space-order 2``), stepping only, one run at load
4.8-7.9: 6.7x (error 1.18), 6.2x (0.26), 7.0x (0.062), 6.8x (0.0156): both solvers step a
compiled five-point loop, so at equal order fhnpde's lead is its loop's speed, about 7x;
the fourth-order stencil reaches the coarse grids' errors with half the nodes per side
(front error 0.26 at dx = 2 against 1.18). ``--method split`` (dt = dx; errors 1.29,
0.320, 0.0776, 0.0196): 1.4x (1.27), 2.1x (0.32), 5.4x (0.078), 6.3x (0.064), 16.1x
(0.0196); with ``--merge-diffusion`` 11-27x from error 0.064 down (docs/sheets.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from triad import median_time  # noqa: E402  (numba after NUMBA_NUM_THREADS)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASE = ROOT / "cases" / "sheet_planar.yaml"
LENGTH = 100.0
WIDTH = 4.0  # v0 = exp(-(x / WIDTH)^2)
PARAMS = {"k": 1.0, "a": 0.1, "eps": 0.01, "gamma": 0.5}
START = f"initial.v={{kind: gaussian, center: 0.0, width: {WIDTH}, amplitude: 1.0}}"


def front(x: np.ndarray, v_rows: np.ndarray) -> float:
    """Position of the plane front: the last crossing of v = 0.5 of the row average."""
    from fhnpde.plotting import level_crossings

    profile = v_rows.mean(axis=0) if v_rows.ndim == 2 else v_rows
    crossings = level_crossings(profile, x, 0.5)
    return float(crossings[-1]) if crossings.size else float("nan")


def steps_for(dx: float, t_end: float, space_order: int = 2) -> tuple[float, int]:
    """dt = 0.8 x the explicit limit, dx^2 / (4 D) (five-point stencil) or 3 dx^2 / (16 D)
    (fourth order), rounded down to divide t_end / 10 (the outputs' spacing)."""
    limit = dx * dx / 4.0 if space_order == 2 else 3.0 * dx * dx / 16.0
    n = 10 * int(np.ceil(t_end / (0.8 * limit) / 10))
    return t_end / n, n


# --- the reference ------------------------------------------------------------------------


def reference_front(t_end: float, nx: int) -> float:
    from fhnpde.case import load_case
    from fhnpde.studies.references import method_of_lines_reference

    case = load_case(CASE, [START, "domain.length=100.0", f"domain.nx={nx}",
                            f"time.t_end={t_end}", "time.save_every=null", "time.dt=0.01"])
    v, _ = method_of_lines_reference(case)
    return front(np.linspace(0.0, LENGTH, nx), v)


# --- fhnpde ---------------------------------------------------------------------------------


def split_steps_for(dx: float, t_end: float, per_dx: float) -> tuple[float, int]:
    """ADI-split's dt = per_dx x dx, rounded down to divide t_end / 10."""
    n = 10 * int(np.ceil(t_end / (per_dx * dx) / 10))
    return t_end / n, n


def fhnpde_dt(n: int, t_end: float, method: str, per_dx: float, space_order: int = 2) -> float:
    dx = LENGTH / (n - 1)
    return (steps_for(dx, t_end, space_order) if method == "explicit"
            else split_steps_for(dx, t_end, per_dx))[0]


def fhnpde_sets(n: int, t_end: float, method: str = "explicit", per_dx: float = 1.0,
                merged: bool = False, space_order: int = 2) -> list[str]:
    dt = fhnpde_dt(n, t_end, method, per_dx, space_order)
    sets = [START, f"domain.nx=[{n}, {n}]", f"time.t_end={t_end}", f"time.dt={dt!r}",
            f"time.save_every={t_end / 10!r}", "solver.backend=numba"]
    if space_order != 2:
        sets.append(f"solver.space_order={space_order}")
    if method == "split":
        sets += ["solver.method=split", "solver.diffusion=adi"]
        if merged:
            sets.append("solver.merge_diffusion=true")
    return sets


def timed(run, repeats: int) -> float:
    """Median over ``repeats`` of the seconds ``run()`` takes, each timing over enough calls
    to last 0.2 s (short runs are below the timer's and the scheduler's noise)."""
    t0 = time.perf_counter()
    run()
    once = time.perf_counter() - t0
    return median_time(run, repeats, inner=max(1, int(0.2 / max(once, 1e-6))), warm=False)


def fhnpde_stepping(n: int, t_end: float, repeats: int, sets: list[str]) -> tuple[float, float]:
    """(seconds of solver.advance over the run, front position)."""
    from fhnpde.case import load_case
    from fhnpde.driver import build_solver

    case = load_case(CASE, sets)
    problem, solver = build_solver(case)
    solver.advance(solver.init(), 0.0, case.time.dt, 1)  # kernels loaded
    final = {}

    def run():
        final["v"] = solver.advance(solver.init(), 0.0, case.time.dt, case.time.n_steps).v

    return timed(run, repeats), front(problem.grid.x, np.asarray(final["v"]))


def fhnpde_end_to_end(sets: list[str], repeats: int, warm: bool = True) -> float:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "fhnpde", "run", str(CASE), "--overwrite", "--quiet",
               "--out", str(Path(tmp) / "run.zarr")]
        for s in sets:
            cmd += ["--set", s]
        if warm:  # numba's cache of the kernels filled, as after a user's first run
            subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --- py-pde ---------------------------------------------------------------------------------


def pypde_run(n: int, t_end: float, stepping_repeats: int) -> dict:
    """Build and run the case in py-pde (in this process); the stepping times of the
    stepper's second and later calls, the front position and the total time."""
    t_all = time.perf_counter()
    import pde

    grid = pde.CartesianGrid([[0.0, LENGTH], [0.0, LENGTH]], [n, n])
    x = grid.axes_coords[0]
    eq = pde.PDE({"v": "laplace(v) + k * (v * (1 - v) * (v - a) - w)",
                  "w": "eps * (v - gamma * w)"}, consts=PARAMS, bc={"derivative": 0})
    v0 = np.exp(-((x / WIDTH) ** 2))[:, None] * np.ones((1, n))
    state = pde.FieldCollection([pde.ScalarField(grid, v0), pde.ScalarField(grid, 0.0)])
    dt, _ = steps_for(LENGTH / n, t_end)
    solver = pde.EulerSolver(eq, backend="numba", adaptive=False)
    stepper = solver.make_stepper(state, dt=dt)
    final = {"run": state.copy()}
    stepper(final["run"], 0.0, t_end)  # compiles, then steps
    total = time.perf_counter() - t_all

    def run():
        final["run"] = state.copy()
        stepper(final["run"], 0.0, t_end)

    stepping = timed(run, stepping_repeats) if stepping_repeats else None
    # py-pde's data are [x, y]: rows of constant y are its columns
    return {"first_run_total": total, "stepping": stepping,
            "front": front(x, final["run"][0].data.T), "dt": dt}


def pypde_end_to_end(n: int, t_end: float, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--pypde-worker", str(n), str(t_end)],
                       check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --- report -----------------------------------------------------------------------------


def time_at(rows: list[dict], error: float, key: str) -> float | None:
    """The time a solver needs for a front error of ``error``: its ladder's time against
    error, interpolated linearly in log-log (None outside the ladder's errors)."""
    pts = sorted((r["error"], r[key]) for r in rows)
    e = np.log([p[0] for p in pts])
    t = np.log([p[1] for p in pts])
    if not e[0] <= np.log(error) <= e[-1]:
        return None
    return float(np.exp(np.interp(np.log(error), e, t)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--t-end", type=float, default=50.0)
    ap.add_argument("--fhnpde", type=int, nargs="+", default=None,
                    help="nodes along each side of fhnpde's ladder (default 51 101 201 401; "
                         "with --space-order 4: 26 36 51 71 101 141 201, whose errors span "
                         "py-pde's)")
    ap.add_argument("--pypde", type=int, nargs="+", default=[50, 100, 200, 400],
                    help="cells along each side of py-pde's ladder")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--method", choices=("explicit", "split"), default="explicit",
                    help="fhnpde's solver: explicit at 0.8 x its limit (default), or ADI-split "
                         "at dt = --split-dt-per-dx x dx")
    ap.add_argument("--split-dt-per-dx", type=float, default=1.0)
    ap.add_argument("--merge-diffusion", action="store_true",
                    help="with --method split: solver.merge_diffusion: true")
    ap.add_argument("--space-order", type=int, choices=(2, 4), default=2,
                    help="with --method explicit: solver.space_order (4: the fourth-order "
                         "stencil at 0.8 x its own limit)")
    ap.add_argument("--stepping-only", action="store_true",
                    help="skip the end-to-end runs (py-pde's compile in every process)")
    ap.add_argument("--pypde-worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fhnpde is None:
        args.fhnpde = ([26, 36, 51, 71, 101, 141, 201] if args.space_order == 4
                       else [51, 101, 201, 401])
    if args.pypde_worker:
        pypde_run(int(args.pypde_worker[0]), float(args.pypde_worker[1]), 0)
        return
    t_end = args.t_end
    load = os.getloadavg()[0]
    print(f"planar case, smooth start, t_end = {t_end:g}; NUMBA_NUM_THREADS = "
          f"{os.environ['NUMBA_NUM_THREADS']}; load average {load:.1f} on {os.cpu_count()} "
          "CPUs")
    x_ref = reference_front(t_end, 3201)
    x_check = reference_front(t_end, 1601)
    print(f"reference front at t = {t_end:g}: x = {x_ref:.6f} (cable, BDF, dx = "
          f"{LENGTH / 3200:g}; at twice that dx: {x_check:.6f}, a difference of "
          f"{abs(x_ref - x_check):.1e})")
    rows_f = []
    print(f"fhnpde: {args.method}" + (f", dt = {args.split_dt_per_dx:g} x dx"
                                       + (", merged half-steps" if args.merge_diffusion else "")
                                       if args.method == "split" else
                                       f", space order {args.space_order}, dt = 0.8 x limit"))
    for n in args.fhnpde:
        sets = fhnpde_sets(n, t_end, args.method, args.split_dt_per_dx, args.merge_diffusion,
                           args.space_order)
        step, pos = fhnpde_stepping(n, t_end, args.repeats, sets)
        e2e = float("nan") if args.stepping_only else fhnpde_end_to_end(sets, args.repeats)
        rows_f.append({"n": n, "dx": LENGTH / (n - 1),
                       "dt": fhnpde_dt(n, t_end, args.method, args.split_dt_per_dx,
                                       args.space_order),
                       "error": abs(pos - x_ref), "stepping": step, "end_to_end": e2e})
    rows_p = []
    if importlib.util.find_spec("pde") is None:
        print("py-pde is not installed here: only fhnpde's ladder is shown")
    else:
        import pde

        print(f"py-pde {pde.__version__}")
        for n in args.pypde:
            r = pypde_run(n, t_end, args.repeats)
            e2e = float("nan") if args.stepping_only else pypde_end_to_end(n, t_end,
                                                                            args.repeats)
            rows_p.append({"n": n, "dx": LENGTH / n, "dt": r["dt"],
                           "error": abs(r["front"] - x_ref), "stepping": r["stepping"],
                           "end_to_end": e2e})
    print(f"\n{'solver':>8} {'grid':>9} {'dx':>8} {'dt':>9} {'front error':>12} "
          f"{'stepping s':>11} {'end-to-end s':>13}")
    for name, rows in (("fhnpde", rows_f), ("py-pde", rows_p)):
        for r in rows:
            print(f"{name:>8} {r['n']:>4}x{r['n']:<4} {r['dx']:>8.4f} {r['dt']:>9.5f} "
                  f"{r['error']:>12.3e} {r['stepping']:>11.3e} {r['end_to_end']:>13.2f}")
    if rows_p:
        print("\ntime to the same front error (each ladder's time against error, interpolated "
              "in log-log; errors that both ladders span)")
        print(f"{'front error':>12} {'stepping: fhnpde':>17} {'py-pde':>8} {'ratio':>7} "
              f"{'end to end: fhnpde':>19} {'py-pde':>8} {'ratio':>7}")
        targets = sorted({r["error"] for r in rows_f + rows_p}, reverse=True)
        for target in targets:
            cells = [f"{target:>12.3e}"]
            for key, width in (("stepping", 17), ("end_to_end", 19)):
                if key == "end_to_end" and args.stepping_only:
                    cells.append(f"{'-':>{width + 16}}")
                    continue
                f, p = time_at(rows_f, target, key), time_at(rows_p, target, key)
                if f is None or p is None:
                    break
                cells.append(f"{f:>{width}.3e} {p:>8.2e} {p / f:>6.1f}x")
            if len(cells) == 3:
                print(" ".join(cells))
        print("(target: py-pde / fhnpde >= 10x, end to end and stepping only)")
    print(json.dumps({"fhnpde": rows_f, "pypde": rows_p, "reference": x_ref}))


if __name__ == "__main__":
    main()
