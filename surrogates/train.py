"""Training from a config: seeded, reproducible, early-stopped, checkpointed, saved.

One loop serves the four kinds; what differs is the objective (:class:`Objective`):
minibatch data MSE (DDNN), data + physics residual + initial condition (PINN), one-step
MSE with an optional rollout term (ITNN), full-batch trajectory MSE through RK4 (Neural
ODE). Every ``validate_every`` iterations the validation loss drives the plateau schedule,
early stopping (``patience`` validations without improvement) and the choice of the best
weights, which are the ones saved.

The saved model directory holds everything a runtime or an exporter needs:

``model.pt``       state dict (weights and the normalisation buffers)
``model.json``     kind, inputs/outputs, widths, activations, normalisation, kinetics name
                   and params, dt_r (ITNN) or save_dt (Neural ODE), the training state box,
                   fixed inputs, validation errors, training summary, versions
``config.yaml``    the resolved config it was trained from
``history.csv``    iteration, train loss, validation loss, learning rate
``checkpoint.pt``  the latest training state while training runs (resumed if present)

Nothing read back runs code: ``checkpoint.pt`` holds only state dicts, tensors (the RNG
states too), numbers, strings and plain lists/dicts (the history), and is read with
``torch.load(weights_only=True)`` and checked key by key; one that fails is a one-line
CaseError (delete it, or pass ``--overwrite``). Every file is written to a temporary name
and renamed, ``model.json`` last, so a killed training never leaves a torn file.

What train may replace in its output directory: only the files it writes (the five above),
and only when they are its own: beside a ``model.json`` that validates as train's model
description, with ``--overwrite`` (the previous model's files go, and with them the files
derived from its weights, by their names: the exports ``model.onnx``, ``model-fp16.onnx``,
``model.engine``, ``model-fp16.engine``, ``export.json``, the ``evaluate`` outputs
``evaluation.json``, ``phase_portrait.png``, ``rollout.png`` and the search's
``timing.json``, which would otherwise describe weights that are gone); a ``model.json``
train did not write is never replaced. Without a ``model.json``, a ``checkpoint.pt`` is
resumed, and stray ``model.pt``/``config.yaml``/``history.csv`` are replaced only with
``--overwrite``. No other file in the directory is touched.

Reproducibility: the same config and seed give the same weights (torch's CPU kernels are
deterministic at a fixed thread count; ``training.threads`` defaults to 1).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import math
import sys
import time as _time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from fhnpde.case import CaseError
from fhnpde.models import Kinetics

from .cable import split_rollout
from .config import Config
from .data import ensure_data, load_data, model_inputs
from .models import (
    METADATA,
    WEIGHTS,
    RefusedFile,
    Surrogate,
    load_plain,
    one_step_rollout,
    physics_residual,
    predict,
    rk4_rollout,
    save_model,
    write_atomically,
)
from .runtime import ENGINE, ENGINE_FP16, ONNX, ONNX_FP16, read_model_json

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "surrogates-checkpoint/2"
CONFIG_COPY, HISTORY = "config.yaml", "history.csv"
# what train writes into its output directory (model.json last)
TRAIN_FILES = (WEIGHTS, CONFIG_COPY, HISTORY, CHECKPOINT, METADATA)
# what other commands derive from a model's weights into its directory: export, evaluate,
# search (timing); they go with the weights they were made from
DERIVED_FILES = (ONNX, ONNX_FP16, ENGINE, ENGINE_FP16, "export.json", "evaluation.json",
                 "phase_portrait.png", "rollout.png", "timing.json")


@dataclass
class TrainResult:
    directory: Path
    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    wall_s: float = 0.0
    skipped: bool = False


def _f32(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float32))


def _box_affine(lo: float, hi: float) -> tuple[float, float]:
    """Offset and scale that map [lo, hi] onto [-1, 1] (scale 1 for a single value)."""
    half = 0.5 * (hi - lo)
    return 0.5 * (lo + hi), half if half > 0 else 1.0


def _std(a: np.ndarray, axis=0) -> np.ndarray:
    return np.maximum(np.std(a, axis=axis), 1e-6)


def build_surrogate(cfg: Config, data: dict[str, Any]) -> Surrogate:
    """The config's network with its normalisation fitted to the training data."""
    spec = cfg.model
    kind = spec.kind
    widths, acts = spec.hidden_widths(), spec.layer_activations()
    if kind in ("ddnn", "pinn"):
        inputs = list(cfg.data.inputs)
        model = Surrogate(kind, inputs, widths, acts)
        aff = [_box_affine(0.0, cfg.data.t_end)] + [_box_affine(*cfg.data.box[k])
                                                    for k in inputs[1:]]
        y = data["y_train"]
        model.set_normalisation([a for a, _ in aff], [b for _, b in aff], y.mean(0), _std(y))
        return model
    if kind == "itnn":
        residual, structure, prior = spec.itnn.residual, spec.itnn.structure, spec.itnn.prior
        inputs = model_inputs(cfg)
        model = Surrogate(kind, inputs, widths, acts, residual=residual, structure=structure,
                          prior=prior, kinetics=(cfg.kinetics.name, dict(cfg.kinetics.params)),
                          dt_r=cfg.data.dt_r)
        x, y = data["x_train"], data["y_train"]
        box = {"I": [cfg.data.fixed.get("I", 0.0)] * 2, **cfg.data.box}
        aff = [_box_affine(*box[k]) for k in inputs]
        target = y - x[:, :2] if residual else y
        if prior == "euler":  # the network's share: what the Euler step misses
            with torch.no_grad():
                target = target - model.field(_f32(x)).double().numpy()
        offset = np.zeros(2) if structure == "rest-factored" else target.mean(0)
        model.set_normalisation([a for a, _ in aff], [b for _, b in aff], offset, _std(target))
        if structure == "rest-factored":
            model.set_rest(*rest_state(cfg))
        return model
    model = Surrogate(kind, ["v", "w", "I"], widths, acts)
    traj, cur = data["traj_train"], data["I_train"]
    states = traj.reshape(-1, 2)
    aff = [_box_affine(states[:, 0].min(), states[:, 0].max()),
           _box_affine(states[:, 1].min(), states[:, 1].max()),
           _box_affine(float(cur.min()), float(cur.max()))]
    slopes = np.diff(traj, axis=1).reshape(-1, 2) / cfg.data.save_dt
    model.set_normalisation([a for a, _ in aff], [b for _, b in aff], np.zeros(2), _std(slopes))
    return model


def rest_state(cfg: Config) -> tuple[float, float]:
    """The kinetics' rest state at I = 0, the same for every parameter value in the box
    (CaseError otherwise: a rest-factored model needs one rest state)."""
    from fhnpde.models import Kinetics, check_params

    base = check_params(cfg.kinetics.name, dict(cfg.kinetics.params))
    names = [k for k in cfg.data.box if k not in ("v", "w", "I")]
    corners = [dict(base)] + [{**base, **dict(zip(names, c, strict=True))}
                              for c in itertools.product(*(cfg.data.box[k] for k in names))]
    # fhnpde finds the rest state as a root of a fitted cubic: rounding leaves ~1e-15 where
    # the exact value is 0 (nagumo's (0, 0)), which would move the model's fixed point
    rest = tuple(0.0 if abs(r) < 1e-12 else float(r)
                 for r in Kinetics.create(cfg.kinetics.name, base).rest_state(0.0))
    for params in corners:
        kin = Kinetics.create(cfg.kinetics.name, params)
        if np.max(np.abs(kin.reaction(rest[0], rest[1], 0.0))) > 1e-12:
            raise CaseError(f"the rest state ({rest[0]:.4g}, {rest[1]:.4g}) of "
                            f"{cfg.kinetics.name} moves with {', '.join(names)}; a rest-factored "
                            "model needs one rest state for the whole box (use structure: plain)",
                            key="model.itnn.structure")
    return float(rest[0]), float(rest[1])


def _cables(data: dict[str, Any], split: str) -> list[tuple[torch.Tensor, ...]]:
    """The recorded cable runs of a cable data store: (states, currents, half_step, params)."""
    count = int(data["attrs"].get(f"cables_{split}", 0))
    return [tuple(torch.as_tensor(data[f"cable_{split}_{i}_{k}"], dtype=torch.float32)
                  for k in ("states", "currents", "half_step", "params")) for i in range(count)]


class Objective:
    """Training loss and validation loss of one config's kind."""

    def __init__(self, cfg: Config, model: Surrogate, data: dict[str, Any], gen: torch.Generator):
        self.cfg, self.model, self.gen = cfg, model, gen
        self.kind = cfg.model.kind
        self.kinetics = Kinetics.create(cfg.kinetics.name, cfg.kinetics.params)
        if self.kind == "neural-ode":
            self.traj = _f32(data["traj_train"])
            self.cur = _f32(data["I_train"])
            window = cfg.model.neural_ode.window
            if window is not None and window < self.traj.shape[1] - 1:
                # multiple shooting: every window of `window` steps, each started from data
                starts = range(0, self.traj.shape[1] - window, window)
                self.traj = torch.cat([self.traj[:, s:s + window + 1] for s in starts])
                self.cur = self.cur.repeat(len(starts))
            self.traj_val = _f32(data["traj_val"])
            self.cur_val = _f32(data["I_val"])
        else:
            self.x, self.y = _f32(data["x_train"]), _f32(data["y_train"])
            self.x_val, self.y_val = _f32(data["x_val"]), _f32(data["y_val"])
        self.rollout = None
        self.calls = 0
        self.cables, self.cables_val = _cables(data, "train"), _cables(data, "val")
        one_step = cfg.data.kind == "one-step"
        if self.kind == "itnn" and cfg.model.itnn.rollout_weight > 0 and one_step:
            if "rollout_train" not in data:
                raise CaseError("needs data.rollouts (exact sequences) for its rollout loss",
                                key="model.itnn.rollout_weight")
            self.rollout = (_f32(data["rollout_train"]), _f32(data["rollout_I_train"]))

    # -- pieces --

    def _batch(self, n: int) -> torch.Tensor | slice:
        bs = self.cfg.training.batch_size
        if bs is None or bs >= n:
            return slice(None)
        return torch.randint(0, n, (bs,), generator=self.gen)

    def _data_mse(self, x, y) -> torch.Tensor:
        return (((self.model(x) - y) / self.model.out_scale) ** 2).mean()

    def _collocation(self, n: int) -> torch.Tensor:
        """Uniform points in the input box (t in [0, t_end], the rest in their ranges)."""
        d = self.cfg.data
        u = torch.rand((n, len(d.inputs)), generator=self.gen)
        lo = torch.tensor([0.0] + [d.box[k][0] for k in d.inputs[1:]])
        hi = torch.tensor([d.t_end] + [d.box[k][1] for k in d.inputs[1:]])
        return lo + u * (hi - lo)

    def field_scale(self) -> torch.Tensor:
        """Typical size of du/dt: the std of F(v, w, I) over the training targets."""
        if not hasattr(self, "_field_scale"):
            d = self.cfg.data
            current = self.x[:, d.inputs.index("I")] if "I" in d.inputs else float(d.fixed["I"])
            fv, fw = self.kinetics.family.reaction(self.y[:, 0], self.y[:, 1], current,
                                                   *self.kinetics.values)
            f = torch.stack([fv, fw], 1)
            self._field_scale = torch.clamp(f.std(0) if len(f) > 1 else f.abs()[0], min=1e-6)
        return self._field_scale

    def physics_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Mean squared residual, each component divided by the typical size of its du/dt."""
        r = physics_residual(self.model, x, self.kinetics, self.cfg.data.inputs,
                             self.cfg.data.fixed)
        return ((r / self.field_scale()) ** 2).mean()

    def ic_loss(self, x: torch.Tensor) -> torch.Tensor:
        d = self.cfg.data
        x0 = x.clone()
        x0[:, 0] = 0.0
        target = torch.stack([
            x0[:, d.inputs.index(k)] if k in d.inputs else torch.full((len(x0),), d.fixed[k])
            for k in ("v0", "w0")], 1)
        return (((self.model(x0) - target) / self.model.out_scale) ** 2).mean()

    # -- the two losses --

    def train_loss(self) -> torch.Tensor:
        if self.kind == "neural-ode":
            return self.trajectory_mse(self.traj, self.cur)
        idx = self._batch(len(self.x))
        loss = self._data_mse(self.x[idx], self.y[idx])
        if self.kind == "pinn":
            p = self.cfg.model.pinn
            xc = self._collocation(p.collocation)
            loss = p.data_weight * loss + p.physics_weight * self.physics_loss(xc)
            if p.ic_weight > 0:
                loss = loss + p.ic_weight * self.ic_loss(xc)
        if self.rollout is not None:
            seq, cur = self.rollout
            pred = one_step_rollout(self.model, seq[:, 0], cur, seq.shape[1] - 1)
            scale = self.model.out_scale * math.sqrt(seq.shape[1] - 1)
            loss = loss + self.cfg.model.itnn.rollout_weight * (((pred - seq) / scale) ** 2).mean()
        spec = self.cfg.model.itnn
        self.calls += 1
        if (self.cables and spec.rollout_weight > 0 and self.calls % spec.rollout_every == 0
                and self.calls > spec.rollout_after * self.cfg.training.iterations):
            cable = self.cables[int(torch.randint(0, len(self.cables), (1,), generator=self.gen))]
            steps = cable[1].shape[0]
            starts = torch.randint(0, steps - spec.rollout_steps + 1, (spec.rollout_batch,),
                                   generator=self.gen)
            loss = loss + spec.rollout_weight * self.cable_mse(cable, starts.tolist())
        return loss

    def cable_mse(self, cable, starts: list[int]) -> torch.Tensor:
        """Mean squared error (output units) of ``rollout_steps`` Strang steps of the model's
        split solver from recorded states of one exact cable run, against that run."""
        states, currents, half, params = cable
        k = min(self.cfg.model.itnn.rollout_steps, currents.shape[0])
        start = states[starts]
        cur = torch.stack([currents[s:s + k] for s in starts])
        target = torch.stack([states[s + 1:s + k + 1] for s in starts])
        pred = split_rollout(self.model, start, cur, params.expand(len(starts), -1), half, k)
        return (((pred - target) / self.model.out_scale) ** 2).mean()

    def trajectory_mse(self, traj, cur) -> torch.Tensor:
        pred = rk4_rollout(self.model, traj[:, 0], cur, self.cfg.data.save_dt,
                           traj.shape[1] - 1, self.cfg.model.neural_ode.substeps)
        return ((pred - traj) ** 2).mean()

    def validation_loss(self) -> float:
        with torch.no_grad():
            if self.kind == "neural-ode":
                return float(self.trajectory_mse(self.traj_val, self.cur_val))
            loss = float(self._data_mse(self.x_val, self.y_val))
            spec = self.cfg.model.itnn
            if self.cables_val and spec.rollout_weight > 0:
                # fixed windows: every rollout_steps-long stretch of every validation run
                for cable in self.cables_val:
                    steps = cable[1].shape[0]
                    starts = list(range(0, steps - spec.rollout_steps + 1, spec.rollout_steps))
                    loss += spec.rollout_weight * float(self.cable_mse(cable, starts)) / len(
                        self.cables_val)
            return loss


def validation_errors(cfg: Config, model: Surrogate, data: dict[str, Any]) -> dict[str, float]:
    """Errors in physical units on the validation data (MAE, max, per variable)."""
    out: dict[str, float] = {}
    if cfg.model.kind == "neural-ode":
        with torch.no_grad():
            traj = _f32(data["traj_val"])
            pred = rk4_rollout(model, traj[:, 0], _f32(data["I_val"]), cfg.data.save_dt,
                               traj.shape[1] - 1, cfg.model.neural_ode.substeps).numpy()
        err = np.abs(pred - data["traj_val"])
        out["trajectory_mse"] = float((err**2).mean())
    else:
        err = np.abs(predict(model, data["x_val"]) - data["y_val"])
    flat = err.reshape(-1, 2)
    out.update({
        "mae": float(flat.mean()), "mae_v": float(flat[:, 0].mean()),
        "mae_w": float(flat[:, 1].mean()), "max_v": float(flat[:, 0].max()),
        "max_w": float(flat[:, 1].max()),
    })
    if cfg.model.kind == "itnn" and int(data["attrs"].get("cables_val", 0)):
        out.update(cable_validation(model, data))
    if cfg.model.kind == "itnn" and "rollout_val" in data:
        seq = data["rollout_val"]
        with torch.no_grad():
            pred = one_step_rollout(model, _f32(seq[:, 0]), _f32(data["rollout_I_val"]),
                                    seq.shape[1] - 1).numpy()
        r = np.abs(pred[:, 1:] - seq[:, 1:])
        out.update({"rollout_steps": int(seq.shape[1] - 1),
                    "rollout_mae_v": float(r[..., 0].mean()),
                    "rollout_mae_w": float(r[..., 1].mean()),
                    "rollout_max_v": float(r[..., 0].max())})
    return out


def cable_validation(model: Surrogate, data: dict[str, Any]) -> dict[str, float]:
    """Whole validation runs of the split solver with the model (float64): the worst wave
    agreement with the exact runs (:mod:`surrogates.wave`) over the validation cables."""
    from .wave import wave_agreement

    worst = {"cable_activation_rel": 0.0, "cable_peak_rel": 0.0, "cable_missed_nodes": 0.0}
    model64 = copy.deepcopy(model).double()
    for i in range(int(data["attrs"]["cables_val"])):
        states = data[f"cable_val_{i}_states"].astype(np.float64)
        cur = torch.as_tensor(data[f"cable_val_{i}_currents"], dtype=torch.float64)
        half = torch.as_tensor(data[f"cable_val_{i}_half_step"], dtype=torch.float64)
        params = torch.as_tensor(data[f"cable_val_{i}_params"], dtype=torch.float64)
        with torch.no_grad():
            pred = split_rollout(model64, torch.as_tensor(states[:1]), cur[None],
                                 params[None], half, cur.shape[0])[0].numpy()
        v = np.concatenate([states[:1, :, 0], pred[..., 0]])
        agreement = wave_agreement(np.arange(len(v)) * float(data["attrs"]["dt_r"]), v,
                                   states[..., 0])
        worst["cable_activation_rel"] = max(worst["cable_activation_rel"],
                                            agreement.activation_rel)
        worst["cable_peak_rel"] = max(worst["cable_peak_rel"], agreement.peak_rel)
        worst["cable_missed_nodes"] += agreement.missed_nodes + agreement.extra_nodes
    return worst


def rollout_switch(cfg: Config) -> int | None:
    """The iteration where a two-phase cable training (``model.itnn.rollout_lr`` set) starts
    its rollout phase with a fresh optimizer; None for a one-phase training."""
    spec = cfg.model.itnn
    if (cfg.model.kind != "itnn" or cfg.data.kind != "cable" or spec.rollout_lr is None
            or spec.rollout_weight == 0):
        return None
    return int(spec.rollout_after * cfg.training.iterations)


def _optimizer(cfg: Config, model: Surrogate, rollout_phase: bool = False):
    """The optimizer and schedule of the training, or of its rollout phase (a fresh
    optimizer at ``model.itnn.rollout_lr``, cosine to ``min_lr`` over the iterations left);
    with a rollout phase the first phase's schedule spans the iterations before it."""
    t = cfg.training
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    switch = rollout_switch(cfg)
    if rollout_phase:
        opt = cls(model.net.parameters(), lr=cfg.model.itnn.rollout_lr,
                  weight_decay=t.weight_decay)
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=t.iterations - switch, eta_min=t.min_lr)
    opt = cls(model.net.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    if t.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=switch if switch is not None else t.iterations, eta_min=t.min_lr)
    elif t.schedule == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, factor=t.plateau_factor, patience=t.plateau_patience, min_lr=t.min_lr)
    else:
        sched = None
    return opt, sched


def model_metadata(cfg: Config, data: dict[str, Any]) -> dict[str, Any]:
    """What a runtime needs besides the weights: kinetics, dt_r, box, fixed inputs."""
    from fhnpde import __version__ as fhnpde_version

    d = cfg.data
    box = dict(d.box)
    if cfg.model.kind == "neural-ode":
        states = data["traj_train"].reshape(-1, 2)
        box = {"v": [float(states[:, 0].min()), float(states[:, 0].max())],
               "w": [float(states[:, 1].min()), float(states[:, 1].max())],
               "I": [float(min(d.currents)), float(max(d.currents))]}
    return {
        "name": cfg.name,
        "kinetics": {"name": cfg.kinetics.name, "params": dict(cfg.kinetics.params)},
        "dt_r": d.dt_r if cfg.model.kind == "itnn" else None,
        "save_dt": d.save_dt,
        "t_end": d.t_end if d.kind == "trajectory" else None,
        "state_box": box,
        "fixed": dict(d.fixed),
        "data_path": str(cfg.data_path),
        "data_fingerprint": data["attrs"].get("fingerprint"),
        "fhnpde_version": fhnpde_version,
    }


def _inspect_directory(directory: Path, overwrite: bool) -> tuple[bool, dict | None]:
    """Whether ``directory`` holds a previous model of train's to replace, and the checkpoint
    to resume from; CaseError where train would touch files that are not its own.

    Changes nothing on disk (see :func:`_clear_previous_model`).
    """
    if directory.exists() and not directory.is_dir():
        raise CaseError(f"{directory} is a file, not a directory; choose another --out",
                        key="training.out")
    if (directory / METADATA).exists():
        try:
            read_model_json(directory, key=None)
        except CaseError:
            raise CaseError(f"{directory / METADATA} is not a model description "
                            "`python -m surrogates train` wrote, so train replaces neither it "
                            "nor anything beside it; choose another --out",
                            key="training.out") from None
        if not overwrite:
            raise CaseError(f"{directory} already holds a trained model; pass --overwrite to "
                            "train again or choose another training.out", key="training.out")
        return True, None
    if overwrite:  # an unfinished training of train's: its checkpoint is not resumed
        return False, None
    ckpt_path = directory / CHECKPOINT
    checkpoint = load_checkpoint(ckpt_path) if ckpt_path.exists() else None
    strays = [n for n in (WEIGHTS, CONFIG_COPY, HISTORY) if (directory / n).exists()]
    if strays and checkpoint is None:
        raise CaseError(f"{directory} holds {', '.join(strays)} but no {METADATA}, so it is not "
                        "a model train finished; pass --overwrite to let train replace its "
                        f"files there ({', '.join(TRAIN_FILES)}; nothing else), or choose "
                        "another --out", key="training.out")
    return False, checkpoint


def _clear_previous_model(directory: Path) -> None:
    """Remove the previous model's files (``model.json`` first) and those derived from it,
    by name; nothing else in ``directory``."""
    for name in (METADATA, *TRAIN_FILES, *DERIVED_FILES):
        path = directory / name
        if path.is_file() or path.is_symlink():
            path.unlink()


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                         for k, v in obj.items())


def _is_count(obj: Any) -> bool:
    return isinstance(obj, int) and not isinstance(obj, bool) and obj >= 0


def _is_history(obj: Any) -> bool:
    keys = {"iteration", "train_loss", "val_loss", "lr"}
    return isinstance(obj, list) and all(
        isinstance(h, dict) and set(h) == keys
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in h.values())
        for h in obj)


def _checkpoint_problem(ck: Any) -> str | None:
    """What is wrong with a loaded checkpoint's structure (None: nothing)."""
    if not isinstance(ck, dict):
        return f"it holds a {type(ck).__name__}, not a mapping"
    if ck.get("format") != CHECKPOINT_FORMAT:
        return f"format {ck.get('format')!r}, expected {CHECKPOINT_FORMAT!r}"
    checks = {
        "model_spec": lambda v: isinstance(v, dict),
        "model": _is_state_dict,
        "optimizer": lambda v: isinstance(v, dict) and isinstance(v.get("state"), dict)
        and isinstance(v.get("param_groups"), list),
        "scheduler": lambda v: v is None or isinstance(v, dict),
        "generator": lambda v: isinstance(v, torch.Tensor) and v.dtype == torch.uint8,
        "torch_rng": lambda v: isinstance(v, torch.Tensor) and v.dtype == torch.uint8,
        "iteration": _is_count, "stale": _is_count, "best_iteration": _is_count,
        "history": _is_history,
        "best_loss": lambda v: isinstance(v, float),
        "best_state": _is_state_dict,
    }
    for key, ok in checks.items():
        if key not in ck:
            return f"no {key!r}"
        if not ok(ck[key]):
            return f"{key!r} is not what train writes there"
    return None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint read with ``torch.load(weights_only=True)`` and checked key by key."""
    fix = "delete it to train from the start, or pass --overwrite"
    try:
        ck = load_plain(path)
    except RefusedFile as exc:
        raise CaseError(f"{path} cannot be resumed: torch.load with weights_only=True refuses "
                        f"it ({exc}); {fix}", key="training.out") from None
    problem = _checkpoint_problem(ck)
    if problem is not None:
        raise CaseError(f"{path} is not a checkpoint this version of `surrogates train` writes "
                        f"({problem}); {fix}", key="training.out")
    return ck


def _resume(ck: dict[str, Any], path: Path, cfg: Config, model: Surrogate, opt, sched,
            gen: torch.Generator) -> None:
    """Load a checked checkpoint into the training's objects (CaseError if it does not fit)."""
    fix = "delete it to train from the start, or pass --overwrite"
    if ck["model_spec"] != cfg.model.model_dump(mode="json"):
        raise CaseError(f"{path} was written by a training of another model section; {fix}",
                        key="training.out")
    if (sched is None) != (ck["scheduler"] is None) or (
            sched is not None and not set(ck["scheduler"]) <= set(sched.state_dict())):
        raise CaseError(f"{path} was written with another training.schedule; {fix}",
                        key="training.out")
    try:
        model.load_state_dict(ck["model"])
        copy.deepcopy(model).load_state_dict(ck["best_state"])
        opt.load_state_dict(ck["optimizer"])
        if sched is not None:
            sched.load_state_dict(ck["scheduler"])
        gen.set_state(ck["generator"])
        torch.set_rng_state(ck["torch_rng"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        raise CaseError(f"{path} does not fit this training ({type(exc).__name__}: {first}); "
                        f"{fix}", key="training.out") from None


def _save_checkpoint(path: Path, cfg: Config, model: Surrogate, opt, sched, gen, it: int,
                     stale: int, history: list[dict[str, float]], best) -> None:
    """The training state as plain data: state dicts, tensors, numbers, lists and dicts."""
    ck = {"format": CHECKPOINT_FORMAT, "model_spec": cfg.model.model_dump(mode="json"),
          "model": dict(model.state_dict()), "optimizer": opt.state_dict(),
          "scheduler": sched.state_dict() if sched is not None else None,
          "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
          "iteration": int(it), "stale": int(stale),
          "history": [{k: (int(v) if k == "iteration" else float(v)) for k, v in h.items()}
                      for h in history],
          "best_loss": float(best[0]), "best_state": dict(best[1]),
          "best_iteration": int(best[2])}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: torch.save(ck, tmp))


def _progress(total: int, quiet: bool, desc: str):
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, unit="it")


@contextlib.contextmanager
def deterministic():
    """Deterministic torch kernels only, while training (an op without a deterministic
    implementation raises instead of varying); the previous setting is restored after."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def train(cfg: Config, *, out: str | Path | None = None, quiet: bool = True,
          overwrite: bool = False, data: dict[str, Any] | None = None) -> TrainResult:
    """Train the config's model and save it; resumes from ``checkpoint.pt`` if one is there.

    The same config, data and package versions give the same weights bit for bit on any
    machine: ``training.threads`` torch threads, the seeded generator, and deterministic
    kernels only (:func:`deterministic`).
    """
    with deterministic():
        return _train(cfg, out=out, quiet=quiet, overwrite=overwrite, data=data)


def _train(cfg: Config, *, out: str | Path | None, quiet: bool, overwrite: bool,
           data: dict[str, Any] | None) -> TrainResult:
    t = cfg.training
    directory = Path(out) if out is not None else cfg.model_dir
    replace, checkpoint = _inspect_directory(directory, overwrite)
    if data is None:
        data = load_data(ensure_data(cfg))
    torch.set_num_threads(t.threads)
    torch.manual_seed(t.seed)
    gen = torch.Generator().manual_seed(t.seed)
    model = build_surrogate(cfg, data)
    objective = Objective(cfg, model, data, gen)
    switch = rollout_switch(cfg)
    opt, sched = _optimizer(cfg, model)
    history: list[dict[str, float]] = []
    best = (math.inf, copy.deepcopy(model.state_dict()), 0)
    start, stale = 0, 0
    ckpt_path = directory / CHECKPOINT
    if checkpoint is not None:
        if switch is not None and checkpoint["iteration"] > switch:
            opt, sched = _optimizer(cfg, model, rollout_phase=True)
        _resume(checkpoint, ckpt_path, cfg, model, opt, sched, gen)
        start, stale, history = checkpoint["iteration"], checkpoint["stale"], checkpoint["history"]
        best = (checkpoint["best_loss"], checkpoint["best_state"], checkpoint["best_iteration"])
    if replace:
        _clear_previous_model(directory)
    if start == 0:
        model.eval()
        val0 = objective.validation_loss()
        history.append({"iteration": 0, "train_loss": math.nan, "val_loss": val0,
                        "lr": opt.param_groups[0]["lr"]})
    wall0 = _time.perf_counter()
    bar = _progress(t.iterations, quiet, cfg.name)
    if bar is not None:
        bar.update(start)
    it = start
    objective.calls = start
    loss_value = math.nan
    while it < t.iterations:
        if it == switch:  # the rollout phase: a fresh optimizer at model.itnn.rollout_lr
            opt, sched = _optimizer(cfg, model, rollout_phase=True)
        model.train()
        opt.zero_grad(set_to_none=True)
        loss = objective.train_loss()
        loss.backward()
        if t.clip is not None:
            torch.nn.utils.clip_grad_norm_(model.net.parameters(), t.clip)
        opt.step()
        it += 1
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise RuntimeError(f"training diverged at iteration {it} (loss {loss_value}); "
                               "lower training.lr")
        if isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR):
            sched.step()
        if bar is not None:
            bar.update(1)
        if it % t.validate_every == 0 or it == t.iterations:
            model.eval()
            val = objective.validation_loss()
            lr = opt.param_groups[0]["lr"]
            history.append({"iteration": it, "train_loss": loss_value, "val_loss": val, "lr": lr})
            if bar is not None:
                bar.set_postfix(train=f"{loss_value:.3g}", val=f"{val:.3g}")
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step(val)
            if val < best[0]:
                best = (val, copy.deepcopy(model.state_dict()), it)
                stale = 0
            else:
                stale += 1
            if t.patience is not None and stale >= t.patience:
                break
        if it % t.checkpoint_every == 0 and it < t.iterations:
            _save_checkpoint(ckpt_path, cfg, model, opt, sched, gen, it, stale, history, best)
    if bar is not None:
        bar.close()
    wall = _time.perf_counter() - wall0
    model.load_state_dict(best[1])
    model.eval()
    metrics = validation_errors(cfg, model, data)
    meta = model_metadata(cfg, data)
    meta["validation"] = metrics
    meta["training"] = {"iterations": it, "best_iteration": best[2], "best_val_loss": best[0],
                        "final_train_loss": loss_value, "wall_s": round(wall, 3),
                        "seed": t.seed, "optimizer": t.optimizer, "lr": t.lr}
    directory.mkdir(parents=True, exist_ok=True)
    config_text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    write_atomically(directory / CONFIG_COPY, lambda p: p.write_text(config_text))
    rows = ["iteration,train_loss,val_loss,lr"] + [
        f"{h['iteration']},{h['train_loss']:.6e},{h['val_loss']:.6e},{h['lr']:.3e}"
        for h in history]
    write_atomically(directory / HISTORY, lambda p: p.write_text("\n".join(rows) + "\n"))
    save_model(model, directory, meta)  # model.pt, then model.json: the model is complete
    if ckpt_path.is_file():
        ckpt_path.unlink()
    return TrainResult(directory, metrics, history, wall)


def summary_line(result: TrainResult) -> str:
    m = result.metrics
    parts = [f"MAE v {m['mae_v']:.3g}", f"w {m['mae_w']:.3g}", f"max v {m['max_v']:.3g}"]
    if "rollout_mae_v" in m:
        parts.append(f"{m['rollout_steps']}-step rollout MAE v {m['rollout_mae_v']:.3g}")
    if "trajectory_mse" in m:
        parts.append(f"trajectory MSE {m['trajectory_mse']:.3g}")
    return f"{result.directory}: " + ", ".join(parts) + f" ({result.wall_s:.1f} s)"


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2))
