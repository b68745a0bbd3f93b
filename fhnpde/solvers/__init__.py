"""Time-stepping schemes, registered by name (see :mod:`fhnpde.solvers.base`)."""

from __future__ import annotations

import importlib

from .base import REGISTRY, Order, Problem, Solver, State, register, solver_class

_MODULES = ("ode", "explicit", "adaptive", "crank_nicolson", "split")


def _load_all() -> None:
    """Import every solver module so that each registers itself (absent ones are skipped)."""
    for name in _MODULES:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise


__all__ = ["REGISTRY", "Order", "Problem", "Solver", "State", "register", "solver_class"]
