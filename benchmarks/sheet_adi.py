"""The spiral on sheets: ADI-split against explicit, in accuracy and in speed.

    python benchmarks/sheet_adi.py study [--out DIR] [--part all|levels|pairs]
    python benchmarks/sheet_adi.py speed [--repeats 1]  # 512 x 512 sheet, time at equal error
    python benchmarks/sheet_adi.py planar [--repeats 3]  # the plane wave on 512 x 512, likewise

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

``planar``: ``cases/sheet_planar.yaml`` (nagumo kinetics, a plane wave in +x) on a 512 x 512
sheet (length 100, dx = dy = 100/511) to t = 60; error: the front position (the last
down-crossing of v = 0.5 along x, linear between nodes) at t = 60 against the method of
lines on the cable of the same x-grid (512 nodes) integrated by scipy's BDF at rtol 1e-11
(``fhnpde.studies.references``): the data do not depend on y, so every row of the sheet is
that cable (to round-off, tested for both solvers) and the reference has the solvers' own
spatial operator: the error compared is the time stepping's alone. Explicit runs at 0.9 x
its limit dx^2 / (4 D); ADI-split's step: from dt = 2 down by halves to the first whose
front error is no larger than explicit's, then the largest such dt = 60 / n by bisection on
n (on the cable's split solver, which is ADI-split on y-independent data; the chosen dt is
then run on the sheet), for the symmetric steps (``ADI-split``) and with the inner
half-steps merged (``ADI-split merged``: ``solver.merge_diffusion: true``, one ADI step per
step; its signed front error changes sign near dt 0.25, so the dt it gets is checked by
also printing the errors at 2x and 4x its steps). Timings interleaved, median of
``--repeats``: stepping (the solver alone over the whole run) and end to end
(``fhnpde.solve``), with one numba thread and with numba's default (all cores), switched
by ``numba.set_num_threads`` in the same process (so this part leaves NUMBA_NUM_THREADS
unset).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if sys.argv[1:2] != ["planar"]:  # planar times one thread and the default in one run
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


PLANAR = ROOT / "cases" / "sheet_planar.yaml"


def front_position(v, x) -> np.ndarray:
    """Per row of v (..., nx): the last down-crossing of v = 0.5 along x, linear between
    nodes (the leading edge of a pulse running in +x)."""
    v = np.atleast_2d(v)
    out = np.empty(v.shape[0])
    for j, row in enumerate(v):
        above = row >= 0.5
        i = np.nonzero(above[:-1] & ~above[1:])[0][-1]
        out[j] = x[i] + (0.5 - row[i]) / (row[i + 1] - row[i]) * (x[i + 1] - x[i])
    return out


def planar(repeats: int) -> None:
    import numba

    from fhnpde.driver import build_solver
    from fhnpde.studies.references import method_of_lines_reference

    nodes, t_end, length = 512, 60.0, 100.0
    dx = length / (nodes - 1)
    limit = dx**2 / 4.0  # dx^2 dy^2 / (2 D (dx^2 + dy^2)), D = 1, dx = dy
    default_threads = numba.config.NUMBA_NUM_THREADS
    print(f"planar wave, 512 x 512 sheet, dx = {dx:.5f}, explicit limit {limit:.6f}, t_end "
          f"{t_end}; load average {' '.join(f'{a:.2f}' for a in os.getloadavg())}, "
          f"{os.cpu_count()} cores, numba default threads {default_threads}", flush=True)
    base = fhnpde.load_case(PLANAR).with_changes(
        {"time.t_end": t_end, "time.save_every": t_end})
    sheet = base.with_changes({"domain.nx": [nodes, nodes]})
    cable = base.with_changes({"domain.length": length, "domain.nx": nodes})

    def case_of(grid, method, n, merged=False):
        sets = {"time.dt": t_end / n, "solver.method": method}
        if method != "split":
            sets["solver.diffusion"] = None
        elif merged:
            sets["solver.merge_diffusion"] = True
        return grid.with_changes(sets)

    x = np.linspace(0.0, length, nodes)
    t0 = time.perf_counter()
    v_ref, _ = method_of_lines_reference(cable, rtol=1e-11, atol=1e-13)
    ref = float(front_position(v_ref, x)[0])
    v_chk, _ = method_of_lines_reference(cable, rtol=1e-10, atol=1e-12)
    print(f"reference front {ref:.9f} (BDF rtol 1e-11; rtol 1e-10 differs by "
          f"{abs(front_position(v_chk, x)[0] - ref):.1e}), {time.perf_counter() - t0:.1f} s",
          flush=True)

    def error(ds) -> tuple[float, float]:  # worst row's |front - ref|, spread over rows
        f = front_position(ds.v.values[-1], x)
        return float(np.max(np.abs(f - ref))), float(np.ptp(f))

    n_explicit = int(np.ceil(t_end / (0.9 * limit)))
    target, _ = error(run(case_of(cable, "explicit", n_explicit), None)[0])
    print(f"explicit, cable, dt {t_end / n_explicit:.6f} ({t_end / n_explicit / limit:.3f} x "
          f"limit): front error {target:.3e}", flush=True)

    def split_steps(merged: bool) -> int:
        """The largest dt = t_end / n whose front error is within explicit's."""
        scan = {}
        label = "split merged" if merged else "split"

        def split_error(n: int) -> float:
            if n not in scan:
                scan[n] = error(run(case_of(cable, "split", n, merged), None)[0])[0]
                print(f"  {label}, cable, dt {t_end / n:.5f}: front error {scan[n]:.3e}",
                      flush=True)
            return scan[n]

        n = 30  # dt = 2, then halves
        while split_error(n) > target:
            n *= 2
        fail, ok = n // 2, n
        while ok - fail > 1:  # the largest dt = t_end / n with error <= target
            mid = (fail + ok) // 2
            if split_error(mid) <= target:
                ok = mid
            else:
                fail = mid
        for finer in (2 * ok, 4 * ok):  # smaller steps stay within the target too
            split_error(finer)
        return ok

    steps = {"ADI-split": split_steps(False), "ADI-split merged": split_steps(True)}
    runs = {"explicit": case_of(sheet, "explicit", n_explicit),
            "ADI-split": case_of(sheet, "split", steps["ADI-split"]),
            "ADI-split merged": case_of(sheet, "split", steps["ADI-split merged"], True)}
    errors = {}
    for name, case in runs.items():  # accuracy on the sheet; also compiles, touches
        errors[name] = error(run(case, None)[0])
    solvers = {}
    for name, case in runs.items():
        _, solvers[name] = build_solver(case)
        solvers[name].advance(solvers[name].init(), 0.0, case.time.dt, 2)

    threads = [1] if default_threads == 1 else [1, default_threads]
    times = {(name, th, what): [] for name in runs for th in threads
             for what in ("step", "e2e")}
    for _ in range(repeats):  # interleaved: each repeat runs every combination once
        for th in threads:
            numba.set_num_threads(th)
            for name, case in runs.items():
                solver = solvers[name]
                t0 = time.perf_counter()
                solver.advance(solver.init(), 0.0, case.time.dt, case.time.n_steps)
                times[name, th, "step"].append(time.perf_counter() - t0)
                times[name, th, "e2e"].append(run(case, None)[1])
    numba.set_num_threads(default_threads)
    print(f"load average after {' '.join(f'{a:.2f}' for a in os.getloadavg())}")
    print("\n| method | dt | dt / limit | steps | front error | row spread | threads | "
          "ms/step | stepping s | end to end s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    med = {k: statistics.median(v) for k, v in times.items()}
    for th in threads:
        for name, case in runs.items():
            steps = case.time.n_steps
            print(f"| {name} | {case.time.dt:.6f} | {case.time.dt / limit:.2f} | {steps} | "
                  f"{errors[name][0]:.3e} | {errors[name][1]:.1e} | {th} | "
                  f"{med[name, th, 'step'] / steps * 1e3:.2f} | {med[name, th, 'step']:.2f} | "
                  f"{med[name, th, 'e2e']:.2f} |")
    for th in threads:
        for name in ("ADI-split", "ADI-split merged"):
            print(f"{th} thread(s), median of {repeats}: {name} at dt {runs[name].time.dt:.5f} "
                  f"is {med['explicit', th, 'step'] / med[name, th, 'step']:.2f}x faster "
                  f"stepping, {med['explicit', th, 'e2e'] / med[name, th, 'e2e']:.2f}x end "
                  f"to end, than explicit at 0.9 x its limit, at front error <= explicit's "
                  f"(ratios of the medians; per repeat stepping ratios "
                  + ", ".join(f"{e / a:.2f}" for e, a in zip(times['explicit', th, 'step'],
                                                              times[name, th, 'step'],
                                                              strict=True)) + ")")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("study", "speed", "planar"))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=None,
                    help="timing repeats (median): speed 1, planar 3 unless given")
    ap.add_argument("--part", choices=("all", "levels", "pairs"), default="all",
                    help="study: the dx/dt levels, the explicit/ADI pairs, or both")
    args = ap.parse_args()
    if args.what == "study":
        with tempfile.TemporaryDirectory() as tmp:
            study(args.out or Path(tmp), args.part)
    elif args.what == "speed":
        speed(args.repeats or 1)
    else:
        planar(args.repeats or 3)


if __name__ == "__main__":
    main()
