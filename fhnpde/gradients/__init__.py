"""Gradients through the solvers and parameter fitting (DESIGN §10); torch is imported on first use
(so the command line can register ``fit`` without it).

- :func:`gradient` (``fhnpde.gradient``): a scalar loss of a run and its gradient with
  respect to ``wrt`` key paths of the case (:mod:`.wrt`);
- :func:`fit` (``fhnpde.fit``): the ``wrt`` values that fit recorded data (:mod:`.fitting`);
- :func:`trajectory`: a run's outputs as differentiable tensors (:mod:`.run`);
- :func:`squared_error`: recorded data as a loss (:mod:`.data`);
- :func:`solve_tridiagonal`: ``fhnpde.tridiagonal.solve`` with a one-solve backward pass
  (:mod:`.tridiagonal`).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "gradient": ".api", "squared_error": ".data", "FitResult": ".fitting", "fit": ".fitting",
    "Trajectory": ".run", "trajectory": ".run", "TridiagonalSolve": ".tridiagonal",
    "solve_tridiagonal": ".tridiagonal",
}


def __getattr__(name):
    if name in _EXPORTS:
        module = importlib.import_module(_EXPORTS[name], __name__)
        return getattr(module, "solve" if name == "solve_tridiagonal" else name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
