"""Reaction-step throughput: the neural step (ITNN, one batched call) against the exact step.

    python benchmarks/reaction_step.py [--model models/itnn_cable] [--sizes 1e5 1e6 1e7] [--quick]

What is compared, in one run on the same states:

1. **Accuracy.** States ``(v, w)`` are drawn (with replacement) from every node and output
   time of the divergent case (split, dt = dt_r, exact reaction), so they are the states a
   cable visits. One reaction interval dt_r is taken by the neural model and by the exact
   kinetics with m Euler or RK4 substeps; all are compared with a reference (RK4, 256
   substeps, float64). The error is the largest |dv| and |dw| over the states.
2. **The matching exact step**: for each scheme the fewest substeps m whose errors in v and
   in w are both at most the neural model's; of the two, the faster one is the baseline.
3. **Throughput** (nodes per second = n / median time of one step, after a warm-up call) at
   each size n, of:
   - ``neural onnxruntime`` / ``neural torch``: the full :class:`surrogates.reaction.NeuralReaction`
     step as the split solver calls it (pack (v, w, I[, a]) into one float32 (n, n_in) batch, one
     runtime call, unpack to float64), fp32, CPU;
   - ``exact``: :class:`fhnpde.reaction.ExactReaction` with the matching scheme and m, the numba
     kernel the split solver uses (threaded over all cores);
   and the ratio exact time / neural time (> 1: the neural step is faster).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fhnpde.case import load_case  # noqa: E402
from fhnpde.driver import build_solver  # noqa: E402
from fhnpde.reaction import ExactReaction  # noqa: E402


def timed(fn, repeats: int, *args) -> float:
    """Median wall time of fn(*args) over `repeats` calls, after one warm-up call."""
    fn(*args)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cable_states(dt: float) -> np.ndarray:
    """Every (v, w) of the divergent case's split run at this dt (exact RK4 reaction)."""
    case = load_case(ROOT / "cases" / "divergent_split.yaml",
                     [f"time.dt={dt}", "reaction={kind: exact, scheme: rk4, substeps: 4}"])
    _, solver = build_solver(case)
    state, t, out = solver.init(), 0.0, []
    for _ in range(round(case.time.t_end / dt)):
        state = solver.step(state, t, dt)
        t += dt
        out.append(np.stack([state.v, state.w], 1))
    return np.concatenate(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(ROOT / "models" / "itnn_cable"))
    p.add_argument("--sizes", type=float, nargs="+", default=[1e5, 1e6, 1e7])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="sizes 1e4 1e5, 3 repeats")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats = [1e4, 1e5], 3

    from fhnpde.models import Kinetics
    from surrogates.reaction import NeuralReaction, parameter_inputs
    from surrogates.runtime import model_files, open_runtime

    files = model_files(args.model, "onnxruntime")
    meta = files.meta
    dt = float(meta["dt_r"])
    kin = Kinetics.create(meta["kinetics"]["name"], meta["kinetics"]["params"])
    fixed_I = float(meta.get("fixed", {}).get("I", 0.0))
    # a model that takes kinetics parameters as inputs runs at the kinetics' own values
    params = {k: float(kin.params[k]) for k in parameter_inputs(meta)}
    steps = {name: NeuralReaction(open_runtime(args.model, name), meta, name=args.model,
                                  params=params)
             for name in ("onnxruntime", "torch")}

    # 1. accuracy on cable states
    states = cable_states(dt)
    rng = np.random.default_rng(0)
    sample = states[rng.integers(0, len(states), 100_000)]
    v, w = np.ascontiguousarray(sample[:, 0]), np.ascontiguousarray(sample[:, 1])
    current = np.full_like(v, fixed_I)
    ref_v, ref_w = ExactReaction(kin, "rk4", 256, "numba")(v, w, current, dt)

    def errors(step):
        nv, nw = step(v, w, current, dt)
        return float(np.max(np.abs(nv - ref_v))), float(np.max(np.abs(nw - ref_w)))

    neural_err = errors(steps["onnxruntime"])
    torch_err = errors(steps["torch"])
    print(f"# Reaction step, {meta['kinetics']['name']} {meta['kinetics']['params']}, "
          f"dt_r = {dt:g}, model {args.model} ({meta['parameters']} parameters, widths "
          f"{meta['widths']}, {meta['activations'][0]})")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}")
    print(f"\nOne-step max error on {len(v)} cable states (reference RK4 x256):")
    print(f"  neural onnxruntime: |dv| {neural_err[0]:.3g}, |dw| {neural_err[1]:.3g}")
    print(f"  neural torch:       |dv| {torch_err[0]:.3g}, |dw| {torch_err[1]:.3g}")

    # 2. fewest substeps reaching the neural error
    matching = {}
    for scheme, ms in (("euler", [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]), ("rk4", [1, 2, 4, 8])):
        for m in ms:
            e = errors(ExactReaction(kin, scheme, m, "numba"))
            print(f"  exact {scheme} x{m}: |dv| {e[0]:.3g}, |dw| {e[1]:.3g}")
            if e[0] <= neural_err[0] and e[1] <= neural_err[1]:
                matching[scheme] = m
                break
    cand = {s: ExactReaction(kin, s, m, "numba") for s, m in matching.items()}
    speed = {s: timed(r, args.repeats, v, w, current, dt) for s, r in cand.items()}
    base = min(speed, key=speed.get)
    print("\nFewest substeps reaching the neural error: "
          + ", ".join(f"{s} x{m} ({speed[s] * 1e3:.3g} ms / 1e5 nodes)"
                      for s, m in matching.items())
          + f"; baseline: {base} x{matching[base]}")

    # 3. throughput
    print("\n| nodes | neural onnxruntime (nodes/s) | neural torch (nodes/s) | "
          f"exact {base} x{matching[base]} (nodes/s) | exact / onnxruntime time | "
          "exact / torch time |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    exact = cand[base]
    for size in args.sizes:
        n = int(size)
        big = states[rng.integers(0, len(states), n)]
        bv, bw = np.ascontiguousarray(big[:, 0]), np.ascontiguousarray(big[:, 1])
        bi = np.full(n, fixed_I)
        reps = max(2, args.repeats if n <= 1_000_000 else args.repeats // 2)
        t_ort = timed(steps["onnxruntime"], reps, bv, bw, bi, dt)
        t_torch = timed(steps["torch"], reps, bv, bw, bi, dt)
        t_exact = timed(exact, reps, bv, bw, bi, dt)
        print(f"| {n:.0e} | {n / t_ort:.3g} | {n / t_torch:.3g} | {n / t_exact:.3g} | "
              f"{t_exact / t_ort:.3g} | {t_exact / t_torch:.3g} |", flush=True)
        del big, bv, bw, bi
    return 0


if __name__ == "__main__":
    sys.exit(main())
