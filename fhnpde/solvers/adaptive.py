"""Adaptive-grid explicit solver: forward Euler on the nodes where the waves are.

Every active node is a node of the case's uniform *base* grid (``domain.nx``); the ends
of a no-flux cable are always active. On the active nodes the scheme is the explicit one
of :mod:`fhnpde.solvers.explicit` with the three-point Lagrange Laplacian of
:mod:`fhnpde.nonuniform` (left spacing ``a``, right spacing ``b``):

.. math::

    v_i^{n+1} = v_i^n + \\Delta t \\left( D\\, \\frac{2}{a+b}\\left(\\frac{v_{i+1}^n - v_i^n}{b}
                - \\frac{v_i^n - v_{i-1}^n}{a}\\right) + f(v_i^n, w_i^n, I_i^n) \\right),
    \\qquad w_i^{n+1} = w_i^n + \\Delta t\\, g(v_i^n, w_i^n).

Choosing the active set (at every multiple of ``solver.adaptive.regrid_every`` in
simulated time, from the solution on the current active nodes; the heuristic of the
spatial-FHN GPU write-up, see ``/work/shared/references``):

Each rule asks for a *stride* (spacing in base nodes) at base nodes; strides are powers
of two (each ``*_dx`` rounded down), a node is active when its index is a multiple of the
finest stride asked for it, and both ends are always active:

1. a coarse background: stride ``coarse_dx / dx`` everywhere;
2. where ``|v_x| > vx_threshold`` at an active node (where the waves are): stride
   ``wave_dx / dx`` within ``ZONE_WIDTH`` (:mod:`fhnpde.refinement`) such strides of it;
3. where ``|v_t| > vt_threshold`` (where the dynamics are): stride ``fine_dx / dx`` within
   ``ZONE_WIDTH`` such strides; ``v_t = D v_xx + f(v, w, I)`` is the forward-Euler
   difference quotient ``(v^{n+1} - v^n)/dt`` of the coming step;
4. stride 1 (the base grid) within ``front_radius`` of every inflection point of ``v`` (a
   sign change of ``v_xx`` between neighbouring active nodes, located by linear
   interpolation of ``v_xx``) -- the wavefronts. An inflection counts only where, at one
   of the two nodes, ``|v_x| > vx_threshold`` and ``|v_t| > vt_threshold`` (a travelling
   front has ``v_t = -c v_x``, both large): on a cable at rest ``v_xx`` is round-off
   whose sign flips from node to node, and the slowly fading remnant of a pulse that
   died at an end is no front either;
5. grading (:func:`fhnpde.refinement.balance_strides`): each level is ringed by
   ``BAND_WIDTH`` strides of the next coarser one, so neighbouring intervals differ by at
   most a factor of two.

Zones have a fixed extent around the flagged node rather than reaching to its current
neighbours: a zone that depended on the current spacing would grow and shrink on
alternate choices, and every node that blinks off and on is replaced by an interpolant.
With power-of-two strides a node stays put while zone boundaries move past it, so nodes
change only where the solution moves (on the divergent case this cut the front error at
t = 200 threefold and made it independent of the regrid interval).

The regrid times are fixed in simulated time, not in steps: the case validation makes
``regrid_every`` a whole number ``k`` of steps of ``time.dt`` and the set is chosen before
steps ``k, 2k, ...``. Refining dt then leaves the regrid times, and the interpolation
error each regrid adds, unchanged, and the scheme converges at order 1 in dt (regridding
every ``k`` *steps* doubled the regrids with each halving of dt: the error stalled near
5e-5). With ``solver.force`` a ``regrid_every`` that is not whole steps is accepted (the
stability study probes arbitrary dt): the set is then chosen at the first step at or
after each multiple (:class:`RegridClock`).

Nodes kept from the old set keep their values; new nodes get the linear interpolant of
their old neighbours (:func:`fhnpde.nonuniform.interpolate_nodes`, derivation there).

Order 1 in time; 2 in space on the base grid (with every node active the scheme *is* the
uniform explicit scheme, up to round-off), degraded to 1 locally where the spacing jumps.
Stability: on a node with spacings ``a, b`` the Laplacian's Gershgorin discs lie in
``[-4D/(ab), 0]``, so forward Euler is stable for ``dt <= min(ab)/(2D)``; the front zones
always use the base spacing, so the limit is ``dx^2 / (2 D)`` with ``dx`` the base
spacing, the same as the uniform explicit scheme's (the adaptive grid saves node updates,
not time steps).

State: ``v``, ``w`` are held on the base grid (inactive nodes hold the linear interpolant
of the active ones, refreshed at the end of every :meth:`advance`), and ``aux["index"]``
holds the sorted base indices of the active nodes. Within ``advance`` the active values
live in compact arrays.

Backends: the array path is array code on the solver's namespace ``xp`` (numpy, cupy,
torch; the state, the indices and the active set stay on its device, and only the stored
outputs and the blow-up guard copy them to the host, through :func:`fhnpde.backends.to_numpy`);
the numba path steps in compiled blocks. They choose the active set with the array and the
sequential forms of :mod:`fhnpde.refinement`, which choose the same nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..backends import device_of, kernels
from ..nonuniform import NodeSet, interpolate_nodes
from ..refinement import member_mask, select_active_array
from ..schemes import adaptive_euler_node
from .base import ArrayPath, Order, Solver, State, register
from .explicit import diffusion_limit

KERNELS = "fhnpde.solvers.adaptive_numba"


@dataclass(frozen=True)
class Refinement:
    """The refinement rules of a case, resolved on its base grid.

    Strides are in base nodes and are powers of two (each spacing rounded *down* to one,
    so a zone is at least as fine as asked): nodes of every level then lie on multiples
    of their stride, a coarser level's nodes are nodes of every finer level, and a node
    does not move when a zone boundary shifts by one base node.
    """

    regrid_every: float
    coarse_stride: int
    wave_stride: int
    fine_stride: int
    vx_threshold: float
    vt_threshold: float
    front_radius: float

    @classmethod
    def from_spec(cls, spec, grid) -> Refinement:
        """The rules of ``spec`` (:class:`~fhnpde.solvers.options.AdaptiveOptions`, or
        anything with its fields) on ``grid``."""
        # At most half the nodes apart, so a ring keeps two nodes and a cable a middle one.
        largest = max(1, (grid.nx - 1) // 2)

        def stride(length: float) -> int:
            ratio = max(1.0, length / grid.dx * (1 + 1e-9))
            return min(1 << int(np.floor(np.log2(ratio))), 1 << int(np.log2(largest)))

        return cls(
            regrid_every=float(spec.regrid_every),
            coarse_stride=stride(spec.coarse_dx),
            wave_stride=stride(spec.wave_dx),
            fine_stride=stride(spec.fine_dx),
            vx_threshold=float(spec.vx_threshold),
            vt_threshold=float(spec.vt_threshold),
            front_radius=float(spec.front_radius),
        )


class RegridClock:
    """The steps before which the active set is chosen again: the first step ``n > 0`` at
    or after each multiple of ``interval`` in simulated time (``n dt >= m interval``).

    A whole number of steps (within the relative tolerance of the case validation) is
    counted as the integer ``k = round(interval / dt)``, derived once: regrids before steps
    ``k, 2k, 3k, ...`` exactly, with no rounding of times. Otherwise (only with
    ``solver.force``) step ``n`` regrids when ``floor(n / r)`` passes a whole number,
    ``r = interval / dt``; an interval shorter than a step regrids every step.
    """

    def __init__(self, interval: float, dt: float):
        ratio = min(interval / dt, 2.0**62)  # beyond any run: never regrid
        whole = round(ratio)
        if ratio <= 1.0 or abs(ratio - whole) <= 1e-6 * ratio:
            self.steps, self.ratio = max(1, int(whole)), None
        else:
            self.steps, self.ratio = None, ratio

    def _count(self, n: int) -> int:
        """Multiples of the interval at or before step ``n`` (the regrids up to ``n``); a
        step within rounding of a multiple (``20 * 0.03`` of 0.6) reaches it."""
        if self.ratio is None:
            return n // self.steps
        return math.floor(n / self.ratio * (1.0 + 1e-12))

    def regrids_at(self, n: int) -> bool:
        return n > 0 and self._count(n) > self._count(n - 1)

    def next_after(self, n: int) -> int:
        """The first regrid step after step ``n``."""
        if self.ratio is None:
            return (n // self.steps + 1) * self.steps
        m = self._count(n)
        c = max(n + 1, math.ceil((m + 1) * self.ratio))
        while c - 1 > n and self._count(c - 1) > m:  # consistent with _count's rounding
            c -= 1
        while self._count(c) <= m:
            c += 1
        return c


@register
class AdaptiveSolver(Solver):
    name = "adaptive"
    geometry = "cable"
    order = Order(time=1, space=2)

    def __init__(self, problem, options=None):
        super().__init__(problem, options)
        grid = problem.grid
        self.grid = grid
        self.x = self.asarray(grid.x)
        self.rules = Refinement.from_spec(self.options.adaptive, grid)
        self.params = tuple(float(x) for x in problem.kinetics.values)
        self.code = problem.kinetics.family.code
        current = problem.current
        switches = np.concatenate([current.t0, current.t1[current.t1 >= current.t0]])
        self._switch_times = np.unique(switches)
        self.counters = {
            "active_node_updates": 0,
            "mean_active_fraction": 0.0,
            "mean_active_nodes": 0.0,
            "max_active_nodes": 0,
            "regrids": 0,
        }
        self._steps = 0
        numba = self.backend == "numba"
        self.steps = CompiledAdaptiveSteps(self) if numba else ArrayAdaptiveSteps(self)

    # -- declared limits ------------------------------------------------------------

    def stability_limit(self, dt):
        return diffusion_limit(self.grid.dx, self.problem.diffusion)

    def limit_formula(self):
        return ("dx_min^2 / (2 D), dx_min = the base spacing length / (nx - 1) that the "
                "front zones always use")

    # -- active sets ----------------------------------------------------------------

    def nodes(self, index) -> NodeSet:
        """The node set of the active base indices ``index``."""
        g = self.grid
        return NodeSet(self.xp.take(self.x, index), g.length, g.boundary, g.boundary_order)

    def current_at(self, t: float, index):
        """The applied current at time ``t`` on the active nodes ``index``."""
        return self.xp.take(self.asarray(self.problem.current.current(t)), index)

    def choose_active(self, index, v, w, t: float):
        """Sorted base indices of the next active set, from ``v``, ``w`` on ``index``."""
        r = self.rules
        nodes = self.nodes(index)
        h_left, h_right = nodes.spacings
        g0, gn = nodes.ghosts
        return self.steps.select_active(
            index, v, w, self.current_at(t, index), h_left, h_right, g0, gn, self.code,
            self.params, float(self.problem.diffusion), float(self.grid.dx),
            int(self.grid.nx), bool(self.grid.periodic), r.coarse_stride, r.wave_stride,
            r.fine_stride, r.vx_threshold, r.vt_threshold, r.front_radius)

    def init(self) -> State:
        v0, w0 = self.asarray(self.problem.v0), self.asarray(self.problem.w0)
        full = self.xp.arange(self.grid.nx, device=device_of(self.x))
        index = self.choose_active(full, v0, w0, 0.0)
        return self._to_base(index, self.xp.take(v0, index), self.xp.take(w0, index))

    def _interpolate(self, index, v, w, x_new):
        """(v, w) at the positions ``x_new`` from their values on the active nodes ``index``."""
        xp = self.xp
        period = self.grid.length if self.grid.periodic else None
        both = interpolate_nodes(xp.take(self.x, index), xp.stack([v, w]), x_new,
                                 period=period, xp=xp)
        return both[0, ...], both[1, ...]

    def _to_base(self, index, v, w) -> State:
        """The base-grid state: active values exact, the others linearly interpolated."""
        v, w = self._interpolate(index, v, w, self.x)
        return State(v, w, {"index": index})

    # -- stepping -------------------------------------------------------------------

    def step(self, state, t, dt):
        return self.advance(state, t, dt, 1)

    def advance(self, state, t, dt, nsteps):
        xp = self.xp
        index = state.aux["index"]
        v, w = xp.take(state.v, index), xp.take(state.w, index)
        clock = RegridClock(self.rules.regrid_every, dt)
        n0 = int(round(t / dt))
        done = 0
        while done < nsteps:
            n = n0 + done
            ts = t + done * dt
            if n > 0 and clock.regrids_at(n):
                new = self.choose_active(index, v, w, ts)
                if new.shape != index.shape or not bool(xp.all(new == index)):
                    v, w = self._interpolate(index, v, w, self.xp.take(self.x, new))
                    index = new
                self.counters["regrids"] += 1
            k = min(nsteps - done, clock.next_after(n) - n)
            v, w = self._run(index, v, w, t, done, dt, k)
            done += k
            self._count(index.shape[0], k)
        return self._to_base(index, v, w)

    def _run(self, index, v, w, t, first, dt, k):
        """Steps ``first .. first + k - 1`` (times ``t + s dt``) on a fixed active set."""
        t_a, t_b = t + first * dt, t + (first + k - 1) * dt
        switches = self._switch_times
        constant = not np.any((switches > t_a) & (switches <= t_b))
        return self.steps.run(index, v, w, self.nodes(index), t, first, dt, k, constant)

    def _count(self, m: int, k: int) -> None:
        c = self.counters
        c["active_node_updates"] += int(m) * int(k)
        self._steps += int(k)
        c["mean_active_nodes"] = c["active_node_updates"] / self._steps
        c["mean_active_fraction"] = c["mean_active_nodes"] / self.grid.nx
        c["max_active_nodes"] = max(c["max_active_nodes"], int(m))

    # -- output ---------------------------------------------------------------------

    def output_state(self, state):
        index = state.aux["index"]
        mask = member_mask(index, self.grid.nx, self.xp)
        aux = {**state.aux, "active_nodes": np.int64(index.shape[0]), "active_mask": mask}
        return State(state.v, state.w, aux)

    def output_variables(self):
        return {
            "active_nodes": ((), {"dtype": "int64", "units": "1",
                                  "long_name": "number of active nodes"}),
            "active_mask": (("x",), {"dtype": "bool",
                                     "long_name": "node is active in the adaptive grid"}),
        }


class ArrayAdaptiveSteps(ArrayPath):
    """The array path on the namespace ``xp``: :func:`~fhnpde.schemes.adaptive_euler_node` on
    the active arrays, the active set chosen by :func:`~fhnpde.refinement.select_active_array`."""

    def select_active(self, *args):
        return select_active_array(*args, xp=self.xp)

    def run(self, index, v, w, nodes, t, first, dt, k, constant):
        s = self.solver
        h_left, h_right = nodes.spacings
        cur = s.current_at(t + first * dt, index)
        for i in range(first, first + k):
            if not constant:
                cur = s.current_at(t + i * dt, index)
            left, right = nodes.neighbours(v)
            v, w = adaptive_euler_node(left, v, right, w, cur, s.code, s.params, dt,
                                       s.problem.diffusion, h_left, h_right)
        return v, w


class CompiledAdaptiveSteps:
    """The numba path (:mod:`fhnpde.solvers.adaptive_numba`): blocks of steps with an
    unchanging current in one call, the active set chosen by the compiled
    :func:`~fhnpde.refinement.select_active`."""

    def __init__(self, solver):
        self.solver = solver
        self.kernels = kernels(KERNELS)
        self.select_active = self.kernels.select_active

    def run(self, index, v, w, nodes, t, first, dt, k, constant):
        s = self.solver
        h_left, h_right = nodes.spacings
        g0, gn = nodes.ghosts
        out_v, out_w = np.empty_like(v), np.empty_like(w)
        blocks = [(first, k)] if constant else [(first + i, 1) for i in range(k)]
        for s0, ks in blocks:
            v, w, out_v, out_w = self.kernels.adaptive_euler_block(
                s.code, s.params, dt, s.problem.diffusion, ks, v, w,
                s.current_at(t + s0 * dt, index), h_left, h_right, g0, gn, out_v, out_w,
            )
        return v, w
