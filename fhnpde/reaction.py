"""Reaction steps: advance every node's (v, w) by the kinetics alone over one interval.

The operator-split solver (:mod:`fhnpde.solvers.split`) calls a :class:`ReactionStep` once per
time step for all nodes at once. Implementations are chosen by ``reaction.kind`` in a case
through :data:`REACTIONS`:

- ``exact``: the kinetics of :mod:`fhnpde.models` integrated by ``reaction.substeps`` steps
  of forward Euler or classical RK4 (``reaction.scheme``), the formulas of
  :mod:`fhnpde.schemes` (``euler_point``, ``rk4_point``); numba kernel (threaded for
  long cables, :mod:`fhnpde.reaction_numba`) or array code (numpy / cupy).
- ``neural``: a trained surrogate from the sibling package ``surrogates``, imported only when
  a case asks for it. Contract for that package: ``surrogates.reaction.NeuralReaction``
  implements this protocol and has ``NeuralReaction.from_spec(spec, problem, options, dt)``,
  where ``spec`` is the case's ``reaction`` section (``model``, ``runtime``), ``problem`` the
  :class:`~fhnpde.solvers.base.Problem` (kinetics, grid, currents, size), ``options`` the
  solver's options (its backend) and ``dt`` the case's step.

The applied current is held constant over the interval at the value the caller passes
(the split solver passes ``I(x, t + dt/2)``, the midpoint, which keeps Strang splitting
second order for smooth currents).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .errors import CaseError
from .schemes import euler_point, rk4_point
from .solvers.options import OptionError

KERNELS = "fhnpde.reaction_numba"


@runtime_checkable
class ReactionStep(Protocol):
    """Advances ``(v, w)`` at every node by ``dv/dt = f(v, w, I)``, ``dw/dt = g(v, w)`` alone.

    ``__call__(v, w, current, dt) -> (v_new, w_new)``: ``v``, ``w``, ``current`` are arrays of
    one value per node (numpy, or cupy for a GPU backend); ``current`` is held constant over
    the interval ``dt``. The inputs are not modified. ``order`` is the step's order of
    accuracy in dt (None when unknown, e.g. for a neural surrogate).
    """

    kind: str
    order: int | None

    def __call__(self, v: Any, w: Any, current: Any, dt: float) -> tuple[Any, Any]: ...


REACTIONS: dict[str, Callable[..., ReactionStep]] = {}


def register_reaction(kind: str):
    """Register a factory ``factory(spec, problem, options, dt) -> ReactionStep`` under
    ``kind`` (``spec``: the case's ``reaction`` section; ``options``: the solver's
    :class:`~fhnpde.solvers.options.SolverOptions`; ``dt``: the case's step, or None)."""

    def deco(factory):
        REACTIONS[kind] = factory
        return factory

    return deco


def reaction_step(spec, problem, options=None, dt: float | None = None) -> ReactionStep:
    """The ReactionStep a case's ``reaction`` section asks for (called by
    :func:`fhnpde.driver.build_solver` with the case's step ``dt``; the split solver receives
    the step built)."""
    from .solvers.options import SolverOptions

    options = options if options is not None else SolverOptions()
    try:
        factory = REACTIONS[spec.kind]
    except KeyError:
        raise CaseError(
            f"unknown reaction kind {spec.kind!r}; valid kinds: {', '.join(sorted(REACTIONS))}",
            key="reaction.kind",
        ) from None
    return factory(spec, problem, options, dt)


# --- exact kinetics ---------------------------------------------------------------------------

EXACT_SCHEMES = {"euler": (0, 1), "rk4": (1, 4)}  # name -> (kernel code, order)


class ExactReaction:
    """The kinetics integrated by ``substeps`` Euler or RK4 steps of ``dt / substeps``.

    .. math::

        y_{k+1} = \\Phi_{h}(y_k),\\quad h = \\Delta t / m,\\quad k = 0 .. m-1

    with ``Phi`` one step of :func:`~fhnpde.schemes.euler_point` or
    :func:`~fhnpde.schemes.rk4_point` (the current constant). Order 1 (Euler) or 4 (RK4).
    """

    kind = "exact"

    def __init__(self, kinetics, scheme: str = "rk4", substeps: int = 1, backend: str = "numba",
                 *, xp=None, device=None):
        from .backends import namespace

        if scheme not in EXACT_SCHEMES:
            raise OptionError(
                f"unknown scheme {scheme!r}; valid schemes: {', '.join(EXACT_SCHEMES)}",
                option="exact.scheme",
            )
        if int(substeps) < 1:
            raise OptionError(f"must be >= 1, got {substeps}", option="exact.substeps")
        self.scheme = scheme
        self.scheme_code, self.order = EXACT_SCHEMES[scheme]
        self.substeps = int(substeps)
        self.backend = backend
        self.xp = xp or namespace(backend)
        self.device = device
        self.code = kinetics.family.code
        values = [np.asarray(x, dtype=float) for x in kinetics.values]
        self.params = tuple(float(x) if x.ndim == 0 else x for x in values)
        # (4, 1) for scalar parameters, (4, n) for per-node / per-member ones (kernel layout)
        width = max((x.size for x in values), default=1)
        self.params_rows = np.ascontiguousarray(
            np.stack([np.broadcast_to(x.reshape(-1), (width,)) for x in values])
        )
        self.steps = CompiledReaction(self) if backend == "numba" else ArrayReaction(self)

    def __call__(self, v, w, current, dt):
        return self.steps(v, w, current, dt)

    def asarray(self, x):
        """``x`` as an array of the step's namespace and device."""
        if self.device is None:
            return self.xp.asarray(x)
        return self.xp.asarray(x, device=self.device)

    def __repr__(self) -> str:
        return f"ExactReaction(scheme={self.scheme!r}, substeps={self.substeps})"


class ArrayReaction:
    """The exact reaction as array code on the namespace ``xp``."""

    def __init__(self, reaction: ExactReaction):
        self.reaction = reaction
        self.xp = reaction.xp

    def __call__(self, v, w, current, dt):
        r = self.reaction
        p = tuple(x if isinstance(x, float) else r.asarray(x) for x in r.params)
        current = r.asarray(current)
        h = dt / r.substeps
        for _ in range(r.substeps):
            if r.scheme_code == 0:
                v, w = euler_point(r.code, v, w, current, p, h)
            else:
                v, w = rk4_point(r.code, v, w, current, current, current, p, h)
        return v, w


class CompiledReaction:
    """The exact reaction in a numba kernel (:mod:`fhnpde.reaction_numba`), threaded for
    long cables."""

    def __init__(self, reaction: ExactReaction):
        from .backends import kernels

        self.reaction = reaction
        self.kernels = kernels(KERNELS)

    def __call__(self, v, w, current, dt):
        r = self.reaction
        v = np.ascontiguousarray(v, dtype=np.float64)
        w = np.ascontiguousarray(w, dtype=np.float64)
        current = np.ascontiguousarray(np.broadcast_to(current, v.shape), dtype=np.float64)
        out_v, out_w = np.empty_like(v), np.empty_like(w)
        self.kernels.reaction_advance(r.code, r.scheme_code, v, w, current, r.params_rows,
                                      float(dt), r.substeps, out_v, out_w)
        return out_v, out_w


@register_reaction("exact")
def exact_reaction(spec, problem, options, dt=None):
    return ExactReaction(problem.kinetics, options.exact.scheme, options.exact.substeps,
                         options.backend, xp=options.namespace, device=options.device)


# --- neural surrogates (package `surrogates`, imported only here) ---------------------------------


@register_reaction("neural")
def neural_reaction(spec, problem, options, dt=None):
    try:
        module = importlib.import_module("surrogates.reaction")
    except ModuleNotFoundError as exc:
        what = {
            "surrogates": "the surrogates package is not installed",
            "surrogates.reaction": "surrogates.reaction is missing",
        }.get(exc.name, f"it cannot import {exc.name!r}")
        raise CaseError(
            f"'neural' needs the surrogates package's NeuralReaction, but {what}; install it "
            "with pip install -e \".[surrogates]\" or use reaction.kind: exact",
            key="reaction.kind",
        ) from None
    factory = getattr(getattr(module, "NeuralReaction", None), "from_spec", None)
    if factory is None:
        raise CaseError(
            "'neural' needs surrogates.reaction.NeuralReaction.from_spec(spec, problem, "
            "options, dt), which this version of surrogates does not provide",
            key="reaction.kind",
        )
    return factory(spec, problem, options, dt)


__all__ = ["REACTIONS", "ExactReaction", "ReactionStep", "reaction_step", "register_reaction"]
