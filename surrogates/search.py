"""Architecture search: shapes x sizes x activations, trained in parallel, restartable.

Candidates come from :func:`~surrogates.architectures.enumerate_architectures` (every width
tuple from ``search.widths`` with ``search.layers`` hidden layers and at most
``search.max_neurons`` neurons, grouped by shape). The ``count`` draws go round the shapes
in turn (balanced over shapes), pick a width tuple of that shape at random and draw one
activation per layer, all from ``search.seed``.

Each candidate trains in a worker process (``search.workers``, spawn start method, one
torch thread each) into ``OUT/models/ID``; a candidate whose ``model.json`` exists is
skipped, so an interrupted search restarts where it stopped. Inference time is then
measured in the parent, one model at a time on one thread: the median of 5 forward passes
over ``timing_batch`` inputs, scaled to 10^6 nodes. Results: ``OUT/results.csv``,
``OUT/results.md`` (sorted by MAE) and ``OUT/pareto.png`` (MAE vs inference time, Pareto
front marked).
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import time as _time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from .architectures import enumerate_architectures

ABBREV = {"relu": "re", "tanh": "th", "sigmoid": "sg", "leaky_relu": "lr", "elu": "el", "silu": "si"}
COLUMNS = ["model", "shape", "widths", "activations", "neurons", "parameters", "mae", "mae_v",
           "mae_w", "max_error", "inference_s_per_1e6", "train_s", "iterations"]


def sample_architectures(spec) -> list[dict[str, Any]]:
    """``spec.count`` candidates, round-robin over the shapes that have any width tuple."""
    groups = enumerate_architectures(spec.widths, spec.layers, spec.max_neurons)
    shapes = [s for s in spec.shapes if groups.get(s)]
    if not shapes:
        raise ValueError("no width tuple fits search.widths / layers / max_neurons for any shape")
    rng = np.random.default_rng(spec.seed)
    out = []
    for i in range(spec.count):
        shape = shapes[i % len(shapes)]
        widths = groups[shape][int(rng.integers(len(groups[shape])))]
        acts = [spec.activations[int(rng.integers(len(spec.activations)))] for _ in widths]
        ident = f"{i:03d}-{shape}-{'x'.join(map(str, widths))}-{'.'.join(ABBREV[a] for a in acts)}"
        out.append({"id": ident, "shape": shape, "widths": widths, "activations": acts})
    return out


def _train_candidate(config: dict[str, Any], arch: dict[str, Any], directory: str) -> dict:
    """Worker: train one candidate (its own process, one thread)."""
    import torch

    from .config import parse_config
    from .data import load_data
    from .train import train

    torch.set_num_threads(1)
    cfg_data = json.loads(json.dumps(config))
    cfg_data["model"].update({"widths": arch["widths"], "activations": arch["activations"],
                              "shape": None, "neurons": None, "layers": None})
    cfg_data["training"]["threads"] = 1
    cfg = parse_config(cfg_data, f"search candidate {arch['id']}")
    result = train(cfg, out=directory, quiet=True, data=load_data(cfg.data_path))
    return {"id": arch["id"], "metrics": result.metrics, "wall_s": result.wall_s}


def inference_time(model, n_in: int, batch: int, repeats: int = 5) -> float:
    """Median seconds of one forward pass over ``batch`` inputs, scaled to 10^6 nodes."""
    import torch

    x = torch.rand((batch, n_in))
    with torch.no_grad():
        model(x)
        times = []
        for _ in range(repeats):
            t0 = _time.perf_counter()
            model(x)
            times.append(_time.perf_counter() - t0)
    return float(np.median(times)) * 1e6 / batch


def run_search(cfg, *, workers: int | None = None, count: int | None = None,
               out: str | Path | None = None, quiet: bool = True) -> dict[str, Any]:
    """Train every missing candidate, time them all, write the table and the plot."""
    import torch

    from .data import ensure_data
    from .models import load_model, read_metadata

    spec = cfg.search.model_copy(update={k: v for k, v in
                                         (("workers", workers), ("count", count)) if v})
    root = Path(out) if out is not None else cfg.search_dir
    (root / "models").mkdir(parents=True, exist_ok=True)
    ensure_data(cfg)
    candidates = sample_architectures(spec)
    (root / "candidates.json").write_text(json.dumps(candidates, indent=2))
    pending = [a for a in candidates if not (root / "models" / a["id"] / "model.json").exists()]
    config = cfg.to_dict()
    trained = []
    if pending:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(spec.workers, len(pending)), mp_context=ctx) as pool:
            futures = {pool.submit(_train_candidate, config, a, str(root / "models" / a["id"])): a
                       for a in pending}
            for fut in as_completed(futures):
                res = fut.result()
                trained.append(res["id"])
                if not quiet:
                    print(f"  trained {res['id']}: MAE {res['metrics']['mae']:.3g} "
                          f"({res['wall_s']:.1f} s)", flush=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        for arch in candidates:
            d = root / "models" / arch["id"]
            timing_file = d / "timing.json"
            meta = read_metadata(d)
            if timing_file.exists():
                t_inf = json.loads(timing_file.read_text())["inference_s_per_1e6"]
            else:
                model, _ = load_model(d)
                t_inf = inference_time(model, len(meta["inputs"]), spec.timing_batch)
                timing_file.write_text(json.dumps({"inference_s_per_1e6": t_inf, "threads": 1,
                                                   "batch": spec.timing_batch}))
            val = meta["validation"]
            rows.append({
                "model": arch["id"], "shape": arch["shape"],
                "widths": "x".join(map(str, meta["widths"])),
                "activations": ",".join(meta["activations"]),
                "neurons": sum(meta["widths"]), "parameters": meta["parameters"],
                "mae": val["mae"], "mae_v": val["mae_v"], "mae_w": val["mae_w"],
                "max_error": max(val["max_v"], val["max_w"]),
                "inference_s_per_1e6": t_inf, "train_s": meta["training"]["wall_s"],
                "iterations": meta["training"]["iterations"],
            })
    finally:
        torch.set_num_threads(threads)
    rows.sort(key=lambda r: r["mae"])
    front = pareto_front(rows)
    for r in rows:
        r["pareto"] = r["model"] in front
    write_table(rows, root)
    plot_pareto(rows, root / "pareto.png", cfg.name)
    return {"directory": root, "rows": rows, "trained": trained, "pareto": sorted(front)}


def pareto_front(rows: list[dict[str, Any]]) -> set[str]:
    """Models no other model beats in both MAE and inference time."""
    front = set()
    for r in rows:
        dominated = any(
            o["mae"] <= r["mae"] and o["inference_s_per_1e6"] <= r["inference_s_per_1e6"]
            and (o["mae"] < r["mae"] or o["inference_s_per_1e6"] < r["inference_s_per_1e6"])
            for o in rows)
        if not dominated:
            front.add(r["model"])
    return front


def write_table(rows: list[dict[str, Any]], root: Path) -> None:
    cols = [*COLUMNS, "pareto"]
    with open(root / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| model | shape | neurons | parameters | MAE | max error | inference s / 1e6 nodes | Pareto |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['shape']} | {r['neurons']} | {r['parameters']} | "
                     f"{r['mae']:.3e} | {r['max_error']:.3e} | {r['inference_s_per_1e6']:.4f} | "
                     f"{'yes' if r['pareto'] else ''} |")
    (root / "results.md").write_text("\n".join(lines) + "\n")


def plot_pareto(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, shape in enumerate(sorted({r["shape"] for r in rows})):
        sel = [r for r in rows if r["shape"] == shape]
        ax.scatter([r["inference_s_per_1e6"] for r in sel], [r["mae"] for r in sel],
                   label=shape, color=f"C{i}", s=25)
    front = sorted((r for r in rows if r["pareto"]), key=lambda r: r["inference_s_per_1e6"])
    ax.step([r["inference_s_per_1e6"] for r in front], [r["mae"] for r in front], where="post",
            color="k", lw=1, label="Pareto front")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("inference time per 10^6 nodes on this CPU, 1 thread [s]")
    ax.set_ylabel("validation MAE")
    ax.set_title(f"{title}: {len(rows)} architectures")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
