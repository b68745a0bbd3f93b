r"""Differentiable runs on a sheet (DESIGN §9, §10): the cable's differentiable run
(:mod:`fhnpde.gradients.run`) on fields ``(ny, nx)``.

Everything but the geometry is the cable's: the parameters, the diffusivity, the stimulus
amplitudes (:class:`~fhnpde.gradients.run.DifferentiableProblem`; a sheet's currents are
``(ny, nx)`` arrays), the per-interval checkpoint and the exact reaction's substeps
(:meth:`~fhnpde.gradients.run.SplitSteps.reaction`, elementwise). What is the sheet's own:

- the initial fields (:meth:`SheetProblem.initial`): a profile of x alone (a number
  ``center``, a box without ``y``) is the cable's on every row; a round or elliptic gaussian
  (``center: [x, y]``, ``width`` a number or ``[wx, wy]``) is
  :func:`fhnpde.stimulus.gaussian_sheet_pulse`, a box with ``y`` the box of both ranges;
- ``explicit``: :func:`~fhnpde.schemes.forward_euler_sheet_node` (the five-point
  Laplacian); its backward pass is the cable's torch one
  (:meth:`~fhnpde.gradients.run.ExplicitSteps.adjoint_arrays`) with the five-point ``L^T``;
- ``split`` (exact reaction, ``solver.diffusion: adi``): the Peaceman–Rachford half-steps of
  :class:`fhnpde.solvers.split.PeacemanRachfordADI` with differentiable batched tridiagonal
  solves: ``(I - s L_x)`` over all rows at once, ``(I - s L_y)`` over all columns at once
  (the columns transposed to rows), each solve's backward pass one batched solve with the
  transposed matrix (:class:`~fhnpde.gradients.tridiagonal.TridiagonalSolve`); ``s = τ D / 2``
  carries the gradient of ``D`` through the bands. On a ring the two corner entries are
  moved out by Sherman–Morrison (:func:`fhnpde.operators.corner_shift`,
  :func:`~fhnpde.operators.corner_factor`), its vector ``z = T^{-1} u`` solved alongside.
"""

from __future__ import annotations

import numpy as np
import torch

from ..grid import neighbours_along_rows, second_difference
from ..operators import corner_factor, corner_shift, laplacian_bands
from ..schemes import forward_euler_sheet_node
from ..stimulus import box_pulse, gaussian_pulse, gaussian_sheet_pulse
from .run import DifferentiableProblem, ExplicitSteps, SplitSteps, adjoint_method
from .tridiagonal import solve as differentiable_solve

#: solvers with a differentiable path on a sheet
SHEET_SOLVERS = ("explicit", "split")


class SheetProblem(DifferentiableProblem):
    """:class:`~fhnpde.gradients.run.DifferentiableProblem` on a sheet: the initial fields
    are ``(ny, nx)`` tensors built from the profile's (possibly differentiated) numbers."""

    def initial(self, name: str, targets, values) -> torch.Tensor:
        host = self.problem.v0 if name == "v" else self.problem.w0
        if not targets:
            return self.tensor(host)
        import array_api_compat.torch as xp

        grid = self.problem.grid
        shape = grid.shape
        ones = torch.ones(shape, dtype=self.dtype, device=self.device)
        fields = {(t.field, t.index): values[t.path] for t in targets}
        if (None, None) in fields:  # a constant
            return fields[None, None] * ones
        spec = getattr(self.case.initial, name)

        def number(field, index=None):
            given = getattr(spec, field)
            if index is not None and not isinstance(given, list):
                given = [given, given]  # one width for both directions
            return fields.get((field, index), given if index is None else float(given[index]))

        amplitude, base = number("amplitude"), number("base")
        x = self.tensor(grid.x)
        if spec.kind == "gaussian":
            if not isinstance(spec.center, list):  # a stripe: the cable's pulse on every row
                return gaussian_pulse(x, number("center"), number("width"), amplitude, base,
                                      xp) * ones
            if isinstance(spec.width, list):
                width = (number("width", 0), number("width", 1))
            else:
                width = (number("width"),) * 2
            return gaussian_sheet_pulse(x, self.tensor(grid.y),
                                        (number("center", 0), number("center", 1)), width,
                                        amplitude, base, xp)
        inside = (grid.x >= spec.x[0]) & (grid.x <= spec.x[1])
        if spec.y is None:
            inside = np.broadcast_to(inside, shape)
        else:
            inside = inside[None, :] & ((grid.y >= spec.y[0]) & (grid.y <= spec.y[1]))[:, None]
        inside = torch.as_tensor(np.ascontiguousarray(inside), device=self.device)
        return box_pulse(inside, amplitude, base, xp) * ones


class SheetExplicitSteps(ExplicitSteps):
    """Forward Euler with the five-point Laplacian
    (:func:`~fhnpde.schemes.forward_euler_sheet_node`); the backward pass is the cable's
    :meth:`~fhnpde.gradients.run.ExplicitSteps.adjoint_arrays` (recomputed states, the
    adjoint recurrence, the model's parameter derivatives) with the five-point ``L^T``."""

    compiled_adjoint = False  # the numba backward pass is the cable's three-point stencil

    def __init__(self, dp: SheetProblem):
        super().__init__(dp)
        self.inv_dy2 = 1.0 / dp.problem.grid.dy**2

    def step(self, v, w, current, params, diffusivity, dt):
        left, right, below, above = self.dp.problem.grid.neighbours(v, self.xp)
        return forward_euler_sheet_node(left, right, below, above, v, w, current, self.dp.code,
                                        params, dt, diffusivity, self.inv_dx2, self.inv_dy2)

    def laplacian_transposed(self, x):
        """``L^T x`` of the five-point Laplacian: ``L_x^T`` along every row plus ``L_y^T``
        along every column, each the cable's sparse ``L^T`` of that direction
        (:func:`fhnpde.gradients.run.transposed_laplacian`; the mirror node makes ``L``
        unsymmetric at the edges)."""
        if not hasattr(self, "_transposed"):
            from .run import transposed_laplacian

            self._transposed = tuple(transposed_laplacian(g, x.dtype, x.device)
                                     for g in self.dp.problem.grid.axes)
        lx_t, ly_t = self._transposed
        return torch.mm(lx_t, x.T).T + torch.mm(ly_t, x)


class ImplicitAxis:
    """``rhs -> (I - s L)^{-1} rhs`` along the last axis of ``rhs`` (every other axis a batch
    of systems), ``L`` the three-point Laplacian of one direction's grid with its ghosts,
    differentiable in ``rhs`` and in ``s`` (a number or a 0-d tensor): the differentiable
    counterpart of :class:`fhnpde.solvers.split.ImplicitLaplacian`."""

    def __init__(self, grid, method: str, tensor):
        lower, diag, upper, top, bottom = laplacian_bands(grid)
        self.bands = tuple(tensor(b) for b in (lower, diag, upper))
        self.top, self.bottom = float(top), float(bottom)
        self.corners = top != 0.0 or bottom != 0.0
        self.method = method
        self.n = grid.nx

    def solve(self, s, rhs):
        lower, diag, upper = self.bands
        a, b, c = -s * lower, 1.0 - s * diag, -s * upper
        if not self.corners:
            return differentiable_solve(a, b, c, rhs, self.method)
        # Sherman–Morrison (fhnpde.operators): T = A - u v^T without the corners, then
        # x = y - f z with T y = rhs, T z = u, f = (v.y) / (1 + v.z); rhs and u in one call
        top, bottom = -s * self.top, -s * self.bottom
        gamma, first, last = corner_shift(b[0], b[-1], top, bottom)
        b = torch.cat([first.reshape(1), b[1:-1], last.reshape(1)])
        like = {"dtype": rhs.dtype, "device": rhs.device}
        u = torch.cat([torch.as_tensor(gamma, **like).reshape(1), torch.zeros(self.n - 2, **like),
                       torch.as_tensor(bottom, **like).reshape(1)])
        batch = rhs.reshape(-1, self.n)
        yz = differentiable_solve(a, b, c, torch.cat([batch, u.reshape(1, -1)]), self.method)
        y, z = yz[:-1], yz[-1]
        f = corner_factor(y[:, :1], y[:, -1:], z[0], z[-1], top, gamma)
        return (y - f * z).reshape(rhs.shape)


class SheetSplitSteps(SplitSteps):
    """Strang splitting on a sheet: differentiable Peaceman–Rachford half-steps (module
    docstring) around the cable's exact reaction substeps."""

    def __init__(self, dp: SheetProblem):
        import array_api_compat.torch as xp

        from ..reaction import EXACT_SCHEMES

        self.dp, self.xp = dp, xp
        spec = dp.case.reaction
        self.scheme_code = EXACT_SCHEMES[spec.scheme][0]
        self.substeps = int(spec.substeps)
        method = adjoint_method(dp.solver.method, dp.v0)
        self.gx, self.gy = dp.problem.grid.axes
        self.along_x = ImplicitAxis(self.gx, method, dp.tensor)
        self.along_y = ImplicitAxis(self.gy, method, dp.tensor)

    def half_step(self, v, dt):
        r"""Peaceman–Rachford over τ = dt/2 with ``s = τ D / 2``:
        ``(I - s L_x) v^* = (I + s L_y) v``, ``(I - s L_y) v' = (I + s L_x) v^*``
        (:class:`fhnpde.solvers.split.PeacemanRachfordADI`)."""
        xp, s = self.xp, 0.5 * (0.5 * dt) * self.dp.diffusion
        below, above = neighbours_along_rows(v, self.gy.ghosts, xp)
        rows = v + s * second_difference(below, v, above, 1.0 / self.gy.dx**2)
        half = self.along_x.solve(s, rows)
        columns = (half + s * self.gx.laplacian(half, xp)).transpose(-1, -2).contiguous()
        return self.along_y.solve(s, columns).transpose(-1, -2)


def steps_for(dp: SheetProblem):
    """The differentiable steps of a sheet's solver."""
    return {"explicit": SheetExplicitSteps, "split": SheetSplitSteps}[dp.solver.name](dp)
