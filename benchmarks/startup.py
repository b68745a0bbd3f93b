"""Where the whole process of ``python -m fhnpde run CASE`` goes, with a warm kernel cache.

Runs the command ``--repeats`` times (after two warm-up runs: numba's kernel cache and
Python's bytecode caches) with ``-X importtime`` and prints the medians of

- the whole process (wall clock and its CPU time, user + system);
- the first import of each heavy package (``-X importtime``'s cumulative time of its first
  import, which includes what it pulls in that was not loaded yet): numpy, yaml, pydantic,
  numba, zarr, scipy (if anything imports it);
- the store's stats: ``startup_s`` (checks, solver build with the numba and kernel-module
  imports, store set-up), ``compile_s`` (numba loading the cached kernels, including its
  target context), ``wall_time_s`` (the time loop) and its ``output_s`` (writing).

``PYTHONDONTWRITEBYTECODE`` is dropped from the children's environment: without bytecode
caches every module of the package is compiled from source at each start.

    python benchmarks/startup.py [CASE] [--repeats 5] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("numpy", "yaml", "pydantic", "numba", "zarr", "scipy")


def first_imports(stderr: str) -> dict[str, float]:
    """Seconds of the first import of each of PACKAGES (cumulative, from -X importtime)."""
    found: dict[str, float] = {}
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)$", line)
        if m and m.group(2) in PACKAGES and m.group(2) not in found:
            found[m.group(2)] = int(m.group(1)) * 1e-6
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", nargs="?", default="cases/divergent.yaml")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "run.zarr")
        cmd = [sys.executable, "-X", "importtime", "-m", "fhnpde", "run", args.case, "--quiet",
               "--overwrite", "--out", out, *[x for s in args.set for x in ("--set", s)]]
        for _ in range(2):
            subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
        load = os.getloadavg()[0]
        for _ in range(args.repeats):
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            done = subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True,
                                  text=True)
            wall = time.perf_counter() - t0
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
            meta = json.loads((Path(out) / "zarr.json").read_text())
            stats = meta["attributes"]["stats"]
            sample = {"whole process (wall)": wall, "whole process (CPU)": cpu}
            sample.update({f"import {k}": v for k, v in first_imports(done.stderr).items()})
            sample.update({f"stats.{k}": stats[k] for k in
                           ("startup_s", "compile_s", "wall_time_s", "output_s")})
            for k, v in sample.items():
                rows.setdefault(k, []).append(v)
    print(f"python -m fhnpde run {args.case} {' '.join(args.set)}: medians of {args.repeats}, "
          f"load average {load:.2f} -> {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    for k, v in rows.items():
        print(f"  {k:28s} {statistics.median(v):7.3f} s")


if __name__ == "__main__":
    main()
