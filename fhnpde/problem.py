"""From a validated case to the numbers a solver needs (:class:`~fhnpde.solvers.Problem`)."""

from __future__ import annotations

import numpy as np

from .case import Case, CaseError
from .grid import SheetGrid, UniformGrid
from .models import Kinetics
from .solvers.base import Problem
from .stimulus import AppliedCurrent, profile


def sample_points(vary: dict, sample: str, size: int | None, seed: int, points: int,
                  size_key: str = "ensemble.size") -> dict[str, np.ndarray]:
    """Seeded sample points over ``vary`` (key -> ``[low, high]`` or ``{values: [...]}``).

    ``latin-hypercube`` and ``uniform`` draw ``size`` points in the box of ranges (a listed
    key draws from its list; latin-hypercube stratifies it too). ``grid`` takes the product,
    first key slowest, of each list and of ``points`` equally spaced values per range,
    rounded to 12 significant digits (0.07, not 0.07000000000000001, so ``.sel`` finds it);
    a given ``size`` must equal the product.
    """
    keys = list(vary)
    specs = [vary[k] for k in keys]
    if sample == "grid":
        axes = []
        for spec in specs:
            if not isinstance(spec, list | tuple):  # {values: [...]}; integers stay integers
                axes.append(np.asarray(spec.values))
            else:
                lo, hi = spec
                grid = np.linspace(lo, hi, 1 if lo == hi else points)
                axes.append(np.array([float(f"{g:.12g}") for g in grid]))
        total = int(np.prod([a.size for a in axes])) if axes else 1
        if size is not None and size != total:
            raise CaseError(
                f"a grid of {' x '.join(str(a.size) for a in axes) or '1'} points has {total} "
                f"members, not {size}; set {size_key.rsplit('.', 1)[-1]}: {total} or leave it out",
                key=size_key,
            )
        mesh = np.meshgrid(*axes, indexing="ij") if axes else []
        return {k: m.ravel() for k, m in zip(keys, mesh, strict=True)}
    if not keys:
        return {}
    rng = np.random.default_rng(seed)
    if sample == "latin-hypercube":
        from scipy.stats import qmc

        u = qmc.LatinHypercube(d=len(keys), seed=rng).random(size)
    else:
        u = rng.random((size, len(keys)))
    out = {}
    for j, (key, spec) in enumerate(zip(keys, specs, strict=True)):
        if not isinstance(spec, list | tuple):
            vals = np.asarray(spec.values)
            out[key] = vals[np.minimum((u[:, j] * vals.size).astype(int), vals.size - 1)]
        else:
            lo, hi = spec
            out[key] = lo + u[:, j] * (hi - lo)
    return out


def sample_ensemble(case: Case) -> dict[str, np.ndarray]:
    """The varied inputs of a point ensemble, one array per key (seeded, reproducible)."""
    ens = case.ensemble
    if ens is None:
        return {}
    return sample_points(ens.vary, ens.sample, ens.size, ens.seed, ens.points)


def build_problem(case: Case) -> Problem:
    """Kinetics, grid, currents and initial state of a case (on a sheet: a
    :class:`~fhnpde.grid.SheetGrid`, ``(ny, nx)`` initial fields and currents)."""
    params = dict(case.model.params)
    if case.is_sheet:
        d = case.domain
        grid = SheetGrid(d.length, d.nx, d.boundary, d.boundary_order)
        kinetics = Kinetics.create(case.model.kinetics, params)
        gx, gy = grid.axes
        v0 = profile(case.initial.v, grid.x, grid.y)
        w0 = profile(case.initial.w, grid.x, grid.y)
        current = AppliedCurrent(case.stimuli, grid.x, 0.0, grid.size,
                                 gx.length if grid.periodic else None, grid.y,
                                 gy.length if grid.periodic else None)
        return Problem(kinetics, case.model.diffusion, grid, current, v0, w0)
    if case.domain is not None:
        d = case.domain
        grid = UniformGrid(d.length, d.nx, d.boundary, d.boundary_order)
        kinetics = Kinetics.create(case.model.kinetics, params)
        v0 = profile(case.initial.v, grid.x)
        w0 = profile(case.initial.w, grid.x)
        current = AppliedCurrent(case.stimuli, grid.x, 0.0, grid.nx,
                                 grid.length if grid.periodic else None)
        return Problem(kinetics, case.model.diffusion, grid, current, v0, w0)
    members = sample_ensemble(case)
    size = len(next(iter(members.values()))) if members else 1
    for key, values in members.items():
        if key in params:
            params[key] = values
    kinetics = Kinetics(case.model.kinetics, params)
    v0 = np.broadcast_to(members.get("v0", case.initial.v), (size,)).astype(float)
    w0 = np.broadcast_to(members.get("w0", case.initial.w), (size,)).astype(float)
    current = AppliedCurrent(case.stimuli, None, members.get("I", 0.0), size)
    return Problem(kinetics, case.model.diffusion, None, current, v0, w0, members)
