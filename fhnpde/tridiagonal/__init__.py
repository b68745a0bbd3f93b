"""Tridiagonal linear systems, batched: ``solve(lower, diag, upper, rhs, method="thomas")``.

Row i of a system reads ``lower[i] x[i-1] + diag[i] x[i] + upper[i] x[i+1] = rhs[i]``;
``lower[..., 0]`` and ``upper[..., -1]`` are ignored. Leading axes are batch axes and
broadcast. Methods (``METHODS``, by name; an unknown name raises ValueError listing them):

- ``thomas``: Thomas's algorithm compiled with numba (two-ended sweep; batches in parallel).
- ``cyclic-reduction``: cyclic reduction as array code on numpy or cupy arrays.
- ``cyclic-reduction-cuda``: cyclic reduction as a numba.cuda kernel (one block per system).
- ``scipy``: LAPACK gtsv through scipy, with partial pivoting: the reference.

``factorize(lower, diag, upper, method)`` factorises a constant matrix once for many solves.
Thomas and cyclic reduction do not pivot and raise :class:`PivotError` on a zero or
non-finite pivot. numba, scipy and cupy are imported only when a method needs them.
"""

from __future__ import annotations

from .api import factorize, solve
from .arrays import Factorization
from .errors import PivotError
from .registry import METHODS, Method, available_methods, get_method, register_method

__all__ = [
    "METHODS",
    "Factorization",
    "Method",
    "PivotError",
    "available_methods",
    "factorize",
    "get_method",
    "register_method",
    "solve",
]
