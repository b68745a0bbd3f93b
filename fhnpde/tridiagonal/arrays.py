"""What every method shares: where arrays live, dtypes and batch shapes, rows, the
Factorization base class and the pivot error of a batch."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from .errors import PivotError

ArrayLike = Any  # numpy or cupy array, or a numba.cuda device array, or anything np.asarray takes


# -- input -----------------------------------------------------------------------------------


def placement_of(*arrays: ArrayLike) -> str:
    """``"numpy"``, ``"cupy"`` or ``"cuda"`` (other CUDA arrays, e.g. numba device arrays).

    Decided without importing cupy or numba: an object is on the GPU if it exposes
    ``__cuda_array_interface__`` or is a numba device array (``__cuda_ndarray__``, which the
    CUDA simulator's arrays also carry); it is a cupy array only if cupy is already imported.
    """
    placement = "numpy"
    for a in arrays:
        if type(a).__module__.startswith("torch"):
            return "array-api"  # torch tensors on any device: through their namespace
        if hasattr(a, "__cuda_array_interface__") or getattr(a, "__cuda_ndarray__", False):
            import sys

            cupy = sys.modules.get("cupy")
            if cupy is not None and isinstance(a, cupy.ndarray):
                placement = "cupy" if placement == "numpy" else placement
            else:
                return "cuda"
        elif not isinstance(a, np.ndarray) and hasattr(a, "__array_namespace__"):
            return "array-api"  # e.g. array_api_strict
    return placement


def namespace_of(placement: str, *arrays):
    """The namespace of arrays placed as ``placement`` says: numpy, or the array-API
    namespace (``array_api_compat``) of cupy or of ``arrays``."""
    if placement == "cupy":
        import array_api_compat.cupy

        return array_api_compat.cupy
    if placement == "array-api":
        import array_api_compat

        return array_api_compat.array_namespace(*arrays)
    return np


FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def float_dtype(*dtypes: Any) -> np.dtype:
    """The dtype a solve computes in: float32 if every input is float32 (or smaller), else
    float64."""
    first = dtypes[0]
    if first in FLOATS and all(dt == first for dt in dtypes):
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


class Factorization(ABC):
    """A factorised tridiagonal matrix (or batch of matrices); :meth:`solve` as often as needed.

    Attributes: ``method`` (name), ``n``, ``batch_shape`` (the matrices' batch axes),
    ``dtype`` (the right-hand sides are cast to it; the solution has it).
    """

    method: str

    def __init__(self, n: int, batch_shape: tuple[int, ...], dtype: Any, xp: Any = np) -> None:
        self.n = int(n)
        self.batch_shape = tuple(batch_shape)
        self.dtype = np.dtype(dtype) if isinstance(dtype, np.dtype | type) else dtype
        self.xp = xp

    def solve(self, rhs: ArrayLike, *, axis: int = -1, out: ArrayLike | None = None) -> ArrayLike:
        """Solve ``A x = rhs``; rhs has shape (..., n), its batch axes broadcast with the
        matrix's.

        ``axis``: the axis of rhs the systems run along (default the last). Another axis, e.g.
        ``axis=-2`` for the columns of a C-order (ny, nx) array, is solved in place of a
        transpose: the other axes, in order, are the batch axes broadcast with the matrix's.
        With one shared matrix and method ``"thomas"`` the sweep runs down the rows of the
        array, vectorised over the columns (no transposed copy).
        ``out``: an array shaped like the solution (rhs's shape when the matrix's batch
        axes add none) and of the factorisation's dtype to write x into, and return; reusing
        one saves the first-touch page faults of a fresh array every solve.
        """
        if placement_of(rhs) == "cuda":
            shape = tuple(rhs.shape)
        else:
            rhs = self.xp.asarray(rhs)
            if rhs.dtype != self.dtype:
                rhs = self.xp.astype(rhs, self.dtype)
            shape = tuple(rhs.shape)
        ndim = len(shape)
        if ndim == 0:
            raise ValueError(f"rhs must have shape (..., {self.n}) for this factorisation, got ()")
        if not -ndim <= axis < ndim:
            raise ValueError(f"axis {axis} is out of range for rhs of shape {shape}")
        axis = axis % ndim
        if shape[axis] != self.n:
            where = f"(..., {self.n})" if axis == ndim - 1 else f"{self.n} along axis {axis}"
            raise ValueError(f"rhs must have shape {where} for this factorisation, got {shape}")
        batch = shape[:axis] + shape[axis + 1 :]
        try:
            batch_shape = tuple(np.broadcast_shapes(self.batch_shape, batch))
        except ValueError:
            raise ValueError(
                f"rhs batch axes {batch} do not broadcast with the factorised matrices' "
                f"batch axes {self.batch_shape}"
            ) from None
        if out is not None:
            if batch_shape != batch or tuple(out.shape) != shape or out.dtype != self.dtype:
                raise ValueError(
                    f"out must have shape {batch_shape[:axis] + (self.n,) + batch_shape[axis:]} "
                    f"and dtype {self.dtype}, got {tuple(out.shape)} {out.dtype}"
                )
        if axis != ndim - 1:
            return self._solve_along(rhs, axis, batch_shape, out)
        if out is None:
            return self._solve(rhs, batch_shape)
        return self._solve_into(rhs, batch_shape, out)

    def _solve_into(self, rhs: ArrayLike, batch_shape: tuple[int, ...], out: ArrayLike):
        """Solve into ``out`` (a method that can write there directly overrides this)."""
        out[...] = self._solve(rhs, batch_shape)
        return out

    def _solve_along(self, rhs, axis: int, batch_shape, out):
        """Systems along ``axis`` (not the last): by moving it last and back (a method with
        a strided sweep overrides this)."""
        if placement_of(rhs) == "cuda":
            raise ValueError(
                f"solving along axis {axis} needs cupy or host arrays; numba device arrays "
                "are solved along their last axis only: move the axis there on the device first"
            )
        xp = self.xp
        x = xp.moveaxis(self.solve(xp.moveaxis(rhs, axis, -1)), -1, axis)
        if out is None:
            return x
        out[...] = x
        return out

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
        # tuple(): the CUDA simulator's device-array shape refuses negative indices
        super().__init__(tuple(diag.shape)[-1], batch_shape, diag.dtype, xp)
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
    """Raise PivotError for the first system whose entry in ``bad_rows`` (flat, -1 = fine)
    is >= 0."""
    bad_rows = np.asarray(bad_rows).reshape(-1)
    failed = np.flatnonzero(bad_rows >= 0)
    if failed.size == 0:
        return
    j = int(failed[0])
    system = tuple(int(i) for i in np.unravel_index(j, batch_shape)) if batch_shape else ()
    value = None if bad_values is None else float(np.asarray(bad_values).reshape(-1)[j])
    raise PivotError(method, system, int(bad_rows[j]), value, detail=detail, hint=hint)
