"""Recorded data as a loss: the model's outputs selected at the data's coordinates.

``data`` is an :class:`xarray.Dataset` (or a store path, opened with
:func:`fhnpde.open_run`) holding ``v`` (and optionally ``w``) with dims ``time`` and ``x`` for
a cable, ``time``, ``y`` and ``x`` for a sheet, ``time`` and ``member`` for a point model (in
any order). It may be observed at a **subset** of the case's output times and nodes: every
data time must be one of the case's output times (within 1e-6 dt) and every data position one
of its nodes (within 1e-6 dx; on a sheet the data's x and y each a subset of the sheet's, so
the observed nodes are the grid of those rows and columns), and
the model's outputs are *selected* there, not interpolated, so the loss compares like with like and
adds no interpolation error. Missing observations (NaN) are left out. The loss is

.. math::

    L = \\sum_{u \\in \\text{variables}} \\frac{1}{|O_u|} \\sum_{(t, x) \\in O_u}
        \\big(u_{\\text{model}}(t, x) - u_{\\text{data}}(t, x)\\big)^2

the mean square over the observed entries ``O_u`` of each variable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..case import CaseError


@dataclass
class Observations:
    """Where the data lie among the run's outputs, and their values."""

    time_index: np.ndarray
    node_index: np.ndarray  # along x (a cable, a sheet) or the members
    values: dict  # variable -> numpy array (times, [rows,] nodes), NaN where not observed
    row_index: np.ndarray | None = None  # along y (a sheet)


def open_data(data, key: str = "data"):
    """A Dataset from a Dataset or a store path (CaseError naming ``key`` otherwise)."""
    if isinstance(data, str | Path):
        from ..store import open_run

        try:
            return open_run(data)
        except CaseError as exc:
            raise CaseError(exc.detail, key=key) from None
    if not hasattr(data, "data_vars"):
        raise CaseError(f"must be an xarray Dataset or a store path, got {type(data).__name__}",
                        key=key)
    return data


def _match(wanted: np.ndarray, have: np.ndarray, tol: float) -> np.ndarray:
    """Index in ``have`` (sorted) of each of ``wanted``, -1 where none lies within ``tol``."""
    pos = np.clip(np.searchsorted(have, wanted), 1, max(1, have.size - 1))
    left = np.clip(pos - 1, 0, have.size - 1)
    right = np.clip(pos, 0, have.size - 1)
    nearest = np.where(np.abs(have[left] - wanted) <= np.abs(have[right] - wanted), left, right)
    return np.where(np.abs(have[nearest] - wanted) <= tol, nearest, -1)


def observations(case, data, variables=("v",), key: str = "data") -> Observations:
    """The data of ``variables`` located among the outputs of ``case`` (module docstring)."""
    from ..driver import output_times
    from ..problem import build_problem

    ds = open_data(data, key)
    space = ("y", "x") if case.is_sheet else ("x",) if case.is_cable else ("member",)
    spec = case.time
    times = output_times(spec.n_steps, spec.steps_per_output, spec.dt)
    for name in variables:
        if name not in ds.data_vars:
            held = ", ".join(map(str, ds.data_vars))
            raise CaseError(f"has no variable {name!r} (it holds {held}); give data with the "
                            "variables fitted", key=key)
        if set(ds[name].dims) != {"time", *space}:
            raise CaseError(f"{name} has dims {tuple(ds[name].dims)}, but the case's outputs have "
                            f"{('time', *space)}; give data of the same kind of run", key=key)
    t_data = np.asarray(ds["time"].values, dtype=float)
    ti = _match(t_data, times, 1e-6 * spec.dt)
    if (ti < 0).any():
        bad = t_data[np.argmax(ti < 0)]
        raise CaseError(f"time {bad:g} is not an output time of the case (every "
                        f"{spec.steps_per_output * spec.dt:g} from 0 to {times[-1]:g}); record "
                        "the data at output times or change time.save_every / time.t_end",
                        key=key)
    ri = None
    if case.is_cable:
        grid = build_problem(case).grid
        if case.is_sheet:
            ni, ri = _nodes(ds, "x", grid.axes[0], key), _nodes(ds, "y", grid.axes[1], key)
        else:
            ni = _nodes(ds, "x", grid, key)
    else:
        members = np.asarray(ds["member"].values)
        size = build_problem(case).size
        if members.min(initial=0) < 0 or members.max(initial=0) >= size:
            raise CaseError(f"has members outside 0 .. {size - 1} of the case's ensemble", key=key)
        ni = members.astype(int)
    values = {name: np.asarray(ds[name].transpose("time", *space).values, dtype=float)
              for name in variables}
    if not any(np.isfinite(v).any() for v in values.values()):
        raise CaseError("holds no finite value of " + ", ".join(variables), key=key)
    return Observations(ti, ni, values, ri)


def _nodes(ds, name: str, grid, key: str) -> np.ndarray:
    """Index among the nodes of the cable grid ``grid`` of each position of the data's
    coordinate ``name`` (x, or y on a sheet); CaseError when one is not a node."""
    positions = np.asarray(ds[name].values, dtype=float)
    index = _match(positions, grid.x, 1e-6 * grid.dx)
    if (index < 0).any():
        bad = positions[np.argmax(index < 0)]
        step = "dx" if name == "x" else "dy"
        raise CaseError(f"is on another grid: {name} = {bad:g} is not a node of the case "
                        f"({grid.nx} nodes along {name}, {step} = {grid.dx:g}); give data on the "
                        "case's nodes or a subset of them", key=key)
    return index


def squared_error(case, data, variables=("v",), key: str = "data"):
    """A loss ``loss(run)``: the mean square error of the run against ``data`` (module
    docstring), for :func:`fhnpde.gradient` and :func:`fhnpde.fit`."""
    import torch

    obs = observations(case, data, variables, key)
    ti = torch.as_tensor(obs.time_index)
    ni = torch.as_tensor(obs.node_index)
    ri = None if obs.row_index is None else torch.as_tensor(obs.row_index)
    parts = []
    for name, values in obs.values.items():
        mask = np.isfinite(values)
        parts.append((name, torch.as_tensor(np.where(mask, values, 0.0)),
                      torch.as_tensor(mask), int(mask.sum())))

    def loss(run):
        total = 0.0
        for name, values, mask, count in parts:
            model = getattr(run, name)[ti]
            model = model[:, ni] if ri is None else model[:, ri][:, :, ni]
            error = torch.where(mask, model - values, 0.0)
            total = total + (error * error).sum() / count
        return total

    return loss
