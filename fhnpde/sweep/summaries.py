"""What a sweep keeps of each member, computed on the workers: the observers that reduce
a run to its summaries (propagation, pulses, speed, arrival) or keep its fields."""

from __future__ import annotations

import math

import numpy as np


def front_summary(times: np.ndarray, reach: np.ndarray, far: float, edge: float) -> dict:
    """Arrival, propagation and speed from the farthest-peak distance ``reach(t)``.

    ``reach[k]`` is the distance from the source of the farthest pulse peak at ``times[k]``
    (NaN when there is none). ``far`` is the distance to the far end. The speed is the
    least-squares slope of reach(t) over its first passage through [far/4, 3 far/4].
    """
    times = np.asarray(times, dtype=float)
    reach = np.asarray(reach, dtype=float)
    arrived = np.flatnonzero(reach >= far - edge)
    t_arrival = float(times[arrived[0]]) if arrived.size else math.nan
    inside = (reach >= 0.25 * far) & (reach <= 0.75 * far)
    speed = math.nan
    first = np.flatnonzero(inside)
    if first.size:
        k0 = first[0]
        after = np.flatnonzero(~inside[k0:])
        k1 = k0 + (after[0] if after.size else inside.size - k0)
        if k1 - k0 >= 2:
            speed = float(np.polyfit(times[k0:k1], reach[k0:k1], 1)[0])
    return {"propagated": int(arrived.size > 0), "t_arrival": t_arrival, "speed": speed}


class CableSummary:
    """Observer: pulse peaks of every output profile -> propagation, pulses, speed."""

    def __init__(self, threshold: float, edge: float | None):
        self.threshold = threshold
        self.edge = edge
        self.times: list[float] = []
        self.reach: list[float] = []
        self.pulses = 0

    def start(self, info) -> None:
        problem = info.solver.problem
        grid = problem.grid
        self.x = np.asarray(grid.x)
        self.length = float(grid.length)
        self.periodic = grid.periodic
        self.source = self._source(problem)
        self.far = self.length / 2 if self.periodic else max(self.source,
                                                              self.length - self.source)
        if self.edge is None:
            self.edge = 0.05 * self.length

    def _source(self, problem) -> float:
        """Where the pulses start: the peak of ``v0`` when it is above the threshold, else
        the centre of the first applied-current box that is not zero, else mid-cable."""
        v0 = np.asarray(problem.v0)
        if v0.max() > self.threshold:
            return float(self.x[np.argmax(v0)])
        current = problem.current
        for amplitude, x0, x1 in zip(current.amplitude, current.x0, current.x1, strict=True):
            if amplitude != 0:
                return float(0.5 * (x0 + x1))
        return self.length / 2

    def output(self, t, state) -> None:
        from ..backends import to_numpy
        from ..plotting import pulse_positions

        peaks = pulse_positions(to_numpy(state.v), self.x, self.threshold)
        self.pulses = max(self.pulses, int(peaks.size))
        if peaks.size:
            d = np.abs(peaks - self.source)
            if self.periodic:
                d = np.minimum(d, self.length - d)
            self.reach.append(float(d.max()))
        else:
            self.reach.append(math.nan)
        self.times.append(float(t))

    def finish(self, status, stats) -> None:
        pass

    def values(self) -> dict:
        if not self.times:
            return {"propagated": 0, "pulses": 0, "speed": math.nan, "t_arrival": math.nan}
        front = front_summary(np.array(self.times), np.array(self.reach), self.far, self.edge)
        return {**front, "pulses": self.pulses}


class PointSummary:
    """Observer: upstrokes of v through ``threshold`` per cell (point cases)."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.previous = None
        self.count = None
        self.times: list[float] = []

    def start(self, info) -> None:
        pass

    def output(self, t, state) -> None:
        from ..backends import to_numpy

        v = np.atleast_1d(to_numpy(state.v))
        if self.previous is None:
            self.count = np.zeros(v.shape, dtype=np.int64)
        else:
            self.count += (self.previous <= self.threshold) & (v > self.threshold)
        self.previous = v.copy()
        self.times.append(float(t))

    def finish(self, status, stats) -> None:
        pass

    def values(self) -> dict:
        pulses = int(self.count.max()) if self.count is not None else 0
        return {"propagated": 0, "pulses": pulses, "speed": math.nan, "t_arrival": math.nan}


#: why some summaries of a sheet member are not measured (a store attribute of the sweep)
SHEET_NOTE = ("propagated, speed and t_arrival are measured from the pulse peaks along a "
              "cable; for sheet members they are not measured: speed and t_arrival are NaN, "
              "propagated is -1; pulses counts the largest number of upstrokes at one node")


class SheetSummary(PointSummary):
    """Observer for sheet members: the upstrokes of v through ``threshold`` at every node
    (``pulses``: the most at one node). The cable's front summaries (propagation to the far
    end, speed, arrival) have no single direction on a sheet: not measured
    (:data:`SHEET_NOTE`)."""

    def output(self, t, state) -> None:
        from ..backends import to_numpy

        super().output(t, type(state)(np.ravel(to_numpy(state.v)), None))

    def values(self) -> dict:
        return {**super().values(), "propagated": -1}


class FieldRecorder:
    """Observer: keeps v and w of every output of one member (for ``keep: fields``);
    ``shape`` is one output's: (nodes,), (ny, nx) or (members,)."""

    def __init__(self, n_outputs: int, shape: int | tuple[int, ...]):
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        self.v = np.full((n_outputs, *shape), np.nan)
        self.w = np.full((n_outputs, *shape), np.nan)
        self.k = 0

    def start(self, info) -> None:
        pass

    def output(self, t, state) -> None:
        from ..backends import to_numpy

        self.v[self.k] = np.reshape(to_numpy(state.v), self.v.shape[1:])
        self.w[self.k] = np.reshape(to_numpy(state.w), self.w.shape[1:])
        self.k += 1

    def finish(self, status, stats) -> None:
        pass
