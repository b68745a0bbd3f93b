"""The case schema of DESIGN §5: what a case file may hold, checked key by key.

Every key is checked before anything runs; unknown keys are errors. A validator that finds a
problem below its own location raises :func:`fhnpde.errors.keyed` with the key path;
:mod:`fhnpde.loading` turns pydantic's errors into one :class:`~fhnpde.errors.CaseError`
naming the file, the key path and what is wrong. Reading files and ``--set`` overrides live
in :mod:`fhnpde.loading`; :mod:`fhnpde.case` re-exports both.
"""

from __future__ import annotations

import copy
import math
import sys
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from . import grid, models
from .errors import CaseError, KeyedError, key_part, quote
from .keys import set_key_path, validation_error_to_case_error

POINT_METHODS = ("euler", "rk4", "crank-nicolson")
CABLE_METHODS = ("explicit", "adaptive", "crank-nicolson", "split", "staggered-cn", "sdirk3")
SHEET_METHODS = ("explicit", "split")
BACKENDS = ("numpy", "numba", "cupy", "torch")
TRIDIAGONAL_METHODS = ("thomas", "cyclic-reduction", "scipy")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=False)


PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
# [start, end] pairs are YAML lists of two numbers.
Pair = Annotated[list[FiniteFloat], Field(min_length=2, max_length=2)]
OpenPair = Annotated[list[FiniteFloat | None], Field(min_length=2, max_length=2)]

# Numbers derived from a case (steps, spacings, limits) must be finite normal floats, and
# counts must be exact in a float and fit the int64 of the compiled kernels.
TINY = sys.float_info.min  # the smallest normal float, 2.2e-308
MAX_COUNT = 2**53  # the largest count of steps or nodes a float still counts exactly
# dx^2 and 1/dx^2 are normal floats exactly when dx lies in [DX_MIN, DX_MAX].
DX_MIN, DX_MAX = grid.DX_MIN, grid.DX_MAX
Count = Annotated[int, Field(ge=1, le=MAX_COUNT)]
NodeCount = Annotated[int, Field(ge=3, le=MAX_COUNT)]
# a sheet's lengths and node counts: [along x, along y]
PositivePair = Annotated[list[PositiveFloat], Field(min_length=2, max_length=2)]
NodePair = Annotated[list[NodeCount], Field(min_length=2, max_length=2)]
# Beyond this D dt / dx^2, 1 + D dt / dx^2 (the diagonal of the Crank–Nicolson and split
# diffusion matrices) no longer holds its 1: the Neumann matrix factorises to a zero pivot.
MAX_DIFFUSION_NUMBER = 2.0**52


def _is_normal(x: float) -> bool:
    """True for a finite float that is 0 or at least the smallest normal float in size."""
    return math.isfinite(x) and (x == 0.0 or abs(x) >= TINY)


def _range_width(key: str, low: float, high: float) -> None:
    """Refuse a range [low, high] whose width high - low is beyond a float (sampling uses it)."""
    if not math.isfinite(high - low):
        raise KeyedError(key, f"the range [{low:g}, {high:g}] is wider than a float holds "
                          "(high - low overflows); narrow it")


class ModelSpec(_Strict):
    kinetics: str = "nagumo"
    params: dict[str, FiniteFloat] = Field(default_factory=dict)
    diffusion: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 1.0

    @field_validator("kinetics")
    @classmethod
    def _known_kinetics(cls, v: str) -> str:
        if v not in models.FAMILIES:
            raise ValueError(
                f"unknown kinetics {quote(v)}; valid kinetics: {', '.join(models.FAMILIES)}"
            )
        return v

    @model_validator(mode="after")
    def _valid_params(self) -> ModelSpec:
        family = models.family(self.kinetics)
        unknown = sorted(set(self.params) - set(family.params))
        if unknown:  # named here, quoted: a user's key may be long or hold odd characters
            raise KeyedError(
                "params", f"unknown parameter(s) {', '.join(quote(k) for k in unknown[:3])} "
                f"for kinetics {self.kinetics!r}; its parameters are {', '.join(family.params)}"
            )
        try:
            self.params = models.check_params(self.kinetics, self.params)
        except ValueError as exc:
            raise KeyedError("params", str(exc)) from None
        except ArithmeticError:  # also numpy's FloatingPointError
            raise KeyedError(
                "params", "these values overflow the kinetics' checks; use values nearer 1"
            ) from None
        if not _is_normal(self.diffusion):
            raise KeyedError("diffusion", f"{self.diffusion!r} is below the smallest normal "
                              f"float ({TINY:.3g}); use 0 for no diffusion")
        return self


class DomainSpec(_Strict):
    """A cable (``length``, ``nx`` numbers) or a sheet (both pairs ``[x, y]``, DESIGN §9)."""

    length: PositiveFloat | PositivePair
    nx: NodeCount | NodePair
    boundary: Literal["neumann", "periodic"] = "neumann"
    boundary_order: Literal[1, 2] = Field(
        default=2,
        description=(
            "Order of the no-flux boundary: 2 (mirror node, the default) or 1 (one-sided "
            "difference, a first-order treatment kept to demonstrate its loss of accuracy)."
        ),
    )

    @property
    def is_sheet(self) -> bool:
        return isinstance(self.nx, list)

    @property
    def lengths(self) -> tuple[float, ...]:
        """(length,) of a cable, (along x, along y) of a sheet."""
        return tuple(self.length) if self.is_sheet else (self.length,)

    @property
    def counts(self) -> tuple[int, ...]:
        """(nx,) of a cable, (nodes along x, nodes along y) of a sheet."""
        return tuple(self.nx) if self.is_sheet else (self.nx,)

    @property
    def spacings(self) -> tuple[float, ...]:
        """The node spacing of each direction (as :attr:`fhnpde.grid.UniformGrid.dx`)."""
        ring = self.boundary == "periodic"
        return tuple(length / (n if ring else n - 1)
                     for length, n in zip(self.lengths, self.counts, strict=True))

    @property
    def dx(self) -> float:
        """The node spacing along x (as :attr:`fhnpde.grid.UniformGrid.dx`)."""
        return self.spacings[0]

    @property
    def size(self) -> int:
        """Nodes of the grid (of a sheet: nx * ny)."""
        return math.prod(self.counts)

    @model_validator(mode="after")
    def _representable_spacing(self) -> DomainSpec:
        if isinstance(self.length, list) != self.is_sheet:
            pair, number = ("length", "nx") if isinstance(self.length, list) else ("nx", "length")
            raise KeyedError(
                number, f"must be a pair [x, y] like {pair} (pairs make a sheet), or make "
                f"{pair} a number for a cable"
            )
        for axis, (length, n, dx) in enumerate(
                zip(self.lengths, self.counts, self.spacings, strict=True)):
            if not DX_MIN <= dx <= DX_MAX:
                formula = "length / nx" if self.boundary == "periodic" else "length / (nx - 1)"
                name = ("dx", "dy")[axis] if self.is_sheet else "dx"
                raise KeyedError(
                    f"length.{axis}" if self.is_sheet else "length",
                    f"{length:g} with nx = {n} gives the node spacing {name} = {formula} = "
                    f"{dx:.3g}; the schemes divide by {name}^2, which a float holds only for "
                    f"{name} between {DX_MIN:.3g} and {DX_MAX:.3g}: change domain.length or "
                    "domain.nx"
                )
        return self


class GaussianProfile(_Strict):
    """``base + amplitude exp(-|r - center|^2 / width^2)``. On a sheet ``center`` is
    ``[x, y]`` (a round or, with ``width: [wx, wy]``, elliptic pulse) or a number: a stripe
    across all y, the cable's pulse on every row."""

    kind: Literal["gaussian"]
    center: FiniteFloat | Pair
    width: PositiveFloat | PositivePair
    amplitude: FiniteFloat = 1.0
    base: FiniteFloat = 0.0

    @model_validator(mode="after")
    def _finite_peak(self) -> GaussianProfile:
        if isinstance(self.width, list) and not isinstance(self.center, list):
            raise KeyedError("width", "a pair [wx, wy] needs center as a pair [x, y]; give one "
                              "width for a stripe across y")
        _finite_sum("amplitude", self.base, self.amplitude)
        return self

    def sheet_keys(self) -> list[str]:
        """Keys given that only a sheet understands (a y extent)."""
        return [k for k in ("center", "width") if isinstance(getattr(self, k), list)]


class BoxProfile(_Strict):
    """``base + amplitude`` on ``x in [x0, x1]`` (and on a sheet ``y in [y0, y1]``; without
    ``y`` all y), ``base`` elsewhere."""

    kind: Literal["box"]
    x: Pair
    y: Pair | None = None
    amplitude: FiniteFloat = 1.0
    base: FiniteFloat = 0.0

    @model_validator(mode="after")
    def _ordered(self) -> BoxProfile:
        _ordered_ranges(self, "x", "y")
        _finite_sum("amplitude", self.base, self.amplitude)
        return self

    def sheet_keys(self) -> list[str]:
        return ["y"] if self.y is not None else []

    @model_serializer(mode="wrap")
    def _dump_without_unset_y(self, handler):
        return _without_none_y(handler(self))


def _without_none_y(data):
    """A box's dump without ``y: null``: a cable case dumps (and fingerprints) as it did
    before sheets existed."""
    if isinstance(data, dict) and data.get("y", 0) is None:
        data.pop("y")
    return data


def _ordered_ranges(spec, *keys: str) -> None:
    for key in keys:
        pair = getattr(spec, key)
        if pair is not None and pair[1] < pair[0]:
            raise KeyedError(key, f"must be [start, end] with start <= end, got {list(pair)}")


def _finite_sum(key: str, base: float, amplitude: float) -> None:
    if not math.isfinite(base + amplitude):
        raise KeyedError(key, f"base + amplitude = {base:g} + {amplitude:g} overflows a float; "
                          "lower one of them")


Profile = Annotated[GaussianProfile | BoxProfile, Field(discriminator="kind")]


class InitialSpec(_Strict):
    v: FiniteFloat | Profile = 0.0
    w: FiniteFloat | Profile = 0.0


class BoxStimulus(_Strict):
    """Applied current ``amplitude`` on x in [x0, x1] (inclusive; on a sheet also y in
    [y0, y1], all y without ``y``) for t in [t0, t1)."""

    kind: Literal["box"] = "box"
    x: Pair | None = None
    y: Pair | None = None
    t: OpenPair = Field(default_factory=lambda: [0.0, None])
    amplitude: FiniteFloat

    @model_serializer(mode="wrap")
    def _dump_without_unset_y(self, handler):
        return _without_none_y(handler(self))

    @model_validator(mode="after")
    def _ordered(self) -> BoxStimulus:
        _ordered_ranges(self, "x", "y")
        if self.t[0] is None:
            raise KeyedError("t", "needs a start time: [t0, t1] or [t0, null]")
        if self.t[1] is not None and self.t[1] < self.t[0]:
            raise KeyedError("t", f"must be [start, end] with start <= end, got {list(self.t)}")
        return self


class TimeSpec(_Strict):
    t_end: PositiveFloat
    dt: PositiveFloat
    save_every: PositiveFloat | None = None

    @model_validator(mode="after")
    def _commensurate(self) -> TimeSpec:
        save = self.save_every if self.save_every is not None else self.t_end
        if self.dt < TINY:
            raise KeyedError("dt", f"{self.dt!r} is below the smallest normal float "
                              f"({TINY:.3g}); use a larger dt")
        if self.dt > save:
            raise KeyedError("dt", f"must be <= save_every ({save}), got {self.dt}")
        for key, val in (("t_end", self.t_end), ("save_every", save)):
            n = val / self.dt
            if not n <= MAX_COUNT:  # also refuses n = inf
                raise KeyedError(
                    key, f"{val:g} / dt ({self.dt:g}) = {n:.3g} steps, more than the 2**53 "
                    f"({MAX_COUNT:.3g}) steps a float counts exactly; use a larger time.dt or "
                    f"a smaller time.{key}"
                )
        for key, val in (("save_every", save), ("t_end", self.t_end)):
            n = val / self.dt
            if abs(n - round(n)) > 1e-6 * max(1.0, n):
                raise KeyedError(
                    key, f"{val} is not a whole number of steps of dt = {self.dt}; "
                    "choose dt that divides it"
                )
        return self

    @property
    def steps_per_output(self) -> int:
        return round((self.save_every or self.t_end) / self.dt)

    @property
    def n_steps(self) -> int:
        return round(self.t_end / self.dt)


class NewtonSpec(_Strict):
    """Newton's method inside the Crank–Nicolson steps (see
    :mod:`fhnpde.solvers.crank_nicolson`)."""

    rtol: PositiveFloat = Field(
        default=1e-8,
        description=(
            "Stop when the error left in each step, estimated from Newton's quadratic "
            "convergence (K |update|^2, K measured in the run), is below rtol * max(1, max|v|)."
        ),
    )
    max_iter: Count = 20
    stop: Literal["error-estimate", "update"] = Field(
        default="error-estimate",
        description=(
            "What is compared with rtol: the error left, estimated as K |update|^2 "
            "(error-estimate), or the last update itself (update: one more iteration per "
            "step, error left of order rtol^2)."
        ),
    )
    predictor: Literal["extrapolate", "previous"] = Field(
        default="extrapolate",
        description=(
            "Starting guess of each step: 2 v(n) - v(n-1) (extrapolate) or v(n) (previous)."
        ),
    )


class AdaptiveSpec(_Strict):
    """Refinement rules of the adaptive-grid solver (``solver.method: adaptive``).

    Spacings are lengths, rounded down to a power-of-two multiple (at least 1) of the
    base spacing ``domain.length / (nx - 1)``; a spacing at or below the base spacing
    activates every base node of its zone (``coarse_dx`` that small activates the whole
    base grid, which makes the scheme the uniform explicit one). The defaults are tuned on
    ``cases/divergent_adaptive.yaml``. See :mod:`fhnpde.solvers.adaptive`.
    """

    regrid_every: PositiveFloat = Field(
        default=0.2,
        description=(
            "Simulated time between choices of the active set, a whole number of steps of "
            "time.dt (so refining dt keeps the regrid times); a front must not outrun "
            "front_radius in it (speed * regrid_every << front_radius)."
        ),
    )
    coarse_dx: PositiveFloat = Field(
        default=8.0, description="Background spacing laid over the whole cable."
    )
    wave_dx: PositiveFloat = Field(
        default=2.0, description="Spacing where |v_x| > vx_threshold (where the waves are)."
    )
    fine_dx: PositiveFloat = Field(
        default=0.25,
        description="Spacing where |v_t| > vt_threshold (where the dynamics are).",
    )
    vx_threshold: PositiveFloat = Field(
        default=0.01, description="|v_x| above which wave_dx is used (and fronts are sought)."
    )
    vt_threshold: PositiveFloat = Field(
        default=0.005,
        description="|v_t| above which fine_dx is used (and fronts are sought).",
    )
    front_radius: Annotated[float, Field(ge=0, allow_inf_nan=False)] = Field(
        default=0.5,
        description=(
            "Distance around each inflection point of v (sign change of v_xx where "
            "|v_x| > vx_threshold and |v_t| > vt_threshold) within which every base node "
            "is active."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _removed_every(cls, data: Any) -> Any:
        if isinstance(data, dict) and "every" in data:
            raise KeyedError(
                "every", "was removed: the active set is now chosen on an interval of simulated "
                "time; replace every: N by regrid_every: N * time.dt (e.g. every: 128 at "
                "dt = 1/640 is regrid_every: 0.2)"
            )
        return data


def _one_of(value: str, valid, what: str, plural: str) -> str:
    """``value`` if it is one of ``valid``; else the error naming the valid ones."""
    if value not in valid:
        raise ValueError(f"unknown {what} {quote(value)}; valid {plural}: {', '.join(valid)}")
    return value


class SolverSpec(_Strict):
    method: str
    backend: str = "numba"
    tridiagonal: str = "thomas"
    # split's diffusion substep: cn (cable default) | adi (sheet); left out of dumps when
    # unset, so a case that does not name it dumps (and fingerprints) as before the key existed
    diffusion: str | None = Field(default=None, exclude_if=lambda v: v is None)
    force: bool = False
    newton: NewtonSpec = Field(default_factory=NewtonSpec)
    adaptive: AdaptiveSpec = Field(default_factory=AdaptiveSpec)

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        return _one_of(v, sorted(set(POINT_METHODS) | set(CABLE_METHODS)), "solver", "solvers")

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        return _one_of(v, BACKENDS, "backend", "backends")

    @field_validator("tridiagonal")
    @classmethod
    def _known_tridiagonal(cls, v: str) -> str:
        return _one_of(v, TRIDIAGONAL_METHODS, "tridiagonal method", "methods")

    @field_validator("diffusion")
    @classmethod
    def _known_diffusion(cls, v: str | None) -> str | None:
        return v if v is None else _one_of(v, ("cn", "adi"), "diffusion substep", "substeps")

    @model_validator(mode="after")
    def _diffusion_only_for_split(self) -> SolverSpec:
        if self.diffusion is not None and self.method != "split":
            raise KeyedError("diffusion", f"{self.diffusion!r} is the split solver's diffusion "
                             f"substep, but the method is {self.method}; remove it or use "
                             "method: split")
        return self


class ExactReactionSpec(_Strict):
    kind: Literal["exact"] = "exact"
    scheme: Literal["euler", "rk4"] = "rk4"
    substeps: Count = 1


class NeuralReactionSpec(_Strict):
    kind: Literal["neural"]
    model: str
    runtime: str = "onnxruntime"


def _reaction_kind(value: Any) -> str:
    """``kind`` may be left out: a reaction mapping without it is the exact reaction."""
    if isinstance(value, dict):
        return value.get("kind", "exact")
    return getattr(value, "kind", "exact")


ReactionSpec = Annotated[
    Annotated[ExactReactionSpec, Tag("exact")] | Annotated[NeuralReactionSpec, Tag("neural")],
    Discriminator(_reaction_kind),
]


def grid_size(vary: dict[str, Any], points: int) -> int:
    """Members of a grid over ``vary`` (an ensemble's or a sweep's): a value list gives its
    values, a range [low, high] ``points`` values, a degenerate range [x, x] one."""
    return math.prod(1 if isinstance(spec, list) and spec[0] == spec[1]
                     else points if isinstance(spec, list) else len(spec.values)
                     for spec in vary.values())


class ValueList(_Strict):
    values: list[FiniteFloat] = Field(min_length=1)


class EnsembleSpec(_Strict):
    size: Count | None = None
    sample: Literal["latin-hypercube", "uniform", "grid"] = "latin-hypercube"
    seed: Annotated[int, Field(ge=0, le=2**64 - 1)] = 0
    points: Count = 11
    vary: dict[str, Pair | ValueList] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ranges(self) -> EnsembleSpec:
        for key, spec in self.vary.items():
            if isinstance(spec, list) and spec[1] < spec[0]:
                raise KeyedError(
                    f"vary.{key_part(key)}",
                    f"must be [low, high] with low <= high, got {list(spec)}",
                )
            if isinstance(spec, list):
                _range_width(f"vary.{key_part(key)}", *spec)
        if self.sample != "grid" and self.size is None:
            raise KeyedError("size", f"is required for sample: {self.sample}")
        if self.sample == "grid":
            members = grid_size(self.vary, self.points)
            if members > MAX_COUNT:
                raise KeyedError("points", f"the grid has {members:.3g} members, more than "
                                  f"2**53 ({MAX_COUNT:.3g}); use fewer points or values")
        return self


class OutputSpec(_Strict):
    path: str | None = None
    chunk_mb: Annotated[float, Field(gt=0, le=2048, allow_inf_nan=False)] = Field(
        default=4.0,
        description="Megabytes per stored chunk; at most 2048 (2 GiB): a chunk is buffered in "
        "memory while it fills and is written in one piece.",
    )


class Case(_Strict):
    """A validated case file."""

    name: str
    description: str = ""
    model: ModelSpec = Field(default_factory=ModelSpec)
    domain: DomainSpec | None = None
    initial: InitialSpec = Field(default_factory=InitialSpec)
    stimuli: list[BoxStimulus] = Field(default_factory=list)
    time: TimeSpec
    solver: SolverSpec
    reaction: ReactionSpec = Field(default_factory=ExactReactionSpec)
    ensemble: EnsembleSpec | None = None
    output: OutputSpec = Field(default_factory=OutputSpec)

    @property
    def is_cable(self) -> bool:
        """True for a spatial case (a cable or a sheet): there is a domain."""
        return self.domain is not None

    @property
    def is_sheet(self) -> bool:
        return self.domain is not None and self.domain.is_sheet

    @property
    def geometry(self) -> str:
        """The solver registry's geometry: "point", "cable" or "sheet"."""
        return "sheet" if self.is_sheet else "cable" if self.domain is not None else "point"

    @model_validator(mode="after")
    def _consistent(self) -> Case:
        method = self.solver.method
        if self.domain is not None:
            geometry = self.geometry
            methods = SHEET_METHODS if self.is_sheet else CABLE_METHODS
            if method not in methods:
                what = ("does not solve sheets" if method in CABLE_METHODS
                        else "solves point models")
                raise KeyedError(
                    "solver.method",
                    f"{method!r} {what}; for a {geometry} use one of {', '.join(methods)}",
                )
            if self.ensemble is not None:
                raise KeyedError("ensemble", "is for point (0-D) cases; remove it or the domain")
            for i, stim in enumerate(self.stimuli):
                if stim.x is None:
                    raise KeyedError(f"stimuli.{i}.x",
                                     f"is required on a {geometry}: give [x0, x1]")
            if not self.is_sheet:
                self._check_no_y()
            self._check_diffusion()
            if method == "adaptive":
                self._check_adaptive()
        else:
            if method not in POINT_METHODS:
                raise KeyedError(
                    "solver.method",
                    f"{method!r} needs a domain (a cable); for a point case use one of "
                    f"{', '.join(POINT_METHODS)}",
                )
            for key in ("v", "w"):
                if not isinstance(getattr(self.initial, key), float):
                    raise KeyedError(
                        f"initial.{key}", "must be a number for a point case (no domain)"
                    )
            for i, stim in enumerate(self.stimuli):
                for key in ("x", "y"):
                    if getattr(stim, key) is not None:
                        raise KeyedError(f"stimuli.{i}.{key}",
                                         "has no meaning without a domain; remove it")
            if self.ensemble is not None:
                allowed = {"I", "v0", "w0", *models.family(self.model.kinetics).params}
                for key in self.ensemble.vary:
                    if key not in allowed:
                        raise KeyedError(
                            f"ensemble.vary.{key_part(key)}",
                            f"cannot be varied; valid keys: {', '.join(sorted(allowed))}",
                        )
                    if key in models.family(self.model.kinetics).params:
                        try:
                            spec = self.ensemble.vary[key]
                            ends = spec.values if isinstance(spec, ValueList) else list(spec)
                            for val in ends:
                                models.check_params(
                                    self.model.kinetics, {**self.model.params, key: val}
                                )
                        except ValueError as exc:
                            raise KeyedError(f"ensemble.vary.{key}", str(exc)) from None
                        except ArithmeticError:
                            raise KeyedError(
                                f"ensemble.vary.{key}", "these values overflow the kinetics' "
                                "checks; use values nearer 1"
                            ) from None
        if self.reaction.kind == "neural" and method != "split":
            raise KeyedError("reaction.kind", "neural reactions need solver.method: split")
        if self.reaction.kind == "exact" and self.time.dt / self.reaction.substeps < TINY:
            raise KeyedError(
                "reaction.substeps", f"{self.reaction.substeps} makes the substep dt / substeps "
                f"= {self.time.dt / self.reaction.substeps:.3g} smaller than the smallest normal "
                f"float ({TINY:.3g}); use fewer substeps"
            )
        self._check_current()
        return self

    def _check_no_y(self) -> None:
        """A y extent (a ``y`` range, a pair ``center`` or ``width``) only means something
        on a sheet."""
        fix = "remove it, or make the domain a sheet (domain.length and domain.nx as pairs)"
        for var in ("v", "w"):
            spec = getattr(self.initial, var)
            for key in getattr(spec, "sheet_keys", list)():
                raise KeyedError(f"initial.{var}.{key}",
                                 f"{'is a y range' if key == 'y' else 'is a pair [x, y]'} on a "
                                 f"cable; {fix}")
        for i, stim in enumerate(self.stimuli):
            if stim.y is not None:
                raise KeyedError(f"stimuli.{i}.y", f"is a y range on a cable; {fix}")

    def _check_diffusion(self) -> None:
        """D / dx^2 and the explicit limit dx^2 / (2 D) must be normal floats, and the
        diffusion number D dt / dx^2 at most :data:`MAX_DIFFUSION_NUMBER` (on a sheet, with
        the smaller of dx and dy)."""
        D = self.model.diffusion
        if D == 0.0:
            return
        dx = min(self.domain.spacings)
        dx2 = dx * dx
        rate, limit = D / dx2, dx2 / (2.0 * D)
        if not (_is_normal(rate) and _is_normal(limit)):
            raise KeyedError(
                "model.diffusion", f"{D:g} on a grid of dx = {dx:.3g} gives D / dx^2 = "
                f"{rate:.3g} and the explicit stability limit dx^2 / (2 D) = {limit:.3g}, "
                f"beyond what a float holds; use a diffusion between {max(TINY, dx2 * TINY):.3g} "
                f"and {dx2 / (2 * TINY):.3g} for this grid, or 0 for none"
            )
        number = rate * self.time.dt
        if not number <= MAX_DIFFUSION_NUMBER:  # also refuses inf
            raise KeyedError(
                "time.dt", f"{self.time.dt:g} gives the diffusion number D dt / dx^2 = "
                f"{number:.3g} (D = {D:g}, dx = {dx:.3g}); above 2**52 "
                f"({MAX_DIFFUSION_NUMBER:.3g}) the 1 in the implicit schemes' diagonal "
                "1 + D dt / dx^2 is lost to rounding and the system is singular: lower time.dt "
                "or model.diffusion, or use fewer domain.nx"
            )

    def _check_adaptive(self) -> None:
        """Every spacing and radius of the refinement rules must be a countable number of
        base spacings: the solver converts the ratios to integer strides."""
        spec, dx = self.solver.adaptive, self.domain.dx
        for key in ("coarse_dx", "wave_dx", "fine_dx", "front_radius"):
            value = getattr(spec, key)
            if not value / dx <= MAX_COUNT / 2:
                raise KeyedError(
                    f"solver.adaptive.{key}", f"{value:g} is {value / dx:.3g} base spacings dx = "
                    f"{dx:.3g}, more than the 2**52 the solver counts; a length above "
                    f"domain.length ({self.domain.length:g}) acts as domain.length, so give at "
                    "most that"
                )
        # Regrid times fixed in simulated time (see fhnpde.solvers.adaptive): forced runs
        # (the stability study's arbitrary dt) regrid at the first step past each multiple.
        every, dt = spec.regrid_every, self.time.dt
        steps = every / dt
        if not steps <= MAX_COUNT:  # also refuses n = inf
            raise KeyedError(
                "solver.adaptive.regrid_every", f"{every:g} / time.dt ({dt:g}) = {steps:.3g} "
                f"steps, more than the 2**53 ({MAX_COUNT:.3g}) steps a float counts exactly; an "
                f"interval above time.t_end never regrids, so give at most {self.time.t_end:g}"
            )
        if not self.solver.force and (
                round(steps) < 1 or abs(steps - round(steps)) > 1e-6 * max(1.0, steps)):
            raise KeyedError(
                "solver.adaptive.regrid_every", f"{every:g} is not a whole number of steps of "
                f"time.dt = {dt:g}; give a multiple of time.dt (e.g. "
                f"{max(1, round(steps)) * dt:g}) so that the regrid times stay put when dt is "
                "refined"
            )

    def _check_current(self) -> None:
        """The applied current is a sum of the active boxes' amplitudes (and of a point
        ensemble's varied I): the sum of their sizes must stay finite."""
        total = sum(abs(stim.amplitude) for stim in self.stimuli)
        if self.ensemble is not None and "I" in self.ensemble.vary:
            spec = self.ensemble.vary["I"]
            ends = spec.values if isinstance(spec, ValueList) else list(spec)
            total += max(abs(v) for v in ends)
        if not math.isfinite(total):
            raise KeyedError(
                "stimuli", "the applied currents add up to more than a float holds (the sum "
                "of the amplitudes' sizes and of the largest |I| overflows); lower them"
            )

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> Case:
        """A validated case from a mapping of case keys (what a case file holds, as Python
        values); CaseError naming the key path on bad input."""
        if not isinstance(data, dict):
            data = dict(data) if hasattr(data, "keys") else data
        if not isinstance(data, dict):
            raise CaseError(f"a case must be a mapping of keys, got {type(data).__name__}",
                            source=source)
        try:
            case = cls.model_validate(copy.deepcopy(data))
        except ValidationError as exc:
            raise validation_error_to_case_error(exc, source) from None
        if case.output.path is None:
            case.output.path = f"runs/{case.name}.zarr"
        return case

    def with_changes(self, changes: Any) -> Case:
        """A new case with ``{"key.path": value, ...}`` applied (the key paths ``--set``
        takes, values as Python objects), validated as a whole; this case is unchanged."""
        if not hasattr(changes, "items"):
            raise CaseError(f"with_changes takes a mapping of key paths to values, got "
                            f"{type(changes).__name__}")
        data = self.model_dump(mode="json")
        for key, value in changes.items():
            if not isinstance(key, str) or not key or any(not k for k in key.split(".")):
                raise CaseError(f"with_changes: {quote(key)} is not a key path like 'time.dt'")
            set_key_path(data, key, copy.deepcopy(value), "<with_changes>")
        return Case.from_dict(data, "<with_changes>")

