"""fhnpde: FitzHugh–Nagumo point models and cables, solved to their declared order.

``import fhnpde`` loads only the core (numpy, yaml and the case schema); numba, xarray/zarr,
cupy and torch are imported when first used.
"""

from __future__ import annotations

import sys as _sys


def _command_loading() -> str | None:
    """The command of ``python -m fhnpde COMMAND`` while the package is imported for it
    (``sys.argv[0]`` is ``-m`` until the module runs), else None."""
    argv = getattr(_sys, "orig_argv", [])
    if _sys.argv[:1] != ["-m"] or "-m" not in argv:
        return None
    at = argv.index("-m")
    return _sys.argv[1] if argv[at + 1:at + 2] == ["fhnpde"] and len(_sys.argv) > 1 else None


_command = _command_loading()
if _command is not None:
    # no cyclic garbage collection while the program's modules load: fhnpde/__main__.py
    # freezes them and collects again once they are in (numpy's import alone ran 39
    # collections, 5-8 ms, before the package's own __main__ could say so)
    import gc as _gc

    _gc.disable()
if _command == "run":
    # A run calls no BLAS (its kernels are fhnpde's own): the thread pool OpenBLAS starts
    # when numpy is imported (35-60 ms of the command, docs/performance.md) is not started
    # for it. A value the user set is kept.
    import os as _os

    _os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# numpy first, at the package's own depth: imported deeper (inside the case layer's modules,
# under runpy) the typing-heavy numpy._typing modules ran with CPython 3.11's frame stack
# at the edge of one of its 16 KiB chunks, which is then mapped and unmapped on every call
# that crosses it: 3,221 mmap/munmap pairs in `python -m fhnpde run`, 5 from here
# (strace; import of the package 229 -> 186 ms, -X importtime, medians of 15)
import numpy as _np  # noqa: E402, F401

from .case import Case, CaseError, load_case  # noqa: E402
from .version import __version__  # noqa: E402


def run(case, *, out=None, overwrite=False, quiet=True, observers=()):
    """Run a case (a :class:`Case` or a path); returns a Result (status, stats, path)."""
    from .driver import run_case

    if not isinstance(case, Case):
        case = load_case(case)
    return run_case(case, out=out, overwrite=overwrite, quiet=quiet, observers=observers)


def solve(case, *, store=None, overwrite=False, progress=False, force=False):
    """Run a case (a :class:`Case`, a mapping or a path) and return an xarray.Dataset
    (see :func:`fhnpde.api.solve`)."""
    from .api import solve as _solve

    return _solve(case, store=store, overwrite=overwrite, progress=progress, force=force)


def gradient(case, loss, wrt, *, checkpoint=True):
    """A scalar ``loss(run)`` of a run on torch and its gradient with respect to the ``wrt``
    key paths: ``(loss, {path: gradient})`` (see :func:`fhnpde.gradients.gradient`)."""
    from .gradients import gradient as _gradient

    return _gradient(case, loss, wrt, checkpoint=checkpoint)


def fit(case, data, wrt, start=None, **options):
    """Fit the ``wrt`` values of a case to recorded data; a FitResult (fitted values, loss
    history, the fitted case; see :func:`fhnpde.gradients.fit`)."""
    from .gradients import fit as _fit

    return _fit(case, data, wrt, start, **options)


def open_run(path):
    """Open a run's store as an :class:`xarray.Dataset`."""
    from .store import open_run as _open

    return _open(path)


def __getattr__(name):
    if name == "tridiagonal":
        import importlib

        return importlib.import_module(".tridiagonal", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Case", "CaseError", "fit", "gradient", "load_case", "open_run", "run", "solve",
           "tridiagonal", "__version__"]
