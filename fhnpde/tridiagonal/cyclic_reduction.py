r"""Cyclic reduction, written once as array code against a namespace ``xp`` (numpy or cupy).

Hockney 1965 (*J. ACM* 12, 95); Buzbee, Golub & Nielson 1970 (*SIAM J. Numer. Anal.* 7, 627);
Golub & Van Loan, *Matrix Computations*, 4th ed., 4.5.4. No numba, no pivoting.

Rows of one level, i = 0 .. m-1 (a = lower, b = diag, c = upper, d = rhs, a[0] = c[m-1] = 0)::

    a[i] x[i-1] + b[i] x[i] + c[i] x[i+1] = d[i]

**Reduction.** Each odd row i = 2j+1 eliminates its even neighbours i-1 and i+1 (when
i+1 < m; otherwise the terms with i+1 are left out)::

    alpha = -a[i] / b[i-1],             gamma = -c[i] / b[i+1]
    a'[j] = alpha a[i-1],               c'[j] = gamma c[i+1]
    b'[j] = b[i] + alpha c[i-1] + gamma a[i+1]
    d'[j] = d[i] + alpha d[i-1] + gamma d[i+1]

which leaves a tridiagonal system of the m // 2 odd rows alone (a'[0] = 0 and c'[-1] = 0
again). Repeat until one row is left: x = d / b.

**Back substitution.** With the odd unknowns known, every even row i = 2j gives::

    x[i] = (d[i] - a[i] x[i-1] - c[i] x[i+1]) / b[i]

Any m works: for odd m the last row is even (eliminated, and its c is 0), for even m the
last row is odd and simply has no right neighbour. The levels are vectorised over the batch
(leading axes) and over the rows, so one level is a handful of whole-array operations:
O(n) work in about log2(n) levels, which suits a GPU (or many systems at once); on a CPU
the serial Thomas sweep moves less memory.

The pivots are the b[i] of the eliminated (even) rows of every level (and the last row's b):
each level checks them and raises :class:`~fhnpde.tridiagonal.PivotError` naming the system
and the original row when one is zero or not finite. Stable without pivoting for diagonally
dominant matrices (the reduced systems stay diagonally dominant).
"""

from __future__ import annotations

from .arrays import StoredMatrixFactorization, namespace_of, placement_of
from .errors import PivotError


def cyclic_reduction(lower, diag, upper, rhs, xp):
    """Solve with cyclic reduction; arrays of one shape (..., n) in namespace ``xp``.

    ``lower[..., 0]`` and ``upper[..., -1]`` are ignored. Returns x of shape (..., n).
    """
    n = diag.shape[-1]
    a = xp.asarray(lower, copy=True)
    c = xp.asarray(upper, copy=True)
    a[..., 0] = 0
    c[..., -1] = 0
    b, d = diag, rhs
    levels = []  # (a, b, c, d, reciprocals of even-row pivots) of each level, for the way back
    stride = 1  # original row of level row p is (p + 1) * stride - 1
    while b.shape[-1] > 1:
        m = b.shape[-1]
        k = m // 2  # rows kept (odd)
        b_ev = b[..., 0::2]
        rb = 1 / b_ev
        _check_pivots(xp, b_ev, rb, stride)
        ne = rb.shape[-1]  # even rows: (m + 1) // 2
        a_od, b_od, c_od, d_od = a[..., 1::2], b[..., 1::2], c[..., 1::2], d[..., 1::2]
        a_ev, c_ev, d_ev = a[..., 0::2], c[..., 0::2], d[..., 0::2]
        alpha = -a_od * rb[..., :k]
        b_new = b_od + alpha * c_ev[..., :k]
        d_new = d_od + alpha * d_ev[..., :k]
        a_new = alpha * a_ev[..., :k]
        c_new = xp.zeros_like(b_new)
        r = ne - 1  # kept rows with a right neighbour: all of them when m is odd
        if r > 0:
            gamma = -c_od[..., :r] * rb[..., 1 : r + 1]
            b_new[..., :r] += gamma * a_ev[..., 1 : r + 1]
            d_new[..., :r] += gamma * d_ev[..., 1 : r + 1]
            c_new[..., :r] = gamma * c_ev[..., 1 : r + 1]
        levels.append((a_ev, c_ev, d_ev, rb, k))
        a, b, c, d = a_new, b_new, c_new, d_new
        stride *= 2
    rb = 1 / b
    _check_pivots(xp, b, rb, stride)
    x = d * rb
    for a_ev, c_ev, d_ev, rb, k in reversed(levels):
        stride //= 2
        ne = rb.shape[-1]
        num = xp.asarray(d_ev, copy=True)
        num[..., 1:] -= a_ev[..., 1:] * x[..., : ne - 1]
        num[..., :k] -= c_ev[..., :k] * x
        x_full = xp.empty(tuple(x.shape[:-1]) + (ne + k,), dtype=x.dtype, device=x.device)
        x_full[..., 0::2] = num * rb
        x_full[..., 1::2] = x
        x = x_full
    assert x.shape[-1] == n
    return x


def _check_pivots(xp, b, rb, stride: int) -> None:
    """Raise PivotError if a pivot b (given with rb = 1/b) is zero, subnormal or not finite.

    Even row p of a level is level row 2p, original row (2p + 1) * stride - 1.
    """
    ok = xp.isfinite(rb) & (rb != 0)  # 1/b: inf for b = 0, 0 for b = inf, NaN for NaN
    if bool(xp.all(ok)):
        return
    import numpy as np

    from ..backends import to_numpy

    bad = tuple(int(i) for i in np.argwhere(~to_numpy(ok))[0])
    row = (2 * bad[-1] + 1) * stride - 1
    raise PivotError("cyclic-reduction", bad[:-1], row, float(to_numpy(b)[bad]))


def solve(lower, diag, upper, rhs, batch_shape):
    """Registry entry: arrays of numpy, cupy or any array-API namespace -> x of shape
    batch_shape + (n,)."""
    xp = namespace_of(placement_of(lower, diag, upper, rhs), lower, diag, upper, rhs)
    shape = tuple(batch_shape) + (rhs.shape[-1],)
    lower, diag, upper, rhs = (xp.broadcast_to(v, shape) for v in (lower, diag, upper, rhs))
    if xp.__name__ == "numpy":
        import numpy as np

        # zero/NaN pivots are reported by _check_pivots, and NaN in rhs propagates like in
        # the other methods, whatever np.seterr the caller set
        with np.errstate(all="ignore"):
            return cyclic_reduction(lower, diag, upper, rhs, xp)
    return cyclic_reduction(lower, diag, upper, rhs, xp)


def factorize(lower, diag, upper, batch_shape):
    """Registry entry: cyclic reduction keeps the matrix and reduces it at every solve."""
    xp = namespace_of(placement_of(lower, diag, upper), lower, diag, upper)
    return StoredMatrixFactorization("cyclic-reduction", solve, lower, diag, upper, batch_shape, xp)
