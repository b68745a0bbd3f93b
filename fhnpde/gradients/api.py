"""``fhnpde.gradient(case, loss, wrt)``: a scalar loss of a run and its gradient."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..case import CaseError


def leaves(targets, values: Mapping[str, float] | None = None) -> dict:
    """A float64 leaf tensor (requires_grad) per target: its value in ``values`` or the case."""
    import torch

    values = values or {}
    return {t.path: torch.tensor(float(values.get(t.path, t.value)), dtype=torch.float64,
                                 requires_grad=True) for t in targets}


def evaluate(case, targets, loss: Callable, values: Mapping[str, float] | None = None, *,
             checkpoint: bool = True) -> tuple[float, dict[str, float]]:
    """(loss, {path: d loss / d value}) of ``case`` with ``values`` (defaults: the case's) set
    at the targets' key paths."""
    import torch

    from .run import case_with, trajectory

    tensors = leaves(targets, values)
    run_case = case_with(case, targets, tensors)
    run = trajectory(run_case, targets, tensors, checkpoint=checkpoint)
    value = loss(run)
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise TypeError(f"the loss must return a scalar torch tensor, got {type(value).__name__}"
                        + (f" of shape {tuple(value.shape)}" if hasattr(value, "shape") else ""))
    grads = torch.autograd.grad(value.reshape(()), list(tensors.values()), allow_unused=True)
    return float(value.detach()), {path: 0.0 if g is None else float(g)
                          for path, g in zip(tensors, grads, strict=True)}


def gradient(case: Any, loss: Callable, wrt, *, checkpoint: bool = True
             ) -> tuple[float, dict[str, float]]:
    """The loss of a run of ``case`` and its gradient with respect to ``wrt``.

    ``case``: a Case, a mapping or a case file with ``solver.backend: torch`` and a solver with
    a differentiable path (explicit, crank-nicolson, split with the exact reaction; on a
    sheet explicit and split; euler, rk4, crank-nicolson for point models). ``loss(run)``
    takes the run's :class:`~fhnpde.gradients.run.Trajectory` (``run.v``, ``run.w``: tensors
    of shape (time, node), (time, y, x) on a sheet, ``run.t``, ``run.x``, ``run.y``) and
    returns a scalar tensor, e.g.
    ``lambda run: (run.v[-1] ** 2).mean()`` or :func:`fhnpde.gradients.data.squared_error`
    of recorded data. ``wrt``: key paths (:mod:`fhnpde.gradients.wrt`), a list or a
    comma-separated string. ``checkpoint``: recompute each output interval on the backward
    pass (memory grows with the outputs, not the steps).

    Returns ``(loss, {path: gradient})`` as floats. CaseError (one line, naming the key) for a
    key path that is not a differentiable number or a case that cannot be differentiated.
    """
    from ..api import as_case
    from .run import check_case
    from .wrt import resolve

    case = as_case(case)
    if not callable(loss):
        raise CaseError(f"loss must be a function of the run, got {type(loss).__name__}")
    check_case(case)
    targets = resolve(case, wrt)
    return evaluate(case, targets, loss, checkpoint=checkpoint)
