"""The recovery fit of issue 17 by fhnpde, by Jaxley and by finite differences: time to the
same recovered accuracy.

    python benchmarks/fit_peers.py [--jax-python PATH] [--repeats 3]

The fit (tests/test_gradients_fit.py, benchmarks/gradients.py ``--only fit``): the divergent
cable (cases/divergent.yaml: Nagumo kinetics, k = 1, gamma = 0.5, a Gaussian pulse of
amplitude 1 and width 5 at x = 100, w = 0, no-flux ends) cut to t_end 50 on nx 101 nodes
(dx 2), v observed at every node at every output (save_every 1: 51 profiles); from a = 0.15,
eps = 0.02, D = 1.3, recover a = 0.1, eps = 0.01, D = 1 from a noise-free run recorded at those
values by the same simulator; scipy's L-BFGS-B on log-parameters, the loss divided by its
start value, ftol 1e-14, gtol 1e-10 (``fhnpde.fit``'s defaults) for every contender. Printed
for each: iterations, loss-and-gradient evaluations, time until all three values are within
1e-3 relative (from the call, so including jax's compilation where there is one), the
whole fit's time and the final worst relative error; medians of ``--repeats`` runs.

- **fhnpde** (torch, exact gradients, ``fhnpde.fit``): explicit at dt 0.1 (the test's) and
  Crank–Nicolson at dt 0.1 (the scheme Jaxley uses); the data are fhnpde's numpy run of the
  same case.
- **finite differences** (benchmarks/gradients.py ``fit_by_differences``): the same L-BFGS-B
  with central differences (step 1e-6 in log-parameters) of fhnpde's explicit runs, numba and
  torch.
- **Jaxley** (a jax-based differentiable neuron simulator, run only where it imports: in this
  interpreter or in ``--jax-python``; this script installs nothing): one unbranched cell of nx
  compartments, dx long, radius 0.5 um, axial resistivity 2.5e6 / D ohm cm, capacitance
  1 uF/cm2, so that v_t = D v_xx (um, ms; the compartment centres are fhnpde's nodes, sealed
  ends), and a custom channel (``JAXLEY_CHILD``) with the Nagumo kinetics: current
  -k (v (1 - v)(v - a) - w) / 1000 mA/cm2, w advanced by exponential Euler at frozen v.
  ``jx.integrate(..., solver="crank_nicolson", delta_t=0.1)``, float64; gradients by
  ``jax.value_and_grad`` of the jit-compiled run; D fitted through the axial resistivity.
  Its data: its own run at the true values (so each simulator recovers from a run it can
  match exactly). Also printed: Jaxley's recorded run against fhnpde's Crank–Nicolson at the
  same dt (how far the two discretisations of the same equations differ).
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

ROOT = Path(__file__).resolve().parents[1]

TRUE = {"a": 0.1, "eps": 0.01, "D": 1.0}
START = {"a": 0.15, "eps": 0.02, "D": 1.3}

# The Jaxley side, run by an interpreter where jaxley imports (it needs numpy, scipy, jax and
# jaxley only, not fhnpde): reads the cable as JSON from argv[1], prints its result as JSON.
JAXLEY_CHILD = r'''
import json, math, sys, time
import numpy as np

spec = json.loads(sys.argv[1])
t_import = time.perf_counter()
import jax
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_platform_name", "cpu")
import jax.numpy as jnp
import jaxley as jx
from jaxley.channels import Channel
from scipy.optimize import minimize


class Nagumo(Channel):
    """v_t = k (v (1 - v)(v - a) - w), w_t = eps (v - gamma w) as a membrane current."""

    def __init__(self, name=None):
        self.current_is_in_mA_per_cm2 = True
        super().__init__(name)
        self.channel_params = {"N_k": spec["k"], "N_a": spec["true"]["a"],
                               "N_eps": spec["true"]["eps"], "N_gamma": spec["gamma"]}
        self.channel_states = {"N_w": 0.0}
        self.current_name = "i_N"

    def update_states(self, states, dt, v, params):
        eps, gamma = params["N_eps"], params["N_gamma"]
        rest = v / gamma  # w's equilibrium at frozen v: exponential Euler
        return {"N_w": rest + (states["N_w"] - rest) * jnp.exp(-eps * gamma * dt)}

    def compute_current(self, states, v, params):
        k, a = params["N_k"], params["N_a"]
        return -k * (v * (1.0 - v) * (v - a) - states["N_w"]) / 1000.0  # mA/cm2, cm = 1

    def init_state(self, states, v, params, delta_t):
        return {"N_w": 0.0}


nx, dx, dt, t_end, per = spec["nx"], spec["dx"], spec["dt"], spec["t_end"], spec["per"]
cell = jx.Cell(jx.Branch(jx.Compartment(), ncomp=nx), parents=[-1])
cell.insert(Nagumo())
cell.set("length", dx)
cell.set("radius", 0.5)
cell.set("axial_resistivity", 2.5e6 / spec["true"]["D"])
cell.set("capacitance", 1.0)
for i, value in enumerate(spec["v0"]):
    cell.branch(0).comp(i).set("v", float(value))
cell.record("v", verbose=False)
for key in ("N_a", "N_eps", "axial_resistivity"):
    cell.make_trainable(key, verbose=False)
KEYS = ("a", "eps", "D")


def params_of(u):
    a, eps, d = jnp.exp(u[0]), jnp.exp(u[1]), jnp.exp(u[2])
    return [{"N_a": a[None]}, {"N_eps": eps[None]}, {"axial_resistivity": (2.5e6 / d)[None]}]


def simulate(u):
    v = jx.integrate(cell, params=params_of(u), delta_t=dt, t_max=t_end,
                     solver="crank_nicolson")
    return v[:, ::per]  # (node, output)


u_true = jnp.log(jnp.array([spec["true"][k] for k in KEYS]))
data = jax.jit(simulate)(u_true)
data.block_until_ready()


def loss(u):
    return jnp.mean((simulate(u) - data) ** 2)


value_and_grad = jax.jit(jax.value_and_grad(loss))
forward = jax.jit(loss)


def worst(u):
    theta = np.exp(np.asarray(u))
    return float(max(abs(theta[i] / spec["true"][k] - 1.0) for i, k in enumerate(KEYS)))


out = {"data": np.asarray(data).T.tolist(), "setup_s": time.perf_counter() - t_import}
for rep in range(spec["repeats"]):
    if rep:  # a fresh compilation each repeat, as a new process would pay it
        jax.clear_caches()
        value_and_grad = jax.jit(jax.value_and_grad(loss))
    u0 = np.log([spec["start"][k] for k in KEYS])
    t0 = time.perf_counter()
    state = {"evaluations": 0, "reached": None}
    v0, g0 = value_and_grad(jnp.asarray(u0))
    scale = float(v0)
    first = time.perf_counter() - t0

    def objective(u):
        state["evaluations"] += 1
        value, grad = value_and_grad(jnp.asarray(u))
        return float(value) / scale, np.asarray(grad) / scale

    def step_done(intermediate_result):
        if state["reached"] is None and worst(intermediate_result.x) < 1e-3:
            state["reached"] = time.perf_counter() - t0

    result = minimize(objective, u0, jac=True, method="L-BFGS-B", callback=step_done,
                      options={"maxiter": 100, "ftol": 1e-14, "gtol": 1e-10})
    total = time.perf_counter() - t0
    out.setdefault("runs", []).append({
        "iterations": int(result.nit), "evaluations": state["evaluations"] + 1,
        "reached_s": state["reached"], "total_s": total, "first_call_s": first,
        "error": worst(result.x)})
# one loss-and-gradient and one loss alone, compiled (medians of 5)
u = jnp.asarray(np.log([spec["start"][k] for k in KEYS]))
forward(u).block_until_ready()
times = {"forward": [], "gradient": []}
for _ in range(5):
    t0 = time.perf_counter()
    forward(u).block_until_ready()
    t1 = time.perf_counter()
    value_and_grad(u)[1].block_until_ready()
    times["forward"].append(t1 - t0)
    times["gradient"].append(time.perf_counter() - t1)
out["forward_s"] = sorted(times["forward"])[2]
out["gradient_s"] = sorted(times["gradient"])[2]
out["versions"] = {"jax": jax.__version__, "jaxley": jx.__version__}
print(json.dumps(out))
'''


def the_case():
    import fhnpde

    return fhnpde.load_case(ROOT / "cases" / "divergent.yaml").with_changes(
        {"solver.backend": "torch", "solver.tridiagonal": "cyclic-reduction",
         "time.t_end": 50.0, "time.dt": 0.1, "domain.nx": 101})


PATHS = {"a": "model.params.a", "eps": "model.params.eps", "D": "model.diffusion"}


def worst(values: dict) -> float:
    return max(abs(values[k] / TRUE[k] - 1.0) for k in TRUE)


def fhnpde_fit(method: str) -> dict:
    import fhnpde

    case = the_case().with_changes({"solver.method": method})
    data = fhnpde.solve(case.with_changes({"solver.backend": "numpy"}))
    wrt = list(PATHS.values())
    t0 = time.perf_counter()
    result = fhnpde.fit(case, data, wrt, {PATHS[k]: v for k, v in START.items()})
    total = time.perf_counter() - t0
    offset = total - result.seconds  # the start loss, before fit's clock
    by_key = {k: result.values[p] for k, p in PATHS.items()}
    reached = next((offset + t for t, values in result.trace
                    if worst({k: values[p] for k, p in PATHS.items()}) < 1e-3), None)
    return {"iterations": result.iterations, "evaluations": result.evaluations,
            "reached_s": reached, "total_s": total, "error": worst(by_key)}


def differences_fit(backend: str) -> dict:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gradients import fit_by_differences

    import fhnpde

    case = the_case()
    target = fhnpde.solve(case.with_changes({"solver.backend": "numpy"})).v.values
    r = fit_by_differences(case, backend, target)
    return {"iterations": r["fd_iterations"], "evaluations": r["fd_runs"],
            "reached_s": r["fd_reached_s"], "total_s": r["fd_s"], "error": r["fd_error"]}


def jaxley_python(args) -> str | None:
    if args.jax_python:
        return args.jax_python
    if importlib.util.find_spec("jaxley") is not None:
        return sys.executable
    return None


def jaxley_fit(python: str, repeats: int) -> dict:
    import numpy as np

    case = the_case()
    grid_x = np.arange(case.domain.nx) * (case.domain.length / (case.domain.nx - 1))
    init = case.initial.v
    v0 = init.base + init.amplitude * np.exp(-(((grid_x - init.center) / init.width) ** 2))
    params = case.model.params
    spec = {"nx": case.domain.nx, "dx": case.domain.length / (case.domain.nx - 1),
            "dt": case.time.dt, "t_end": case.time.t_end, "per": case.time.steps_per_output,
            "k": params["k"], "gamma": params["gamma"], "true": TRUE, "start": START,
            "v0": v0.tolist(), "repeats": repeats}
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([python, "-c", JAXLEY_CHILD, json.dumps(spec)], capture_output=True,
                             text=True, env=env, cwd=tmp)
    if out.returncode != 0:
        raise RuntimeError(f"the Jaxley run failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def summary(name: str, runs: list[dict]) -> None:
    def med(key):
        values = [r[key] for r in runs if r[key] is not None]
        return statistics.median(values) if values else None

    reached = med("reached_s")
    print(f"| {name} | {runs[0]['iterations']} | {runs[0]['evaluations']} | "
          + (f"{reached:.2f} s" if reached is not None else "never") + f" | "
          f"{med('total_s'):.2f} s | {max(r['error'] for r in runs):.1e} |", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jax-python", default=None,
                        help="an interpreter where jaxley imports (default: this one, if it "
                             "does; else the Jaxley part is skipped)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    import numpy as np
    import torch

    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {os.cpu_count()} cores, load "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    rows: dict[str, list[dict]] = {}
    python = jaxley_python(args)
    jaxley = None
    if python is None:
        print("Jaxley: not importable here and no --jax-python given: skipped")
    else:
        jaxley = jaxley_fit(python, args.repeats)
        rows["Jaxley (jax.grad, CN dt 0.1)"] = jaxley["runs"]
    for _ in range(args.repeats):
        for method in ("explicit", "crank-nicolson"):
            rows.setdefault(f"fhnpde exact gradients ({method} dt 0.1)", []).append(
                fhnpde_fit(method))
        for backend in ("numba", "torch"):
            rows.setdefault(f"central differences ({backend} explicit runs)", []).append(
                differences_fit(backend))
    print(f"\nrecovery fit, nx 101, t_end 50; medians of {args.repeats} runs; load "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("| contender | iterations | gradients or runs | time to within 1e-3 | whole fit | "
          "worst final error |\n|---|---|---|---|---|---|")
    for name, runs in rows.items():
        summary(name, runs)
    if jaxley is not None:
        import fhnpde

        case = the_case().with_changes({"solver.method": "crank-nicolson",
                                        "solver.backend": "numpy"})
        ours = fhnpde.solve(case).v.values
        theirs = np.asarray(jaxley["data"])
        interior = np.abs(theirs[:, 1:-1] - ours[:, 1:-1]).max()
        runs = jaxley["runs"]
        first = statistics.median(r["first_call_s"] for r in runs)
        after = [r["reached_s"] - r["first_call_s"] for r in runs if r["reached_s"] is not None]
        print(f"\nJaxley {jaxley['versions']}: one compiled loss "
              f"{jaxley['forward_s'] * 1e3:.1f} ms, loss and gradient "
              f"{jaxley['gradient_s'] * 1e3:.1f} ms (ratio "
              f"{jaxley['gradient_s'] / jaxley['forward_s']:.2f}); its first call (compiling) "
              f"{first:.2f} s; time to within 1e-3 after it "
              + (f"{statistics.median(after):.2f} s" if after else "never")
              + f"; setting up the cell and its data {jaxley['setup_s']:.1f} s; its run "
              f"at the true values against fhnpde's Crank-Nicolson at dt 0.1: max |dv| "
              f"{np.abs(theirs - ours).max():.2e} ({interior:.2e} without the end nodes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
