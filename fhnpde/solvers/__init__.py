"""Time-stepping schemes, registered by name (see :mod:`fhnpde.solvers.base`)."""

from __future__ import annotations

import importlib

from .base import REGISTRY, Order, Problem, Solver, State, register
from .options import (
    AdaptiveOptions,
    NewtonOptions,
    OptionError,
    ReactionOptions,
    SolverOptions,
)

_MODULES = ("ode", "explicit", "adaptive", "crank_nicolson", "split", "staggered", "sdirk")


def load_all() -> None:
    """Import every solver module so that each registers itself (a missing one is an error
    of the installation, not a solver to skip)."""
    for name in _MODULES:
        importlib.import_module(f"{__name__}.{name}")


def solver_class(name: str, geometry: str) -> type[Solver]:
    """The registered solver ``name`` for a ``geometry`` ("cable" or "point");
    :class:`OptionError` (option ``method``) listing the valid names otherwise.

    The module a name's first word names (``crank-nicolson`` -> ``crank_nicolson``,
    ``staggered-cn`` -> ``staggered``) is imported first and alone, so that a run imports
    its own solver's module only; any other name, or one that module does not register,
    loads every module (:func:`load_all`) before it is looked up."""
    key = (geometry, name)
    if key not in REGISTRY:
        word = name.replace("-", "_")
        module = next((m for m in _MODULES if word.startswith(m)), None)
        if module is not None:
            importlib.import_module(f"{__name__}.{module}")
        if key not in REGISTRY:
            load_all()
    try:
        return REGISTRY[(geometry, name)]
    except KeyError:
        valid = sorted(n for g, n in REGISTRY if g == geometry)
        raise OptionError(
            f"unknown solver {name!r} for a {geometry} case; valid solvers: {', '.join(valid)}",
            option="method",
        ) from None



__all__ = ["REGISTRY", "AdaptiveOptions", "NewtonOptions", "OptionError", "Order", "Problem",
           "ReactionOptions", "Solver", "SolverOptions", "State", "load_all", "register",
           "solver_class"]
