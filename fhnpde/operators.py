r"""Linear operators shared by several schemes: the Laplacian as tridiagonal bands and the
Sherman–Morrison correction for the two corner entries of a ring.

The three-point Laplacian of :mod:`fhnpde.grid` becomes, with the grid's ghost nodes, a
tridiagonal matrix on a cable and a tridiagonal matrix plus two corners on a ring
(``periodic``). Crank–Nicolson (its Newton Jacobian) and the split solver's diffusion
half-step solve with such matrices; both, and the compiled Crank–Nicolson kernel, use the
corner correction written here once (:func:`corner_shift`, :func:`corner_factor`).

Sherman–Morrison (Press et al., *Numerical Recipes*, 3rd ed., 2.7.2): with
``gamma = -diag[0]``, ``T = A - u v^T`` is tridiagonal for ``u = (gamma, 0.., bottom)``,
``v = (1, 0.., top / gamma)``; ``x = y - z (v.y) / (1 + v.z)`` with ``T y = rhs``,
``T z = u``.
"""

from __future__ import annotations

import numpy as np


def laplacian_bands(grid) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """(lower, diag, upper, top, bottom) of the three-point Laplacian with the grid's ghosts.

    Row i reads ``(v[i-1] - 2 v[i] + v[i+1]) / dx^2`` with the ends read through
    ``grid.ghosts``: the mirror node adds its weight to ``upper[0]`` / ``lower[-1]``, the
    first-order end to the diagonal, a ring to the corners ``top = A[0, n-1]`` and
    ``bottom = A[n-1, 0]`` (zero otherwise). ``lower[0]`` and ``upper[-1]`` are zero.
    """
    n = grid.nx
    s = 1.0 / grid.dx**2
    lower = np.full(n, s)
    diag = np.full(n, -2.0 * s)
    upper = np.full(n, s)
    lower[0] = upper[-1] = 0.0
    top = bottom = 0.0
    g0, gn = grid.ghosts
    if g0 == 1:
        upper[0] += s
    elif g0 == 0:
        diag[0] += s
    else:
        top = s
    if gn == n - 2:
        lower[-1] += s
    elif gn == n - 1:
        diag[-1] += s
    else:
        bottom = s
    return lower, diag, upper, top, bottom


def corner_shift(diag_first, diag_last, top, bottom):
    """(gamma, diag[0], diag[-1]) of the tridiagonal ``T = A - u v^T``: the two diagonal
    entries that change when the corners are moved out of ``A``."""
    gamma = -diag_first
    return gamma, diag_first - gamma, diag_last - top * bottom / gamma


def corner_factor(y_first, y_last, z_first, z_last, top, gamma):
    """``(v.y) / (1 + v.z)``: the multiple of ``z`` to subtract from ``y`` (``x = y - f z``)."""
    return (y_first + top * y_last / gamma) / (1.0 + z_first + top * z_last / gamma)


def solve_with_corners(solve, lower, diag, upper, top, bottom, rhs, xp=np):
    """Solve a tridiagonal system with corner entries ``A[0, n-1] = top``, ``A[n-1, 0] = bottom``.

    ``solve(lower, diag, upper, rhs)`` solves tridiagonal systems; with corners, ``T y = rhs``
    and ``T z = u`` are found by one batched call of it (see the module docstring). Without
    corners it is one plain solve. ``diag`` is not modified.
    """
    if top == 0.0 and bottom == 0.0:
        return solve(lower, diag, upper, rhs)
    n = diag.shape[0]
    gamma, first, last = corner_shift(diag[0], diag[n - 1], top, bottom)
    diag = xp.asarray(diag, copy=True)
    diag[0] = first
    diag[n - 1] = last
    u = xp.zeros_like(rhs)
    u[0] = gamma
    u[n - 1] = bottom
    yz = solve(lower, diag, upper, xp.stack([rhs, u]))
    y, z = yz[0], yz[1]
    return y - corner_factor(y[0], y[n - 1], z[0], z[n - 1], top, gamma) * z
