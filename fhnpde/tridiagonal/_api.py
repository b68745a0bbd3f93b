"""Front end: validate and broadcast the input, pick the method, solve or factorise."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from ._errors import PivotError
from ._registry import Method, get_method

ArrayLike = Any  # numpy or cupy array, or a numba.cuda device array, or anything np.asarray takes

_MODULES: dict[str, Any] = {}


def _module(method: Method):
    mod = _MODULES.get(method.name)
    if mod is None:
        reason = method.unavailable_reason()
        if reason is not None:
            raise RuntimeError(reason)
        mod = _MODULES[method.name] = method.load()
    return mod


# -- input -----------------------------------------------------------------------------------


def placement_of(*arrays: ArrayLike) -> str:
    """``"numpy"``, ``"cupy"`` or ``"cuda"`` (other CUDA arrays, e.g. numba device arrays).

    Decided without importing cupy or numba: an object is on the GPU if it exposes
    ``__cuda_array_interface__`` or is a numba device array (``__cuda_ndarray__``, which the
    CUDA simulator's arrays also carry); it is a cupy array only if cupy is already imported.
    """
    placement = "numpy"
    for a in arrays:
        if hasattr(a, "__cuda_array_interface__") or getattr(a, "__cuda_ndarray__", False):
            import sys

            cupy = sys.modules.get("cupy")
            if cupy is not None and isinstance(a, cupy.ndarray):
                placement = "cupy" if placement == "numpy" else placement
            else:
                return "cuda"
    return placement


def namespace_of(placement: str):
    if placement == "cupy":
        import cupy

        return cupy
    return np


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def float_dtype(*dtypes: Any) -> np.dtype:
    """The dtype a solve computes in: float32 if every input is float32 (or smaller), else float64."""
    first = dtypes[0]
    if first in _FLOATS and all(dt == first for dt in dtypes):
        return np.dtype(first)
    dt = np.result_type(*dtypes)
    if dt.kind == "c":
        raise TypeError(
            "complex tridiagonal systems are not supported; solve real and imaginary parts"
        )
    if dt.kind not in "biuf":
        raise TypeError(f"tridiagonal coefficients must be real numbers, got dtype {dt}")
    if dt.kind == "f" and dt.itemsize <= 4:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def batch_shape_of(shapes: list[tuple[int, ...]], names: tuple[str, ...]) -> tuple[int, ...]:
    """The broadcast of the leading (batch) axes; the last axes must all have the same length."""
    for s, name in zip(shapes, names, strict=True):
        if len(s) == 0:
            raise ValueError(
                f"tridiagonal {name} must have at least one axis (length n), got a scalar"
            )
    n = shapes[-1][-1]
    if any(s[-1] != n for s in shapes):
        got = ", ".join(f"{name} {s}" for s, name in zip(shapes, names, strict=True))
        raise ValueError(
            f"tridiagonal arrays must share their last axis (length n; lower[..., 0] and "
            f"upper[..., -1] are ignored, so lower and upper have length n too); got {got}"
        )
    if n < 1:
        raise ValueError("tridiagonal systems need n >= 1 unknowns, got n = 0")
    first = shapes[0]
    if all(s == first for s in shapes):
        return first[:-1]
    try:
        return tuple(np.broadcast_shapes(*(s[:-1] for s in shapes)))
    except ValueError:
        got = ", ".join(f"{name} {s}" for s, name in zip(shapes, names, strict=True))
        raise ValueError(
            f"the leading (batch) axes of the tridiagonal arrays do not broadcast: {got}"
        ) from None


def as_rows(xp, a, batch_shape: tuple[int, ...], n: int):
    """A C-contiguous 2-D view/copy of ``a`` with one row per system, or one row if shared.

    Shared coefficients (batch size 1) stay one row, so a matrix broadcast against a batch
    of right-hand sides is not copied; a kernel uses row ``j if rows > 1 else 0``.
    """
    nsys = math.prod(batch_shape)
    if a.shape[:-1] == batch_shape:
        rows = a.reshape(nsys, n)
    elif a.size == n:
        rows = a.reshape(1, n)
    else:  # partly broadcast, e.g. (2, 1, n) against (1, 4, n): materialise
        rows = xp.broadcast_to(a, batch_shape + (n,)).reshape(nsys, n)
    return xp.ascontiguousarray(rows)


def _prepare(lower, diag, upper, rhs):
    arrays = (lower, diag, upper, rhs)
    if type(rhs) is np.ndarray and rhs.ndim >= 1 and rhs.shape[-1] >= 1 and rhs.dtype in _FLOATS:
        # fast path (one solve per time step matters): numpy arrays of one shape and dtype
        shape, dtype = rhs.shape, rhs.dtype
        if all(type(a) is np.ndarray and a.shape == shape and a.dtype == dtype for a in arrays[:3]):
            return arrays, shape[:-1], "numpy"
    placement = placement_of(*arrays)
    if placement == "cuda":  # numba device arrays: no casting or broadcasting here
        dtype = float_dtype(*(a.dtype for a in arrays))
        if any(a.dtype != dtype for a in arrays):
            raise TypeError("device arrays must all be float32 or all float64")
        shapes = [tuple(a.shape) for a in arrays]
        return arrays, batch_shape_of(shapes, _NAMES), placement
    xp = namespace_of(placement)
    arrays = tuple(xp.asarray(a) for a in arrays)
    dtype = float_dtype(*(a.dtype for a in arrays))
    arrays = tuple(a if a.dtype == dtype else a.astype(dtype) for a in arrays)
    return arrays, batch_shape_of([a.shape for a in arrays], _NAMES), placement


_NAMES = ("lower", "diag", "upper", "rhs")


def _placed(method: Method, placement: str) -> Method:
    """The method that runs on arrays living where ``placement`` says."""
    if placement == "numpy" or method.placement == "cuda":
        return method
    if method.placement == "host":
        raise ValueError(
            f"tridiagonal method {method.name!r} runs on the CPU, but the arrays are on a GPU; "
            "use method='cyclic-reduction' or 'cyclic-reduction-cuda', or move them to numpy"
        )
    if placement == "cuda":  # numba device arrays: only a kernel can take them
        return get_method(method.name + "-cuda")
    return method


# -- public API ------------------------------------------------------------------------------


def solve(
    lower: ArrayLike,
    diag: ArrayLike,
    upper: ArrayLike,
    rhs: ArrayLike,
    method: str = "thomas",
) -> ArrayLike:
    """Solve the tridiagonal systems ``A x = rhs``.

    Row i of A reads ``lower[i] x[i-1] + diag[i] x[i] + upper[i] x[i+1] = rhs[i]``;
    ``lower[..., 0]`` and ``upper[..., -1]`` are ignored (whatever they hold). All four
    arguments have the same last-axis length n >= 1 and may carry leading batch axes, which
    broadcast against each other (e.g. one matrix of shape (n,) against a batch of
    right-hand sides of shape (B, n): the matrix is not copied).

    Returns an array of shape ``broadcast(batch axes) + (n,)``: float32 if every input is
    float32 (computed in float32), else float64. Arrays on a GPU (cupy, numba device
    arrays) stay there and need a method that runs there.

    method: a name in ``fhnpde.tridiagonal.METHODS``: ``"thomas"`` (default),
    ``"cyclic-reduction"``, ``"cyclic-reduction-cuda"``, ``"scipy"``. Thomas and cyclic
    reduction do not pivot: a zero or non-finite pivot raises :class:`PivotError` (use them
    on diagonally dominant matrices, as diffusion operators are).
    """
    spec = get_method(method)
    (lower, diag, upper, rhs), batch_shape, placement = _prepare(lower, diag, upper, rhs)
    spec = _placed(spec, placement)
    return _module(spec).solve(lower, diag, upper, rhs, batch_shape)


def factorize(
    lower: ArrayLike,
    diag: ArrayLike,
    upper: ArrayLike,
    method: str = "thomas",
) -> Factorization:
    """Factorise a constant tridiagonal matrix (or a batch of them) to solve with it many times.

    Same conventions as :func:`solve` (``lower[..., 0]`` and ``upper[..., -1]`` ignored, leading
    batch axes broadcast). ``factorize(l, d, u, m).solve(rhs)`` equals ``solve(l, d, u, rhs, m)``
    to rounding. For ``"thomas"`` the elimination is done once (reciprocal pivots, scaled lower
    and modified upper coefficients are stored) and each solve is one forward and one backward
    sweep without divisions; ``"scipy"`` stores LAPACK gttrf's LU factors; other methods keep
    the validated matrix and solve from it.
    """
    spec = get_method(method)
    (lower, diag, upper), batch_shape, placement = _prepare_matrix(lower, diag, upper)
    spec = _placed(spec, placement)
    return _module(spec).factorize(lower, diag, upper, batch_shape)


def _prepare_matrix(lower, diag, upper):
    arrays = (lower, diag, upper)
    placement = placement_of(*arrays)
    if placement == "cuda":
        dtype = float_dtype(*(a.dtype for a in arrays))
        if any(a.dtype != dtype for a in arrays):
            raise TypeError("device arrays must all be float32 or all float64")
        return arrays, batch_shape_of([tuple(a.shape) for a in arrays], _NAMES[:3]), placement
    xp = namespace_of(placement)
    arrays = tuple(xp.asarray(a) for a in arrays)
    dtype = float_dtype(*(a.dtype for a in arrays))
    arrays = tuple(a if a.dtype == dtype else a.astype(dtype) for a in arrays)
    return arrays, batch_shape_of([a.shape for a in arrays], _NAMES[:3]), placement


class Factorization(ABC):
    """A factorised tridiagonal matrix (or batch of matrices); :meth:`solve` as often as needed.

    Attributes: ``method`` (name), ``n``, ``batch_shape`` (the matrices' batch axes),
    ``dtype`` (the right-hand sides are cast to it; the solution has it).
    """

    method: str

    def __init__(self, n: int, batch_shape: tuple[int, ...], dtype: Any, xp: Any = np) -> None:
        self.n = int(n)
        self.batch_shape = tuple(batch_shape)
        self.dtype = np.dtype(dtype)
        self.xp = xp

    def solve(self, rhs: ArrayLike) -> ArrayLike:
        """Solve ``A x = rhs``; rhs has shape (..., n), its batch axes broadcast with the matrix's."""
        if placement_of(rhs) == "cuda":
            shape = tuple(rhs.shape)
        else:
            rhs = self.xp.asarray(rhs)
            if rhs.dtype != self.dtype:
                rhs = rhs.astype(self.dtype)
            shape = rhs.shape
        if len(shape) == 0 or shape[-1] != self.n:
            raise ValueError(
                f"rhs must have shape (..., {self.n}) for this factorisation, got {shape}"
            )
        try:
            batch_shape = tuple(np.broadcast_shapes(self.batch_shape, shape[:-1]))
        except ValueError:
            raise ValueError(
                f"rhs batch axes {shape[:-1]} do not broadcast with the factorised matrices' "
                f"batch axes {self.batch_shape}"
            ) from None
        return self._solve(rhs, batch_shape)

    @abstractmethod
    def _solve(self, rhs: ArrayLike, batch_shape: tuple[int, ...]) -> ArrayLike:
        """Implemented by each method's subclass."""

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} method={self.method!r} n={self.n} "
            f"batch_shape={self.batch_shape} dtype={self.dtype}>"
        )


class StoredMatrixFactorization(Factorization):
    """For methods without a separate factor step: keep the validated matrix, solve from it."""

    def __init__(self, method: str, solve_fn, lower, diag, upper, batch_shape, xp=np) -> None:
        super().__init__(diag.shape[-1], batch_shape, diag.dtype, xp)
        self.method = method
        self._solve_fn = solve_fn
        self._matrix = (lower, diag, upper)

    def _solve(self, rhs, batch_shape):
        return self._solve_fn(*self._matrix, rhs, batch_shape)


def raise_pivot_error(
    method: str,
    batch_shape: tuple[int, ...],
    bad_rows,
    bad_values=None,
    *,
    detail: str = "",
    hint: str | None = None,
) -> None:
    """Raise PivotError for the first system whose entry in ``bad_rows`` (flat, -1 = fine) is >= 0."""
    bad_rows = np.asarray(bad_rows).reshape(-1)
    failed = np.flatnonzero(bad_rows >= 0)
    if failed.size == 0:
        return
    j = int(failed[0])
    system = tuple(int(i) for i in np.unravel_index(j, batch_shape)) if batch_shape else ()
    value = None if bad_values is None else float(np.asarray(bad_values).reshape(-1)[j])
    raise PivotError(method, system, int(bad_rows[j]), value, detail=detail, hint=hint)
