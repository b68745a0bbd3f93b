"""Batched factorised solves, the work of an ADI half-step: one factorisation shared by a
batch, ``out=``, and systems along another axis than the last (``axis=-2``: the columns of
a C-order array), against scipy.linalg.solve_banded column by column.

Tolerances as in test_tridiagonal.py: the matrices are diagonally dominant with margin >= 0.5
(cond <= ~15), so errors against the banded LU reference and relative residuals are a few ulp
times that (float64 1e-12, float32 1e-5).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import solve_banded

from fhnpde import tridiagonal as td

TOL = {np.float64: 1e-12, np.float32: 1e-5}


def _method_param(name: str):
    reason = td.METHODS[name].unavailable_reason()
    return pytest.param(name, marks=pytest.mark.skipif(reason is not None, reason=str(reason)))


HOST_METHODS = [_method_param(m.name) for m in td.METHODS.values() if m.placement != "cuda"]


def matrix(rng, n, dtype=np.float64):
    lower = rng.uniform(-1, 1, n)
    upper = rng.uniform(-1, 1, n)
    diag = np.abs(lower) + np.abs(upper) + rng.uniform(0.5, 1.5, n)
    return tuple(a.astype(dtype) for a in (lower, diag, upper))


def banded_solve(lower, diag, upper, rhs):
    """The reference: solve_banded on each system, systems along axis 0 of rhs (n, ...)."""
    n = diag.shape[0]
    ab = np.zeros((3, n))
    ab[0, 1:] = upper[:-1]
    ab[1] = diag
    ab[2, :-1] = lower[1:]
    return solve_banded((1, 1), ab, rhs.astype(np.float64).reshape(n, -1)).reshape(rhs.shape)


def residual(lower, diag, upper, x, rhs, axis):
    """max |A x - rhs| / max |rhs| with the systems along ``axis``."""
    x, rhs = np.moveaxis(x, axis, -1).astype(np.float64), np.moveaxis(rhs, axis, -1)
    ax = diag * x
    ax[..., 1:] += lower[1:] * x[..., :-1]
    ax[..., :-1] += upper[:-1] * x[..., 1:]
    return np.abs(ax - rhs).max() / np.abs(rhs).max()


@pytest.mark.parametrize("method", HOST_METHODS)
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 64, 257])
@pytest.mark.parametrize("batch", [1, 3, 4, 9, 130, 300])  # 300 x 257: threaded
def test_shared_factorization_over_rows_and_columns(method, n, batch):
    """Rows (B, n), columns (n, B) through axis=-2, and out=: all equal the reference."""
    rng = np.random.default_rng(n * 1000 + batch)
    lower, diag, upper = matrix(rng, n)
    fact = td.factorize(lower, diag, upper, method=method)
    rows = rng.standard_normal((batch, n))
    ref = banded_solve(lower, diag, upper, rows.T).T
    x = fact.solve(rows)
    assert np.abs(x - ref).max() <= TOL[np.float64] * max(1.0, np.abs(ref).max())
    assert residual(lower, diag, upper, x, rows, -1) < TOL[np.float64]
    out = np.full_like(rows, np.nan)
    assert fact.solve(rows, out=out) is out
    np.testing.assert_array_equal(out, x)
    cols = np.ascontiguousarray(rows.T)
    xc = fact.solve(cols, axis=-2)
    assert xc.shape == (n, batch)
    assert np.abs(xc - ref.T).max() <= TOL[np.float64] * max(1.0, np.abs(ref).max())
    out = np.full_like(cols, np.nan)
    assert fact.solve(cols, axis=0, out=out) is out
    np.testing.assert_array_equal(out, xc)


@pytest.mark.parametrize("method", HOST_METHODS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_middle_axis_of_a_stack(method, dtype):
    """Systems along axis 1 of (2, n, 7, 3): every other axis is a batch axis."""
    rng = np.random.default_rng(5)
    n = 33
    lower, diag, upper = matrix(rng, n, dtype)
    rhs = rng.standard_normal((2, n, 7, 3)).astype(dtype)
    x = td.factorize(lower, diag, upper, method=method).solve(rhs, axis=1)
    assert x.shape == rhs.shape
    assert x.dtype == dtype
    ref = np.stack([banded_solve(lower, diag, upper, rhs[k]) for k in range(2)])
    assert np.abs(x - ref).max() <= TOL[dtype] * np.abs(ref).max()
    assert residual(lower, diag, upper, x, rhs, 1) < TOL[dtype]


def test_strided_thomas_takes_non_contiguous_input():
    """A transposed view as rhs (not C order) is solved like its C-order copy."""
    rng = np.random.default_rng(2)
    lower, diag, upper = matrix(rng, 50)
    fact = td.factorize(lower, diag, upper)
    base = rng.standard_normal((40, 50))
    np.testing.assert_array_equal(fact.solve(base.T, axis=-2),
                                  fact.solve(np.ascontiguousarray(base.T), axis=-2))


def test_batched_matrices_along_another_axis():
    """A batch of matrices (5, n) against columns (n, 5): the fallback path, still exact."""
    rng = np.random.default_rng(3)
    n = 12
    mats = [matrix(rng, n) for _ in range(5)]
    lower, diag, upper = (np.stack(m) for m in zip(*mats, strict=True))
    cols = rng.standard_normal((n, 5))
    x = td.factorize(lower, diag, upper).solve(cols, axis=0)
    for k in range(5):
        ref = banded_solve(*mats[k], cols[:, k])
        assert np.abs(x[:, k] - ref).max() < 1e-12


def test_shared_factorization_many_systems_uses_threads_consistently():
    """Chunks of four interleaved systems and their remainders (B = 4k + 1 .. 4k + 3 per
    thread) give the same result as one system at a time, to the bit."""
    rng = np.random.default_rng(4)
    lower, diag, upper = matrix(rng, 100)
    fact = td.factorize(lower, diag, upper)
    for batch in (5, 6, 7, 8, 11, 12, 17):
        rows = rng.standard_normal((batch, 100))
        x = fact.solve(rows)
        for j in range(batch):
            np.testing.assert_array_equal(x[j], fact.solve(rows[j]))


def test_bad_axis_and_out_are_refused():
    fact = td.factorize(np.zeros(4), np.ones(4), np.zeros(4))
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        fact.solve(np.ones((4, 4)), axis=2)
    with pytest.raises(ValueError, match="4 along axis 0"):
        fact.solve(np.ones((5, 4)), axis=0)
    with pytest.raises(ValueError, match="out must have shape"):
        fact.solve(np.ones((3, 4)), out=np.empty((4, 3)))
    with pytest.raises(ValueError, match="out must have shape"):
        fact.solve(np.ones((3, 4)), out=np.empty((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        fact.solve(np.ones((3, 4)), out=np.empty((4, 3)).T)


@pytest.mark.parametrize("threads", [1, 2])
def test_streamed_writes_give_the_same_result(monkeypatch, threads):
    """A batch whose result is larger than the caches is written by non-temporal stores
    (forward sweeps into a cached block, backward sweeps into x): the same x to the bit as
    the cached writes, for whole groups of four and remainders, on one thread and on two;
    and it solves the systems (against scipy's banded solver)."""
    from fhnpde.tridiagonal import thomas

    rng = np.random.default_rng(9)
    lower, diag, upper = matrix(rng, 50)
    fact = td.factorize(lower, diag, upper)
    monkeypatch.setattr(thomas, "PARALLEL_MIN_UNKNOWNS", 0)
    monkeypatch.setattr(thomas.numba, "get_num_threads", lambda: threads)
    for batch in (1, 4, 7, 9, 16, 23):
        rows = rng.standard_normal((batch, 50))
        cached = fact.solve(rows)
        monkeypatch.setattr(thomas, "STREAM_MIN_BYTES", 0)
        streamed = fact.solve(rows)
        monkeypatch.setattr(thomas, "STREAM_MIN_BYTES", 16 << 20)
        np.testing.assert_array_equal(streamed, cached)
        for j in range(batch):
            ref = banded_solve(lower, diag, upper, rows[j])
            assert np.abs(streamed[j] - ref).max() < 1e-12
