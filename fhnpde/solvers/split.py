r"""Strang operator splitting: diffusion by Crank–Nicolson (cable) or Peaceman–Rachford ADI
(sheet), reaction by a ReactionStep.

One step of size Δt (Strang 1968, *SIAM J. Numer. Anal.* 5, 506; Hundsdorfer & Verwer 2003,
IV.1):

.. math::

    y^{n+1} = \mathcal{D}_{\Delta t/2}\, \mathcal{R}_{\Delta t}\, \mathcal{D}_{\Delta t/2}\, y^n

- :math:`\mathcal{D}_{\tau}`: diffusion of ``v`` alone (``w`` unchanged) over τ = Δt/2 by
  Crank–Nicolson, :math:`(I - \tfrac{\tau}{2} D L)\, v^{*} = (I + \tfrac{\tau}{2} D L)\, v`.
  The matrix is constant, so it is factorised once (``fhnpde.tridiagonal.factorize`` with
  ``options.tridiagonal``) and every half-step is one factorised solve; a ring (``periodic``)
  adds the Sherman–Morrison correction, its vector also computed once. On a sheet
  (``diffusion: adi``) the half-step is Peaceman–Rachford ADI (:class:`PeacemanRachfordADI`):
  one batched factorised solve over all rows, then one over all columns.
- :math:`\mathcal{R}_{\Delta t}`: the reaction alone at every node over Δt, by the case's
  ReactionStep (:mod:`fhnpde.reaction`: exact kinetics with Euler / RK4 substeps, or a neural
  surrogate), with the applied current at the interval's midpoint ``t + Δt/2``.

With ``merge_diffusion`` (``solver.merge_diffusion: true``) the steps of one ``advance``
(an output interval, or a block of one) share their inner half-steps: the two diffusion
half-steps between consecutive reactions become one diffusion step of Δt,

.. math::

    \mathcal{D}_{\Delta t/2}\, \mathcal{R}_{\Delta t}\, \mathcal{D}_{\Delta t}\,
    \mathcal{R}_{\Delta t} \cdots \mathcal{D}_{\Delta t}\, \mathcal{R}_{\Delta t}\,
    \mathcal{D}_{\Delta t/2},

which is the same scheme when the diffusion sub-step is exact, and with Crank–Nicolson or
ADI sub-steps another second-order one (Hundsdorfer & Verwer 2003, IV.1.4) at one diffusion
solve per step instead of two. The states between the ``advance`` calls are the same
symmetric Strang states; which steps are merged, and so the results to within the scheme's
error, depend on where the output intervals end.

Second order in time when both sub-steps are at least second order (RK4 substeps; Euler
substeps make it first order, with an error constant that shrinks with ``reaction.substeps``),
second order in space (three-point Laplacian, mirror-node boundary). No stability limit from
the diffusion (Crank–Nicolson and Peaceman–Rachford are unconditionally stable); the reaction
sub-step is explicit, so its substep must resolve the kinetics.
"""

from __future__ import annotations

import math

import numpy as np

from ..grid import neighbours_along_rows, second_difference
from ..operators import corner_factor, corner_shift, laplacian_bands
from .base import Order, Solver, State, register
from .options import diffusion_scheme, tridiagonal_method


class ImplicitLaplacian:
    """``rhs -> (I - s L)^{-1} rhs`` along one axis, L the three-point Laplacian of a cable
    grid with its ghosts, factorised once (``fhnpde.tridiagonal.factorize``).

    On a ring the two corner entries are handled by Sherman–Morrison (:mod:`fhnpde.operators`),
    the vector ``z = T^{-1} u`` solved once. ``solve(rhs, axis)`` treats every other axis of
    rhs as a batch axis: one factorised, batched solve for all rows (``axis=-1``) or all
    columns (``axis=-2``, solved down the columns without a transposed copy).
    """

    def __init__(self, grid, scale: float, method: str, xp=np, device=None):
        from .. import tridiagonal

        self.xp = xp
        self.scale = scale
        lower, diag, upper, top, bottom = laplacian_bands(grid)
        s = scale
        a, b, c = -s * lower, 1.0 - s * diag, -s * upper
        self.top, self.bottom = -s * top, -s * bottom
        self.corners = self.top != 0.0 or self.bottom != 0.0
        if self.corners:  # Sherman–Morrison (fhnpde.operators), its z computed once
            b = b.copy()
            self.gamma, b[0], b[-1] = corner_shift(b[0], b[-1], self.top, self.bottom)

        def placed(x):
            return xp.asarray(x) if device is None else xp.asarray(x, device=device)

        self.factorization = tridiagonal.factorize(placed(a), placed(b), placed(c), method=method)
        if self.corners:
            u = np.zeros(grid.nx)
            u[0], u[-1] = self.gamma, self.bottom
            self.z = self.factorization.solve(placed(u))

    def solve(self, rhs, axis: int = -1, out=None):
        """The solution of ``(I - s L) x = rhs`` along ``axis`` (-1 or -2); ``out``: a
        numpy array to write it into (numpy rhs only)."""
        return self.correct(self.factorization.solve(rhs, axis=axis, out=out), axis, out)

    def correct(self, y, axis: int = -1, out=None):
        """``y = T^{-1} rhs`` (the factorised solve) to the solution: the ring's
        Sherman–Morrison correction (in place when ``out`` is y), nothing without corners."""
        if not self.corners:
            return y
        # per system, x = y - f z with f = (v.y) / (1 + v.z); f keeps the solved axis (length 1)
        rest = (slice(None),) * (-1 - axis)
        first, last = y[(..., slice(0, 1), *rest)], y[(..., slice(-1, None), *rest)]
        z = self.z
        f = corner_factor(first, last, z[0], z[-1], self.top, self.gamma)
        z = self.xp.reshape(z, (z.shape[0],) + (1,) * len(rest))
        if out is None:
            return y - f * z
        out -= f * z
        return out


class CrankNicolsonDiffusion:
    """``v -> (I - τ/2 D L)^{-1} (I + τ/2 D L) v`` on a grid, the matrix factorised once."""

    def __init__(self, grid, diffusivity: float, tau: float, method: str, xp=np, device=None):
        self.grid = grid
        self.xp = xp
        self.scale = 0.5 * tau * diffusivity
        self.implicit = ImplicitLaplacian(grid, self.scale, method, xp, device)

    def __call__(self, v):
        return self.implicit.solve(v + self.scale * self.grid.laplacian(v, self.xp))


class PeacemanRachfordADI:
    r"""Diffusion ``v_t = D (v_xx + v_yy)`` on a sheet over τ by Peaceman–Rachford ADI.

    Peaceman & Rachford 1955 (*J. SIAM* 3, 28); Hundsdorfer & Verwer 2003, IV.3.2. With
    ``s = τ D / 2`` and the three-point Laplacians ``L_x``, ``L_y`` of the two directions
    (each with its own ghosts: mirror node or ring):

    .. math::

        (I - s L_x)\, v^{*} = (I + s L_y)\, v^n, \qquad
        (I - s L_y)\, v^{n+1} = (I + s L_x)\, v^{*}

    The first half-step is one batched solve over all rows (systems along x, ``axis=-1``),
    the second one over all columns (systems along y, ``axis=-2``); both matrices are
    factorised once (:class:`ImplicitLaplacian`). ``L_x`` and ``L_y`` commute on the product
    grid, so the step is ``(I - s L_y)^{-1} (I + s L_x) (I - s L_x)^{-1} (I + s L_y)``,
    whose eigenvalues ``(1 + s λ_x)(1 + s λ_y) / ((1 - s λ_x)(1 - s λ_y))`` have modulus
    <= 1 for λ <= 0: unconditionally stable, and second order in τ (it agrees with
    Crank–Nicolson up to the ``s^2 L_x L_y`` term of both sides). Data that do not depend
    on y see ``L_y v = 0`` and the step is Crank–Nicolson in x over τ, to round-off.
    """

    def __init__(self, grid, diffusivity: float, tau: float, method: str, xp=np, device=None):
        self.grid = grid
        self.xp = xp
        self.scale = 0.5 * tau * diffusivity
        self.gx, self.gy = grid.axes
        self.along_x = ImplicitLaplacian(self.gx, self.scale, method, xp, device)
        self.along_y = ImplicitLaplacian(self.gy, self.scale, method, xp, device)
        # numpy arrays and Thomas: the explicit parts as numba kernels into kept buffers
        self.kernels = None
        if xp is np and method == "thomas":
            from ..backends import kernels

            self.kernels = kernels("fhnpde.solvers.adi_numba")
            self.half = np.empty(grid.shape)
            self.scratch = np.empty((4, grid.shape[1]))  # the row sweep's rhs block
            self.factors = tuple(
                tuple(f[0] for f in (fa.reciprocal_pivots, fa.scaled_lower, fa.modified_upper))
                for fa in (self.along_x.factorization, self.along_y.factorization)
            )

    def second_difference_y(self, v):
        below, above = neighbours_along_rows(v, self.gy.ghosts, self.xp)
        return second_difference(below, v, above, 1.0 / self.gy.dx**2)

    def __call__(self, v):
        s = self.scale
        if self.kernels is None:  # array code on any namespace
            half = self.along_x.solve(v + s * self.second_difference_y(v), axis=-1)
            return self.along_y.solve(half + s * self.gx.laplacian(half, self.xp), axis=-2)
        # each direction's explicit part formed inside its batched Thomas sweep (one pass
        # over the sheet per direction; the unfused rhs-then-solve result to round-off)
        k, half, (fx, fy) = self.kernels, self.half, self.factors
        v = np.ascontiguousarray(v, dtype=np.float64)
        out = np.empty(self.grid.shape)
        k.implicit_half(-1, v, s, 1.0 / self.gy.dx**2, self.gy.ghosts, fx, half, self.scratch)
        self.along_x.correct(half, -1, half)
        k.implicit_half(-2, half, s, 1.0 / self.gx.dx**2, self.gx.ghosts, fy, out, self.scratch)
        return self.along_y.correct(out, -2, out)


@register
class StrangSplit(Solver):
    """Strang splitting: diffusion half-step (factorised once), reaction step, half-step.

    The diffusion half-step is ``options.diffusion``: Crank–Nicolson on a cable (``"cn"``),
    Peaceman–Rachford ADI on a sheet (``"adi"``, :class:`SheetStrangSplit`). The reaction step
    is ``options.reaction`` (a :class:`~fhnpde.reaction.ReactionStep`, built by
    :func:`fhnpde.driver.build_solver` from the case's ``reaction`` section), or, when none is
    given, the exact one of ``options.exact``; it sees every node of a sheet as one flat
    vector of nodes.
    """

    name = "split"
    geometry = "cable"
    order = Order(time=2, space=2)
    uses_reaction = True  # build_solver passes the case's reaction step in the options
    DIFFUSION = {"cn": CrankNicolsonDiffusion, "adi": PeacemanRachfordADI}

    def __init__(self, problem, options=None):
        super().__init__(problem, options)
        self.diffusion_scheme = diffusion_scheme(self.options.diffusion, self.geometry)
        self.method = tridiagonal_method(self.options.tridiagonal, self.backend, self.xp)
        self.reaction = self.options.reaction
        if self.reaction is None:
            from ..reaction import ExactReaction

            exact = self.options.exact
            self.reaction = ExactReaction(problem.kinetics, exact.scheme, exact.substeps,
                                          self.backend, xp=self.xp, device=self.device)
        reaction_order = getattr(self.reaction, "order", None)
        if reaction_order is not None and reaction_order < 2:
            self.order = Order(time=int(reaction_order), space=2)
        self.merged = bool(self.options.merge_diffusion)
        self._diffusion: dict[float, object] = {}  # tau -> operator, for steps of:
        self._diffusion_dt: float | None = None

    def diffusion(self, dt: float, tau: float | None = None):
        """The diffusion operator over ``tau`` (default the half-step dt / 2) for steps of
        dt: factorised on first use, then reused; those of another dt are dropped."""
        tau = 0.5 * dt if tau is None else tau
        if self._diffusion_dt != dt:
            self._diffusion, self._diffusion_dt = {}, dt
        if tau not in self._diffusion:
            self._diffusion[tau] = self.DIFFUSION[self.diffusion_scheme](
                self.problem.grid, self.problem.diffusion, tau, self.method, self.xp,
                self.device,
            )
            self.counters["factorizations"] = self.counters.get("factorizations", 0) + 1
        return self._diffusion[tau]

    def stats(self) -> dict[str, float]:
        """The solver's counters and the reaction step's, if it keeps any (``counters``)."""
        return {**self.counters, **getattr(self.reaction, "counters", {})}

    def react(self, v, w, current, dt):
        """The reaction step on every node (a sheet's fields as flat vectors of nodes)."""
        if v.ndim == 1:
            return self.reaction(v, w, current, dt)
        xp, shape = self.xp, tuple(v.shape)
        if math.prod(current.shape) != math.prod(shape):  # a constant: one value per node
            current = xp.broadcast_to(current, shape)
        current = xp.reshape(current, (-1,))
        v, w = self.reaction(xp.reshape(v, (-1,)), xp.reshape(w, (-1,)), current, dt)
        return xp.reshape(v, shape), xp.reshape(w, shape)

    def step(self, state, t, dt):
        return self.advance(state, t, dt, 1)

    def advance(self, state, t, dt, nsteps):
        """``nsteps`` Strang steps: a diffusion half-step, then per step the reaction and
        between two reactions the two half-steps (or, merged, one diffusion step of dt),
        and a half-step last."""
        half = self.diffusion(dt)
        full = self.diffusion(dt, dt) if self.merged and nsteps > 1 else None
        v, w = half(state.v), state.w
        for i in range(nsteps):
            current = self.asarray(self.problem.current.current(t + (i + 0.5) * dt))
            v, w = self.react(v, w, current, dt)
            if i == nsteps - 1:
                v = half(v)
            else:
                v = full(v) if full is not None else half(half(v))
        return State(v, w)


@register
class SheetStrangSplit(StrangSplit):
    """Strang splitting on a sheet: ADI diffusion half-steps around the reaction step."""

    geometry = "sheet"
