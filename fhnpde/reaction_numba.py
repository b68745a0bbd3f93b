"""numba kernels of the exact reaction step (:class:`fhnpde.reaction.ExactReaction`).

Imported only with the numba backend, through ``fhnpde.backends.kernels(...)``; the steps
are :func:`fhnpde.schemes.euler_point` and :func:`fhnpde.schemes.rk4_point`.
"""

from __future__ import annotations

from numba import njit, prange

from .compiled import PARALLEL_MIN_NODES
from .schemes import euler_point, rk4_point


@njit(cache=True, error_model="numpy")
def shared_nodes(code, scheme, v, w, current, p, h, out_v, out_w, start, stop):
    """One substep h of nodes start .. stop-1 with the parameters ``p`` shared by all."""
    for i in range(start, stop):
        I = current[i]
        if scheme == 0:
            out_v[i], out_w[i] = euler_point(code, v[i], w[i], I, p, h)
        else:
            out_v[i], out_w[i] = rk4_point(code, v[i], w[i], I, I, I, p, h)


@njit(cache=True, error_model="numpy")
def shared_substeps(code, scheme, v, w, current, p, h, substeps, out_v, out_w, start, stop):
    """``substeps`` sweeps of :func:`shared_nodes`, the first from (v, w), the others in
    place."""
    shared_nodes(code, scheme, v, w, current, p, h, out_v, out_w, start, stop)
    for _ in range(substeps - 1):
        shared_nodes(code, scheme, out_v, out_w, current, p, h, out_v, out_w, start, stop)


@njit(cache=True)
def reaction_nodes(start, stop, code, scheme, v, w, current, params, dt, substeps, out_v,
                    out_w):
    """Nodes start .. stop-1 over dt in ``substeps`` steps.

    With parameters shared by all nodes (a cable, a sheet) the family and the scheme are
    passed on as constants (one call per combination) and the substeps are taken one sweep
    over the nodes each: LLVM then folds the branches and vectorises the sweep (RK4 of the
    fitzhugh kinetics at 262,144 nodes, one substep: 3.5 ms, was 12). Every node sees the
    same operations in the same order as in the per-node loop below, so the result is the
    same to the bit."""
    if params.shape[1] == 1:
        p = (params[0, 0], params[1, 0], params[2, 0], params[3, 0])
        h = dt / substeps
        if code == 0 and scheme == 0:
            shared_substeps(0, 0, v, w, current, p, h, substeps, out_v, out_w, start, stop)
        elif code == 0:
            shared_substeps(0, 1, v, w, current, p, h, substeps, out_v, out_w, start, stop)
        elif scheme == 0:
            shared_substeps(1, 0, v, w, current, p, h, substeps, out_v, out_w, start, stop)
        else:
            shared_substeps(1, 1, v, w, current, p, h, substeps, out_v, out_w, start, stop)
        return
    h = dt / substeps
    shared = params.shape[1] == 1
    for i in range(start, stop):
        j = 0 if shared else i
        p = (params[0, j], params[1, j], params[2, j], params[3, j])
        vi = v[i]
        wi = w[i]
        I = current[i]
        for _ in range(substeps):
            if scheme == 0:
                vi, wi = euler_point(code, vi, wi, I, p, h)
            else:
                vi, wi = rk4_point(code, vi, wi, I, I, I, p, h)
        out_v[i] = vi
        out_w[i] = wi


@njit(cache=True)
def reaction_serial(code, scheme, v, w, current, params, dt, substeps, out_v, out_w):
    reaction_nodes(0, v.shape[0], code, scheme, v, w, current, params, dt, substeps, out_v,
                    out_w)


@njit(cache=True, parallel=True)
def reaction_parallel(code, scheme, v, w, current, params, dt, substeps, nchunks, out_v,
                      out_w):
    """``nchunks`` contiguous blocks of nodes, one :func:`reaction_nodes` call each on the
    block's slices (indexed from 0). Given the whole arrays and a start index instead, the
    loop inside the parallel region does not vectorise: on 262,144 nodes (RK4, 2 threads) it
    took 0.74 ms against 0.37 ms serial; on slices 0.20 ms. The same result to the bit."""
    n = v.shape[0]
    size = (n + nchunks - 1) // nchunks
    shared = params.shape[1] == 1
    for c in prange(nchunks):
        start = c * size
        stop = min(n, start + size)
        if start < stop:
            block = params if shared else params[:, start:stop]
            reaction_nodes(0, stop - start, code, scheme, v[start:stop], w[start:stop],
                           current[start:stop], block, dt, substeps, out_v[start:stop],
                           out_w[start:stop])


def reaction_advance(code, scheme, v, w, current, params, dt, substeps, out_v, out_w):
    """Advance every node's (v, w) by ``substeps`` Euler (scheme 0) or RK4 (1) steps over dt,
    the current held at ``current``; serial for short cables, threaded beyond
    PARALLEL_MIN_NODES nodes (or for any ensemble-sized work of many substeps) when numba
    has more than one thread (a parallel region on one thread only adds its start-up)."""
    import numba

    n = v.shape[0]
    if n * substeps >= PARALLEL_MIN_NODES and numba.get_num_threads() > 1:
        reaction_parallel(code, scheme, v, w, current, params, dt, substeps,
                          numba.get_num_threads() * 4, out_v, out_w)
    else:
        reaction_serial(code, scheme, v, w, current, params, dt, substeps, out_v, out_w)


__all__ = ["reaction_advance"]
