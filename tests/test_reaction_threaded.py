"""The exact reaction's threaded kernel against its serial one: the same result to the bit,
for shared and per-node parameters, both families, both schemes and several substeps."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from fhnpde.backends import kernels  # noqa: E402


@pytest.mark.parametrize("code", [0, 1])
@pytest.mark.parametrize("scheme", [0, 1])
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize(("n", "chunks"), [(1000, 8), (10, 8), (7, 3), (262_147, 8)])
def test_threaded_reaction_equals_serial_to_the_bit(code, scheme, shared, n, chunks):
    k = kernels("fhnpde.reaction_numba")
    rng = np.random.default_rng(n + 10 * code + 100 * scheme)
    v, w = rng.uniform(-0.5, 1.2, n), rng.uniform(-0.1, 0.3, n)
    current = rng.uniform(0.0, 0.2, n)
    params = np.array([[1.0], [0.1], [0.01], [0.5]]) if shared else \
        np.vstack([rng.uniform(0.8, 1.2, n), rng.uniform(0.05, 0.13, n),
                   rng.uniform(0.005, 0.02, n), rng.uniform(0.3, 0.7, n)])
    serial_v, serial_w = np.empty(n), np.empty(n)
    threaded_v, threaded_w = np.full(n, np.nan), np.full(n, np.nan)
    k.reaction_serial(code, scheme, v, w, current, params, 0.15, 3, serial_v, serial_w)
    k.reaction_parallel(code, scheme, v, w, current, params, 0.15, 3, chunks, threaded_v,
                        threaded_w)
    assert np.all(np.isfinite(serial_v))
    assert np.array_equal(threaded_v, serial_v)
    assert np.array_equal(threaded_w, serial_w)
    assert not np.array_equal(serial_v, v)  # the step moved the state
