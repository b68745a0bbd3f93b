"""Does a neural reaction keep the wave? A whole run compared with the exact reaction.

A surrogate that is accurate for one step can still lose a travelling pulse over hundreds
of steps (a pulse near propagation failure amplifies any bias in the upstroke). This module
compares two cable runs of the same case, one with ``reaction.kind: neural`` and one with
the exact reaction, on the quantities a user reads off a wave:

``activation time``
    per node, the first time v crosses ``threshold`` (0.5) upwards, linearly interpolated
    between outputs; ``inf`` where it never does.
``pulses``
    how many pulses pass the last node over the whole run (an impulse train's later pulses
    too), which must be the same;
``peak``
    per output time, the largest v on the cable, compared at every output until the exact
    wave has arrived at the last node that it activates (``until``); relative to the exact
    peak, or to the threshold while the exact peak is below it (a cable still at rest).

:func:`wave_agreement` returns the worst relative differences; :func:`check_wave` runs both
reactions of a case through :func:`fhnpde.solve` and reports. The figures the tests and the
README state come from here (``python -m surrogates wave CASE [--set KEY=VALUE]``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

THRESHOLD = 0.5


def activation_times(t: np.ndarray, v: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """First upward crossing of ``threshold`` at every node of ``v`` (time, node).

    Linear interpolation between the two outputs around the crossing; 0 where the node starts
    at or above the threshold, ``inf`` where it never reaches it.
    """
    t = np.asarray(t, dtype=float)
    v = np.asarray(v, dtype=float)
    above = v >= threshold
    first = np.argmax(above, axis=0)
    reached = above.any(axis=0)
    out = np.full(v.shape[1], np.inf)
    nodes = np.nonzero(reached)[0]
    k = first[nodes]
    at_start = k == 0
    out[nodes[at_start]] = t[0]
    nodes, k = nodes[~at_start], k[~at_start]
    v0, v1 = v[k - 1, nodes], v[k, nodes]
    out[nodes] = t[k - 1] + (threshold - v0) / (v1 - v0) * (t[k] - t[k - 1])
    return out


@dataclass(frozen=True)
class WaveAgreement:
    """Worst differences between a run and its reference (relative, all nodes / outputs)."""

    activated_nodes: int            # nodes the reference activates
    missed_nodes: int               # of those, nodes the run never activates
    extra_nodes: int                # nodes the run activates and the reference does not
    activation_rel: float           # max |t_run - t_ref| / t_ref over activated nodes, t_ref > 0
    activation_abs: float           # max |t_run - t_ref| over activated nodes
    peak_rel: float                 # max |peak_run - peak_ref| / peak_ref until arrival
    until: float                    # the last reference activation time (arrival)
    reaches_ends: bool              # the run activates the first and last node
    pulses: tuple[int, int]         # upward crossings at the last node: (run, reference)

    def ok(self, activation: float = 0.01, peak: float = 0.03) -> bool:
        """Every node the reference activates is activated, within ``activation`` (relative)
        of its time, and the peak within ``peak`` until arrival."""
        return (self.missed_nodes == 0 and self.extra_nodes == 0
                and self.pulses[0] == self.pulses[1]
                and self.activation_rel <= activation and self.peak_rel <= peak)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def wave_agreement(t: np.ndarray, v_run: np.ndarray, v_ref: np.ndarray,
                   threshold: float = THRESHOLD) -> WaveAgreement:
    """Compare ``v_run`` with ``v_ref`` (both (time, node) on the same outputs ``t``)."""
    t = np.asarray(t, dtype=float)
    a_run = activation_times(t, v_run, threshold)
    a_ref = activation_times(t, v_ref, threshold)
    ref_on, run_on = np.isfinite(a_ref), np.isfinite(a_run)
    both = ref_on & run_on
    diff = np.abs(a_run[both] - a_ref[both])
    positive = a_ref[both] > 0
    rel = diff[positive] / a_ref[both][positive]
    until = float(a_ref[ref_on].max()) if ref_on.any() else float(t[-1])
    upto = t <= until
    peak_ref = np.max(v_ref[upto], axis=1)
    peak_run = np.max(v_run[upto], axis=1)
    peak_rel = np.abs(peak_run - peak_ref) / np.maximum(np.abs(peak_ref), threshold)
    return WaveAgreement(
        activated_nodes=int(ref_on.sum()),
        missed_nodes=int((ref_on & ~run_on).sum()),
        extra_nodes=int((run_on & ~ref_on).sum()),
        activation_rel=float(rel.max()) if rel.size else 0.0,
        activation_abs=float(diff.max()) if diff.size else 0.0,
        peak_rel=float(peak_rel.max()),
        until=until,
        reaches_ends=bool(run_on[0] and run_on[-1]),
        pulses=(upward_crossings(v_run[:, -1], threshold),
                upward_crossings(v_ref[:, -1], threshold)),
    )


def upward_crossings(series: np.ndarray, threshold: float = THRESHOLD) -> int:
    """How many times ``series`` rises through ``threshold`` (pulses passing a node)."""
    above = np.asarray(series) >= threshold
    return int(np.count_nonzero(above[1:] & ~above[:-1]))


#: RK4 substeps per step of the exact twin: h = 0.01 at dt = 1, the step of the data solver
#: the shipped models learn from (surrogates/configs/itnn_cable.yaml)
SUBSTEPS = 100




def check_wave(case, *, t_end: float | None = None, substeps: int = SUBSTEPS,
               changes: dict[str, Any] | None = None) -> tuple[WaveAgreement, Any, Any]:
    """Run ``case`` (a neural-reaction case, with ``changes`` applied) and its exact twin in
    memory; compare them."""
    from fhnpde import solve
    from fhnpde.api import as_case

    from .cable import exact_case

    case = as_case(case).with_changes(dict(changes or {}))
    if case.reaction.kind != "neural":
        from fhnpde.errors import CaseError

        raise CaseError(f"is {case.reaction.kind!r}; the wave check compares a neural reaction "
                        "with the exact one: give a case with reaction.kind: neural",
                        key="reaction.kind")
    if t_end is not None:
        case = case.with_changes({"time.t_end": float(t_end)})
    run = solve(case)
    ref = solve(exact_case(case, substeps))
    agreement = wave_agreement(run["time"].values, run["v"].values, ref["v"].values)
    return agreement, run, ref


def report(name: str, agreement: WaveAgreement) -> str:
    """Two lines a user reads: what was compared and how close it came."""
    a = agreement
    verdict = "keeps the wave" if a.ok() else "does NOT keep the wave"
    return (f"{name}: {verdict} (limits: activation 1 %, peak 3 %)\n"
            f"  activation time: worst {100 * a.activation_rel:.3g} % ({a.activation_abs:.3g} "
            f"time units) over {a.activated_nodes} nodes, {a.missed_nodes} missed, "
            f"{a.extra_nodes} extra; peak of v: worst {100 * a.peak_rel:.3g} % until t = "
            f"{a.until:.4g}; reaches both ends: {'yes' if a.reaches_ends else 'no'}; pulses "
            f"at the last node: {a.pulses[0]} (exact {a.pulses[1]})")
