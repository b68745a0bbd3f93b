r"""Differentiable runs on torch: the outputs of a case as tensors with gradients.

:func:`trajectory` steps a case with ``solver.backend: torch`` and returns every output
``v``, ``w`` as one ``(time, node)`` tensor differentiable with respect to the ``wrt``
values (:mod:`fhnpde.gradients.wrt`) given as tensors. The steps use the node formulas of
:mod:`fhnpde.schemes` (each written once) on those tensors; nothing is written in place.

- ``explicit``: :func:`~fhnpde.schemes.forward_euler_node`; its backward pass is written by
  hand from the model's derivatives (:meth:`ExplicitSteps.adjoint`; on CPU tensors one numba
  call per output interval, :mod:`fhnpde.gradients.adjoint_numba`).
- ``crank-nicolson``: the converged Newton solution ``v*`` of each step comes from the
  solver's own step (:class:`~fhnpde.solvers.crank_nicolson.ArrayCableSteps`) outside
  autograd; its derivative follows from the implicit-function rule. With
  ``F(v*, θ) = 0`` and ``J = ∂F/∂v`` (the Newton matrix, tridiagonal),
  ``dv*/dθ = -J^{-1} ∂F/∂θ``, attached as ``v = v* + (u - stop_gradient(u))`` with
  ``u = -J^{-1} F(v*, θ)`` and ``J`` held constant: its value is ``v*`` exactly and its
  backward pass is one solve with ``J^T`` per step
  (:class:`~fhnpde.gradients.tridiagonal.TridiagonalSolve`), whatever the number of
  Newton iterations. (The term ``(∂J^{-1}/∂θ) F`` is dropped: ``F(v*) = 0`` to the
  Newton tolerance.)
- ``split`` (exact reaction): the Crank–Nicolson half-steps of the diffusion as
  differentiable tridiagonal solves (the matrix depends on ``D``), the reaction by
  :func:`~fhnpde.schemes.euler_point` / :func:`~fhnpde.schemes.rk4_point` substeps.
- point models (``euler``, ``rk4``, ``crank-nicolson``): the same formulas over the members;
  the trapezoidal rule's 2x2 Newton solution by the same implicit rule, its correction
  :func:`~fhnpde.schemes.trapezoid_newton_point` at the converged state.

**Memory.** With ``checkpoint=True`` each output interval is one :class:`IntervalCheckpoint`:
the forward pass runs the interval without recording anything and keeps only its input
state, and the backward pass recomputes the interval's steps with autograd and
backpropagates through them, one interval at a time. Memory grows with the number of outputs
plus one interval's steps, not with the number of steps. (``torch.utils.checkpoint`` without
reentrance frees the tensors of a region but keeps its graph, whose nodes, about 1 kB per
operation, outweigh the tensors of a short cable: 68 kB a step at nx 801.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..case import CaseError
from ..errors import NumericalFailure
from ..models import reaction_by_code, recovery_by_code
from ..schemes import (
    cn_known_part,
    cn_newton_node,
    euler_point,
    forward_euler_node,
    rk4_point,
    trapezoid_newton_point,
    trapezoid_w_affine,
)
from ..stimulus import box_pulse, gaussian_pulse
from .tridiagonal import solve as differentiable_solve
from .wrt import Target

#: values per array operation of the explicit adjoint's parameter sums (ExplicitSteps)
ADJOINT_CHUNK = 2**16
#: run the explicit adjoint by torch operations even where its numba kernel could (tests)
FORCE_ARRAY_ADJOINT = False
#: solvers with a differentiable path, by geometry
GRADIENT_SOLVERS = {"cable": ("explicit", "crank-nicolson", "split"),
                    "sheet": ("explicit", "split"),  # fhnpde.gradients.sheet
                    "point": ("euler", "rk4", "crank-nicolson")}


@dataclass
class Trajectory:
    """A differentiable run: ``v``, ``w`` of shape (time, node), (time, y, x) on a sheet
    (``y`` its rows' positions) or (time, member)."""

    t: np.ndarray
    x: np.ndarray | None
    v: torch.Tensor
    w: torch.Tensor
    y: np.ndarray | None = None


def check_case(case) -> None:
    """CaseError (one line, naming the key) unless the case can be differentiated."""
    if case.solver.backend != "torch":
        raise CaseError(f"gradients need solver.backend: torch ({case.solver.backend} arrays "
                        "cannot record derivatives); set solver.backend: torch",
                        key="solver.backend")
    geometry = ("sheet" if getattr(case, "is_sheet", False) else "cable" if case.is_cable
                else "point")
    valid = GRADIENT_SOLVERS[geometry]
    if case.solver.method not in valid:
        raise CaseError(f"{case.solver.method!r} has no differentiable path; with gradients "
                        f"use one of {', '.join(valid)}", key="solver.method")
    if case.solver.merge_diffusion:
        raise CaseError("merged diffusion half-steps have no differentiable path yet; remove "
                        "solver.merge_diffusion", key="solver.merge_diffusion")
    if case.solver.space_order != 2:
        raise CaseError("the fourth-order stencil has no differentiable path yet; remove "
                        "solver.space_order", key="solver.space_order")
    if case.solver.method == "split" and case.reaction.kind != "exact":
        raise CaseError(f"a {case.reaction.kind} reaction step cannot be differentiated with "
                        "respect to the case's parameters; use reaction.kind: exact",
                        key="reaction.kind")


class DifferentiableProblem:
    """The numbers of a case, those named by ``targets`` as the given tensors (the case
    itself must already hold their values)."""

    def __init__(self, case, targets: tuple[Target, ...], values: dict[str, torch.Tensor]):
        from ..driver import build_solver

        self.case = case
        self.problem, self.solver = build_solver(case)
        p = self.problem
        self.dtype = torch.float64
        self.device = self.solver.device
        by_kind: dict[str, list[Target]] = {}
        for t in targets:
            by_kind.setdefault(t.kind, []).append(t)
        fam = p.kinetics.family
        self.code = fam.code
        given = {t.name: values[t.path] for t in by_kind.get("param", ())}
        if p.is_cable:
            self.params = tuple(given.get(name, float(value))
                                for name, value in zip(fam.params, p.kinetics.values,
                                                       strict=True))
        else:  # point: one row of values per member (scalars broadcast)
            self.params = tuple(given[name] if name in given else self.tensor(value)
                                for name, value in zip(fam.params, p.kinetics.values,
                                                       strict=True))
        diffusion = by_kind.get("diffusion")
        self.diffusion = values[diffusion[0].path] if diffusion else float(p.diffusion)
        self.v0 = self.initial("v", [t for t in by_kind.get("initial", ()) if t.name == "v"],
                               values)
        self.w0 = self.initial("w", [t for t in by_kind.get("initial", ()) if t.name == "w"],
                               values)
        self.amplitudes = {t.index: values[t.path] for t in by_kind.get("stimulus", ())}
        self._currents: dict[tuple, torch.Tensor] = {}

    def tensor(self, x):
        return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=self.dtype,
                               device=self.device)

    def initial(self, name: str, targets: list[Target], values) -> torch.Tensor:
        host = self.problem.v0 if name == "v" else self.problem.w0
        if not targets:
            return self.tensor(host)
        spec = getattr(self.case.initial, name)
        fields = {t.field: values[t.path] for t in targets}
        size = host.shape[0]
        if None in fields:  # a constant
            return fields[None] * torch.ones(size, dtype=self.dtype, device=self.device)
        import array_api_compat.torch as xp

        num = {f: fields.get(f, getattr(spec, f)) for f in ("amplitude", "base")}
        if spec.kind == "gaussian":
            x = self.tensor(self.problem.grid.x)
            return gaussian_pulse(x, fields.get("center", spec.center),
                                  fields.get("width", spec.width), num["amplitude"],
                                  num["base"], xp)
        x = self.problem.grid.x
        inside = torch.as_tensor((x >= spec.x[0]) & (x <= spec.x[1]), device=self.device)
        value = box_pulse(inside, num["amplitude"], num["base"], xp)
        return value * torch.ones(size, dtype=self.dtype, device=self.device)

    def current(self, t: float) -> torch.Tensor:
        """I at every node (member) at time t: the case's base current plus the active boxes,
        their amplitudes the given tensors where named (the sum in the order of
        :func:`fhnpde.stimulus.node_currents`)."""
        cur = self.problem.current
        key = cur.active(t)
        value = self._currents.get(key)
        if value is None:
            if not self.amplitudes:
                value = self.tensor(cur.current(t))
            else:
                value = self.tensor(cur.base)
                for k, on in enumerate(key):
                    if on:
                        amplitude = self.amplitudes.get(k, float(cur.amplitude[k]))
                        value = value + amplitude * self.tensor(cur.mask_rows[k])
            self._currents[key] = value
        return value

    def prepare_currents(self, times) -> None:
        """Build the current of every distinct set of active boxes at ``times`` now (outside
        any checkpointed region, so a region's recomputation does not reuse a tensor built
        inside another one)."""
        cur = self.problem.current
        seen = set()
        for t in times:
            key = cur.active(float(t))
            if key not in seen:
                seen.add(key)
                self.current(float(t))


# --- the steps of each solver, on the differentiable problem ---------------------------------


def adjoint_method(method: str, like) -> str:
    """The tridiagonal method of the differentiable solves: Thomas's compiled sweep for
    tensors on the CPU where numba is installed (about 100x faster than cyclic reduction as
    torch operations: 0.06 ms against 5-15 ms at nx 12,801), else the case's method. The
    solves of Crank–Nicolson's implicit rule change no value (their correction enters as
    ``u - stop_gradient(u)``); the split solver's half-steps differ from the case's method by
    round-off."""
    from ..backends import numba_usable

    if like.device.type == "cpu" and numba_usable():
        return "thomas"
    return method



class ExplicitSteps:
    """Forward Euler (:func:`~fhnpde.schemes.forward_euler_node`). A sheet's
    (:class:`fhnpde.gradients.sheet.SheetExplicitSteps`) changes :meth:`step` and
    :meth:`laplacian_transposed` and runs :meth:`adjoint_arrays` as it is."""

    #: the compiled backward pass (fhnpde.gradients.adjoint_numba) is the cable's
    compiled_adjoint = True

    def __init__(self, dp: DifferentiableProblem):
        import array_api_compat.torch as xp

        self.dp, self.xp = dp, xp
        self.inv_dx2 = 1.0 / dp.problem.grid.dx**2

    def query_times(self, t, dt, nsteps):
        return t + dt * np.arange(nsteps)

    def advance(self, v, w, t, dt, nsteps):
        dp = self.dp
        for i in range(nsteps):
            v, w = self.step(v, w, dp.current(t + i * dt), dp.params, dp.diffusion, dt)
        return v, w

    def step(self, v, w, current, params, diffusivity, dt):
        """One forward-Euler step of the whole grid."""
        left, right = self.dp.problem.grid.neighbours(v, self.xp)
        return forward_euler_node(left, v, right, w, current, self.dp.code, params, dt,
                                  diffusivity, self.inv_dx2)

    def adjoint(self, v, w, t, dt, nsteps, lam_v, lam_w, captured):
        r"""The backward pass of ``advance`` without a graph: (dJ/dv, dJ/dw at the interval's
        start, {id(tensor): dJ/dtensor} for ``captured``) from dJ/d(v, w) at its end.

        The states of the interval are recomputed, then the adjoint of forward Euler runs
        backwards step by step,

        .. math::

            λ_v^n = λ_v^{n+1} + Δt \big(D L^T λ_v^{n+1} + f_v λ_v^{n+1} + α λ_w^{n+1}\big),
            \qquad λ_w^n = λ_w^{n+1} + Δt \big(f_w λ_v^{n+1} - β λ_w^{n+1}\big)

        (``f_v`` from :func:`~fhnpde.models.dreaction_dv_by_code`; ``α``, ``β``, ``f_w`` of the
        affine recovery, :func:`~fhnpde.models.recovery_by_code`); the diffusivity's gradient
        is ``Δt Σ_n (L^T λ_v^{n+1})·v^n``, the parameters' ``Δt Σ_n (λ_v^{n+1} f_θ +
        λ_w^{n+1} g_θ)`` and a current's ``Δt Σ_n λ_v^{n+1} f_I`` at step n's state, with the
        model's derivatives :func:`~fhnpde.models.dreaction_dparams_by_code`: no autograd.
        On CPU tensors with numba one compiled call per interval does all of it
        (:func:`fhnpde.gradients.adjoint_numba.explicit_interval_adjoint`), else torch
        operations (:meth:`adjoint_arrays`).
        """
        from ..backends import numba_usable

        lam_v = torch.zeros_like(v) if lam_v is None else lam_v
        lam_w = torch.zeros_like(w) if lam_w is None else lam_w
        steps = [self.dp.current(t + i * dt) for i in range(nsteps)]
        wants = {id(c) for c in captured if c.requires_grad}
        if (self.compiled_adjoint and v.device.type == "cpu" and numba_usable()
                and not FORCE_ARRAY_ADJOINT):
            lam_v, lam_w, grad_d, grad_p, grad_i = self.adjoint_compiled(
                v, w, steps, dt, lam_v, lam_w, any(id(c) in wants for c in steps))
        else:
            lam_v, lam_w, grad_d, grad_p, grad_i = self.adjoint_arrays(
                v, w, steps, dt, lam_v, lam_w, any(id(c) in wants for c in steps))
        grads = {id(self.dp.diffusion): grad_d}
        grads.update((id(x), g) for x, g in zip(self.dp.params, grad_p, strict=True))
        grads.update(grad_i)
        out = {id(c): None if grads.get(id(c)) is None else dt * grads[id(c)]
               for c in captured if c.requires_grad}
        return lam_v, lam_w, out

    def adjoint_compiled(self, v, w, steps, dt, lam_v, lam_w, want_currents=True):
        """:meth:`adjoint`'s sums (not yet times Δt) by one numba call: (λ_v, λ_w, dJ/dD,
        [dJ/dp_j], {id(current): dJ/dcurrent}, the last only if ``want_currents``)."""
        from ..backends import kernels
        from ..operators import laplacian_bands

        dp = self.dp
        index: dict[int, int] = {}
        distinct = []
        for c in steps:
            if id(c) not in index:
                index[id(c)] = len(distinct)
                distinct.append(c)
        which = np.array([index[id(c)] for c in steps], dtype=np.int64)
        currents = np.stack([c.detach().cpu().numpy() for c in distinct])
        p = tuple(float(_number(x)) for x in dp.params)
        if not hasattr(self, "_bands"):
            self._bands = laplacian_bands(dp.problem.grid)
        lam_v = lam_v.detach().numpy().copy()
        lam_w = lam_w.detach().numpy().copy()
        grad_p = np.zeros(4)
        grad_i = np.zeros_like(currents)
        g0, gn = dp.problem.grid.ghosts
        grad_d = kernels("fhnpde.gradients.adjoint_numba").explicit_interval_adjoint(
            dp.code, np.ascontiguousarray(v.numpy()), np.ascontiguousarray(w.numpy()), currents,
            which, p, dt, float(_number(dp.diffusion)), self.inv_dx2, g0, gn, *self._bands,
            lam_v, lam_w, grad_p, grad_i, want_currents)
        return (torch.from_numpy(lam_v), torch.from_numpy(lam_w),
                torch.tensor(grad_d, dtype=torch.float64),
                [torch.tensor(g, dtype=torch.float64) for g in grad_p],
                {id(c): torch.from_numpy(grad_i[k]) for k, c in enumerate(distinct)}
                if want_currents else {})

    def adjoint_arrays(self, v, w, steps, dt, lam_v, lam_w, currents=True):
        """:meth:`adjoint_compiled` by torch operations (tensors on a GPU, no numba);
        ``currents``: whether the currents' gradients are wanted."""
        from ..models import dreaction_dparams_by_code, dreaction_dv_by_code

        dp = self.dp
        p = tuple(_number(x) for x in dp.params)
        D = _number(dp.diffusion)
        nsteps = len(steps)
        with torch.no_grad():
            states = []
            for i in range(nsteps):
                states.append((v, w))
                v, w = self.step(v, w, steps[i].detach(), p, D, dt)
            alpha, beta, _, dfdw = (float(x) for x in recovery_by_code(dp.code, p))
            after = []  # λ^{n+1} of every step n
            grad_d = torch.zeros((), dtype=v.dtype, device=v.device)
            grad_i: dict[int, torch.Tensor] = {}
            for n in range(nsteps - 1, -1, -1):
                (vs, ws), current = states[n], steps[n].detach()
                after.append((lam_v, lam_w))
                if currents:
                    f_i = dreaction_dparams_by_code(dp.code, vs, ws, current, p)[2]
                    grad_i[id(steps[n])] = grad_i.get(id(steps[n]), 0.0) + lam_v * f_i
                # the formula of the docstring, in place where nothing else holds the array
                rate = self.laplacian_transposed(lam_v)
                grad_d += torch.dot(rate.reshape(-1), vs.reshape(-1))
                rate.mul_(float(D))
                rate.addcmul_(dreaction_dv_by_code(dp.code, vs, ws, current, p), lam_v)
                rate.add_(lam_w, alpha=alpha)
                lam_v, lam_w = (torch.add(lam_v, rate, alpha=dt),
                                torch.add(lam_w * (1.0 - dt * beta), lam_v, alpha=dt * dfdw))
            after.reverse()
            # the parameters' sums over steps in chunks of about 2**16 values: a few array
            # operations per chunk, on arrays that stay in the caches
            grad_p = [torch.zeros((), dtype=v.dtype, device=v.device) for _ in p]
            chunk = max(1, ADJOINT_CHUNK // max(1, v.numel()))
            for first in range(0, nsteps, chunk):
                part = range(first, min(first + chunk, nsteps))
                df, dg, _ = dreaction_dparams_by_code(
                    dp.code, torch.stack([states[n][0] for n in part]),
                    torch.stack([states[n][1] for n in part]),
                    torch.stack([steps[n].detach() for n in part]), p)
                lv = torch.stack([after[n][0] for n in part])
                lw = torch.stack([after[n][1] for n in part])
                for j in range(len(p)):
                    for lam, d in ((lv, df[j]), (lw, dg[j])):
                        if isinstance(d, torch.Tensor) and d.dim():
                            grad_p[j] += torch.sum(lam * d)
                        elif float(d) != 0.0:
                            grad_p[j] += float(d) * torch.sum(lam)
        return lam_v, lam_w, grad_d, grad_p, grad_i

    def laplacian_transposed(self, x):
        """``L^T x`` with the grid's Laplacian ``L`` (the mirror node makes ``L`` unsymmetric
        at the ends), one sparse matrix-vector product (:func:`transposed_laplacian`)."""
        if not hasattr(self, "_laplacian_t"):
            self._laplacian_t = transposed_laplacian(self.dp.problem.grid, x.dtype, x.device)
        return torch.mv(self._laplacian_t, x)


def transposed_laplacian(grid, dtype, device):
    """``L^T`` as a sparse CSR tensor, from the bands of :func:`fhnpde.operators.laplacian_bands`
    (row i of ``L`` holds lower[i], diag[i], upper[i] in columns i-1, i, i+1, and the corners
    ``top = L[0, n-1]``, ``bottom = L[n-1, 0]``)."""
    from ..operators import laplacian_bands

    lower, diag, upper, top, bottom = laplacian_bands(grid)
    n = grid.nx
    i = np.arange(n)
    rows = np.concatenate([i[1:], i, i[:-1], [0, n - 1]])
    cols = np.concatenate([i[:-1], i, i[1:], [n - 1, 0]])
    vals = np.concatenate([lower[1:], diag, upper[:-1], [top, bottom]])
    keep = vals != 0.0
    matrix = torch.sparse_coo_tensor(np.stack([cols[keep], rows[keep]]), vals[keep], (n, n),
                                     dtype=dtype, device=device,  # transposed: (col, row)
                                     check_invariants=True)
    import warnings

    with warnings.catch_warnings():  # "sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        return matrix.coalesce().to_sparse_csr()  # CSR: 10x faster products than COO


class CrankNicolsonSteps:
    """Crank–Nicolson: the solver's Newton solve, differentiated by the implicit rule."""

    def __init__(self, dp: DifferentiableProblem):
        import array_api_compat.torch as xp

        self.dp, self.xp = dp, xp
        self.solver = dp.solver
        self.inv_dx2 = 1.0 / dp.problem.grid.dx**2

    def query_times(self, t, dt, nsteps):
        return t + dt * np.arange(nsteps + 1)

    def advance(self, v, w, t, dt, nsteps):
        from ..solvers.base import State

        before, k_est = None, 0.0
        for s in range(nsteps):
            with torch.no_grad():
                new, k_est = self.solver.steps.step(State(v.detach(), w.detach()), before,
                                                    k_est, t + s * dt, dt)
            before = v.detach()
            v, w = self.attach(new.v, v, w, t + s * dt, dt)
        return v, w

    def attach(self, v_star, v0, w0, t, dt):
        """(v, w) of the step from (v0, w0): the value ``v*``, the derivative of the
        implicit-function rule (module docstring)."""
        dp, xp, grid = self.dp, self.xp, self.dp.problem.grid
        h, p, D = 0.5 * dt, dp.params, dp.diffusion
        # built here, inside the interval: a graph shared across intervals would be freed by
        # the first interval's backward pass (IntervalCheckpoint)
        alpha, beta, delta, dfdw = recovery_by_code(dp.code, p)
        f0, g0 = reaction_by_code(dp.code, v0, w0, dp.current(t), p)
        left, right = grid.neighbours(v0, xp)
        known = cn_known_part(left, v0, right, f0, h, D, self.inv_dx2)
        c0, c1 = trapezoid_w_affine(w0, g0, h, alpha, beta, delta)
        if torch.is_grad_enabled():
            left, right = grid.neighbours(v_star, xp)
            residual, jdiag = cn_newton_node(dp.code, left, v_star, right, known, c0, c1,
                                             dp.current(t + dt), p, dfdw, h, D, self.inv_dx2)
            from ..operators import solve_with_corners

            lower, diag, upper, top, bottom = (
                dp.tensor(b) if np.ndim(b) else b for b in self.solver.operator(dt))
            method = adjoint_method(self.solver.method, v_star)

            def linear_solve(lo, di, up, rhs):
                return differentiable_solve(lo, di, up, rhs, method)

            update = solve_with_corners(linear_solve, lower, jdiag.detach() + diag, upper,
                                        top, bottom, -residual, xp)
            v = v_star + (update - update.detach())
        else:
            v = v_star
        return v, c0 + c1 * v


class SplitSteps:
    """Strang splitting: differentiable Crank–Nicolson half-steps, exact reaction."""

    def __init__(self, dp: DifferentiableProblem):
        import array_api_compat.torch as xp

        from ..operators import laplacian_bands
        from ..reaction import EXACT_SCHEMES

        self.dp, self.xp = dp, xp
        self.bands = laplacian_bands(dp.problem.grid)
        spec = dp.case.reaction
        self.scheme_code = EXACT_SCHEMES[spec.scheme][0]
        self.substeps = int(spec.substeps)
        self.method = adjoint_method(dp.solver.method, dp.v0)

    def query_times(self, t, dt, nsteps):
        return t + dt * (np.arange(nsteps) + 0.5)

    def half_step(self, v, dt):
        """``(I - τ/2 D L)^{-1} (I + τ/2 D L) v`` with τ = dt/2
        (:class:`fhnpde.solvers.split.CrankNicolsonDiffusion`)."""
        from ..operators import solve_with_corners

        dp, xp = self.dp, self.xp
        s = 0.5 * (0.5 * dt) * dp.diffusion
        lower, diag, upper, top, bottom = self.bands
        rhs = v + s * dp.problem.grid.laplacian(v, xp)

        def linear_solve(lo, di, up, b):
            return differentiable_solve(lo, di, up, b, self.method)

        return solve_with_corners(linear_solve, -s * dp.tensor(lower), 1.0 - s * dp.tensor(diag),
                                  -s * dp.tensor(upper), -s * top, -s * bottom, rhs, xp)

    def reaction(self, v, w, current, dt):
        """:class:`fhnpde.reaction.ArrayReaction`'s substeps on the differentiable values."""
        dp = self.dp
        h = dt / self.substeps
        for _ in range(self.substeps):
            if self.scheme_code == 0:
                v, w = euler_point(dp.code, v, w, current, dp.params, h)
            else:
                v, w = rk4_point(dp.code, v, w, current, current, current, dp.params, h)
        return v, w

    def advance(self, v, w, t, dt, nsteps):
        for i in range(nsteps):
            v = self.half_step(v, dt)
            v, w = self.reaction(v, w, self.dp.current(t + i * dt + 0.5 * dt), dt)
            v = self.half_step(v, dt)
        return v, w


class PointSteps:
    """Forward Euler or RK4 of every member (:mod:`fhnpde.solvers.ode`)."""

    def __init__(self, dp: DifferentiableProblem):
        self.dp = dp
        self.rk4 = dp.solver.name == "rk4"

    def query_times(self, t, dt, nsteps):
        return t + dt * (np.arange(2 * nsteps + 1) / 2.0)

    def advance(self, v, w, t, dt, nsteps):
        dp = self.dp
        for i in range(nsteps):
            s = t + i * dt
            if self.rk4:
                v, w = rk4_point(dp.code, v, w, dp.current(s), dp.current(s + 0.5 * dt),
                                 dp.current(s + dt), dp.params, dt)
            else:
                v, w = euler_point(dp.code, v, w, dp.current(s), dp.params, dt)
        return v, w


class TrapezoidPointSteps:
    """The trapezoidal rule per member: the solver's Newton solve, the implicit rule."""

    def __init__(self, dp: DifferentiableProblem):
        self.dp = dp
        self.steps = dp.solver.steps

    def query_times(self, t, dt, nsteps):
        return t + dt * np.arange(nsteps + 1)

    def advance(self, v, w, t, dt, nsteps):
        dp = self.dp
        p_host = tuple(x.detach() for x in dp.params)
        before, k_est = None, torch.zeros_like(v.detach())
        for i in range(nsteps):
            s = t + i * dt
            with torch.no_grad():
                v_star, w_star, k_est = self.steps.step(v.detach(), w.detach(), before, k_est,
                                                        p_host, s, dt)
            before = (v.detach(), w.detach())
            if torch.is_grad_enabled():
                f0, g0 = reaction_by_code(dp.code, v, w, dp.current(s), dp.params)
                dv, dw = trapezoid_newton_point(dp.code, v_star, w_star, v, w, f0, g0,
                                                dp.current(s + dt), dp.params, 0.5 * dt)
                v, w = v_star + (dv - dv.detach()), w_star + (dw - dw.detach())
            else:
                v, w = v_star, w_star
        return v, w


def steps_for(dp: DifferentiableProblem):
    name = dp.solver.name
    if dp.problem.is_sheet:
        from .sheet import steps_for as sheet_steps

        return sheet_steps(dp)
    if dp.problem.is_cable:
        return {"explicit": ExplicitSteps, "crank-nicolson": CrankNicolsonSteps,
                "split": SplitSteps}[name](dp)
    return TrapezoidPointSteps(dp) if name == "crank-nicolson" else PointSteps(dp)


# --- the run ---------------------------------------------------------------------------------


class IntervalCheckpoint(torch.autograd.Function):
    """``(v, w) -> steps.advance(v, w, t, dt, count)`` recomputed in the backward pass (by
    ``steps.adjoint`` where the steps have a backward pass of their own, else by autograd).

    ``captured``: the tensors that ``advance`` reads besides ``v`` and ``w`` and that carry
    gradients (parameters, the diffusivity, currents built from stimulus amplitudes); the
    gradients with respect to them are returned as theirs, so they flow on to the ``wrt``
    values through the graph outside the interval.
    """

    @staticmethod
    def forward(ctx, steps, t, dt, count, v, w, *captured):
        ctx.advance = (steps, t, dt, count)
        ctx.captured = captured
        ctx.save_for_backward(v, w)
        return steps.advance(v, w, t, dt, count)

    @staticmethod
    def backward(ctx, grad_v, grad_w):
        steps, t, dt, count = ctx.advance
        v, w = ctx.saved_tensors
        adjoint = getattr(steps, "adjoint", None)
        if adjoint is not None:  # the steps' own backward pass, without a graph
            grad_v, grad_w, by_id = adjoint(v.detach(), w.detach(), t, dt, count, grad_v,
                                            grad_w, ctx.captured)
            return (None, None, None, None, grad_v, grad_w,
                    *(by_id.get(id(c)) for c in ctx.captured))
        advance = steps.advance
        with torch.enable_grad():
            v_in = v.detach().requires_grad_()
            w_in = w.detach().requires_grad_()
            v_out, w_out = advance(v_in, w_in, t, dt, count)
        live = [c for c in ctx.captured if c.requires_grad]
        pairs = [(o, g) for o, g in ((v_out, grad_v), (w_out, grad_w))
                 if g is not None and o.requires_grad]
        grads = torch.autograd.grad([o for o, _ in pairs], [v_in, w_in, *live],
                                    [g for _, g in pairs], allow_unused=True)
        by_id = {id(c): g for c, g in zip(live, grads[2:], strict=True)}
        return (None, None, None, None, grads[0], grads[1],
                *(by_id.get(id(c)) for c in ctx.captured))


def _captured(dp: DifferentiableProblem) -> list:
    """The tensors with gradients that the steps read besides the state (IntervalCheckpoint)."""
    values = [*dp.params, dp.diffusion, *dp._currents.values()]
    return [x for x in values if isinstance(x, torch.Tensor) and x.requires_grad]



def trajectory(case, targets: tuple[Target, ...] = (), values=None, *,
               checkpoint: bool = True) -> Trajectory:
    """Every output of ``case`` as tensors, differentiable with respect to ``values``
    (``{target.path: 0-d tensor}``; the case must hold their values already, e.g. through
    :func:`case_with`). ``checkpoint``: recompute each output interval in the backward pass
    instead of keeping its steps (module docstring)."""
    from ..driver import output_times

    check_case(case)
    values = dict(values or {})
    if case.is_sheet:
        from .sheet import SheetProblem as Differentiable
    else:
        Differentiable = DifferentiableProblem
    dp = Differentiable(case, targets, values)
    steps = steps_for(dp)
    spec = case.time
    dt, n_steps, per_output = spec.dt, spec.n_steps, spec.steps_per_output
    times = output_times(n_steps, per_output, dt)
    starts = np.arange(0, n_steps, per_output)
    dp.prepare_currents(np.concatenate(
        [steps.query_times(first * dt, dt, min(per_output, n_steps - first)) for first in starts]
        or [np.zeros(0)]))
    differentiable = torch.is_grad_enabled() and any(
        isinstance(x, torch.Tensor) and x.requires_grad for x in values.values())
    captured = _captured(dp)
    v, w = dp.v0, dp.w0
    out_v, out_w = [v], [w]
    for first in starts:
        count = int(min(per_output, n_steps - first))
        t = float(first * dt)
        if checkpoint and differentiable:
            v, w = IntervalCheckpoint.apply(steps, t, dt, count, v, w, *captured)
        else:
            v, w = steps.advance(v, w, t, dt, count)
        if not bool(torch.isfinite(v.detach()).all() and torch.isfinite(w.detach()).all()):
            raise NumericalFailure(f"the solution blew up before t = {t + count * dt:g}; lower "
                                   "time.dt or check the parameters")
        out_v.append(v)
        out_w.append(w)
    x = dp.problem.grid.x if dp.problem.is_cable else None
    y = dp.problem.grid.y if dp.problem.is_sheet else None
    return Trajectory(times, x, torch.stack(out_v), torch.stack(out_w), y)


def case_with(case, targets: tuple[Target, ...], values) -> object:
    """``case`` with every target's key path set to ``values[path]`` (a number or a 0-d
    tensor), validated as a whole."""
    changes = {t.path: float(_number(values[t.path])) for t in targets}
    return case.with_changes(changes) if changes else case


def _number(x):
    return x.detach() if isinstance(x, torch.Tensor) else x
