"""Convergence-order and stability studies (``python -m fhnpde convergence|stability``).

Both studies work for every registered solver: they build it by name through the solver
registry (:func:`fhnpde.solvers.solver_class`), read its declared
:class:`~fhnpde.solvers.Order`, and step it in-process (``solver.advance``) without
writing a store. A solver that registers itself later is studied without changes here.

- :mod:`~fhnpde.studies.runs`: cases at other resolutions, runs to the end, argument ranges;
- :mod:`~fhnpde.studies.references`: independent (scipy) references;
- :mod:`~fhnpde.studies.orders`: observed and fitted orders;
- :mod:`~fhnpde.studies.convergence`, :mod:`~fhnpde.studies.stability`: the two studies.

What they measure and how, with the results for the shipped cases: docs/convergence.md.
The commands themselves are in :mod:`fhnpde.cli`.
"""

from __future__ import annotations

from .convergence import ConvergenceLevel, ConvergenceResult, convergence_study
from .orders import fitted_order, observed_orders
from .references import laplacian_sparsity, method_of_lines_reference, point_reference
from .runs import (
    CAP_RANGE,
    DEFAULT_OUT,
    LEVELS_RANGE,
    MAX_NODES,
    MAX_STEPS,
    ORDER_BOUNDS,
    RATIO_RANGE,
    RTOL_RANGE,
    case_with,
    geometry_of,
    refined_nx,
    run_to_end,
)
from .stability import (
    Probe,
    StabilityResult,
    StabilityStudy,
    grid_scale_oscillation,
    largest_stable_dt,
    probe_stability,
    registered_solvers,
    stability_study,
)

__all__ = [
    "CAP_RANGE",
    "DEFAULT_OUT",
    "LEVELS_RANGE",
    "MAX_NODES",
    "MAX_STEPS",
    "ORDER_BOUNDS",
    "RATIO_RANGE",
    "RTOL_RANGE",
    "ConvergenceLevel",
    "ConvergenceResult",
    "Probe",
    "StabilityResult",
    "StabilityStudy",
    "case_with",
    "convergence_study",
    "fitted_order",
    "geometry_of",
    "grid_scale_oscillation",
    "laplacian_sparsity",
    "largest_stable_dt",
    "method_of_lines_reference",
    "observed_orders",
    "point_reference",
    "probe_stability",
    "refined_nx",
    "registered_solvers",
    "run_to_end",
    "stability_study",
]
