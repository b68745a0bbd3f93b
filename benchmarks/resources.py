"""Memory estimates (fhnpde.resources) against the resident-set peak of real runs.

For every solver family and backend, a fresh process warms up the same code paths (its
modules loaded, kernels compiled), then runs the case at 10^6 nodes (members) and reports
the rise of its resident-set peak (VmHWM) over the resident set before the run, beside the
estimate less ``LIBRARIES`` (what the modules take, counted once per process). The table
gives the median over repeats of peak / estimate: the check refuses a run on the estimate,
so it should sit at or a little above the peak (ratio <= 1), and not far above it.

    .venv/bin/python benchmarks/resources.py [--repeats 3] [--only explicit-numba ...]

Linux only (reads /proc/self/status). Run it on a quiet machine: another process's memory
pressure changes what the allocator keeps.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "cases"

# VmRSS / VmHWM of this process. Not getrusage's ru_maxrss: Linux carries the parent's peak
# into it across fork and exec.
MEASURE = textwrap.dedent("""
    import ctypes, gc, sys, tempfile

    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024

    from fhnpde.case import load_case
    from fhnpde.driver import run_case
    from fhnpde.resources import LIBRARIES, estimate_run

    path, size_key, size, sets = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    with tempfile.TemporaryDirectory() as d:
        # warm-up above the kernels' parallel threshold: modules loaded, kernels compiled
        run_case(load_case(path, [*sets, f"{size_key}=300001"]), out=d + "/warm.zarr")
        case = load_case(path, [*sets, f"{size_key}={size}"])
        gc.collect()
        try:  # hand back what the allocator kept of the warm-up, so the run cannot reuse it
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
        before = status("VmRSS")
        assert run_case(case, out=d + "/big.zarr").status == "complete"
        peak = status("VmHWM") - before
    print(peak, estimate_run(case).memory - LIBRARIES)
""")

# 10 steps at the explicit limit of 10^6 nodes (dx^2 / 2D = 2e-8), two outputs per chunk
CABLE_SHORT = ["time.dt=1e-8", "time.t_end=1e-7", "time.save_every=5e-8"]
SHORT_CN = ["time.t_end=1.0", "time.save_every=0.5"]  # two steps of the case's dt 0.5
POINT_SHORT = ["time.t_end=0.1", "time.save_every=0.05"]

RUNS = {
    "explicit-numba": ("divergent.yaml", "domain.nx", ["solver.backend=numba", *CABLE_SHORT]),
    "explicit-numpy": ("divergent.yaml", "domain.nx", ["solver.backend=numpy", *CABLE_SHORT]),
    "cn-numba": ("divergent_cn.yaml", "domain.nx", SHORT_CN),
    "cn-numpy": ("divergent_cn.yaml", "domain.nx", ["solver.backend=numpy", *SHORT_CN]),
    "split-numba": ("divergent_split.yaml", "domain.nx", SHORT_CN),
    "split-numpy": ("divergent_split.yaml", "domain.nx", ["solver.backend=numpy", *SHORT_CN]),
    "adaptive-numba": ("divergent_adaptive.yaml", "domain.nx",
                       ["solver.adaptive.coarse_dx=0.0001", "solver.adaptive.regrid_every=2e-8",
                        *CABLE_SHORT]),
    "rk4-numba": ("cell_ensemble.yaml", "ensemble.size", POINT_SHORT),
    "rk4-numpy": ("cell_ensemble.yaml", "ensemble.size", ["solver.backend=numpy", *POINT_SHORT]),
    "euler-numpy": ("cell_ensemble.yaml", "ensemble.size",
                    ["solver.method=euler", "solver.backend=numpy", *POINT_SHORT]),
    "cn-point-numba": ("cell_ensemble.yaml", "ensemble.size",
                       ["solver.method=crank-nicolson", *POINT_SHORT]),
    "cn-point-numpy": ("cell_ensemble.yaml", "ensemble.size",
                       ["solver.method=crank-nicolson", "solver.backend=numpy", *POINT_SHORT]),
}


def measure(case_file: str, size_key: str, sets: list[str]) -> tuple[int, int]:
    size = 1_000_001 if size_key == "domain.nx" else 1_000_000
    out = subprocess.run([sys.executable, "-c", MEASURE, str(CASES / case_file), size_key,
                          str(size), *sets], capture_output=True, text=True, cwd=ROOT,
                         timeout=600, check=True)
    peak, estimate = (int(x) for x in out.stdout.split()[-2:])
    return peak, estimate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="*", choices=sorted(RUNS), default=None)
    args = parser.parse_args()
    print(f"{'run':16} {'peak MiB':>9} {'estimate MiB':>13} {'peak/estimate':>14}")
    for name in args.only or RUNS:
        results = [measure(*RUNS[name]) for _ in range(args.repeats)]
        peak = statistics.median(p for p, _ in results)
        estimate = results[0][1]
        ratios = [p / e for p, e in results]
        print(f"{name:16} {peak / 2**20:9.0f} {estimate / 2**20:13.0f} "
              f"{statistics.median(ratios):14.2f}")


if __name__ == "__main__":
    main()
