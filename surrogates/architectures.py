"""Multilayer perceptrons of five shapes (the width pattern of the hidden layers).

For ``L`` hidden layers the relative widths ``p_i`` (i = 0 .. L-1) of each shape are

=============  ====================================  ======================
shape          p_i                                   promise
=============  ====================================  ======================
rectangle      1                                     all widths equal
funnel         2^i                                   strictly widening
bottleneck     2^(L-1-i)                             strictly narrowing
diamond        2^min(i, L-1-i)                       wide middle (L >= 3)
bowtie         2^(m - min(i, L-1-i)), m = max(...)   narrow middle (L >= 3)
=============  ====================================  ======================

:func:`shape_widths` scales ``p`` to a total number of hidden neurons (exactly, by
largest remainders); :func:`shape_widths_for_parameters` scales it so the network's
parameter count is as close as possible to a budget. :func:`classify_widths` names the
shape of any width list, which the architecture search uses to enumerate the discrete
widths of the published study ({16, 32, 64, 128}, at most 256 neurons, 2-3 layers)
balanced over shapes.

Only :func:`build_mlp` needs torch; it is imported there.
"""

from __future__ import annotations

import itertools
import math

SHAPES = ("rectangle", "funnel", "bottleneck", "bowtie", "diamond")
#: how a one-step model's network output becomes the step (surrogates.models.Surrogate)
STRUCTURES = ("plain", "rest-factored")
#: the known step a one-step model may correct (none, or one Euler step of the kinetics)
PRIORS = ("none", "euler")


def network_outputs(structure: str) -> int:
    """Width of the MLP's last layer: 2 (v, w), or 2 x 3 coefficients when rest-factored."""
    return 6 if structure == "rest-factored" else 2


def shape_profile(shape: str, layers: int) -> list[int]:
    """Relative widths p_i of a shape with ``layers`` hidden layers."""
    if layers < 1:
        raise ValueError(f"an MLP needs at least one hidden layer, got {layers}")
    idx = range(layers)
    if shape == "rectangle":
        return [1] * layers
    if shape in ("funnel", "bottleneck"):
        if layers < 2:
            raise ValueError(f"a {shape} needs at least 2 hidden layers, got {layers}")
        p = [2**i for i in idx]
        return p if shape == "funnel" else p[::-1]
    if shape in ("diamond", "bowtie"):
        if layers < 3:
            raise ValueError(f"a {shape} needs at least 3 hidden layers (a middle), got {layers}")
        depth = [min(i, layers - 1 - i) for i in idx]
        if shape == "diamond":
            return [2**d for d in depth]
        m = max(depth)
        return [2 ** (m - d) for d in depth]
    raise ValueError(f"unknown shape {shape!r}; valid shapes: {', '.join(SHAPES)}")


def _scaled(profile: list[int], scale: float) -> list[int]:
    return [max(1, round(scale * p)) for p in profile]


def shape_widths(shape: str, neurons: int, layers: int) -> list[int]:
    """Hidden widths of ``shape`` summing to exactly ``neurons``.

    Widths are ``neurons * p_i / sum(p)`` rounded by largest remainders; a ValueError
    says so when ``neurons`` is too small for the widths to keep the shape's pattern.
    """
    p = shape_profile(shape, layers)
    total = sum(p)
    raw = [neurons * x / total for x in p]
    widths = [math.floor(r) for r in raw]
    order = sorted(range(layers), key=lambda i: (raw[i] - widths[i], p[i]), reverse=True)
    for i in order[: neurons - sum(widths)]:
        widths[i] += 1
    if min(widths) < 1 or classify_widths(widths) != shape:
        raise ValueError(
            f"{neurons} neurons in {layers} layers cannot form a {shape} (got widths {widths}); "
            "use more neurons"
        )
    return widths


def mlp_parameters(widths: list[int], n_in: int, n_out: int) -> int:
    """Weights and biases of a dense MLP n_in -> widths -> n_out."""
    sizes = [n_in, *widths, n_out]
    return sum(a * b + b for a, b in itertools.pairwise(sizes))


def shape_widths_for_parameters(shape: str, parameters: int, layers: int, n_in: int,
                                n_out: int) -> list[int]:
    """Hidden widths of ``shape`` whose parameter count is closest to ``parameters``.

    The parameter count grows monotonically with the scale of the profile, so the scale
    is found by bisection, then the nearer of the two neighbouring integer solutions kept.
    """
    p = shape_profile(shape, layers)

    def count(s: float) -> int:
        return mlp_parameters(_scaled(p, s), n_in, n_out)

    lo, hi = 0.0, 1.0
    while count(hi) < parameters:
        hi *= 2.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if count(mid) < parameters:
            lo = mid
        else:
            hi = mid
    candidates = {tuple(_scaled(p, s)) for s in (lo, hi)}
    valid = [list(c) for c in candidates if classify_widths(list(c)) == shape]
    if not valid:
        raise ValueError(f"no {shape} of {layers} layers has about {parameters} parameters")
    return min(valid, key=lambda w: abs(mlp_parameters(w, n_in, n_out) - parameters))


def classify_widths(widths: list[int]) -> str:
    """Name the shape of a width list (see the module table); 'irregular' otherwise."""
    w = list(widths)
    n = len(w)
    if all(x == w[0] for x in w):
        return "rectangle"
    if all(a < b for a, b in itertools.pairwise(w)):
        return "funnel"
    if all(a > b for a, b in itertools.pairwise(w)):
        return "bottleneck"
    if n >= 3:
        mid_lo, mid_hi = (n - 1) // 2, n // 2
        left, right = w[: mid_lo + 1], w[mid_hi:]
        up_left = all(a <= b for a, b in itertools.pairwise(left))
        down_right = all(a >= b for a, b in itertools.pairwise(right))
        down_left = all(a >= b for a, b in itertools.pairwise(left))
        up_right = all(a <= b for a, b in itertools.pairwise(right))
        middle = max(w[mid_lo], w[mid_hi]), min(w[mid_lo], w[mid_hi])
        if up_left and down_right and middle[0] > max(w[0], w[-1]):
            return "diamond"
        if down_left and up_right and middle[1] < min(w[0], w[-1]):
            return "bowtie"
    # non-strict monotone patterns with a plateau (e.g. 16, 32, 32) still widen or narrow
    if all(a <= b for a, b in itertools.pairwise(w)):
        return "funnel"
    if all(a >= b for a, b in itertools.pairwise(w)):
        return "bottleneck"
    return "irregular"


def enumerate_architectures(widths: list[int], layers: list[int],
                            max_neurons: int) -> dict[str, list[list[int]]]:
    """Every width tuple from the discrete set ``widths`` (per depth) grouped by shape."""
    groups: dict[str, list[list[int]]] = {s: [] for s in SHAPES}
    for depth in layers:
        for combo in itertools.product(sorted(widths), repeat=depth):
            if sum(combo) > max_neurons:
                continue
            shape = classify_widths(list(combo))
            if shape in groups:
                groups[shape].append(list(combo))
    return groups


def activation_module(name: str):
    """A fresh torch activation module by its config name."""
    import torch.nn as nn

    table = {
        "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
        "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "silu": nn.SiLU,
    }
    try:
        return table[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(table)}") from None


def build_mlp(n_in: int, widths: list[int], n_out: int, activations: list[str]):
    """``torch.nn.Sequential``: Linear/activation per hidden layer, then a linear output."""
    import torch.nn as nn

    if len(activations) == 1:
        activations = activations * len(widths)
    if len(activations) != len(widths):
        raise ValueError(f"{len(activations)} activations for {len(widths)} hidden layers")
    layers: list = []
    prev = n_in
    for width, act in zip(widths, activations, strict=True):
        layers += [nn.Linear(prev, width), activation_module(act)]
        prev = width
    layers.append(nn.Linear(prev, n_out))
    return nn.Sequential(*layers)
