"""Adaptive-grid explicit solver: forward Euler on the nodes where the waves are.

Every active node is a node of the case's uniform *base* grid (``domain.nx``); the ends
of a no-flux cable are always active. On the active nodes the scheme is the explicit one
of :mod:`fhnpde.solvers.explicit` with the three-point Lagrange Laplacian of
:mod:`fhnpde.nonuniform` (left spacing ``a``, right spacing ``b``):

.. math::

    v_i^{n+1} = v_i^n + \\Delta t \\left( D\\, \\frac{2}{a+b}\\left(\\frac{v_{i+1}^n - v_i^n}{b}
                - \\frac{v_i^n - v_{i-1}^n}{a}\\right) + f(v_i^n, w_i^n, I_i^n) \\right),
    \\qquad w_i^{n+1} = w_i^n + \\Delta t\\, g(v_i^n, w_i^n).

Choosing the active set (every ``solver.adaptive.every`` steps, from the solution on the
current active nodes; the heuristic of the spatial-FHN GPU write-up, see
``/work/shared/references``):

1. a coarse background: every base node whose index is a multiple of the coarse stride
   ``round(coarse_dx / dx)``, and both ends;
2. where ``|v_x| > vx_threshold`` at an active node (where the waves are), every
   ``round(wave_dx / dx)``-th base node between its two active neighbours;
3. where ``|v_t| > vt_threshold`` (where the dynamics are), every ``round(fine_dx / dx)``-th
   base node between its two active neighbours; ``v_t = D v_xx + f(v, w, I)`` is the
   forward-Euler difference quotient ``(v^{n+1} - v^n)/dt`` of the coming step;
4. every base node within ``front_radius`` of an inflection point of ``v`` (a sign change
   of ``v_xx`` between neighbouring active nodes, located by linear interpolation of
   ``v_xx``) -- the wavefronts. An inflection counts only where ``|v_x| > vx_threshold``
   at one of the two nodes: on a cable at rest ``v_xx`` is round-off whose sign flips
   from node to node, and those are not fronts.

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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backends import kernels, namespace
from ..case import CaseError
from ..models import reaction_by_code
from ..nonuniform import NodeSet, first_derivative, interpolate_nodes, second_derivative
from .base import Order, Solver, State, register
from .explicit import diffusion_limit


def adaptive_euler_node(v_left, v, v_right, w, I, code, p, dt, diffusivity, h_left, h_right):
    """One forward-Euler step of node values with the non-uniform three-point Laplacian;
    the one formula every backend uses."""
    dv, dw = reaction_by_code(code, v, w, I, p)
    return (
        v + dt * (diffusivity * second_derivative(v_left, v, v_right, h_left, h_right) + dv),
        w + dt * dw,
    )


@dataclass(frozen=True)
class Refinement:
    """The refinement rules of a case, resolved on its base grid (strides in base nodes)."""

    every: int
    coarse_stride: int
    wave_stride: int
    fine_stride: int
    vx_threshold: float
    vt_threshold: float
    front_radius: float

    @classmethod
    def from_spec(cls, spec, dx: float) -> Refinement:
        def stride(length: float) -> int:
            return max(1, int(round(length / dx)))

        return cls(
            every=int(spec.every),
            coarse_stride=stride(spec.coarse_dx),
            wave_stride=stride(spec.wave_dx),
            fine_stride=stride(spec.fine_dx),
            vx_threshold=float(spec.vx_threshold),
            vt_threshold=float(spec.vt_threshold),
            front_radius=float(spec.front_radius),
        )


def _mark_ranges(n: int, lo: np.ndarray, hi: np.ndarray, periodic: bool) -> np.ndarray:
    """Boolean mask over ``n`` base nodes, true on every index in some ``[lo_k, hi_k]``.

    Without a ring the ranges are clipped to ``[0, n-1]``; on a ring they may reach one
    turn beyond either end and wrap around.
    """
    mask = np.zeros(n, dtype=bool)
    if lo.size == 0:
        return mask
    if periodic:
        lo = np.clip(lo, -n, 2 * n - 1) + n
        hi = np.clip(hi, -n, 2 * n - 1) + n
        size = 3 * n
    else:
        lo = np.clip(lo, 0, n - 1)
        hi = np.clip(hi, 0, n - 1)
        size = n
    keep = hi >= lo
    diff = np.zeros(size + 1, dtype=np.int64)
    np.add.at(diff, lo[keep], 1)
    np.add.at(diff, hi[keep] + 1, -1)
    covered = np.cumsum(diff[:-1]) > 0
    if periodic:
        return covered[:n] | covered[n : 2 * n] | covered[2 * n :]
    return covered


GRADING_RATIO = 2


def grade(index: np.ndarray, n: int, periodic: bool) -> np.ndarray:
    """Add base nodes until no interval is longer than ``GRADING_RATIO`` times a
    neighbouring interval (a 2:1 balanced grid).

    The non-uniform second difference errs by ``(b - a)/3 v_xxx``: a jump from the base
    spacing straight to a coarse one would put an O(1) relative error where the solution
    is still curved, and the gap between two refined zones (a pulse's peak, where ``v_x``
    and ``v_t`` both vanish) would stay coarse. Grading bounds ``b/a`` by 2 everywhere.
    Each pass splits every offending interval at its (base-node) midpoint; an interval
    of length ``d > 2 d_min >= 2`` always has one, so the passes end.
    """
    while True:
        if periodic:
            gaps = np.diff(np.concatenate([index, [index[0] + n]]))
            left, right = np.roll(gaps, 1), np.roll(gaps, -1)
        else:
            gaps = np.diff(index)
            big = np.iinfo(np.int64).max // 4
            left = np.concatenate([[big], gaps[:-1]])
            right = np.concatenate([gaps[1:], [big]])
        bad = gaps > GRADING_RATIO * np.minimum(left, right)
        if not bad.any():
            return index
        mids = (index[:gaps.size][bad] + gaps[bad] // 2) % n
        index = np.union1d(index, mids)


@register
class AdaptiveSolver(Solver):
    name = "adaptive"
    geometry = "cable"
    order = Order(time=1, space=2)

    def __init__(self, problem):
        super().__init__(problem)
        if self.backend not in ("numpy", "numba"):
            raise CaseError(
                f"the adaptive solver runs on the CPU and supports backends numpy and numba, "
                f"not {self.backend!r}; set solver.backend: numba",
                key="solver.backend",
            )
        namespace(self.backend)  # BackendUnavailable if numba is missing
        grid = problem.grid
        self.grid = grid
        self.x = grid.x
        self.rules = Refinement.from_spec(self.spec.adaptive, grid.dx)
        self.params = tuple(float(x) for x in problem.kinetics.values)
        self.code = problem.kinetics.family.code
        n = grid.nx
        self._strided = {
            s: (np.arange(n) % s == 0)
            for s in {self.rules.coarse_stride, self.rules.wave_stride, self.rules.fine_stride}
        }
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

    # -- declared limits ------------------------------------------------------------

    def stability_limit(self, dt):
        return diffusion_limit(self.grid.dx, self.problem.diffusion)

    def limit_formula(self):
        return ("dx_min^2 / (2 D), dx_min = the base spacing length / (nx - 1) that the "
                "front zones always use")

    # -- active sets ----------------------------------------------------------------

    def nodes(self, index: np.ndarray) -> NodeSet:
        """The node set of the active base indices ``index``."""
        g = self.grid
        return NodeSet(self.x[index], g.length, g.boundary, g.boundary_order)

    def choose_active(self, index: np.ndarray, v: np.ndarray, w: np.ndarray,
                      t: float) -> np.ndarray:
        """Sorted base indices of the next active set, from ``v``, ``w`` on ``index``."""
        rules, n, dx = self.rules, self.grid.nx, self.grid.dx
        periodic = self.grid.periodic
        nodes = self.nodes(index)
        left, right = nodes.neighbours(v)
        a, b = nodes.spacings
        vx = first_derivative(left, v, right, a, b)
        vxx = second_derivative(left, v, right, a, b)
        dv, _ = reaction_by_code(self.code, v, w, self.problem.current.current(t)[index],
                                 self.params)
        vt = self.problem.diffusion * vxx + dv

        mask = self._strided[rules.coarse_stride].copy()
        mask[0] = mask[-1] = True
        m = index.size
        # Each active node's neighbourhood in base indices (a ring wraps by one turn).
        if periodic:
            lo_nb = np.concatenate([[index[-1] - n], index[:-1]])
            hi_nb = np.concatenate([index[1:], [index[0] + n]])
        else:
            lo_nb = np.concatenate([[index[0]], index[:-1]])
            hi_nb = np.concatenate([index[1:], [index[-1]]])
        steep = np.abs(vx) > rules.vx_threshold
        for flagged, stride in ((steep, rules.wave_stride),
                                (np.abs(vt) > rules.vt_threshold, rules.fine_stride)):
            if flagged.any():
                region = _mark_ranges(n, lo_nb[flagged], hi_nb[flagged], periodic)
                mask |= region & self._strided[stride]

        # Inflection points between neighbouring active nodes.
        nxt = np.arange(1, m + 1) % m if periodic else np.arange(1, m)
        cur = np.arange(nxt.size)
        x_cur = self.x[index[cur]]
        x_nxt = self.x[index[nxt]] + np.where(nxt == 0, self.grid.length, 0.0)
        flips = (vxx[cur] * vxx[nxt] < 0) & (steep[cur] | steep[nxt])
        if flips.any():
            c, d = vxx[cur][flips], vxx[nxt][flips]
            x0 = x_cur[flips] + (x_nxt[flips] - x_cur[flips]) * c / (c - d)
            centre = np.rint(x0 / dx).astype(np.int64)
            lo = np.minimum(np.ceil((x0 - rules.front_radius) / dx - 1e-9).astype(np.int64),
                            centre)
            hi = np.maximum(np.floor((x0 + rules.front_radius) / dx + 1e-9).astype(np.int64),
                            centre)
            mask |= _mark_ranges(n, lo, hi, periodic)
        return grade(np.flatnonzero(mask), n, periodic)

    def init(self) -> State:
        v0 = np.asarray(self.problem.v0, dtype=np.float64).copy()
        w0 = np.asarray(self.problem.w0, dtype=np.float64).copy()
        full = np.arange(self.grid.nx)
        index = self.choose_active(full, v0, w0, 0.0)
        return self._to_base(index, v0[index], w0[index])

    def _to_base(self, index, v, w) -> State:
        """The base-grid state: active values exact, the others linearly interpolated."""
        period = self.grid.length if self.grid.periodic else None
        both = interpolate_nodes(self.x[index], np.stack([v, w]), self.x, period=period)
        return State(both[0], both[1], {"index": index})

    # -- stepping -------------------------------------------------------------------

    def step(self, state, t, dt):
        return self.advance(state, t, dt, 1)

    def advance(self, state, t, dt, nsteps):
        index = np.asarray(state.aux["index"])
        v = np.asarray(state.v, dtype=np.float64)[index].copy()
        w = np.asarray(state.w, dtype=np.float64)[index].copy()
        every = self.rules.every
        n0 = int(round(t / dt))
        done = 0
        while done < nsteps:
            n = n0 + done
            ts = t + done * dt
            if n > 0 and n % every == 0:
                new = self.choose_active(index, v, w, ts)
                if not np.array_equal(new, index):
                    period = self.grid.length if self.grid.periodic else None
                    both = interpolate_nodes(self.x[index], np.stack([v, w]), self.x[new],
                                             period=period)
                    index, v, w = new, both[0].copy(), both[1].copy()
                self.counters["regrids"] += 1
            k = min(nsteps - done, every - n % every)
            v, w = self._run(index, v, w, t, done, dt, k)
            done += k
            self._count(index.size, k)
        return self._to_base(index, v, w)

    def _run(self, index, v, w, t, first, dt, k):
        """Steps ``first .. first + k - 1`` (times ``t + s dt``) on a fixed active set."""
        nodes = self.nodes(index)
        h_left, h_right = nodes.spacings
        current = self.problem.current
        t_a, t_b = t + first * dt, t + (first + k - 1) * dt
        switches = self._switch_times
        constant = not np.any((switches > t_a) & (switches <= t_b))
        if self.backend == "numba":
            kern = kernels_adaptive()
            g0, gn = nodes.ghosts
            out_v, out_w = np.empty_like(v), np.empty_like(w)
            blocks = [(first, k)] if constant else [(first + s, 1) for s in range(k)]
            for s0, ks in blocks:
                cur = np.ascontiguousarray(current.current(t + s0 * dt)[index])
                v, w, out_v, out_w = kern.adaptive_euler_block(
                    self.code, self.params, dt, self.problem.diffusion, ks, v, w, cur,
                    h_left, h_right, g0, gn, out_v, out_w,
                )
            return v, w
        cur = current.current(t_a)[index]
        for s in range(first, first + k):
            if not constant:
                cur = current.current(t + s * dt)[index]
            left, right = nodes.neighbours(v)
            v, w = adaptive_euler_node(left, v, right, w, cur, self.code, self.params, dt,
                                       self.problem.diffusion, h_left, h_right)
        return v, w

    def _count(self, m: int, k: int) -> None:
        c = self.counters
        c["active_node_updates"] += int(m) * int(k)
        self._steps += int(k)
        c["mean_active_nodes"] = c["active_node_updates"] / self._steps
        c["mean_active_fraction"] = c["mean_active_nodes"] / self.grid.nx
        c["max_active_nodes"] = max(c["max_active_nodes"], int(m))

    # -- output ---------------------------------------------------------------------

    def output_state(self, state):
        index = np.asarray(state.aux["index"])
        mask = np.zeros(self.grid.nx, dtype=bool)
        mask[index] = True
        aux = {**state.aux, "active_nodes": np.int64(index.size), "active_mask": mask}
        return State(state.v, state.w, aux)

    def output_variables(self):
        return {
            "active_nodes": ((), {"dtype": "int64", "units": "1",
                                  "long_name": "number of active nodes"}),
            "active_mask": (("x",), {"dtype": "bool",
                                     "long_name": "node is active in the adaptive grid"}),
        }


def kernels_adaptive():
    """The adaptive solver's numba kernels (imports numba on first use)."""
    import importlib

    kernels()  # raises BackendUnavailable without numba; registers the shared formulas
    return importlib.import_module("fhnpde._kernels_adaptive")
