"""The Solver protocol, the solver registry and the numerical problem a solver is given.

A solver is built from a :class:`Problem` (numbers) and
:class:`~fhnpde.solvers.options.SolverOptions` (typed options); it never sees the case
schema. :func:`fhnpde.driver.build_solver` does the translation from a case.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..backends import namespace
from ..grid import SheetGrid, UniformGrid
from ..models import Kinetics
from ..stimulus import AppliedCurrent
from .options import SolverOptions


@dataclass(frozen=True)
class Order:
    """Declared orders of accuracy; ``space`` is None for point models."""

    time: int
    space: int | None = None


@dataclass
class State:
    """The unknowns at one time: ``v`` and ``w`` on every node (cable) or member (point)."""

    v: Any
    w: Any
    aux: dict = field(default_factory=dict)  # extra per-output variables (see output_variables)

    def copy(self) -> State:
        return State(self.v.copy(), self.w.copy(), dict(self.aux))


@dataclass
class Problem:
    """What a case describes, in numbers: kinetics, geometry, currents, initial state.

    ``kinetics`` parameters are scalars for a cable and arrays over members for a point
    ensemble; ``members`` holds the varied inputs of an ensemble (name -> array). On a sheet
    ``grid`` is a :class:`~fhnpde.grid.SheetGrid` and ``v0``, ``w0`` are ``(ny, nx)``. It holds
    numbers only, not the case it was built from: nothing past
    :func:`fhnpde.driver.build_solver` reads the case schema.
    """

    kinetics: Kinetics
    diffusion: float
    grid: UniformGrid | SheetGrid | None
    current: AppliedCurrent
    v0: np.ndarray
    w0: np.ndarray
    members: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def is_cable(self) -> bool:
        """True for a spatial problem (a cable or a sheet): there is a grid."""
        return self.grid is not None

    @property
    def is_sheet(self) -> bool:
        return isinstance(self.grid, SheetGrid)

    @property
    def geometry(self) -> str:
        """The registry's geometry: "point", "cable" or "sheet"."""
        return "sheet" if self.is_sheet else "cable" if self.grid is not None else "point"

    @property
    def size(self) -> int:
        """Members of an ensemble, nodes along a cable, nodes of a sheet."""
        return int(self.grid.size) if self.is_sheet else int(self.v0.shape[0])


class Solver(ABC):
    """One time-stepping scheme. Never writes files, prints or sleeps.

    Subclasses set ``name``, ``geometry`` ("cable", "sheet" or "point") and ``order`` and register
    themselves with :func:`register`.
    """

    name: ClassVar[str]
    geometry: ClassVar[str]
    order: ClassVar[Order]

    def __init__(self, problem: Problem, options: SolverOptions | None = None):
        self.problem = problem
        self.options = options if options is not None else SolverOptions()
        self.backend = self.options.backend
        #: the array namespace of the state (numpy for the numpy and numba backends) and the
        #: device of its arrays (None: the namespace's default)
        self.xp = self.options.namespace or namespace(self.backend)
        self.device = self.options.device
        self.counters: dict[str, float] = {}

    def stability_limit(self, dt: float) -> float | None:
        """Largest stable dt where theory gives one (None: no limit)."""
        return None

    def exceeds_limit(self, dt: float) -> bool:
        """True when dt is beyond :meth:`stability_limit` (by more than round-off)."""
        limit = self.stability_limit(dt)
        return limit is not None and dt > limit * (1 + 1e-12)

    def limit_formula(self) -> str:
        return ""

    def asarray(self, x, copy: bool | None = None):
        """``x`` (a host array or number) as an array of the solver's namespace and device."""
        if self.device is None:
            return self.xp.asarray(x, copy=copy)
        return self.xp.asarray(x, device=self.device, copy=copy)

    def init(self) -> State:
        """The initial state, as arrays of the solver's namespace and device."""
        return State(self.asarray(self.problem.v0, copy=True),
                     self.asarray(self.problem.w0, copy=True))

    @abstractmethod
    def step(self, state: State, t: float, dt: float) -> State:
        """Advance one step of size dt from time t; return a new state."""

    def advance(self, state: State, t: float, dt: float, nsteps: int) -> State:
        """Advance ``nsteps`` steps (a scheme may do this faster than step by step)."""
        for i in range(nsteps):
            state = self.step(state, t + i * dt, dt)
        return state

    def output_state(self, state: State) -> State:
        """The state as stored: ``v``, ``w`` on the case's nodes (an adaptive scheme
        interpolates to its base grid here) and ``aux`` holding :meth:`output_variables`."""
        return state

    def output_variables(self) -> dict[str, tuple[tuple[str, ...], dict]]:
        """Extra stored variables: name -> (dims after ``time``, attrs incl. optional dtype)."""
        return {}

    def stats(self) -> dict[str, float]:
        return dict(self.counters)


class SteppedSolver(Solver):
    """A solver whose stepping is a strategy ``self.steps`` chosen once in its constructor
    (the backend seam: an :class:`ArrayPath` on ``xp``, or compiled numba kernels), with
    ``advance(state, t, dt, nsteps)``; a step is an advance of one."""

    steps: Any

    def step(self, state: State, t: float, dt: float) -> State:
        return self.steps.advance(state, t, dt, 1)

    def advance(self, state: State, t: float, dt: float, nsteps: int) -> State:
        return self.steps.advance(state, t, dt, nsteps)


class Scratch:
    """Work arrays a compiled step keeps between its calls: one array per name, made again
    only when the shape or type asked for changes. A kernel's work rows allocated afresh
    at every call cost an allocation, and from about 128 KiB a fresh mapping whose pages
    fault in as the kernel first touches them (13 rows of 3201 nodes: 81 faults a call)."""

    def __init__(self):
        self._held: dict[str, np.ndarray] = {}

    def empty(self, name: str, shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
        """The array ``name`` of ``shape`` and ``dtype``, its values those of the last use."""
        a = self._held.get(name)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = self._held[name] = np.empty(shape, dtype)
        return a

    def zeros(self, name: str, shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
        """The array ``name`` of ``shape`` and ``dtype``, set to zero."""
        a = self.empty(name, shape, dtype)
        a.fill(0)
        return a


class ArrayPath:
    """Steps of ``solver`` as array code on its namespace ``xp`` (subclasses: ``advance``)."""

    def __init__(self, solver: Solver):
        self.solver = solver
        self.xp = solver.xp


REGISTRY: dict[tuple[str, str], type[Solver]] = {}


def register(cls: type[Solver]) -> type[Solver]:
    REGISTRY[(cls.geometry, cls.name)] = cls
    return cls
