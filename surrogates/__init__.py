"""surrogates: neural models of the FitzHugh–Nagumo point model, trained on fhnpde's solver.

Data (:mod:`surrogates.data`), MLP shapes (:mod:`surrogates.architectures`), DDNN / PINN /
ITNN / Neural ODE (:mod:`surrogates.models`), training (:mod:`surrogates.train`),
architecture search (:mod:`surrogates.search`) and diagnostics
(:mod:`surrogates.diagnostics`). ``python -m surrogates generate|train|search|evaluate``.

``import surrogates`` is light: torch is imported by the modules that need it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CONFIGS", "load_config"]

CONFIGS = Path(__file__).resolve().parent / "configs"


def load_config(path, overrides=None):
    """Read and validate a surrogate config (see :mod:`surrogates.config`)."""
    from .config import load_config as _load

    return _load(path, overrides)
