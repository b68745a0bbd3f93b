"""Tridiagonal methods by name; each lives in a module imported on first use.

A method module provides two functions on validated input (arrays already cast to a common
float dtype, last axes of length n, leading batch axes broadcasting to ``batch_shape``,
``lower[..., 0]`` and ``upper[..., -1]`` still holding whatever the caller put there):

    solve(lower, diag, upper, rhs, batch_shape) -> x          # shape batch_shape + (n,)
    factorize(lower, diag, upper, batch_shape) -> Factorization

and optionally ``unavailable_reason() -> str | None`` (why it cannot run on this machine).
Registering a method is all it takes for the test suite to test it.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

Placement = Literal["host", "array", "cuda"]


@dataclass(frozen=True)
class Method:
    """A registered tridiagonal method.

    name: the name users pass as ``method=``.
    module: import path of the module implementing it (imported on first use).
    summary: one line for listings and ``python -m fhnpde info``.
    pivoting: True if it pivots (then any nonsingular matrix is fine).
    placement: ``"host"`` numpy arrays only; ``"array"`` numpy or cupy arrays (array code
        written against ``xp``); ``"cuda"`` a CUDA kernel (numpy, cupy or numba device arrays).
    requires: importable packages it needs.
    """

    name: str
    module: str
    summary: str
    pivoting: bool
    placement: Placement
    requires: tuple[str, ...] = ()

    def load(self) -> ModuleType:
        """The implementing module. A host method built on numba is imported through
        :func:`fhnpde.backends.kernels`, as the solvers' kernels are: cached in fhnpde's kernel
        cache, and numba's loading counted by an open :class:`fhnpde.backends.CompileClock`."""
        if self.placement == "host" and "numba" in self.requires:
            from ..backends import kernels

            return kernels(self.module)
        return importlib.import_module(self.module)

    def unavailable_reason(self) -> str | None:
        """None if the method can run here, else a sentence saying why not."""
        for package in self.requires:
            if importlib.util.find_spec(package) is None:
                return f"tridiagonal method {self.name!r} needs {package}, which is not installed"
        check = getattr(self.load(), "unavailable_reason", None)
        return check() if check is not None else None


METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add a method to the registry (replacing one of the same name)."""
    METHODS[method.name] = method
    return method


def available_methods() -> tuple[str, ...]:
    """Names of all registered methods (including ones that cannot run on this machine)."""
    return tuple(METHODS)


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        valid = ", ".join(repr(m) for m in METHODS)
        raise ValueError(f"unknown tridiagonal method {name!r}; valid methods: {valid}") from None


register_method(
    Method(
        name="thomas",
        module="fhnpde.tridiagonal.thomas",
        summary="Thomas's algorithm (numba; two-ended sweep, batch in parallel), no pivoting",
        pivoting=False,
        placement="host",
        requires=("numba",),
    )
)
register_method(
    Method(
        name="cyclic-reduction",
        module="fhnpde.tridiagonal.cyclic_reduction",
        summary="cyclic reduction as array code (numpy or cupy), vectorised over the batch",
        pivoting=False,
        placement="array",
    )
)
register_method(
    Method(
        name="cyclic-reduction-cuda",
        module="fhnpde.tridiagonal.cuda",
        summary="cyclic reduction as a numba.cuda kernel, one thread block per system",
        pivoting=False,
        placement="cuda",
        requires=("numba",),
    )
)
register_method(
    Method(
        name="scipy",
        module="fhnpde.tridiagonal.lapack",
        summary="LAPACK gtsv/gttrf through scipy (partial pivoting), the reference",
        pivoting=True,
        placement="host",
        requires=("scipy",),
    )
)
