"""Array namespaces (numpy, cupy) and the numba compiler, imported only when used."""

from __future__ import annotations

import importlib
import importlib.util
from functools import cache

import numpy as np

BACKENDS = ("numpy", "numba", "cupy")


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run on this machine."""


@cache
def numba_usable() -> bool:
    return importlib.util.find_spec("numba") is not None


@cache
def cupy_usable() -> bool:
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        cupy = importlib.import_module("cupy")
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - any CUDA failure means "not usable"
        return False


def namespace(backend: str):
    """The array module a backend computes with: numpy for numpy/numba, cupy for cupy."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    if backend == "cupy":
        if not cupy_usable():
            raise BackendUnavailable(
                "cupy is not usable here (not installed or no CUDA GPU); "
                "install fhnpde[gpu] on a GPU machine or use backend numba"
            )
        return importlib.import_module("cupy")
    if backend == "numba" and not numba_usable():
        raise BackendUnavailable("numba is not installed; pip install numba or use backend numpy")
    return np


def array_namespace(*arrays):
    """numpy or cupy, from the arrays themselves (cupy only if already imported)."""
    import sys

    cupy = sys.modules.get("cupy")
    if cupy is not None:
        return cupy.get_array_module(*arrays)
    return np


def to_numpy(a) -> np.ndarray:
    if isinstance(a, np.ndarray):
        return a
    get = getattr(a, "get", None)
    return np.asarray(get() if get is not None else a)


def kernels():
    """The compiled kernels (imports numba on first use)."""
    if not numba_usable():
        raise BackendUnavailable("numba is not installed; pip install numba or use backend numpy")
    return importlib.import_module("fhnpde._kernels")
