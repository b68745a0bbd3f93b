"""Neural surrogates of the FitzHugh–Nagumo point model: DDNN, PINN, ITNN, Neural ODE.

All four are one module, :class:`Surrogate`: physical inputs -> affine normalisation ->
MLP -> affine de-normalisation -> physical outputs, so a saved model is self-contained
(export and a neural ReactionStep need nothing but the module and ``model.json``).

``ddnn``  (data-driven)      u(t, [v0, w0, I]) = (v, w), trained on data alone:
                              L = mean |u(x_i) - y_i|^2 (normalised units).
``pinn``  (physics-informed)  same network; L = w_d L_data + w_p L_phys + w_ic L_ic with
                              the residual r = du/dt - F(u, I) at collocation points
                              (du/dt by autograd, F the fhnpde kinetics, the formula of
                              fhnpde.models evaluated on torch tensors) and
                              L_ic = mean |u(0, v0, w0, I) - (v0, w0)|^2.
``itnn``  (one-step)          (v, w, I, [params]) -> (v, w) after dt_r; with ``residual``
                              the network gives the increment: u_{n+1} = u_n + N(u_n, I);
                              ``rest-factored``: the increment is C(x) (u - u_*, I), zero
                              at rest by construction (see :class:`Surrogate`).
``neural-ode``                a vector field f(v, w, I) (no t input), integrated by RK4:
                              u_{n+1} = RK4(f, u_n, h); trained on trajectory loss.

Losses are measured in normalised units: an output error is divided by the output
scale (the std of the training targets), a physics residual by the typical size of du/dt
(the std of F over the training targets), so each term starts near 1.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fhnpde.case import CaseError
from fhnpde.models import Kinetics

from .architectures import PRIORS, STRUCTURES, build_mlp, mlp_parameters, network_outputs

FORMAT = "surrogates-model/1"
WEIGHTS = "model.pt"
METADATA = "model.json"


class Surrogate(nn.Module):
    """Physical inputs (n, n_in) -> physical outputs (n, 2).

    ``plain``: ``y = N((x - in_offset) / in_scale) * out_scale + out_offset`` and, for a
    residual one-step model, ``+ x[:, :2]`` (the state the step starts from).

    ``rest-factored`` (one-step models of (v, w, I, [kinetics parameters])): the network
    gives a 2 x 3 matrix ``C(x)`` and the increment is linear in the distance from rest,

    .. math::

        u_{n+1} = u_n + s \\odot C(x)\\, z,\\qquad
        z = \\bigl(\\tfrac{v - v_*}{\\sigma_v}, \\tfrac{w - w_*}{\\sigma_w},
        \\tfrac{I}{\\sigma_I}\\bigr)

    (``s`` = out_scale, ``sigma`` = in_scale, ``(v*, w*)`` the kinetics' rest state at
    I = 0, buffer ``rest``). Any smooth increment that vanishes at rest can be written so
    (Hadamard's lemma), and the rest state is a fixed point of the model exactly, for every
    value of the parameter inputs, whatever the weights: a cable at rest stays at rest over
    any number of steps instead of drifting by the network's error at rest.

    ``prior="euler"`` (with ``kinetics`` = (family name, parameter values) and ``dt_r``) adds
    one explicit Euler step of the known kinetics, ``+ dt_r F(v, w, I; p)`` (the formula of
    :mod:`fhnpde.models`, parameters from the inputs where the model takes them), so the
    network learns only what that step misses (a hypersolver): a target about 8 times smaller
    on the states a cable visits, hence a smaller error for the same network. F vanishes at
    rest too, so the rest state stays exact.
    """

    def __init__(self, kind: str, inputs: list[str], widths: list[int], activations: list[str],
                 *, residual: bool = False, structure: str = "plain", prior: str = "none",
                 kinetics: tuple[str, dict[str, float]] | None = None, dt_r: float | None = None):
        super().__init__()
        if prior not in PRIORS:
            raise ValueError(f"unknown prior {prior!r}; valid: {', '.join(PRIORS)}")
        if prior != "none" and (structure != "rest-factored" or kinetics is None or not dt_r):
            raise ValueError("an euler prior needs structure rest-factored, kinetics and dt_r")
        if structure not in STRUCTURES:
            raise ValueError(f"unknown structure {structure!r}; valid: {', '.join(STRUCTURES)}")
        self.kind = kind
        self.inputs = list(inputs)
        self.widths = list(widths)
        self.activations = list(activations)
        self.residual = bool(residual) or structure == "rest-factored"
        self.structure = structure
        n_in = len(inputs)
        self.net = build_mlp(n_in, widths, network_outputs(structure), activations)
        self.register_buffer("in_offset", torch.zeros(n_in))
        self.register_buffer("in_scale", torch.ones(n_in))
        self.register_buffer("out_offset", torch.zeros(2))
        self.register_buffer("out_scale", torch.ones(2))
        if structure == "rest-factored":
            self.register_buffer("rest", torch.zeros(3))
        self.prior = prior
        if prior == "euler":
            from fhnpde.models import check_params, family

            name, params = kinetics
            self.family = family(name)
            full = check_params(name, dict(params))
            # each parameter: its input column, or its value (a constant of the graph)
            self.prior_params = [inputs.index(k) if k in inputs else float(full[k])
                                 for k in self.family.params]
            self.dt_r = float(dt_r)

    def set_normalisation(self, in_offset, in_scale, out_offset, out_scale) -> None:
        for name, val in (("in_offset", in_offset), ("in_scale", in_scale),
                          ("out_offset", out_offset), ("out_scale", out_scale)):
            getattr(self, name).copy_(torch.as_tensor(np.asarray(val), dtype=torch.float32))

    def set_rest(self, v: float, w: float) -> None:
        """The rest state (v*, w*) at I = 0 of a rest-factored model."""
        self.rest.copy_(torch.tensor([v, w, 0.0], dtype=torch.float32))

    def normalised(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output in normalised units (before de-normalisation)."""
        return self.net((x - self.in_offset) / self.in_scale)

    def combine(self, x: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """Physical outputs from the inputs ``x`` and the network's output ``raw``."""
        if self.structure == "rest-factored":
            z = (x[..., :3] - self.rest) / self.in_scale[:3]
            c = raw.unflatten(-1, (2, 3))
            increment = (c * z.unsqueeze(-2)).sum(-1) * self.out_scale
            if self.prior == "euler":
                increment = increment + self.dt_r * self.field(x)
            return x[..., :2] + increment
        y = raw * self.out_scale + self.out_offset
        if self.residual:
            y = y + x[..., :2]
        return y

    def field(self, x: torch.Tensor) -> torch.Tensor:
        """F(v, w, I; p) of the known kinetics at inputs ``x`` (the Euler prior), (n, 2)."""
        values = [x[..., p] if isinstance(p, int) else p for p in self.prior_params]
        fv, fw = self.family.reaction(x[..., 0], x[..., 1], x[..., 2], *values)
        return torch.stack([fv, fw], -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine(x, self.normalised(x))

    @property
    def parameter_count(self) -> int:
        return mlp_parameters(self.widths, len(self.inputs), network_outputs(self.structure))

    def normalisation(self) -> dict[str, list[float]]:
        return {k: getattr(self, k).tolist()
                for k in ("in_offset", "in_scale", "out_offset", "out_scale")}


def build(meta: dict[str, Any]) -> Surrogate:
    """The (untrained) Surrogate a model.json describes."""
    prior = meta.get("prior", "none")
    kinetics = (meta["kinetics"]["name"], meta["kinetics"]["params"]) if prior != "none" else None
    return Surrogate(meta["kind"], meta["inputs"], meta["widths"], meta["activations"],
                     residual=meta["residual"], structure=meta.get("structure", "plain"),
                     prior=prior, kinetics=kinetics, dt_r=meta.get("dt_r"))


# --- physics ------------------------------------------------------------------------------


def kinetics_rhs(kinetics: Kinetics, v, w, I):
    """F(v, w, I) of fhnpde's kinetics on torch tensors (the one formula in fhnpde.models)."""
    return kinetics.family.reaction(v, w, I, *kinetics.values)


def time_derivative(fn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(u(x), du/dt) for a map u of inputs whose column 0 is t, by autograd."""
    x = x.detach().clone().requires_grad_(True)
    u = fn(x)
    grads = [torch.autograd.grad(u[:, j].sum(), x, create_graph=True)[0][:, 0] for j in (0, 1)]
    return u, torch.stack(grads, 1)


def physics_residual(fn, x: torch.Tensor, kinetics: Kinetics, inputs: list[str],
                     fixed: dict[str, float]) -> torch.Tensor:
    """r = du/dt - F(u, I) at inputs x (physical units), shape (n, 2).

    ``fn`` maps inputs (t, [v0, w0, I]) to (v, w); I is the input column when it is an
    input, else ``fixed['I']``.
    """
    u, du = time_derivative(fn, x)
    current = x[:, inputs.index("I")] if "I" in inputs else float(fixed["I"])
    fv, fw = kinetics_rhs(kinetics, u[:, 0], u[:, 1], current)
    return du - torch.stack([fv, fw], 1)


# --- integration --------------------------------------------------------------------------


def rk4_rollout(field, y0: torch.Tensor, current: torch.Tensor, h: float, steps: int,
                substeps: int = 1) -> torch.Tensor:
    """Integrate du/dt = field([u, I]) by classical RK4; states (n, steps + 1, 2).

    Each of the ``steps`` output intervals ``h`` takes ``substeps`` RK4 steps (the weights
    of :func:`fhnpde.schemes.rk4_combine`, as fhnpde's own RK4).
    """
    from fhnpde.schemes import rk4_combine

    I = current.reshape(-1, 1)

    def f(u):
        return field(torch.cat([u, I], 1))

    dt = h / substeps
    out = [y0]
    u = y0
    for _ in range(steps):
        for _ in range(substeps):
            k1 = f(u)
            k2 = f(u + 0.5 * dt * k1)
            k3 = f(u + 0.5 * dt * k2)
            k4 = f(u + dt * k3)
            u = rk4_combine(u, k1, k2, k3, k4, dt)
        out.append(u)
    return torch.stack(out, 1)


def one_step_rollout(model, y0: torch.Tensor, current: torch.Tensor, steps: int,
                     params: torch.Tensor | None = None) -> torch.Tensor:
    """Apply a one-step model ``steps`` times: states (n, steps + 1, 2). ``params`` (n, p):
    the values of the kinetics parameters a model takes as inputs after (v, w, I)."""
    fixed = [current.reshape(-1, 1)] + ([params] if params is not None else [])
    out = [y0]
    u = y0
    for _ in range(steps):
        u = model(torch.cat([u, *fixed], 1))
        out.append(u)
    return torch.stack(out, 1)


# --- saving and loading -------------------------------------------------------------------


def write_atomically(path: Path, write) -> None:
    """Call ``write(tmp)`` on a fresh file beside ``path``, then rename it to ``path``.

    A reader (or a rerun after a kill) sees the old file or the whole new one, never a torn
    one; the temporary name is unique, so no other file in the directory is touched.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(model: Surrogate, directory: str | Path, metadata: dict[str, Any]) -> Path:
    """Write ``model.pt`` (state dict incl. normalisation buffers), then ``model.json``.

    Each file is written whole or not at all, ``model.json`` last: a directory with a
    ``model.json`` holds the weights it describes.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    state = dict(model.state_dict())
    write_atomically(d / WEIGHTS, lambda p: torch.save(state, p))
    meta = {
        "format": FORMAT,
        "kind": model.kind,
        "inputs": model.inputs,
        "outputs": ["v", "w"],
        "widths": model.widths,
        "activations": model.activations,
        "residual": model.residual,
        "structure": model.structure,
        "prior": model.prior,
        "parameters": model.parameter_count,
        "normalisation": model.normalisation(),
        "torch_version": torch.__version__,
        **metadata,
    }
    text = json.dumps(meta, indent=2)
    write_atomically(d / METADATA, lambda p: p.write_text(text))
    return d


def read_metadata(directory: str | Path, key: str | None = None) -> dict[str, Any]:
    """The validated ``model.json`` of a model directory (one-line CaseError otherwise)."""
    from .runtime import read_model_json

    return read_model_json(Path(directory), key=key)


class RefusedFile(Exception):
    """``torch.load(weights_only=True)`` refused a file (its message: the error's type)."""


def load_plain(path: Path) -> Any:
    """``torch.load(path, weights_only=True)``: tensors, numbers, strings, lists and mappings
    only, nothing that could run code while unpickling; RefusedFile otherwise."""
    try:
        with warnings.catch_warnings():  # e.g. about the pickle protocol of a crafted file
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, EOFError, zip errors, ...
        raise RefusedFile(type(exc).__name__) from None


def load_state(path: Path, key: str | None = None) -> dict[str, torch.Tensor]:
    """A state dict read with ``torch.load(weights_only=True)``: tensors by name, nothing
    that could run code while unpickling (CaseError naming the file otherwise)."""
    if not path.is_file():
        raise CaseError(f"{path} is missing; train the model again with `python -m surrogates "
                        "train CONFIG`", key=key)
    try:
        state = load_plain(path)
    except RefusedFile as exc:
        raise CaseError(f"{path} is not a plain torch state dict: torch.load with "
                        f"weights_only=True refuses it ({exc}); train the model "
                        "again, and never load it any other way unless you know who wrote it",
                        key=key) from None
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CaseError(f"{path} holds a {type(state).__name__}, not a state dict of tensors by "
                        "name; train the model again", key=key)
    return state


def check_state(state: dict[str, torch.Tensor], meta: dict[str, Any], path: Path,
                key: str | None = None) -> None:
    """CaseError unless ``state`` has exactly the float32 tensors, of exactly the shapes, of
    the architecture ``meta`` declares (built on the meta device: no memory is spent on a
    declared architecture that the file does not match)."""
    with torch.device("meta"):
        reference = build(meta).state_dict()
    declared = (f"the architecture its model.json declares (inputs {meta['inputs']}, widths "
                f"{meta['widths']}, {network_outputs(meta.get('structure', 'plain'))} outputs)")
    missing = [k for k in reference if k not in state]
    extra = [k for k in state if k not in reference]
    if missing or extra:
        found = "; ".join(part for part in (
            f"missing {', '.join(missing[:4])}" if missing else "",
            f"unexpected {', '.join(extra[:4])}" if extra else "") if part)
        raise CaseError(f"{path} holds other tensors than {declared} ({found}); train the model "
                        "again", key=key)
    for name, want in reference.items():
        got = state[name]
        if tuple(got.shape) != tuple(want.shape):
            raise CaseError(f"{path}: {name} has shape {tuple(got.shape)}, but {declared} needs "
                            f"{tuple(want.shape)}; train the model again", key=key)
        if got.dtype != torch.float32:
            raise CaseError(f"{path}: {name} is {got.dtype}, expected torch.float32; train the "
                            "model again", key=key)


def load_model(directory: str | Path, *, weights: str | Path | None = None,
               key: str | None = None) -> tuple[Surrogate, dict[str, Any]]:
    """The saved :class:`Surrogate` (eval mode, float32) and its metadata.

    ``weights`` defaults to the directory's ``model.pt``. ``model.json`` is validated, the
    weights are read with ``weights_only=True`` and checked tensor by tensor against the
    architecture it declares; any failure is one CaseError (naming ``key`` if given).
    """
    d = Path(directory)
    meta = read_metadata(d, key=key)
    path = Path(weights) if weights is not None else d / WEIGHTS
    state = load_state(path, key)
    check_state(state, meta, path, key)
    model = build(meta)
    model.load_state_dict(state)
    model.eval()
    return model, meta


def predict(model: nn.Module, x: np.ndarray, batch: int = 65536) -> np.ndarray:
    """Model outputs on numpy inputs, in batches, without gradients."""
    x = np.asarray(x, dtype=np.float32)
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outs.append(model(torch.from_numpy(x[i:i + batch])).numpy())
    return np.concatenate(outs).astype(float) if outs else np.zeros((0, 2))
