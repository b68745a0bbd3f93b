"""Front end: validate and broadcast the input, pick the method, solve or factorise."""

from __future__ import annotations

from typing import Any

import numpy as np

from .arrays import (
    FLOATS,
    ArrayLike,
    Factorization,
    batch_shape_of,
    float_dtype,
    namespace_of,
    placement_of,
)
from .registry import Method, get_method

_MODULES: dict[str, Any] = {}


def _module(method: Method):
    mod = _MODULES.get(method.name)
    if mod is None:
        reason = method.unavailable_reason()
        if reason is not None:
            raise RuntimeError(reason)
        mod = _MODULES[method.name] = method.load()
    return mod


def load_method(name: str) -> None:
    """Import the module of the method ``name`` now (RuntimeError saying why it cannot run
    here), so that a later solve does not pay for it."""
    _module(get_method(name))


def _prepare(lower, diag, upper, rhs):
    arrays = (lower, diag, upper, rhs)
    if type(rhs) is np.ndarray and rhs.ndim >= 1 and rhs.shape[-1] >= 1 and rhs.dtype in FLOATS:
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
    if placement == "array-api":
        return *_prepare_array_api(arrays, _NAMES), placement
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
    if placement == "array-api":
        return *_prepare_array_api(arrays, _NAMES[:3]), placement
    xp = namespace_of(placement)
    arrays = tuple(xp.asarray(a) for a in arrays)
    dtype = float_dtype(*(a.dtype for a in arrays))
    arrays = tuple(a if a.dtype == dtype else a.astype(dtype) for a in arrays)
    return arrays, batch_shape_of([a.shape for a in arrays], _NAMES[:3]), placement


def _prepare_array_api(arrays, names):
    """(arrays, batch shape) of arrays of another array-API namespace (torch,
    array_api_strict): real floating arrays, cast to the dtype of the last (rhs or upper)."""
    xp = namespace_of("array-api", *arrays)
    dtype = arrays[-1].dtype
    if not xp.isdtype(dtype, "real floating"):
        raise TypeError(f"tridiagonal arrays must be real floating, got {dtype}")
    arrays = tuple(a if a.dtype == dtype else xp.astype(a, dtype) for a in arrays)
    return arrays, batch_shape_of([tuple(a.shape) for a in arrays], names)
