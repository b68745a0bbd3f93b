"""Derivatives and interpolation on non-uniform 1-D node sets.

The adaptive solver (:mod:`fhnpde.solvers.adaptive`) computes on a subset of the nodes of
a uniform base grid, so neighbouring nodes lie at unequal distances. This module holds the
three-point stencils for such node sets, written once as plain arithmetic (they work on
numpy arrays and, registered with numba, on scalars inside a kernel), the boundary
treatment, and the linear interpolation used when the node set changes.

Three-point Lagrange derivatives
--------------------------------

Take a node ``x_i`` with left neighbour ``x_i - a`` and right neighbour ``x_i + b``
(``a = h_left``, ``b = h_right``). The quadratic through the three values is

.. math::

    p(x) = v_L \\ell_L(x) + v_C \\ell_C(x) + v_R \\ell_R(x), \\quad
    \\ell_L = \\frac{(x - x_i)(x - x_i - b)}{a (a + b)},\\;
    \\ell_C = -\\frac{(x - x_i + a)(x - x_i - b)}{a b},\\;
    \\ell_R = \\frac{(x - x_i + a)(x - x_i)}{b (a + b)}.

Differentiating at ``x_i``:

.. math::

    v_x \\approx p'(x_i) = -\\frac{b}{a(a+b)} v_L + \\frac{b-a}{ab} v_C + \\frac{a}{b(a+b)} v_R
        = \\frac{b}{a+b}\\,\\frac{v_C - v_L}{a} + \\frac{a}{a+b}\\,\\frac{v_R - v_C}{b},

    v_{xx} \\approx p''(x_i) = \\frac{2 v_L}{a(a+b)} - \\frac{2 v_C}{ab} + \\frac{2 v_R}{b(a+b)}
        = \\frac{2}{a+b}\\left(\\frac{v_R - v_C}{b} - \\frac{v_C - v_L}{a}\\right).

The right-hand forms (weighted one-sided slopes; a difference of fluxes) are the ones
coded: they take differences of nearby values first and so lose less to cancellation.
Taylor expansion gives the truncation errors

.. math::

    p'(x_i) - v_x = \\tfrac{ab}{6} v_{xxx} + O(h^3), \\qquad
    p''(x_i) - v_{xx} = \\tfrac{b - a}{3} v_{xxx} + \\tfrac{a^2 - ab + b^2}{12} v_{xxxx} + O(h^3):

the first derivative is second order on any node set; the second derivative is first
order in general and second order where the spacing varies smoothly (``b - a = O(h^2)``),
in particular on a uniform grid, where it is the usual ``(v_L - 2 v_C + v_R)/h^2``.

Boundaries
----------

The ends are handled by *ghost values*, exactly as :mod:`fhnpde.grid` does on the uniform
grid, only with the actual spacing of the end interval:

- ``neumann`` (``boundary_order: 2``): the mirror node. Node 0 gets a ghost at
  ``x_0 - (x_1 - x_0)`` carrying ``v_1``, so ``a = b = x_1 - x_0`` and
  ``v_x(x_0) = 0`` exactly, ``v_xx(x_0) = 2 (v_1 - v_0) / (x_1 - x_0)^2``; its error is
  ``(x_1 - x_0)^2 v_xxxx / 12`` for a solution with ``v_x = 0`` (whose even extension makes
  ``v_xxx(x_0) = 0``) -- second order, the same as the uniform mirror node. Likewise at
  the right end with ``v_{m-2}``.
- ``neumann`` (``boundary_order: 1``): the ghost carries ``v_0`` itself (the one-sided
  difference ``(v_0 - v_{-1})/h = 0``), first order, kept only to match the uniform grid.
- ``periodic``: node 0's left neighbour is the last node, at distance
  ``x_0 + L - x_{m-1}``; the last node's right neighbour is node 0.

With the mirror ends and the trapezoidal weights of the node set, the second difference
sums to zero (the fluxes telescope), so pure diffusion conserves ``sum(weights * v)``.

Linear interpolation onto a new node set
----------------------------------------

When the node set changes, a node present in both sets keeps its value exactly; a new
node ``x`` between old neighbours ``x_L < x < x_R`` gets the value of the line through
``(x_L, v_L)`` and ``(x_R, v_R)``:

.. math::

    v(x) \\approx v_L + \\frac{x - x_L}{x_R - x_L} (v_R - v_L),
    \\qquad v(x) - \\text{line}(x) = \\tfrac12 (x - x_L)(x - x_R)\\, v_{xx}(\\xi),

so the error is at most ``(x_R - x_L)^2 max|v_xx| / 8`` (the product ``(x - x_L)(x_R - x)``
is largest at the midpoint). New nodes appear only where the old set was coarser than the
new one needs; the first-order (in time) error of the step that follows is of the same
size as long as the grid is refined before the solution steepens there, which the
adaptive solver's front radius and thresholds ensure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .backends import array_namespace, device_of
from .grid import ghost_indices, neighbours_through_ghosts

__all__ = [
    "NodeSet",
    "first_derivative",
    "second_derivative",
    "interpolate_nodes",
]


# --- the formulas, written once -------------------------------------------------------


def first_derivative(v_left, v, v_right, h_left, h_right):
    """Three-point Lagrange v_x at a node with neighbours ``h_left`` and ``h_right`` away:
    ``b/(a+b) (v - v_left)/a + a/(a+b) (v_right - v)/b`` (a = h_left, b = h_right)."""
    total = h_left + h_right
    return (h_right / total) * ((v - v_left) / h_left) + (h_left / total) * (
        (v_right - v) / h_right
    )


def second_derivative(v_left, v, v_right, h_left, h_right):
    """Three-point Lagrange v_xx: ``2/(a+b) ((v_right - v)/b - (v - v_left)/a)``."""
    return 2.0 / (h_left + h_right) * ((v_right - v) / h_right - (v - v_left) / h_left)


# --- node sets ------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeSet:
    """Sorted positions ``x`` on a cable of ``length`` with a boundary treatment.

    ``h_left[i]`` / ``h_right[i]`` are the distances to the value read left / right of node
    ``i``; at the ends that value is the ghost ``v[ghosts[0]]`` / ``v[ghosts[1]]`` (see the
    module docstring). ``periodic`` node sets do not hold the node at ``x = length``.
    ``x`` may be an array of any array-API namespace; the derivatives then are too.
    """

    x: Any
    length: float
    boundary: str = "neumann"
    boundary_order: int = 2

    def __post_init__(self):
        if self.x.ndim != 1 or self.x.shape[0] < 2:
            raise ValueError(f"a node set needs at least 2 positions, got shape {self.x.shape}")
        if bool(self.xp.any(self.x[1:] <= self.x[:-1])):
            raise ValueError("node positions must be strictly increasing")

    @property
    def xp(self):
        """The array namespace of the positions."""
        return array_namespace(self.x)

    @property
    def periodic(self) -> bool:
        return self.boundary == "periodic"

    @property
    def size(self) -> int:
        return int(self.x.shape[0])

    @property
    def ghosts(self) -> tuple[int, int]:
        """(index read left of node 0, index read right of the last node)."""
        return ghost_indices(self.size, self.boundary, self.boundary_order)

    @property
    def spacings(self):
        """(h_left, h_right) for every node, the ends taken from the boundary treatment."""
        x, xp = self.x, self.xp
        gaps = x[1:] - x[:-1]
        if self.periodic:
            wrap = x[:1] + self.length - x[-1:]
            return xp.concat([wrap, gaps]), xp.concat([gaps, wrap])
        return xp.concat([gaps[:1], gaps]), xp.concat([gaps, gaps[-1:]])

    def neighbours(self, v):
        """(value left of node i, value right of node i), the ends read through the ghosts."""
        return neighbours_through_ghosts(v, self.ghosts, self.xp)

    def first_derivative(self, v):
        left, right = self.neighbours(v)
        a, b = self.spacings
        return first_derivative(left, v, right, a, b)

    def second_derivative(self, v):
        left, right = self.neighbours(v)
        a, b = self.spacings
        return second_derivative(left, v, right, a, b)

    @property
    def weights(self):
        """Quadrature weights: trapezoidal (half intervals at the ends), or the mean of the
        two neighbouring intervals on a ring."""
        a, b = self.spacings
        w = 0.5 * (a + b)
        if self.periodic:
            return w
        return self.xp.concat([0.5 * b[:1], w[1:-1], 0.5 * a[-1:]])


def interpolate_nodes(x_old, v_old, x_new, period: float | None = None, xp=np):
    """Values on ``x_new`` from values on ``x_old`` (both sorted, arrays of ``xp``; ``x_new``
    within ``[x_old[0], x_old[-1]]``): a node in both sets keeps its value bit for bit, any
    other node gets the linear interpolant of its two old neighbours,
    ``v_L + (v_R - v_L) / (x_R - x_L) * (x - x_L)`` as ``numpy.interp`` computes it. On a
    ring of length ``period`` (positions in ``[0, period)``) the interval across ``x = 0``
    counts.

    ``v_old`` may carry leading axes (e.g. ``(2, m)`` for v and w together); the rows are
    interpolated one at a time into the result, so the work arrays are those of one row.
    """
    if period is not None:  # the old nodes continued one period to either side
        x_old = xp.concat([x_old[-1:] - period, x_old, x_old[:1] + period])
        v_old = xp.concat([v_old[..., -1:], v_old, v_old[..., :1]], axis=-1)
    m, n = x_old.shape[0], x_new.shape[0]
    left = xp.searchsorted(x_old, x_new, side="right") - 1  # x_old[left] <= x < x_old[left + 1]
    offset = x_new - xp.take(x_old, left)
    kept = offset == 0.0
    gaps = x_old[1:] - x_old[:-1]
    flat = xp.zeros((1,), dtype=v_old.dtype, device=device_of(v_old))  # beyond the last node

    def interpolate(row):
        slope = xp.concat([(row[1:] - row[:-1]) / gaps, flat])
        at_left = xp.take(row, left)
        return xp.where(kept, at_left, xp.take(slope, left) * offset + at_left)

    if v_old.ndim == 1:
        return interpolate(v_old)
    rows = xp.reshape(v_old, (-1, m))
    out = xp.empty((rows.shape[0], n), dtype=v_old.dtype, device=device_of(v_old))
    for i in range(rows.shape[0]):
        out[i, ...] = interpolate(rows[i, ...])
    return xp.reshape(out, (*v_old.shape[:-1], n))
