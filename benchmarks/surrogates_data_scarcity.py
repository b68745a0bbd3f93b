"""Data scarcity on Problem A: PINN vs DDNN with 10 and 1,000 training points, several seeds.

    .venv/bin/python benchmarks/surrogates_data_scarcity.py [--seeds 5] [--iterations 3000]
        [--out runs/surrogates/scarcity]

For each training-set size and seed (the seed of the data draw and of the network), a DDNN
and a PINN (same network, physics + initial-condition terms added) train on the same
points and are validated on 2,000 points of the same trajectory. Prints a table of the
validation MAEs, the medians, and a one-sided Wilcoxon signed-rank test of
"PINN MAE < DDNN MAE" over the paired seeds; writes the table to OUT/results.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from scipy.stats import wilcoxon

from surrogates import CONFIGS
from surrogates.config import load_config
from surrogates.data import generate, load_data
from surrogates.train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=3000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 1000])
    ap.add_argument("--out", default="runs/surrogates/scarcity")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for size in args.sizes:
        for seed in range(args.seeds):
            common = [f"data.train.size={size}", f"data.train.seed={100 + seed}",
                      f"data.path={out}/data-{size}-{seed}.zarr", "model.widths=[32, 32, 32]",
                      f"training.iterations={args.iterations}", "training.batch_size=null",
                      "training.lr=3.0e-3", "training.validate_every=100", "training.patience=null",
                      f"training.seed={seed}"]
            cfg = load_config(CONFIGS / "problem_a.yaml", common)
            path = out / f"data-{size}-{seed}.zarr"
            if not path.exists():
                generate(cfg, path)
            data = load_data(path)
            row = {"size": size, "seed": seed}
            for kind in ("ddnn", "pinn"):
                c = load_config(CONFIGS / "problem_a.yaml", [*common, f"model.kind={kind}"])
                t0 = time.perf_counter()
                res = train(c, out=out / f"{kind}-{size}-{seed}", data=data, overwrite=True)
                row[kind] = res.metrics["mae"]
                row[f"{kind}_s"] = time.perf_counter() - t0
            print(json.dumps(row), flush=True)
            results.append(row)
    lines = ["| points | seed | DDNN MAE | PINN MAE | DDNN s | PINN s |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        lines.append(f"| {r['size']} | {r['seed']} | {r['ddnn']:.3e} | {r['pinn']:.3e} | "
                     f"{r['ddnn_s']:.1f} | {r['pinn_s']:.1f} |")
    lines.append("")
    for size in args.sizes:
        sel = [r for r in results if r["size"] == size]
        d, p = [r["ddnn"] for r in sel], [r["pinn"] for r in sel]
        test = wilcoxon(p, d, alternative="less") if len(sel) > 1 else None
        pval = f"{test.pvalue:.3g}" if test is not None else "n/a"
        wins = sum(a < b for a, b in zip(p, d, strict=True))
        lines.append(f"{size} points: median MAE DDNN {statistics.median(d):.3e}, PINN "
                     f"{statistics.median(p):.3e}; PINN better in {wins}/{len(sel)} seeds; "
                     f"one-sided Wilcoxon signed-rank p = {pval}")
    text = "\n".join(lines)
    print(text)
    (out / "results.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
