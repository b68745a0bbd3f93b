"""MLP shapes: the width patterns their names promise, exact neuron totals, parameter budgets."""

from __future__ import annotations

import itertools

import pytest

from surrogates.architectures import (
    SHAPES,
    classify_widths,
    enumerate_architectures,
    mlp_parameters,
    shape_widths,
    shape_widths_for_parameters,
)


def _promise(shape: str, w: list[int]) -> bool:
    pairs = list(itertools.pairwise(w))
    mid = len(w) // 2
    if shape == "rectangle":
        return len(set(w)) == 1
    if shape == "funnel":
        return all(a < b for a, b in pairs)
    if shape == "bottleneck":
        return all(a > b for a, b in pairs)
    if shape == "diamond":
        return max(w) == w[mid] and w[mid] > w[0] and w[mid] > w[-1]
    return min(w) == w[mid] and w[mid] < w[0] and w[mid] < w[-1]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("neurons", "layers"), [(112, 3), (240, 3), (120, 4), (280, 5)])
def test_shape_widths_keep_pattern_and_total(shape, neurons, layers):
    if shape == "rectangle" and neurons % layers:
        neurons -= neurons % layers
    widths = shape_widths(shape, neurons, layers)
    assert len(widths) == layers
    assert sum(widths) == neurons
    assert _promise(shape, widths), widths
    assert classify_widths(widths) == shape


def test_known_widths():
    assert shape_widths("funnel", 112, 3) == [16, 32, 64]
    assert shape_widths("bottleneck", 112, 3) == [64, 32, 16]
    assert shape_widths("diamond", 128, 3) == [32, 64, 32]
    assert shape_widths("bowtie", 160, 3) == [64, 32, 64]
    assert shape_widths("rectangle", 96, 3) == [32, 32, 32]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("budget", [2000, 5000, 17282])
def test_parameter_budget(shape, budget):
    widths = shape_widths_for_parameters(shape, budget, 3, 3, 2)
    count = mlp_parameters(widths, 3, 2)
    assert abs(count - budget) / budget < 0.03, (widths, count)
    assert _promise(shape, widths)


def test_built_mlp_has_the_counted_parameters():
    torch = pytest.importorskip("torch")
    from surrogates.architectures import build_mlp

    for widths in ([128, 128], [16, 32, 64], [64, 16, 64]):
        net = build_mlp(3, widths, 2, ["tanh"])
        assert sum(p.numel() for p in net.parameters()) == mlp_parameters(widths, 3, 2)
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        assert [m.out_features for m in linears[:-1]] == widths
    # the Neural ODE study's network: 3 -> 128 -> 128 -> 2 has 17,282 parameters
    assert mlp_parameters([128, 128], 3, 2) == 17282


def test_shapes_need_enough_layers():
    with pytest.raises(ValueError, match="at least 3 hidden layers"):
        shape_widths("bowtie", 100, 2)
    with pytest.raises(ValueError, match="cannot form a rectangle"):
        shape_widths("rectangle", 100, 3)


def test_enumeration_of_the_published_search_space():
    groups = enumerate_architectures([16, 32, 64, 128], [2, 3], 256)
    for shape, members in groups.items():
        assert members, shape
        for w in members:
            assert sum(w) <= 256
            assert classify_widths(w) == shape
    # every tuple of the space is in exactly one group or is irregular
    total = sum(len(v) for v in groups.values())
    every = [w for d in (2, 3) for w in itertools.product([16, 32, 64, 128], repeat=d)
             if sum(w) <= 256]
    irregular = [w for w in every if classify_widths(list(w)) == "irregular"]
    assert total + len(irregular) == len(every)
    assert {len(v) for v in groups.values()}
    assert len(groups["rectangle"]) == 7
