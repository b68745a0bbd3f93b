"""Peaceman–Rachford ADI and the split solver on sheets (DESIGN section 9), with numbers.

- A sheet whose data do not depend on y is the cable of the same x-grid: ADI-split against the
  cable's split solver (Crank–Nicolson half-steps, same exact reaction), to 1e-12.
- 2-D heat kernel (reaction off, periodic): fitted order 2 in dt against the semi-discrete
  solution (FFT of the five-point Laplacian, numpy.fft) and 2 in dx (dt proportional to dx)
  against the analytic periodic Gaussian, within +-0.15.
- A radially symmetric state stays symmetric under the 8 symmetries of the square to 1e-10.
- Large dt (1000x the explicit limit): bounded, the max norm never grows, the highest mode
  damped.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fhnpde.driver import build_solver
from fhnpde.grid import SheetGrid
from fhnpde.models import Kinetics
from fhnpde.solvers import OptionError, Problem, SolverOptions
from fhnpde.solvers.split import PeacemanRachfordADI, SheetStrangSplit, StrangSplit
from fhnpde.stimulus import AppliedCurrent
from tests.helpers import SMALL_CABLE, fitted_order, make_case

NAGUMO = {"k": 1.0, "a": 0.1, "eps": 0.01, "gamma": 0.5}
OFF = {"k": 0.0, "a": 0.1, "eps": 0.0, "gamma": 0.5}  # reaction off: pure diffusion


class TiledCurrent:
    """A cable's applied current repeated on every row of a sheet."""

    def __init__(self, cable_current, ny: int):
        self.cable, self.ny = cable_current, ny

    def current(self, t):
        c = np.asarray(self.cable.current(t))
        return np.broadcast_to(c, (self.ny, c.shape[-1]))


def sheet_problem(grid, v0, w0, params=NAGUMO, diffusion=1.0, current=None):
    if current is None:
        current = AppliedCurrent([], None, 0.0, grid.size)
    kinetics = Kinetics("nagumo", dict(params))  # unchecked: OFF has eps = 0
    return Problem(kinetics, diffusion, grid, current, v0, w0)


def run(solver, dt, nsteps):
    state = solver.advance(solver.init(), 0.0, dt, nsteps)
    return np.asarray(state.v), np.asarray(state.w)


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_y_independent_sheet_is_the_cable(boundary, backend):
    case = make_case(SMALL_CABLE, "solver.method=split", f"solver.backend={backend}",
                     f"domain.boundary={boundary}", "time.dt=0.1", "time.t_end=20",
                     "stimuli=[{kind: box, x: [0, 4], t: [0, 2], amplitude: 0.8}]")
    cable, cable_solver = build_solver(case)
    ny = 7
    grid = SheetGrid((cable.grid.length, 3.0), (cable.grid.nx, ny), boundary)
    tile = (ny, 1)
    problem = sheet_problem(grid, np.tile(cable.v0, tile), np.tile(cable.w0, tile),
                            current=TiledCurrent(cable.current, ny))
    sheet_solver = SheetStrangSplit(problem, SolverOptions(backend=backend))
    assert sheet_solver.diffusion_scheme == "adi"
    n = case.time.n_steps
    v_cable, w_cable = run(cable_solver, case.time.dt, n)
    v_sheet, w_sheet = run(sheet_solver, case.time.dt, n)
    assert np.abs(v_cable).max() > 0.5  # a pulse is running: not a trivial comparison
    assert np.abs(v_sheet - v_cable).max() <= 1e-12
    assert np.abs(w_sheet - w_cable).max() <= 1e-12


def periodic_gaussian(grid, t, D, t0, centre):
    """The heat kernel started at time -t0 from a point source, summed over the images of a
    periodic sheet (enough images for 1e-16 at these widths)."""
    lx, ly = grid.length
    x, y = grid.x[None, :], grid.y[:, None]
    s = 4.0 * D * (t + t0)
    total = np.zeros(grid.shape)
    for i in range(-2, 3):
        for j in range(-2, 3):
            r2 = (x - centre[0] + i * lx) ** 2 + (y - centre[1] + j * ly) ** 2
            total += np.exp(-r2 / s)
    return total / (np.pi * s)


def semi_discrete(grid, v0, D, t):
    """exp(t D L) v0 for the five-point Laplacian L of a periodic sheet, by its eigenvalues
    (numpy.fft): the reference of the time discretisation alone."""
    ny, nx = grid.shape
    kx = 2 * np.pi * np.fft.fftfreq(nx)
    ky = 2 * np.pi * np.fft.fftfreq(ny)
    lam = (-4 * np.sin(kx / 2) ** 2 / grid.dx**2)[None, :] \
        + (-4 * np.sin(ky / 2) ** 2 / grid.dy**2)[:, None]
    return np.real(np.fft.ifft2(np.fft.fft2(v0) * np.exp(D * t * lam)))


def heat_solver(grid, v0, D, method="thomas", backend="numba"):
    problem = sheet_problem(grid, v0, np.zeros_like(v0), OFF, D)
    return SheetStrangSplit(problem, SolverOptions(backend=backend, tridiagonal=method))


def test_heat_kernel_adi_second_order_in_dt():
    D, t0, t_end = 1.0, 0.5, 1.0
    grid = SheetGrid((20.0, 16.0), (80, 64), "periodic")
    centre = (9.0, 7.0)
    v0 = periodic_gaussian(grid, 0.0, D, t0, centre)
    exact = semi_discrete(grid, v0, D, t_end)
    dts = np.array([0.2, 0.1, 0.05, 0.025])
    errors = []
    for dt in dts:
        v, _ = run(heat_solver(grid, v0, D), dt, round(t_end / dt))
        errors.append(np.abs(v - exact).max())
    order = fitted_order(dts, np.array(errors))
    assert abs(order - 2.0) <= 0.15, (order, errors)


def test_heat_kernel_adi_second_order_in_dx():
    """dt = dx / 4 (both errors O(h^2)) against the analytic periodic Gaussian; the error at
    the finest grid is within 2x the five-point stencil's leading term plus ADI's own."""
    D, t0, t_end, length = 1.0, 0.5, 1.0, 16.0
    centre = (7.0, 8.5)
    ns = np.array([32, 64, 128])
    dxs = length / ns
    errors = []
    for n, dx in zip(ns, dxs, strict=True):
        grid = SheetGrid((length, length), (n, n), "periodic")
        dt = t_end / round(t_end / (dx / 4))
        v0 = periodic_gaussian(grid, 0.0, D, t0, centre)
        v, _ = run(heat_solver(grid, v0, D), dt, round(t_end / dt))
        errors.append(np.abs(v - periodic_gaussian(grid, t_end, D, t0, centre)).max())
    order = fitted_order(dxs, np.array(errors))
    assert abs(order - 2.0) <= 0.15, (order, errors)


def test_adi_methods_agree_and_array_path_runs():
    """Thomas (numba, strided column sweep) and cyclic reduction (array code, moveaxis) give
    the same ADI step to round-off, on numpy and through the numpy backend's array path."""
    grid = SheetGrid((10.0, 8.0), (33, 27), "periodic")
    rng = np.random.default_rng(0)
    v = rng.random(grid.shape)
    a = PeacemanRachfordADI(grid, 1.0, 0.3, "thomas")(v)
    b = PeacemanRachfordADI(grid, 1.0, 0.3, "cyclic-reduction")(v)
    assert np.abs(a - b).max() <= 1e-13
    v0 = periodic_gaussian(grid, 0.0, 1.0, 0.5, (5.0, 4.0))
    va, _ = run(heat_solver(grid, v0, 1.0, "thomas", "numba"), 0.1, 10)
    vb, _ = run(heat_solver(grid, v0, 1.0, "cyclic-reduction", "numpy"), 0.1, 10)
    assert np.abs(va - vb).max() <= 1e-13


def test_torch_backend_matches_numpy():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    grid = SheetGrid((10.0, 10.0), (25, 25), "neumann")
    v0 = periodic_gaussian(grid, 0.0, 1.0, 2.0, (4.0, 6.0))
    problem = sheet_problem(grid, v0, np.zeros_like(v0))
    ref = SheetStrangSplit(problem, SolverOptions(backend="numba"))
    tor = SheetStrangSplit(problem, SolverOptions(backend="torch",
                                                  tridiagonal="cyclic-reduction"))
    v_ref, w_ref = run(ref, 0.1, 20)
    state = tor.advance(tor.init(), 0.0, 0.1, 20)
    assert isinstance(state.v, torch.Tensor)
    assert np.abs(state.v.cpu().numpy() - v_ref).max() <= 1e-12
    assert np.abs(state.w.cpu().numpy() - w_ref).max() <= 1e-12


SYMMETRIES = [
    lambda a: a, lambda a: a[::-1, :], lambda a: a[:, ::-1], lambda a: a[::-1, ::-1],
    lambda a: a.T, lambda a: a.T[::-1, :], lambda a: a.T[:, ::-1], lambda a: a.T[::-1, ::-1],
]


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_radial_state_keeps_the_symmetries_of_the_square(boundary):
    n, length = 61, 30.0
    grid = SheetGrid((length, length), (n, n), boundary)
    # centred on the middle node (neumann: node 30 of 61; periodic: the grid's centre of symmetry
    # under i -> -i mod n is node 0, so centre there and let the ring wrap)
    c = grid.x[n // 2] if boundary == "neumann" else 0.0
    dx = np.minimum(np.abs(grid.x - c), length - np.abs(grid.x - c)) if grid.periodic \
        else grid.x - c
    r2 = dx[None, :] ** 2 + dx[:, None] ** 2
    v0 = np.exp(-r2 / 16.0)
    solver = SheetStrangSplit(sheet_problem(grid, v0, np.zeros_like(v0)),
                              SolverOptions(backend="numba"))
    v, w = run(solver, 0.2, 100)
    assert v.max() > 0.5  # excited: a ring wave is running
    if boundary == "periodic":  # bring the centre of symmetry to the middle
        v, w = (np.roll(a, (n // 2, n // 2), axis=(0, 1)) for a in (v, w))
    for sym in SYMMETRIES[1:]:
        assert np.abs(sym(v) - v).max() <= 1e-10
        assert np.abs(sym(w) - w).max() <= 1e-10


def test_large_dt_stays_bounded():
    """dt = 1000x the explicit limit on rough data: the weighted L2 norm never grows (the
    mirror-node Laplacians are self-adjoint under the trapezoid weights and commute, so the
    step's eigenvalues, of modulus <= 1, bound it; the max norm may overshoot, as with
    Crank–Nicolson) and the checkerboard mode is multiplied by exactly
    ((1 - 4s/dx^2)/(1 + 4s/dx^2))^4 per step."""
    grid = SheetGrid((10.0, 10.0), (41, 41), "neumann")
    dx = grid.dx
    limit = dx**2 * dx**2 / (2 * (dx**2 + dx**2))
    dt = 1000 * limit
    rng = np.random.default_rng(1)
    v0 = rng.uniform(-1, 1, grid.shape)
    solver = heat_solver(grid, v0, 1.0)
    state = solver.init()

    def norm(v):
        return float(np.sqrt(np.sum(grid.weights * np.asarray(v) ** 2)))

    peak = norm(v0)
    for i in range(50):
        state = solver.step(state, i * dt, dt)
        now = norm(state.v)
        assert np.isfinite(now)
        assert now <= peak * (1 + 1e-12)
        peak = now
    assert np.abs(state.v).max() <= np.abs(v0).max()
    # the integral is conserved (mirror-node stencil, product trapezoid weights)
    assert abs(grid.integral(state.v) - grid.integral(v0)) <= 1e-12 * np.abs(v0).sum()
    checker = np.fromfunction(lambda j, i: (-1.0) ** (i + j), grid.shape)
    out = solver.step(dataclasses.replace(solver.init(), v=checker), 0.0, dt).v
    s = 0.25 * dt  # tau D / 2 with tau = dt / 2
    g = (1 - 4 * s / dx**2) / (1 + 4 * s / dx**2)
    assert np.abs(np.asarray(out) - g**4 * checker).max() <= 1e-12


def test_diffusion_option_errors():
    cable_case = make_case(SMALL_CABLE, "solver.method=split")
    cable, _ = build_solver(cable_case)
    with pytest.raises(OptionError, match="'adi' cannot be used on a cable.*use cn") as info:
        StrangSplit(cable, SolverOptions(diffusion="adi"))
    assert info.value.option == "diffusion"
    grid = SheetGrid((5.0, 5.0), (6, 6))
    sheet = sheet_problem(grid, np.zeros(grid.shape), np.zeros(grid.shape))
    with pytest.raises(OptionError, match="'cn' cannot be used on a sheet.*use adi"):
        SheetStrangSplit(sheet, SolverOptions(diffusion="cn"))
    with pytest.raises(OptionError, match="'crank' cannot be used"):
        SheetStrangSplit(sheet, SolverOptions(diffusion="crank"))


def test_case_diffusion_key_errors_name_the_key():
    from fhnpde.errors import CaseError

    with pytest.raises(CaseError, match="use cn") as info:
        build_solver(make_case(SMALL_CABLE, "solver.method=split", "solver.diffusion=adi"))
    assert info.value.key == "solver.diffusion"
    with pytest.raises(CaseError, match="valid substeps: cn, adi") as info:
        make_case(SMALL_CABLE, "solver.method=split", "solver.diffusion=foo")
    assert info.value.key == "solver.diffusion"
    with pytest.raises(CaseError, match="the method is explicit") as info:
        make_case(SMALL_CABLE, "solver.diffusion=cn")
    assert info.value.key == "solver.diffusion"
    _, solver = build_solver(make_case(SMALL_CABLE, "solver.method=split",
                                       "solver.diffusion=cn"))
    assert solver.diffusion_scheme == "cn"


def test_heat_kernel_orders_through_the_convergence_study():
    """ADI-split on the torus (reaction off) through the convergence study: order 2 in dt
    against scipy BDF on the same grid, 2 in dx (dt following dx) against itself two levels
    finer; measured 2.000 / 2.000 and 2.001 / 2.007 (rmse / max)."""
    from fhnpde.studies import convergence_study
    from tests.test_sheet_explicit import HEAT

    adi = ("solver.method=split", "solver.diffusion=adi")
    in_dt = convergence_study(make_case(HEAT, *adi, "domain.nx=[48, 48]", "time.dt=0.1"), "dt",
                              levels=4, reference="scipy")
    assert in_dt.declared_order == 2
    assert in_dt.fitted_order_max == pytest.approx(2.0, abs=0.15), in_dt.report()
    assert in_dt.fitted_order_rmse == pytest.approx(2.0, abs=0.15), in_dt.report()
    in_dx = convergence_study(make_case(HEAT, *adi, "domain.nx=[32, 32]", "time.dt=0.1"), "dx",
                              levels=3, reference="self")
    assert in_dx.declared_order == 2
    assert in_dx.fitted_order_max == pytest.approx(2.0, abs=0.15), in_dx.report()
    assert in_dx.fitted_order_rmse == pytest.approx(2.0, abs=0.15), in_dx.report()


@pytest.mark.parametrize("code", [0, 1])
@pytest.mark.parametrize("scheme", [0, 1])
@pytest.mark.parametrize("substeps", [1, 3])
def test_reaction_kernel_shared_sweep_is_the_per_node_loop(code, scheme, substeps):
    """The split step's reaction kernel: parameters shared by all nodes take the vectorised
    sweeps (family and scheme as constants), per-node parameters the per-node loop; the two
    give the same bits."""
    from fhnpde.backends import kernels

    k = kernels("fhnpde.reaction_numba")
    rng = np.random.default_rng(code * 10 + scheme)
    n = 1001
    v, w, current = rng.uniform(-2, 2, n), rng.uniform(-1, 1, n), rng.uniform(0, 0.5, n)
    shared = np.array([[1.0], [0.1], [0.01], [0.5]]) if code == 0 \
        else np.array([[3.3], [0.7], [0.5], [3.3]])
    each = np.ascontiguousarray(np.repeat(shared, n, axis=1))
    a, b = (np.empty(n), np.empty(n)), (np.empty(n), np.empty(n))
    k.reaction_serial(code, scheme, v, w, current, shared, 0.05, substeps, *a)
    k.reaction_serial(code, scheme, v, w, current, each, 0.05, substeps, *b)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert np.abs(a[0] - v).max() > 1e-3  # the step did something


def dense_laplacian(g):
    """The three-point Laplacian of one direction as a dense matrix, built here from the
    boundary's definition (mirror node: the ghost u[-1] = u[1]; ring: wrap-around)."""
    n, h2 = g.nx, g.dx**2
    lap = (np.diag(np.full(n - 1, 1.0), -1) + np.diag(np.full(n, -2.0))
           + np.diag(np.full(n - 1, 1.0), 1))
    if g.boundary == "periodic":
        lap[0, -1] = lap[-1, 0] = 1.0
    else:
        lap[0, 1] = lap[-1, -2] = 2.0
    return lap / h2


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_fused_half_step_against_dense_peaceman_rachford(boundary):
    """The fused kernels (explicit part formed inside the Thomas sweeps) against
    (I - s Ly)^-1 (I + s Lx) (I - s Lx)^-1 (I + s Ly) v by dense numpy solves; against the
    unfused path (explicit part into a buffer, then the batched solve) to round-off (the fused
    rhs may contract to FMAs); the threaded kernels at awkward chunk and block sizes to the
    bit."""
    from fhnpde.backends import kernels

    adi_k = kernels("fhnpde.solvers.adi_numba")
    grid = SheetGrid((9.0, 7.0), (33, 27), boundary)
    v = np.random.default_rng(3).random(grid.shape)
    tau, D = 0.7, 1.3
    step = PeacemanRachfordADI(grid, D, tau, "thomas")
    assert step.kernels is not None
    got = step(v)
    s = 0.5 * tau * D
    lx, ly = (dense_laplacian(g) for g in grid.axes)
    ix, iy = np.eye(grid.shape[1]), np.eye(grid.shape[0])
    half = np.linalg.solve(ix - s * lx, ((iy + s * ly) @ v).T).T
    ref = np.linalg.solve(iy - s * ly, half @ (ix + s * lx).T)
    assert np.abs(got - ref).max() <= 1e-12 * np.abs(ref).max()

    # the unfused path: v + s d2 v into a buffer, then the factorised batched solve
    rhs, mid = np.empty(grid.shape), np.empty(grid.shape)
    adi_k.explicit_half(-2, v, s, 1 / step.gy.dx**2, step.gy.ghosts, rhs)
    step.along_x.solve(rhs, axis=-1, out=mid)
    adi_k.explicit_half(-1, mid, s, 1 / step.gx.dx**2, step.gx.ghosts, rhs)
    unfused = step.along_y.solve(rhs, axis=-2)
    assert np.abs(got - unfused).max() <= 8e-15 * np.abs(ref).max()
    x = np.empty(grid.shape)
    adi_k.implicit_half(-1, v, s, 1 / step.gy.dx**2, step.gy.ghosts, step.factors[0], x,
                        step.scratch)
    mid = step.along_x.correct(x, -1, x)

    # threaded kernels (any thread count) at chunk / block sizes leaving remainders
    (fx, fy), (gx0, gxn), (gy0, gyn) = step.factors, step.gx.ghosts, step.gy.ghosts
    for nchunks in (1, 2, 3, 5):
        x = np.empty(grid.shape)
        adi_k.implicit_x_threaded(v, s, 1 / step.gy.dx**2, gy0, gyn, *fx, x, nchunks)
        step.along_x.correct(x, -1, x)
        np.testing.assert_array_equal(x, mid)
    for width in (8, 16, 33):
        y = np.empty(grid.shape)
        adi_k.implicit_y_threaded(mid, s, 1 / step.gx.dx**2, gx0, gxn, *fy, y, width)
        np.testing.assert_array_equal(step.along_y.correct(y, -2, y), got)


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_y_independent_sheet_is_the_cable_with_merged_half_steps(boundary):
    """solver.merge_diffusion on a sheet: ADI steps of dt between the reactions, still the
    cable's (merged) split on data that do not depend on y."""
    case = make_case(SMALL_CABLE, "solver.method=split", "solver.backend=numba",
                     f"domain.boundary={boundary}", "time.dt=0.1", "time.t_end=20",
                     "solver.merge_diffusion=true",
                     "stimuli=[{kind: box, x: [0, 4], t: [0, 2], amplitude: 0.8}]")
    cable, cable_solver = build_solver(case)
    ny = 7
    grid = SheetGrid((cable.grid.length, 3.0), (cable.grid.nx, ny), boundary)
    problem = sheet_problem(grid, np.tile(cable.v0, (ny, 1)), np.tile(cable.w0, (ny, 1)),
                            current=TiledCurrent(cable.current, ny))
    sheet_solver = SheetStrangSplit(problem, SolverOptions(backend="numba",
                                                           merge_diffusion=True))
    n = case.time.n_steps
    v_cable, w_cable = run(cable_solver, case.time.dt, n)
    v_sheet, w_sheet = run(sheet_solver, case.time.dt, n)
    v_plain, _ = run(SheetStrangSplit(problem, SolverOptions(backend="numba")), 0.1, n)
    assert np.abs(v_sheet - v_plain).max() > 1e-8  # merging did something
    assert np.abs(v_sheet - v_cable).max() <= 1e-12
    assert np.abs(w_sheet - w_cable).max() <= 1e-12
