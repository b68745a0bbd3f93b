"""Typed options of the solvers: what a solver is told besides the :class:`Problem`.

A solver never reads the case schema. :func:`fhnpde.driver.build_solver` translates a
case's ``solver`` and ``reaction`` sections into these dataclasses, and an
:class:`OptionError` a solver raises names the option (``"tridiagonal"``,
``"newton.rtol"``, ...), which ``build_solver`` maps back to the case's key path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import CaseError


class OptionError(CaseError):
    """An option a solver cannot work with; ``option`` names it (a field path of
    :class:`SolverOptions`, e.g. ``"backend"`` or ``"exact.scheme"``, or ``"dt"``).

    A :class:`~fhnpde.errors.CaseError` without a key (the user caused it); ``build_solver``
    re-raises it with the case's key path."""

    def __init__(self, message: str, *, option: str):
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class NewtonOptions:
    """Newton's method of the Crank–Nicolson solvers (see :mod:`fhnpde.solvers.crank_nicolson`).

    ``rtol``: stop when the estimated error left is below ``rtol * max(1, max|v|)``;
    ``max_iter``: iterations before the step fails; ``predictor``: ``"extrapolate"`` (start
    from ``2 v^n - v^{n-1}``) or ``"previous"`` (from ``v^n``); ``stop``:
    ``"error-estimate"`` (quadratic estimate of the error left) or ``"update"`` (the update).
    """

    rtol: float = 1e-8
    max_iter: int = 20
    predictor: str = "extrapolate"
    stop: str = "error-estimate"

    @property
    def extrapolate(self) -> bool:
        return self.predictor == "extrapolate"

    @property
    def quadratic(self) -> bool:
        return self.stop == "error-estimate"


@dataclass(frozen=True)
class AdaptiveOptions:
    """Refinement rules of the adaptive solver, in length and time units (see
    :mod:`fhnpde.solvers.adaptive`)."""

    regrid_every: float = 0.2
    coarse_dx: float = 8.0
    wave_dx: float = 2.0
    fine_dx: float = 0.25
    vx_threshold: float = 0.01
    vt_threshold: float = 0.005
    front_radius: float = 0.5


@dataclass(frozen=True)
class ReactionOptions:
    """The exact reaction step: ``substeps`` steps of ``scheme`` (``"euler"`` or ``"rk4"``)."""

    scheme: str = "rk4"
    substeps: int = 1


@dataclass(frozen=True)
class SolverOptions:
    """Everything a solver may be told besides the problem.

    ``backend``: ``"numpy"``, ``"numba"``, ``"cupy"`` or ``"torch"``; ``tridiagonal``: the
    method of :func:`fhnpde.tridiagonal.solve`; ``reaction``: the split solver's
    :class:`~fhnpde.reaction.ReactionStep` (None: the exact one of ``exact``);
    ``namespace``/``device``: where the array path computes (None: the backend's namespace,
    its default device).
    """

    backend: str = "numpy"
    tridiagonal: str = "thomas"
    newton: NewtonOptions = field(default_factory=NewtonOptions)
    adaptive: AdaptiveOptions = field(default_factory=AdaptiveOptions)
    exact: ReactionOptions = field(default_factory=ReactionOptions)
    reaction: Any = None
    #: the split solver's diffusion substep: "cn" (Crank–Nicolson, cables) or "adi"
    #: (Peaceman–Rachford, sheets); None: the geometry's own
    diffusion: str | None = None
    #: the split solver: merge the diffusion half-steps of consecutive steps of one
    #: ``advance`` into one diffusion step of dt (see :class:`~fhnpde.solvers.split.StrangSplit`)
    merge_diffusion: bool = False
    #: the explicit solver's stencil: order 2 (three-point; five-point on a sheet) or 4
    space_order: int = 2
    #: the array namespace and device of the array path (None: the backend's, e.g. numpy;
    #: the tests set ``array_api_strict`` on a non-CPU device here)
    namespace: Any = None
    device: Any = None


#: tridiagonal methods that run on arrays of any namespace (the others need numpy arrays)
ARRAY_METHODS = ("cyclic-reduction",)


def tridiagonal_method(method: str, backend: str, xp=None, load: bool = True) -> str:
    """The tridiagonal method, refused where it cannot run on the arrays of the backend (or
    of the namespace ``xp``, when it is not numpy). A method for numpy arrays is loaded here,
    while the solver is built (``thomas`` imports numba), so that its import is start-up
    time, not the first step's; ``load=False`` for a solver that will not call it (a
    compiled kernel with its own sweep, which may load without numba: fhnpde.native)."""
    import numpy as np

    on_host = backend in ("numpy", "numba") and (xp is None or xp is np)
    if not on_host and method not in ARRAY_METHODS:
        raise OptionError(
            f"{method!r} runs on numpy arrays; with backend {backend} use cyclic-reduction",
            option="tridiagonal",
        )
    if on_host and load:
        from ..tridiagonal.api import load_method

        try:
            load_method(method)
        except RuntimeError as exc:  # a package it needs is missing
            raise OptionError(f"{exc}; choose another method", option="tridiagonal") from None
    return method


#: the split solver's diffusion substeps by geometry, the first the default
DIFFUSION_SCHEMES = {"cable": ("cn",), "sheet": ("adi",)}


def diffusion_scheme(name: str | None, geometry: str) -> str:
    """The split solver's diffusion substep on ``geometry`` (None: its default), or an
    OptionError (option ``diffusion``) saying which one fits."""
    valid = DIFFUSION_SCHEMES[geometry]
    if name is None:
        return valid[0]
    if name in valid:
        return name
    if name == "adi":
        why = "alternating-direction implicit needs a sheet (domain.length, domain.nx as pairs)"
    elif name == "cn":
        why = "Crank-Nicolson in 2-D is not implemented (its matrix is not tridiagonal)"
    else:
        why = "it is not a diffusion substep"
    raise OptionError(f"{name!r} cannot be used on a {geometry}: {why}; use "
                      f"{' or '.join(valid)}", option="diffusion")


__all__ = ["ARRAY_METHODS", "DIFFUSION_SCHEMES", "diffusion_scheme", "tridiagonal_method",
           "AdaptiveOptions", "NewtonOptions", "OptionError", "ReactionOptions", "SolverOptions"]
