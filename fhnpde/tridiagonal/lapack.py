"""The reference: LAPACK ``?gtsv`` / ``?gttrf`` + ``?gttrs`` through ``scipy.linalg.lapack``.

Gaussian elimination with partial (row) pivoting for tridiagonal matrices (Anderson et al.,
*LAPACK Users' Guide*, 3rd ed.): robust on any nonsingular matrix, not only diagonally
dominant ones. One LAPACK call per system (looped over the batch in Python), or one call
with all right-hand sides as columns when the batch shares one matrix.

A matrix LAPACK finds exactly singular (info > 0), or one with NaN/inf coefficients (checked
up front; LAPACK would return NaN silently), raises :class:`~fhnpde.tridiagonal.PivotError`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import lapack

from .arrays import Factorization, as_rows, raise_pivot_error

_SINGULAR = "LAPACK found the matrix exactly singular even with partial pivoting"
_SINGULAR_HINT = "check the matrix: it has no unique solution"
_NONFINITE_HINT = "the coefficients must be finite (LAPACK would return NaN without a word)"


def _routines(dtype):
    prefix = "s" if np.dtype(dtype) == np.float32 else "d"
    return (getattr(lapack, prefix + name) for name in ("gtsv", "gttrf", "gttrs"))


def _check_finite(rows, batch_shape, n) -> None:
    """PivotError for the first NaN/inf among the coefficients LAPACK would use."""
    lower, diag, upper = rows
    for name, v in (("lower", lower[:, 1:]), ("diag", diag), ("upper", upper[:, :-1])):
        bad = ~np.isfinite(v)
        if bad.any():
            j, i = np.argwhere(bad)[0]
            row = int(i) + (1 if name == "lower" else 0)
            nsys = math.prod(batch_shape)
            bad_rows = np.full(max(nsys, 1), -1)
            bad_rows[j] = row
            raise_pivot_error(
                "scipy",
                batch_shape,
                bad_rows,
                [float(v[j, i])] * len(bad_rows),
                detail=f"{name} holds {v[j, i]} in row {row}",
                hint=_NONFINITE_HINT,
            )


def solve(lower, diag, upper, rhs, batch_shape):
    """Registry entry: gtsv per system -> x of shape batch_shape + (n,)."""
    n = rhs.shape[-1]
    nsys = math.prod(batch_shape)
    gtsv, _, _ = _routines(rhs.dtype)
    rows = [as_rows(np, v, batch_shape, n) for v in (lower, diag, upper)]
    _check_finite(rows, batch_shape, n)
    d = as_rows(np, rhs, batch_shape, n)
    x = np.empty((nsys, n), dtype=rhs.dtype)
    if n == 1:  # f2py rejects the empty off-diagonals of a 1 x 1 system
        diag1 = np.broadcast_to(rows[1], (nsys, 1))
        if nsys and not diag1.all():
            bad_rows = np.where(diag1[:, 0] == 0, 0, -1)
            raise_pivot_error(
                "scipy",
                batch_shape,
                bad_rows,
                np.zeros(nsys),
                detail=_SINGULAR,
                hint=_SINGULAR_HINT,
            )
        x[...] = d / diag1
    elif all(r.shape[0] == 1 for r in rows) and nsys > 0:  # one matrix, all rhs as columns
        l1, d1, u1 = (r[0] for r in rows)
        rhs_cols = np.broadcast_to(d, (nsys, n)).T
        _, _, _, sol, info = gtsv(l1[1:], d1, u1[:-1], rhs_cols)
        _raise_singular(info, (), batch_shape, nsys)
        x[...] = sol.T
    else:
        for j in range(nsys):
            lj, dj, uj = (r[j if r.shape[0] > 1 else 0] for r in rows)
            _, _, _, sol, info = gtsv(lj[1:], dj, uj[:-1], d[j if d.shape[0] > 1 else 0, :, None])
            _raise_singular(info, np.unravel_index(j, batch_shape), batch_shape, nsys)
            x[j] = sol[:, 0]
    return x.reshape(batch_shape + (n,))


def _raise_singular(info: int, system, batch_shape, nsys) -> None:
    if info > 0:
        bad_rows = np.full(max(nsys, 1), -1)
        bad_rows[np.ravel_multi_index(system, batch_shape) if batch_shape else 0] = info - 1
        raise_pivot_error(
            "scipy",
            batch_shape,
            bad_rows,
            np.zeros(len(bad_rows)),
            detail=_SINGULAR,
            hint=_SINGULAR_HINT,
        )
    if info < 0:  # an argument LAPACK rejects: a bug here, not the user's input
        raise RuntimeError(f"LAPACK gtsv rejected argument {-info}")


class LapackFactorization(Factorization):
    """LAPACK gttrf's LU factors (with row interchanges) per matrix; gttrs per solve."""

    method = "scipy"

    def __init__(self, factors, batch_shape, dtype, n) -> None:
        super().__init__(n, batch_shape, dtype)
        self._factors = factors  # one (dl, d, du, du2, ipiv) per matrix, or None for n = 1

    def _solve(self, rhs, batch_shape):
        n = self.n
        nsys = math.prod(batch_shape)
        _, _, gttrs = _routines(self.dtype)
        d = as_rows(np, rhs, batch_shape, n)
        x = np.empty((nsys, n), dtype=self.dtype)
        nf = len(self._factors)
        if nf == 1 and nsys > 0:
            cols = np.broadcast_to(d, (nsys, n)).T
            x[...] = _gttrs(gttrs, self._factors[0], cols).T
            return x.reshape(batch_shape + (n,))
        if nf > 1 and self.batch_shape != batch_shape:
            index = np.broadcast_to(np.arange(nf).reshape(self.batch_shape), batch_shape).reshape(
                -1
            )
        else:
            index = np.arange(nsys)
        for j in range(nsys):
            f = self._factors[index[j] if nf > 1 else 0]
            x[j] = _gttrs(gttrs, f, d[j if d.shape[0] > 1 else 0, :, None])[:, 0]
        return x.reshape(batch_shape + (n,))


def _gttrs(gttrs, factors, cols):
    if len(factors) == 1:  # n = 1: f2py rejects the empty off-diagonals
        return cols / factors[0]
    if len(factors) == 3:  # n = 2: f2py rejects gttrf's empty du2; gtsv on the kept matrix
        _, _, _, sol, info = (
            lapack.dgtsv(*factors, cols)
            if cols.dtype == np.float64
            else lapack.sgtsv(*factors, cols)
        )
        if info != 0:
            raise RuntimeError(f"LAPACK gtsv returned info={info} on a matrix gttrf accepted")
        return sol
    dl, d, du, du2, ipiv = factors
    sol, info = gttrs(dl, d, du, du2, ipiv, cols)
    if info != 0:
        raise RuntimeError(f"LAPACK gttrs rejected argument {-info}")
    return sol


def factorize(lower, diag, upper, batch_shape):
    """Registry entry: gttrf per matrix (one shared matrix stays one factorisation)."""
    n = diag.shape[-1]
    _, gttrf, _ = _routines(diag.dtype)
    shared = all(v.size == n for v in (lower, diag, upper))
    fbatch = () if shared else batch_shape
    rows = [as_rows(np, v, fbatch, n) for v in (lower, diag, upper)]
    _check_finite(rows, fbatch, n)
    nf = math.prod(fbatch)
    factors = []
    for j in range(nf):
        lj, dj, uj = (r[j if r.shape[0] > 1 else 0] for r in rows)
        if n == 1:
            if dj[0] == 0:
                _raise_singular(1, np.unravel_index(j, fbatch), fbatch, nf)
            factors.append((dj[0],))
            continue
        if n == 2:
            if dj[0] * dj[1] - lj[1] * uj[0] == 0:
                _raise_singular(2, np.unravel_index(j, fbatch), fbatch, nf)
            factors.append((lj[1:].copy(), dj.copy(), uj[:-1].copy()))
            continue
        dl, d, du, du2, ipiv, info = gttrf(lj[1:], dj, uj[:-1])
        _raise_singular(info, np.unravel_index(j, fbatch), fbatch, nf)
        factors.append((dl, d, du, du2, ipiv))
    return LapackFactorization(factors, fbatch, diag.dtype, n)
