"""Training data from the states a split cable run actually visits, and the split step in torch.

A reaction surrogate is used inside :class:`fhnpde.solvers.split.StrangSplit`:

.. math::

    u^{n+1} = H \\, \\mathcal{R}(H u^n, I^{n+1/2}),\\qquad H = (I - \\tfrac{\\tau}{2} D L)^{-1}
    (I + \\tfrac{\\tau}{2} D L),\\ \\tau = \\Delta t / 2

so what it must get right are the states ``H u^n`` that reach the reaction in such runs (a
thin set around the travelling pulse's orbit, near the excitable threshold above all), and
the whole run, not one step. :func:`record_run` runs a case with the exact reaction and keeps
every reaction call's input and output and every state; :func:`half_step_matrix` is the
solver's own half-step ``H`` as a dense matrix (its columns are ``H`` applied to the unit
vectors, so no formula is repeated); :func:`split_rollout` is the same Strang step with a
torch reaction, differentiable, for the rollout loss of :mod:`surrogates.train`.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class _Recording:
    """A ReactionStep wrapper keeping the (v, w, I) -> (v, w) of every call."""

    def __init__(self, reaction):
        self.reaction = reaction
        self.inputs: list[np.ndarray] = []
        self.outputs: list[np.ndarray] = []

    def __call__(self, v, w, current, dt):
        out_v, out_w = self.reaction(v, w, current, dt)
        cur = np.broadcast_to(np.asarray(current, dtype=float), np.shape(v))
        self.inputs.append(np.stack([v, w, cur], axis=-1))
        self.outputs.append(np.stack([out_v, out_w], axis=-1))
        return out_v, out_w


def exact_case(case, substeps: int):
    """``case`` with the exact reaction (RK4, ``substeps`` per step): the reference a neural
    reaction is trained on and compared with."""
    return case.with_changes({"reaction": {"kind": "exact", "substeps": int(substeps)}})


def record_run(case, substeps: int) -> dict[str, Any]:
    """Run ``case`` (split solver) with the exact reaction; keep what the reaction saw.

    Returns ``states`` (steps + 1, nx, 2), ``inputs`` (steps, nx, 3: v, w, I) and ``outputs``
    (steps, nx, 2) of every reaction call, the ``half_step`` matrix (nx, nx) and ``dt``.
    """
    from fhnpde.driver import build_solver

    case = exact_case(case, substeps)
    if case.solver.method != "split":
        from fhnpde.errors import CaseError

        raise CaseError(f"cable training data need solver.method: split, not "
                        f"{case.solver.method}", key="solver.method")
    _, solver = build_solver(case.with_changes({"solver.backend": "numpy"}))
    recording = _Recording(solver.reaction)
    solver.reaction = recording
    dt = float(case.time.dt)
    steps = int(round(case.time.t_end / dt))
    state = solver.init()
    states = [np.stack([state.v, state.w], axis=-1)]
    for n in range(steps):
        state = solver.step(state, n * dt, dt)
        states.append(np.stack([state.v, state.w], axis=-1))
    return {"states": np.asarray(states), "inputs": np.asarray(recording.inputs),
            "outputs": np.asarray(recording.outputs), "half_step": half_step_matrix(solver, dt),
            "dt": dt}


def half_step_matrix(solver, dt: float) -> np.ndarray:
    """The split solver's diffusion half-step for steps of ``dt`` as a dense (nx, nx) matrix."""
    half = solver.diffusion(dt)
    nx = solver.problem.grid.nx
    eye = np.eye(nx)
    return np.stack([np.asarray(half(eye[i])) for i in range(nx)], axis=1)


def split_rollout(model, start, currents, params, half_step, steps: int):
    """``steps`` Strang steps of a batch of cables with a torch reaction ``model``.

    ``start`` (batch, nx, 2), ``currents`` (batch, steps, nx) at the half steps, ``params``
    (batch, p) the kinetics parameters the model takes as inputs after (v, w, I) (p may be 0),
    ``half_step`` (nx, nx). Returns the states after each step, (batch, steps, nx, 2).
    """
    import torch

    v, w = start[..., 0], start[..., 1]
    batch, nx = v.shape
    extra = params[:, None, :].expand(batch, nx, params.shape[-1])
    out = []
    for k in range(steps):
        v = v @ half_step.T
        x = torch.cat([torch.stack([v, w, currents[:, k]], -1), extra], -1)
        y = model(x.reshape(-1, x.shape[-1])).reshape(batch, nx, 2)
        v, w = y[..., 0] @ half_step.T, y[..., 1]
        out.append(torch.stack([v, w], -1))
    return torch.stack(out, 1)
