"""Training sets made by fhnpde's own batched 0-D solver, stored as zarr.

Every set is solved by building a point case (a mapping validated by
:func:`fhnpde.case.parse_case`), then :func:`fhnpde.problem.build_problem`, the registered
point solver (``rk4`` at a small step, or ``euler`` at the step the config names) and
:func:`fhnpde.driver.integrate`, with an observer that picks the outputs it needs. The
ensemble machinery of fhnpde draws the members (latin-hypercube, seeded).

Three kinds (``data.kind``):

``trajectory`` (problems A, B, C)
    points ``x = (t, [v0, w0, I])`` -> ``y = (v, w)(t)``. The member inputs are a
    latin hypercube over ``box``; each member gets one time drawn from a stratified
    (1-D latin hypercube) sample of [0, t_end], paired at random, so (t, inputs) is a
    latin hypercube too. Times are snapped to the solver's step grid (t = n dt). Without
    varied inputs (problem A) there is one member and all times come from its trajectory.
``one-step`` (ITNN)
    states ``x = (v, w, I)`` drawn in the state ``box`` -> ``y = (v, w)`` a reaction
    interval ``dt_r`` later. Optional exact ``rollouts`` (``size`` sequences of ``steps``
    intervals from a start box) and adaptive extra points where a trained model errs.
``cable`` (ITNN of the split solver's reaction step)
    the states a split cable run really passes to its reaction: every case of ``cases``
    (validation: ``validation_cases``) runs with the exact reaction (RK4 at ``solver.dt``)
    and every reaction call's ``(v, w, I, [parameters]) -> (v, w)`` is kept (nodes at rest
    thinned to ``rest_fraction``), plus ``train.size`` uniform samples of the ``box`` (which
    may hold kinetics parameters, e.g. ``a``, that the model then takes as inputs); and each
    run's states, half-step currents and diffusion half-step matrix, for the rollout loss
    (:mod:`surrogates.cable`).
``trajectories`` (Neural ODE)
    ``size`` trajectories from initial states in ``box`` with I drawn from ``currents``,
    saved every ``save_dt`` for ``steps`` intervals: arrays (trajectory, time, 2).

The store holds ``x_train``, ``y_train``, ``x_val``, ``y_val`` (or ``traj_*`` and ``I_*``)
with the config, kinetics, step sizes and boxes in its attributes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time as _time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from fhnpde.case import CaseError

from .config import Config, DataSpec, SampleSpec

FORMAT = "surrogates-data/1"


# --- fhnpde point cases ----------------------------------------------------------------


def point_case(cfg: Config, *, size: int, seed: int, vary: dict[str, Any], t_end: float,
               save_every: float, initial: tuple[float, float] = (0.0, 0.0),
               name: str = "surrogate-data"):
    """A validated fhnpde point case: an ensemble of ``size`` members over ``vary``."""
    from fhnpde.case import parse_case

    spec = cfg.data.solver
    vary = {k: (v if isinstance(v, dict) else [float(v[0]), float(v[1])]) for k, v in vary.items()}
    data = {
        "name": name,
        "model": {"kinetics": cfg.kinetics.name, "params": dict(cfg.kinetics.params)},
        "initial": {"v": float(initial[0]), "w": float(initial[1])},
        "time": {"t_end": float(t_end), "dt": float(spec.dt), "save_every": float(save_every)},
        "solver": {"method": spec.method, "backend": spec.backend},
        "ensemble": {"size": int(size), "sample": "latin-hypercube", "seed": int(seed),
                     "vary": vary},
    }
    return parse_case(data, source=f"{cfg.name} (generated point case)")


class _Recorder:
    """Observer keeping every output (small ensembles only)."""

    def __init__(self):
        self.times: list[float] = []
        self.v: list[np.ndarray] = []
        self.w: list[np.ndarray] = []

    def start(self, info):
        pass

    def output(self, t, state):
        self.times.append(float(t))
        self.v.append(np.array(state.v, dtype=float))
        self.w.append(np.array(state.w, dtype=float))

    def finish(self, status, stats):
        self.stats = stats


class _Gather:
    """Observer picking member ``m`` at output number ``k`` for requested pairs (m, k)."""

    def __init__(self, members: np.ndarray, steps: np.ndarray):
        self.out = np.full((len(members), 2), np.nan)
        order = np.argsort(steps, kind="stable")
        self.requests: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        ks, starts = np.unique(steps[order], return_index=True)
        bounds = [*starts[1:], len(order)]
        for k, a, b in zip(ks, starts, bounds, strict=True):
            rows = order[a:b]
            self.requests[int(k)] = (rows, members[rows])
        self.count = 0

    def start(self, info):
        pass

    def output(self, t, state):
        req = self.requests.get(self.count)
        if req is not None:
            rows, members = req
            self.out[rows, 0] = np.asarray(state.v)[members]
            self.out[rows, 1] = np.asarray(state.w)[members]
        self.count += 1

    def finish(self, status, stats):
        self.stats = stats


def _solve(case, observer) -> dict:
    from fhnpde.driver import BlowUpGuard, build_solver, integrate

    problem, solver = build_solver(case)
    result = integrate(solver, solver.init(), case, [BlowUpGuard(), observer])
    if result.status != "complete":
        raise RuntimeError(f"the data solver stopped: {result.status} ({result.message})")
    return {"problem": problem, "stats": result.stats}


def solve_trajectories(cfg: Config, *, size: int, seed: int, vary: dict[str, Any],
                       t_end: float, save_every: float,
                       initial: tuple[float, float] = (0.0, 0.0)):
    """Members' inputs and their (v, w) at every ``save_every``: arrays (member, time)."""
    case = point_case(cfg, size=size, seed=seed, vary=vary, t_end=t_end,
                      save_every=save_every, initial=initial)
    rec = _Recorder()
    out = _solve(case, rec)
    problem = out["problem"]
    members = {k: np.asarray(v, float) for k, v in problem.members.items()}
    members.setdefault("v0", problem.v0)
    members.setdefault("w0", problem.w0)
    return members, np.asarray(rec.times), np.stack(rec.v, 1), np.stack(rec.w, 1)


def _stratified(n: int, rng: np.random.Generator) -> np.ndarray:
    """A 1-D latin hypercube in [0, 1): one point per stratum, strata shuffled."""
    return (rng.permutation(n) + rng.random(n)) / n


def _current_vary(data: DataSpec) -> dict[str, Any]:
    if "I" in data.box:
        return {"I": data.box["I"]}
    return {"I": {"values": [float(data.fixed["I"])]}}


# --- the three kinds ---------------------------------------------------------------------


def trajectory_points(cfg: Config, sample: SampleSpec) -> tuple[np.ndarray, np.ndarray]:
    """Problems A/B/C: inputs (n, len(inputs)) and targets (n, 2) = (v, w)(t)."""
    data = cfg.data
    dt = data.solver.dt
    n = sample.size
    varied = data.inputs[1:]
    rng = np.random.default_rng([sample.seed, 1])
    n_steps = round(data.t_end / dt)
    steps = np.minimum(np.floor(_stratified(n, rng) * (n_steps + 1)).astype(int), n_steps)
    initial = (data.fixed.get("v0", 0.0), data.fixed.get("w0", 0.0))
    vary: dict[str, Any] = {k: data.box[k] for k in varied}
    vary.update({} if "I" in varied else {"I": {"values": [float(data.fixed["I"])]}})
    size = n if varied else 1
    case = point_case(cfg, size=size, seed=sample.seed, vary=vary, t_end=data.t_end,
                      save_every=dt, initial=initial)
    members = np.arange(n) if varied else np.zeros(n, dtype=int)
    gather = _Gather(members, steps)
    problem = _solve(case, gather)["problem"]
    columns = {"t": steps * dt}
    for name in varied:
        src = {"v0": problem.v0, "w0": problem.w0}.get(name)
        columns[name] = np.asarray(src if src is not None else problem.members[name], float)
    x = np.stack([columns[k] for k in data.inputs], 1)
    return x, gather.out


def one_step_points(cfg: Config, sample: SampleSpec) -> tuple[np.ndarray, np.ndarray]:
    """ITNN: states (v, w, I) in the box and the exact state ``dt_r`` later."""
    data = cfg.data
    vary = {"v0": data.box["v"], "w0": data.box["w"], **_current_vary(data)}
    members, _, v, w = solve_trajectories(cfg, size=sample.size, seed=sample.seed, vary=vary,
                                          t_end=data.dt_r, save_every=data.dt_r)
    current = np.broadcast_to(members["I"], (sample.size,))
    x = np.stack([v[:, 0], w[:, 0], current], 1)
    y = np.stack([v[:, -1], w[:, -1]], 1)
    return x, y


def rollout_sequences(cfg: Config, size: int, steps: int, seed: int,
                      box: dict[str, list[float]] | None = None):
    """Exact sequences from initial states in ``box`` (default: the benchmark's v0/w0/I box):
    states (size, steps + 1, 2) every dt_r and the currents (size,)."""
    data = cfg.data
    box = box or data.box
    vary = {"v0": box.get("v0", box.get("v")), "w0": box.get("w0", box.get("w")),
            **({"I": box["I"]} if "I" in box else _current_vary(data))}
    members, _, v, w = solve_trajectories(cfg, size=size, seed=seed, vary=vary,
                                          t_end=steps * data.dt_r, save_every=data.dt_r)
    return np.stack([v, w], -1), np.broadcast_to(members["I"], (size,)).copy()


def ode_trajectories(cfg: Config, sample: SampleSpec):
    """Neural ODE: trajectories (n, steps + 1, 2) every save_dt, currents (n,), times."""
    data = cfg.data
    vary = {"I": {"values": [float(c) for c in data.currents]},
            "v0": data.box["v0"], "w0": data.box["w0"]}
    members, times, v, w = solve_trajectories(
        cfg, size=sample.size, seed=sample.seed, vary=vary,
        t_end=data.steps * data.save_dt, save_every=data.save_dt)
    return np.stack([v, w], -1), np.broadcast_to(members["I"], (sample.size,)).copy(), times


def parameter_inputs(cfg: Config) -> list[str]:
    """Kinetics parameters that vary in the data's box (inputs after v, w, I)."""
    return [k for k in cfg.data.box if k not in ("v", "w", "I")]


def model_inputs(cfg: Config) -> list[str]:
    """The inputs of a one-step model of this config: v, w, I, then varied parameters."""
    return ["v", "w", "I", *parameter_inputs(cfg)]


def substeps(cfg: Config) -> int:
    """RK4 substeps of the exact reaction over one dt_r (h = data.solver.dt)."""
    return int(round(cfg.data.dt_r / cfg.data.solver.dt))


def exact_steps(cfg: Config, x: np.ndarray) -> np.ndarray:
    """The exact reaction over dt_r from inputs ``x`` (n, n_in) -> (n, 2), by fhnpde's
    reaction step (RK4, ``substeps``), per-row parameters where the inputs hold them."""
    from fhnpde.models import Kinetics, check_params
    from fhnpde.reaction import ExactReaction

    params = {**check_params(cfg.kinetics.name, dict(cfg.kinetics.params)),
              **{k: np.ascontiguousarray(x[:, 3 + j]) for j, k in
                 enumerate(parameter_inputs(cfg))}}
    reaction = ExactReaction(Kinetics(cfg.kinetics.name, params), cfg.data.solver.method,
                             substeps(cfg), "numba")
    v, w = reaction(x[:, 0].copy(), x[:, 1].copy(), x[:, 2].copy(), cfg.data.dt_r)
    return np.stack([v, w], 1)


def box_points(cfg: Config, sample: SampleSpec) -> tuple[np.ndarray, np.ndarray]:
    """``sample.size`` inputs uniform in the box (a latin hypercube) and their exact steps."""
    from scipy.stats import qmc

    names = model_inputs(cfg)
    u = qmc.LatinHypercube(d=len(names), seed=np.random.default_rng(sample.seed)).random(
        sample.size)
    lo = np.array([cfg.data.box[k][0] for k in names])
    hi = np.array([cfg.data.box[k][1] for k in names])
    x = lo + u * (hi - lo)
    return x, exact_steps(cfg, x)


def cable_case(cfg: Config, spec, where: str):
    """The split cable case of one ``data.cases`` entry, checked against the config."""
    from fhnpde.loading import load_case
    from fhnpde.models import check_params

    case = load_case(spec.case).with_changes(spec.set)
    if not case.is_cable or case.solver.method != "split":
        raise CaseError(f"{spec.case} must be a cable case of the split solver", key=where)
    if case.model.kinetics != cfg.kinetics.name:
        raise CaseError(f"{spec.case} has {case.model.kinetics} kinetics, the config "
                        f"{cfg.kinetics.name}", key=where)
    if abs(case.time.dt - cfg.data.dt_r) > 1e-12 * cfg.data.dt_r:
        raise CaseError(f"{spec.case} steps by dt = {case.time.dt:g}, not data.dt_r = "
                        f"{cfg.data.dt_r:g}", key=where)
    want = check_params(cfg.kinetics.name, dict(cfg.kinetics.params))
    have = check_params(case.model.kinetics, dict(case.model.params))
    for name, value in have.items():
        if name in cfg.data.box:
            lo, hi = cfg.data.box[name]
            if not lo <= value <= hi:
                raise CaseError(f"{spec.case} has {name} = {value:g}, outside data.box.{name} "
                                f"[{lo:g}, {hi:g}]", key=where)
        elif abs(value - want[name]) > 1e-12 * max(1.0, abs(value)):
            raise CaseError(f"{spec.case} has {name} = {value:g}, the config {want[name]:g}",
                            key=where)
    return case


def cable_runs(cfg: Config, specs, where: str) -> list[dict[str, Any]]:
    """Every case of ``specs`` run with the exact reaction (:func:`surrogates.cable.record_run`)."""
    from fhnpde.models import check_params

    from .cable import record_run

    runs = []
    for i, spec in enumerate(specs):
        case = cable_case(cfg, spec, f"{where}[{i}]")
        run = record_run(case, substeps(cfg))
        params = check_params(case.model.kinetics, dict(case.model.params))
        run["params"] = np.array([params[k] for k in parameter_inputs(cfg)], dtype=float)
        runs.append(run)
    return runs


def visited_points(cfg: Config, runs: list[dict[str, Any]], seed: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The reaction calls of ``runs`` as (inputs, exact outputs); nodes at rest (|v| <= 1e-3,
    |w| <= 1e-4, no current) thinned to ``data.rest_fraction``."""
    rng = np.random.default_rng([seed, 7])
    xs, ys = [], []
    for run in runs:
        x = run["inputs"].reshape(-1, 3)
        y = run["outputs"].reshape(-1, 2)
        moving = (np.abs(x[:, 0]) > 1e-3) | (np.abs(x[:, 1]) > 1e-4) | (x[:, 2] != 0)
        keep = moving | (rng.random(len(x)) < cfg.data.rest_fraction)
        params = np.broadcast_to(run["params"], (int(keep.sum()), len(run["params"])))
        xs.append(np.column_stack([x[keep], params]))
        ys.append(y[keep])
    return np.concatenate(xs), np.concatenate(ys)


def adaptive_points(cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """Extra one-step points where a trained model's error is large (adaptive density).

    A pool of states is drawn in the box and solved exactly; the model's error
    e_i = |dv_i| / range(v) + |dw_i| / range(w) sets the probability p_i = e_i / sum(e)
    with which ``extra`` of them are kept (without replacement).
    """
    from .models import load_model, predict

    spec = cfg.data.adaptive
    pool_x, pool_y = one_step_points(cfg, SampleSpec(size=spec.pool, seed=spec.seed))
    model, meta = load_model(spec.model)
    pred = predict(model, pool_x)
    span = np.array([np.ptp(cfg.data.box["v"]), np.ptp(cfg.data.box["w"])])
    err = (np.abs(pred - pool_y) / span).sum(1)
    rng = np.random.default_rng([spec.seed, 2])
    chosen = rng.choice(spec.pool, size=min(spec.extra, spec.pool), replace=False,
                        p=err / err.sum())
    return pool_x[chosen], pool_y[chosen]


# --- the store ----------------------------------------------------------------------------


def data_fingerprint(cfg: Config) -> str:
    """Hash of what determines the data (kinetics + data section, and for cable data the
    resolved cases, so that an edited case file makes new data)."""
    what: dict[str, Any] = {"kinetics": cfg.kinetics.model_dump(mode="json"),
                            "data": cfg.data.model_dump(mode="json", exclude={"path"})}
    if cfg.data.kind == "cable":
        # what a case computes, not its name, description or output path
        what["cases"] = [{key: value for key, value in
                          cable_case(cfg, spec, f"data.{name}[{i}]").to_dict().items()
                          if key not in ("name", "description", "output")}
                         for name in ("cases", "validation_cases")
                         for i, spec in enumerate(getattr(cfg.data, name))]
    text = json.dumps(what, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def generate(cfg: Config, path: str | Path | None = None, overwrite: bool = False) -> Path:
    """Solve the config's training and validation sets and write them to a zarr store."""
    import xarray as xr

    from fhnpde import __version__ as fhnpde_version
    from fhnpde.store import prepare_path
    from fhnpde.storefs import WriterLock, install, staging_dir

    path = prepare_path(path or cfg.data_path, overwrite, key="data.path")
    data = cfg.data
    wall0 = _time.perf_counter()
    attrs: dict[str, Any] = {
        "format": FORMAT,
        "name": cfg.name,
        "kind": data.kind,
        "kinetics": cfg.kinetics.name,
        "params": json.dumps(cfg.kinetics.params),
        "solver": data.solver.method,
        "solver_dt": data.solver.dt,
        "box": json.dumps(data.box),
        "fixed": json.dumps(data.fixed),
        "fingerprint": data_fingerprint(cfg),
        "config": json.dumps(cfg.to_dict()),
        "fhnpde_version": fhnpde_version,
    }
    variables: dict[str, Any] = {}
    if data.kind == "trajectory":
        inputs = list(data.inputs)
        for split, sample in (("train", data.train), ("val", data.validation)):
            x, y = trajectory_points(cfg, sample)
            variables[f"x_{split}"] = ((f"{split}_sample", "input"), x)
            variables[f"y_{split}"] = ((f"{split}_sample", "output"), y)
        attrs["t_end"] = data.t_end
    elif data.kind == "one-step":
        inputs = ["v", "w", "I"]
        for split, sample in (("train", data.train), ("val", data.validation)):
            x, y = one_step_points(cfg, sample)
            if split == "train" and data.adaptive is not None:
                ex, ey = adaptive_points(cfg)
                x, y = np.concatenate([x, ex]), np.concatenate([y, ey])
                attrs["adaptive_extra"] = len(ex)
            variables[f"x_{split}"] = ((f"{split}_sample", "input"), x)
            variables[f"y_{split}"] = ((f"{split}_sample", "output"), y)
        attrs["dt_r"] = data.dt_r
        if data.rollouts is not None:
            r = data.rollouts
            for split, seed in (("train", r.seed), ("val", r.seed + 1000)):
                seq, cur = rollout_sequences(cfg, r.size, r.steps, seed, r.box)
                variables[f"rollout_{split}"] = ((f"{split}_sequence", "step", "output"), seq)
                variables[f"rollout_I_{split}"] = ((f"{split}_sequence",), cur)
            inside = ((seq[..., 0] >= data.box["v"][0]) & (seq[..., 0] <= data.box["v"][1])
                      & (seq[..., 1] >= data.box["w"][0]) & (seq[..., 1] <= data.box["w"][1]))
            attrs["rollout_coverage"] = float(inside.mean())
    elif data.kind == "cable":
        inputs = model_inputs(cfg)
        for split, sample, specs, where in (
                ("train", data.train, data.cases, "data.cases"),
                ("val", data.validation, data.validation_cases, "data.validation_cases")):
            runs = cable_runs(cfg, specs, where)
            vx, vy = visited_points(cfg, runs, sample.seed)
            bx, by = box_points(cfg, sample)
            variables[f"x_{split}"] = ((f"{split}_sample", "input"), np.concatenate([vx, bx]))
            variables[f"y_{split}"] = ((f"{split}_sample", "output"), np.concatenate([vy, by]))
            attrs[f"visited_{split}"] = len(vx)
            for i, run in enumerate(runs):
                pre = f"cable_{split}_{i}"
                variables[f"{pre}_states"] = ((f"{pre}_step", f"{pre}_node", "output"),
                                              run["states"].astype(np.float32))
                variables[f"{pre}_currents"] = ((f"{pre}_interval", f"{pre}_node"),
                                                run["inputs"][..., 2].astype(np.float32))
                variables[f"{pre}_half_step"] = ((f"{pre}_node", f"{pre}_node_from"),
                                                 run["half_step"])
                variables[f"{pre}_params"] = ((f"{pre}_param",), run["params"])
            attrs[f"cables_{split}"] = len(runs)
        attrs["dt_r"] = data.dt_r
    else:
        inputs = ["v", "w", "I"]
        for split, sample in (("train", data.train), ("val", data.validation)):
            traj, cur, times = ode_trajectories(cfg, sample)
            variables[f"traj_{split}"] = ((f"{split}_trajectory", "time", "output"), traj)
            variables[f"I_{split}"] = ((f"{split}_trajectory",), cur)
        attrs["save_dt"] = data.save_dt
    attrs["inputs"] = json.dumps(inputs)
    attrs["outputs"] = json.dumps(["v", "w"])
    coords = {"time": times} if data.kind == "trajectories" else {}
    attrs["generation_wall_s"] = round(_time.perf_counter() - wall0, 3)
    ds = xr.Dataset({k: xr.Variable(*v) for k, v in variables.items()}, coords=coords, attrs=attrs)
    # built beside the path and moved into place under the path's lock: an old data store
    # (ours only, fhnpde.storefs) is replaced only once the new one exists
    lock = WriterLock.acquire(path, key="data.path")
    try:
        staging = staging_dir(path)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore",
                                        message="Consolidated metadata is currently not part")
                ds.to_zarr(str(staging), mode="w", zarr_format=3, consolidated=True)
            install(staging, path, overwrite, key="data.path")
        except OSError as exc:
            raise CaseError(f"cannot write the data store {path} ({exc.strerror or exc}); "
                            "free some space or choose another data.path",
                            key="data.path") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        lock.release()
    return path


def load_data(path: str | Path) -> dict[str, Any]:
    """The arrays of a data store as numpy, plus ``attrs``."""
    import xarray as xr

    p = Path(path)
    if not p.exists():
        raise CaseError("no such data store; run `python -m surrogates generate CONFIG` first",
                        source=str(p))
    ds = xr.open_zarr(str(p))
    if ds.attrs.get("format") != FORMAT:
        raise CaseError("is not a data store written by `surrogates generate`", source=str(p))
    out: dict[str, Any] = {k: np.asarray(ds[k].values) for k in ds.data_vars}
    out["attrs"] = dict(ds.attrs)
    if "time" in ds.coords:
        out["time"] = np.asarray(ds["time"].values)
    return out


def ensure_data(cfg: Config, overwrite: bool = False) -> Path:
    """The config's data store, generated now if it is missing (or ``overwrite``)."""
    path = cfg.data_path
    if path.exists() and not overwrite:
        import xarray as xr

        try:
            found = xr.open_zarr(str(path)).attrs.get("fingerprint")
        except (OSError, ValueError, KeyError):
            found = None
        if found != data_fingerprint(cfg):
            raise CaseError(
                f"{path} holds data made from a different data section; run "
                "`python -m surrogates generate CONFIG --overwrite` or choose another data.path",
                key="data.path",
            )
        return path
    return generate(cfg, path, overwrite=overwrite)
