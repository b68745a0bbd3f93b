"""The sweep file: its schema, and every member's case built and checked from it
(:func:`load_sweep`)."""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from ..case import (
    MAX_COUNT,
    Case,
    CaseError,
    key_part,
    keyed,
    parse_case,
    quote,
    read_case_data,
    set_key_path,
    validation_error_to_case_error,
)
from ..schema import grid_size


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# The sweep file is validated by pydantic (it is read only by the sweep command); these are
# the case schema's number and range checks (fhnpde.schema) in pydantic's terms.
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Pair = Annotated[list[FiniteFloat], Field(min_length=2, max_length=2)]

# Integers as wide as the int64 a member's value may end in (a case's counts are smaller).
Number = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)] | FiniteFloat
# load_sweep builds and checks every member's case (about 1 ms each) before anything runs.
MAX_MEMBERS = 100_000


class ValueList(_Strict):
    """Listed values of one key: ``{values: [0.1, 0.2]}``."""

    values: list[Number] = Field(min_length=1)


class SummarySpec(_Strict):
    threshold: FiniteFloat = 0.3
    edge: PositiveFloat | None = None


class SweepOutput(_Strict):
    path: str | None = None


class SweepSpec(_Strict):
    """A validated sweep file (the members are built by :func:`load_sweep`)."""

    name: str
    description: str = ""
    base: str | dict[str, Any]
    set: dict[str, Any] = Field(default_factory=dict)
    sample: Literal["grid", "latin-hypercube", "uniform"] = "grid"
    vary: dict[str, Pair | ValueList] = Field(min_length=1)
    points: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 11
    size: Annotated[int, Field(ge=1, le=MAX_COUNT)] | None = None
    seed: Annotated[int, Field(ge=0, le=2**64 - 1)] = 0
    keep: Literal["summary", "fields"] = "summary"
    summary: SummarySpec = Field(default_factory=SummarySpec)
    output: SweepOutput = Field(default_factory=SweepOutput)

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        for key, spec in self.vary.items():
            if not key or any(not part for part in key.split(".")):
                raise keyed("vary", f"{quote(key)} is not a key path like model.params.a")
            if isinstance(spec, list) and spec[1] < spec[0]:
                raise keyed(f"vary.{key_part(key)}",
                            f"must be [low, high] with low <= high, got {list(spec)}")
            if isinstance(spec, list) and not math.isfinite(spec[1] - spec[0]):
                raise keyed(f"vary.{key_part(key)}",
                            f"the range [{spec[0]:g}, {spec[1]:g}] is wider than a float "
                            "holds (high - low overflows); narrow it")
            if key in self.set:
                raise keyed(f"set.{key_part(key)}",
                            "is also varied; keep it in one of set or vary")
        for key in self.set:
            if not key or any(not part for part in key.split(".")):
                raise keyed("set", f"{quote(key)} is not a key path like time.t_end")
        if self.sample != "grid" and self.size is None:
            raise keyed("size", f"is required for sample: {self.sample}")
        if self.sample == "grid":
            members = grid_size(self.vary, self.points)
            what = "points" if any(isinstance(s, list) for s in self.vary.values()) else "vary"
        else:
            members, what = self.size, "size"
        if members > MAX_MEMBERS:
            raise keyed(what, f"the sweep would have {members:,} members, more than the "
                        f"{MAX_MEMBERS:,} one sweep file may hold (each is built and checked "
                        "before anything runs); split it into several sweeps")
        return self


def _spec_error(exc: ValidationError, source: str, data: dict) -> CaseError:
    # SweepSpec's validator raises fhnpde.errors.keyed: the error names its key path.
    err = validation_error_to_case_error(exc, source)
    if any(e["type"] == "value_error" for e in exc.errors()):
        return err
    # A vary entry's type errors name union members; say what an entry may be instead.
    vary = data.get("vary")
    if err.key == "vary" and vary == {}:
        return CaseError("needs at least one key path, e.g. model.params.a: [0.05, 0.15]",
                         source=source, key="vary")
    if isinstance(vary, dict) and err.key and err.key.startswith("vary."):
        for k, entry in vary.items():
            if err.key == f"vary.{k}" or err.key.startswith(f"vary.{k}."):
                return CaseError(
                    "must be a range [low, high] or {values: [v1, v2, ...]} of numbers, "
                    f"got {quote(entry)}", source=source, key=f"vary.{key_part(k)}",
                )
    return err


def _member_values(spec: SweepSpec) -> dict[str, np.ndarray]:
    """The varied values of every member, one array per key, in member order (the same
    sampling as a point ensemble's, :func:`fhnpde.problem.sample_points`)."""
    from ..problem import sample_points

    return sample_points(spec.vary, spec.sample, spec.size, spec.seed, spec.points,
                         size_key="size")


def python_value(value: Any) -> Any:
    """A numpy scalar as the plain Python number the strict case schema expects."""
    return value.item() if isinstance(value, np.generic) else value


def describe_member(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={python_value(v):g}" if isinstance(python_value(v), float)
                     else f"{k}={v}" for k, v in values.items())


@dataclass
class Sweep:
    """A sweep file, validated, with every member's validated case."""

    spec: SweepSpec
    source: str
    base: dict
    values: dict[str, np.ndarray]
    cases: list[Case]
    fingerprint: str

    @property
    def size(self) -> int:
        return len(self.cases)

    def member_values(self, i: int) -> dict[str, Any]:
        return {k: python_value(v[i]) for k, v in self.values.items()}


def load_sweep(path: str | Path, *, force: bool = False,
               out: str | Path | None = None) -> Sweep:
    """Read a sweep file and build and check every member's case (CaseError on any problem).

    Each member's case is the base case with ``set`` and then the member's values applied
    at their key paths, validated by the case schema and by its solver's stability check.
    Before any member is built, the number of members is counted from the spec and the
    client's memory and the store's disk (at ``out``) are checked unless ``force``
    (:func:`fhnpde.resources.check_sweep`).
    """
    source = str(path)
    data = read_case_data(path, "sweep file")
    if not isinstance(data, dict):
        raise CaseError(
            f"a sweep file must be a YAML mapping of keys, got {type(data).__name__}",
            source=source,
        )
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise _spec_error(exc, source, data) from None
    if isinstance(spec.base, str):
        base_path = Path(spec.base)
        if not base_path.is_absolute():
            base_path = Path(path).parent / base_path
        try:
            base = read_case_data(base_path)
        except CaseError as exc:
            raise CaseError(f"{exc.source}: {exc.detail}", source=source, key="base") from None
        if not isinstance(base, dict):
            raise CaseError(f"{base_path} is not a YAML mapping of case keys", source=source,
                            key="base")
    else:
        base = copy.deepcopy(spec.base)
    for key, value in spec.set.items():
        set_key_path(base, key, value, source)
    from ..resources import check_sweep

    check_sweep(spec, base, out or spec.output.path or f"runs/{spec.name}.zarr", force=force,
                source=source, notes=False, path_key="--out" if out else "output.path")
    try:
        values = _member_values(spec)
    except CaseError as exc:
        raise exc.with_source(source) from None
    n = len(next(iter(values.values())))
    cases = [_member_case(base, {k: v[i] for k, v in values.items()}, i, n, source)
             for i in range(n)]
    if spec.keep == "fields":
        _check_same_shapes(cases, values, source)
    digest = hashlib.sha256()
    digest.update(spec.keep.encode())
    digest.update(spec.summary.model_dump_json().encode())
    for case in cases:
        digest.update(case.to_yaml().encode())
    return Sweep(spec, source, base, values, cases, digest.hexdigest()[:16])


def _member_case(base: dict, values: dict[str, Any], i: int, n: int, source: str) -> Case:
    from ..driver import build_solver

    data = copy.deepcopy(base)
    where = f"in member {i} of {n} ({describe_member(values)})"
    try:
        for key, value in values.items():
            set_key_path(data, key, python_value(value), source)
        case = parse_case(data, source)
        build_solver(case)
    except CaseError as exc:
        raise CaseError(f"{exc.detail}, {where}", source=source, key=exc.key) from None
    return case


def member_layout(case: Case) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Output times and the per-output axes of a case, dim -> values in the fields' order:
    ``x`` nodes (cable), ``y`` and ``x`` nodes (sheet) or ``cell`` indices (point)."""
    from ..driver import output_times
    from ..problem import build_problem

    t = case.time
    times = output_times(t.n_steps, t.steps_per_output, t.dt)
    problem = build_problem(case)
    if problem.is_sheet:
        return times, {"y": problem.grid.y, "x": problem.grid.x}
    if problem.is_cable:
        return times, {"x": problem.grid.x}
    return times, {"cell": np.arange(problem.size)}


def _check_same_shapes(cases: list[Case], values: dict, source: str) -> None:
    times0, axes0 = member_layout(cases[0])
    for i, case in enumerate(cases[1:], start=1):
        times, axes = member_layout(case)
        if (list(axes) != list(axes0) or times.shape != times0.shape
                or any(axes[d].shape != axes0[d].shape for d in axes)
                or not np.allclose(times, times0)
                or not all(np.allclose(axes[d], axes0[d]) for d in axes)):
            member = describe_member({k: v[i] for k, v in values.items()})
            raise CaseError(
                "keep: fields needs every member on the same nodes and output times, but "
                f"member {i} ({member}) differs from member 0; vary neither domain nor time "
                "keys, or use keep: summary",
                source=source, key="keep",
            )
