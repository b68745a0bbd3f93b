"""fhnpde.tridiagonal: every registered method against scipy.linalg.solve_banded.

Invariants checked with numbers: the relative residual ||A x - b|| / ||b|| (float64: 1e-12;
float32: 1e-5, i.e. ~100 ulp of float32 on these well-conditioned matrices), agreement with
the banded LU reference, shapes under broadcasting, bitwise indifference to lower[..., 0]
and upper[..., -1], factorise-then-solve equal to solve, and PivotError for zero and NaN pivots.
Methods are parametrised from the registry, so a newly registered one is tested here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy.linalg import solve_banded

from fhnpde import tridiagonal as td

ROOT = Path(__file__).resolve().parents[1]
SIZES = [1, 2, 3, 5, 64, 1000, 1023, 1025, 4097]
DTYPES = [np.float64, np.float32]
RESIDUAL_TOL = {np.float64: 1e-12, np.float32: 1e-5}
# error against solve_banded; the matrices have diagonal-dominance margin >= 0.5 relative
# to |diag| <= 3.5, so cond(A) <= ~15 and the errors are a few ulp times that
ERROR_TOL = {np.float64: 1e-12, np.float32: 1e-5}


def _method_param(name: str):
    reason = td.METHODS[name].unavailable_reason()
    return pytest.param(name, marks=pytest.mark.skipif(reason is not None, reason=str(reason)))


METHODS = [_method_param(name) for name in td.METHODS]
NON_PIVOTING = [_method_param(m.name) for m in td.METHODS.values() if not m.pivoting]


def random_system(rng, shape, n, dtype=np.float64):
    """Diagonally dominant (margin 0.5..1.5), diag of either sign, garbage in lower[0]/upper[-1]."""
    lower = rng.uniform(-1, 1, shape + (n,))
    upper = rng.uniform(-1, 1, shape + (n,))
    sign = rng.choice([-1.0, 1.0], shape + (n,))
    diag = sign * (np.abs(lower) + np.abs(upper) + rng.uniform(0.5, 1.5, shape + (n,)))
    rhs = rng.standard_normal(shape + (n,))
    lower[..., 0] = np.nan  # ignored: a method that reads it returns NaN
    upper[..., -1] = np.inf
    return tuple(v.astype(dtype) for v in (lower, diag, upper, rhs))


def effective(lower, upper):
    """lower and upper with the ignored entries zeroed (float64 copies)."""
    lo = np.array(lower, dtype=np.float64)
    up = np.array(upper, dtype=np.float64)
    lo[..., 0] = 0
    up[..., -1] = 0
    return lo, up


def residual(lower, diag, upper, rhs, x):
    """max over systems of ||A x - rhs|| / ||rhs||, evaluated in float64."""
    lo, up = effective(lower, upper)
    shape = np.broadcast_shapes(lo.shape, np.shape(diag), up.shape, np.shape(rhs))
    lo, di, up, d = (np.broadcast_to(np.asarray(v, np.float64), shape) for v in (lo, diag, up, rhs))
    x = np.asarray(x, dtype=np.float64)
    r = di * x - d
    r[..., 1:] += lo[..., 1:] * x[..., :-1]
    r[..., :-1] += up[..., :-1] * x[..., 1:]
    return float(np.max(np.linalg.norm(r, axis=-1) / np.linalg.norm(d, axis=-1)))


def banded_reference(lower, diag, upper, rhs):
    """scipy.linalg.solve_banded, one system at a time, in float64."""
    lo, up = effective(lower, upper)
    shape = np.broadcast_shapes(lo.shape, np.shape(diag), up.shape, np.shape(rhs))
    lo, di, up, d = (np.broadcast_to(np.asarray(v, np.float64), shape) for v in (lo, diag, up, rhs))
    n = shape[-1]
    out = np.empty(shape)
    for idx in np.ndindex(*shape[:-1]):
        ab = np.zeros((3, n))
        ab[0, 1:] = up[idx][:-1]
        ab[1] = di[idx]
        ab[2, :-1] = lo[idx][1:]
        out[idx] = solve_banded((1, 1), ab, d[idx])
    return out


def assert_solves(lower, diag, upper, rhs, x, dtype):
    ref = banded_reference(lower, diag, upper, rhs)
    assert x.dtype == dtype
    assert x.shape == ref.shape
    assert residual(lower, diag, upper, rhs, x) <= RESIDUAL_TOL[dtype]
    err = np.max(np.abs(x - ref)) / np.max(np.abs(ref))
    assert err <= ERROR_TOL[dtype]


# -- accuracy ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("method", METHODS)
def test_single_system_matches_solve_banded(method, n, dtype):
    rng = np.random.default_rng(n)
    system = random_system(rng, (), n, dtype)
    x = td.solve(*system, method=method)
    assert_solves(*system, x, dtype)


BATCHES = {
    # name: shapes of (lower, diag, upper, rhs) batch axes
    "batch-3": [(3,)] * 4,
    "batch-2x4": [(2, 4)] * 4,
    "shared-matrix": [(), (), (), (2, 4)],
    "shared-rhs": [(3,), (3,), (3,), ()],
    "partly-broadcast": [(2, 1), (4,), (1, 4), (2, 4)],
}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("n", [1, 17, 1025])
@pytest.mark.parametrize("batch", list(BATCHES))
@pytest.mark.parametrize("method", METHODS)
def test_batched_and_broadcast(method, batch, n, dtype):
    rng = np.random.default_rng(7)
    s_lower, s_diag, s_upper, s_rhs = BATCHES[batch]
    # |diag| >= 2.5 > |lower| + |upper|: diagonally dominant however the arrays broadcast
    lower = rng.uniform(-1, 1, s_lower + (n,))
    upper = rng.uniform(-1, 1, s_upper + (n,))
    diag = rng.choice([-1.0, 1.0], s_diag + (n,)) * rng.uniform(2.5, 3.5, s_diag + (n,))
    rhs = rng.standard_normal(s_rhs + (n,))
    lower[..., 0] = np.nan
    upper[..., -1] = np.inf
    args = [v.astype(dtype) for v in (lower, diag, upper, rhs)]
    x = td.solve(*args, method=method)
    assert x.shape == np.broadcast_shapes(*BATCHES[batch]) + (n,)
    assert_solves(*args, x, dtype)


@pytest.mark.parametrize("method", METHODS)
def test_ignores_lower_first_and_upper_last(method):
    rng = np.random.default_rng(3)
    for n in (1, 2, 5, 64):
        lower, diag, upper, rhs = random_system(rng, (3,), n)
        clean_lower, clean_upper = effective(lower, upper)
        for garbage in (np.nan, np.inf, -1e300, 0.0):
            lower[..., 0] = garbage
            upper[..., -1] = -garbage
            np.testing.assert_array_equal(
                td.solve(lower, diag, upper, rhs, method=method),
                td.solve(clean_lower, diag, clean_upper, rhs, method=method),
            )


@pytest.mark.parametrize("method", METHODS)
def test_dtypes(method):
    rng = np.random.default_rng(4)
    f32 = random_system(rng, (), 33, np.float32)
    assert td.solve(*f32, method=method).dtype == np.float32
    mixed = f32[:3] + (f32[3].astype(np.float64),)
    assert td.solve(*mixed, method=method).dtype == np.float64
    ints = (np.zeros(4, int), np.full(4, 4), np.ones(4, int), np.arange(4))
    x = td.solve(*ints, method=method)
    assert x.dtype == np.float64
    assert residual(*ints, x) <= 1e-14
    lists = td.solve([0.0, 1.0], [2.0, 2.0], [1.0, 0.0], [3.0, 3.0], method=method)
    np.testing.assert_allclose(lists, [1.0, 1.0], rtol=1e-15)


# -- factorisation -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("method", METHODS)
def test_factorization_equals_solve(method, dtype):
    rng = np.random.default_rng(5)
    for n in (1, 2, 5, 1025):
        lower, diag, upper, rhs = random_system(rng, (3,), n, dtype)
        # one matrix, many right-hand sides (the Crank-Nicolson use), then a batch of matrices
        f = td.factorize(lower[0], diag[0], upper[0], method=method)
        assert (f.n, f.batch_shape, f.dtype) == (n, (), np.dtype(dtype))
        for k in range(3):  # reused
            x = f.solve(rhs[k])
            assert x.shape == (n,)
            assert_solves(lower[0], diag[0], upper[0], rhs[k], x, dtype)
        xs = f.solve(rhs)
        np.testing.assert_allclose(
            xs,
            td.solve(lower[0], diag[0], upper[0], rhs, method=method),
            rtol=0,
            atol=20 * np.finfo(dtype).eps * np.abs(xs).max(),
        )
        fb = td.factorize(lower, diag, upper, method=method)
        x = fb.solve(rhs)
        np.testing.assert_allclose(
            x,
            td.solve(lower, diag, upper, rhs, method=method),
            rtol=0,
            atol=20 * np.finfo(dtype).eps * np.abs(x).max(),
        )
        x = fb.solve(rhs[None])  # rhs batch (1, 3) broadcasts against matrices (3,)
        assert x.shape == (1, 3, n)
        assert_solves(lower, diag, upper, rhs[None], x, dtype)


def test_thomas_factorization_is_division_free_form():
    """The stored factors reproduce the elimination: r = 1/t, l = a r, c' = c r."""
    lower, diag, upper = np.array([0.0, 1, 1]), np.array([4.0, 4, 4]), np.array([1.0, 1, 0])
    f = td.factorize(lower, diag, upper, method="thomas")
    t0 = 4.0
    t1 = 4.0 - 1.0 * (1.0 / t0)
    np.testing.assert_allclose(f.reciprocal_pivots[0, :2], [1 / t0, 1 / t1])
    np.testing.assert_allclose(f.scaled_lower[0, 1], 1.0 / t1)  # a[1] / t[1]
    np.testing.assert_allclose(f.modified_upper[0, :2], [1 / t0, 1 / t1])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("n", [4096, 4097, 10_001])
def test_thomas_two_ended_factorization_matches_solve_banded(n, dtype):
    """One matrix of n >= TWISTED_MIN_ROWS keeps its two-ended factors (forward down to the
    middle, upward from the end, the twist row between) and solves a single rhs with them:
    against scipy's banded LU, n even and odd; the same matrix's batched solve (the forward
    factors) agrees to rounding."""
    from fhnpde.tridiagonal.thomas import TWISTED_MIN_ROWS

    assert n >= TWISTED_MIN_ROWS
    rng = np.random.default_rng(n)
    lower, diag, upper, rhs = random_system(rng, (), n, dtype)
    fact = td.factorize(lower, diag, upper, method="thomas")
    assert fact.twisted is not None
    x = fact.solve(rhs)
    assert_solves(lower, diag, upper, rhs, x, dtype)
    batch = fact.solve(np.stack([rhs, rhs]))
    assert np.abs(batch[0] - x).max() <= ERROR_TOL[dtype] * np.abs(x).max()
    out = np.empty_like(x)
    assert fact.solve(rhs, out=out) is out
    np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 8, 4096, 4097, 10_001])
def test_thomas_halves_on_two_threads_equal_one_thread_to_the_bit(monkeypatch, n, dtype):
    """A long system's two halves (the solve, and the two-ended factorisation's solve) run
    on two threads: the same operations on every row as on one thread, so the same x to the
    bit (the threshold is lowered to reach small and odd n); and it solves the system."""
    from fhnpde.tridiagonal import thomas

    rng = np.random.default_rng(n + 11)
    lower, diag, upper, rhs = random_system(rng, (), n, dtype)
    monkeypatch.setattr(thomas, "TWISTED_MIN_ROWS", 1)
    fact = td.factorize(lower, diag, upper, method="thomas")
    one = {"solve": td.solve(lower, diag, upper, rhs, method="thomas"),
           "factorised": fact.solve(rhs)}
    monkeypatch.setattr(thomas, "THREADED_HALVES_MIN_ROWS", 1)
    monkeypatch.setattr(thomas.numba, "get_num_threads", lambda: 2)
    two = {"solve": td.solve(lower, diag, upper, rhs, method="thomas"),
           "factorised": fact.solve(rhs)}
    for way in one:
        np.testing.assert_array_equal(two[way], one[way], err_msg=way)
        assert_solves(lower, diag, upper, rhs, two[way], dtype)
    # a zero first pivot of either half falls back to the classic recurrences and is named
    if n >= 3:
        for row in (0, n - 1):
            bad = diag.copy()
            bad[row] = 0.0
            with pytest.raises(td.PivotError, match=f"row {row}"):
                td.solve(lower, bad, upper, rhs, method="thomas")


def test_thomas_two_ended_falls_back_when_the_upward_elimination_fails():
    """b[n-1] = 0: the forward elimination's last pivot b - a c' is fine, the upward one
    (b[n-1] itself) is zero: no two-ended factors, the forward sweep solves."""
    from fhnpde.tridiagonal.thomas import TWISTED_MIN_ROWS

    n = TWISTED_MIN_ROWS
    rng = np.random.default_rng(7)
    lower, diag, upper, rhs = random_system(rng, (), n)
    diag[-1], lower[-1], upper[-2] = 0.0, 1.0, 1.0
    fact = td.factorize(lower, diag, upper, method="thomas")
    assert fact.twisted is None
    x = fact.solve(rhs)
    ref = banded_reference(lower, diag, upper, rhs)
    assert np.abs(x - ref).max() <= 1e-10 * np.abs(ref).max()


@pytest.mark.parametrize("method", METHODS)
def test_solve_into_out(method):
    """solve(..., out=): written and returned, single and batched; wrong shape, dtype or (for
    thomas) a non-contiguous array are refused."""
    rng = np.random.default_rng(5)
    for shape in ((), (3,)):
        lower, diag, upper, rhs = random_system(rng, shape, 50)
        out = np.empty(shape + (50,))
        assert td.solve(lower, diag, upper, rhs, method=method, out=out) is out
        np.testing.assert_allclose(out, td.solve(lower, diag, upper, rhs, method=method),
                                   rtol=0, atol=1e-12 * np.abs(out).max())
    with pytest.raises(ValueError, match=r"out must have shape \(3, 50\) and dtype float64"):
        td.solve(lower, diag, upper, rhs, method=method, out=np.empty((3, 49)))
    with pytest.raises(ValueError, match="out must have shape"):
        td.solve(lower, diag, upper, rhs, method=method, out=np.empty((3, 50), np.float32))
    if method == "thomas":
        with pytest.raises(ValueError, match="C-contiguous"):
            td.solve(lower, diag, upper, rhs, out=np.empty((50, 3)).T)


def test_factorization_rejects_wrong_rhs():
    f = td.factorize(np.zeros(4), np.ones(4), np.zeros(4))
    with pytest.raises(ValueError, match=r"rhs must have shape \(\.\.\., 4\)"):
        f.solve(np.ones(5))
    fb = td.factorize(np.zeros((3, 4)), np.ones((3, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="do not broadcast"):
        fb.solve(np.ones((2, 4)))


# -- pivots ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", NON_PIVOTING)
def test_zero_pivot_raises(method):
    rng = np.random.default_rng(6)
    lower, diag, upper, rhs = random_system(rng, (3,), 10)
    diag[1] = 0.0  # system 1: zero diagonal (nonsingular for even n, but needs pivoting)
    with pytest.raises(td.PivotError, match="not diagonally dominant") as info:
        td.solve(lower, diag, upper, rhs, method=method)
    assert info.value.system == (1,)
    assert info.value.row is not None
    assert 0 <= info.value.row < 10
    assert "system (1,)" in str(info.value)
    assert isinstance(info.value, ArithmeticError)
    with pytest.raises(td.PivotError):
        td.factorize(lower, diag, upper, method=method).solve(rhs)
    # the pivoting reference solves the same systems
    x = td.solve(lower, diag, upper, rhs, method="scipy")
    assert residual(lower, diag, upper, rhs, x) <= 1e-12


@pytest.mark.parametrize("where", ["diag", "lower", "upper"])
@pytest.mark.parametrize("method", METHODS)
def test_nan_coefficient_raises(method, where):
    rng = np.random.default_rng(8)
    system = list(random_system(rng, (2,), 9))
    system[["lower", "diag", "upper"].index(where)][1, 4] = np.nan
    with pytest.raises(td.PivotError) as info:
        td.solve(*system, method=method)
    assert info.value.system == (1,)


@pytest.mark.parametrize("method", METHODS)
def test_singular_matrix_raises(method):
    with pytest.raises(td.PivotError):
        td.solve(np.zeros(6), np.zeros(6), np.zeros(6), np.ones(6), method=method)


def test_thomas_reports_the_row_of_a_late_zero_pivot():
    # [[1, 1], [1, 1]]: the first pivot is 1, the second (the twist row) is 0
    with pytest.raises(td.PivotError, match="zero pivot at row 1") as info:
        td.solve([0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [1.0, 2.0])
    assert (info.value.system, info.value.row, info.value.value) == ((), 1, 0.0)
    with pytest.raises(td.PivotError, match="row 1"):
        td.factorize([0.0, 1.0], [1.0, 1.0], [1.0, 0.0])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: t.__name__)
def test_thomas_huge_and_tiny_pivots(dtype):
    """Pivots far from 1 overflow the minors of the fast (determinant) recurrence; the
    classic recurrence takes over and the answer is still right."""
    rng = np.random.default_rng(9)
    big = 1e150 if dtype == np.float64 else 1e18
    for n in (7, 1000, 1025):
        lower, diag, upper, rhs = random_system(rng, (), n, dtype)
        scale = np.where(np.arange(n) % 3 == 0, big, 1 / big).astype(dtype)
        # scale rows: still diagonally dominant, pivots alternate between huge and tiny
        lower, diag, upper, rhs = (v * scale for v in (lower, diag, upper, rhs))
        lower[0] = np.nan
        x = td.solve(lower, diag, upper, rhs, method="thomas")
        assert (
            residual(lower / scale, diag / scale, upper / scale, rhs / scale, x)
            <= RESIDUAL_TOL[dtype]
        )


# -- input errors ------------------------------------------------------------------------------


def test_unknown_method_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown tridiagonal method 'lu'.*'thomas'.*'scipy'"):
        td.solve(np.zeros(3), np.ones(3), np.zeros(3), np.ones(3), method="lu")
    with pytest.raises(ValueError, match="valid methods"):
        td.factorize(np.zeros(3), np.ones(3), np.zeros(3), method="lu")


def test_shape_errors():
    with pytest.raises(ValueError, match="share their last axis"):
        td.solve(np.zeros(2), np.ones(3), np.zeros(2), np.ones(3))
    with pytest.raises(ValueError, match="do not broadcast"):
        td.solve(np.zeros((2, 3)), np.ones((3, 3)), np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="at least one axis"):
        td.solve(0.0, np.ones(3), np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="n >= 1"):
        td.solve(np.zeros(0), np.ones(0), np.zeros(0), np.ones(0))
    with pytest.raises(TypeError, match="complex"):
        td.solve(np.zeros(3), np.ones(3, complex), np.zeros(3), np.ones(3))


@pytest.mark.parametrize("method", METHODS)
def test_placement_says_which_arrays_a_method_takes(method):
    """A registered method's placement is a promise: an "array" method solves systems held
    as array-API arrays on a device (array_api_strict's, which refuse to become numpy) and
    returns its answer there; a "host" method refuses them in one sentence naming the
    methods that take them."""
    xps = pytest.importorskip("array_api_strict", reason="array-api-strict is a dev dependency")
    from fhnpde.backends import to_numpy

    placement = td.METHODS[method].placement
    if placement == "cuda":
        pytest.skip("a CUDA kernel: run on a GPU by test_on_gpu_with_cupy and gpu_check.py")
    system = random_system(np.random.default_rng(11), (3,), 37)
    device = xps.Device("device1")
    on_device = [xps.asarray(a, device=device) for a in system]
    if placement == "array":
        x = td.solve(*on_device, method=method)
        assert x.device == device
        assert_solves(*system, to_numpy(x), np.float64)
    elif placement == "host":
        with pytest.raises(ValueError, match=f"^tridiagonal method {method!r} runs on the "
                           "CPU, but the arrays are on a GPU; use method='cyclic-reduction'"
                           ) as info:
            td.solve(*on_device, method=method)
        message = str(info.value)
        assert len(message.splitlines()) == 1
    else:
        pytest.fail(f"unknown placement {placement!r} of {method!r}")


def test_import_does_not_load_numba_or_cupy():
    code = (
        "import sys, fhnpde; before = set(sys.modules); import fhnpde.tridiagonal; "
        "new = set(sys.modules) - before; "
        "print(sorted({'numba', 'cupy'} & set(sys.modules) | {'scipy'} & new))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.strip() == "[]"


# -- the CUDA kernel -------------------------------------------------------------------------

SIMULATED = textwrap.dedent(
    """
    import os, warnings
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # before numba.cuda is imported
    warnings.simplefilter("ignore")
    import numpy as np
    from numba import cuda
    from scipy.linalg import solve_banded
    import fhnpde.tridiagonal as td
    from fhnpde.tridiagonal import cuda as kernels

    rng = np.random.default_rng(0)
    worst = {}
    for n in (1, 2, 5, 17, 64):
        for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
            lo = rng.uniform(-1, 1, (3, n)); up = rng.uniform(-1, 1, (3, n))
            di = np.abs(lo) + np.abs(up) + rng.uniform(0.5, 1.5, (3, n))
            d = rng.standard_normal((3, n))
            lo[:, 0] = np.nan; up[:, -1] = np.inf  # ignored
            lo, di, up, d = (v.astype(dtype) for v in (lo, di, up, d))
            ref = np.empty((3, n))
            for j in range(3):
                ab = np.zeros((3, n)); ab[0, 1:] = up[j, :-1]; ab[1] = di[j]; ab[2, :-1] = lo[j, 1:]
                ref[j] = solve_banded((1, 1), ab.astype(np.float64), d[j].astype(np.float64))
            # shared memory (several rows per thread), then the global-memory path
            paths = {"shared": {"max_threads": 4}, "global": {"shared_bytes": 0, "max_threads": 8}}
            if dtype == np.float32:
                paths.pop("global")
            for path, opts in paths.items():
                x = kernels.solve(lo, di, up, d, (3,), **opts)
                assert x.dtype == dtype and x.shape == (3, n), (x.dtype, x.shape)
                err = float(np.max(np.abs(x - ref)) / np.max(np.abs(ref)))
                assert err <= tol, (n, dtype, path, err)
                worst[path] = max(worst.get(path, 0.0), err)
    # one matrix against a batch of rhs, through the public API
    n = 17
    lo = np.full(n, -1.0); up = np.full(n, -1.0); di = np.full(n, 3.0)
    d = rng.standard_normal((3, n))
    x = td.solve(lo, di, up, d, method="cyclic-reduction-cuda")
    assert np.allclose(x, td.solve(lo, di, up, d, method="scipy"), rtol=1e-13, atol=1e-13)
    # numba device arrays given to 'cyclic-reduction' run the kernel and stay on the device
    dev = td.solve(*(cuda.to_device(np.ascontiguousarray(np.broadcast_to(v, (3, n))))
                     for v in (lo, di, up, d)),
                   method="cyclic-reduction")
    assert hasattr(dev, "copy_to_host")
    assert np.allclose(dev.copy_to_host(), x, rtol=1e-13, atol=1e-13)
    # a factorisation of device arrays, reused; another axis is refused in one sentence
    fac = td.factorize(*(cuda.to_device(v) for v in (lo, di, up)), method="cyclic-reduction")
    assert np.allclose(fac.solve(cuda.to_device(d)).copy_to_host(), x, rtol=1e-13, atol=1e-13)
    try:
        fac.solve(cuda.to_device(np.ascontiguousarray(d.T)), axis=-2)
    except ValueError as e:
        assert "last axis" in str(e), e
    else:
        raise AssertionError("axis=-2 on device arrays was not refused")
    # host arrays through the CUDA method solve along another axis
    xt = td.factorize(lo, di, up, method="cyclic-reduction-cuda").solve(
        np.ascontiguousarray(d.T), axis=-2)
    assert np.allclose(np.asarray(xt).T, x, rtol=1e-13, atol=1e-13)
    # a zero pivot (even row 2 of system 1 divides at the first level)
    di = np.full((3, n), 3.0); di[1, 2] = 0.0
    for opts in ({}, {"shared_bytes": 0}):
        try:
            kernels.solve(lo, di, up, d, (3,), max_threads=4, **opts)
        except td.PivotError as e:
            assert (e.system, e.row) == ((1,), 2), (e.system, e.row)
        else:
            raise AssertionError("no PivotError")
    print("OK", worst)
    """
)


def test_cuda_kernel_under_simulator():
    """The numba.cuda kernel's logic, run by the CUDA simulator in a fresh interpreter."""
    pytest.importorskip("numba")
    out = subprocess.run(
        [sys.executable, "-c", SIMULATED],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_ENABLE_CUDASIM": "1"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("OK"), out.stdout + out.stderr


def _cupy_gpu_reason() -> str | None:
    try:
        import cupy
    except ImportError:
        return "needs cupy (pip install fhnpde[gpu]) and a CUDA GPU"
    try:
        if cupy.cuda.runtime.getDeviceCount() > 0:
            return None
    except Exception:  # any CUDA failure means no usable GPU
        pass
    return "needs a CUDA GPU (cupy finds none)"


@pytest.mark.gpu
@pytest.mark.skipif(_cupy_gpu_reason() is not None, reason=str(_cupy_gpu_reason()))
@pytest.mark.parametrize("method", ["cyclic-reduction", "cyclic-reduction-cuda"])
@pytest.mark.parametrize("n", [1, 5, 1025, 4097])
def test_on_gpu_with_cupy(method, n):
    import cupy

    rng = np.random.default_rng(10)
    system = random_system(rng, (64,), n)
    x = td.solve(*(cupy.asarray(v) for v in system), method=method)
    assert isinstance(x, cupy.ndarray)
    assert_solves(*system, cupy.asnumpy(x), np.float64)
