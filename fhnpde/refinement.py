"""Choosing the active nodes of the adaptive-grid solver (the rules of
:mod:`fhnpde.solvers.adaptive`).

Plain Python on arrays: the numpy path calls :func:`select_active` as it is, and the numba
path compiles the same function (:mod:`fhnpde.solvers.adaptive_numba`).
"""

from __future__ import annotations

import numpy as np

from .models import reaction_by_code
from .nonuniform import first_derivative, second_derivative

GRADING_RATIO = 2
ZONE_WIDTH = 2  # a flagged node refines this many of its level's strides to either side
BAND_WIDTH = 2  # each level is ringed by this many strides of the next coarser level


def cover_range(need, lo, hi, stride, n, periodic):
    """Lower the required stride ``need[i]`` to ``stride`` on base indices ``lo..hi``:
    clipped to the cable, or wrapped around a ring."""
    if periodic:
        if hi - lo >= n:
            lo, hi = 0, n - 1
        for k in range(lo, hi + 1):
            i = k % n
            if stride < need[i]:
                need[i] = stride
    else:
        for i in range(max(lo, 0), min(hi, n - 1) + 1):
            if stride < need[i]:
                need[i] = stride


def balance_strides(need, coarse_stride, n, periodic):
    """Grade the required strides: every base node within ``BAND_WIDTH * 2s`` nodes of a
    node needing stride ``s`` gets a stride of at most ``2s``, from the finest level up.

    With power-of-two strides and nodes on multiples of their stride, neighbouring
    intervals then differ by at most a factor of two. (Two sweeps per level; a ring is
    swept twice around so that reach carries across ``x = 0``.)
    """
    laps = 2 if periodic else 1
    s = 1
    while s < coarse_stride:
        reach = BAND_WIDTH * 2 * s
        cap = 2 * s
        last = -4 * n  # unrolled position of the last node seen with need <= s
        for lap in range(laps):  # left to right
            base = lap * n
            for i in range(n):
                if need[i] <= s:
                    last = base + i
                elif base + i - last <= reach and need[i] > cap:
                    need[i] = cap
        last = 8 * n
        for lap in range(laps):  # right to left
            base = (laps - 1 - lap) * n
            for i in range(n - 1, -1, -1):
                if need[i] <= s:
                    last = base + i
                elif last - base - i <= reach and need[i] > cap:
                    need[i] = cap
        s *= 2


def grade_active(active, n, periodic):
    """Add base nodes to the boolean ``active`` until no interval is longer than
    ``GRADING_RATIO`` times a neighbouring interval (a 2:1 balanced grid).

    After :func:`balance_strides` this acts only next to an end of the cable that is not
    a multiple of the coarse stride. Each pass splits every offending interval at its
    (base-node) midpoint; an interval of length ``d > 2 d_min >= 2`` always has one, so the
    passes end.
    """
    changed = True
    while changed:
        changed = False
        index = np.nonzero(active)[0]
        m = index.shape[0]
        count = m if periodic else m - 1
        gaps = np.empty(count, dtype=np.int64)
        for j in range(count):
            nxt = index[j + 1] if j + 1 < m else index[0] + n
            gaps[j] = nxt - index[j]
        for j in range(count):
            nb = n
            if j > 0 or periodic:
                nb = min(nb, gaps[j - 1])
            if j < count - 1 or periodic:
                nb = min(nb, gaps[(j + 1) % count])
            if gaps[j] > GRADING_RATIO * nb:
                active[(index[j] + gaps[j] // 2) % n] = True
                changed = True


def select_active(index, v, w, current, h_left, h_right, g0, gn, code, p, diffusivity, dx, n,
                  periodic, coarse_stride, wave_stride, fine_stride, vx_threshold,
                  vt_threshold, front_radius):
    """Sorted base indices of the next active set, from ``v``, ``w`` on the active nodes
    ``index`` (spacings ``h_left``/``h_right``, ghost indices ``g0``/``gn``, applied
    current ``current``): the four rules of the module docstring, graded by
    :func:`balance_strides` and :func:`grade_active`. Plain Python on arrays, compiled by
    numba for that backend."""
    m = index.shape[0]
    need = np.full(n, coarse_stride, dtype=np.int64)  # required stride at each base node
    vx = np.empty(m)
    vxx = np.empty(m)
    moving = np.empty(m, dtype=np.bool_)  # steep and changing: where a front can be
    for j in range(m):
        left = v[j - 1] if j > 0 else v[g0]
        right = v[j + 1] if j < m - 1 else v[gn]
        vx[j] = first_derivative(left, v[j], right, h_left[j], h_right[j])
        vxx[j] = second_derivative(left, v[j], right, h_left[j], h_right[j])
        dv, _ = reaction_by_code(code, v[j], w[j], current[j], p)
        vt = diffusivity * vxx[j] + dv
        moving[j] = abs(vx[j]) > vx_threshold and abs(vt) > vt_threshold
        if abs(vx[j]) > vx_threshold:
            reach = ZONE_WIDTH * wave_stride
            cover_range(need, index[j] - reach, index[j] + reach, wave_stride, n, periodic)
        if abs(vt) > vt_threshold:
            reach = ZONE_WIDTH * fine_stride
            cover_range(need, index[j] - reach, index[j] + reach, fine_stride, n, periodic)
    pairs = m if periodic else m - 1
    for j in range(pairs):
        k = (j + 1) % m
        c = vxx[j]
        d = vxx[k]
        if c * d < 0.0 and (moving[j] or moving[k]):
            x0 = index[j] * dx + h_right[j] * c / (c - d)
            centre = int(np.floor(x0 / dx + 0.5))
            lo = min(int(np.ceil((x0 - front_radius) / dx - 1e-9)), centre)
            hi = max(int(np.floor((x0 + front_radius) / dx + 1e-9)), centre)
            cover_range(need, lo, hi, 1, n, periodic)
    balance_strides(need, coarse_stride, n, periodic)
    active = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        active[i] = (i & (need[i] - 1)) == 0  # i is a multiple of its power-of-two stride
    active[n - 1] = active[n - 1] or not periodic
    grade_active(active, n, periodic)
    return np.nonzero(active)[0]
