"""Fixtures of the surrogate tests: tiny data sets derived from the shipped configs."""

from __future__ import annotations

import pytest
from surrogates_helpers import small_config


@pytest.fixture(scope="session")
def problem_a_data(tmp_path_factory):
    """Problem A with 200 training and 400 validation points (RK4, dt 0.01)."""
    from surrogates.data import generate, load_data

    tmp = tmp_path_factory.mktemp("pa")
    cfg = small_config("problem_a", tmp, "data.train.size=200", "data.validation.size=400")
    generate(cfg)
    return cfg, load_data(cfg.data_path)


@pytest.fixture(scope="session")
def itnn_data(tmp_path_factory):
    from surrogates.data import generate, load_data

    tmp = tmp_path_factory.mktemp("itnn")
    cfg = small_config("itnn", tmp, "data.train.size=4000", "data.validation.size=1000",
                       "data.rollouts.size=20", "data.rollouts.steps=10")
    generate(cfg)
    return cfg, load_data(cfg.data_path)


@pytest.fixture(scope="session")
def node_data(tmp_path_factory):
    from surrogates.data import generate, load_data

    tmp = tmp_path_factory.mktemp("node")
    cfg = small_config("neural_ode", tmp, "data.train.size=32", "data.validation.size=8",
                       "data.steps=20")
    generate(cfg)
    return cfg, load_data(cfg.data_path)
