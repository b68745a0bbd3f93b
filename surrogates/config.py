"""The surrogate configuration file: data, model, training and search in one YAML mapping.

A config names what to learn and how::

    name: problem_a
    kinetics: {name: nagumo, params: {k: 10.0, a: 0.4, eps: 0.04, gamma: 4.0}}
    data:
      kind: trajectory           # trajectory (problems A/B/C) | one-step (ITNN)
                                 # | cable (ITNN: split cable runs) | trajectories (Neural ODE)
      inputs: [t]                # trajectory only: t plus any of v0, w0, I
      t_end: 25.0
      fixed: {v0: 0.5, w0: 0.0, I: 0.1}
      box: {v0: [-0.1, 0.81], w0: [0.0, 0.12], I: [0.08, 0.12]}
      train: {size: 1000, seed: 0}
      validation: {size: 2000, seed: 1}
      solver: {method: rk4, dt: 0.01, backend: numba}
      path: runs/surrogates/problem_a.zarr
    model:
      kind: ddnn                 # ddnn | pinn | itnn | neural-ode
      widths: [32, 32, 32]       # or: shape + neurons + layers
      activations: [tanh]        # one per hidden layer, or one for all
    training: {iterations: 5000, lr: 1.0e-3, seed: 0, out: runs/surrogates/models/problem_a}
    search: {count: 40, workers: 2, out: runs/surrogates/search/problem_a}

Every key is checked before anything runs; unknown keys are errors. A problem becomes one
:class:`fhnpde.CaseError` naming the file, the key path and what is wrong (exit status 2).
The file is read by :func:`fhnpde.case.read_case_data` (one bounded, strict YAML reader,
:mod:`fhnpde.yamlio`); counts are bounded by 2**53 and derived numbers (steps of the solver,
widths of ranges) must be finite, as in case files.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fhnpde import models as fhn_models
from fhnpde.case import (
    MAX_COUNT,
    TINY,
    CaseError,
    KeyedError,
    apply_overrides,
    key_part,
    quote,
    read_case_data,
)

__all__ = ["Config", "load_config", "parse_config", "CaseError"]

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Range = Annotated[list[FiniteFloat], Field(min_length=2, max_length=2)]
PositiveInt = Annotated[int, Field(ge=1, le=MAX_COUNT)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Seed = Annotated[int, Field(ge=0, le=2**64 - 1)]

TRAJECTORY_INPUTS = ("t", "v0", "w0", "I")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu", "elu", "silu")
SHAPES = ("rectangle", "funnel", "bottleneck", "bowtie", "diamond")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class KineticsSpec(_Strict):
    name: str = "nagumo"
    params: dict[str, FiniteFloat] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _valid(self) -> KineticsSpec:
        if self.name not in fhn_models.FAMILIES:
            raise KeyedError("name", f"unknown kinetics {quote(self.name)}; valid kinetics: "
                             f"{', '.join(fhn_models.FAMILIES)}")
        known = fhn_models.family(self.name).params
        unknown = sorted(set(self.params) - set(known))
        if unknown:  # named here, quoted: a user's key may be long or hold odd characters
            raise KeyedError("params", "unknown parameter(s) "
                             f"{', '.join(quote(k) for k in unknown[:3])} for kinetics "
                             f"{self.name!r}; its parameters are {', '.join(known)}")
        try:
            self.params = fhn_models.check_params(self.name, self.params)
        except ValueError as exc:
            raise KeyedError("params", str(exc)) from None
        except ArithmeticError:  # also numpy's FloatingPointError
            raise KeyedError("params", "these values overflow the kinetics' checks; use values "
                             "nearer 1") from None
        return self


class SampleSpec(_Strict):
    """How many points (or trajectories) to draw, and the seed of the draw."""

    size: PositiveInt
    seed: Seed = 0


class SolverSpec(_Strict):
    """fhnpde's point solver that makes the ground truth."""

    method: Literal["rk4", "euler"] = "rk4"
    dt: PositiveFloat = 0.01
    backend: Literal["numpy", "numba"] = "numba"

    @model_validator(mode="after")
    def _normal_dt(self) -> SolverSpec:
        if self.dt < TINY:
            raise KeyedError("dt", f"{self.dt!r} is below the smallest normal float ({TINY:.3g}); "
                             "use a larger dt")
        return self


def _check_ranges(prefix: str, ranges: dict[str, list[float]]) -> None:
    """Each [low, high] ordered and of finite width (samples are low + u (high - low))."""
    for key, (lo, hi) in ranges.items():
        if hi < lo:
            raise KeyedError(f"{prefix}.{key_part(key)}",
                             f"must be [low, high] with low <= high, got {[lo, hi]}")
        if not math.isfinite(hi - lo):
            raise KeyedError(f"{prefix}.{key_part(key)}", f"the range [{lo:g}, {hi:g}] is wider "
                             "than a float holds (high - low overflows); narrow it")


class AdaptiveSpec(_Strict):
    """Adaptive point density: extra one-step points where a trained model errs most.

    ``pool`` candidate states are drawn in the box, the model's one-step error is measured
    on each, and ``extra`` of them are kept with probability proportional to that error.
    """

    model: str
    extra: PositiveInt
    pool: PositiveInt = 20000
    seed: Seed = 7


class RolloutDataSpec(_Strict):
    """Exact multi-step sequences (one-step data only) for rollout losses and checks."""

    size: PositiveInt
    steps: PositiveInt
    seed: Seed = 3
    box: dict[str, Range] | None = None  # start box (v0, w0, I); default: the state box

    @model_validator(mode="after")
    def _ranges(self) -> RolloutDataSpec:
        _check_ranges("box", self.box or {})
        return self


class CableCaseSpec(_Strict):
    """A split-solver cable case (a case file, with ``set`` applied as ``--set`` would) run
    with the exact reaction to collect the states a split run visits."""

    case: str
    set: dict[str, Any] = Field(default_factory=dict)


class DataSpec(_Strict):
    kind: Literal["trajectory", "one-step", "cable", "trajectories"]
    inputs: list[str] = Field(default_factory=lambda: ["t"])
    t_end: PositiveFloat = 25.0
    fixed: dict[str, FiniteFloat] = Field(default_factory=dict)
    box: dict[str, Range] = Field(default_factory=dict)
    currents: list[FiniteFloat] | None = None
    train: SampleSpec
    validation: SampleSpec
    solver: SolverSpec = Field(default_factory=SolverSpec)
    dt_r: PositiveFloat | None = None
    save_dt: PositiveFloat | None = None
    steps: PositiveInt | None = None
    rollouts: RolloutDataSpec | None = None
    adaptive: AdaptiveSpec | None = None
    cases: list[CableCaseSpec] | None = None
    validation_cases: list[CableCaseSpec] | None = None
    rest_fraction: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.02
    path: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> DataSpec:
        _check_ranges("box", self.box)
        if self.kind == "trajectory":
            if (not self.inputs or self.inputs[0] != "t"
                    or len(set(self.inputs)) != len(self.inputs)):
                raise KeyedError("inputs", f"must start with t and name each input once, got "
                                 f"{quote(self.inputs)}")
            for name in self.inputs:
                if name not in TRAJECTORY_INPUTS:
                    raise KeyedError("inputs", f"unknown input {quote(name)}; valid inputs: "
                                     f"{', '.join(TRAJECTORY_INPUTS)}")
            for name in self.inputs[1:]:
                if name not in self.box:
                    raise KeyedError(f"box.{name}",
                                     f"is needed because {name} is an input; give [low, high]")
            for name in ("v0", "w0", "I"):
                if name not in self.inputs and name not in self.fixed:
                    raise KeyedError(f"fixed.{name}", f"is needed because {name} is not an input")
        elif self.kind in ("one-step", "cable"):
            if self.kind == "cable" and not self.cases:
                raise KeyedError("cases", "are required for cable data: the split cable cases "
                                 "to run with the exact reaction")
            if self.kind == "cable" and not self.validation_cases:
                raise KeyedError("validation_cases", "are required for cable data: cases kept "
                                 "apart from training, for the validation loss")
            if self.dt_r is None:
                raise KeyedError("dt_r",
                                 "is required for one-step (ITNN) data: the reaction interval")
            for name in ("v", "w"):
                if name not in self.box:
                    raise KeyedError(f"box.{name}", "is required: the state box to sample")
            if "I" not in self.box and "I" not in self.fixed:
                raise KeyedError("box.I",
                                 "is required (or fixed.I): the range of the applied current")
        else:
            for name in ("v0", "w0"):
                if name not in self.box:
                    raise KeyedError(f"box.{name}", "is required: the box of initial states")
            if self.currents is None:
                raise KeyedError("currents",
                                 "is required for trajectories: the currents I to draw from")
            if self.save_dt is None or self.steps is None:
                raise KeyedError("save_dt",
                                 "and steps are required for trajectories (e.g. 0.5 and 80)")
        dt = self.solver.dt
        spans = [("t_end", self.t_end)] if self.kind == "trajectory" else []
        for key, val in (("dt_r", self.dt_r), ("save_dt", self.save_dt)):
            if val is not None:
                spans.append((key, val))
        # the longest run the data needs, in solver steps: steps intervals of save_dt or dt_r
        if self.kind == "trajectories" and self.save_dt is not None and self.steps is not None:
            spans.append(("steps", self.steps * self.save_dt))
        if self.kind == "one-step" and self.rollouts is not None and self.dt_r is not None:
            spans.append(("rollouts.steps", self.rollouts.steps * self.dt_r))
        for key, val in spans:
            if not val / dt <= MAX_COUNT:  # also refuses inf
                raise KeyedError(key, f"makes a run of {val:.3g} / dt ({dt:g}) = {val / dt:.3g} "
                                 f"solver steps, more than the 2**53 ({MAX_COUNT:.3g}) a float "
                                 f"counts exactly; lower {key} or raise data.solver.dt")
        for key, val in (("dt_r", self.dt_r), ("save_dt", self.save_dt)):
            if val is not None:
                n = val / dt
                if abs(n - round(n)) > 1e-6 * max(1.0, n):
                    raise KeyedError(key, f"{val} is not a whole number of solver steps dt = {dt}")
        return self


class PINNSpec(_Strict):
    """Weights of the PINN loss: data + physics residual + initial condition."""

    data_weight: NonNegativeFloat = 1.0
    physics_weight: NonNegativeFloat = 1.0
    ic_weight: NonNegativeFloat = 1.0
    collocation: PositiveInt = 512


class ITNNSpec(_Strict):
    """``rollout_weight``: weight of the multi-step loss (one-step data: rollouts of the
    reaction alone; cable data: ``rollout_steps`` Strang steps of whole cables, ``rollout_batch``
    windows every ``rollout_every`` iterations, from iteration ``rollout_after`` x iterations
    on; with ``rollout_lr`` those iterations are a second phase with a fresh optimizer at that
    learning rate, the first phase's schedule ending where it starts);
    ``structure``: ``plain`` or ``rest-factored`` (the rest state a fixed point exactly);
    ``prior``: ``none`` or ``euler`` (the network corrects an Euler step of the kinetics)."""

    rollout_weight: NonNegativeFloat = 0.0
    rollout_steps: PositiveInt = 24
    rollout_batch: PositiveInt = 4
    rollout_every: PositiveInt = 1
    rollout_lr: PositiveFloat | None = None
    rollout_after: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = 0.2
    residual: bool = True
    structure: Literal["plain", "rest-factored"] = "plain"
    prior: Literal["none", "euler"] = "none"


class NeuralODESpec(_Strict):
    """RK4 substeps per saved interval; ``window``: train on all windows of that many
    steps cut from the trajectories (multiple shooting), or on whole trajectories (null)."""

    substeps: PositiveInt = 1
    window: PositiveInt | None = None


class ModelSpec(_Strict):
    kind: Literal["ddnn", "pinn", "itnn", "neural-ode"]
    widths: list[PositiveInt] | None = None
    shape: Literal["rectangle", "funnel", "bottleneck", "bowtie", "diamond"] | None = None
    neurons: PositiveInt | None = None
    layers: PositiveInt | None = None
    activations: list[str] = Field(default_factory=lambda: ["tanh"])
    pinn: PINNSpec = Field(default_factory=PINNSpec)
    itnn: ITNNSpec = Field(default_factory=ITNNSpec)
    neural_ode: NeuralODESpec = Field(default_factory=NeuralODESpec)

    @model_validator(mode="after")
    def _arch(self) -> ModelSpec:
        if self.widths is None and (self.shape is None or self.neurons is None
                                    or self.layers is None):
            raise KeyedError("widths", "give the hidden widths, or shape + neurons + layers")
        for a in self.activations:
            if a not in ACTIVATIONS:
                raise KeyedError("activations", f"unknown activation {quote(a)}; valid: "
                                 f"{', '.join(ACTIVATIONS)}")
        return self

    def hidden_widths(self) -> list[int]:
        from .architectures import shape_widths

        if self.widths is not None:
            return list(self.widths)
        return shape_widths(self.shape, self.neurons, self.layers)

    def layer_activations(self) -> list[str]:
        n = len(self.hidden_widths())
        if len(self.activations) == 1:
            return self.activations * n
        if len(self.activations) != n:
            raise CaseError(f"has {len(self.activations)} entries for {n} hidden layers; give one "
                            "or one per layer", key="model.activations")
        return list(self.activations)


class TrainingSpec(_Strict):
    iterations: PositiveInt = 2000
    batch_size: PositiveInt | None = None  # None: full batch
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.0
    schedule: Literal["none", "plateau", "cosine"] = "plateau"
    plateau_factor: Annotated[float, Field(gt=0, lt=1)] = 0.5
    plateau_patience: PositiveInt = 10
    min_lr: NonNegativeFloat = 1e-6
    clip: PositiveFloat | None = None
    validate_every: PositiveInt = 100
    patience: PositiveInt | None = None  # early stopping, in validations
    checkpoint_every: PositiveInt = 1000
    seed: Seed = 0
    threads: PositiveInt = 1
    out: str | None = None


class SearchSpec(_Strict):
    count: PositiveInt = 40
    widths: list[PositiveInt] = Field(default_factory=lambda: [16, 32, 64, 128])
    layers: list[PositiveInt] = Field(default_factory=lambda: [2, 3])
    max_neurons: PositiveInt = 256
    shapes: list[str] = Field(default_factory=lambda: list(SHAPES))
    activations: list[str] = Field(default_factory=lambda: list(ACTIVATIONS))
    workers: PositiveInt = 2
    seed: Seed = 0
    timing_batch: PositiveInt = 100_000
    out: str | None = None

    @field_validator("shapes")
    @classmethod
    def _shapes(cls, v: list[str]) -> list[str]:
        for s in v:
            if s not in SHAPES:
                raise ValueError(f"unknown shape {quote(s)}; valid shapes: {', '.join(SHAPES)}")
        return v

    @field_validator("activations")
    @classmethod
    def _acts(cls, v: list[str]) -> list[str]:
        for a in v:
            if a not in ACTIVATIONS:
                raise ValueError(f"unknown activation {quote(a)}; valid: {', '.join(ACTIVATIONS)}")
        return v


class DiagnosticsSpec(_Strict):
    """Phase-portrait grid and regimes (name -> constant current I) and the rollout length."""

    grid_v: Range | None = None
    grid_w: Range | None = None
    grid_points: Annotated[int, Field(ge=2)] = 21
    regimes: dict[str, FiniteFloat] | None = None
    rollout_steps: PositiveInt = 50
    rollout_size: PositiveInt = 200

    @model_validator(mode="after")
    def _ranges(self) -> DiagnosticsSpec:
        _check_ranges("grid", {k[5:]: v for k, v in (("grid_v", self.grid_v),
                                                       ("grid_w", self.grid_w)) if v})
        return self


class Config(_Strict):
    name: str
    description: str = ""
    kinetics: KineticsSpec = Field(default_factory=KineticsSpec)
    data: DataSpec
    model: ModelSpec
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    search: SearchSpec = Field(default_factory=SearchSpec)
    diagnostics: DiagnosticsSpec = Field(default_factory=DiagnosticsSpec)

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        kind, data = self.model.kind, self.data.kind
        want = {"ddnn": ("trajectory",), "pinn": ("trajectory",), "itnn": ("one-step", "cable"),
                "neural-ode": ("trajectories",)}[kind]
        if data not in want:
            raise KeyedError("model.kind", f"{kind} learns from data.kind: {' or '.join(want)}, "
                             f"not {data}")
        if data == "cable":
            names = fhn_models.family(self.kinetics.name).defaults
            for key in self.data.box:
                if key not in ("v", "w", "I") and key not in names:
                    raise KeyedError(f"data.box.{key_part(key)}", f"is neither v, w, I nor a "
                                     f"parameter of {self.kinetics.name} ({', '.join(names)})")
        if self.model.itnn.structure == "rest-factored" and not self.model.itnn.residual:
            raise KeyedError("model.itnn.structure", "rest-factored needs residual: true")
        if self.model.itnn.prior != "none" and self.model.itnn.structure != "rest-factored":
            raise KeyedError("model.itnn.prior", "an euler prior needs structure: rest-factored")
        try:
            widths = self.model.hidden_widths()
        except ValueError as exc:
            raise KeyedError("model.shape", str(exc)) from None
        if len(self.model.activations) not in (1, len(widths)):
            raise KeyedError("model.activations", f"has {len(self.model.activations)} entries for "
                             f"{len(widths)} hidden layers; give one, or one per layer")
        return self

    # resolved paths
    @property
    def data_path(self) -> Path:
        return Path(self.data.path or f"runs/surrogates/{self.name}.zarr")

    @property
    def model_dir(self) -> Path:
        return Path(self.training.out or f"runs/surrogates/models/{self.name}")

    @property
    def search_dir(self) -> Path:
        return Path(self.search.out or f"runs/surrogates/search/{self.name}")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def parse_config(data: Any, source: str = "<config>") -> Config:
    """Validate a raw mapping into a :class:`Config`, or raise one CaseError."""
    if not isinstance(data, dict):
        raise CaseError(f"a config must be a YAML mapping of keys, got {type(data).__name__}",
                        source=source)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        from fhnpde.case import validation_error_to_case_error

        raise validation_error_to_case_error(exc, source) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read, override (``key.path=value``) and validate a config file."""
    source = str(path)
    data = read_case_data(path, "config")
    data = apply_overrides(data, overrides, source) if isinstance(data, dict) else data
    return parse_config(data, source)
