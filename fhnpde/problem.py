"""From a validated case to the numbers a solver needs (:class:`~fhnpde.solvers.Problem`)."""

from __future__ import annotations

import numpy as np

from .case import Case, CaseError, ValueList
from .grid import UniformGrid
from .models import Kinetics
from .solvers.base import Problem
from .stimulus import AppliedCurrent, profile


def sample_ensemble(case: Case) -> dict[str, np.ndarray]:
    """The varied inputs of a point ensemble, one array per key (seeded, reproducible).

    ``latin-hypercube`` and ``uniform`` draw ``size`` points in the box of ranges (a
    ``{values: [...]}`` entry is drawn from its list); ``grid`` takes the product of
    ``points`` equally spaced values per range and every listed value.
    """
    ens = case.ensemble
    if ens is None:
        return {}
    keys = list(ens.vary)
    specs = [ens.vary[k] for k in keys]
    if ens.sample == "grid":
        axes = []
        for spec in specs:
            if isinstance(spec, ValueList):
                axes.append(np.asarray(spec.values, dtype=float))
            else:
                lo, hi = spec
                axes.append(np.linspace(lo, hi, 1 if lo == hi else ens.points))
        total = int(np.prod([a.size for a in axes])) if axes else 1
        if ens.size is not None and ens.size != total:
            raise CaseError(
                f"a grid of {' x '.join(str(a.size) for a in axes) or '1'} points has {total} "
                f"members, not {ens.size}; set ensemble.size: {total} or leave it out",
                key="ensemble.size",
            )
        mesh = np.meshgrid(*axes, indexing="ij") if axes else []
        return {k: m.ravel().astype(float) for k, m in zip(keys, mesh, strict=True)}
    n, d = ens.size, len(keys)
    if d == 0:
        return {}
    rng = np.random.default_rng(ens.seed)
    if ens.sample == "latin-hypercube":
        from scipy.stats import qmc

        u = qmc.LatinHypercube(d=d, seed=rng).random(n)
    else:
        u = rng.random((n, d))
    out = {}
    for j, (key, spec) in enumerate(zip(keys, specs, strict=True)):
        if isinstance(spec, ValueList):
            vals = np.asarray(spec.values, dtype=float)
            out[key] = vals[np.minimum((u[:, j] * vals.size).astype(int), vals.size - 1)]
        else:
            lo, hi = spec
            out[key] = lo + u[:, j] * (hi - lo)
    return out


def build_problem(case: Case) -> Problem:
    """Kinetics, grid, currents and initial state of a case."""
    params = dict(case.model.params)
    if case.domain is not None:
        d = case.domain
        grid = UniformGrid(d.length, d.nx, d.boundary, d.boundary_order)
        kinetics = Kinetics.create(case.model.kinetics, params)
        v0 = profile(case.initial.v, grid.x)
        w0 = profile(case.initial.w, grid.x)
        current = AppliedCurrent(case.stimuli, grid.x, 0.0, grid.nx,
                                 grid.length if grid.periodic else None)
        return Problem(case, kinetics, case.model.diffusion, grid, current, v0, w0)
    members = sample_ensemble(case)
    size = len(next(iter(members.values()))) if members else 1
    for key, values in members.items():
        if key in params:
            params[key] = values
    kinetics = Kinetics(case.model.kinetics, params)
    v0 = np.broadcast_to(members.get("v0", case.initial.v), (size,)).astype(float)
    w0 = np.broadcast_to(members.get("w0", case.initial.w), (size,)).astype(float)
    current = AppliedCurrent(case.stimuli, None, members.get("I", 0.0), size)
    return Problem(case, kinetics, case.model.diffusion, None, current, v0, w0, members)
