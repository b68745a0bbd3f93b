"""End-to-end wall time of ``python -m fhnpde run cases/divergent.yaml --quiet``.

Runs the command once to warm numba's on-disk cache, then ``--repeats`` times, and prints
the median and spread of the whole command (Python start, imports, validation, the
15,000-step run and the store) beside a bare ``python -c "import numba, zarr"`` measured in
the same run, so the share of fixed start-up cost is visible. Target: median under 2 s.

    python benchmarks/run_divergent.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "divergent.zarr")
        run = [sys.executable, "-m", "fhnpde", "run", "cases/divergent.yaml", "--quiet",
               "--overwrite", "--out", out]
        timed(run)  # warm numba's cache
        runs = [timed(run) for _ in range(args.repeats)]
        imports = [timed([sys.executable, "-c", "import numba, zarr, pydantic, yaml"])
                   for _ in range(args.repeats)]
        from fhnpde import open_run

        stats = open_run(out).attrs["stats"]
    med = statistics.median(runs)
    print(f"python -m fhnpde run cases/divergent.yaml --quiet  (median of {args.repeats})")
    print(f"  whole command      {med:6.2f} s   (min {min(runs):.2f}, max {max(runs):.2f})"
          f"   target < 2 s: {'met' if med < 2 else 'MISSED'}")
    print(f"  imports alone      {statistics.median(imports):6.2f} s   "
          "(python -c 'import numba, zarr, pydantic, yaml')")
    print(f"  time loop          {stats['wall_time_s']:6.2f} s   (last run's stats: "
          f"start-up {stats['startup_s']:.2f} s, kernel loading {stats['compile_s']:.2f} s)")
    print(f"  share of start-up  {statistics.median(imports) / med:6.0%}")


if __name__ == "__main__":
    main()
