"""Kinetics of the FitzHugh–Nagumo families.

Each family is written once, as plain arithmetic on ``(v, w, I, *params)``. The same
function therefore works elementwise on numpy arrays, on cupy arrays and, compiled by
numba, on scalars inside a kernel: a backend never carries a second copy of a formula.

.. math::

    \\text{nagumo:}\\quad  f(v, w, I) = k\\,(v (1 - v)(v - a) - w + I),\\qquad
                          g(v, w) = \\varepsilon (v - \\gamma w)

    \\text{fitzhugh:}\\quad f(v, w, I) = c\\,(v - v^3/3 - w) + I,\\qquad
                          g(v, w) = (v + a - b w) / \\tau

(Nagumo, Arimoto & Yoshizawa 1962 in the cubic form of the spatial-FHN write-up;
FitzHugh 1961 in the form of the Neural-ODE phase-portrait study.)

Both recovery equations are affine in ``(v, w)``: ``g = alpha v - beta w + delta``.
Crank–Nicolson uses that to eliminate ``w`` from its Newton system.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# --- the formulas, written once -------------------------------------------------------


def nagumo_reaction(v, w, I, k, a, eps, gamma):
    """Right-hand side (dv/dt, dw/dt) of the Nagumo kinetics without diffusion."""
    return k * (v * (1.0 - v) * (v - a) - w + I), eps * (v - gamma * w)


def nagumo_dreaction_dv(v, w, I, k, a, eps, gamma):
    """d(dv/dt)/dv of the Nagumo kinetics: k (-3 v^2 + 2 (1 + a) v - a)."""
    return k * (-3.0 * v * v + 2.0 * (1.0 + a) * v - a)


def nagumo_dreaction_dparams(v, w, I, k, a, eps, gamma):
    """The derivatives of (f, g) = (dv/dt, dw/dt) of the Nagumo kinetics with respect to its
    parameters and the current: ``((f_k, f_a, f_eps, f_gamma), (g_k, g_a, g_eps, g_gamma),
    f_I)`` (``g_I = 0``). f is linear in k and g in eps, so ``f_k`` and ``g_eps`` are the
    reaction itself at k = 1 and eps = 1; ``f_a = -k v (1 - v)``, ``g_gamma = -eps w``,
    ``f_I = k``. Gradients of parameters (the explicit adjoint) take them from here."""
    f_k = nagumo_reaction(v, w, I, 1.0, a, eps, gamma)[0]
    g_eps = nagumo_reaction(v, w, I, k, a, 1.0, gamma)[1]
    return (f_k, -k * v * (1.0 - v), 0.0, 0.0), (0.0, 0.0, g_eps, -eps * w), k


def nagumo_recovery(k, a, eps, gamma):
    """(alpha, beta, delta, dv/dw) with w_t = alpha v - beta w + delta."""
    return eps, eps * gamma, 0.0, -k


def fitzhugh_reaction(v, w, I, c, a, b, tau):
    """Right-hand side (dv/dt, dw/dt) of the FitzHugh kinetics without diffusion."""
    return c * (v - v * v * v / 3.0 - w) + I, (v + a - b * w) / tau


def fitzhugh_dreaction_dv(v, w, I, c, a, b, tau):
    """d(dv/dt)/dv of the FitzHugh kinetics: c (1 - v^2)."""
    return c * (1.0 - v * v)


def fitzhugh_dreaction_dparams(v, w, I, c, a, b, tau):
    """The derivatives of (f, g) of the FitzHugh kinetics with respect to (c, a, b, tau) and
    I, laid out as :func:`nagumo_dreaction_dparams`: ``f_c`` is the reaction at c = 1 without
    current, ``g_a = 1 / tau``, ``g_b = -w / tau``, ``g_tau = -g / tau``, ``f_I = 1``."""
    f_c = fitzhugh_reaction(v, w, 0.0, 1.0, a, b, tau)[0]
    g = fitzhugh_reaction(v, w, I, c, a, b, tau)[1]
    return (f_c, 0.0, 0.0, 0.0), (0.0, 1.0 / tau, -w / tau, -g / tau), 1.0


def fitzhugh_recovery(c, a, b, tau):
    """(alpha, beta, delta, dv/dw) with w_t = alpha v - beta w + delta."""
    return 1.0 / tau, b / tau, a / tau, -c


# --- the registry ------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """One kinetics family: its parameter names, constraints and formulas."""

    name: str
    params: tuple[str, ...]
    defaults: dict[str, float]
    positive: tuple[str, ...]  # parameters that must be > 0
    nonnegative: tuple[str, ...]
    reaction: Callable
    dreaction_dv: Callable
    recovery: Callable
    code: int  # integer tag used by compiled kernels to pick the formula
    doc: str = ""
    extra_checks: tuple[Callable[[dict[str, float]], str | None], ...] = field(default=())


def _nagumo_threshold(p: dict[str, float]) -> str | None:
    if not 0.0 < p["a"] < 1.0:
        return f"a must lie in (0, 1) for an excitable Nagumo medium, got {p['a']}"
    return None


FAMILIES: dict[str, Family] = {
    "nagumo": Family(
        name="nagumo",
        params=("k", "a", "eps", "gamma"),
        defaults={"k": 1.0, "a": 0.1, "eps": 0.01, "gamma": 0.5},
        positive=("eps",),
        nonnegative=("k", "gamma"),
        reaction=nagumo_reaction,
        dreaction_dv=nagumo_dreaction_dv,
        recovery=nagumo_recovery,
        code=0,
        doc="v_t = k (v (1 - v)(v - a) - w + I),  w_t = eps (v - gamma w)",
        extra_checks=(_nagumo_threshold,),
    ),
    "fitzhugh": Family(
        name="fitzhugh",
        params=("c", "a", "b", "tau"),
        defaults={"c": 1.0, "a": 0.7, "b": 0.8, "tau": 12.5},
        positive=("tau",),
        nonnegative=("c", "b"),
        reaction=fitzhugh_reaction,
        dreaction_dv=fitzhugh_dreaction_dv,
        recovery=fitzhugh_recovery,
        code=1,
        doc="v_t = c (v - v^3/3 - w) + I,  w_t = (v + a - b w) / tau",
    ),
}


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(
            f"unknown kinetics {name!r}; valid kinetics: {', '.join(FAMILIES)}"
        ) from None


def check_params(name: str, params: dict[str, Any]) -> dict[str, float]:
    """Validate and complete a parameter dict; raise ValueError with a sentence."""
    fam = family(name)
    unknown = sorted(set(params) - set(fam.params))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for kinetics {name!r}; "
            f"its parameters are {', '.join(fam.params)}"
        )
    full = {**fam.defaults, **{k: float(v) for k, v in params.items()}}
    for p in fam.positive:
        if not full[p] > 0.0:
            raise ValueError(f"{p} must be > 0, got {full[p]}")
    for p in fam.nonnegative:
        if not full[p] >= 0.0:
            raise ValueError(f"{p} must be >= 0, got {full[p]}")
    for p, val in full.items():
        if not np.isfinite(val):
            raise ValueError(f"{p} must be finite, got {val}")
    for check in fam.extra_checks:
        msg = check(full)
        if msg:
            raise ValueError(msg)
    return full


@dataclass(frozen=True)
class Kinetics:
    """A kinetics family with its parameters bound.

    Parameters may be scalars (a cable) or arrays over ensemble members (a point model);
    every method broadcasts.
    """

    name: str
    params: dict[str, Any]

    @classmethod
    def create(cls, name: str, params: dict[str, Any] | None = None) -> Kinetics:
        return cls(name, check_params(name, dict(params or {})))

    @property
    def family(self) -> Family:
        return family(self.name)

    @property
    def values(self) -> tuple:
        """Parameter values in the family's order (for the formulas and kernels)."""
        return tuple(self.params[p] for p in self.family.params)

    def reaction(self, v, w, I=0.0):
        """(dv/dt, dw/dt) from the kinetics alone."""
        return self.family.reaction(v, w, I, *self.values)

    def dreaction_dv(self, v, w=0.0, I=0.0):
        """Derivative of the v-reaction with respect to v (the Newton Jacobian's diagonal)."""
        return self.family.dreaction_dv(v, w, I, *self.values)

    def recovery(self):
        """(alpha, beta, delta, dfdw): w_t = alpha v - beta w + delta and d(v_t)/dw."""
        return self.family.recovery(*self.values)

    def rest_state(self, I: float = 0.0) -> tuple[float, float]:
        """The resting state (the lowest real equilibrium of v) at constant current I."""
        alpha, beta, delta, _ = self.recovery()
        alpha, beta, delta = (float(np.asarray(x).ravel()[0]) for x in (alpha, beta, delta))
        # On the w-nullcline w = (alpha v + delta) / beta; find roots of the v-reaction there.
        # The v-reaction is a cubic in v; sample it to get its coefficients exactly.
        vs = np.array([-1.0, 0.0, 1.0, 2.0])
        fs = np.array(
            [
                float(np.asarray(self.reaction(x, (alpha * x + delta) / beta, I)[0]).ravel()[0])
                for x in vs
            ]
        )
        coeffs = np.polyfit(vs, fs, 3)
        roots = np.roots(coeffs)
        real = np.sort(roots[np.abs(roots.imag) < 1e-9].real)
        v_rest = float(real[0])
        return v_rest, (alpha * v_rest + delta) / beta


# --- dispatch by integer tag (for compiled kernels; also works on arrays) ---------------


def reaction_by_code(code, v, w, I, p):
    """The family's reaction chosen by its integer ``code``; ``p`` holds its 4 parameters."""
    if code == 0:
        return nagumo_reaction(v, w, I, p[0], p[1], p[2], p[3])
    return fitzhugh_reaction(v, w, I, p[0], p[1], p[2], p[3])


def dreaction_dv_by_code(code, v, w, I, p):
    """d(dv/dt)/dv of the family chosen by ``code``."""
    if code == 0:
        return nagumo_dreaction_dv(v, w, I, p[0], p[1], p[2], p[3])
    return fitzhugh_dreaction_dv(v, w, I, p[0], p[1], p[2], p[3])


def dreaction_dparams_by_code(code, v, w, I, p):
    """``((f_p0..f_p3), (g_p0..g_p3), f_I)`` of the family chosen by ``code``
    (:func:`nagumo_dreaction_dparams`)."""
    if code == 0:
        return nagumo_dreaction_dparams(v, w, I, p[0], p[1], p[2], p[3])
    return fitzhugh_dreaction_dparams(v, w, I, p[0], p[1], p[2], p[3])


def recovery_by_code(code, p):
    """(alpha, beta, delta, df/dw) of the family ``code``: ``w_t = alpha v - beta w + delta``."""
    if code == 0:
        return nagumo_recovery(p[0], p[1], p[2], p[3])
    return fitzhugh_recovery(p[0], p[1], p[2], p[3])
