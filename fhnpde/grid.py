"""Uniform 1-D grids, their boundary treatment and the second difference.

Nodes are ``x_i = i dx``. With no-flux (Neumann) ends the grid holds both ends,
``dx = L / (nx - 1)``; on a ring (``periodic``) the node at ``x = L`` is the node at
``x = 0`` and is not stored, so ``dx = L / nx``.

The boundary is expressed by *ghost indices*: the value used left of node 0 and right of
node ``nx - 1``. Every stencil reads its neighbours through them, so each scheme is
written once for the interior and the ends alike:

- ``neumann``, ``boundary_order: 2`` (default): the mirror node, ``v_{-1} = v_1`` and
  ``v_{n} = v_{n-2}``. It is the centred difference ``v_x(0) ~ (v_1 - v_{-1}) / (2 dx) = 0``,
  second order, and the scheme conserves the trapezoidal integral of ``v`` exactly.
- ``neumann``, ``boundary_order: 1``: ``v_{-1} = v_0``, the one-sided difference
  ``v_x(0) ~ (v_0 - v_{-1}) / dx = 0``. First order: it turns a second-order scheme into a
  first-order one and is kept only to demonstrate that.
- ``periodic``: ``v_{-1} = v_{n-1}``, ``v_n = v_0``.

The fourth-order stencil (``solver.space_order: 4``, :func:`fourth_order_difference`) also
reads the nodes two away, through the *outer* ghost indices (:func:`outer_ghost_indices`):
the same reflection one node further (mirror: ``v_{-2} = v_2``; first order:
``v_{-2} = v_1``; ring: ``v_{-2} = v_{n-2}``). The mirror keeps it fourth order at a no-flux
end: there every odd x-derivative of a reaction-diffusion solution vanishes (differentiate
the equation in x), so the even extension is smooth.

A sheet (:class:`SheetGrid`, DESIGN section 9) is the product of two such grids, one per
direction; its fields are arrays ``(..., ny, nx)`` (C order, x fastest) and its Laplacian is
the five-point stencil, the sum of each direction's second difference read through that
direction's ghost indices.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from functools import cached_property

import numpy as np

BOUNDARIES = ("neumann", "periodic")
# dx^2 and 1/dx^2 are normal floats exactly when dx lies in [DX_MIN, DX_MAX]
DX_MIN = math.sqrt(sys.float_info.min)
DX_MAX = math.sqrt(1.0 / sys.float_info.min)


def second_difference(v_left, v, v_right, inv_dx2):
    """(v_{i-1} - 2 v_i + v_{i+1}) / dx^2: the three-point Laplacian, second order."""
    return (v_left - 2.0 * v + v_right) * inv_dx2


def five_point(v_left, v_right, v_below, v_above, v, inv_dx2, inv_dy2):
    """The five-point Laplacian of a sheet: the second difference along x plus the one
    along y (``below``/``above``: the neighbours at y - dy and y + dy). Second order."""
    return (second_difference(v_left, v, v_right, inv_dx2)
            + second_difference(v_below, v, v_above, inv_dy2))


def fourth_order_difference(v_far_left, v_left, v, v_right, v_far_right, inv_dx2):
    """(-v_{i-2} + 16 v_{i-1} - 30 v_i + 16 v_{i+1} - v_{i+2}) / (12 dx^2): the five-point
    second difference, fourth order (leading error ``-dx^4/90 v_xxxxxx``)."""
    return (16.0 * (v_left + v_right) - (v_far_left + v_far_right) - 30.0 * v) * (inv_dx2 / 12.0)


def nine_point_cross(v_far_left, v_left, v_right, v_far_right, v_far_below, v_below, v_above,
                     v_far_above, v, inv_dx2, inv_dy2):
    """The fourth-order Laplacian of a sheet: :func:`fourth_order_difference` along x plus
    the one along y (the nine-point cross, two nodes each way)."""
    return (fourth_order_difference(v_far_left, v_left, v, v_right, v_far_right, inv_dx2)
            + fourth_order_difference(v_far_below, v_below, v, v_above, v_far_above, inv_dy2))


def ghost_indices(n: int, boundary: str, boundary_order: int) -> tuple[int, int]:
    """(index read left of node 0, index read right of node n-1) of ``n`` nodes: the
    boundary treatment of the module docstring, shared by uniform and non-uniform grids."""
    if boundary == "periodic":
        return n - 1, 0
    if boundary_order == 1:
        return 0, n - 1
    return 1, n - 2


def outer_ghost_indices(n: int, boundary: str, boundary_order: int) -> tuple[int, int]:
    """(index read two left of node 0, index read two right of node n-1): the reflection of
    :func:`ghost_indices` one node further (see the module docstring)."""
    if boundary == "periodic":
        return n - 2, 1
    if boundary_order == 1:
        return 1, n - 2
    return 2, n - 3


def far_neighbours(v, ghosts: tuple[int, int], outer: tuple[int, int], axis: int = -1, xp=np):
    """(v_{i-2}, v_{i+2}) for every node along ``axis`` (-1: x, -2: y of a sheet), the two
    nodes nearest each end read through the ghost indices (``ghosts``: those of x_{-1} and
    x_n; ``outer``: those of x_{-2} and x_{n+1})."""
    (g0, gn), (o0, on) = ghosts, outer

    def part(start, stop):
        return v[..., start:stop] if axis == -1 else v[..., start:stop, :]

    far_left = xp.concat([part(o0, o0 + 1), part(g0, g0 + 1), part(0, -2)], axis=axis)
    far_right = xp.concat([part(2, None), part(gn, gn + 1), part(on, on + 1)], axis=axis)
    return far_left, far_right


def neighbours_through_ghosts(v, ghosts: tuple[int, int], xp=np):
    """(v_{i-1}, v_{i+1}) for every node (last axis), the ends read through ``ghosts``."""
    g0, gn = ghosts
    left = xp.concat([v[..., g0 : g0 + 1], v[..., :-1]], axis=-1)
    right = xp.concat([v[..., 1:], v[..., gn : gn + 1]], axis=-1)
    return left, right


@dataclass(frozen=True)
class UniformGrid:
    length: float
    nx: int
    boundary: str = "neumann"
    boundary_order: int = 2

    def __post_init__(self):
        if self.boundary not in BOUNDARIES:
            raise ValueError(f"unknown boundary {self.boundary!r}; valid: {', '.join(BOUNDARIES)}")
        if self.nx < 3:
            raise ValueError(f"a cable needs at least 3 nodes, got nx = {self.nx}")
        # The schemes use 1 / dx^2 and dx^2 / (2 D): both must be normal floats. A case is
        # refused before it gets here (fhnpde.case.DomainSpec); this guards direct use.
        dx = self.dx if math.isfinite(self.length) else math.inf
        if not DX_MIN <= dx <= DX_MAX:
            raise ValueError(f"the node spacing dx = {dx:.3g} (length {self.length:g}, nx = "
                             f"{self.nx}) is outside [{DX_MIN:.3g}, {DX_MAX:.3g}], where dx^2 "
                             "and 1 / dx^2 are normal floats")

    @property
    def periodic(self) -> bool:
        return self.boundary == "periodic"

    @property
    def dx(self) -> float:
        return self.length / (self.nx if self.periodic else self.nx - 1)

    @property
    def shape(self) -> tuple[int]:
        """(nx,): the shape of a field on the cable."""
        return (self.nx,)

    @property
    def size(self) -> int:
        return self.nx

    @cached_property
    def x(self) -> np.ndarray:
        return np.arange(self.nx) * self.dx

    @property
    def ghosts(self) -> tuple[int, int]:
        """(index read left of node 0, index read right of node nx-1)."""
        return ghost_indices(self.nx, self.boundary, self.boundary_order)

    def neighbours(self, v, xp=np):
        """(v_{i-1}, v_{i+1}) for every node, the ends read through the ghost indices."""
        return neighbours_through_ghosts(v, self.ghosts, xp)

    @property
    def outer_ghosts(self) -> tuple[int, int]:
        """(index read two left of node 0, index read two right of node nx-1)."""
        return outer_ghost_indices(self.nx, self.boundary, self.boundary_order)

    def far_neighbours(self, v, xp=np):
        """(v_{i-2}, v_{i+2}) for every node (the fourth-order stencil's outer nodes)."""
        return far_neighbours(v, self.ghosts, self.outer_ghosts, -1, xp)

    def laplacian(self, v, xp=np, space_order: int = 2):
        """The three-point second difference (``space_order`` 2) or the fourth-order one."""
        left, right = self.neighbours(v, xp)
        if space_order == 4:
            far_left, far_right = self.far_neighbours(v, xp)
            return fourth_order_difference(far_left, left, v, right, far_right, 1.0 / self.dx**2)
        return second_difference(left, v, right, 1.0 / self.dx**2)

    @cached_property
    def weights(self) -> np.ndarray:
        """Quadrature weights: trapezoidal with no-flux ends, uniform on a ring.

        The mirror-node Laplacian sums to zero against these weights, so pure diffusion
        conserves ``sum(weights * v)`` exactly.
        """
        w = np.full(self.nx, self.dx)
        if not self.periodic:
            w[0] = w[-1] = 0.5 * self.dx
        return w

    def integral(self, v) -> float:
        return float(np.sum(self.weights * np.asarray(v), axis=-1))


def neighbours_along_rows(v, ghosts: tuple[int, int], xp=np):
    """(v_{j-1}, v_{j+1}) for every node along the second-to-last axis (y of a sheet), the
    first and last rows read through ``ghosts``."""
    g0, gn = ghosts
    below = xp.concat([v[..., g0 : g0 + 1, :], v[..., :-1, :]], axis=-2)
    above = xp.concat([v[..., 1:, :], v[..., gn : gn + 1, :]], axis=-2)
    return below, above


@dataclass(frozen=True)
class SheetGrid:
    """A uniform 2-D grid: the product of the cable grids of x and y (DESIGN section 9).

    ``length`` and ``nx`` are pairs ``(along x, along y)``; fields on it are arrays
    ``(..., ny, nx)``, C order, x fastest. One boundary treatment holds on all four edges.
    """

    length: tuple[float, float]
    nx: tuple[int, int]
    boundary: str = "neumann"
    boundary_order: int = 2

    def __post_init__(self):
        if len(self.length) != 2 or len(self.nx) != 2:
            raise ValueError(f"a sheet needs a length and a node count per direction, got "
                             f"length = {self.length!r}, nx = {self.nx!r}")
        object.__setattr__(self, "length", (float(self.length[0]), float(self.length[1])))
        object.__setattr__(self, "nx", (int(self.nx[0]), int(self.nx[1])))
        self.axes  # noqa: B018 -- each direction validates itself (boundary, nodes, dx)

    @cached_property
    def axes(self) -> tuple[UniformGrid, UniformGrid]:
        """(grid along x, grid along y): the cable grids of the two directions."""
        return tuple(UniformGrid(length, n, self.boundary, self.boundary_order)
                     for length, n in zip(self.length, self.nx, strict=True))

    @property
    def periodic(self) -> bool:
        return self.boundary == "periodic"

    @property
    def dx(self) -> float:
        return self.axes[0].dx

    @property
    def dy(self) -> float:
        return self.axes[1].dx

    @property
    def x(self) -> np.ndarray:
        return self.axes[0].x

    @property
    def y(self) -> np.ndarray:
        return self.axes[1].x

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx): the shape of a field on the sheet."""
        return self.nx[1], self.nx[0]

    @property
    def size(self) -> int:
        return self.nx[0] * self.nx[1]

    def laplacian(self, v, xp=np, space_order: int = 2):
        """The five-point Laplacian ``d2x v + d2y v``, each direction through its ghosts
        (``space_order`` 4: the fourth-order nine-point cross)."""
        gx, gy = self.axes
        left, right = gx.neighbours(v, xp)
        below, above = neighbours_along_rows(v, gy.ghosts, xp)
        if space_order == 4:
            far_left, far_right, far_below, far_above = self.far_neighbours(v, xp)
            return nine_point_cross(far_left, left, right, far_right, far_below, below, above,
                                    far_above, v, 1.0 / gx.dx**2, 1.0 / gy.dx**2)
        return five_point(left, right, below, above, v, 1.0 / gx.dx**2, 1.0 / gy.dx**2)

    def neighbours(self, v, xp=np):
        """(left, right, below, above): each node's four neighbours, the edges read
        through each direction's ghost indices."""
        left, right = self.axes[0].neighbours(v, xp)
        return (left, right, *neighbours_along_rows(v, self.axes[1].ghosts, xp))

    def far_neighbours(self, v, xp=np):
        """(far left, far right, far below, far above): the nodes two away along x and y,
        the edges read through each direction's ghost and outer ghost indices."""
        gx, gy = self.axes
        return (*gx.far_neighbours(v, xp),
                *far_neighbours(v, gy.ghosts, gy.outer_ghosts, -2, xp))

    @cached_property
    def weights(self) -> np.ndarray:
        """Quadrature weights ``(ny, nx)``: the outer product of the axes' weights (the
        product trapezoidal rule with no-flux edges), against which pure diffusion with the
        mirror-node stencil conserves ``sum(weights * v)`` exactly."""
        return np.outer(self.axes[1].weights, self.axes[0].weights)

    def integral(self, v):
        """The integral of ``v`` over the sheet (a float, or one per leading index)."""
        total = np.sum(self.weights * np.asarray(v), axis=(-2, -1))
        return float(total) if np.ndim(total) == 0 else total
