"""fhnpde beside its peers on the divergent cable: error, compute and whole-process time.

Every contender solves exactly the divergent case (cases/divergent.yaml): Nagumo kinetics
v_t = v_xx + k (v (1 - v) (v - a) - w), w_t = eps (v - gamma w), k = 1, a = 0.1, eps = 0.01,
gamma = 0.5, on nx nodes dx = 200 / (nx - 1) apart (801 by default), no-flux ends, from
v = exp(-((x - 100) / 5)^2), w = 0, to t = 300. For each it prints

- **error**: the largest distance between its v = 0.3 crossings (front and back of both
  pulses, linearly interpolated between nodes) and those of a fine reference, at t = 100 and
  t = 200; the reference is fhnpde's Crank–Nicolson on nx = 6401 at dt = 0.025, whose own
  error is printed (its distance to nx = 3201 at dt = 0.05, about 4x its own error);
- **compute (warm)**: the time stepping alone, measured inside the process (fhnpde: the
  store's ``stats.wall_time_s - stats.output_s``, the time loop without writing its outputs,
  which is printed apart, by default every 100 time units as the peers keep theirs,
  ``--save-every``; the peers: their run calls, which keep two profiles in memory);
- **whole process**: the command from start to exit, a warm kernel cache assumed (each
  contender runs once before timing; nrnivmodl's build is kept in a temporary folder), and
  the CPU time (user + system) of that process, which a loaded machine inflates less.

Medians of ``--repeats`` (5) runs, interleaved: each repeat runs every contender once.

Contenders, each only when importable (this script installs nothing):

- fhnpde: ``python -m fhnpde run cases/divergent.yaml`` with ``--set`` for the grid, the
  method and dt (explicit below its stability limit, every implicit cable solver registered);
- NEURON (``pip install neuron``): one section of nx segments (cell-centred: the segment
  centres are fhnpde's nodes, the section 200 + dx long), diam 1 um, Ra 2.5e6 ohm cm,
  cm 1 uF/cm2, so that v_t = v_xx exactly (units um, ms, mV), and an NMODL mechanism
  (``FHN_MOD`` below) built by ``nrnivmodl``; ``secondorder = 2`` (Crank–Nicolson, the
  recovery variable staggered by dt/2 and integrated by ``cnexp``), ``continuerun``;
- scipy ``solve_ivp(method="BDF")`` with the exact sparse Jacobian, on the same
  method-of-lines system as fhnpde's (mirror no-flux ends), rtol = atol.

    python benchmarks/peers.py [--nx 801] [--repeats 5] [--fhnpde explicit:0.02 ...]
                               [--neuron 0.5 0.25] [--bdf 1e-3 1e-4] [--targets 0.1 0.03]

``--targets``: also print, for each contender family, its fastest setting (compute and
whole process) whose error is within each target, and fhnpde's ratios to NEURON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT / "cases" / "divergent.yaml"
LENGTH, CENTER, WIDTH = 200.0, 100.0, 5.0
PARAMS = {"k": 1.0, "a": 0.1, "eps": 0.01, "gamma": 0.5}
T_END, SAMPLES, LEVEL = 300.0, (100.0, 200.0), 0.3

FHN_MOD = """\
: Nagumo kinetics (fhnpde DESIGN section 2) as a membrane current. NEURON's units give
: cm dv/dt = -1000 i (mV/ms, uF/cm2, mA/cm2); with cm = 1 uF/cm2 and i scaled by 1/1000
: the equation is dv/dt = k (v (1 - v) (v - a) - w + iapp), v and w dimensionless.
NEURON {
    SUFFIX fhn
    NONSPECIFIC_CURRENT i
    RANGE k, a, eps, gamma, iapp
}
PARAMETER {
    k = 1
    a = 0.1
    eps = 0.01
    gamma = 0.5
    iapp = 0
}
ASSIGNED {
    v
    i
}
STATE { w }
INITIAL { w = 0 }
BREAKPOINT {
    SOLVE states METHOD cnexp
    i = -0.001 * k * (v * (1 - v) * (v - a) - w + iapp)
}
DERIVATIVE states {
    w' = eps * (v - gamma * w)
}
"""


def nodes(nx: int):
    import numpy as np

    return np.linspace(0.0, LENGTH, nx)


def crossings(v, x):
    """Front and back of every pulse: where v crosses LEVEL (fhnpde.plotting's formula)."""
    import numpy as np

    s = np.asarray(v) - LEVEL
    i = np.flatnonzero(np.sign(s[:-1]) != np.sign(s[1:]))
    return x[i] + (x[i + 1] - x[i]) * s[i] / (s[i] - s[i + 1])


def front_error(fronts, reference) -> float:
    import numpy as np

    worst = 0.0
    for got, ref in zip(fronts, reference, strict=True):
        got, ref = np.asarray(got), np.asarray(ref)
        if got.size != ref.size or not np.isfinite(got).all():
            return float("inf")
        if got.size:
            worst = max(worst, float(np.max(np.abs(got - ref))))
    return worst


# --- the peers, each run in a child process that prints one JSON line -------------------------


def child_neuron(nx: int, dt: float, mech: str) -> dict:
    import numpy as np
    from neuron import h

    h.load_file("stdrun.hoc")
    h.nrn_load_dll(mech)
    x = nodes(nx)
    dx = x[1] - x[0]
    sec = h.Section(name="cable")
    sec.nseg, sec.L, sec.diam, sec.Ra, sec.cm = nx, nx * dx, 1.0, 2.5e6, 1.0
    sec.insert("fhn")
    h.secondorder = 2
    h.dt = dt
    h.finitialize(0.0)
    for seg, v in zip(sec, np.exp(-((x - CENTER) / WIDTH) ** 2), strict=True):
        seg.v = v
    h.fcurrent()
    fronts = []
    t0 = time.perf_counter()
    for t in SAMPLES:
        h.continuerun(t)
        fronts.append(np.array([seg.v for seg in sec]))
    h.continuerun(T_END)
    compute = time.perf_counter() - t0
    return {"fronts": [crossings(v, x).tolist() for v in fronts], "compute_s": compute}


def child_bdf(nx: int, tol: float) -> dict:
    import numpy as np
    from scipy import sparse
    from scipy.integrate import solve_ivp

    x = nodes(nx)
    dx = x[1] - x[0]
    k, a, eps, gamma = (PARAMS[p] for p in ("k", "a", "eps", "gamma"))
    main = np.full(nx, -2.0)
    upper, lower = np.ones(nx - 1), np.ones(nx - 1)
    upper[0] = lower[-1] = 2.0  # mirror (ghost) nodes: second-order no-flux ends
    lap = sparse.diags([lower, main, upper], [-1, 0, 1], format="csr") / dx**2

    def rhs(t, y):
        v, w = y[:nx], y[nx:]
        return np.concatenate([lap @ v + k * (v * (1 - v) * (v - a) - w),
                               eps * (v - gamma * w)])

    eye = sparse.identity(nx, format="csr")

    def jac(t, y):
        v = y[:nx]
        dfdv = k * (-3 * v**2 + 2 * (1 + a) * v - a)
        return sparse.bmat([[lap + sparse.diags(dfdv), -k * eye],
                            [eps * eye, -eps * gamma * eye]], format="csc")

    y0 = np.concatenate([np.exp(-((x - CENTER) / WIDTH) ** 2), np.zeros(nx)])
    t0 = time.perf_counter()
    sol = solve_ivp(rhs, (0.0, T_END), y0, method="BDF", rtol=tol, atol=tol, jac=jac,
                    t_eval=[*SAMPLES, T_END])
    compute = time.perf_counter() - t0
    if not sol.success:
        return {"fronts": [[float("nan")]] * len(SAMPLES), "compute_s": compute}
    return {"fronts": [crossings(sol.y[:nx, i], x).tolist() for i in range(len(SAMPLES))],
            "compute_s": compute}


# --- the parent: contenders, reference, timing -----------------------------------------------


class Contender:
    def __init__(self, family: str, label: str, command: list[str], store: Path | None = None):
        self.family, self.label, self.command, self.store = family, label, command, store
        self.whole: list[float] = []
        self.cpu: list[float] = []
        self.compute: list[float] = []
        self.output: list[float] = []
        self.error = float("nan")
        self.failed = ""

    def run(self, reference) -> None:
        import resource

        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(self.command, cwd=ROOT, capture_output=True, text=True)
        whole = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        if done.returncode != 0:  # a blow-up, a failed solve: in the table as failed
            self.failed = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "?"
            self.whole.append(whole)
            return
        if self.store is not None:
            fronts, compute, output = fhnpde_result(self.store)
            self.output.append(output)
        else:
            out = json.loads(done.stdout.strip().splitlines()[-1])
            fronts, compute = out["fronts"], out["compute_s"]
        self.whole.append(whole)
        self.compute.append(compute)
        self.error = front_error(fronts, reference)


def fhnpde_result(store: Path):
    import numpy as np
    import zarr

    group = zarr.open_group(str(store), mode="r")
    times = np.asarray(group["time"][:])
    x = np.asarray(group["x"][:])
    fronts = [crossings(group["v"][int(np.argmin(abs(times - t)))], x) for t in SAMPLES]
    stats = group.attrs["stats"]
    return fronts, stats["wall_time_s"] - stats["output_s"], stats["output_s"]


def reference_fronts(nx: int, dt: float):
    import numpy as np

    sys.path.insert(0, str(ROOT))
    import fhnpde

    case = fhnpde.load_case(CASE).with_changes({
        "domain.nx": nx, "time.dt": dt, "time.t_end": SAMPLES[-1],
        "time.save_every": SAMPLES[0], "solver.method": "crank-nicolson"})
    ds = fhnpde.solve(case)
    x = np.asarray(ds.x.values)
    return [crossings(ds.v.sel(time=t).values, x) for t in SAMPLES]


def neuron_mechanism() -> str | None:
    """The NMODL mechanism built by nrnivmodl (once, in a temporary folder), or None when
    NEURON is not importable or nrnivmodl is not found."""
    import importlib.util

    if importlib.util.find_spec("neuron") is None:
        return None
    nrnivmodl = shutil.which("nrnivmodl") or str(Path(sys.executable).parent / "nrnivmodl")
    if not Path(nrnivmodl).exists():
        return None
    import hashlib

    folder = Path(tempfile.gettempdir()) / (
        "fhnpde-peers-" + hashlib.sha256(FHN_MOD.encode()).hexdigest()[:12])
    lib = folder / "x86_64" / "libnrnmech.so"
    if not lib.exists():
        folder.mkdir(exist_ok=True)
        (folder / "fhn.mod").write_text(FHN_MOD)
        subprocess.run([nrnivmodl, "."], cwd=folder, check=True, capture_output=True)
    return str(lib)


def contenders(args, out: Path) -> list[Contender]:
    import importlib.util

    found = []
    for spec in args.fhnpde:
        method, dt = spec.split(":")
        store = out / f"fhnpde_{method}_{dt}.zarr"
        cmd = [sys.executable, "-m", "fhnpde", "run", str(CASE), "--quiet", "--overwrite",
               "--out", str(store), "--set", f"domain.nx={args.nx}", "--set",
               f"solver.method={method}", "--set", f"time.dt={dt}", "--set",
               f"time.save_every={args.save_every}"]
        found.append(Contender("fhnpde " + method, f"fhnpde {method} dt {dt}", cmd, store))
    me = [sys.executable, str(Path(__file__).resolve()), "--nx", str(args.nx), "--child"]
    mech = neuron_mechanism() if args.neuron else None
    if args.neuron and mech is None:
        print("NEURON: not importable here (pip install neuron), skipped")
    for dt in args.neuron if mech else ():
        found.append(Contender("NEURON", f"NEURON CN (secondorder=2) dt {dt}",
                               [*me, "neuron", "--setting", str(dt), "--mech", mech]))
    if importlib.util.find_spec("scipy") is not None:
        for tol in args.bdf:
            found.append(Contender("scipy BDF", f"scipy BDF sparse Jacobian rtol {tol}",
                                   [*me, "bdf", "--setting", str(tol)]))
    for name in ("jaxley", "brian2", "pde", "fipy"):
        if importlib.util.find_spec(name) is not None:
            print(f"{name} is importable, but this script has no set-up for it yet: skipped")
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nx", type=int, default=801)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--fhnpde", nargs="*", default=["explicit:0.02", "crank-nicolson:0.5",
                                                    "crank-nicolson:0.25"],
                    help="METHOD:DT of each fhnpde run")
    ap.add_argument("--neuron", nargs="*", type=float, default=[0.5, 0.25, 0.125])
    ap.add_argument("--bdf", nargs="*", type=float, default=[1e-3, 1e-4])
    ap.add_argument("--targets", nargs="*", type=float, default=[])
    ap.add_argument("--save-every", type=float, default=100.0,
                    help="fhnpde's output interval (100: the outputs the peers keep; the "
                         "case file's 1.0 writes 301 profiles)")
    ap.add_argument("--child", choices=["neuron", "bdf"], help=argparse.SUPPRESS)
    ap.add_argument("--setting", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--mech", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "neuron":
        print(json.dumps(child_neuron(args.nx, args.setting, args.mech)))
        return
    if args.child == "bdf":
        print(json.dumps(child_bdf(args.nx, args.setting)))
        return

    import statistics

    t0 = time.perf_counter()
    reference = reference_fronts(6401, 0.025)
    coarse = reference_fronts(3201, 0.05)
    print(f"reference: fhnpde crank-nicolson nx 6401 dt 0.025 ({time.perf_counter() - t0:.1f} s);"
          f" its distance to nx 3201 dt 0.05: {front_error(coarse, reference):.2g}")
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        found = contenders(args, Path(tmp))
        for c in found:  # warm every cache (numba's kernels, NEURON's first load)
            c.run(reference)
            c.whole.clear()
            c.cpu.clear()
            c.compute.clear()
            c.output.clear()
        for _ in range(args.repeats):
            for c in found:
                c.run(reference)
    print(f"\ndivergent cable, nx {args.nx}, t_end {T_END:g}: medians of {args.repeats} "
          f"interleaved runs; load average {load[0]:.2f} before, {os.getloadavg()[0]:.2f} "
          f"after, {os.cpu_count()} CPUs")
    print("| contender | front error | compute (warm) | writing outputs | whole process | "
          "its CPU time |\n|---|---|---|---|---|---|")
    for c in found:
        if c.failed:
            print(f"| {c.label} | failed: {c.failed[:80]} | | | | |")
            continue
        out = f"{statistics.median(c.output):.4f} s" if c.output else "-"
        print(f"| {c.label} | {c.error:.3g} | {statistics.median(c.compute):.4f} s | {out} | "
              f"{statistics.median(c.whole):.3f} s | {statistics.median(c.cpu):.3f} s |")
    for target in args.targets:
        print(f"\nfastest setting with error <= {target:g}:")
        best = {}
        for c in found:
            if not c.failed and c.error <= target:
                cur = best.get(c.family)
                if cur is None or statistics.median(c.compute) < statistics.median(cur.compute):
                    best[c.family] = c
        nrn = best.get("NEURON")
        for fam, c in best.items():
            comp, whole = statistics.median(c.compute), statistics.median(c.whole)
            ratio = ""
            if nrn is not None and fam.startswith("fhnpde"):
                ratio = (f"  vs NEURON: compute {statistics.median(nrn.compute) / comp:.2f}x "
                         f"faster, whole process {statistics.median(nrn.whole) / whole:.2f}x")
            print(f"  {c.label}: error {c.error:.3g}, compute {comp:.4f} s, whole {whole:.3f} s"
                  + ratio)


if __name__ == "__main__":
    main()
