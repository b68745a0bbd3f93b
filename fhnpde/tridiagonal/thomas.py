r"""Thomas's algorithm (LU without pivoting for tridiagonal matrices), compiled with numba.

This module imports numba; the registry imports it only when method ``"thomas"`` is first used.

The system, row i = 0 .. n-1 (a = lower, b = diag, c = upper, d = rhs; a[0] = c[n-1] = 0)::

    a[i] x[i-1] + b[i] x[i] + c[i] x[i+1] = d[i]

**Forward Thomas** (Thomas 1949; Golub & Van Loan, *Matrix Computations*, 4th ed., 4.3.6)
eliminates downwards, then substitutes upwards::

    t[0] = b[0],                       t[i] = b[i] - a[i] c'[i-1]            (pivots)
    c'[i] = c[i] / t[i],               d'[i] = (d[i] - a[i] d'[i-1]) / t[i]
    x[n-1] = d'[n-1],                  x[i] = d'[i] - c'[i] x[i+1]

**Two-ended form used by solve()** ("burn at both ends", the twisted factorisation of
Meurant 1992, *SIAM J. Matrix Anal. Appl.* 13, 707): the forward recurrence runs down rows
0 .. m-1 while the mirror recurrence runs up rows n-1 .. m+1, m = n // 2::

    top,    i = 0 .. m-1:    t[i] = b[i] - a[i] c'[i-1],    c'[i] = c[i] / t[i],
                             d'[i] = (d[i] - a[i] d'[i-1]) / t[i]
    bottom, j = n-1 .. m+1:  u[j] = b[j] - c[j] a'[j+1],    a'[j] = a[j] / u[j],
                             d'[j] = (d[j] - c[j] d'[j+1]) / u[j]
    twist,  row m:           p = b[m] - a[m] c'[m-1] - c[m] a'[m+1]
                             x[m] = (d[m] - a[m] d'[m-1] - c[m] d'[m+1]) / p
    back,   i = m-1 .. 0:    x[i] = d'[i] - c'[i] x[i+1]
            j = m+1 .. n-1:  x[j] = d'[j] - a'[j] x[j-1]

(terms with an index outside 0 .. n-1 are left out; the two back substitutions, independent
chains, run in one loop so that they overlap). Same flop count and the same stability
as the forward sweep (both are LU factorisations without pivoting, stable for diagonally
dominant matrices); the bottom half is the top half of the reversed system, so one routine
does both.

**Division-free chains.** Written as above, every row waits for a division (t[i] needs
c'[i-1] = c[i-1] / t[i-1]), and the sweep runs at the latency of a divide. solve() instead
gets the pivots from the leading principal minors::

    q[-1] = 1,  q[0] = b[0],  q[i] = b[i] q[i-1] - a[i] c[i-1] q[i-2],   t[i] = q[i] / q[i-1]
    y[i] = d[i] - (a[i] / t[i-1]) y[i-1],     c'[i] = c[i] / t[i],     d'[i] = y[i] / t[i]

whose dependency chains are one multiply-add per row; the one division per row, 1 / q[i],
feeds them but is not on them, so consecutive rows overlap in the pipeline (measured on the
development machine: ~7.6 vs ~19 cycles per row for one sweep). Rounding makes the computed
q[i] exact minors of a matrix whose b[i] and a[i] c[i-1] are perturbed by a few ulps:
Thomas's backward stability. (q[i-1], q[i]) are rescaled by an
exact power of two every few rows; if a pivot still comes out zero, non-finite or subnormal
(or the minors overflow inside a block, possible only for pivots beyond ~2^130 in float64,
~2^21 in float32) the system is redone with the classic recurrences, which check every
pivot as it is formed.

Memory: reads a, b, c, d once, writes x, and uses one scratch vector of n (c' and a');
d' lives in x. For a single system the scratch vector is kept per thread and dtype and
reused, since first-touch page faults on a fresh one cost as much as the sweep; it stays
as long as the longest system the thread has solved (8 bytes per row in float64) for the
life of the thread. Batched systems (leading axes) run in parallel over the batch with
``prange`` (one scratch vector per thread); a single system runs a serial kernel, so it does
not pay the parallel start-up. float32 systems are computed in float32 throughout.

A zero or non-finite pivot raises :class:`~fhnpde.tridiagonal.PivotError` with the system
and row. NaN in rhs only (not in the matrix) propagates to x, as in LAPACK.

**Factorisation** (for a constant matrix solved many times) stores, from the forward sweep,
r[i] = 1 / t[i], l[i] = a[i] r[i] and c'[i] = c[i] r[i]; each solve is then::

    y[0] = d[0] r[0],   y[i] = d[i] r[i] - l[i] y[i-1]      (forward, one FMA per row)
    x[n-1] = y[n-1],    x[i] = y[i] - c'[i] x[i+1]           (backward)

with no divisions, and the forward recurrence is a single multiply-add deep. A batch of
right-hand sides sharing one matrix runs four systems interleaved per thread. One matrix of n >=
TWISTED_MIN_ROWS also keeps its two-ended (twisted) factors, the bottom half eliminated
upwards (u[j] = b[j] - c[j] a'[j+1], a'[j] = a[j] / u[j]) and the twist row's reciprocal
pivot, and solves a single right-hand side by the two-ended sweep above without divisions:
two independent chains instead of one.
"""

from __future__ import annotations

import math
import threading

import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .arrays import Factorization, as_rows, raise_pivot_error

_JIT = {"cache": True, "nogil": True, "error_model": "numpy", "fastmath": {"contract"}}

# Rows per block of the determinant recurrence between two overflow checks.
_BLOCK = 4


def _constants(dtype: np.dtype) -> np.ndarray:
    """[one, huge, tiny, largest finite, smallest normal] in the dtype, for the kernels.

    huge/tiny are the rescaling thresholds of the determinant recurrence (powers of two, so
    rescaling is exact); with them a block of _BLOCK rows may grow q by 2^(emax - log2 huge)
    before it could overflow (float64: pivots up to ~2^130, float32: up to ~2^21 per row).
    """
    dtype = np.dtype(dtype)
    k = 500 if dtype == np.float64 else 40
    fi = np.finfo(dtype)
    return np.array([1.0, 2.0**k, 2.0**-k, fi.max, fi.tiny], dtype=dtype)


_CONSTANTS = {np.dtype(t): _constants(t) for t in (np.float32, np.float64)}


@numba.njit(**_JIT, inline="always")
def _bad(t) -> bool:
    """True if a pivot is zero, infinite or NaN (t - t is NaN for inf and NaN)."""
    return t == 0 or t - t != 0


@numba.njit(**_JIT, inline="always")
def _eliminate_row(a, b, c, d, s, x, i, q1, q2, rinv, y, cprev, one, tmin, tmax):
    """Row i of the determinant-form forward elimination (see ``_eliminate``)."""
    ai = a[i]
    q = b[i] * q1 - (ai * cprev) * q2  # q[i] = b[i] q[i-1] - a[i] c[i-1] q[i-2]
    ell = ai * rinv  # l[i] = a[i] / t[i-1]
    rinv = q1 * (one / q)  # 1 / t[i] = q[i-1] / q[i]
    bad = not (tmin < abs(rinv) < tmax)
    y = d[i] - ell * y  # y[i] = d[i] - l[i] y[i-1]
    cprev = c[i]
    s[i] = cprev * rinv  # c'[i] = c[i] / t[i]
    x[i] = y * rinv  # d'[i] = y[i] / t[i]
    return q, q1, rinv, y, cprev, bad


@numba.njit(**_JIT)
def _eliminate(a, b, c, d, s, x, m, k):
    """Forward elimination of rows 0 .. m-1 into s[i] = c'[i], x[i] = d'[i].

    Division-free chain: the pivots t[i] = q[i] / q[i-1] come from the leading principal
    minors q[i] = b[i] q[i-1] - a[i] c[i-1] q[i-2] (q[-1] = 1, q[0] = b[0]); the elimination
    y[i] = d[i] - (a[i] / t[i-1]) y[i-1] is one multiply-add deep. The only division per row,
    1 / q[i], is off the dependency chains, so rows overlap in the pipeline (the classic
    recurrence t[i] = b[i] - a[i] c[i-1] / t[i-1] waits for a division every row). Rounding
    makes the computed q exact minors of a matrix whose b[i] and a[i] c[i-1] are perturbed
    by a few ulps: the same backward stability as the classic recurrence. Every _BLOCK rows
    (q[i-1], q[i]) are rescaled by an exact power of two to stay in range.

    Returns -1, or the row at which a pivot came out zero, non-finite or subnormal (the
    caller then reruns the classic recurrence to diagnose it, or to solve if only the
    minors overflowed).
    """
    if m == 0:
        return -1
    one = k[0]
    huge = k[1]
    tiny = k[2]
    tmax = k[3]
    tmin = k[4]
    q1 = b[0]
    q2 = one
    rinv = one / q1
    if not (tmin < abs(rinv) < tmax):
        return 0
    cprev = c[0]
    y = d[0]
    s[0] = cprev * rinv
    x[0] = y * rinv
    i = 1
    while i + _BLOCK <= m:
        anybad = False
        for r in range(_BLOCK):
            q1, q2, rinv, y, cprev, bad = _eliminate_row(
                a, b, c, d, s, x, i + r, q1, q2, rinv, y, cprev, one, tmin, tmax
            )
            anybad |= bad
        if anybad:
            return i
        aq = abs(q1)
        if aq > huge:
            q1 *= tiny
            q2 *= tiny
        elif aq < tiny:
            q1 *= huge
            q2 *= huge
        i += _BLOCK
    while i < m:
        q1, q2, rinv, y, cprev, bad = _eliminate_row(
            a, b, c, d, s, x, i, q1, q2, rinv, y, cprev, one, tmin, tmax
        )
        if bad:
            return i
        i += 1
    return -1


@numba.njit(**_JIT)
def _back_substitute_both(s, x, m, nb):
    """Both halves' back substitutions from the twist row m outwards, in one loop: the top
    half x[i] = d'[i] - c'[i] x[i+1] (i = m-1 .. 0) and the bottom half x[j] = d'[j] -
    a'[j] x[j-1] (j = m+1 .. m+nb) are independent chains of one multiply-add per row, so
    taking a row of each per iteration overlaps them in the pipeline."""
    xt = x[m]
    xb = x[m]
    both = min(m, nb)
    for k in range(both):
        i = m - 1 - k
        j = m + 1 + k
        xt = x[i] - s[i] * xt
        x[i] = xt
        xb = x[j] - s[j] * xb
        x[j] = xb
    for i in range(m - 1 - both, -1, -1):  # n even: the top half has one row more
        xt = x[i] - s[i] * xt
        x[i] = xt
    for j in range(m + 1 + both, m + 1 + nb):
        xb = x[j] - s[j] * xb
        x[j] = xb


@numba.njit(**_JIT)
def _back_substitute_half(s, x, m, nb, bottom):
    """One half's back substitution from the twist row m outwards (``_back_substitute_both``
    takes both halves in one loop): the top rows m-1 .. 0, or the bottom rows m+1 .. m+nb."""
    xh = x[m]
    if bottom:
        for j in range(m + 1, m + 1 + nb):
            xh = x[j] - s[j] * xh
            x[j] = xh
    else:
        for i in range(m - 1, -1, -1):
            xh = x[i] - s[i] * xh
            x[i] = xh


@numba.njit(**_JIT, parallel=True)
def _back_substitute_halves(s, x, m, nb):
    """Both halves' back substitutions on two threads (the same rows as
    ``_back_substitute_both``, to the bit)."""
    for half in numba.prange(2):
        _back_substitute_half(s, x, m, nb, half == 1)


@numba.njit(**_JIT)
def _twist(a, b, c, d, s, x, m):
    """Solve the twist row m from both eliminated halves; returns its pivot p."""
    n = b.shape[0]
    p = b[m]
    r = d[m]
    if m > 0:
        p -= a[m] * s[m - 1]
        r -= a[m] * x[m - 1]
    if m + 1 < n:
        p -= c[m] * s[m + 1]
        r -= c[m] * x[m + 1]
    x[m] = r / p
    return p


@numba.njit(**_JIT)
def _classic_system(a, b, c, d, x, s):
    """Two-ended Thomas with the classic division recurrences (see the module docstring).

    Slower than ``_thomas_system`` (a division on every step of both chains) but checks each
    pivot exactly as formed; used when the fast form reports trouble. Returns (row, pivot)
    of the first bad pivot, or (-1, 0).
    """
    n = b.shape[0]
    m = n // 2
    nb = n - m - 1  # rows of the bottom sweep: m+1 .. n-1
    zero = b[0] - b[0]
    if m > 0:
        t = b[0]
        if _bad(t):
            return 0, t
        s[0] = c[0] / t
        x[0] = d[0] / t
    if nb > 0:
        u = b[n - 1]
        if _bad(u):
            return n - 1, u
        s[n - 1] = a[n - 1] / u
        x[n - 1] = d[n - 1] / u
    both = min(m, nb)
    for i in range(1, both):  # top row i and bottom row j together: two independent chains
        j = n - 1 - i
        t = b[i] - a[i] * s[i - 1]
        u = b[j] - c[j] * s[j + 1]
        if _bad(t):
            return i, t
        if _bad(u):
            return j, u
        s[i] = c[i] / t
        x[i] = (d[i] - a[i] * x[i - 1]) / t
        s[j] = a[j] / u
        x[j] = (d[j] - c[j] * x[j + 1]) / u
    for i in range(max(both, 1), m):  # n even: the top half has one row more
        t = b[i] - a[i] * s[i - 1]
        if _bad(t):
            return i, t
        s[i] = c[i] / t
        x[i] = (d[i] - a[i] * x[i - 1]) / t
    p = _twist(a, b, c, d, s, x, m)
    if _bad(p):
        return m, p
    _back_substitute_both(s, x, m, nb)
    return -1, zero


@numba.njit(**_JIT)
def _thomas_system(a, b, c, d, x, s, k):
    """Two-ended Thomas sweep of one system into x (s: scratch of length n).

    Returns (row, pivot) of the first bad pivot, or (-1, 0) if all pivots were fine.
    """
    n = b.shape[0]
    m = n // 2
    nb = n - m - 1
    zero = b[0] - b[0]
    bad_top = _eliminate(a, b, c, d, s, x, m, k)
    # the bottom half is the top half of the reversed system (lower and upper swap roles)
    bad_bottom = _eliminate(c[::-1], b[::-1], a[::-1], d[::-1], s[::-1], x[::-1], nb, k)
    if bad_top < 0 and bad_bottom < 0:
        p = _twist(a, b, c, d, s, x, m)
        if not _bad(p):
            _back_substitute_both(s, x, m, nb)
            return -1, zero
    return _classic_system(a, b, c, d, x, s)


@numba.njit(**_JIT, parallel=True)
def _eliminate_halves(a, b, c, d, s, x, k, bad):
    """The two halves' forward eliminations of ``_thomas_system`` on two threads: bad[0],
    bad[1] as ``_eliminate`` returns them for the top and the bottom half."""
    n = b.shape[0]
    m = n // 2
    nb = n - m - 1
    for half in numba.prange(2):
        if half == 0:
            bad[0] = _eliminate(a, b, c, d, s, x, m, k)
        else:
            bad[1] = _eliminate(c[::-1], b[::-1], a[::-1], d[::-1], s[::-1], x[::-1], nb, k)


def _thomas_system_threaded(a, b, c, d, x, s, k):
    """``_thomas_system`` with its two independent halves on two threads: the same
    operations on every row, so the same x to the bit; a long system's two chains then draw
    on two cores' memory bandwidth instead of one."""
    n = b.shape[0]
    m = n // 2
    bad = np.empty(2, dtype=np.int64)
    _eliminate_halves(a, b, c, d, s, x, k, bad)
    if bad[0] < 0 and bad[1] < 0:
        p = _twist(a, b, c, d, s, x, m)
        if not _bad(p):
            _back_substitute_halves(s, x, m, n - m - 1)
            return -1, p - p
    return _classic_system(a, b, c, d, x, s)


_K64 = _CONSTANTS[np.dtype(np.float64)]


@numba.njit(**_JIT)
def thomas_system(a, b, c, d, x, s):
    """One float64 system, callable from other numba kernels (e.g. a Newton step).

    ``a``, ``b``, ``c``: lower, main and upper diagonals (``a[0]``, ``c[-1]`` ignored);
    ``d``: right-hand side; ``x``: solution (written); ``s``: scratch of length n.
    Returns ``(row, pivot)`` of the first zero or non-finite pivot, or ``(-1, 0.0)``.
    The same two-ended sweep as ``solve(..., method="thomas")``.
    """
    return _thomas_system(a, b, c, d, x, s, _K64)


@numba.njit(**_JIT, parallel=True)
def _thomas_batch(a, b, c, d, x, bad_row, bad_piv, nchunks, k):
    """Systems j = 0 .. nsys-1 (rows of x) in nchunks contiguous chunks, one per thread.

    A coefficient array with one row is shared by all systems. (nchunks comes from the
    caller: numba.get_num_threads() inside a parallel function defeats caching.)
    """
    nsys, n = x.shape
    for chunk in numba.prange(nchunks):
        s = np.empty(n, dtype=x.dtype)  # one scratch vector per thread, not per system
        for j in range(chunk * nsys // nchunks, (chunk + 1) * nsys // nchunks):
            ja = j if a.shape[0] > 1 else j - j  # same int type as j
            jb = j if b.shape[0] > 1 else j - j
            jc = j if c.shape[0] > 1 else j - j
            jd = j if d.shape[0] > 1 else j - j
            row, piv = _thomas_system(a[ja], b[jb], c[jc], d[jd], x[j], s, k)
            bad_row[j] = row
            bad_piv[j] = piv


# -- factorisation of a constant matrix ------------------------------------------------------


@numba.njit(**_JIT)
def _factor_system(a, b, c, r, l, cp):
    """Forward elimination only: r = 1/t, l = a r, cp = c r. Returns (bad_row, bad_pivot)."""
    n = b.shape[0]
    zero = b[0] - b[0]
    t = b[0]
    if _bad(t):
        return 0, t
    one = t / t
    r[0] = one / t
    l[0] = zero
    cp[0] = c[0] * r[0]
    for i in range(1, n):
        t = b[i] - a[i] * cp[i - 1]
        if _bad(t):
            return i, t
        ri = one / t
        r[i] = ri
        l[i] = a[i] * ri
        cp[i] = c[i] * ri
    cp[n - 1] = zero
    return -1, zero


@numba.njit(**_JIT, parallel=True)
def _factor_batch(a, b, c, r, l, cp, bad_row, bad_piv):
    nsys = r.shape[0]
    for j in numba.prange(nsys):
        ja = j if a.shape[0] > 1 else j - j  # same int type as j
        jb = j if b.shape[0] > 1 else j - j  # same int type as j
        jc = j if c.shape[0] > 1 else j - j  # same int type as j
        row, piv = _factor_system(a[ja], b[jb], c[jc], r[j], l[j], cp[j])
        bad_row[j] = row
        bad_piv[j] = piv


@numba.njit(**_JIT)
def _factor_twisted(a, b, c, r, l, cp, tr, tl, ts):
    """The two-ended factorisation of one system from its forward one (r, l, cp of rows
    0 .. m-1 reused, m = n // 2): rows n-1 .. m+1 eliminated upwards (the reversed system's
    forward elimination), u[j] = b[j] - c[j] a'[j+1], into tr = 1/u, tl = c tr, ts = a' = a
    tr; rows 0 .. m-1 copied (tr = r, tl = l, ts = c'); row m, the twist, tr[m] = 1/p with
    p = b[m] - a[m] c'[m-1] - c[m] a'[m+1]. Returns (bad_row, pivot) or (-1, 0)."""
    n = b.shape[0]
    m = n // 2
    zero = b[0] - b[0]
    one = b[0] / b[0]  # b[0], the first pivot, passed the forward factorisation's checks
    for i in range(m):
        tr[i] = r[i]
        tl[i] = l[i]
        ts[i] = cp[i]
    for j in range(n - 1, m, -1):
        u = b[j] if j == n - 1 else b[j] - c[j] * ts[j + 1]
        if _bad(u):
            return j, u
        rj = one / u
        tr[j] = rj
        tl[j] = c[j] * rj if j < n - 1 else zero  # c[n-1] is ignored (may hold anything)
        ts[j] = a[j] * rj
    p = b[m]
    if m > 0:
        p -= a[m] * ts[m - 1]
    if m + 1 < n:
        p -= c[m] * ts[m + 1]
    if _bad(p):
        return m, p
    tr[m] = one / p
    tl[m] = zero
    ts[m] = zero
    return -1, zero


@numba.njit(**_JIT)
def _twist_factored(tr, am, cm, d, x, m, nb):
    """The twist row of a two-ended factorised solve: x[m] = (d[m] - a[m] y[m-1] - c[m]
    y[m+1]) / p, with tr[m] = 1 / p."""
    xm = d[m]
    if m > 0:
        xm -= am * x[m - 1]
    if nb > 0:
        xm -= cm * x[m + 1]
    x[m] = xm * tr[m]


@numba.njit(**_JIT)
def _substitute_twisted(tr, tl, ts, am, cm, d, x):
    """One system by its two-ended factorisation (``_factor_twisted``; am, cm: a[m], c[m]):
    the forward recurrences of the top rows (0 .. m-1, downwards) and of the bottom rows
    (n-1 .. m+1, upwards) in one loop, two independent multiply-add chains; then the twist
    row x[m] = (d[m] - a[m] y[m-1] - c[m] y[m+1]) / p; then both back substitutions outwards
    (``_back_substitute_both``). No divisions; twice the instruction-level parallelism of
    the one-ended sweep, whose every row waits for the row before."""
    n = d.shape[0]
    m = n // 2
    nb = n - m - 1
    zero = d[0] - d[0]
    yt = zero
    yb = zero
    if m > 0:
        yt = d[0] * tr[0]
        x[0] = yt
    if nb > 0:
        yb = d[n - 1] * tr[n - 1]
        x[n - 1] = yb
    both = min(m, nb)
    for k in range(1, both):
        j = n - 1 - k
        yt = d[k] * tr[k] - tl[k] * yt
        x[k] = yt
        yb = d[j] * tr[j] - tl[j] * yb
        x[j] = yb
    for i in range(max(both, 1), m):  # n even: the top half has one row more
        yt = d[i] * tr[i] - tl[i] * yt
        x[i] = yt
    _twist_factored(tr, am, cm, d, x, m, nb)
    _back_substitute_both(ts, x, m, nb)


@numba.njit(**_JIT)
def _forward_twisted_half(tr, tl, d, x, m, nb, bottom):
    """One half's forward recurrence of ``_substitute_twisted``: rows 0 .. m-1 downwards,
    or rows n-1 .. m+1 upwards."""
    n = d.shape[0]
    if bottom:
        if nb > 0:
            y = d[n - 1] * tr[n - 1]
            x[n - 1] = y
            for j in range(n - 2, m, -1):
                y = d[j] * tr[j] - tl[j] * y
                x[j] = y
    elif m > 0:
        y = d[0] * tr[0]
        x[0] = y
        for i in range(1, m):
            y = d[i] * tr[i] - tl[i] * y
            x[i] = y


@numba.njit(**_JIT, parallel=True)
def _forward_twisted_halves(tr, tl, d, x, m, nb):
    for half in numba.prange(2):
        _forward_twisted_half(tr, tl, d, x, m, nb, half == 1)


def _substitute_twisted_threaded(tr, tl, ts, am, cm, d, x):
    """``_substitute_twisted`` with each half's forward and back substitution on its own
    thread: the same operations on every row, so the same x to the bit."""
    n = d.shape[0]
    m = n // 2
    nb = n - m - 1
    _forward_twisted_halves(tr, tl, d, x, m, nb)
    _twist_factored(tr, am, cm, d, x, m, nb)
    _back_substitute_halves(ts, x, m, nb)


@numba.njit(**_JIT)
def _substitute_system(r, l, cp, d, x):
    """Forward y[i] = d[i] r[i] - l[i] y[i-1] into x, then backward x[i] = y[i] - cp[i] x[i+1]."""
    n = d.shape[0]
    y = d[0] * r[0]
    x[0] = y
    for i in range(1, n):
        y = d[i] * r[i] - l[i] * y
        x[i] = y
    for i in range(n - 2, -1, -1):
        y = x[i] - cp[i] * y
        x[i] = y


@numba.njit(**_JIT, parallel=True)
def _substitute_batch(r, l, cp, d, x):
    nsys = x.shape[0]
    for j in numba.prange(nsys):
        jf = j if r.shape[0] > 1 else j - j
        jd = j if d.shape[0] > 1 else j - j  # same int type as j
        _substitute_system(r[jf], l[jf], cp[jf], d[jd], x[j])


@numba.njit(**_JIT)
def _forward_four(r, l, d, jd, x, jx):
    """Forward recurrences of four systems with one shared factorisation: rows jd .. jd+3 of
    d into rows jx .. jx+3 of x, y[i] = d[i] r[i] - l[i] y[i-1]. Four independent chains per
    row, so the sweep runs at the throughput of loads and multiply-adds, not at the latency
    of one chain (one system's recurrences are one multiply-add deep per row)."""
    n = d.shape[1]
    r0 = r[0]
    y0 = d[jd, 0] * r0
    y1 = d[jd + 1, 0] * r0
    y2 = d[jd + 2, 0] * r0
    y3 = d[jd + 3, 0] * r0
    x[jx, 0] = y0
    x[jx + 1, 0] = y1
    x[jx + 2, 0] = y2
    x[jx + 3, 0] = y3
    for i in range(1, n):
        ri = r[i]
        li = l[i]
        y0 = d[jd, i] * ri - li * y0
        y1 = d[jd + 1, i] * ri - li * y1
        y2 = d[jd + 2, i] * ri - li * y2
        y3 = d[jd + 3, i] * ri - li * y3
        x[jx, i] = y0
        x[jx + 1, i] = y1
        x[jx + 2, i] = y2
        x[jx + 3, i] = y3


@numba.njit(**_JIT)
def _backward_four(cp, x, j):
    """Backward substitution x[i] = y[i] - c'[i] x[i+1] of systems j .. j+3 of x, in place."""
    n = x.shape[1]
    y0 = x[j, n - 1]
    y1 = x[j + 1, n - 1]
    y2 = x[j + 2, n - 1]
    y3 = x[j + 3, n - 1]
    for i in range(n - 2, -1, -1):
        ci = cp[i]
        y0 = x[j, i] - ci * y0
        y1 = x[j + 1, i] - ci * y1
        y2 = x[j + 2, i] - ci * y2
        y3 = x[j + 3, i] - ci * y3
        x[j, i] = y0
        x[j + 1, i] = y1
        x[j + 2, i] = y2
        x[j + 3, i] = y3


@numba.njit(**_JIT)
def _substitute_four(r, l, cp, d, x, j):
    """Systems j .. j+3 with one shared factorisation: forward, then backward."""
    _forward_four(r, l, d, j, x, j)
    _backward_four(cp, x, j)


@numba.njit(**_JIT)
def _substitute_shared_range(r, l, cp, d, x, j, end):
    """Systems j .. end-1 of d (nsys, n) with the one factorisation (r, l, cp), four at a
    time (``_substitute_four``: four independent chains per row in each sweep; a group's
    backward sweep finds its rows in cache). Pipelining each group's backward sweep into the
    next group's forward sweep was measured no faster on a quiet machine (median 53 against
    56 % of the triad over 16 shapes, benchmarks/tridiagonal_batched.py) and was dropped."""
    while j + 4 <= end:
        _substitute_four(r, l, cp, d, x, j)
        j += 4
    while j < end:
        _substitute_system(r, l, cp, d[j], x[j])
        j += 1


@intrinsic
def _store_streaming(typingctx, arr, idx, val):
    """``arr[idx] = val`` as a non-temporal store (LLVM's ``!nontemporal``): the line is
    written to memory without being read into the cache first (no write-allocate)."""

    def codegen(context, builder, signature, args):
        a, i, v = args
        aty = signature.args[0]
        ary = context.make_array(aty)(context, builder, a)
        ptr = cgutils.get_item_pointer(context, builder, aty, ary, [i], wraparound=False)
        store = builder.store(v, ptr)
        one = context.get_constant(types.int32, 1)
        store.set_metadata("nontemporal", builder.module.add_metadata([one]))
        return context.get_dummy_value()

    return types.void(arr, idx, val), codegen


@intrinsic
def _store_fence(typingctx):
    """A full memory fence: non-temporal stores are weakly ordered, and this makes them
    visible before the kernel returns."""

    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


@numba.njit(**_JIT)
def _backward_four_streamed(cp, y, x, j):
    """``_backward_four`` from the forward results of four systems in ``y`` (4, n) into
    rows j .. j+3 of x, written by non-temporal stores: the same values."""
    n = y.shape[1]
    x0 = x[j]
    x1 = x[j + 1]
    x2 = x[j + 2]
    x3 = x[j + 3]
    z0 = y[0, n - 1]
    z1 = y[1, n - 1]
    z2 = y[2, n - 1]
    z3 = y[3, n - 1]
    _store_streaming(x0, n - 1, z0)
    _store_streaming(x1, n - 1, z1)
    _store_streaming(x2, n - 1, z2)
    _store_streaming(x3, n - 1, z3)
    for k in range(1, n):
        i = n - 1 - k
        ci = cp[i]
        z0 = y[0, i] - ci * z0
        z1 = y[1, i] - ci * z1
        z2 = y[2, i] - ci * z2
        z3 = y[3, i] - ci * z3
        _store_streaming(x0, i, z0)
        _store_streaming(x1, i, z1)
        _store_streaming(x2, i, z2)
        _store_streaming(x3, i, z3)


@numba.njit(**_JIT)
def _substitute_shared_streamed(r, l, cp, d, x, j, end):
    """``_substitute_shared_range`` for a result far larger than the caches: each group's
    forward sweep into a (4, n) block that stays in cache, its backward sweep from there
    into x by non-temporal stores. The memory then moves 16 bytes an unknown (read d, write
    x) instead of 24 (x's lines are otherwise read before they are written); the same
    values to the bit."""
    y = np.empty((4, d.shape[1]), dtype=d.dtype)
    while j + 4 <= end:
        _forward_four(r, l, d, j, y, 0)
        _backward_four_streamed(cp, y, x, j)
        j += 4
    while j < end:
        _substitute_system(r, l, cp, d[j], x[j])
        j += 1
    _store_fence()


@numba.njit(**_JIT, parallel=True)
def _substitute_shared_streamed_chunks(r, l, cp, d, x, nchunks):
    nsys = x.shape[0]
    for chunk in numba.prange(nchunks):
        _substitute_shared_streamed(r, l, cp, d, x, chunk * nsys // nchunks,
                                    (chunk + 1) * nsys // nchunks)


@numba.njit(**_JIT, parallel=True)
def _substitute_shared(r, l, cp, d, x, nchunks):
    """Every row of d (nsys, n) solved with the one factorisation (r, l, cp) of shape (n,):
    nchunks contiguous chunks of systems, one per thread."""
    nsys = x.shape[0]
    for chunk in numba.prange(nchunks):
        _substitute_shared_range(r, l, cp, d, x, chunk * nsys // nchunks,
                                 (chunk + 1) * nsys // nchunks)


@numba.njit(**_JIT)
def _substitute_columns(r, l, cp, d, x, o, k0, k1):
    """Columns k0 .. k1-1 of block o of d (outer, n, inner): the systems run down axis 1, so
    each row of the recurrences is a contiguous, vectorisable loop over the columns (over
    slices indexed from 0: no negative-index wrap-around to check, which kept LLVM from
    vectorising the loop over k0 .. k1-1)."""
    n = d.shape[1]
    r0 = r[0]
    xi, di = x[o, 0, k0:k1], d[o, 0, k0:k1]
    for k in range(k1 - k0):
        xi[k] = di[k] * r0
    for i in range(1, n):
        ri = r[i]
        li = l[i]
        xi, di, xp = x[o, i, k0:k1], d[o, i, k0:k1], x[o, i - 1, k0:k1]
        for k in range(k1 - k0):
            xi[k] = di[k] * ri - li * xp[k]
    for i in range(n - 2, -1, -1):
        ci = cp[i]
        xi, xn = x[o, i, k0:k1], x[o, i + 1, k0:k1]
        for k in range(k1 - k0):
            xi[k] = xi[k] - ci * xn[k]


@numba.njit(**_JIT)
def _substitute_blocks(r, l, cp, d, x, width, first, last):
    """Blocks first .. last-1 of ``width`` columns of d (outer, n, inner)."""
    inner = d.shape[2]
    per = (inner + width - 1) // width
    for blk in range(first, last):
        o = blk // per
        k0 = (blk % per) * width
        _substitute_columns(r, l, cp, d, x, o, k0, min(k0 + width, inner))


@numba.njit(**_JIT, parallel=True)
def _substitute_strided(r, l, cp, d, x, width):
    """Systems along axis 1 of d (outer, n, inner), one shared factorisation: blocks of
    ``width`` columns shared among the threads. Each sweep streams whole row segments (wide
    blocks measured fastest: narrow ones, kept in cache between the forward and the backward
    sweep, stride across a page per row)."""
    outer, n, inner = d.shape
    per = (inner + width - 1) // width
    for blk in numba.prange(outer * per):
        _substitute_blocks(r, l, cp, d, x, width, blk, blk + 1)


# Unknowns below which a batched solve runs on one thread (a parallel region costs more than
# it saves there, and much more when the cores are shared with other work); with one numba
# thread the serial loops run whatever the size.
PARALLEL_MIN_UNKNOWNS = 65_536

# Rows from which a factorised single system is solved by the two-ended factorisation (kept
# alongside the forward one): below, a solve is a few microseconds and the call's overhead
# dominates, and one system solved alone keeps equalling the same system in a batch (which
# the forward factors solve) to the bit.
TWISTED_MIN_ROWS = 4096

# Result size (bytes) from which a batch sharing one matrix is written by non-temporal
# stores: above the last-level cache of the machines this was measured on (32 MiB L3,
# 2 MiB L2 a core), where x would not stay in cache for its next reader anyway; there it
# moved 1.2-1.7x faster (2048 x 2048: 53 -> 82 % of the triad). Below, x is kept in cache.
STREAM_MIN_BYTES = 16 << 20

# Rows from which one system's two halves run on two threads (when numba has two): below,
# the halves fit in the caches and the parallel region's start costs more than it saves.
THREADED_HALVES_MIN_ROWS = 1 << 17


def _threaded_halves(n: int) -> bool:
    return n >= THREADED_HALVES_MIN_ROWS and numba.get_num_threads() >= 2


def strided_width(inner: int, outer: int, threads: int) -> int:
    """Columns per block of the strided sweep: the columns split into as few blocks as give
    every thread one (a multiple of 8 columns, at least 8, at most ``inner``)."""
    blocks = max(1, -(-threads // max(outer, 1)))
    width = -(-inner // blocks)
    return min(inner, max(8, -(-width // 8) * 8))


# -- registry entry points -------------------------------------------------------------------


def solve(lower, diag, upper, rhs, batch_shape, out=None):
    """Registry entry: validated numpy input (see ``fhnpde.tridiagonal.registry``) -> x of
    shape batch + (n,); ``out``: a C-contiguous array of that shape and rhs's dtype to write
    x into (checked by the caller), which saves a large solve the first-touch page faults
    of a fresh array."""
    n = rhs.shape[-1]
    nsys = math.prod(batch_shape)
    k = _CONSTANTS[rhs.dtype]
    if nsys == 1:  # serial kernel: no parallel start-up for one system
        # x and the scratch are allocated by numpy (large blocks get huge pages; fewer faults)
        x = _output(out, (n,), rhs.dtype)
        kernel = _thomas_system_threaded if _threaded_halves(n) else _thomas_system
        row, piv = kernel(
            _flat(lower), _flat(diag), _flat(upper), _flat(rhs), x, _scratch(n, rhs.dtype), k
        )
        if row >= 0:
            raise_pivot_error("thomas", batch_shape, [row], [piv])
        return _shaped(x, out, batch_shape + (n,))
    rows = [as_rows(np, v, batch_shape, n) for v in (lower, diag, upper, rhs)]
    x = _output(out, (nsys, n), rhs.dtype)
    bad_row = np.empty(nsys, dtype=np.int64)
    bad_piv = np.empty(nsys, dtype=rhs.dtype)
    if nsys:
        _thomas_batch(*rows, x, bad_row, bad_piv, min(nsys, numba.get_num_threads()), k)
        if bad_row.max() >= 0:
            raise_pivot_error("thomas", batch_shape, bad_row, bad_piv)
    return _shaped(x, out, batch_shape + (n,))


_SCRATCH = threading.local()


def _scratch(n: int, dtype) -> np.ndarray:
    """A reused scratch vector of length n for this thread (see the module docstring).

    A fresh large array costs a page fault per 4 KiB page on first touch, which here is
    as slow as the sweep itself; reusing one vector per thread and dtype avoids it.
    """
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    buf = buffers.get(dtype)
    if buf is None or buf.shape[0] < n:
        buf = buffers[dtype] = np.empty(n, dtype=dtype)
    return buf[:n]


def _flat(v):
    if v.ndim == 1 and v.flags.c_contiguous:
        return v
    return np.ascontiguousarray(v.reshape(-1))


class ThomasFactorization(Factorization):
    """Thomas's forward elimination done once: reciprocal pivots r, l = a r, c' = c r."""

    method = "thomas"

    def __init__(self, r, l, cp, batch_shape, twisted=None) -> None:
        super().__init__(r.shape[-1], batch_shape, r.dtype)
        self.reciprocal_pivots = r  # (rows, n), rows = 1 or prod(batch_shape)
        self.scaled_lower = l
        self.modified_upper = cp
        # one matrix of n >= TWISTED_MIN_ROWS: its two-ended factors (tr, tl, ts, a[m], c[m])
        # for single right-hand sides (see _substitute_twisted), else None
        self.twisted = twisted

    @property
    def shared(self) -> bool:
        """True when one matrix serves every system of the batch."""
        return self.reciprocal_pivots.shape[0] == 1

    def _solve(self, rhs, batch_shape):
        return self._solve_into(rhs, batch_shape, None)

    def _solve_into(self, rhs, batch_shape, out):
        n = self.n
        nsys = math.prod(batch_shape)
        factors = (self.reciprocal_pivots, self.scaled_lower, self.modified_upper)
        x = _output(out, (nsys, n), self.dtype)
        if nsys == 1:
            if self.twisted is not None:
                kernel = (_substitute_twisted_threaded if _threaded_halves(n)
                          else _substitute_twisted)
                kernel(*self.twisted, _flat(rhs), x[0])
            else:
                _substitute_system(*(f[0] for f in factors), _flat(rhs), x[0])
            return _shaped(x, out, batch_shape + (n,))
        if self.batch_shape and math.prod(self.batch_shape) > 1 and self.batch_shape != batch_shape:
            # partly broadcast factors, e.g. (2, 1) against rhs (1, 4): materialise them
            factors = tuple(
                as_rows(np, f.reshape(self.batch_shape + (n,)), batch_shape, n) for f in factors
            )
        d = as_rows(np, rhs, batch_shape, n)
        if nsys and self.shared and d.shape[0] == nsys:
            shared = tuple(f[0] for f in factors)
            streamed = x.nbytes >= STREAM_MIN_BYTES
            if nsys * n < PARALLEL_MIN_UNKNOWNS or numba.get_num_threads() == 1:
                (_substitute_shared_streamed if streamed
                 else _substitute_shared_range)(*shared, d, x, 0, nsys)
            else:
                chunks = min(max(1, nsys // 4), numba.get_num_threads())
                (_substitute_shared_streamed_chunks if streamed
                 else _substitute_shared)(*shared, d, x, chunks)
        elif nsys:
            _substitute_batch(*factors, d, x)
        return _shaped(x, out, batch_shape + (n,))

    def _solve_along(self, rhs, axis, batch_shape, out):
        if not self.shared or type(rhs) is not np.ndarray:
            return super()._solve_along(rhs, axis, batch_shape, out)
        shape = tuple(rhs.shape)
        outer, inner = math.prod(shape[:axis]), math.prod(shape[axis + 1 :])
        d = np.ascontiguousarray(rhs).reshape(outer, self.n, inner)
        x = _output(out, (outer, self.n, inner), self.dtype)
        if d.size:
            factors = (self.reciprocal_pivots, self.scaled_lower, self.modified_upper)
            shared = tuple(f[0] for f in factors)
            if d.size < PARALLEL_MIN_UNKNOWNS or numba.get_num_threads() == 1:
                _substitute_blocks(*shared, d, x, inner, 0, outer)
            else:
                width = strided_width(inner, outer, numba.get_num_threads())
                _substitute_strided(*shared, d, x, width)
        return _shaped(x, out, shape)


def _output(out, shape, dtype):
    """``out`` viewed as ``shape`` (it must be C-contiguous), or a fresh array."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    if type(out) is not np.ndarray or not out.flags.c_contiguous:
        raise ValueError("out must be a C-contiguous numpy array for method 'thomas'")
    return out.reshape(shape)


def _shaped(x, out, shape):
    return x.reshape(shape) if out is None else out


def factorize(lower, diag, upper, batch_shape):
    """Registry entry: forward-eliminate once; returns a :class:`ThomasFactorization`."""
    n = diag.shape[-1]
    nsys = math.prod(batch_shape)
    rows = [as_rows(np, v, batch_shape, n) for v in (lower, diag, upper)]
    r, l, cp = (np.empty((nsys, n), dtype=diag.dtype) for _ in range(3))
    bad_row = np.full(nsys, -1, dtype=np.int64)
    bad_piv = np.zeros(nsys, dtype=diag.dtype)
    if nsys == 1:
        bad_row[0], bad_piv[0] = _factor_system(*(v[0] for v in rows), r[0], l[0], cp[0])
    elif nsys:
        _factor_batch(*rows, r, l, cp, bad_row, bad_piv)
    if nsys and bad_row.max() >= 0:
        raise_pivot_error("thomas", batch_shape, bad_row, bad_piv, detail="in factorize")
    twisted = None
    if nsys == 1 and n >= TWISTED_MIN_ROWS:
        a, b, c = (v[0] for v in rows)
        tr, tl, ts = (np.empty(n, dtype=diag.dtype) for _ in range(3))
        row, _ = _factor_twisted(a, b, c, r[0], l[0], cp[0], tr, tl, ts)
        if row < 0:  # else a pivot of the upward elimination failed: keep the forward sweep
            m = n // 2
            twisted = (tr, tl, ts, a[m], c[m])
    return ThomasFactorization(r, l, cp, batch_shape, twisted)
