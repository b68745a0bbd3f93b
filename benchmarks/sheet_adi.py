"""The spiral on sheets: ADI-split against explicit, in accuracy and in speed.

    python benchmarks/sheet_adi.py study [--out DIR]    # period as dx, dt halve; explicit vs ADI
    python benchmarks/sheet_adi.py speed [--repeats 3]  # 512 x 512 sheet, time at equal error

``study``: ``cases/spiral.yaml`` (Winfree's FitzHugh medium, S1-S2 cross-field start, 150 x
150) by ADI-split at (dx, dt) = (1, 0.2), (0.5, 0.1), (0.25, 0.05) (both halved: the scheme
is second order in each), and the same run by explicit and by ADI-split at (1, 0.1) and
(0.5, 0.05) (explicit's diffusion limit dx^2 / 4 is 0.25 and 0.0625 there; at dt = 0.2 its
forward Euler step of the stiff kinetics, rate about -10 at v = 2, is unstable). The period
comes from ``fhnpde.analysis.spiral_tip`` (isolines v = 0, w = 0; tip angle fitted over t >= 90, the
spiral's start-up left out); the stores go to ``--out`` (default a temporary folder).

``speed``: the spiral case on a 512 x 512 sheet (length 150, dx = 0.2935) for t in [0, 70]
(the S2 wave breaks and turns; the tip rotates from t ~ 45). Reference period over [48, 70]:
ADI-split at dt = 0.005. Explicit runs at its largest stable dt (0.9 x the limit
dx^2 dy^2 / (2 D (dx^2 + dy^2))) and half of it; ADI-split at dt = 0.2, 0.1, 0.05, 0.025.
For each, the error of the period against the reference and the wall time of the stepping
(one thread: NUMBA_NUM_THREADS=1 unless set; the machine's load is printed). The speed-up
at equal error: explicit's wall time at its largest stable dt over the wall time of the
cheapest ADI-split run whose period error is no larger.
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


def study(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    print(f"load average {os.getloadavg()[0]:.2f}, numba threads "
          f"{os.environ['NUMBA_NUM_THREADS']}")
    print(f"{'method':>9} {'dx':>6} {'dt':>6} {'period':>10} {'turns':>6} {'tip centre':>16} "
          f"{'wall s':>7}")
    rows = []
    for method, dx, dt in [("split", 1.0, 0.2), ("split", 0.5, 0.1), ("split", 0.25, 0.05),
                           ("split", 1.0, 0.1), ("explicit", 1.0, 0.1), ("split", 0.5, 0.05),
                           ("explicit", 0.5, 0.05)]:
        nodes = round(LENGTH / dx) + 1
        ds, wall = run(spiral(nodes, dt, method), out / f"spiral-{method}-{dx}-{dt}.zarr")
        tip = spiral_tip(ds, v_iso=0.0, w_iso=0.0, t_min=90.0)
        rows.append((method, dx, dt, float(tip.period)))
        print(f"{method:>9} {dx:6.3g} {dt:6.3g} {float(tip.period):10.5f} "
              f"{float(tip.turns):6.2f} ({float(tip.center_x):6.2f}, {float(tip.center_y):6.2f})"
              f" {wall:7.1f}", flush=True)
    split = [r for r in rows if r[0] == "split"][:3]
    d1, d2 = split[0][3] - split[1][3], split[1][3] - split[2][3]
    print(f"successive differences {d1:.3g}, {d2:.3g}: ratio {d1 / d2:.2f} (4 for order 2); "
          f"Richardson extrapolated period {split[2][3] + d2 / 3:.5f}")
    for dx, dt in ((1.0, 0.1), (0.5, 0.05)):
        pair = {r[0]: r[3] for r in rows if r[1] == dx and r[2] == dt}
        print(f"dx {dx}, dt {dt}: explicit / ADI-split period - 1 = "
              f"{pair['explicit'] / pair['split'] - 1:+.3%}")


def speed(repeats: int) -> None:
    nodes, t_end, t_min = 512, 70.0, 48.0
    dx = LENGTH / (nodes - 1)
    limit = dx**4 / (2 * (2 * dx**2))
    print(f"512 x 512 sheet, dx = {dx:.4f}, explicit limit {limit:.5f}; load average "
          f"{os.getloadavg()[0]:.2f}, numba threads {os.environ['NUMBA_NUM_THREADS']}, "
          f"median of {repeats}")
    changes = {"time.t_end": t_end, "time.save_every": 0.5}

    def period(case):
        ds, _ = run(case, None)
        return float(spiral_tip(ds, v_iso=0.0, w_iso=0.0, t_min=t_min).period)

    def stepping_time(case):
        from fhnpde.driver import build_solver

        _, solver = build_solver(case)
        n = case.time.n_steps
        solver.advance(solver.init(), 0.0, case.time.dt, 2)  # compile, first touch
        times = []
        for _ in range(repeats):
            state = solver.init()
            t0 = time.perf_counter()
            solver.advance(state, 0.0, case.time.dt, n)
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    ref = period(spiral(nodes, 0.005, **changes))
    print(f"reference period (ADI-split, dt 0.005): {ref:.6f}")
    runs = [("explicit", t_end / np.ceil(t_end / (0.9 * limit))),
            ("explicit", t_end / np.ceil(t_end / (0.45 * limit)))]
    runs += [("split", dt) for dt in (0.2, 0.1, 0.05, 0.025)]
    print(f"{'method':>9} {'dt':>9} {'steps':>6} {'period error':>13} {'stepping s':>11} "
          f"{'end to end s':>13}")
    results = []
    for method, dt in runs:
        case = spiral(nodes, float(dt), method, **changes)
        t0 = time.perf_counter()
        p = period(case)
        total = time.perf_counter() - t0
        wall = stepping_time(case)
        err = abs(p / ref - 1)
        results.append((method, dt, err, wall, total))
        print(f"{method:>9} {dt:9.5f} {case.time.n_steps:6d} {err:13.3e} {wall:11.2f} "
              f"{total:13.2f}", flush=True)
    explicit = results[0]
    ok = [r for r in results if r[0] == "split" and r[2] <= explicit[2]]
    if ok:
        best = min(ok, key=lambda r: r[3])
        print(f"at equal error (<= {explicit[2]:.2e}): ADI-split dt {best[1]} is "
              f"{explicit[3] / best[3]:.1f}x faster stepping, {explicit[4] / best[4]:.1f}x end "
              "to end, than explicit at its largest stable dt")
    else:
        print("no ADI-split run reached explicit's error")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("study", "speed"))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.what == "study":
        with tempfile.TemporaryDirectory() as tmp:
            study(args.out or Path(tmp))
    else:
        speed(args.repeats)


if __name__ == "__main__":
    main()
