"""Choosing the active nodes of the adaptive-grid solver (the rules of
:mod:`fhnpde.solvers.adaptive`), in two forms that choose the same nodes.

- The sequential form (:func:`select_active`, :func:`balance_strides`,
  :func:`grade_active`): loops over nodes, compiled by numba for the numba backend
  (:mod:`fhnpde.solvers.adaptive_numba`).
- The array form (:func:`select_active_array`, :func:`balance_strides_array`,
  :func:`grade_active_array`): whole-array operations of the array API standard (``sort``,
  ``searchsorted``, ``nonzero``, ``take``, boolean masks) on any namespace ``xp``, for the
  array path (numpy, cupy, torch). Its shapes depend on the data (the active set), which the
  standard allows and ``array_api_strict`` permits with its default flags
  (``data_dependent_shapes``, ``boolean_indexing``).

Why two: the sequential form cannot run on a GPU namespace, and the array form on numpy
costs about ten times the compiled loop per choice (median 0.43 ms against 0.04 ms on the
3,201-node base grid of ``cases/divergent_adaptive.yaml``), which over its 1,499 choices
would add 0.6 s to the numba run's 0.4 s. Both compute the per-node quantities with the same
formulas (:mod:`fhnpde.nonuniform`, :mod:`fhnpde.models`), and ``tests/test_adaptive.py``
checks that they choose the same nodes (random strides and active sets, and every choice of
adapting runs).

The array form turns each "refine the base nodes ``lo..hi``" of the loops into one question
about a union of integer intervals ``[lo_j, hi_j]`` (:func:`covered_nodes`): base node ``i``
lies in one of them exactly when more of them start at or before ``i`` than end before it,
``#{j: lo_j <= i} > #{j: hi_j < i}`` (each interval ending before ``i`` also starts before
it), two ``searchsorted`` counts on the sorted ends. On a ring the node's images ``i - n``
and ``i + n`` are asked too (an interval as long as the ring covers all of it). Grading by
levels (:func:`balance_strides`) is such a union per level: the nodes within the band of a
node of that level or finer.
"""

from __future__ import annotations

import numpy as np

from .backends import device_of
from .grid import neighbours_through_ghosts
from .models import reaction_by_code
from .nonuniform import first_derivative, second_derivative

GRADING_RATIO = 2
ZONE_WIDTH = 2  # a flagged node refines this many of its level's strides to either side
BAND_WIDTH = 2  # each level is ringed by this many strides of the next coarser level


# --- the sequential form (compiled by numba) ---------------------------------------------


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
    current ``current``): the four rules of :mod:`fhnpde.solvers.adaptive`, graded by
    :func:`balance_strides` and :func:`grade_active`. Compiled by numba for that backend."""
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


# --- the array form (any array-API namespace) ---------------------------------------------


def covered_nodes(lo, hi, n, periodic, xp):
    """Boolean mask of the base nodes ``0..n-1`` that lie in at least one of the integer
    intervals ``[lo_j, hi_j]`` (``lo_j <= hi_j``): clipped to a cable, wrapped around a ring
    (the array form of :func:`cover_range`)."""
    base = xp.arange(n, device=device_of(lo))
    positions = xp.concat([base - n, base, base + n]) if periodic else base
    inside = (xp.searchsorted(xp.sort(lo), positions, side="right")
              > xp.searchsorted(xp.sort(hi), positions, side="left"))
    if not periodic:
        return inside
    whole_ring = xp.any(hi - lo >= n)
    return inside[:n] | inside[n : 2 * n] | inside[2 * n :] | whole_ring


def member_mask(values, n, xp):
    """Boolean mask of the base nodes ``0..n-1`` that occur in the sorted integer array
    ``values`` (the active mask of an index array)."""
    base = xp.arange(n, device=device_of(values))
    if values.shape[0] == 0:
        return base < 0
    pos = xp.clip(xp.searchsorted(values, base), max=values.shape[0] - 1)
    return xp.take(values, pos) == base


def balance_strides_array(need, coarse_stride, n, periodic, xp):
    """:func:`balance_strides` on arrays: level by level from the finest, every base node
    within ``BAND_WIDTH * 2s`` nodes of a node needing stride ``s`` or less gets a stride of
    at most ``2s``. Returns the graded strides."""
    s = 1
    while s < coarse_stride:
        level = xp.nonzero(need <= s)[0]
        reach = BAND_WIDTH * 2 * s
        near = covered_nodes(level - reach, level + reach, n, periodic, xp)
        need = xp.where(near, xp.minimum(need, 2 * s), need)
        s *= 2
    return need


def grade_active_array(active, n, periodic, xp):
    """:func:`grade_active` on arrays: each pass splits, at its base-node midpoint, every
    interval longer than ``GRADING_RATIO`` times a neighbouring one (all offending intervals
    of a pass at once, as the loop does). Returns the graded mask."""
    while True:
        index = xp.nonzero(active)[0]
        if periodic:
            gaps = xp.roll(index, -1) - index
            gaps = xp.where(gaps <= 0, gaps + n, gaps)  # the interval across x = 0
            before, after = xp.roll(gaps, 1), xp.roll(gaps, -1)
        else:
            gaps = index[1:] - index[:-1]
            index = index[:-1]
            none = xp.full((1,), n, dtype=gaps.dtype, device=device_of(gaps))
            before, after = xp.concat([none, gaps[:-1]]), xp.concat([gaps[1:], none])
        split = gaps > GRADING_RATIO * xp.minimum(xp.minimum(before, after), n)
        if not bool(xp.any(split)):
            return active
        middles = xp.sort((index[split] + gaps[split] // 2) % n)
        active = active | member_mask(middles, n, xp)


def _node_rates(v, w, current, h_left, h_right, g0, gn, code, p, diffusivity, xp):
    """``(v_x, v_xx, v_t)`` at every active node, as :func:`select_active` computes them
    node by node (the neighbours and the reaction's temporaries are freed on return)."""
    left, right = neighbours_through_ghosts(v, (g0, gn), xp)
    vx = first_derivative(left, v, right, h_left, h_right)
    vxx = second_derivative(left, v, right, h_left, h_right)
    dv, _ = reaction_by_code(code, v, w, current, p)
    return vx, vxx, diffusivity * vxx + dv


def select_active_array(index, v, w, current, h_left, h_right, g0, gn, code, p, diffusivity,
                        dx, n, periodic, coarse_stride, wave_stride, fine_stride, vx_threshold,
                        vt_threshold, front_radius, xp):
    """:func:`select_active` as array code on the namespace ``xp`` (the arguments are arrays
    of ``xp``, the same numbers as there): sorted base indices of the next active set."""
    vx, vxx, vt = _node_rates(v, w, current, h_left, h_right, g0, gn, code, p, diffusivity,
                              xp)
    steep = xp.abs(vx) > vx_threshold
    changing = xp.abs(vt) > vt_threshold
    del vx, vt  # on a cable of every node active, each array freed early lowers the peak
    need = xp.full((n,), coarse_stride, dtype=xp.int64, device=device_of(index))
    for flagged, stride in ((steep, wave_stride), (changing, fine_stride)):
        centres = index[flagged]
        reach = ZONE_WIDTH * stride
        zones = covered_nodes(centres - reach, centres + reach, n, periodic, xp)
        need = xp.where(zones, xp.minimum(need, stride), need)
    # inflections: a sign change of v_xx from node j to the next (across x = 0 on a ring)
    moving = steep & changing
    following = xp.roll(vxx, -1)
    front = (vxx * following < 0.0) & (moving | xp.roll(moving, -1))
    if not periodic:
        front = front & (xp.arange(index.shape[0], device=device_of(index)) < index.shape[0] - 1)
    c, d = vxx[front], following[front]
    x0 = xp.astype(index[front], xp.float64) * dx + h_right[front] * c / (c - d)
    centre = xp.astype(xp.floor(x0 / dx + 0.5), xp.int64)
    lo = xp.minimum(xp.astype(xp.ceil((x0 - front_radius) / dx - 1e-9), xp.int64), centre)
    hi = xp.maximum(xp.astype(xp.floor((x0 + front_radius) / dx + 1e-9), xp.int64), centre)
    need = xp.where(covered_nodes(lo, hi, n, periodic, xp), 1, need)
    need = balance_strides_array(need, coarse_stride, n, periodic, xp)
    base = xp.arange(n, device=device_of(index))
    active = xp.bitwise_and(base, need - 1) == 0  # i is a multiple of its power-of-two stride
    if not periodic:
        active = active | (base == n - 1)
    return xp.nonzero(grade_active_array(active, n, periodic, xp))[0]
