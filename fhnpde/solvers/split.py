r"""Strang operator splitting: diffusion by Crank–Nicolson, reaction by a ReactionStep.

One step of size Δt (Strang 1968, *SIAM J. Numer. Anal.* 5, 506; Hundsdorfer & Verwer 2003,
IV.1):

.. math::

    y^{n+1} = \mathcal{D}_{\Delta t/2}\, \mathcal{R}_{\Delta t}\, \mathcal{D}_{\Delta t/2}\, y^n

- :math:`\mathcal{D}_{\tau}`: diffusion of ``v`` alone (``w`` unchanged) over τ = Δt/2 by
  Crank–Nicolson, :math:`(I - \tfrac{\tau}{2} D L)\, v^{*} = (I + \tfrac{\tau}{2} D L)\, v`.
  The matrix is constant, so it is factorised once (``fhnpde.tridiagonal.factorize`` with
  ``options.tridiagonal``) and every half-step is one factorised solve; a ring (``periodic``)
  adds the Sherman–Morrison correction, its vector also computed once.
- :math:`\mathcal{R}_{\Delta t}`: the reaction alone at every node over Δt, by the case's
  ReactionStep (:mod:`fhnpde.reaction`: exact kinetics with Euler / RK4 substeps, or a neural
  surrogate), with the applied current at the interval's midpoint ``t + Δt/2``.

Second order in time when both sub-steps are at least second order (RK4 substeps; Euler
substeps make it first order, with an error constant that shrinks with ``reaction.substeps``),
second order in space (three-point Laplacian, mirror-node boundary). No stability limit from
the diffusion (Crank–Nicolson is A-stable); the reaction sub-step is explicit, so its
substep must resolve the kinetics.
"""

from __future__ import annotations

import numpy as np

from ..operators import corner_factor, corner_shift, laplacian_bands
from .base import Order, Solver, State, register
from .options import tridiagonal_method


class CrankNicolsonDiffusion:
    """``v -> (I - τ/2 D L)^{-1} (I + τ/2 D L) v`` on a grid, the matrix factorised once."""

    def __init__(self, grid, diffusivity: float, tau: float, method: str, xp=np, device=None):
        from .. import tridiagonal

        self.grid = grid
        self.xp = xp
        self.scale = 0.5 * tau * diffusivity
        lower, diag, upper, top, bottom = laplacian_bands(grid)
        s = self.scale
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

    def __call__(self, v):
        rhs = v + self.scale * self.grid.laplacian(v, self.xp)
        y = self.factorization.solve(rhs)
        if self.corners:
            z = self.z
            y = y - corner_factor(y[0], y[-1], z[0], z[-1], self.top, self.gamma) * z
        return y


@register
class StrangSplit(Solver):
    """Strang splitting: diffusion half-step (CN, factorised once), reaction step, half-step.

    The reaction step is ``options.reaction`` (a :class:`~fhnpde.reaction.ReactionStep`,
    built by :func:`fhnpde.driver.build_solver` from the case's ``reaction`` section), or,
    when none is given, the exact one of ``options.exact``.
    """

    name = "split"
    geometry = "cable"
    order = Order(time=2, space=2)
    uses_reaction = True  # build_solver passes the case's reaction step in the options

    def __init__(self, problem, options=None):
        super().__init__(problem, options)
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
        self._diffusion: CrankNicolsonDiffusion | None = None

    def diffusion(self, dt: float) -> CrankNicolsonDiffusion:
        """The half-step operator for steps of dt (factorised on first use, then reused)."""
        if self._diffusion is None or self._diffusion_dt != dt:
            self._diffusion = CrankNicolsonDiffusion(
                self.problem.grid, self.problem.diffusion, 0.5 * dt, self.method, self.xp,
                self.device,
            )
            self._diffusion_dt = dt
            self.counters["factorizations"] = self.counters.get("factorizations", 0) + 1
        return self._diffusion

    def stats(self) -> dict[str, float]:
        """The solver's counters and the reaction step's, if it keeps any (``counters``)."""
        return {**self.counters, **getattr(self.reaction, "counters", {})}

    def step(self, state, t, dt):
        half = self.diffusion(dt)
        v = half(state.v)
        current = self.asarray(self.problem.current.current(t + 0.5 * dt))
        v, w = self.reaction(v, state.w, current, dt)
        return State(half(v), w)
