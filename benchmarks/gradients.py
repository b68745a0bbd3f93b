"""Gradients through the solvers: what one costs, how much memory, and what a fit takes.

    python benchmarks/gradients.py [--quick] [--only cost,memory,unrolled,fit]

All on torch, CPU, float64, one thread (``torch.set_num_threads(1)``). A cost ratio is the
median over ``--repeats`` pairs of runs timed back to back (forward, then gradient) after a
warm-up of each, so that the load of a shared machine changing between the two does not
enter it.

- **cost**: one gradient (forward + backward of the mean square of v at the last output with
  respect to a, eps, D) / one forward run without gradients, for explicit and
  Crank–Nicolson at nx 801 and 12,801 (the divergent case; explicit at 0.9 of its stability
  limit, Crank–Nicolson at dt 0.05; ~1,000 and ~400 steps, outputs every 50 steps); the
  explicit gradient twice: its backward pass by the numba kernel (what CPU tensors get) and
  by torch operations (what tensors on a GPU get, ``run.FORCE_ARRAY_ADJOINT``).
- **memory**: peak resident memory added by the gradient of the 15,000-step explicit run
  (cases/divergent.yaml: nx 801, dt 0.02, t_end 300, 301 outputs), with checkpointing per
  output interval and without, against the memory of the stored outputs (v and w, float64).
  Each measurement runs in a fresh process: the peak of the resident anonymous memory
  (``RssAnon``, sampled every millisecond) minus its value just before the gradient, after a
  warm-up gradient of a short run; every tensor in a mapping of its own, so that freed memory
  leaves the count.
- **unrolled**: Crank–Nicolson's implicit-function gradient against backpropagation through
  the unrolled Newton iterations (the naive alternative, written here: the solver's Newton
  iteration, its tolerance and its tridiagonal method, every operation recorded), no
  checkpointing: time and peak memory, at dt 0.05 (about one Newton
  iteration a step) and 0.25 (about two), nx 801, t_end 50.
- **fit**: the recovery of tests/test_gradients_fit.py (divergent case, nx 101, dt 0.1,
  t_end 50; from a = 0.15, eps = 0.02, D = 1.3 to 0.1, 0.01, 1): ``fhnpde.fit`` (L-BFGS-B,
  exact gradients) against scipy's L-BFGS-B with central finite-difference gradients of the
  forward run of numba (the fastest here) and of torch (the same backend), on the same
  log-parameters; time until all three are within 1e-3 relative.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import fhnpde  # noqa: E402

WRT = ["model.params.a", "model.params.eps", "model.diffusion"]


def divergent(**changes):
    return fhnpde.load_case(ROOT / "cases" / "divergent.yaml").with_changes(
        {"solver.backend": "torch", "solver.tridiagonal": "cyclic-reduction", **changes})


def final_mean_square(run):
    return (run.v[-1] ** 2).mean()


def timed_pairs(first, second, repeats):
    """Medians of ``first``'s and ``second``'s times and of their ratio, timed back to back in
    ``repeats`` pairs after a warm-up of each (so a change of the machine's load between the
    two measurements does not enter a ratio)."""
    first()
    second()
    a, b = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        first()
        t1 = time.perf_counter()
        second()
        t2 = time.perf_counter()
        a.append(t1 - t0)
        b.append(t2 - t1)
    return (statistics.median(a), statistics.median(b),
            statistics.median(y / x for x, y in zip(a, b, strict=True)))


def cost_case(method: str, nx: int, quick: bool):
    dx = 200.0 / (nx - 1)
    if method == "explicit":
        dt = float(f"{0.9 * dx * dx / 2:.3g}")
        steps = 200 if quick else 1000
    else:
        dt, steps = 0.05, 100 if quick else 400
    return divergent(**{"solver.method": method, "domain.nx": nx, "time.dt": dt,
                        "time.t_end": steps * dt, "time.save_every": 50 * dt})


def bench_cost(args):
    import torch

    from fhnpde.gradients import api, run, wrt

    rows = []
    # explicit twice: its backward pass by the numba kernel (CPU tensors), then by torch
    # operations (the path of tensors on a GPU)
    for method, arrays in (("explicit", False), ("explicit", True), ("crank-nicolson", False)):
        label = method + (" (torch-op adjoint)" if arrays else "")
        for nx in (801, 12801):
            case = cost_case(method, nx, args.quick)
            targets = wrt.resolve(case, WRT)

            def forward(case=case):
                with torch.no_grad():
                    run.trajectory(case)

            def gradient(case=case, targets=targets):
                api.evaluate(case, targets, final_mean_square)

            run.FORCE_ARRAY_ADJOINT = arrays
            try:
                tf, tg, ratio = timed_pairs(forward, gradient, args.repeats)
            finally:
                run.FORCE_ARRAY_ADJOINT = False
            rows.append({"method": label, "nx": nx, "dt": case.time.dt,
                         "steps": case.time.n_steps, "forward_s": tf, "gradient_s": tg,
                         "ratio": ratio})
            print(f"cost  {label:34s} nx {nx:6d} steps {case.time.n_steps:5d}: forward "
                  f"{tf:.3f} s, gradient {tg:.3f} s (medians), ratio {ratio:.2f} (median of "
                  f"{args.repeats} back-to-back pairs)", flush=True)
    return rows


# --- memory: one measurement per fresh process -----------------------------------------------


def anonymous_bytes() -> int:
    """The process's resident anonymous memory (``RssAnon``: the heap and mappings of
    tensors, not the pages of its libraries, which a loaded machine may evict and fault in
    again at any time)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


class PeakSampler:
    """The largest :func:`anonymous_bytes` seen every millisecond while the block runs (the
    kernel keeps no peak of it; torch releases the GIL in its operations)."""

    def __enter__(self):
        import threading

        self.peak = anonymous_bytes()
        self.stop = threading.Event()

        def sample():
            while not self.stop.wait(0.001):
                self.peak = max(self.peak, anonymous_bytes())

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, anonymous_bytes())


def memory_child(kind: str, quick: bool) -> dict:
    """Run in a child process: the peak memory the gradient adds."""
    import torch

    torch.set_num_threads(1)
    from fhnpde.gradients import api, wrt

    if kind.startswith("explicit"):
        case = divergent(**{"time.t_end": 30.0 if quick else 300.0})  # dt 0.02, nx 801
    else:  # cn-implicit-DT, unrolled-DT
        dt = float(kind.rsplit("-", 1)[1])
        case = divergent(**{"solver.method": "crank-nicolson", "time.dt": dt,
                            "time.t_end": 10.0 if quick else 50.0})
    checkpoint = kind.endswith("checkpoint")
    small = case.with_changes({"time.t_end": 2.0})
    loss = final_mean_square
    if kind.startswith("unrolled"):
        loss_fn = unrolled_gradient
    else:
        def loss_fn(c, cp):
            return api.evaluate(c, wrt.resolve(c, WRT), loss, checkpoint=cp)
    loss_fn(small, checkpoint)  # imports, first allocations
    before = anonymous_bytes()
    t0 = time.perf_counter()
    with PeakSampler() as sampler:
        value, grads = loss_fn(case, checkpoint)
    seconds = time.perf_counter() - t0
    peak = sampler.peak
    n_outputs = len(fhnpde.driver.output_times(case.time.n_steps, case.time.steps_per_output,
                                               case.time.dt))
    stored = 2 * 8 * n_outputs * case.domain.nx
    return {"kind": kind, "steps": case.time.n_steps, "outputs": n_outputs, "nx": case.domain.nx,
            "stored_bytes": stored, "added_peak_bytes": peak - before, "seconds": seconds,
            "ratio": (peak - before) / stored, "loss": value, "grads": grads}


def measure_memory(kind: str, quick: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", kind] + (["--quick"] if quick else [])
    # every tensor in its own mapping (glibc), so the resident size follows the live tensors
    # instead of a heap that keeps freed blocks
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "MALLOC_MMAP_THRESHOLD_": "4096"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_memory(args):
    rows = []
    for kind in ("explicit-checkpoint", "explicit-full"):
        r = measure_memory(kind, args.quick)
        rows.append(r)
        print(f"memory {kind:20s} {r['steps']} steps, {r['outputs']} outputs x nx {r['nx']}: "
              f"stored {r['stored_bytes'] / 2**20:.1f} MiB, gradient adds "
              f"{r['added_peak_bytes'] / 2**20:.1f} MiB peak = {r['ratio']:.2f} x stored "
              f"({r['seconds']:.1f} s)", flush=True)
    return rows


# --- Crank–Nicolson: unrolled Newton, the naive alternative ---------------------------------


def unrolled_gradient(case, checkpoint=False):
    """(loss, grads) by backpropagating through every Newton iteration of every step (the same
    formulas, tolerance and stopping rule as the solver; nothing detached)."""
    import array_api_compat.torch as xp
    import torch

    from fhnpde.gradients.api import leaves
    from fhnpde.gradients.run import DifferentiableProblem, case_with
    from fhnpde.gradients.tridiagonal import solve
    from fhnpde.gradients.wrt import resolve
    from fhnpde.models import reaction_by_code, recovery_by_code
    from fhnpde.operators import laplacian_bands
    from fhnpde.schemes import (
        cn_known_part,
        cn_newton_node,
        newton_error_left,
        newton_guess,
        trapezoid_w_affine,
    )

    targets = resolve(case, WRT)
    tensors = leaves(targets)
    case = case_with(case, targets, tensors)
    dp = DifferentiableProblem(case, targets, tensors)
    grid, p, D = dp.problem.grid, dp.params, dp.diffusion
    inv_dx2 = 1.0 / grid.dx**2
    lower, diag, upper, _, _ = (dp.tensor(b) for b in laplacian_bands(grid))
    alpha, beta, delta, dfdw = recovery_by_code(dp.code, p)
    newton = dp.solver.newton
    dt, h = case.time.dt, 0.5 * case.time.dt
    v, w = dp.v0, dp.w0
    iterations = 0
    per = case.time.steps_per_output
    for first in range(0, case.time.n_steps, per):
        before, k_est = None, 0.0
        for s in range(first, min(first + per, case.time.n_steps)):
            t = s * dt
            f0, g0 = reaction_by_code(dp.code, v, w, dp.current(t), p)
            left, right = grid.neighbours(v, xp)
            known = cn_known_part(left, v, right, f0, h, D, inv_dx2)
            c0, c1 = trapezoid_w_affine(w, g0, h, alpha, beta, delta)
            guess = newton_guess(v, before, newton.extrapolate and before is not None)
            u, previous = guess, 0.0
            for _ in range(newton.max_iter):
                left, right = grid.neighbours(u, xp)
                residual, jdiag = cn_newton_node(dp.code, left, u, right, known, c0, c1,
                                                 dp.current(t + dt), p, dfdw, h, D, inv_dx2)
                scale_d = -h * D
                update = solve(scale_d * lower, jdiag + scale_d * diag, scale_d * upper,
                               -residual, dp.solver.method)
                iterations += 1
                u = u + update
                size = float(update.detach().abs().max())
                scale = max(1.0, float(u.detach().abs().max()))
                error, k_est = newton_error_left(size, previous, k_est, scale, newton.quadratic)
                if error <= newton.rtol * scale:
                    break
                previous = size
            before = v
            v, w = u, c0 + c1 * u
    value = (v**2).mean()
    grads = torch.autograd.grad(value, list(tensors.values()))
    out = {k: float(g) for k, g in zip(tensors, grads, strict=True)}
    out["newton_per_step"] = iterations / case.time.n_steps
    return float(value.detach()), out


def bench_unrolled(args):
    rows = []
    for dt in (0.05, 0.25):
        imp = measure_memory(f"cn-implicit-{dt}", args.quick)
        unr = measure_memory(f"unrolled-{dt}", args.quick)
        rows += [imp, unr]
        print(f"cn    dt {dt}: {imp['steps']} steps nx {imp['nx']}, Newton "
              f"{unr['grads']['newton_per_step']:.2f} iterations per step; implicit "
              f"{imp['seconds']:.2f} s, {imp['added_peak_bytes'] / 2**20:.1f} MiB; unrolled "
              f"{unr['seconds']:.2f} s, {unr['added_peak_bytes'] / 2**20:.1f} MiB; unrolled / "
              f"implicit: time {unr['seconds'] / imp['seconds']:.2f}, memory "
              f"{unr['added_peak_bytes'] / max(imp['added_peak_bytes'], 1):.2f}; largest "
              "relative difference of the gradients "
              + f"{max(abs(unr['grads'][k] / imp['grads'][k] - 1) for k in imp['grads']):.1e}",
              flush=True)
    return rows


# --- the fit against finite differences -----------------------------------------------------


TRUE = {"model.params.a": 0.1, "model.params.eps": 0.01, "model.diffusion": 1.0}
START = {"model.params.a": 0.15, "model.params.eps": 0.02, "model.diffusion": 1.3}


def worst(values):
    return max(abs(values[p] / TRUE[p] - 1.0) for p in TRUE)


def bench_fit(args):
    case = divergent(**{"time.t_end": 50.0, "time.dt": 0.1, "domain.nx": 101})
    data = fhnpde.solve(case.with_changes({"solver.backend": "numpy"}))
    target = data.v.values

    t0 = time.perf_counter()
    result = fhnpde.fit(case, data, WRT, START)
    t_exact = time.perf_counter() - t0
    reached = next((t for t, values in result.trace if worst(values) < 1e-3), None)
    print(f"fit   exact gradients (torch): {result.iterations} iterations, {result.evaluations} "
          f"gradients, {t_exact:.2f} s in all, worst relative error "
          f"{worst(result.values):.2e}, within 1e-3 after "
          + (f"{reached:.2f} s" if reached is not None else "never"), flush=True)

    out = {"exact_s": t_exact, "exact_iterations": result.iterations,
           "exact_error": worst(result.values)}
    for backend in ("numba", "torch"):
        out[backend] = fit_by_differences(case, backend, target)
    return out


def fit_by_differences(case, backend, target):
    """scipy's L-BFGS-B with central differences of runs on ``backend``."""
    import torch
    from scipy.optimize import minimize

    from fhnpde.gradients.run import trajectory

    fast = case.with_changes({"solver.backend": backend})

    def run_v(c):
        if backend == "torch":
            with torch.no_grad():
                return trajectory(c).v.numpy()
        return fhnpde.solve(c).v.values

    run_v(fast)  # compile
    state = {"runs": 0, "reached": None}
    t0 = time.perf_counter()

    def loss_of(u):
        state["runs"] += 1
        theta = dict(zip(WRT, np.exp(u), strict=True))
        v = run_v(fast.with_changes({k: float(x) for k, x in theta.items()}))
        return float(np.mean((v - target) ** 2)), theta

    def objective(u):
        value, theta = loss_of(u)
        if state["reached"] is None and worst(theta) < 1e-3:
            state["reached"] = time.perf_counter() - t0
        grad = np.empty_like(u)
        for i in range(u.size):
            e = np.zeros_like(u)
            e[i] = 1e-6
            grad[i] = (loss_of(u + e)[0] - loss_of(u - e)[0]) / 2e-6
        return value, grad

    u0 = np.log([START[p] for p in WRT])
    fd = minimize(objective, u0, jac=True, method="L-BFGS-B",
                  options={"maxiter": 100, "ftol": 1e-14, "gtol": 1e-10})
    t_fd = time.perf_counter() - t0
    values = dict(zip(WRT, np.exp(fd.x), strict=True))
    reached = state["reached"]
    print(f"fit   finite differences ({backend}, scipy L-BFGS-B): {fd.nit} iterations, "
          f"{state['runs']} runs, {t_fd:.2f} s in all, worst relative error "
          f"{worst(values):.2e}, within 1e-3 after "
          + (f"{reached:.2f} s" if reached is not None else "never"), flush=True)
    return {"fd_s": t_fd, "fd_reached_s": reached, "fd_iterations": int(fd.nit),
            "fd_runs": state["runs"], "fd_error": worst(values)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (a smoke test)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="cost,memory,unrolled,fit")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(memory_child(args.child, args.quick)))
        return 0
    import torch

    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {os.cpu_count()} cores, load "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    parts = {"cost": bench_cost, "memory": bench_memory, "unrolled": bench_unrolled,
             "fit": bench_fit}
    for name in args.only.split(","):
        parts[name](args)
    print(f"load at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
