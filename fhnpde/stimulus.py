"""Initial profiles and applied currents.

Applied currents are boxes: ``amplitude`` on ``x in [x0, x1]`` while ``t0 <= t < t1``; boxes
add up. On a cable each node receives the box's amplitude times the fraction of its control
volume ``[x_i - dx/2, x_i + dx/2]`` (clipped to the cable) that the box covers. This is the
cell average of the discontinuous forcing: applying the full amplitude to every node whose
position lies inside the box would misplace the box edges by up to dx/2, an O(dx) error that
makes a second-order scheme first order on stimulated cases. A box narrower than dx still
delivers its full charge, to the one or two nodes it overlaps.

On a sheet (DESIGN section 9) a box is ``x in [x0, x1]`` and ``y in [y0, y1]`` (all y when
the case gives no ``y``); a node's control volume is the product of its x and y cells, so
its weight is the product of the two coverages, and profiles and currents are arrays
``(ny, nx)``.
"""

from __future__ import annotations

import math

import numpy as np

GAUSSIAN_CUTOFF = 40.0  # exp(-40^2) = exp(-1600) is below the smallest float, 5e-324


def box_active(t, t0, t1):
    """1.0 while t0 <= t < t1 (t1 < t0 means "until the end"), else 0.0; broadcasts."""
    return 1.0 * ((t >= t0) & ((t1 < t0) | (t < t1)))


def boxes_current(t, t0, t1, amplitude):
    """Sum of the box amplitudes active at t (point models: boxes have no x extent)."""
    total = 0.0
    for k in range(t0.shape[0]):
        total += amplitude[k] * box_active(t, t0[k], t1[k])
    return total


def node_currents(t, base, masks, t0, t1, amplitude, out, scratch=None):
    """I(x_i, t) into ``out``: the steady ``base`` plus ``amplitude[k] * masks[k]`` for every
    box k active at t (``masks``: one row of node weights per box).

    ``scratch`` (shaped like ``out``) holds the products: with it, and with the copy written
    as a ufunc (numba's ``out[:] = base`` may allocate, for overlapping arrays), a compiled
    kernel allocates nothing here and can load without numba (:mod:`fhnpde.native`)."""
    np.positive(base, out)
    for k in range(t0.shape[0]):
        if box_active(t, t0[k], t1[k]) > 0.0:
            if scratch is None:
                out += amplitude[k] * masks[k]
            else:
                np.multiply(amplitude[k], masks[k], scratch)
                np.add(out, scratch, out)


def coverage(x: np.ndarray, x0: float, x1: float, periodic_length: float | None = None):
    """Fraction of each node's control volume that the interval [x0, x1] covers.

    Control volumes are ``[x_i - dx_l/2, x_i + dx_r/2]`` with the half-spacings to the
    neighbours (half cells at the ends of a cable; on a ring of circumference
    ``periodic_length`` full cells that wrap around the seam), so the weights integrate the
    box exactly: ``sum(coverage * volume) == x1 - x0`` for a box on the cable.
    A zero-width box (x0 == x1) puts its full amplitude on the node whose cell holds it.
    """
    x = np.asarray(x, dtype=np.float64)
    mid = 0.5 * (x[1:] + x[:-1])
    if periodic_length is None:
        lo = np.concatenate([[x[0]], mid])
        hi = np.concatenate([mid, [x[-1]]])
    else:
        seam = 0.5 * (x[-1] + x[0] + periodic_length)  # midpoint across the seam
        lo = np.concatenate([[seam - periodic_length], mid])
        hi = np.concatenate([mid, [seam]])
        if x1 > x0:  # count the parts of the box that wrap around the seam
            return sum(_overlap(lo, hi, x0 + k * periodic_length, x1 + k * periodic_length)
                       for k in (-1, 0, 1)) / (hi - lo)
    if x1 <= x0:  # a point: the node whose control volume holds it
        inside = (lo <= x0) & (x0 <= hi)
        first = np.flatnonzero(inside)[:1]
        out = np.zeros_like(x)
        out[first] = 1.0
        return out
    return _overlap(lo, hi, x0, x1) / (hi - lo)


def _overlap(lo, hi, x0, x1):
    return np.clip(np.minimum(hi, x1) - np.maximum(lo, x0), 0.0, None)


def _scaled_distance(x, center, width, xp=np):
    """|x - center| / width, capped at GAUSSIAN_CUTOFF (any array namespace ``xp``).

    It may overflow (a very narrow or far pulse): it is then inf, and beyond GAUSSIAN_CUTOFF
    exp(-z^2) is 0 in double precision anyway, so z is capped there and nothing overflows.
    """
    with np.errstate(over="ignore"):
        z = xp.abs(x - center) / width
    return xp.minimum(z, GAUSSIAN_CUTOFF)


def gaussian_pulse(x, center, width, amplitude, base, xp=np):
    """``base + amplitude exp(-((x - center) / width)^2)`` on nodes x (any array namespace;
    the numbers may be arrays of it, e.g. torch tensors to differentiate)."""
    return base + amplitude * xp.exp(-(_scaled_distance(x, center, width, xp) ** 2))


def gaussian_sheet_pulse(x, y, center, width, amplitude, base, xp=np):
    """``base + amplitude exp(-((x - cx) / wx)^2 - ((y - cy) / wy)^2)`` on the sheet of nodes
    ``(y, x)`` (an array ``(ny, nx)``; ``center = (cx, cy)``, ``width = (wx, wy)``; any array
    namespace, the numbers may be its arrays, e.g. torch tensors to differentiate)."""
    zx = _scaled_distance(x, center[0], width[0], xp)
    zy = _scaled_distance(y, center[1], width[1], xp)
    return base + amplitude * xp.exp(-(zy[:, None] ** 2 + zx[None, :] ** 2))


def box_pulse(inside, amplitude, base, xp=np):
    """``base + amplitude`` where ``inside`` (a boolean array over the nodes), else ``base``."""
    return xp.where(inside, base + amplitude, base)


def profile(spec, x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """An initial profile on nodes x (a cable) or on the sheet of nodes ``(y, x)`` (an array
    ``(ny, nx)``) from a case's ``initial.v`` / ``initial.w`` entry."""
    if y is not None:
        shape = (np.size(y), np.size(x))
        if isinstance(spec, float | int) or not (spec.kind == "box" and spec.y is not None
                                                 or isinstance(getattr(spec, "center", 0), list)):
            # a number, or a profile of x alone: the cable's profile on every row
            return np.ascontiguousarray(np.broadcast_to(profile(spec, x), shape))
        if spec.kind == "gaussian":
            width = spec.width if isinstance(spec.width, list) else (spec.width, spec.width)
            return gaussian_sheet_pulse(np.asarray(x), np.asarray(y), spec.center, width,
                                        spec.amplitude, spec.base)
        inside = (((x >= spec.x[0]) & (x <= spec.x[1]))[None, :]
                  & ((y >= spec.y[0]) & (y <= spec.y[1]))[:, None])
        return np.where(inside, spec.base + spec.amplitude, spec.base).astype(np.float64)
    if isinstance(spec, float | int):
        return np.full_like(x, float(spec), dtype=np.float64)
    if spec.kind == "gaussian":
        return gaussian_pulse(x, spec.center, spec.width, spec.amplitude, spec.base)
    if spec.kind == "box":
        inside = (x >= spec.x[0]) & (x <= spec.x[1])
        return box_pulse(inside, spec.amplitude, spec.base).astype(np.float64)
    raise ValueError(f"unknown initial profile kind {spec.kind!r}")


class AppliedCurrent:
    """I(x, t) (cable), I(x, y, t) (sheet, with ``y``) or I(t) per member (point model) from
    a case's stimuli.

    ``base`` is a steady current (a point ensemble's per-member ``I``); ``current(t)``
    returns an array that is reused while the set of active boxes does not change, so the
    time loop allocates nothing. Each box is ``amplitude[k]`` on ``[x0[k], x1[k]]`` (NaN
    for a point model's boxes, which have no extent) while ``t0[k] <= t < t1[k]``.
    """

    def __init__(self, stimuli, x: np.ndarray | None, base, size: int,
                 periodic_length: float | None = None, y: np.ndarray | None = None,
                 y_periodic_length: float | None = None):
        self.size = size
        #: the shape of the current: (size,), or (ny, nx) on a sheet
        self.shape = (np.size(y), np.size(x)) if y is not None else (size,)
        self.t0 = np.array([s.t[0] for s in stimuli], dtype=np.float64)
        self.t1 = np.array(
            [s.t[1] if s.t[1] is not None else -math.inf for s in stimuli], dtype=np.float64
        )
        self.amplitude = np.array([s.amplitude for s in stimuli], dtype=np.float64)
        extents = [s.x if s.x is not None else (math.nan, math.nan) for s in stimuli]
        self.x0 = np.array([e[0] for e in extents], dtype=np.float64)
        self.x1 = np.array([e[1] for e in extents], dtype=np.float64)
        if y is not None:  # a sheet: each node's cell is the product of its x and y cells
            self.masks = [np.outer(np.ones(np.size(y)) if s.y is None
                                   else coverage(y, s.y[0], s.y[1], y_periodic_length),
                                   coverage(x, s.x[0], s.x[1], periodic_length))
                          for s in stimuli]
        elif x is not None:
            self.masks = [coverage(x, s.x[0], s.x[1], periodic_length) for s in stimuli]
        else:
            self.masks = [np.ones(size) for _ in stimuli]
        self.base = np.broadcast_to(np.asarray(base, dtype=np.float64), self.shape).copy()
        # the masks as one C-contiguous (boxes, *shape) array, as the kernels take them
        self.mask_rows = (np.ascontiguousarray(np.stack(self.masks)) if self.masks
                          else np.zeros((0, *self.shape)))
        self._key: tuple | None = None
        self._value = self.base

    def active(self, t: float) -> tuple[bool, ...]:
        return tuple(
            bool(box_active(t, a, b)) for a, b in zip(self.t0, self.t1, strict=True)
        )

    def segments(self, t: float, dt: float, nsteps: int) -> list[tuple[int, int]]:
        """(first step, number of steps) of the runs of steps t + i dt, i < nsteps, over
        which the set of active boxes, and so ``current``, does not change.

        A box can switch only at the first step at or after its t0 or its t1 (the step times
        t + i dt increase with i), so only those steps are examined, each found by bisection
        on the very expression the time loop evaluates: the cost is O(boxes log nsteps)
        whatever the number of steps (a run of 5e9 steps between outputs is fine)."""
        if self.t0.size == 0 or nsteps <= 1:
            return [(0, nsteps)]

        def time(i: int) -> float:
            return t + float(i) * dt

        def first_at_or_after(bound: float) -> int:
            lo, hi = 0, nsteps
            while lo < hi:
                mid = (lo + hi) // 2
                if time(mid) >= bound:
                    hi = mid
                else:
                    lo = mid + 1
            return lo

        candidates = set()
        for t0, t1 in zip(self.t0, self.t1, strict=True):
            for bound in (t0, t1) if t1 >= t0 else (t0,):
                i = first_at_or_after(bound)
                if 0 < i < nsteps:
                    candidates.add(i)
        change = [i for i in sorted(candidates)
                  if np.any(box_active(time(i), self.t0, self.t1)
                            != box_active(time(i - 1), self.t0, self.t1))]
        bounds = [0, *change, nsteps]
        return [(a, b - a) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def current(self, t: float) -> np.ndarray:
        key = self.active(t)
        if key != self._key:
            value = np.empty(self.shape)
            node_currents(t, self.base, self.mask_rows, self.t0, self.t1, self.amplitude, value)
            self._key, self._value = key, value
        return self._value
