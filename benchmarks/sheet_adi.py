"""The spiral on sheets: ADI-split against explicit, in accuracy and in speed.

    python benchmarks/sheet_adi.py study [--out DIR] [--part all|levels|pairs]
    python benchmarks/sheet_adi.py speed [--repeats 1]  # 512 x 512 sheet, time at equal error

``study``: ``cases/spiral.yaml`` (Winfree's FitzHugh medium, S1-S2 cross-field start, 150 x
150) by ADI-split at (dx, dt) = (1, 0.2), (0.5, 0.1), (0.25, 0.05) (both halved: the scheme
is second order in each), and the same run by explicit and by ADI-split at (1, 0.1) and
(0.5, 0.05) (explicit's diffusion limit dx^2 / 4 is 0.25 and 0.0625 there; at dt = 0.2 its
forward Euler step of the stiff kinetics, rate about -10 at v = 2, is unstable). The period
comes from ``fhnpde.analysis.spiral_tip`` (isolines v = 0, w = 0; tip angle fitted over t >= 90, the
spiral's start-up left out); the stores go to ``--out`` (default a temporary folder).

``speed``: the spiral case on a 512 x 512 sheet (length 150, dx = 0.2935) for t in [0, 70]
(the S2 wave breaks and turns; the tip rotates from t ~ 45), the period fitted over [48, 70].
Reference: Richardson extrapolation of ADI-split at dt = 0.025 and 0.0125. Explicit runs at
0.9 and 0.45 x its limit dx^2 dy^2 / (2 D (dx^2 + dy^2)); ADI-split at dt = 0.2 .. 0.0125.
For each: the period's error against the reference, the solver's stepping time over the
whole run without outputs (median of ``--repeats``), and the end-to-end time of
``fhnpde.solve`` (one thread: NUMBA_NUM_THREADS=1 unless set; the machine's load is
printed). The speed-up at equal error: explicit at 0.9 x its limit against the cheapest
ADI-split run (dt >= 0.05) whose period error is no larger.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import fhnpde  # noqa: E402
from fhnpde.analysis import spiral_tip  # noqa: E402

CASE = ROOT / "cases" / "spiral.yaml"
LENGTH = 150.0


def spiral(nodes: int, dt: float, method: str = "split", **changes):
    sets = {"domain.nx": [nodes, nodes], "time.dt": dt, "solver.method": method}
    if method != "split":
        sets["solver.diffusion"] = None
    return fhnpde.load_case(CASE).with_changes({**sets, **changes})


def run(case, store: Path | None):
    t0 = time.perf_counter()
    ds = fhnpde.solve(case, store=store, overwrite=True) if store else fhnpde.solve(case)
    wall = time.perf_counter() - t0
    if ds.attrs["status"] != "complete":
        raise RuntimeError(f"{case.name}: {ds.attrs['status']} {ds.attrs.get('message', '')}")
    return ds, wall


LEVELS = [("split", 1.0, 0.2), ("split", 0.5, 0.1), ("split", 0.25, 0.05)]
PAIRS = [("split", 1.0, 0.1), ("explicit", 1.0, 0.1), ("split", 0.5, 0.05),
         ("explicit", 0.5, 0.05)]


def study(out: Path, part: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    print(f"load average {os.getloadavg()[0]:.2f}, numba threads "
          f"{os.environ['NUMBA_NUM_THREADS']}")
    print(f"{'method':>9} {'dx':>6} {'dt':>6} {'period':>10} {'turns':>6} {'tip centre':>16} "
          f"{'wall s':>7}")
    todo = (LEVELS if part != "pairs" else []) + (PAIRS if part != "levels" else [])
    rows = []
    for method, dx, dt in todo:
        nodes = round(LENGTH / dx) + 1
        ds, wall = run(spiral(nodes, dt, method), out / f"spiral-{method}-{dx}-{dt}.zarr")
        tip = spiral_tip(ds, v_iso=0.0, w_iso=0.0, t_min=90.0)
        rows.append((method, dx, dt, float(tip.period)))
        print(f"{method:>9} {dx:6.3g} {dt:6.3g} {float(tip.period):10.5f} "
              f"{float(tip.turns):6.2f} ({float(tip.center_x):6.2f}, {float(tip.center_y):6.2f})"
              f" {wall:7.1f}", flush=True)
    if part != "pairs":
        p = [r[3] for r in rows[:3]]
        d1, d2 = p[0] - p[1], p[1] - p[2]
        print(f"successive differences {d1:.3g}, {d2:.3g}: ratio {d1 / d2:.2f} (4 for order "
              f"2); Richardson extrapolated period {p[2] + d2 / 3:.5f}")
    if part != "levels":
        for dx, dt in ((1.0, 0.1), (0.5, 0.05)):
            pair = {r[0]: r[3] for r in rows if r[1] == dx and r[2] == dt}
            print(f"dx {dx}, dt {dt}: explicit / ADI-split period - 1 = "
                  f"{pair['explicit'] / pair['split'] - 1:+.3%}")


def speed(repeats: int) -> None:
    nodes, t_end, t_min = 512, 70.0, 48.0
    dx = LENGTH / (nodes - 1)
    limit = dx**4 / (2 * (2 * dx**2))
    print(f"512 x 512 sheet, dx = {dx:.4f}, explicit limit {limit:.5f}; load average "
          f"{os.getloadavg()[0]:.2f}, numba threads {os.environ['NUMBA_NUM_THREADS']}")
    changes = {"time.t_end": t_end, "time.save_every": 1.0}

    def per_step(case) -> float:
        """Seconds per step of the solver alone over the whole run (no outputs), median of
        ``repeats`` runs (a burst of steps from the start would see a sheet mostly at rest)."""
        from fhnpde.driver import build_solver

        _, solver = build_solver(case)
        solver.advance(solver.init(), 0.0, case.time.dt, 2)  # compile, first touch
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            solver.advance(solver.init(), 0.0, case.time.dt, case.time.n_steps)
            times.append((time.perf_counter() - t0) / case.time.n_steps)
        return float(np.median(times))

    def explicit_dt(fraction):  # a step dividing save_every, below fraction x the limit
        return 1.0 / np.ceil(1.0 / (fraction * limit))

    runs = [("explicit", explicit_dt(0.9)), ("explicit", explicit_dt(0.45))]
    runs += [("split", dt) for dt in (0.2, 0.1, 0.05, 0.025, 0.0125)]
    results = []
    for method, dt in runs:
        case = spiral(nodes, float(dt), method, **changes)
        ds, wall = run(case, None)
        p = float(spiral_tip(ds, v_iso=0.0, w_iso=0.0, t_min=t_min).period)
        step = per_step(case)
        results.append([method, float(dt), case.time.n_steps, p, step, wall])
        print(f"  {method} dt {dt:.5f}: period {p:.6f}, {step * 1e3:.2f} ms/step, run "
              f"{wall:.1f} s", flush=True)
    p1, p2 = results[-2][3], results[-1][3]
    ref = p2 + (p2 - p1) / 3  # Richardson: ADI-split is second order in dt
    print(f"reference period (Richardson from ADI-split dt 0.025, 0.0125): {ref:.6f}")
    print(f"{'method':>9} {'dt':>9} {'steps':>6} {'period':>10} {'rel. error':>11} "
          f"{'ms/step':>8} {'stepping s':>11} {'end to end s':>13}")
    for r in results:
        r.append(abs(r[3] / ref - 1))
        print(f"{r[0]:>9} {r[1]:9.5f} {r[2]:6d} {r[3]:10.6f} {r[6]:11.2e} {r[4] * 1e3:8.2f} "
              f"{r[4] * r[2]:11.2f} {r[5]:13.2f}")
    explicit = results[0]
    ok = [r for r in results[2:-2] if r[6] <= explicit[6]]
    if ok:
        best = min(ok, key=lambda r: r[4] * r[2])
        print(f"at equal error (<= {explicit[6]:.2e}): ADI-split at dt {best[1]} is "
              f"{explicit[4] * explicit[2] / (best[4] * best[2]):.2f}x faster stepping, "
              f"{explicit[5] / best[5]:.2f}x end to end, than explicit at its largest stable dt")
    else:
        print("no ADI-split run (dt >= 0.05) reached explicit's error")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("study", "speed"))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--part", choices=("all", "levels", "pairs"), default="all",
                    help="study: the dx/dt levels, the explicit/ADI pairs, or both")
    args = ap.parse_args()
    if args.what == "study":
        with tempfile.TemporaryDirectory() as tmp:
            study(args.out or Path(tmp), args.part)
    else:
        speed(args.repeats)


if __name__ == "__main__":
    main()
