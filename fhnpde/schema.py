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
from typing import Any

from . import grid, models
from .errors import CaseError, KeyedError, key_part, quote
from .keys import case_error, set_key_path
from .records import (
    Either,
    Flag,
    Integer,
    Invalid,
    Key,
    ListOf,
    MapOf,
    Nested,
    Number,
    OneOf,
    Optional,
    Record,
    Tagged,
    Text,
)

POINT_METHODS = ("euler", "rk4", "crank-nicolson")
CABLE_METHODS = ("explicit", "adaptive", "crank-nicolson", "split", "staggered-cn", "sdirk3")
SHEET_METHODS = ("explicit", "split")
BACKENDS = ("numpy", "numba", "cupy", "torch")
TRIDIAGONAL_METHODS = ("thomas", "cyclic-reduction", "scipy")


PositiveFloat = Number(gt=0)
FiniteFloat = Number()
NonNegativeFloat = Number(ge=0)
# [start, end] pairs are YAML lists of two numbers.
Pair = ListOf(FiniteFloat, min_length=2, max_length=2, shape="a list [start, end]")
OpenPair = ListOf(Optional(FiniteFloat), min_length=2, max_length=2,
                  shape="a list [start, end] (end may be null)")

# Numbers derived from a case (steps, spacings, limits) must be finite normal floats, and
# counts must be exact in a float and fit the int64 of the compiled kernels.
TINY = sys.float_info.min  # the smallest normal float, 2.2e-308
MAX_COUNT = 2**53  # the largest count of steps or nodes a float still counts exactly
# dx^2 and 1/dx^2 are normal floats exactly when dx lies in [DX_MIN, DX_MAX].
DX_MIN, DX_MAX = grid.DX_MIN, grid.DX_MAX
Count = Integer(ge=1, le=MAX_COUNT)
NodeCount = Integer(ge=3, le=MAX_COUNT)
# a sheet's lengths and node counts: [along x, along y]
PositivePair = ListOf(PositiveFloat, min_length=2, max_length=2, shape="a pair [x, y]")
NodePair = ListOf(NodeCount, min_length=2, max_length=2, shape="a pair [x, y]")
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


def _one_of(valid, what: str, plural: str):
    """An ``after`` check: the value if it is one of ``valid``; else the error naming them."""

    def check(value: str | None) -> str | None:
        if value is not None and value not in valid:
            raise ValueError(f"unknown {what} {quote(value)}; valid {plural}: "
                             f"{', '.join(valid)}")
        return value

    return check


class ModelSpec(Record):
    kinetics = Key(Text(), "nagumo", after=_one_of(models.FAMILIES, "kinetics", "kinetics"))
    params = Key(MapOf(FiniteFloat), factory=dict)
    diffusion = Key(NonNegativeFloat, 1.0)

    def check(self) -> None:
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


class DomainSpec(Record):
    """A cable (``length``, ``nx`` numbers) or a sheet (both pairs ``[x, y]``, DESIGN §9)."""

    length = Key(Either(PositiveFloat, PositivePair))
    nx = Key(Either(NodeCount, NodePair))
    boundary = Key(OneOf("neumann", "periodic"), "neumann")
    boundary_order = Key(OneOf(1, 2), 2, doc=(
        "Order of the no-flux boundary: 2 (mirror node, the default) or 1 (one-sided "
        "difference, a first-order treatment kept to demonstrate its loss of accuracy)."))

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

    def check(self) -> None:
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


class GaussianProfile(Record):
    """``base + amplitude exp(-|r - center|^2 / width^2)``. On a sheet ``center`` is
    ``[x, y]`` (a round or, with ``width: [wx, wy]``, elliptic pulse) or a number: a stripe
    across all y, the cable's pulse on every row."""

    kind = Key(OneOf("gaussian"))
    center = Key(Either(FiniteFloat, Pair))
    width = Key(Either(PositiveFloat, PositivePair))
    amplitude = Key(FiniteFloat, 1.0)
    base = Key(FiniteFloat, 0.0)

    def check(self) -> None:
        if isinstance(self.width, list) and not isinstance(self.center, list):
            raise KeyedError("width", "a pair [wx, wy] needs center as a pair [x, y]; give one "
                              "width for a stripe across y")
        _finite_sum("amplitude", self.base, self.amplitude)

    def sheet_keys(self) -> list[str]:
        """Keys given that only a sheet understands (a y extent)."""
        return [k for k in ("center", "width") if isinstance(getattr(self, k), list)]


class BoxProfile(Record):
    """``base + amplitude`` on ``x in [x0, x1]`` (and on a sheet ``y in [y0, y1]``; without
    ``y`` all y), ``base`` elsewhere."""

    kind = Key(OneOf("box"))
    x = Key(Pair)
    # left out of dumps when unset: a cable case dumps (and fingerprints) as it did before
    # sheets existed
    y = Key(Optional(Pair), None, omit_default=True)
    amplitude = Key(FiniteFloat, 1.0)
    base = Key(FiniteFloat, 0.0)

    def check(self) -> None:
        _ordered_ranges(self, "x", "y")
        _finite_sum("amplitude", self.base, self.amplitude)

    def sheet_keys(self) -> list[str]:
        return ["y"] if self.y is not None else []


def _ordered_ranges(spec, *keys: str) -> None:
    for key in keys:
        pair = getattr(spec, key)
        if pair is not None and pair[1] < pair[0]:
            raise KeyedError(key, f"must be [start, end] with start <= end, got {list(pair)}")


def _finite_sum(key: str, base: float, amplitude: float) -> None:
    if not math.isfinite(base + amplitude):
        raise KeyedError(key, f"base + amplitude = {base:g} + {amplitude:g} overflows a float; "
                          "lower one of them")


Profile = Tagged({"gaussian": GaussianProfile, "box": BoxProfile})


class InitialSpec(Record):
    v = Key(Either(FiniteFloat, Profile), 0.0)
    w = Key(Either(FiniteFloat, Profile), 0.0)


class BoxStimulus(Record):
    """Applied current ``amplitude`` on x in [x0, x1] (inclusive; on a sheet also y in
    [y0, y1], all y without ``y``) for t in [t0, t1)."""

    kind = Key(OneOf("box"), "box")
    x = Key(Optional(Pair), None)
    y = Key(Optional(Pair), None, omit_default=True)
    t = Key(OpenPair, factory=lambda: [0.0, None])
    amplitude = Key(FiniteFloat)

    def check(self) -> None:
        _ordered_ranges(self, "x", "y")
        if self.t[0] is None:
            raise KeyedError("t", "needs a start time: [t0, t1] or [t0, null]")
        if self.t[1] is not None and self.t[1] < self.t[0]:
            raise KeyedError("t", f"must be [start, end] with start <= end, got {list(self.t)}")


class TimeSpec(Record):
    t_end = Key(PositiveFloat)
    dt = Key(PositiveFloat)
    save_every = Key(Optional(PositiveFloat), None)

    def check(self) -> None:
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

    @property
    def steps_per_output(self) -> int:
        return round((self.save_every or self.t_end) / self.dt)

    @property
    def n_steps(self) -> int:
        return round(self.t_end / self.dt)


class NewtonSpec(Record):
    """Newton's method inside the Crank–Nicolson steps (see
    :mod:`fhnpde.solvers.crank_nicolson`)."""

    rtol = Key(PositiveFloat, 1e-8, doc=(
        "Stop when the error left in each step, estimated from Newton's quadratic "
        "convergence (K |update|^2, K measured in the run), is below rtol * max(1, max|v|)."))
    max_iter = Key(Count, 20)
    stop = Key(OneOf("error-estimate", "update"), "error-estimate", doc=(
        "What is compared with rtol: the error left, estimated as K |update|^2 "
        "(error-estimate), or the last update itself (update: one more iteration per "
        "step, error left of order rtol^2)."))
    predictor = Key(OneOf("extrapolate", "previous"), "extrapolate", doc=(
        "Starting guess of each step: 2 v(n) - v(n-1) (extrapolate) or v(n) (previous)."))


class AdaptiveSpec(Record):
    """Refinement rules of the adaptive-grid solver (``solver.method: adaptive``).

    Spacings are lengths, rounded down to a power-of-two multiple (at least 1) of the
    base spacing ``domain.length / (nx - 1)``; a spacing at or below the base spacing
    activates every base node of its zone (``coarse_dx`` that small activates the whole
    base grid, which makes the scheme the uniform explicit one). The defaults are tuned on
    ``cases/divergent_adaptive.yaml``. See :mod:`fhnpde.solvers.adaptive`.
    """

    regrid_every = Key(PositiveFloat, 0.2, doc=(
        "Simulated time between choices of the active set, a whole number of steps of "
        "time.dt (so refining dt keeps the regrid times); a front must not outrun "
        "front_radius in it (speed * regrid_every << front_radius)."))
    coarse_dx = Key(PositiveFloat, 8.0, doc="Background spacing laid over the whole cable.")
    wave_dx = Key(PositiveFloat, 2.0,
                  doc="Spacing where |v_x| > vx_threshold (where the waves are).")
    fine_dx = Key(PositiveFloat, 0.25,
                  doc="Spacing where |v_t| > vt_threshold (where the dynamics are).")
    vx_threshold = Key(PositiveFloat, 0.01,
                       doc="|v_x| above which wave_dx is used (and fronts are sought).")
    vt_threshold = Key(PositiveFloat, 0.005,
                       doc="|v_t| above which fine_dx is used (and fronts are sought).")
    front_radius = Key(NonNegativeFloat, 0.5, doc=(
        "Distance around each inflection point of v (sign change of v_xx where "
        "|v_x| > vx_threshold and |v_t| > vt_threshold) within which every base node "
        "is active."))

    @classmethod
    def before(cls, data: dict) -> dict:
        if "every" in data:
            raise KeyedError(
                "every", "was removed: the active set is now chosen on an interval of simulated "
                "time; replace every: N by regrid_every: N * time.dt (e.g. every: 128 at "
                "dt = 1/640 is regrid_every: 0.2)"
            )
        return data


class SolverSpec(Record):
    method = Key(Text(), after=_one_of(sorted(set(POINT_METHODS) | set(CABLE_METHODS)),
                                       "solver", "solvers"))
    backend = Key(Text(), "numba", after=_one_of(BACKENDS, "backend", "backends"))
    tridiagonal = Key(Text(), "thomas",
                      after=_one_of(TRIDIAGONAL_METHODS, "tridiagonal method", "methods"))
    # split's diffusion substep: cn (cable default) | adi (sheet); left out of dumps when
    # unset, so a case that does not name it dumps (and fingerprints) as before the key existed
    diffusion = Key(Optional(Text()), None, omit_default=True,
                    after=_one_of(("cn", "adi"), "diffusion substep", "substeps"))
    # split: the diffusion half-steps of consecutive steps within an output interval merged
    # into one of dt (D_dt/2 R D_dt/2 D_dt/2 R D_dt/2 -> D_dt/2 R D_dt R D_dt/2): a diffusion
    # solve less per step, the same order; outputs then depend (within the scheme's error) on
    # where the intervals end
    merge_diffusion = Key(Flag(), False, omit_default=True)
    # explicit: the order of the stencil in space, 2 (three-point; five-point on a sheet) or
    # 4 (two nodes each way); left out of dumps at 2, as merge_diffusion
    space_order = Key(OneOf(2, 4), 2, omit_default=True, doc=(
        "The explicit solver's stencil: 2 (three-point, five-point on a sheet) or 4 (the "
        "fourth-order stencil, two nodes each way)."))
    force = Key(Flag(), False)
    newton = Key(Nested(NewtonSpec), factory=NewtonSpec)
    adaptive = Key(Nested(AdaptiveSpec), factory=AdaptiveSpec)

    def check(self) -> None:
        if self.diffusion is not None and self.method != "split":
            raise KeyedError("diffusion", f"{self.diffusion!r} is the split solver's diffusion "
                             f"substep, but the method is {self.method}; remove it or use "
                             "method: split")
        if self.merge_diffusion and self.method != "split":
            raise KeyedError("merge_diffusion", f"merges the split solver's diffusion "
                             f"half-steps, but the method is {self.method}; remove it or use "
                             "method: split")
        if self.space_order != 2 and self.method != "explicit":
            raise KeyedError("space_order", f"{self.space_order} is the explicit solver's "
                             f"fourth-order stencil, but the method is {self.method}; remove "
                             "it or use method: explicit")


class ExactReactionSpec(Record):
    kind = Key(OneOf("exact"), "exact")
    scheme = Key(OneOf("euler", "rk4"), "rk4")
    substeps = Key(Count, 1)


class NeuralReactionSpec(Record):
    kind = Key(OneOf("neural"))
    model = Key(Text())
    runtime = Key(Text(), "onnxruntime")


# ``kind`` may be left out: a reaction mapping without it is the exact reaction.
ReactionSpec = Tagged({"exact": ExactReactionSpec, "neural": NeuralReactionSpec},
                      default="exact")


def grid_size(vary: dict[str, Any], points: int) -> int:
    """Members of a grid over ``vary`` (an ensemble's or a sweep's): a value list gives its
    values, a range [low, high] ``points`` values, a degenerate range [x, x] one."""
    return math.prod(1 if isinstance(spec, list) and spec[0] == spec[1]
                     else points if isinstance(spec, list) else len(spec.values)
                     for spec in vary.values())


class ValueList(Record):
    values = Key(ListOf(FiniteFloat, min_length=1, shape="a list of at least one number"))


class EnsembleSpec(Record):
    size = Key(Optional(Count), None)
    sample = Key(OneOf("latin-hypercube", "uniform", "grid"), "latin-hypercube")
    seed = Key(Integer(ge=0, le=2**64 - 1), 0)
    points = Key(Count, 11)
    vary = Key(MapOf(Either(Pair, Nested(ValueList))), factory=dict)

    def check(self) -> None:
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


class OutputSpec(Record):
    path = Key(Optional(Text()), None)
    chunk_mb = Key(Number(gt=0, le=2048), 4.0, doc=(
        "Megabytes per stored chunk; at most 2048 (2 GiB): a chunk is buffered in "
        "memory while it fills and is written in one piece."))


class Case(Record):
    """A validated case file."""

    name = Key(Text())
    description = Key(Text(), "")
    model = Key(Nested(ModelSpec), factory=ModelSpec)
    domain = Key(Optional(Nested(DomainSpec)), None)
    initial = Key(Nested(InitialSpec), factory=InitialSpec)
    stimuli = Key(ListOf(Nested(BoxStimulus)), factory=list)
    time = Key(Nested(TimeSpec))
    solver = Key(Nested(SolverSpec))
    reaction = Key(ReactionSpec, factory=ExactReactionSpec)
    ensemble = Key(Optional(Nested(EnsembleSpec)), None)
    output = Key(Nested(OutputSpec), factory=OutputSpec)

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

    def check(self) -> None:
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
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

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
            case = cls.validate(copy.deepcopy(data))
        except Invalid as exc:
            raise case_error(exc, source) from None
        if case.output.path is None:
            case.output.path = f"runs/{case.name}.zarr"
        return case

    def with_changes(self, changes: Any) -> Case:
        """A new case with ``{"key.path": value, ...}`` applied (the key paths ``--set``
        takes, values as Python objects), validated as a whole; this case is unchanged."""
        if not hasattr(changes, "items"):
            raise CaseError(f"with_changes takes a mapping of key paths to values, got "
                            f"{type(changes).__name__}")
        data = self.to_dict()
        for key, value in changes.items():
            if not isinstance(key, str) or not key or any(not k for k in key.split(".")):
                raise CaseError(f"with_changes: {quote(key)} is not a key path like 'time.dt'")
            set_key_path(data, key, copy.deepcopy(value), "<with_changes>")
        return Case.from_dict(data, "<with_changes>")

