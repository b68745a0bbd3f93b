from __future__ import annotations

import numpy as np
import pytest

from fhnpde.models import FAMILIES, Kinetics, check_params


def test_nagumo_reaction_matches_the_formula():
    kin = Kinetics.create("nagumo", {"k": 10.0, "a": 0.4, "eps": 0.04, "gamma": 4.0})
    v, w, I = 0.3, 0.05, 0.1
    dv, dw = kin.reaction(v, w, I)
    assert dv == pytest.approx(10.0 * (0.3 * 0.7 * (0.3 - 0.4) - 0.05 + 0.1), rel=1e-15)
    assert dw == pytest.approx(0.04 * (0.3 - 4.0 * 0.05), rel=1e-15)


def test_fitzhugh_reaction_matches_the_formula():
    kin = Kinetics.create("fitzhugh", {"c": 1.0, "a": 0.7, "b": 0.8, "tau": 12.5})
    v, w, I = -1.2, 0.4, 0.5
    dv, dw = kin.reaction(v, w, I)
    assert dv == pytest.approx(v - v**3 / 3 - w + I, rel=1e-15)
    assert dw == pytest.approx((v + 0.7 - 0.8 * w) / 12.5, rel=1e-15)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_dreaction_dv_is_the_derivative(name):
    kin = Kinetics.create(name)
    v = np.linspace(-2, 2, 41)
    h = 1e-6
    fd = (kin.reaction(v + h, 0.1, 0.2)[0] - kin.reaction(v - h, 0.1, 0.2)[0]) / (2 * h)
    np.testing.assert_allclose(kin.dreaction_dv(v, 0.1, 0.2), fd, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_recovery_is_affine_and_matches_the_reaction(name):
    kin = Kinetics.create(name)
    alpha, beta, delta, dfdw = kin.recovery()
    rng = np.random.default_rng(1)
    v, w = rng.normal(size=20), rng.normal(size=20)
    np.testing.assert_allclose(kin.reaction(v, w)[1], alpha * v - beta * w + delta, rtol=1e-13)
    h = 1e-6
    fd = (kin.reaction(v, w + h)[0] - kin.reaction(v, w - h)[0]) / (2 * h)
    np.testing.assert_allclose(fd, dfdw, rtol=1e-8)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_rest_state_is_an_equilibrium(name):
    kin = Kinetics.create(name)
    v, w = kin.rest_state(0.0)
    dv, dw = kin.reaction(v, w, 0.0)
    assert abs(dv) < 1e-12
    assert abs(dw) < 1e-12


def test_nagumo_rest_state_is_the_origin():
    assert Kinetics.create("nagumo").rest_state() == pytest.approx((0.0, 0.0), abs=1e-14)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("nagumo", {"eps": 0.0}, "eps must be > 0"),
        ("nagumo", {"eps": -1.0}, "eps must be > 0"),
        ("nagumo", {"a": 1.5}, "a must lie in (0, 1)"),
        ("nagumo", {"k": -1.0}, "k must be >= 0"),
        ("nagumo", {"beta": 1.0}, "unknown parameter(s) beta"),
        ("fitzhugh", {"tau": 0.0}, "tau must be > 0"),
        ("hodgkin", {}, "unknown kinetics 'hodgkin'"),
    ],
)
def test_bad_parameters_are_sentences(name, params, message):
    import re

    with pytest.raises(ValueError, match=re.escape(message)):
        check_params(name, params)


def test_kinetics_broadcast_over_members():
    a = np.array([0.1, 0.2, 0.3])
    kin = Kinetics("nagumo", {"k": 1.0, "a": a, "eps": 0.01, "gamma": 0.5})
    dv, _ = kin.reaction(np.full(3, 0.5), np.zeros(3), 0.0)
    np.testing.assert_allclose(dv, 0.5 * 0.5 * (0.5 - a))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_dreaction_dparams_are_the_derivatives(name):
    """The parameters' and the current's derivatives (the explicit adjoint's) against central
    differences of the reaction itself."""
    from fhnpde.models import dreaction_dparams_by_code

    fam = FAMILIES[name]
    rng = np.random.default_rng(2)
    v, w, I = rng.normal(size=30), rng.normal(size=30), rng.normal(size=30)
    p = [fam.defaults[q] for q in fam.params]
    df, dg, f_i = dreaction_dparams_by_code(fam.code, v, w, I, p)
    h = 1e-6
    for j, q in enumerate(fam.params):
        up, down = list(p), list(p)
        up[j] += h
        down[j] -= h
        for k, got in ((0, df[j]), (1, dg[j])):
            fd = (fam.reaction(v, w, I, *up)[k] - fam.reaction(v, w, I, *down)[k]) / (2 * h)
            np.testing.assert_allclose(np.broadcast_to(got, v.shape), fd, rtol=1e-7, atol=1e-8,
                                       err_msg=f"{'fg'[k]}_{q}")
    fd = (fam.reaction(v, w, I + h, *p)[0] - fam.reaction(v, w, I - h, *p)[0]) / (2 * h)
    np.testing.assert_allclose(np.broadcast_to(f_i, v.shape), fd, rtol=1e-7)
    fd = (fam.reaction(v, w, I + h, *p)[1] - fam.reaction(v, w, I - h, *p)[1]) / (2 * h)
    np.testing.assert_allclose(fd, 0.0, atol=1e-8)  # g does not read the current
