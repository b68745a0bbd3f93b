"""Where an ADI-split step's time goes on a 512 x 512 sheet: the fused sweeps against the
unfused ones, and the step against an explicit step.

    NUMBA_NUM_THREADS=1 python benchmarks/adi_step_parts.py [--repeats 9] [--wall]

The planar case (``cases/sheet_planar.yaml``) on 512 x 512 nodes, ADI-split at dt = 60 / 203
and explicit at 60 / 6964 (the steps of ``sheet_adi.py planar``), both advanced 60 steps
first (the wave under way). Timed, interleaved (each repeat times every part once), medians:

- ``row sweep``, ``column sweep``: one direction of the fused half-step
  (``adi_numba.implicit_half``: the explicit part formed inside the Thomas sweep);
- ``rows unfused``, ``columns unfused``: the same direction as the explicit part into a
  buffer (``adi_numba.explicit_half``), then the factorised batched solve;
- ``half-step``, ``half-step unfused``: both directions, each into a fresh result;
- ``reaction``: the RK4 reaction step on the sheet's nodes;
- ``ADI step``, ``explicit step``: per step of a 20-step ``advance``.

CPU time of the calling thread by default (the machine is shared: wall time there is partly
the scheduler's), wall time with ``--wall``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import fhnpde  # noqa: E402
from fhnpde.driver import build_solver  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--wall", action="store_true", help="wall time instead of CPU time")
    args = ap.parse_args()
    clock = time.perf_counter if args.wall else time.thread_time
    nodes, t_end = 512, 60.0
    base = fhnpde.load_case(ROOT / "cases" / "sheet_planar.yaml").with_changes(
        {"time.t_end": t_end, "time.save_every": t_end, "domain.nx": [nodes, nodes]})
    adi_case = base.with_changes({"time.dt": t_end / 203, "solver.method": "split"})
    exp_case = base.with_changes({"time.dt": t_end / 6964, "solver.method": "explicit",
                                  "solver.diffusion": None})
    _, adi = build_solver(adi_case)
    _, exp = build_solver(exp_case)
    dt, dt_e = adi_case.time.dt, exp_case.time.dt
    state = adi.advance(adi.init(), 0.0, dt, 60)
    state_e = exp.advance(exp.init(), 0.0, dt_e, 60)
    half = adi.diffusion(dt)
    k, s = half.kernels, half.scale
    v, w = np.array(state.v), np.array(state.w)
    current = adi.asarray(adi.problem.current.current(0.5 * dt))
    iy, ix = 1.0 / half.gy.dx**2, 1.0 / half.gx.dx**2
    fx, fy = half.factors
    rhs, mid, out = (np.empty(v.shape) for _ in range(3))

    def rows_unfused():
        k.explicit_half(-2, v, s, iy, half.gy.ghosts, rhs)
        half.along_x.solve(rhs, axis=-1, out=mid)

    def columns_unfused(result=out):
        k.explicit_half(-1, mid, s, ix, half.gx.ghosts, rhs)
        half.along_y.solve(rhs, axis=-2, out=result)

    def half_unfused():  # a fresh result, as the half-step returns one
        rows_unfused()
        columns_unfused(np.empty(v.shape))

    rows_unfused()
    parts = {
        "row sweep": (lambda: k.implicit_half(-1, v, s, iy, half.gy.ghosts, fx, out,
                                              half.scratch), 1),
        "rows unfused": (rows_unfused, 1),
        "column sweep": (lambda: k.implicit_half(-2, mid, s, ix, half.gx.ghosts, fy, out,
                                                 half.scratch), 1),
        "columns unfused": (columns_unfused, 1),
        "half-step": (lambda: half(v), 1),
        "half-step unfused": (half_unfused, 1),
        "reaction": (lambda: adi.react(v, w, current, dt), 1),
        "ADI step": (lambda: adi.advance(state, 0.0, dt, 20), 20),
        "explicit step": (lambda: exp.advance(state_e, 0.0, dt_e, 20), 20),
    }
    times = {name: [] for name in parts}
    for fn, _ in parts.values():
        fn()
    load = os.getloadavg()
    for _ in range(args.repeats):
        for name, (fn, per) in parts.items():
            t0 = clock()
            for _ in range(10):
                fn()
            times[name].append((clock() - t0) / 10 / per)
    med = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    print(f"512 x 512 planar sheet, one thread, {'wall' if args.wall else 'CPU'} time, "
          f"medians of {args.repeats}; load average {load[0]:.2f} -> {os.getloadavg()[0]:.2f}")
    for name, ms in med.items():
        print(f"{name:>18} {ms:8.3f} ms")
    print(f"ADI step / explicit step {med['ADI step'] / med['explicit step']:.2f} (20-step "
          f"advances; the >= 5x target at 203 against 6964 steps needs <= "
          f"{6964 / 203 / 5:.2f} over a whole run: benchmarks/sheet_adi.py planar)")


if __name__ == "__main__":
    main()
