"""Case files: the YAML schema of DESIGN §5, loading, ``--set`` overrides and clear errors.

Every key is checked before anything runs. Unknown keys are errors. A problem in a case
file becomes one :class:`CaseError` whose message names the file, the key path and what
is wrong, e.g. ``cases/x.yaml: time.dt: must be > 0, got -0.1``.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
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
    model_validator,
)

from . import models

__all__ = ["Case", "CaseError", "load_case", "parse_case", "apply_overrides"]

POINT_METHODS = ("euler", "rk4", "crank-nicolson")
CABLE_METHODS = ("explicit", "adaptive", "crank-nicolson", "split")
BACKENDS = ("numpy", "numba", "cupy")
TRIDIAGONAL_METHODS = ("thomas", "cyclic-reduction", "scipy")


class CaseError(ValueError):
    """A problem with a case that the user can fix; its message is one sentence."""

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None):
        self.source = source
        self.key = key
        self.detail = message
        parts = [p for p in (source, key) if p]
        super().__init__(": ".join([*parts, message]))

    def with_source(self, source: str) -> CaseError:
        return CaseError(self.detail, source=source, key=self.key)


# --- YAML ------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


# --- schema ------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=False)


PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
# [start, end] pairs are YAML lists of two numbers.
Pair = Annotated[list[FiniteFloat], Field(min_length=2, max_length=2)]
OpenPair = Annotated[list[FiniteFloat | None], Field(min_length=2, max_length=2)]


class ModelSpec(_Strict):
    kinetics: str = "nagumo"
    params: dict[str, FiniteFloat] = Field(default_factory=dict)
    diffusion: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 1.0

    @field_validator("kinetics")
    @classmethod
    def _known_kinetics(cls, v: str) -> str:
        models.family(v)
        return v

    @model_validator(mode="after")
    def _valid_params(self) -> ModelSpec:
        try:
            self.params = models.check_params(self.kinetics, self.params)
        except ValueError as exc:
            raise _KeyedError("params", str(exc)) from None
        return self


class DomainSpec(_Strict):
    length: PositiveFloat
    nx: Annotated[int, Field(ge=3)]
    boundary: Literal["neumann", "periodic"] = "neumann"
    boundary_order: Literal[1, 2] = Field(
        default=2,
        description=(
            "Order of the no-flux boundary: 2 (mirror node, the default) or 1 (one-sided "
            "difference, a first-order treatment kept to demonstrate its loss of accuracy)."
        ),
    )


class GaussianProfile(_Strict):
    kind: Literal["gaussian"]
    center: FiniteFloat
    width: PositiveFloat
    amplitude: FiniteFloat = 1.0
    base: FiniteFloat = 0.0


class BoxProfile(_Strict):
    kind: Literal["box"]
    x: Pair
    amplitude: FiniteFloat = 1.0
    base: FiniteFloat = 0.0

    @model_validator(mode="after")
    def _ordered(self) -> BoxProfile:
        if self.x[1] < self.x[0]:
            raise _KeyedError("x", f"must be [start, end] with start <= end, got {list(self.x)}")
        return self


Profile = Annotated[GaussianProfile | BoxProfile, Field(discriminator="kind")]


class InitialSpec(_Strict):
    v: FiniteFloat | Profile = 0.0
    w: FiniteFloat | Profile = 0.0


class BoxStimulus(_Strict):
    """Applied current ``amplitude`` on x in [x0, x1] (inclusive) for t in [t0, t1)."""

    kind: Literal["box"] = "box"
    x: Pair | None = None
    t: OpenPair = Field(default_factory=lambda: [0.0, None])
    amplitude: FiniteFloat

    @model_validator(mode="after")
    def _ordered(self) -> BoxStimulus:
        if self.x is not None and self.x[1] < self.x[0]:
            raise _KeyedError("x", f"must be [start, end] with start <= end, got {list(self.x)}")
        if self.t[0] is None:
            raise _KeyedError("t", "needs a start time: [t0, t1] or [t0, null]")
        if self.t[1] is not None and self.t[1] < self.t[0]:
            raise _KeyedError("t", f"must be [start, end] with start <= end, got {list(self.t)}")
        return self


class TimeSpec(_Strict):
    t_end: PositiveFloat
    dt: PositiveFloat
    save_every: PositiveFloat | None = None

    @model_validator(mode="after")
    def _commensurate(self) -> TimeSpec:
        save = self.save_every if self.save_every is not None else self.t_end
        if self.dt > save:
            raise _KeyedError("dt", f"must be <= save_every ({save}), got {self.dt}")
        for key, val in (("save_every", save), ("t_end", self.t_end)):
            n = val / self.dt
            if abs(n - round(n)) > 1e-6 * max(1.0, n):
                raise _KeyedError(
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
    """Newton's method inside the Crank–Nicolson steps (see :mod:`fhnpde.solvers.crank_nicolson`)."""

    rtol: PositiveFloat = Field(
        default=1e-8,
        description=(
            "Stop when the error left in each step, estimated from Newton's quadratic "
            "convergence (K |update|^2, K measured in the run), is below rtol * max(1, max|v|)."
        ),
    )
    max_iter: Annotated[int, Field(ge=1)] = 20
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

    every: Annotated[int, Field(ge=1)] = Field(
        default=32,
        description=(
            "Steps between choices of the active set; a front must not outrun "
            "front_radius in this many steps (speed * every * dt << front_radius)."
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


class SolverSpec(_Strict):
    method: str
    backend: str = "numba"
    tridiagonal: str = "thomas"
    force: bool = False
    newton: NewtonSpec = Field(default_factory=NewtonSpec)
    adaptive: AdaptiveSpec = Field(default_factory=AdaptiveSpec)

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        valid = sorted(set(POINT_METHODS) | set(CABLE_METHODS))
        if v not in valid:
            raise ValueError(f"unknown solver {v!r}; valid solvers: {', '.join(valid)}")
        return v

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        if v not in BACKENDS:
            raise ValueError(f"unknown backend {v!r}; valid backends: {', '.join(BACKENDS)}")
        return v

    @field_validator("tridiagonal")
    @classmethod
    def _known_tridiagonal(cls, v: str) -> str:
        if v not in TRIDIAGONAL_METHODS:
            raise ValueError(
                f"unknown tridiagonal method {v!r}; valid methods: {', '.join(TRIDIAGONAL_METHODS)}"
            )
        return v


class ExactReactionSpec(_Strict):
    kind: Literal["exact"] = "exact"
    scheme: Literal["euler", "rk4"] = "rk4"
    substeps: Annotated[int, Field(ge=1)] = 1


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


class ValueList(_Strict):
    values: list[FiniteFloat] = Field(min_length=1)


class EnsembleSpec(_Strict):
    size: Annotated[int, Field(ge=1)] | None = None
    sample: Literal["latin-hypercube", "uniform", "grid"] = "latin-hypercube"
    seed: Annotated[int, Field(ge=0)] = 0
    points: Annotated[int, Field(ge=1)] = 11
    vary: dict[str, Pair | ValueList] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ranges(self) -> EnsembleSpec:
        for key, spec in self.vary.items():
            if isinstance(spec, list) and spec[1] < spec[0]:
                raise _KeyedError(
                    f"vary.{key}", f"must be [low, high] with low <= high, got {list(spec)}"
                )
        if self.sample != "grid" and self.size is None:
            raise _KeyedError("size", f"is required for sample: {self.sample}")
        return self


class OutputSpec(_Strict):
    path: str | None = None
    chunk_mb: PositiveFloat = 4.0


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
        return self.domain is not None

    @model_validator(mode="after")
    def _consistent(self) -> Case:
        method = self.solver.method
        if self.domain is not None:
            if method not in CABLE_METHODS:
                raise _KeyedError(
                    "solver.method",
                    f"{method!r} solves point models; for a cable use one of "
                    f"{', '.join(CABLE_METHODS)}",
                )
            if self.ensemble is not None:
                raise _KeyedError("ensemble", "is for point (0-D) cases; remove it or the domain")
            for i, stim in enumerate(self.stimuli):
                if stim.x is None:
                    raise _KeyedError(f"stimuli.{i}.x", "is required on a cable: give [x0, x1]")
        else:
            if method not in POINT_METHODS:
                raise _KeyedError(
                    "solver.method",
                    f"{method!r} needs a domain (a cable); for a point case use one of "
                    f"{', '.join(POINT_METHODS)}",
                )
            for key in ("v", "w"):
                if not isinstance(getattr(self.initial, key), float):
                    raise _KeyedError(
                        f"initial.{key}", "must be a number for a point case (no domain)"
                    )
            for i, stim in enumerate(self.stimuli):
                if stim.x is not None:
                    raise _KeyedError(f"stimuli.{i}.x", "has no meaning without a domain; remove it")
            if self.ensemble is not None:
                allowed = {"I", "v0", "w0", *models.family(self.model.kinetics).params}
                for key in self.ensemble.vary:
                    if key not in allowed:
                        raise _KeyedError(
                            f"ensemble.vary.{key}",
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
                            raise _KeyedError(f"ensemble.vary.{key}", str(exc)) from None
        if self.reaction.kind == "neural" and method != "split":
            raise _KeyedError("reaction.kind", "neural reactions need solver.method: split")
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


class _KeyedError(ValueError):
    """Raised inside validators to attach a key path below the validator's location."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}\x00{message}")


# --- errors ------------------------------------------------------------------------------

_TAGS = {"gaussian", "box", "exact", "neural", "float", "int", "list[float]", "ValueList", "none", "list[nullable[float]]"}


def _loc_to_path(loc: tuple) -> str:
    parts: list[str] = []
    for item in loc:
        s = str(item)
        if s in _TAGS or s.startswith(("function-", "tuple[", "constrained-", "union[",
                                       "tagged-union[", "list[", "nullable[")):
            continue
        parts.append(s)
    return ".".join(parts)


def _explain(err: dict) -> tuple[str, str]:
    """(key path, message) for one pydantic error."""
    path = _loc_to_path(err["loc"])
    kind = err["type"]
    given = err.get("input")
    ctx = err.get("ctx") or {}
    msg = err["msg"]
    if kind == "value_error":
        text = str(ctx.get("error", msg))
        if "\x00" in text:
            sub, text = text.split("\x00", 1)
            path = ".".join(p for p in (path, sub) if p)
        return path, text
    if kind == "missing":
        return path, "missing required key"
    if kind == "extra_forbidden":
        return path, "unknown key (check its spelling against DESIGN.md §5)"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
              "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()))
        if isinstance(bound, int | float):
            bound = f"{bound:g}"
        return path, f"must be {op} {bound}, got {given!r}"
    if kind in ("float_type", "int_type", "float_parsing", "int_parsing", "int_from_float"):
        want = "an integer" if kind.startswith("int") else "a number"
        return path, f"must be {want}, got {given!r}"
    if kind == "finite_number":
        return path, f"must be a finite number, got {given!r}"
    if kind in ("string_type",):
        return path, f"must be a string, got {given!r}"
    if kind == "bool_type":
        return path, f"must be true or false, got {given!r}"
    if kind in ("literal_error", "union_tag_invalid"):
        return path, msg.replace("Input should be", "must be") + f", got {given!r}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return path, f"must be a mapping of keys, got {given!r}"
    if kind in ("too_short", "too_long"):
        return path, f"must be a list [start, end], got {given!r}"
    if kind in ("tuple_type", "list_type"):
        return path, f"must be a list, got {given!r}"
    if kind == "union_tag_not_found":
        return path, "needs a 'kind' key"
    return path, f"{msg}, got {given!r}"


def _from_validation_error(exc: ValidationError, source: str | None) -> CaseError:
    errors = exc.errors()
    # Prefer the most specific message: a union (a number or a profile) reports one error
    # per member, and the member the user meant is the one that got furthest.
    priority = ("value_error", "extra_forbidden", "missing", "union_tag_invalid",
                "union_tag_not_found", "literal_error")

    def rank(err):
        kind = err["type"]
        return (priority.index(kind) if kind in priority else len(priority), -len(err["loc"]))

    chosen = min(errors, key=rank)
    path, message = _explain(chosen)
    return CaseError(message, source=source, key=path or None)


# --- loading -----------------------------------------------------------------------------


def _set_path(data: dict, path: str, value: Any, source: str) -> None:
    keys = path.split(".")
    node: Any = data
    for i, key in enumerate(keys[:-1]):
        if isinstance(node, list):
            try:
                node = node[int(key)]
                continue
            except (ValueError, IndexError):
                raise CaseError(
                    f"no list item {key!r}", source=source, key=".".join(keys[: i + 1])
                ) from None
        if not isinstance(node, dict):
            raise CaseError("is not a mapping", source=source, key=".".join(keys[:i]))
        if node.get(key) is None:
            if keys[i + 1].isdigit():
                raise CaseError(f"no list item {keys[i + 1]!r} (the list is empty)",
                                source=source, key=".".join(keys[: i + 2]))
            node[key] = {}
        node = node[key]
    last = keys[-1]
    if isinstance(node, list):
        try:
            node[int(last)] = value
        except (ValueError, IndexError):
            raise CaseError(f"no list item {last!r}", source=source, key=path) from None
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise CaseError("is not a mapping", source=source, key=".".join(keys[:-1]))


def apply_overrides(data: dict, overrides: list[str] | None, source: str) -> dict:
    """Apply ``key.path=value`` strings (values parsed as YAML) to a raw case mapping."""
    data = copy.deepcopy(data)
    for item in overrides or []:
        if "=" not in item:
            raise CaseError(
                f"--set {item!r}: expected KEY=VALUE, e.g. --set time.dt=0.01", source=source
            )
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not k for k in key.split(".")):
            raise CaseError(f"--set {item!r}: empty key path", source=source)
        try:
            value = yaml_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        _set_path(data, key, value, source)
    return data


def parse_case(data: Any, source: str = "<case>") -> Case:
    """Validate a raw mapping into a :class:`Case`, or raise one :class:`CaseError`."""
    if not isinstance(data, dict):
        raise CaseError(
            f"a case file must be a YAML mapping of keys, got {type(data).__name__}",
            source=source,
        )
    try:
        return Case.model_validate(data)
    except ValidationError as exc:
        raise _from_validation_error(exc, source) from None


def read_case_data(path: str | Path) -> dict:
    """Read a case file's raw mapping; CaseError if it cannot be read or parsed."""
    source = str(path)
    p = Path(path)
    if not p.exists():
        raise CaseError("no such case file; check the path", source=source)
    if p.is_dir():
        raise CaseError("is a directory, not a case file", source=source)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseError(f"cannot read the file ({exc.__class__.__name__})", source=source) from None
    try:
        data = yaml_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise CaseError(f"not valid YAML{where}: {problem}", source=source) from None
    if data is None:
        raise CaseError("the file is empty", source=source)
    return data


def load_case(path: str | Path, overrides: list[str] | None = None) -> Case:
    """Load, override and validate a case file."""
    source = str(path)
    data = read_case_data(path)
    if not isinstance(data, dict):
        raise CaseError(
            f"a case file must be a YAML mapping of keys, got {type(data).__name__}",
            source=source,
        )
    data = apply_overrides(data, overrides, source)
    case = parse_case(data, source)
    if case.output.path is None:
        case.output.path = f"runs/{case.name}.zarr"
    return case
