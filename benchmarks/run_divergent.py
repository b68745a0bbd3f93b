"""End-to-end wall time of ``python -m fhnpde run cases/divergent.yaml --quiet``.

Runs the command once to warm numba's on-disk cache, then ``--repeats`` times, and prints
the median and spread of the whole command (Python start, imports, validation, the
15,000-step run and the store) beside a bare ``python -c "import numba, zarr"`` measured in
the same run, so the share of fixed start-up cost is visible. Target: median under 2 s.

``--against DIR`` times another checkout of fhnpde (say the main branch's) in the same run,
interleaved with this one, and prints its median and the ratio.

    python benchmarks/run_divergent.py [--repeats 5] [--against DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], cwd: Path = ROOT) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=cwd)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--against", help="another checkout of fhnpde, timed interleaved")
    args = ap.parse_args()
    other = Path(args.against).resolve() if args.against else None
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "divergent.zarr")
        run = [sys.executable, "-m", "fhnpde", "run", "cases/divergent.yaml", "--quiet",
               "--overwrite", "--out", out]
        # the other checkout writes its own store: the stats printed below are this one's
        run_other = [*run[:-1], str(Path(tmp) / "other.zarr")]
        timed(run)  # warm numba's cache
        load = os.getloadavg()[0]
        runs, others = [], []
        if other is not None:
            timed(run_other, other)
        for r in range(args.repeats):
            if other is not None and r % 2:
                others.append(timed(run_other, other))
            runs.append(timed(run))
            if other is not None and not r % 2:
                others.append(timed(run_other, other))
        imports = [timed([sys.executable, "-c", "import numba, zarr, pydantic, yaml"])
                   for _ in range(args.repeats)]
        from fhnpde import open_run

        stats = open_run(out).attrs["stats"]
    med = statistics.median(runs)
    print(f"python -m fhnpde run cases/divergent.yaml --quiet  (median of {args.repeats}, load "
          f"average {load:.2f} -> {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs)")
    print(f"  whole command      {med:6.2f} s   (min {min(runs):.2f}, max {max(runs):.2f})"
          f"   target < 2 s: {'met' if med < 2 else 'MISSED'}")
    if others:
        print(f"  against            {statistics.median(others):6.2f} s   (min {min(others):.2f}, "
              f"max {max(others):.2f}; ratio {med / statistics.median(others):.2f}; {other})")
    print(f"  imports alone      {statistics.median(imports):6.2f} s   "
          "(python -c 'import numba, zarr, pydantic, yaml')")
    print(f"  time loop          {stats['wall_time_s']:6.2f} s   (last run's stats: "
          f"start-up {stats['startup_s']:.2f} s, kernel loading {stats['compile_s']:.2f} s)")
    print(f"  share of start-up  {statistics.median(imports) / med:6.0%}")


if __name__ == "__main__":
    main()
