"""Architecture search: shapes x sizes x activations, trained as dask tasks, restartable.

Candidates come from :func:`~surrogates.architectures.enumerate_architectures` (every width
tuple from ``search.widths`` with ``search.layers`` hidden layers and at most
``search.max_neurons`` neurons, grouped by shape). The ``count`` draws go round the shapes
in turn (balanced over shapes), pick a width tuple of that shape at random and draw one
activation per layer, all from ``search.seed``; draw ``i`` does not depend on ``count``, so
a larger count extends a finished search.

Training runs on the engine of ``python -m fhnpde sweep`` (:func:`fhnpde.cluster.run_tasks`):
one dask task per candidate, keyed by a fingerprint of the search directory and config plus
the candidate's id, on a LocalCluster of ``workers`` single-threaded processes (default
``search.workers``) or on an existing scheduler (``scheduler="tcp://host:8786"``; its
workers must import ``surrogates`` and reach the search directory and the data store under
the same paths). Each task trains one candidate into ``OUT/models/ID`` with one torch
thread (set in the task, so it holds on any cluster; torch's CPU kernels are deterministic
at a fixed thread count, so a candidate trained on a worker has the weights a serial
training of :func:`candidate_config` gives).

Restart rule: a candidate whose directory holds a finished model (a ``model.json`` that
validates as train's model description, written last and whole) is skipped, and when every
candidate is finished no cluster is started. A worker killed mid-training has its task
rerun by the scheduler, which resumes from the candidate's ``checkpoint.pt``. A training
that raises (diverged, bad architecture, a worker lost too often) is a *failed* row of the
table and does not stop the others; it is tried again by the next run, since only a
finished model marks a candidate as done.

Inference time is then measured here, one model at a time on one thread (never alongside a
training): the median of 5 forward passes over ``timing_batch`` inputs, scaled to 10^6
nodes. Results: ``OUT/results.csv``, ``OUT/results.md`` (sorted by MAE, failed candidates
last) and ``OUT/pareto.png`` (MAE vs inference time of the trained models, Pareto front
marked).

The search directory is the search's own: a directory that holds a ``results.csv``,
``results.md`` or ``pareto.png`` but no ``candidates.json`` written by a search is refused
(those files would be replaced), and each candidate directory follows train's rules (it
replaces nothing train did not write).
"""

from __future__ import annotations

import csv
import ctypes
import hashlib
import json
import os
import time as _time
from pathlib import Path
from typing import Any

import numpy as np

from .architectures import enumerate_architectures

ABBREV = {"relu": "re", "tanh": "th", "sigmoid": "sg", "leaky_relu": "lr", "elu": "el",
          "silu": "si"}
COLUMNS = ["model", "status", "shape", "widths", "activations", "neurons", "parameters", "mae",
           "mae_v", "mae_w", "max_error", "inference_s_per_1e6", "train_s", "iterations", "error"]
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
WORKER_MMAP_THRESHOLD = 4 << 20  # bytes


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


def candidate_config(config: dict[str, Any], arch: dict[str, Any]):
    """The search's config (as a mapping) with the candidate's architecture and one thread.

    Raises :class:`~fhnpde.case.CaseError` when the candidate is not a valid model (for
    instance an unknown activation).
    """
    from .config import parse_config

    data = json.loads(json.dumps(config))
    data["model"].update({"widths": list(arch["widths"]), "activations": list(arch["activations"]),
                          "shape": None, "neurons": None, "layers": None})
    data["training"]["threads"] = 1
    return parse_config(data, f"search candidate {arch['id']}")


def is_finished(directory: str | Path) -> bool:
    """Whether ``directory`` holds a finished model: a valid ``model.json`` with its
    validation errors.

    ``train`` writes ``model.json`` last, whole (a rename), after the weights.
    """
    from fhnpde.case import CaseError

    from .runtime import read_model_json

    try:
        return read_model_json(Path(directory), key=None).get("validation") is not None
    except CaseError:
        return False


def train_candidate(config: dict[str, Any], arch: dict[str, Any], directory: str) -> dict[str, Any]:
    """The dask task: train one candidate into ``directory`` on one torch thread.

    Idempotent: a finished model is left alone; an unfinished one resumes from its
    checkpoint (train writes every file whole, so a killed worker leaves no torn file, and
    removes nothing it did not write: see :func:`surrogates.train.train`). The data store
    is read with dask's synchronous scheduler: xarray opens zarr lazily as dask arrays, and
    on a worker dask would otherwise send that read to the cluster as tasks of its own.
    """
    import dask

    from .data import load_data
    from .train import train

    prepare_worker()
    d = Path(directory)
    if is_finished(d):
        metrics = json.loads((d / "model.json").read_text())["validation"]
        return {"id": arch["id"], "metrics": metrics, "wall_s": 0.0}
    cfg = candidate_config(config, arch)
    with dask.config.set(scheduler="synchronous"):
        data = load_data(cfg.data_path)
    result = train(cfg, out=d, quiet=True, data=data)
    return {"id": arch["id"], "metrics": result.metrics, "wall_s": result.wall_s}


def prepare_worker() -> None:
    """One torch thread in this process, and glibc's mmap threshold back under dask.

    dask's nannies start workers with ``MALLOC_TRIM_THRESHOLD_=65536``
    (``distributed.nanny.pre-spawn-environ``). Setting any malloc tunable turns glibc's
    dynamic mmap threshold off, so every allocation of 128 KiB or more (a 256 x 128 float32
    activation of a training step) becomes an mmap + munmap with fresh page faults, and small
    models trained 2x slower on a worker than in a plain process (20,000 products
    (256 x 128) @ (128 x 128): 3.3 s against 1.7 s). A fixed threshold of
    ``WORKER_MMAP_THRESHOLD`` keeps such tensors in the heap; larger arrays still go back to
    the system when freed. Left alone where the user set ``MALLOC_MMAP_THRESHOLD_`` or where
    the C library has no ``mallopt``.
    """
    import torch

    torch.set_num_threads(1)
    if "MALLOC_TRIM_THRESHOLD_" in os.environ and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
        if mallopt is not None:
            mallopt(M_MMAP_THRESHOLD, WORKER_MMAP_THRESHOLD)


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


SEARCH_FILES = ("results.csv", "results.md", "pareto.png")


def check_search_directory(root: Path) -> None:
    """CaseError unless ``root`` is new, empty of the search's files, or a search's own
    (its ``candidates.json`` is a list of candidates as :func:`sample_architectures` makes)."""
    from fhnpde.case import CaseError

    if root.exists() and not root.is_dir():
        raise CaseError(f"{root} is a file, not a directory; choose another --out",
                        key="search.out")
    listing = root / "candidates.json"
    if listing.exists():
        try:
            found = json.loads(listing.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            found = None
        keys = {"id", "shape", "widths", "activations"}
        if not (isinstance(found, list)
                and all(isinstance(c, dict) and set(c) == keys for c in found)):
            raise CaseError(f"{listing} is not the candidate list `python -m surrogates search` "
                            "writes, so the search replaces nothing there; choose another --out",
                            key="search.out")
        return
    present = [name for name in SEARCH_FILES if (root / name).exists()]
    if present:
        raise CaseError(f"{root} holds {', '.join(present)} but no candidates.json, so it is not "
                        "a search directory and the search would replace them; choose another "
                        "--out", key="search.out")


def _read_timing(path: Path) -> float | None:
    """The inference time a previous run recorded, or None (missing or not ours)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))["inference_s_per_1e6"]
    except (OSError, ValueError, RecursionError, TypeError, KeyError):
        return None
    return float(value) if isinstance(value, int | float) and value > 0 else None


def search_tasks(config: dict[str, Any], candidates: list[dict[str, Any]], root: Path) -> list:
    """One :class:`fhnpde.cluster.Task` per candidate, keyed ``surrogates-search-TAG-ID``.

    ``TAG`` fingerprints the search directory and everything but the ``search`` section of
    the config, so searches sharing a scheduler never share a key, and a rerun of the same
    search gets the same keys.
    """
    from fhnpde.cluster import Task

    trained_from = {k: v for k, v in config.items() if k != "search"}
    text = f"{root.resolve()}:{json.dumps(trained_from, sort_keys=True)}"
    tag = hashlib.sha256(text.encode()).hexdigest()[:12]
    return [Task(f"surrogates-search-{tag}-{a['id']}", train_candidate,
                 (config, a, str(root.resolve() / "models" / a["id"])))
            for a in candidates]


def run_search(cfg, *, scheduler: str | None = None, workers: int | None = None,
               count: int | None = None, out: str | Path | None = None,
               quiet: bool = True, dashboard: bool = False) -> dict[str, Any]:
    """Train every unfinished candidate on dask, time them all, write the table and the plot.

    ``scheduler``: address of an existing dask scheduler; otherwise a LocalCluster of
    ``workers`` processes (default ``search.workers``) on 127.0.0.1, serving dask's
    dashboard only with ``dashboard`` (:func:`fhnpde.cluster.local_cluster`). Returns
    ``directory``, ``rows`` (every candidate, trained ones by MAE, then the failed ones),
    ``trained`` (ids trained now), ``failed`` (id -> message) and ``pareto`` (ids on the
    front).
    """
    from fhnpde.case import CaseError
    from fhnpde.cluster import require_distributed, run_tasks

    from .data import ensure_data

    if workers is not None and workers < 1:
        raise CaseError(f"must be >= 1, got {workers}", key="--workers")
    if count is not None and count < 1:
        raise CaseError(f"must be >= 1, got {count}", key="--count")
    spec = cfg.search.model_copy(update={k: v for k, v in
                                         (("workers", workers), ("count", count)) if v})
    root = Path(out) if out is not None else cfg.search_dir
    check_search_directory(root)
    (root / "models").mkdir(parents=True, exist_ok=True)
    ensure_data(cfg)
    candidates = sample_architectures(spec)
    (root / "candidates.json").write_text(json.dumps(candidates, indent=2))
    config = cfg.to_dict()
    config["data"]["path"] = str(cfg.data_path.resolve())  # workers may run elsewhere
    tasks = search_tasks(config, candidates, root)
    by_key = {t.key: a for t, a in zip(tasks, candidates, strict=True)}
    trained: list[str] = []
    failed: dict[str, str] = {}

    def finished(task) -> bool:
        return is_finished(task.args[2])

    def record(task, result) -> None:
        trained.append(result["id"])
        if not quiet:
            print(f"  trained {result['id']}: MAE {result['metrics']['mae']:.3g} "
                  f"({result['wall_s']:.1f} s)", flush=True)

    def record_error(task, exc) -> None:
        ident = by_key[task.key]["id"]
        failed[ident] = " ".join(f"{type(exc).__name__}: {exc}".split())
        if not quiet:
            print(f"  failed  {ident}: {failed[ident]}", flush=True)

    if not all(finished(t) for t in tasks):
        require_distributed("python -m surrogates search")
    run_tasks(tasks, is_complete=finished, scheduler=scheduler, workers=spec.workers,
              on_result=record, on_error=record_error, desc=f"search {cfg.name}", quiet=quiet,
              dashboard=dashboard)
    rows = _table_rows(candidates, root, spec.timing_batch, failed)
    write_table(rows, root)
    plot_pareto(rows, root / "pareto.png", cfg.name)
    return {"directory": root, "rows": rows, "trained": trained, "failed": failed,
            "pareto": sorted(r["model"] for r in rows if r["pareto"])}


def _table_rows(candidates: list[dict[str, Any]], root: Path, timing_batch: int,
                failed: dict[str, str]) -> list[dict[str, Any]]:
    """One row per candidate: errors and timing of the trained ones, the reason of failures."""
    import torch

    from .models import load_model, read_metadata

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows, lost = [], []
    try:
        for arch in candidates:
            d = root / "models" / arch["id"]
            if not is_finished(d):
                lost.append({"model": arch["id"], "status": "failed", "shape": arch["shape"],
                             "widths": "x".join(map(str, arch["widths"])),
                             "activations": ",".join(arch["activations"]),
                             "neurons": sum(arch["widths"]), "pareto": False,
                             "error": failed.get(arch["id"], "not trained")})
                continue
            timing_file = d / "timing.json"
            meta = read_metadata(d)
            t_inf = _read_timing(timing_file)
            if t_inf is None:
                model, _ = load_model(d)
                t_inf = inference_time(model, len(meta["inputs"]), timing_batch)
                timing_file.write_text(json.dumps({"inference_s_per_1e6": t_inf, "threads": 1,
                                                   "batch": timing_batch}))
            val = meta["validation"]
            rows.append({
                "model": arch["id"], "status": "trained", "shape": arch["shape"],
                "widths": "x".join(map(str, meta["widths"])),
                "activations": ",".join(meta["activations"]),
                "neurons": sum(meta["widths"]), "parameters": meta["parameters"],
                "mae": val["mae"], "mae_v": val["mae_v"], "mae_w": val["mae_w"],
                "max_error": max(val["max_v"], val["max_w"]),
                "inference_s_per_1e6": t_inf, "train_s": meta["training"]["wall_s"],
                "iterations": meta["training"]["iterations"], "error": "",
            })
    finally:
        torch.set_num_threads(threads)
    rows.sort(key=lambda r: r["mae"])
    front = pareto_front(rows)
    for r in rows:
        r["pareto"] = r["model"] in front
    return rows + lost


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
    """``results.csv`` (every column; blanks where a failed candidate has no value) and
    ``results.md``."""
    cols = [*COLUMNS, "pareto"]
    with open(root / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols, restval="")
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| model | shape | neurons | parameters | MAE | max error | inference s / 1e6 nodes "
             "| Pareto |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        if r["status"] != "trained":
            lines.append(f"| {r['model']} | {r['shape']} | {r['neurons']} | | failed: "
                         f"{r['error'].replace('|', '/')} | | | |")
            continue
        lines.append(f"| {r['model']} | {r['shape']} | {r['neurons']} | {r['parameters']} | "
                     f"{r['mae']:.3e} | {r['max_error']:.3e} | {r['inference_s_per_1e6']:.4f} | "
                     f"{'yes' if r['pareto'] else ''} |")
    (root / "results.md").write_text("\n".join(lines) + "\n")


def plot_pareto(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """MAE against inference time of the trained candidates, by shape, front as a step line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["status"] == "trained"]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, shape in enumerate(sorted({r["shape"] for r in rows})):
        sel = [r for r in rows if r["shape"] == shape]
        ax.scatter([r["inference_s_per_1e6"] for r in sel], [r["mae"] for r in sel],
                   label=shape, color=f"C{i}", s=25)
    front = sorted((r for r in rows if r["pareto"]), key=lambda r: r["inference_s_per_1e6"])
    ax.step([r["inference_s_per_1e6"] for r in front], [r["mae"] for r in front], where="post",
            color="k", lw=1, label="Pareto front")
    if rows:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    ax.set_xlabel("inference time per 10^6 nodes on this CPU, 1 thread [s]")
    ax.set_ylabel("validation MAE")
    ax.set_title(f"{title}: {len(rows)} architectures")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
