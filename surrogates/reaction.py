"""NeuralReaction: a trained one-step model (ITNN) as fhnpde's reaction step.

A case selects it with ``reaction: {kind: neural, model: PATH, runtime: onnxruntime}``
(split solver only); fhnpde's reaction registry imports this module then, and calls
:meth:`NeuralReaction.from_spec`. Each Strang step then advances every node's reaction by

.. math::

    (v, w)^{n+1} = \\mathcal{N}(v^n, w^n, I(x, t + \\Delta t/2)),\\qquad \\Delta t = dt_r

with ONE batched model call for all nodes: the nodes' ``(v, w, I)`` (and the values of any
kinetics parameters the model takes as inputs, e.g. ``a``) are packed into one ``(n, n_in)``
float32 array, the runtime (:mod:`surrogates.runtime`: ``torch``,
``onnxruntime``, ``tensorrt``) maps it to ``(n, 2)``, and the columns come back as float64.
With ``solver.backend: cupy`` the arrays stay on the GPU (packing is a device kernel, and
the runtime reads and writes device memory); with ``numpy``/``numba`` they are host arrays.

``PATH`` is a model directory (or a file in it: ``model.onnx``, ``model-fp16.onnx``,
``model.engine``); a relative path is read from the **current directory**, like the case's
``output.path`` and the surrogate configs' paths (run from the repository root).

The model must match the case, else :class:`fhnpde.case.CaseError` (exit status 2) with one
sentence naming the key: ``model.kinetics`` and ``model.params`` (the kinetics it was trained
on; a parameter the model takes as an input must lie in its trained range), ``time.dt``
(must equal the model's ``dt_r``), ``stimuli`` (a model trained at one fixed current cannot
take others), ``reaction.model`` (missing or not a one-step model),
``reaction.runtime``, ``solver.backend`` (tensorrt needs the GPU state of ``cupy``).
The model's files are not trusted either (:mod:`surrogates.runtime`): a ``model.json`` that
breaks its schema, weights that do not fit the architecture it declares, a ``model.pt`` that
``torch.load(weights_only=True)`` refuses, an ONNX file or engine whose inputs/outputs or
probe outputs are not ``(n, n_in) -> (n, 2)`` float32 are each one CaseError on
``reaction.model``.

States outside the training box (``model.json: state_box``) are extrapolation: the step
still runs, the first time it happens an :class:`OutOfBoxWarning` says so, and the counts
``neural_nodes_outside_box`` (node-steps) and ``neural_steps_outside_box`` (steps with at
least one such node) go into the split solver's ``stats()`` and hence the store's ``stats``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from fhnpde.case import CaseError, quote

from .runtime import RUNTIMES, Runtime, model_files, open_runtime

__all__ = ["NeuralReaction", "OutOfBoxWarning", "check_model_matches"]


class OutOfBoxWarning(UserWarning):
    """A neural reaction step met states outside the box its model was trained on."""


def _same(a: float, b: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


def parameter_inputs(meta: dict[str, Any]) -> list[str]:
    """The kinetics parameters a one-step model takes as inputs after (v, w, I)."""
    return list(meta.get("inputs", [])[3:])


def check_model_matches(meta: dict[str, Any], kinetics, amplitudes, dt: float | None,
                        where: str) -> None:
    """CaseError (one sentence, naming the case key) unless the model fits the case.

    ``kinetics``: the case's :class:`fhnpde.models.Kinetics`; ``amplitudes``: its stimuli's
    amplitudes; ``dt``: its step (None: checked at the first step instead).
    """
    from fhnpde.models import check_params

    if meta.get("kind") != "itnn" or list(meta.get("inputs", []))[:3] != ["v", "w", "I"]:
        raise CaseError(f"{where} is a {meta.get('kind')} model with inputs {meta.get('inputs')}; "
                        "a reaction step needs a one-step (itnn) model of (v, w, I)",
                        key="reaction.model")
    trained = meta["kinetics"]
    if trained["name"] != kinetics.name:
        raise CaseError(f"the neural model {where} was trained for {trained['name']} kinetics, "
                        f"not {kinetics.name}; use a model of these kinetics or "
                        "reaction.kind: exact", key="model.kinetics")
    want = check_params(trained["name"], trained["params"])
    have = kinetics.params
    box = meta.get("state_box", {})
    for name, value in want.items():
        case_value = float(np.asarray(have[name]))
        if name in parameter_inputs(meta):
            lo, hi = box[name]
            if not lo - 1e-12 <= case_value <= hi + 1e-12:
                raise CaseError(f"the neural model {where} was trained for {name} in [{lo:g}, "
                                f"{hi:g}], not {case_value:g}; use a value in that range, a model "
                                "trained for it, or reaction.kind: exact",
                                key=f"model.params.{name}")
        elif not _same(case_value, value):
            raise CaseError(f"the neural model {where} was trained for {name} = {value:g}, not "
                            f"{case_value:g}; use a model trained for these parameters or "
                            "reaction.kind: exact", key=f"model.params.{name}")
    dt_r = meta.get("dt_r")
    if dt is not None and (dt_r is None or not _same(dt, dt_r)):
        raise CaseError(f"the neural model {where} advances the reaction by dt_r = {dt_r:g}, so "
                        f"the split step must be {dt_r:g}, not {dt:g}; set time.dt: {dt_r:g}",
                        key="time.dt")
    fixed = meta.get("fixed", {})
    if "I" in fixed and "I" not in box:
        for amplitude in amplitudes:
            if not _same(amplitude, fixed["I"]):
                raise CaseError(f"the neural model {where} was trained at the single current "
                                f"I = {fixed['I']:g}, so it cannot take a stimulus of amplitude "
                                f"{amplitude:g}; remove the stimuli or use a model trained "
                                "over a range of I", key="stimuli")


class NeuralReaction:
    """fhnpde ReactionStep backed by a one-step surrogate in one of the runtimes."""

    kind = "neural"
    order: int | None = None

    def __init__(self, runtime: Runtime, meta: dict[str, Any], xp=np, *, name: str = "",
                 params: dict[str, float] | None = None):
        self.runtime = runtime
        self.meta = meta
        self.xp = xp
        self.name = name or str(runtime.files.directory)
        self.dt_r = float(meta["dt_r"])
        # (column, low, high) for every input: its training range, or [c, c] for an input
        # held at one value c in training (the current of a single-current model)
        box = {**{k: [c, c] for k, c in meta.get("fixed", {}).items()}, **meta["state_box"]}
        self.box = [(j, float(box[k][0]), float(box[k][1]))
                    for j, k in enumerate(meta["inputs"]) if k in box]
        # values of the kinetics parameters the model takes as inputs (columns 3, 4, ...)
        names = parameter_inputs(meta)
        missing = [k for k in names if k not in (params or {})]
        if missing:
            raise ValueError(f"the model takes the parameters {names} as inputs; give "
                             f"params with {missing}")
        self.params = [float(params[k]) for k in names]
        self.calls = 0
        self._nodes_outside: Any = 0
        self._steps_outside: Any = 0
        self._warned = False
        self._buffer = None

    @classmethod
    def from_spec(cls, spec, problem, options, dt: float | None = None) -> NeuralReaction:
        """The reaction a case's ``reaction: {kind: neural, model, runtime}`` section asks for
        (``problem``: the case in numbers; ``options``: the solver's options, for its
        backend; ``dt``: the case's step)."""
        from fhnpde.backends import namespace

        if spec.runtime not in RUNTIMES:
            raise CaseError(f"unknown runtime {quote(spec.runtime)}; valid runtimes: "
                            f"{', '.join(RUNTIMES)}", key="reaction.runtime")
        files = model_files(spec.model, spec.runtime, key="reaction.model")
        kinetics = problem.kinetics
        check_model_matches(files.meta, kinetics, problem.current.amplitude.tolist(), dt,
                            spec.model)
        backend = options.backend
        device = "cuda" if backend == "cupy" else "cpu"
        runtime = open_runtime(files, spec.runtime, device=device)
        params = {k: float(np.asarray(kinetics.params[k]))
                  for k in parameter_inputs(files.meta)}
        return cls(runtime, files.meta, namespace(backend), name=spec.model, params=params)

    # --- the step ---

    def pack(self, v, w, current):
        """One float32 (n, n_in) batch of (v, w, I, [parameters]), reusing the buffer of the
        previous step (the parameter columns are written once)."""
        xp = self.xp
        n = v.shape[0]
        if self._buffer is None or self._buffer.shape[0] != n:
            self._buffer = xp.empty((n, 3 + len(self.params)), dtype=xp.float32)
            for j, value in enumerate(self.params):
                self._buffer[:, 3 + j] = value
        x = self._buffer
        x[:, 0] = v
        x[:, 1] = w
        x[:, 2] = current
        return x

    def _count_outside(self, x) -> None:
        xp = self.xp
        outside = None
        for j, lo, hi in self.box:
            col = x[:, j]
            bad = (col < lo) | (col > hi)
            outside = bad if outside is None else outside | bad
        if outside is None:
            return
        count = xp.count_nonzero(outside)
        if xp is np:  # host arrays: count and warn now
            count = int(count)
            if count:
                self._nodes_outside += count
                self._steps_outside += 1
                self._warn(count)
        else:  # device arrays: accumulate on the device, read back only with the stats
            self._nodes_outside = self._nodes_outside + count
            self._steps_outside = self._steps_outside + (count > 0)

    def _warn(self, count: int) -> None:
        if self._warned:
            return
        self._warned = True
        where = ", ".join(f"{self.meta['inputs'][j]} in [{lo:g}, {hi:g}]"
                          for j, lo, hi in self.box)
        warnings.warn(f"neural reaction: {count} nodes left the training box of {self.name} "
                      f"({where}) at step {self.calls}; the model extrapolates there (counted "
                      "as neural_nodes_outside_box in the run's stats)", OutOfBoxWarning,
                      stacklevel=3)

    def __call__(self, v, w, current, dt):
        if not _same(dt, self.dt_r):
            raise CaseError(f"the neural model {self.name} advances the reaction by dt_r = "
                            f"{self.dt_r:g}, not {dt:g}; set time.dt: {self.dt_r:g}", key="time.dt")
        self.calls += 1
        x = self.pack(v, w, current)
        self._count_outside(x)
        y = self.runtime(x)
        xp = self.xp
        return xp.asarray(y[:, 0], dtype=xp.float64), xp.asarray(y[:, 1], dtype=xp.float64)

    @property
    def counters(self) -> dict[str, int]:
        """Calls and out-of-box counts (merged into the split solver's stats)."""
        nodes, steps = int(self._nodes_outside), int(self._steps_outside)
        if nodes and not self._warned:
            self._warn(nodes)
        return {"neural_calls": self.calls, "neural_nodes_outside_box": nodes,
                "neural_steps_outside_box": steps}

    def __repr__(self) -> str:
        return f"NeuralReaction({self.name!r}, runtime={self.runtime.name!r}, dt_r={self.dt_r:g})"
