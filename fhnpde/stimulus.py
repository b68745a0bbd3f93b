"""Initial profiles and applied currents.

Applied currents are boxes: ``amplitude`` on ``x in [x0, x1]`` (both ends included, so a box
narrower than dx still hits the nearest node) while ``t0 <= t < t1``; boxes add up.
"""

from __future__ import annotations

import math

import numpy as np


def box_active(t, t0, t1):
    """1.0 while t0 <= t < t1 (t1 < 0 or inf means "until the end"), else 0.0."""
    return 1.0 if (t >= t0 and (t1 < t0 or t < t1)) else 0.0


def boxes_current(t, t0, t1, amplitude):
    """Sum of the box amplitudes active at t (point models: boxes have no x extent)."""
    total = 0.0
    for k in range(t0.shape[0]):
        total += amplitude[k] * box_active(t, t0[k], t1[k])
    return total


def profile(spec, x: np.ndarray) -> np.ndarray:
    """An initial profile on nodes x from a case's ``initial.v`` / ``initial.w`` entry."""
    if isinstance(spec, float | int):
        return np.full_like(x, float(spec), dtype=np.float64)
    if spec.kind == "gaussian":
        return spec.base + spec.amplitude * np.exp(-(((x - spec.center) / spec.width) ** 2))
    if spec.kind == "box":
        inside = (x >= spec.x[0]) & (x <= spec.x[1])
        return np.where(inside, spec.base + spec.amplitude, spec.base).astype(np.float64)
    raise ValueError(f"unknown initial profile kind {spec.kind!r}")


class AppliedCurrent:
    """I(x, t) (cable) or I(t) per member (point model) from a case's stimuli.

    ``base`` is a steady current (a point ensemble's per-member ``I``); ``current(t)``
    returns an array that is reused while the set of active boxes does not change, so the
    time loop allocates nothing.
    """

    def __init__(self, stimuli, x: np.ndarray | None, base, size: int):
        self.size = size
        self.t0 = np.array([s.t[0] for s in stimuli], dtype=np.float64)
        self.t1 = np.array(
            [s.t[1] if s.t[1] is not None else -math.inf for s in stimuli], dtype=np.float64
        )
        self.amplitude = np.array([s.amplitude for s in stimuli], dtype=np.float64)
        if x is not None:
            self.masks = [((x >= s.x[0]) & (x <= s.x[1])).astype(np.float64) for s in stimuli]
        else:
            self.masks = [np.ones(size) for _ in stimuli]
        self.base = np.broadcast_to(np.asarray(base, dtype=np.float64), (size,)).copy()
        self._key: tuple | None = None
        self._value = self.base

    @property
    def steady(self) -> bool:
        """True when I does not depend on t (no boxes that switch on or off)."""
        return all(t0 <= 0.0 and t1 < t0 for t0, t1 in zip(self.t0, self.t1, strict=True))

    def active(self, t: float) -> tuple[bool, ...]:
        return tuple(
            bool(box_active(t, a, b)) for a, b in zip(self.t0, self.t1, strict=True)
        )

    def current(self, t: float) -> np.ndarray:
        key = self.active(t)
        if key != self._key:
            value = self.base.copy()
            for on, amp, mask in zip(key, self.amplitude, self.masks, strict=True):
                if on:
                    value += amp * mask
            self._key, self._value = key, value
        return self._value
