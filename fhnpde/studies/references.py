"""Independent references for the convergence study (``--reference scipy``).

- cables and sheets: the method of lines with fhnpde's own spatial operator
  (:meth:`fhnpde.grid.UniformGrid.laplacian`, :meth:`fhnpde.grid.SheetGrid.laplacian`,
  boundary treatment included), integrated by
  ``scipy.integrate.solve_ivp`` (BDF with the sparse Jacobian pattern, rtol 1e-10);
- point models: ``solve_ivp`` (DOP853, rtol 1e-12), member by member.

Both integrate across the switch times of the applied current separately, where the right
side jumps.
"""

from __future__ import annotations

import numpy as np

from ..case import Case, CaseError


def _switch_times(problem, t_end: float) -> list[float]:
    """Segment ends of [0, t_end] between which the applied current is constant in time."""
    cur = problem.current
    times = {float(t) for t in np.concatenate([cur.t0, cur.t1]) if 0.0 < t < t_end}
    return [0.0, *sorted(times), float(t_end)]


def laplacian_sparsity(grid, space_order: int = 2):
    """Sparsity pattern (scipy CSR, 0/1) of ``v -> laplacian(v)`` on ``grid`` (a cable or a
    sheet, its nodes in C order), ghosts included; ``space_order`` 4 adds the nodes two
    away."""
    from scipy import sparse

    n = grid.size
    i = np.arange(n).reshape(grid.shape)
    neighbours = grid.neighbours(i)
    if space_order == 4:
        neighbours = (*neighbours, *grid.far_neighbours(i))
    rows = np.concatenate([i.ravel()] * (1 + len(neighbours)))
    cols = np.concatenate([i.ravel(), *(j.ravel() for j in neighbours)])
    pattern = sparse.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
    pattern = pattern.tocsr()
    pattern.data[:] = 1.0
    return pattern


def solve_bdf(rhs, span, y0, **options):
    """``scipy.integrate.solve_ivp(rhs, span, y0, method="BDF", **options)``, with the right
    side evaluated under the caller's numpy error state and scipy's own arithmetic under
    ``invalid="ignore"``: BDF allocates its table of differences with ``np.empty`` and, at its
    first step, subtracts a row it has not written yet (the result is overwritten before it
    is used), so memory that happens to hold a NaN would trip ``np.errstate(invalid="raise")``
    (the test suite's setting) or warn about nothing."""
    from scipy.integrate import solve_ivp

    caller = np.geterr()

    def guarded(t, y):
        with np.errstate(**caller):
            return rhs(t, y)

    with np.errstate(invalid="ignore"):
        return solve_ivp(guarded, span, y0, method="BDF", **options)


def method_of_lines_reference(
    case: Case, *, rtol: float = 1e-10, atol: float = 1e-12
) -> tuple[np.ndarray, np.ndarray]:
    """(v, w) at ``time.t_end`` by the method of lines and ``solve_ivp`` (BDF).

    .. math::

        \\dot v_i = D\\,(L v)_i + f(v_i, w_i, I_i(t)),\\qquad \\dot w_i = g(v_i, w_i)

    with ``L`` = :meth:`UniformGrid.laplacian` (the three-point Laplacian read through the
    grid's ghost indices, or the fourth-order one with ``solver.space_order: 4``, so the
    reference has exactly the spatial operator of the solver it checks)
    and the kinetics of :mod:`fhnpde.models`. BDF gets the Jacobian's sparsity pattern
    ``[[L + I, I], [I, I]]`` and builds the Jacobian by grouped finite differences. The
    integration restarts where a stimulus switches on or off, so the current is smooth in
    time on every piece.
    """
    from scipy import sparse

    from ..problem import build_problem

    problem = build_problem(case)
    grid = problem.grid
    if grid is None:
        raise CaseError("the method-of-lines reference needs a domain", key="domain")
    n, shape = grid.size, grid.shape
    kinetics = problem.kinetics
    diffusion = problem.diffusion
    space_order = case.solver.space_order
    eye = sparse.identity(n, format="csr")
    pattern = sparse.bmat([[laplacian_sparsity(grid, space_order) + eye, eye], [eye, eye]],
                          format="csr")
    y = np.concatenate([problem.v0.ravel(), problem.w0.ravel()]).astype(float)
    bounds = _switch_times(problem, case.time.t_end)
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        current = np.array(problem.current.current(0.5 * (a + b)), dtype=float).ravel()

        def rhs(t, y, current=current):
            v, w = y[:n], y[n:]
            dv, dw = kinetics.reaction(v, w, current)
            lap = grid.laplacian(v.reshape(shape), space_order=space_order).ravel()
            return np.concatenate([diffusion * lap + dv, dw])

        sol = solve_bdf(rhs, (a, b), y, rtol=rtol, atol=atol, jac_sparsity=pattern)
        if not sol.success:
            raise RuntimeError(f"solve_ivp (BDF) failed on [{a}, {b}]: {sol.message}")
        y = sol.y[:, -1]
    return y[:n].reshape(shape).copy(), y[n:].reshape(shape).copy()


def point_reference(
    case: Case, *, method: str = "DOP853", rtol: float = 1e-12, atol: float = 1e-14
) -> tuple[np.ndarray, np.ndarray]:
    """(v, w) at ``time.t_end`` of every member by ``solve_ivp`` (one call per member).

    Each member's parameters and steady current are its own; the integration restarts
    where a stimulus switches.
    """
    from scipy.integrate import solve_ivp

    from ..problem import build_problem

    problem = build_problem(case)
    size = problem.size
    reaction = problem.kinetics.family.reaction
    params = [np.broadcast_to(np.asarray(x, float), (size,)) for x in problem.kinetics.values]
    bounds = _switch_times(problem, case.time.t_end)
    currents = [np.array(problem.current.current(0.5 * (a + b)), dtype=float)
                for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    v_end, w_end = np.empty(size), np.empty(size)
    for m in range(size):
        p = tuple(float(x[m]) for x in params)
        y = np.array([problem.v0[m], problem.w0[m]], dtype=float)
        for (a, b), cur in zip(zip(bounds[:-1], bounds[1:], strict=True), currents, strict=True):
            i_m = float(cur[m])

            def rhs(t, y, i_m=i_m, p=p):
                dv, dw = reaction(y[0], y[1], i_m, *p)
                return np.array([dv, dw])

            sol = solve_ivp(rhs, (a, b), y, method=method, rtol=rtol, atol=atol)
            if not sol.success:
                raise RuntimeError(f"solve_ivp ({method}) failed for member {m}: {sol.message}")
            y = sol.y[:, -1]
        v_end[m], w_end[m] = y
    return v_end, w_end
