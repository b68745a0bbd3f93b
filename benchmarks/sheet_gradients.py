"""Gradients through sheets: what one costs against the forward run.

    python benchmarks/sheet_gradients.py [--n 128] [--steps 200] [--repeats 5]

On torch, CPU, float64, one thread (``torch.set_num_threads(1)``, NUMBA_NUM_THREADS=1). The
sheet is cases/sheet_planar.yaml's kinetics on an n x n grid (dx = dy = 0.5) with a round
gaussian pulse off the centre, ``--steps`` steps with an output every 20; explicit at 0.9 of
its stability limit (dx^2 / (4 D)), split (ADI, exact RK4 reaction) at dt 0.1.

A ratio is the median over ``--repeats`` pairs timed back to back (forward without
gradients, then one gradient: forward + backward of the mean square of v at the last output
with respect to a, eps, D and the pulse's centre along x), after a warm-up of each, so that a
change of the machine's load between the two does not enter it. The forward of the numpy
backend (numba kernels) on the same case is timed too, for scale.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import fhnpde  # noqa: E402

WRT = ["model.params.a", "model.params.eps", "model.diffusion", "initial.v.center.0"]


def sheet_case(method: str, n: int, steps: int):
    spacing = 0.5
    length = spacing * (n - 1)
    dt = 0.9 * spacing**2 / 4.0 if method == "explicit" else 0.1
    return fhnpde.load_case(ROOT / "cases" / "sheet_planar.yaml").with_changes({
        "domain.length": [length, length], "domain.nx": [n, n],
        "initial.v": {"kind": "gaussian", "center": [0.4 * length, 0.45 * length],
                      "width": 3.0, "amplitude": 1.0},
        "time.dt": dt, "time.t_end": steps * dt, "time.save_every": 20 * dt,
        "solver.method": method, "solver.backend": "torch",
        "solver.tridiagonal": "cyclic-reduction"})


def final_mean_square(run):
    return (run.v[-1] ** 2).mean()


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(method: str, n: int, steps: int, repeats: int) -> dict:
    import torch

    from fhnpde.gradients import api, run, wrt

    case = sheet_case(method, n, steps)
    targets = wrt.resolve(case, WRT)

    def forward():
        with torch.no_grad():
            run.trajectory(case)

    def gradient():
        api.evaluate(case, targets, final_mean_square)

    numpy_case = case.with_changes({"solver.backend": "numpy", "solver.tridiagonal": "thomas"})

    def numpy_forward():
        fhnpde.solve(numpy_case)

    forward(), gradient(), numpy_forward()  # warm-up (compilation, caches)
    pairs = [(timed(forward), timed(gradient), timed(numpy_forward)) for _ in range(repeats)]
    f = statistics.median(p[0] for p in pairs)
    g = statistics.median(p[1] for p in pairs)
    return {"method": method, "n": n, "steps": case.time.n_steps, "forward_s": f,
            "gradient_s": g, "numpy_forward_s": statistics.median(p[2] for p in pairs),
            "ratio": statistics.median(p[1] / p[0] for p in pairs)}


def main(argv=None) -> int:
    import torch

    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", default="explicit,split")
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f}; {args.n} x {args.n}, one thread")
    print("| solver | steps | forward (torch) | gradient | gradient / forward | "
          "forward (numpy+numba) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for method in args.methods.split(","):
        r = measure(method, args.n, args.steps, args.repeats)
        print(f"| {method} | {r['steps']} | {r['forward_s']:.3f} s | {r['gradient_s']:.3f} s | "
              f"{r['ratio']:.2f} | {r['numpy_forward_s']:.3f} s |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
