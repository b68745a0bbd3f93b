"""The sheet grid: shape and spacing, the five-point Laplacian against analytic second
derivatives, its boundary treatment per direction, and the quadrature it conserves."""

from __future__ import annotations

import numpy as np
import pytest

from fhnpde.grid import SheetGrid, UniformGrid


def test_shape_axes_and_coordinates():
    g = SheetGrid((10.0, 5.0), (21, 11))
    assert g.shape == (11, 21)
    assert g.size == 231
    assert g.axes == (UniformGrid(10.0, 21), UniformGrid(5.0, 11))
    assert (g.dx, g.dy) == (0.5, 0.5)
    np.testing.assert_array_equal(g.x, np.arange(21) * 0.5)
    np.testing.assert_array_equal(g.y, np.arange(11) * 0.5)
    p = SheetGrid((10.0, 6.0), (20, 12), "periodic")
    assert p.periodic
    assert (p.dx, p.dy) == (0.5, 0.5)


def test_invalid_sheets_are_refused():
    with pytest.raises(ValueError, match="unknown boundary"):
        SheetGrid((1.0, 1.0), (5, 5), "dirichlet")
    with pytest.raises(ValueError, match="at least 3 nodes"):
        SheetGrid((1.0, 1.0), (5, 2))
    with pytest.raises(ValueError, match="per direction"):
        SheetGrid((1.0,), (5, 5))


def test_periodic_laplacian_of_a_fourier_mode_is_its_discrete_eigenvalue():
    """sin(kx x) cos(ky y) is an eigenvector of the 5-point stencil on a torus with the
    eigenvalue -(4/dx^2) sin^2(kx dx/2) - (4/dy^2) sin^2(ky dy/2)."""
    g = SheetGrid((10.0, 6.0), (40, 30), "periodic")
    y, x = np.meshgrid(g.y, g.x, indexing="ij")
    kx, ky = 2 * np.pi * 3 / 10.0, 2 * np.pi * 2 / 6.0
    v = np.sin(kx * x) * np.cos(ky * y)
    lam = -(4 / g.dx**2) * np.sin(kx * g.dx / 2) ** 2 - (4 / g.dy**2) * np.sin(ky * g.dy / 2) ** 2
    np.testing.assert_allclose(g.laplacian(v), lam * v, atol=1e-11)


def test_neumann_laplacian_of_even_cosines_is_exact_eigen_and_second_order():
    """cos(pi m x / Lx) cos(pi n y / Ly) satisfies the mirror-node edges: the stencil's
    eigenvalue is exact, and it approaches -(pi m/Lx)^2 - (pi n/Ly)^2 like h^2."""
    errs = []
    for n in (21, 41, 81):
        g = SheetGrid((2.0, 1.0), (n, n))
        y, x = np.meshgrid(g.y, g.x, indexing="ij")
        v = np.cos(np.pi * x / 2.0) * np.cos(2 * np.pi * y)
        exact = -((np.pi / 2.0) ** 2 + (2 * np.pi) ** 2) * v
        errs.append(np.max(np.abs(g.laplacian(v) - exact)))
    order = np.log2(errs[0] / errs[1]), np.log2(errs[1] / errs[2])
    np.testing.assert_allclose(order, 2.0, atol=0.05)


def test_y_independent_field_has_the_cable_laplacian():
    g = SheetGrid((7.0, 3.0), (15, 9))
    rng = np.random.default_rng(1)
    row = rng.random(15)
    v = np.broadcast_to(row, g.shape).copy()
    lap = g.laplacian(v)
    np.testing.assert_array_equal(lap, np.broadcast_to(g.axes[0].laplacian(row), g.shape))


@pytest.mark.parametrize("boundary", ["neumann", "periodic"])
def test_laplacian_sums_to_zero_against_the_weights(boundary):
    """Pure diffusion conserves the product-trapezoidal integral exactly."""
    g = SheetGrid((3.0, 2.0), (13, 9), boundary)
    v = np.random.default_rng(0).random((2, *g.shape))
    assert np.all(np.abs(g.integral(g.laplacian(v))) < 1e-12)
    assert g.integral(np.ones(g.shape)) == pytest.approx(6.0, rel=1e-14)
    assert g.weights.shape == g.shape
