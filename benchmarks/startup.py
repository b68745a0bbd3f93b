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

``--against DIR`` measures another checkout of fhnpde (say the main branch's) in the same
run, interleaved with this one (each repeat runs both, in alternating order), and prints
both columns and their ratio.

    python benchmarks/startup.py [CASE] [--repeats 5] [--set KEY=VALUE ...] [--against DIR]

What the command imports, in which order and why: docs/performance.md, "The start-up path
of python -m fhnpde run, module by module".
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
PACKAGES = ("numpy", "yaml", "pydantic", "numba", "llvmlite.binding", "zarr", "scipy")


def first_imports(stderr: str) -> dict[str, float]:
    """Seconds of the first import of each of PACKAGES (cumulative, from -X importtime)."""
    found: dict[str, float] = {}
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)$", line)
        if m and m.group(2) in PACKAGES and m.group(2) not in found:
            found[m.group(2)] = int(m.group(1)) * 1e-6
    return found


def sample(cmd: list[str], cwd: Path, env: dict, out: str) -> dict[str, float]:
    """One run of ``cmd`` in ``cwd``: its wall and CPU time, first imports and stats."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    meta = json.loads((Path(out) / "zarr.json").read_text())
    stats = meta["attributes"]["stats"]
    row = {"whole process (wall)": wall, "whole process (CPU)": cpu}
    row.update({f"import {k}": v for k, v in first_imports(done.stderr).items()})
    row.update({f"stats.{k}": stats[k] for k in
                ("startup_s", "compile_s", "wall_time_s", "output_s")})
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", nargs="?", default="cases/divergent.yaml")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--against", help="another checkout of fhnpde, measured interleaved")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    checkouts = [ROOT] + ([Path(args.against).resolve()] if args.against else [])
    rows: dict[Path, dict[str, list[float]]] = {c: {} for c in checkouts}
    case = str((ROOT / args.case).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "run.zarr")
        cmd = [sys.executable, "-X", "importtime", "-m", "fhnpde", "run", case, "--quiet",
               "--overwrite", "--out", out, *[x for s in args.set for x in ("--set", s)]]
        for checkout in checkouts:
            for _ in range(2):
                subprocess.run(cmd, cwd=checkout, env=env, check=True, capture_output=True)
        load = os.getloadavg()[0]
        for r in range(args.repeats):
            for checkout in (checkouts if r % 2 == 0 else checkouts[::-1]):
                for k, v in sample(cmd, checkout, env, out).items():
                    rows[checkout].setdefault(k, []).append(v)
    print(f"python -m fhnpde run {args.case} {' '.join(args.set)}: medians of {args.repeats}, "
          f"load average {load:.2f} -> {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    if len(checkouts) == 1:
        for k, v in rows[ROOT].items():
            print(f"  {k:28s} {statistics.median(v):7.3f} s")
        return
    mine, other = rows[ROOT], rows[checkouts[1]]
    print(f"  {'':28s} {'this':>8s} {'against':>8s} {'ratio':>6s}   (against: {checkouts[1]})")
    for k in dict.fromkeys([*mine, *other]):
        a, b = (statistics.median(r[k]) if k in r else None for r in (mine, other))
        cells = [f"{x:8.3f}" if x is not None else f"{'-':>8s}" for x in (a, b)]
        ratio = f"{a / b:6.2f}" if a is not None and b else f"{'-':>6s}"
        print(f"  {k:28s} {cells[0]} {cells[1]} {ratio}")


if __name__ == "__main__":
    main()
