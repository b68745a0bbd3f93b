r"""Cyclic reduction as a numba.cuda kernel: one thread block per system.

This module imports ``numba.cuda``; the registry imports it only when method
``"cyclic-reduction-cuda"`` is used (or numba device arrays are passed to
``"cyclic-reduction"``). Its logic runs on a CPU under the CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1`` set before numba.cuda is imported), which is how the tests check
it on machines without a GPU.

In-place, stride-doubling form of the recurrences in
:mod:`fhnpde.tridiagonal.cyclic_reduction` (Hockney 1965; Zhang, Cohen & Owens 2010,
*Fast tridiagonal solvers on the GPU*). Rows keep their original index i = 0 .. n-1. At the
level with stride s = 2^l the rows still in play are those with (i + 1) % s == 0; each
row i with (i + 1) % 2s == 0 eliminates its neighbours i - s and i + s (the latter only
if i + s < n)::

    alpha = -a[i] / b[i-s],     gamma = -c[i] / b[i+s]
    b[i] += alpha c[i-s] + gamma a[i+s],     d[i] += alpha d[i-s] + gamma d[i+s]
    a[i]  = alpha a[i-s],                    c[i]  = gamma c[i+s]

(a[0] = c[n-1] = 0 make the edges work for any n). When 2s > n one row, s - 1, is left:
x = d / b. Back substitution then halves s and fills the rows with (i + 1) % 2s == s::

    x[i] = (d[i] - a[i] x[i-s] - c[i] x[i+s]) / b[i]          (terms outside 0..n-1 dropped)

Threads of the block take the rows of a level in turn (row k, k + blockDim, ...), with a
barrier between levels. The system lives in shared memory when its four arrays fit
(``SHARED_BYTES``), else in global work arrays (copies of the input). A zero or non-finite
pivot b[i-s], b[i+s] (or the last row's b) is recorded per system with an atomic min over
``level * n + row`` (the earliest level wins) and raised as
:class:`~fhnpde.tridiagonal.PivotError` after the kernel.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import cuda

from .arrays import StoredMatrixFactorization, as_rows, placement_of, raise_pivot_error

SHARED_BYTES = 48 * 1024  # dynamic shared memory a block may use without opting in
MAX_THREADS = 256
_NO_FAILURE = np.iinfo(np.int64).max


def unavailable_reason() -> str | None:
    if not cuda.is_available():
        return (
            "tridiagonal method 'cyclic-reduction-cuda' needs a CUDA GPU, and numba.cuda finds "
            "none; use 'cyclic-reduction' (numpy) or 'thomas'"
        )
    return None


@cuda.jit(device=True)
def _bad(v):
    return v == 0 or v - v != 0


@cuda.jit(device=True)
def _cyclic_reduction_block(a, b, c, d, n, status, system):
    """The whole block solves one system held in a, b, c, d (length n); x ends up in d."""
    tid = cuda.threadIdx.x
    nthreads = cuda.blockDim.x
    s = 1
    level = 0
    while 2 * s <= n:  # reduction
        k = tid
        while 2 * s * (k + 1) - 1 < n:
            i = 2 * s * (k + 1) - 1
            left = i - s
            bl = b[left]
            if _bad(bl):
                cuda.atomic.min(status, system, level * n + left)
            alpha = -a[i] / bl
            bi = b[i] + alpha * c[left]
            di = d[i] + alpha * d[left]
            a[i] = alpha * a[left]
            right = i + s
            if right < n:
                br = b[right]
                if _bad(br):
                    cuda.atomic.min(status, system, level * n + right)
                gamma = -c[i] / br
                bi += gamma * a[right]
                di += gamma * d[right]
                c[i] = gamma * c[right]
            b[i] = bi
            d[i] = di
            k += nthreads
        cuda.syncthreads()
        s *= 2
        level += 1
    if tid == 0:  # the last row left: s - 1
        bt = b[s - 1]
        if _bad(bt):
            cuda.atomic.min(status, system, level * n + s - 1)
        d[s - 1] = d[s - 1] / bt
    cuda.syncthreads()
    while s > 1:  # back substitution
        s //= 2
        k = tid
        while s - 1 + 2 * s * k < n:
            i = s - 1 + 2 * s * k
            r = d[i]
            if i - s >= 0:
                r -= a[i] * d[i - s]
            if i + s < n:
                r -= c[i] * d[i + s]
            d[i] = r / b[i]
            k += nthreads
        cuda.syncthreads()


@cuda.jit
def _kernel_global(wa, wb, wc, wd, status):
    """System j = blockIdx.x in rows of global work arrays (a[:, 0] = c[:, -1] = 0 already)."""
    j = cuda.blockIdx.x
    _cyclic_reduction_block(wa[j], wb[j], wc[j], wd[j], wd.shape[1], status, j)


_SHARED_KERNELS: dict = {}


def _shared_kernel(dtype):
    """The shared-memory kernel for a dtype (the dynamic shared array's type is compiled in)."""
    dtype = np.dtype(dtype)
    kernel = _SHARED_KERNELS.get(dtype)
    if kernel is not None:
        return kernel
    nbtype = numba.from_dtype(dtype)

    @cuda.jit
    def kernel(lower, diag, upper, rhs, x, status):
        j = cuda.blockIdx.x
        n = x.shape[1]
        tid = cuda.threadIdx.x
        nthreads = cuda.blockDim.x
        shared = cuda.shared.array(0, dtype=nbtype)
        a = shared[0:n]
        b = shared[n : 2 * n]
        c = shared[2 * n : 3 * n]
        d = shared[3 * n : 4 * n]
        ja = j if lower.shape[0] > 1 else 0  # a shared matrix is one row
        jb = j if diag.shape[0] > 1 else 0
        jc = j if upper.shape[0] > 1 else 0
        jd = j if rhs.shape[0] > 1 else 0
        for i in range(tid, n, nthreads):
            a[i] = lower[ja, i]
            b[i] = diag[jb, i]
            c[i] = upper[jc, i]
            d[i] = rhs[jd, i]
        cuda.syncthreads()
        if tid == 0:  # lower[0] and upper[n-1] are ignored
            a[0] = 0
            c[n - 1] = 0
        cuda.syncthreads()
        _cyclic_reduction_block(a, b, c, d, n, status, j)
        for i in range(tid, n, nthreads):
            x[j, i] = d[i]

    _SHARED_KERNELS[dtype] = kernel
    return kernel


def _threads(n: int, max_threads: int) -> int:
    """One thread per row of the first reduction level, in whole warps, at most max_threads."""
    return max(1, min(max_threads, 32 * math.ceil(max(n // 2, 1) / 32)))


def solve(
    lower,
    diag,
    upper,
    rhs,
    batch_shape,
    *,
    shared_bytes: int = SHARED_BYTES,
    max_threads: int = MAX_THREADS,
):
    """Registry entry: numpy, cupy or numba device arrays -> x of shape batch_shape + (n,).

    numpy input is copied to the GPU and the result back; device input stays on the device
    (the result is a cupy array for cupy input, a numba device array otherwise).
    ``shared_bytes`` / ``max_threads`` bound the shared memory and threads per block (the
    tests lower them to exercise the global-memory path and several rows per thread).
    """
    n = tuple(rhs.shape)[-1]  # tuple(): the simulator's shapes take no negative index
    nsys = math.prod(batch_shape)
    dtype = np.dtype(rhs.dtype)
    placement = placement_of(lower, diag, upper, rhs)
    if placement == "cupy":
        import cupy as xp
    else:
        xp = np
    if placement == "cuda":
        rows = [_device_rows(v, batch_shape, n) for v in (lower, diag, upper, rhs)]
    else:
        rows = [as_rows(xp, v, batch_shape, n) for v in (lower, diag, upper, rhs)]
        if placement == "numpy":
            rows = [cuda.to_device(r) for r in rows]
    status = cuda.to_device(np.full(max(nsys, 1), _NO_FAILURE, dtype=np.int64))
    if nsys == 0:
        x = cuda.device_array((0, n), dtype=dtype)
    elif 4 * n * dtype.itemsize <= shared_bytes:
        x = (
            xp.empty((nsys, n), dtype=dtype)
            if placement == "cupy"
            else cuda.device_array((nsys, n), dtype=dtype)
        )
        kernel = _shared_kernel(dtype)
        kernel[nsys, _threads(n, max_threads), 0, 4 * n * dtype.itemsize](*rows, x, status)
    else:
        work = [
            _work_copy(r, nsys, n, dtype, edge) for r, edge in zip(rows, (1, 0, 2, 0), strict=True)
        ]
        _kernel_global[nsys, _threads(n, max_threads)](*work, status)
        x = work[3]
    codes = status.copy_to_host()
    if nsys and codes.min() != _NO_FAILURE:
        bad_rows = np.where(codes == _NO_FAILURE, -1, codes % n)
        raise_pivot_error("cyclic-reduction-cuda", batch_shape, bad_rows)
    shape = batch_shape + (n,)
    if placement == "numpy":
        return x.copy_to_host().reshape(shape)
    return x.reshape(shape)


@cuda.jit
def _work_copy_kernel(src, out, edge):
    """out[j, :] = src[j or 0, :]; then column 0 (edge 1) or column n-1 (edge 2) set to 0."""
    nsys, n = out.shape
    shared = src.shape[0] == 1
    for flat in range(cuda.grid(1), nsys * n, cuda.gridsize(1)):
        j = flat // n
        i = flat - j * n
        v = src[0 if shared else j, i]
        if (edge == 1 and i == 0) or (edge == 2 and i == n - 1):
            v = 0
        out[j, i] = v


def _work_copy(rows, nsys: int, n: int, dtype, edge: int):
    """A writable (nsys, n) device copy of coefficient rows (a shared row is repeated)."""
    if placement_of(rows) == "cupy":
        import cupy

        out = cupy.empty((nsys, n), dtype=dtype)
    else:
        out = cuda.device_array((nsys, n), dtype=dtype)
    _work_copy_kernel[min(1024, math.ceil(nsys * n / 256)), 256](rows, out, edge)
    return out


def _device_rows(v, batch_shape, n):
    """Rows of a numba device array: its batch shape must be the full one or absent."""
    nsys = math.prod(batch_shape)
    if tuple(v.shape[:-1]) == tuple(batch_shape):
        return v.reshape(nsys, n)
    if math.prod(tuple(v.shape)) == n:
        return v.reshape(1, n)
    raise ValueError(
        f"numba device arrays must have the full batch shape {batch_shape} or none; got "
        f"{tuple(v.shape)} (broadcast it on the device first, or pass cupy arrays)"
    )


def factorize(lower, diag, upper, batch_shape):
    """Registry entry: the kernel reduces from the stored matrix at every solve."""
    return StoredMatrixFactorization(
        "cyclic-reduction-cuda", solve, lower, diag, upper, batch_shape
    )
