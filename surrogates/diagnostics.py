"""Diagnostics of a trained surrogate: errors, rollout drift, phase-portrait recovery.

``validation``      MAE and max error (physical units) on the model's validation data.
``rollout``         ITNN only: the model applied N times (default 50) from initial states
                    drawn (latin hypercube) in the rollout start box, against fhnpde's exact
                    solver; MAE per step (the drift curve) and over all steps.
``extrapolation``   Neural ODE only: trajectories 4x longer than the training horizon.
``phase_portrait``  the model's vector field against the exact one, per regime (a constant
                    current I), on two grids of ``grid_points`` x ``grid_points`` nodes: the
                    training region (``grid_v`` x ``grid_w``; default: the state box of the
                    training data) and a grid 25 % wider in each direction (same centre, each
                    side 1.25 times as long). With f_i the model's and g_i the exact field at
                    node i of the grid G, three scores:

                        per-point cosine  (1 / |G|) sum_i <f_i, g_i> / (|f_i| |g_i|)
                        flattened cosine  sum_i <f_i, g_i> / (|F| |G_e|)
                        relative L2       |F - G_e| / |G_e|

                    where F and G_e are the fields flattened into one vector each (so the
                    flattened scores weigh a node by the size of its field: a field of the
                    right direction but the wrong size scores 1 on both cosines and its
                    relative size error in L2). Beside each grid: the fraction of its
                    (grid_points - 1)^2 cells (the rectangles between neighbouring nodes)
                    that hold at least one training state (Neural ODE: the states of the
                    training trajectories; ITNN: the training inputs' (v, w), with the
                    rollout sequences' states; DDNN/PINN: the training inputs' (v0, w0)).
                    The model's field is f itself (Neural ODE), the one-step increment
                    divided by dt_r (ITNN: (N(v, w, I) - (v, w)) / dt_r), or du/dt at t = 0
                    by autograd (DDNN/PINN models with v0 and w0 inputs). Default regimes:
                    I = 0.2 (quiescent) and 0.5 (spiking) for fitzhugh, the ends of the I
                    range for nagumo. The exact field scores 1, 1 and 0 by construction.

``evaluate`` writes ``evaluation.json``, ``phase_portrait.png`` and (ITNN) ``rollout.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fhnpde.models import Kinetics

from .config import Config, load_config
from .models import load_model, one_step_rollout, rk4_rollout


def exact_field(kinetics: Kinetics, v, w, I) -> np.ndarray:
    """The kinetics' vector field (dv/dt, dw/dt) on arrays: shape (..., 2)."""
    fv, fw = kinetics.reaction(np.asarray(v, float), np.asarray(w, float), I)
    return np.stack(np.broadcast_arrays(fv, fw), -1)


def model_field(model, meta: dict[str, Any], v, w, I) -> np.ndarray:
    """The surrogate's vector field at states (v, w) and current I: shape (n, 2)."""
    v = np.asarray(v, np.float32).ravel()
    w = np.asarray(w, np.float32).ravel()
    current = np.broadcast_to(np.asarray(I, np.float32), v.shape)
    kind = meta["kind"]
    if kind in ("neural-ode", "itnn"):
        # a one-step model of kinetics parameters too (e.g. a) is evaluated at the values of
        # its model.json's kinetics
        extra = [np.full_like(v, float(meta["kinetics"]["params"][k]))
                 for k in meta.get("inputs", [])[3:]]
        x = torch.from_numpy(np.stack([v, w, current, *extra], 1))
        with torch.no_grad():
            out = model(x)
        if kind == "itnn":
            out = (out - x[:, :2]) / float(meta["dt_r"])
        return out.numpy().astype(float)
    inputs = meta["inputs"]
    if not {"v0", "w0"} <= set(inputs):
        raise ValueError(f"a {kind} model with inputs {inputs} has no vector field "
                         "(it needs v0 and w0 as inputs)")
    cols = {"t": np.zeros_like(v), "v0": v, "w0": w, "I": current}
    x = torch.from_numpy(np.stack([cols[k] for k in inputs], 1)).requires_grad_(True)
    u = model(x)
    grads = [torch.autograd.grad(u[:, j].sum(), x, retain_graph=j == 0)[0][:, 0]
             for j in (0, 1)]
    return torch.stack(grads, 1).detach().numpy().astype(float)


def cosine_similarity(a: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> float:
    """Mean over points of the cosine of the angle between rows of a and b."""
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    cos = (a * b).sum(-1) / np.maximum(na * nb, eps)
    return float(np.mean(cos))


def field_scores(model_f: np.ndarray, exact_f: np.ndarray) -> dict[str, float]:
    """Per-point cosine, flattened cosine and relative L2 error of a field (rows: points)."""
    a, b = np.asarray(model_f, float).ravel(), np.asarray(exact_f, float).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return {"cosine_per_point": cosine_similarity(model_f, exact_f),
            "cosine_flat": float(a @ b / max(na * nb, 1e-300)),
            "rel_l2": float(np.linalg.norm(a - b) / max(nb, 1e-300))}


WIDER = 1.25  # the second grid: each side this many times as long, same centre


def _widen(span: list[float], factor: float) -> list[float]:
    centre, half = 0.5 * (span[0] + span[1]), 0.5 * (span[1] - span[0])
    return [centre - factor * half, centre + factor * half]


def phase_grid(diag, state_box: dict[str, list[float]],
               widen: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The (v, w) grid of the phase-portrait comparison (meshgrid arrays), each side
    ``widen`` times as long as the diagnostics grid (same centre)."""
    gv = diag.grid_v or state_box.get("v") or state_box.get("v0")
    gw = diag.grid_w or state_box.get("w") or state_box.get("w0")
    n = diag.grid_points
    gv, gw = _widen(list(gv), widen), _widen(list(gw), widen)
    return np.meshgrid(np.linspace(*gv, n), np.linspace(*gw, n), indexing="xy")


def training_states(cfg: Config, meta: dict[str, Any], data: dict[str, Any]) -> np.ndarray:
    """The (v, w) states the model's field was trained at, shape (n, 2)."""
    kind = meta["kind"]
    if kind == "neural-ode":
        return np.asarray(data["traj_train"], float).reshape(-1, 2)
    x = np.asarray(data["x_train"], float)
    if kind == "itnn":
        states = [x[:, :2]]
        if cfg.model.itnn.rollout_weight > 0 and "rollout_train" in data:
            states.append(np.asarray(data["rollout_train"], float).reshape(-1, 2))
        return np.concatenate(states)
    inputs = list(meta["inputs"])
    return x[:, [inputs.index("v0"), inputs.index("w0")]]


def cell_coverage(states: np.ndarray, V: np.ndarray, W: np.ndarray) -> float:
    """Fraction of the grid's cells (rectangles between neighbouring nodes) holding at least
    one of ``states`` (n, 2)."""
    counts, _, _ = np.histogram2d(states[:, 0], states[:, 1], bins=[V[0, :], W[:, 0]])
    return float((counts > 0).mean())


def default_regimes(cfg: Config, meta: dict[str, Any]) -> dict[str, float]:
    if cfg.diagnostics.regimes is not None:
        return dict(cfg.diagnostics.regimes)
    if cfg.kinetics.name == "fitzhugh":
        return {"quiescent": 0.2, "spiking": 0.5}
    box = meta.get("state_box", {})
    if "I" in box:
        return {"low": float(box["I"][0]), "high": float(box["I"][1])}
    return {"fixed": float(meta["fixed"].get("I", 0.0))}


def phase_portrait(model, meta: dict[str, Any], cfg: Config, widen: float = 1.0,
                   states: np.ndarray | None = None) -> dict[str, Any]:
    """Field scores per regime on the grid (``widen``: see :func:`phase_grid`), the fraction
    of cells holding ``states`` (if given) and the fields (for plotting)."""
    kin = Kinetics.create(meta["kinetics"]["name"], meta["kinetics"]["params"])
    V, W = phase_grid(cfg.diagnostics, meta.get("state_box", {}), widen)
    out: dict[str, Any] = {"grid": (V, W), "regimes": {}}
    if states is not None:
        out["coverage"] = cell_coverage(states, V, W)
    for name, current in default_regimes(cfg, meta).items():
        exact = exact_field(kin, V.ravel(), W.ravel(), current)
        learned = model_field(model, meta, V.ravel(), W.ravel(), current)
        scores = field_scores(learned, exact)
        out["regimes"][name] = {"I": current, "cosine": scores["cosine_per_point"], **scores,
                                "exact": exact, "model": learned}
    return out


def _grid_report(pp: dict[str, Any]) -> dict[str, Any]:
    V, W = pp["grid"]
    return {"grid_v": [float(V.min()), float(V.max())], "grid_w": [float(W.min()), float(W.max())],
            "grid_points": int(V.shape[0]), "cells_with_training_data": pp.get("coverage"),
            "regimes": {k: {"I": r["I"], **{s: r[s] for s in
                                            ("cosine_per_point", "cosine_flat", "rel_l2")}}
                        for k, r in pp["regimes"].items()}}


def rollout_drift(model, meta: dict[str, Any], cfg: Config, steps: int, size: int,
                  seed: int = 11) -> dict[str, Any]:
    """ITNN rollout against fhnpde's exact solver: per-step MAE of v and w."""
    from .data import rollout_sequences

    box = cfg.data.rollouts.box if cfg.data.rollouts is not None else None
    seq, cur = rollout_sequences(cfg, size, steps, seed, box)
    # a model of kinetics parameters too runs at its config's values (the exact solver's)
    params = torch.tensor([[float(cfg.kinetics.params[k]) for k in meta["inputs"][3:]]],
                          dtype=torch.float32).expand(len(seq), -1)
    with torch.no_grad():
        pred = one_step_rollout(model, torch.as_tensor(seq[:, 0], dtype=torch.float32),
                                torch.as_tensor(cur, dtype=torch.float32), steps,
                                params if params.shape[1] else None).numpy()
    err = np.abs(pred - seq)
    return {"steps": steps, "size": size,
            "mae_v_per_step": err[..., 0].mean(0).tolist(),
            "mae_w_per_step": err[..., 1].mean(0).tolist(),
            "mae_v": float(err[:, 1:, 0].mean()), "mae_w": float(err[:, 1:, 1].mean()),
            "max_v": float(err[:, 1:, 0].max()), "final_mae_v": float(err[:, -1, 0].mean())}


def extrapolation(model, meta: dict[str, Any], cfg: Config, factor: int = 4) -> dict[str, float]:
    """Neural ODE: trajectory MSE over ``factor`` times the training horizon."""
    from .config import SampleSpec
    from .data import ode_trajectories

    long = cfg.model_copy(deep=True)
    long.data.steps = cfg.data.steps * factor
    traj, cur, _ = ode_trajectories(long, SampleSpec(size=cfg.data.validation.size,
                                                     seed=cfg.data.validation.seed))
    with torch.no_grad():
        pred = rk4_rollout(model, torch.as_tensor(traj[:, 0], dtype=torch.float32),
                           torch.as_tensor(cur, dtype=torch.float32), cfg.data.save_dt,
                           traj.shape[1] - 1, cfg.model.neural_ode.substeps).numpy()
    return {"factor": factor, "steps": int(traj.shape[1] - 1),
            "trajectory_mse": float(((pred - traj) ** 2).mean())}


def plot_phase_portrait(result: dict[str, Any], meta: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes = result["regimes"]
    V, W = result["grid"]
    fig, axes = plt.subplots(1, len(regimes), figsize=(5.5 * len(regimes), 4.8), squeeze=False)
    for ax, (name, r) in zip(axes[0], regimes.items(), strict=True):
        for field, color, label in ((r["exact"], "0.6", "exact"), (r["model"], "C3", meta["kind"])):
            f = field / np.maximum(np.linalg.norm(field, axis=1, keepdims=True), 1e-12)
            ax.quiver(V.ravel(), W.ravel(), f[:, 0], f[:, 1], color=color, angles="xy",
                      scale=40, width=0.003, label=label)
        ax.set_title(f"{name}: I = {r['I']:g}; cosine {r['cosine']:.3f} per point, "
                     f"{r['cosine_flat']:.3f} flattened; rel. L2 {r['rel_l2']:.3f}", fontsize=9)
        ax.set_xlabel("v")
        ax.set_ylabel("w")
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(f"{meta['name']}: direction of the vector field (unit arrows)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_rollout(drift: dict[str, Any], meta: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    steps = np.arange(drift["steps"] + 1)
    ax.semilogy(steps[1:], drift["mae_v_per_step"][1:], label="v")
    ax.semilogy(steps[1:], drift["mae_w_per_step"][1:], label="w")
    ax.set_xlabel(f"step (dt_r = {meta['dt_r']:g})")
    ax.set_ylabel("MAE vs exact solver")
    ax.set_title(f"{meta['name']}: rollout drift ({drift['size']} starts)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def evaluate(model_dir: str | Path, *, out: str | Path | None = None,
             steps: int | None = None, plots: bool = True) -> dict[str, Any]:
    """Every diagnostic that applies to the model; writes evaluation.json and the plots."""
    from fhnpde.case import CaseError

    from .data import ensure_data, load_data
    from .train import validation_errors

    model_dir = Path(model_dir)
    model, meta = load_model(model_dir)
    config_path = model_dir / "config.yaml"
    if not config_path.is_file():
        raise CaseError(f"{model_dir} has no config.yaml (the config the model was trained "
                        "from, which evaluate needs); train the model again")
    cfg = load_config(config_path)
    if cfg.model.kind != meta["kind"]:
        raise CaseError(f"{config_path} describes a {cfg.model.kind} model but {model_dir} holds "
                        f"a {meta['kind']} model; train the model again")
    out_dir = Path(out) if out is not None else model_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_data(ensure_data(cfg))
    report: dict[str, Any] = {"model": str(model_dir), "kind": meta["kind"],
                              "validation": validation_errors(cfg, model, data)}
    if meta["kind"] == "itnn":
        n = steps or cfg.diagnostics.rollout_steps
        drift = rollout_drift(model, meta, cfg, n, cfg.diagnostics.rollout_size)
        report["rollout"] = drift
        if plots:
            plot_rollout(drift, meta, out_dir / "rollout.png")
    if meta["kind"] == "neural-ode":
        report["extrapolation"] = extrapolation(model, meta, cfg)
    has_field = meta["kind"] in ("itnn", "neural-ode") or {"v0", "w0"} <= set(meta["inputs"])
    if has_field:
        states = training_states(cfg, meta, data)
        pp = phase_portrait(model, meta, cfg, states=states)
        wide = phase_portrait(model, meta, cfg, widen=WIDER, states=states)
        report["phase_portrait"] = {
            **{k: v for k, v in _grid_report(pp).items() if k.startswith("grid_")},
            "cosine": {k: r["cosine"] for k, r in pp["regimes"].items()},
            "currents": {k: r["I"] for k, r in pp["regimes"].items()},
            "training_region": _grid_report(pp),
            "wider": {"factor": WIDER, **_grid_report(wide)},
        }
        if plots:
            plot_phase_portrait(pp, meta, out_dir / "phase_portrait.png")
    (out_dir / "evaluation.json").write_text(json.dumps(report, indent=2))
    return report


def summary(report: dict[str, Any]) -> str:
    v = report["validation"]
    lines = [f"{report['model']} ({report['kind']})",
             f"  validation: MAE v {v['mae_v']:.3g}, w {v['mae_w']:.3g}; max v {v['max_v']:.3g}, "
             f"w {v['max_w']:.3g}"]
    if "trajectory_mse" in v:
        lines.append(f"  validation trajectory MSE {v['trajectory_mse']:.4g}")
    if "rollout" in report:
        r = report["rollout"]
        lines.append(f"  {r['steps']}-step rollout vs exact ({r['size']} starts): MAE v "
                     f"{r['mae_v']:.3g}, w {r['mae_w']:.3g}; "
                     f"final-step MAE v {r['final_mae_v']:.3g}")
    if "extrapolation" in report:
        e = report["extrapolation"]
        lines.append(f"  {e['factor']}x horizon ({e['steps']} steps): trajectory MSE "
                     f"{e['trajectory_mse']:.4g}")
    if "phase_portrait" in report:
        p = report["phase_portrait"]
        for title, g in (("training region", p["training_region"]),
                         (f"{p['wider']['factor']:g}x wider grid", p["wider"])):
            lines.append(f"  vector field on the {title} v [{g['grid_v'][0]:g}, {g['grid_v'][1]:g}]"
                         f" x w [{g['grid_w'][0]:g}, {g['grid_w'][1]:g}] ({g['grid_points']}^2 "
                         f"nodes; {g['cells_with_training_data']:.0%} of cells hold training "
                         "states):")
            for k, r in g["regimes"].items():
                lines.append(f"    {k} (I={r['I']:g}): per-point cosine "
                             f"{r['cosine_per_point']:.4f}, flattened cosine "
                             f"{r['cosine_flat']:.4f}, relative L2 {r['rel_l2']:.4f}")
    return "\n".join(lines)
