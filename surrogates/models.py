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
``itnn``  (one-step)          (v, w, I) -> (v, w) after dt_r; with ``residual`` the
                              network gives the increment: u_{n+1} = u_n + N(u_n, I).
``neural-ode``                a vector field f(v, w, I) (no t input), integrated by RK4:
                              u_{n+1} = RK4(f, u_n, h); trained on trajectory loss.

Losses are measured in normalised units: an output error is divided by the output
scale (the std of the training targets), a physics residual by the typical size of du/dt
(the std of F over the training targets), so each term starts near 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fhnpde.case import CaseError
from fhnpde.models import Kinetics

from .architectures import build_mlp, mlp_parameters

FORMAT = "surrogates-model/1"
WEIGHTS = "model.pt"
METADATA = "model.json"


class Surrogate(nn.Module):
    """Physical inputs (n, n_in) -> physical outputs (n, 2).

    ``y = N((x - in_offset) / in_scale) * out_scale + out_offset`` and, for a residual
    one-step model, ``+ x[:, :2]`` (the state the step starts from).
    """

    def __init__(self, kind: str, inputs: list[str], widths: list[int], activations: list[str],
                 *, residual: bool = False):
        super().__init__()
        self.kind = kind
        self.inputs = list(inputs)
        self.widths = list(widths)
        self.activations = list(activations)
        self.residual = bool(residual)
        n_in = len(inputs)
        self.net = build_mlp(n_in, widths, 2, activations)
        self.register_buffer("in_offset", torch.zeros(n_in))
        self.register_buffer("in_scale", torch.ones(n_in))
        self.register_buffer("out_offset", torch.zeros(2))
        self.register_buffer("out_scale", torch.ones(2))

    def set_normalisation(self, in_offset, in_scale, out_offset, out_scale) -> None:
        for name, val in (("in_offset", in_offset), ("in_scale", in_scale),
                          ("out_offset", out_offset), ("out_scale", out_scale)):
            getattr(self, name).copy_(torch.as_tensor(np.asarray(val), dtype=torch.float32))

    def normalised(self, x: torch.Tensor) -> torch.Tensor:
        """The network's output in normalised units (before de-normalisation)."""
        return self.net((x - self.in_offset) / self.in_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.normalised(x) * self.out_scale + self.out_offset
        if self.residual:
            y = y + x[..., :2]
        return y

    @property
    def parameter_count(self) -> int:
        return mlp_parameters(self.widths, len(self.inputs), 2)

    def normalisation(self) -> dict[str, list[float]]:
        return {k: getattr(self, k).tolist()
                for k in ("in_offset", "in_scale", "out_offset", "out_scale")}


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

    Each of the ``steps`` output intervals ``h`` takes ``substeps`` RK4 steps.
    """
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
            u = u + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        out.append(u)
    return torch.stack(out, 1)


def one_step_rollout(model, y0: torch.Tensor, current: torch.Tensor, steps: int) -> torch.Tensor:
    """Apply a one-step model ``steps`` times: states (n, steps + 1, 2)."""
    I = current.reshape(-1, 1)
    out = [y0]
    u = y0
    for _ in range(steps):
        u = model(torch.cat([u, I], 1))
        out.append(u)
    return torch.stack(out, 1)


# --- saving and loading -------------------------------------------------------------------


def save_model(model: Surrogate, directory: str | Path, metadata: dict[str, Any]) -> Path:
    """Write ``model.pt`` (state dict incl. normalisation buffers) and ``model.json``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), d / WEIGHTS)
    meta = {
        "format": FORMAT,
        "kind": model.kind,
        "inputs": model.inputs,
        "outputs": ["v", "w"],
        "widths": model.widths,
        "activations": model.activations,
        "residual": model.residual,
        "parameters": model.parameter_count,
        "normalisation": model.normalisation(),
        "torch_version": torch.__version__,
        **metadata,
    }
    (d / METADATA).write_text(json.dumps(meta, indent=2))
    return d


def read_metadata(directory: str | Path) -> dict[str, Any]:
    d = Path(directory)
    path = d / METADATA
    if not path.exists():
        raise CaseError(f"no {METADATA} in this directory; train a model with "
                        "`python -m surrogates train CONFIG` and pass its directory",
                        source=str(d))
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise CaseError(f"{METADATA} is not a surrogates model description", source=str(d))
    return meta


def load_model(directory: str | Path) -> tuple[Surrogate, dict[str, Any]]:
    """The saved :class:`Surrogate` (eval mode, float32) and its metadata."""
    meta = read_metadata(directory)
    model = Surrogate(meta["kind"], meta["inputs"], meta["widths"], meta["activations"],
                      residual=meta["residual"])
    state = torch.load(Path(directory) / WEIGHTS, map_location="cpu", weights_only=True)
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
