"""Parameter sweeps: many runs of one case, one dask task per member, one zarr store.

A sweep file names a base case and what to vary, with the key paths of ``--set``::

    name: sweep_threshold
    base: divergent.yaml             # a case file (relative to this file) or an inline case
    set: {time.t_end: 200.0}         # fixed overrides for every member (optional)
    sample: grid                     # grid | latin-hypercube | uniform
    vary:
      model.params.a: {values: [0.05, 0.1, 0.15]}   # listed values
      initial.v.amplitude: [0.1, 0.6]               # a range: `points` values (grid) or samples
    points: 11                       # grid only: values per range
    size: 100                        # latin-hypercube / uniform: number of members
    seed: 0
    keep: summary                    # summary | fields (v, w of every member: big)
    summary: {threshold: 0.3, edge: null}
    output: {path: runs/sweep_threshold.zarr}

Every member is built and checked (schema, stability limit) before anything runs; one bad
key or value fails the whole sweep with one :class:`~fhnpde.case.CaseError` (exit 2).

The store (``xarray.open_zarr``) has a ``member`` dimension whose coordinates are the
varied values (one coordinate per key path, named by it). Per-member variables, computed
on the workers:

- ``status`` (int8): 0 pending, 1 complete, 2 failed (a numerical failure, e.g. blow-up);
  written last, so it is the member's completion flag;
- ``propagated`` (int8, cables): 1 if a pulse peak came within ``edge`` of the far end,
  i.e. reached the distance :math:`s_{far}` from the source, where for a no-flux cable of
  length L with source at :math:`x_s`, :math:`s_{far} = \\max(x_s, L - x_s)` (both ends
  when the source is central) and on a ring :math:`s_{far} = L/2`;
- ``pulses``: the largest number of pulse peaks seen in one profile (cables), or the
  largest number of upstrokes of v through ``threshold`` of any cell (point cases);
- ``speed``: conduction speed, the least-squares slope of :math:`d(t)`, the distance from
  the source of the farthest peak, over the first passage of :math:`d` through
  :math:`[s_{far}/4,\\ 3 s_{far}/4]` (away from initiation and from the wall); NaN when the
  pulse never crossed that window or crossed it within fewer than two outputs;
- ``t_arrival``: first output time at which :math:`d \\ge s_{far} - edge` (NaN if never);
- ``t_reached``, ``steps``, ``wall_time_s``: how far and how fast the member ran;
- ``v``, ``w`` over ``(member, time, x)`` (cables), ``(member, time, y, x)`` (sheets) or
  ``(member, time, cell)`` (point cases), only with ``keep: fields``.

Sheet members: a front on a sheet has no one direction and far end, so ``propagated``,
``speed`` and ``t_arrival`` are not measured (-1, NaN, NaN; the store's ``summaries_note``
says so) and ``pulses`` counts the upstrokes of the node with the most, as for point cases.

The source is the position of the largest initial v when it exceeds ``threshold``, else
the centre of the first stimulus box, else the cable's centre. Peaks are those of
:func:`fhnpde.plotting.pulse_positions` (the largest node of each run of nodes above
``threshold``); ``edge`` defaults to 5 % of the cable's length.

Writing: the client writes a template (``to_zarr(compute=False)``: metadata and
coordinates only, chunk size 1 along ``member``); each task writes only its member's
region (``region=``), so no two workers touch the same chunk, then its ``status``.
A rerun into the same store skips members whose status is not 0, and a store that holds a
different sweep is refused unless ``--overwrite``.
"""

from __future__ import annotations

from .run import SweepResult, run_member, run_sweep, sweep_command, warm_worker
from .spec import MAX_MEMBERS, Sweep, SweepSpec, describe_member, load_sweep
from .store import (
    STATUS_CODES,
    SUMMARY_VARIABLES,
    check_store,
    member_statuses,
    open_attrs,
    prepare_store,
    write_template,
)
from .summaries import CableSummary, FieldRecorder, PointSummary, front_summary

__all__ = [
    "MAX_MEMBERS",
    "STATUS_CODES",
    "SUMMARY_VARIABLES",
    "CableSummary",
    "FieldRecorder",
    "PointSummary",
    "Sweep",
    "SweepResult",
    "SweepSpec",
    "check_store",
    "describe_member",
    "front_summary",
    "load_sweep",
    "member_statuses",
    "open_attrs",
    "prepare_store",
    "run_member",
    "run_sweep",
    "sweep_command",
    "warm_worker",
    "write_template",
]
