"""The Python API a notebook calls (DESIGN §8): ``fhnpde.solve`` returns an xarray Dataset.

    import fhnpde
    case = fhnpde.load_case("cases/divergent.yaml")            # or fhnpde.Case.from_dict({...})
    case = case.with_changes({"time.dt": 0.01, "solver.method": "crank-nicolson"})
    ds = fhnpde.solve(case)                                    # in memory, the store's layout
    ds = fhnpde.solve(case, store="runs/x.zarr", progress=True) # the same, also in a store
    ds.attrs["status"], ds.attrs["stats"]

The CLI's ``run`` is the same path with a store. Bad input raises :class:`fhnpde.CaseError`
(its ``key`` names the key path); a blow-up raises nothing: the Dataset comes back with status
``failed`` and the outputs before it, exactly as the store would hold them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .case import Case, CaseError, load_case

__all__ = ["as_case", "solve"]


def as_case(case: Case | Mapping[str, Any] | str | Path) -> Case:
    """A :class:`Case` from a Case, a mapping of case keys, or a case file's path."""
    if isinstance(case, Case):
        return case
    if isinstance(case, Mapping):
        return Case.from_dict(case)
    if isinstance(case, str | Path):
        return load_case(case)
    raise CaseError(f"solve() takes a Case, a mapping of case keys or a case file's path, "
                    f"got {type(case).__name__}")


def _check_memory(case: Case, force: bool) -> None:
    """The run's memory estimate plus every output kept in memory, checked before it runs."""
    from .resources import F8, check, ensemble_members, estimate_run, n_outputs

    estimate = estimate_run(case, store=False)
    size = case.domain.size if case.is_cable else ensemble_members(case)
    kept = 2 * 2 * F8 * n_outputs(case.time) * size  # v and w: the list and the final array
    estimate = dataclasses.replace(
        estimate, memory=estimate.memory + kept,
        memory_parts={**estimate.memory_parts, "outputs kept in memory": kept},
        memory_fix=("save less often (time.save_every)",
                    "pass store=PATH to write them to a store instead", *estimate.memory_fix))
    check(estimate, None, force=force)


def solve(case: Case | Mapping[str, Any] | str | Path, *, store: str | Path | None = None,
          overwrite: bool = False, progress: bool = False, force: bool = False):
    """Run ``case`` and return its outputs as an :class:`xarray.Dataset`.

    Without ``store`` every output is kept in memory (refused up front, like ``run``, if it
    would not fit, unless ``force``); with ``store`` the run is written there as
    ``python -m fhnpde run --out STORE`` writes it (``overwrite`` as ``--overwrite``) and the
    store is returned, opened lazily. ``progress`` shows a progress bar on a terminal.
    The Dataset's attributes hold ``status`` (``complete | failed | interrupted``), ``stats``
    and the resolved case; a failed run's message is in ``attrs["message"]``.
    """
    from .driver import (
        BlowUpGuard,
        ProgressBar,
        RunClock,
        build_solver,
        integrate,
        run_case,
        run_layout,
    )
    from .store import MemoryRecorder, open_run

    case = as_case(case)
    if store is not None:
        result = run_case(case, out=store, overwrite=overwrite, quiet=not progress, force=force)
        ds = open_run(result.path)
        if result.message:
            ds.attrs["message"] = result.message
        return ds
    import numpy as np

    with RunClock() as clock:
        _check_memory(case, force)
        problem, solver = build_solver(case)
        recorder = MemoryRecorder(run_layout(case, problem, solver))
        with np.errstate(over="ignore", invalid="ignore"):  # the guard reports a blow-up
            result = integrate(solver, solver.init(), case,
                               [BlowUpGuard(), recorder, ProgressBar(not progress)],
                               clock=clock)
    extra = {"message": result.message} if result.message else {}
    return recorder.dataset(**extra)
