r"""``fhnpde.fit``: model parameters from recorded data by gradient descent.

The loss is :func:`fhnpde.gradients.data.squared_error` (the model selected at the data's
times and nodes); its gradient comes from :func:`fhnpde.gradients.api.evaluate`. The fitted
values are searched in transformed coordinates ``u``:

- ``u = log θ`` for a value that must stay positive (a kinetics parameter the family declares
  positive or non-negative, ``model.diffusion``, a profile's ``width``), so no step can make
  it negative and relative changes weigh alike for every parameter;
- ``u = θ / |θ_start|`` otherwise (each parameter in units of its start).

``method="lbfgs"`` (default): scipy's L-BFGS-B on ``u`` with exact gradients and the bounds
(in ``θ``, mapped to ``u``); ``method="adam"``: :class:`torch.optim.Adam` on ``u``, the
bounds enforced by clipping after each step. The loss is divided by its value at the start, so
the stopping tolerances are relative.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..case import CaseError
from ..errors import NumericalFailure

METHODS = ("lbfgs", "adam")
#: bounds the case itself imposes besides positivity (kinetics family, parameter) -> (lo, hi)
#: (the Nagumo threshold a lies in (0, 1): :func:`fhnpde.models._nagumo_threshold`)
CASE_BOUNDS = {("nagumo", "a"): (0.0, 1.0)}


@dataclass
class FitResult:
    """What :func:`fit` found: ``values`` (path -> fitted value), the ``loss`` there,
    ``history`` (the loss at the start and after every iteration), ``trace`` (the values
    after every iteration and when), ``case`` (the case with the fitted values) and the work
    done."""

    values: dict[str, float]
    start: dict[str, float]
    loss: float
    history: list[float]
    iterations: int
    evaluations: int
    seconds: float
    success: bool
    message: str
    case: Any
    gradient: dict[str, float] = field(default_factory=dict)
    #: (seconds since the start, values) after every iteration
    trace: list[tuple[float, dict[str, float]]] = field(default_factory=list)

    def table(self) -> str:
        """The fitted values as a small text table."""
        rows = [f"{'key':<28} {'start':>14} {'fitted':>14}"]
        rows += [f"{p:<28} {self.start[p]:>14.8g} {v:>14.8g}" for p, v in self.values.items()]
        return "\n".join(rows)


class Transform:
    """θ <-> u for one target (module docstring)."""

    def __init__(self, target, start: float, case):
        from ..models import family

        fam = family(case.model.kinetics)
        positive = (
            (target.kind == "param" and target.name in (*fam.positive, *fam.nonnegative))
            or target.kind == "diffusion" or target.field == "width"
        )
        self.log = positive and start > 0.0
        self.scale = abs(start) if start != 0.0 else 1.0

    def to_u(self, theta: float) -> float:
        return math.log(theta) if self.log else theta / self.scale

    def to_theta(self, u: float) -> float:
        return math.exp(u) if self.log else u * self.scale

    def dtheta_du(self, u: float) -> float:
        return math.exp(u) if self.log else self.scale

    def bound(self, lo, hi) -> tuple[float | None, float | None]:
        if self.log:
            return (math.log(lo) if lo is not None and lo > 0 else None,
                    math.log(hi) if hi is not None and hi > 0 else None)
        return (None if lo is None else lo / self.scale, None if hi is None else hi / self.scale)


def _bounds(case, targets, bounds) -> dict:
    from .wrt import full_path

    out = {}
    bounds = {full_path(case, k): v for k, v in dict(bounds or {}).items()}
    for t in targets:
        lo, hi = CASE_BOUNDS.get((case.model.kinetics, t.name), (None, None)) \
            if t.kind == "param" else (None, None)
        given = bounds.pop(t.path, None)
        if given is not None:
            try:
                glo, ghi = given
                glo = None if glo is None else float(glo)
                ghi = None if ghi is None else float(ghi)
            except (TypeError, ValueError):
                raise CaseError(f"bounds must be (low, high) numbers or None, got {given!r}",
                                key=t.path) from None
            lo = glo if lo is None or (glo is not None and glo > lo) else lo
            hi = ghi if hi is None or (ghi is not None and ghi < hi) else hi
        out[t.path] = (lo, hi)
    if bounds:
        raise CaseError("has bounds but is not in wrt; bound only the fitted key paths",
                        key=sorted(bounds)[0])
    return out


def fit(case, data, wrt, start: Mapping[str, float] | None = None, *, method: str = "lbfgs",
        bounds: Mapping[str, tuple] | None = None, max_iter: int = 100, ftol: float = 1e-14,
        gtol: float = 1e-10, lr: float = 0.02, variables=("v",), progress: bool = False,
        checkpoint: bool = True, data_key: str = "data") -> FitResult:
    """Fit the ``wrt`` values of ``case`` to ``data`` (module docstring).

    ``start``: {path: value} to start from (default: the case's values); ``bounds``:
    {path: (low, high)} (None for no bound); ``max_iter``: iterations at most; ``ftol``,
    ``gtol``: L-BFGS-B's stopping tolerances on the relative loss; ``lr``: Adam's step in
    ``u``; ``variables``: the data variables fitted; ``progress``: a progress bar.
    """
    from ..api import as_case
    from .api import evaluate
    from .data import squared_error
    from .run import case_with, check_case
    from .wrt import full_path, resolve

    case = as_case(case)
    check_case(case)
    if method not in METHODS:
        raise CaseError(f"unknown fit method {method!r}; valid methods: {', '.join(METHODS)}",
                        key="method")
    if int(max_iter) < 1:
        raise CaseError(f"must be >= 1, got {max_iter}", key="max_iter")
    targets = resolve(case, wrt)
    paths = [t.path for t in targets]
    start = {full_path(case, k): v for k, v in dict(start or {}).items()}
    for key in start:
        if key not in paths:
            raise CaseError("has a start value but is not in wrt; add it to wrt or drop it",
                            key=key)
    begin = {t.path: float(start.get(t.path, t.value)) for t in targets}
    case = case_with(case, targets, begin)  # validates the start values
    targets = resolve(case, paths)
    loss = squared_error(case, data, variables, key=data_key)
    transforms = [Transform(t, begin[t.path], case) for t in targets]
    limits = _bounds(case, targets, bounds)
    u_bounds = [tr.bound(*limits[t.path]) for tr, t in zip(transforms, targets, strict=True)]

    counter = {"evaluations": 0}
    last: dict[str, Any] = {}

    def objective(u: np.ndarray) -> tuple[float, np.ndarray]:
        theta = {t.path: tr.to_theta(float(x))
                 for t, tr, x in zip(targets, transforms, u, strict=True)}
        counter["evaluations"] += 1
        try:
            value, grads = evaluate(case, targets, loss, theta, checkpoint=checkpoint)
        except (CaseError, NumericalFailure):  # a step out of the valid region: uphill
            return math.inf, np.zeros_like(u)
        g = np.array([grads[t.path] * tr.dtheta_du(float(x))
                      for t, tr, x in zip(targets, transforms, u, strict=True)])
        last.update(theta=theta, value=value, grads=grads)
        return value, g

    u0 = np.array([tr.to_u(begin[t.path]) for t, tr in zip(targets, transforms, strict=True)])
    loss0, _ = objective(u0)
    if not math.isfinite(loss0):
        raise CaseError("the run from the start values fails (it blows up); start closer to "
                        "the data or lower time.dt", key="start")
    scale = loss0 if loss0 > 0 else 1.0
    history = [loss0]
    wall = time.perf_counter()
    trace: list[tuple[float, dict[str, float]]] = []

    def theta_of(u) -> dict[str, float]:
        return {t.path: tr.to_theta(float(x))
                for t, tr, x in zip(targets, transforms, u, strict=True)}
    bar = _progress(progress, max_iter)
    if method == "lbfgs":
        from scipy.optimize import minimize

        def scaled(u):
            value, g = objective(u)
            if not math.isfinite(value):
                return 1e30, g
            return value / scale, g / scale

        def step_done(intermediate_result):
            history.append(float(intermediate_result.fun) * scale)
            trace.append((time.perf_counter() - wall, theta_of(intermediate_result.x)))
            _tick(bar, history[-1])

        result = minimize(scaled, u0, jac=True, method="L-BFGS-B", bounds=u_bounds,
                          callback=step_done,
                          options={"maxiter": int(max_iter), "ftol": ftol, "gtol": gtol})
        u_best, iterations = result.x, int(result.nit)
        success, message = bool(result.success), str(result.message)
    else:
        u_best, iterations, success, message = _adam(
            objective, u0, u_bounds, int(max_iter), lr, history, bar,
            lambda u: trace.append((time.perf_counter() - wall, theta_of(u))))
    if bar is not None:
        bar.close()
    final, grads = objective(np.asarray(u_best))
    values = {t.path: tr.to_theta(float(x))
              for t, tr, x in zip(targets, transforms, u_best, strict=True)}
    return FitResult(values, begin, final, history, iterations, counter["evaluations"],
                     time.perf_counter() - wall, success, message,
                     case_with(case, targets, values),
                     {p: float(g) for p, g in zip(paths, grads, strict=True)}, trace)


def _adam(objective, u0, u_bounds, max_iter, lr, history, bar, record):
    import torch

    u = torch.tensor(u0, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.Adam([u], lr=lr)
    lo = torch.tensor([-math.inf if b[0] is None else b[0] for b in u_bounds], dtype=torch.float64)
    hi = torch.tensor([math.inf if b[1] is None else b[1] for b in u_bounds], dtype=torch.float64)
    best_u, best = u0.copy(), history[0]
    for _ in range(max_iter):
        value, g = objective(u.detach().numpy())
        if not math.isfinite(value):
            return best_u, len(history) - 1, False, "a step left the valid region; lower lr"
        if value < best:
            best_u, best = u.detach().numpy().copy(), value
        optimiser.zero_grad()
        u.grad = torch.as_tensor(g, dtype=torch.float64)
        optimiser.step()
        with torch.no_grad():
            u.copy_(torch.clamp(u, lo, hi))
        history.append(value)
        record(u.detach().numpy())
        _tick(bar, value)
    value, _ = objective(u.detach().numpy())
    if math.isfinite(value) and value < best:
        best_u = u.detach().numpy().copy()
    return best_u, max_iter, True, f"{max_iter} Adam steps"


def _progress(enabled: bool, total: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="it", desc="fit")


def _tick(bar, value: float) -> None:
    if bar is not None:
        bar.set_postfix(loss=f"{value:.3e}")
        bar.update(1)
