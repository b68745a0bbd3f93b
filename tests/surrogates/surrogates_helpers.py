"""Helpers of the surrogate tests (a module name that no other test folder uses)."""

from __future__ import annotations

from surrogates import CONFIGS
from surrogates.config import load_config


def small_config(name: str, tmp, *overrides: str):
    """A shipped config with paths under ``tmp``, numpy backend and the given overrides."""
    return load_config(CONFIGS / f"{name}.yaml", [
        f"data.path={tmp}/{name}.zarr", f"training.out={tmp}/model-{name}",
        f"search.out={tmp}/search-{name}", "data.solver.backend=numpy", *overrides])
