"""The one time loop. It steps a solver and hands the state to observers at output times.

Observers (store writer, progress bar, blow-up guard, wall-clock limit) implement
``start(info)``, ``output(t, state)`` and ``finish(status, stats)``. Failures and Ctrl-C end
in ``finish`` with the matching status, so the store says how the run ended and keeps every
completed output.
"""

from __future__ import annotations

import math
import sys
import time as _time
from dataclasses import dataclass, field

import numpy as np

from .backends import CompileClock, to_numpy
from .case import Case, CaseError
from .errors import BlowUp, NumericalFailure  # noqa: F401 - re-exported
from .solvers.base import Solver, State

#: Node updates per ``advance`` call at most (about 0.1-1 s of work): signals are handled
#: between calls, so this bounds how long a Ctrl-C or SIGTERM waits.
BLOCK_UPDATES = 2**27




@dataclass
class RunInfo:
    case: Case
    solver: Solver
    n_steps: int
    steps_per_output: int
    times: np.ndarray
    extras: dict = field(default_factory=dict)


@dataclass
class Result:
    status: str
    stats: dict
    message: str = ""
    path: str | None = None
    exit_status: int = 0  # what the CLI exits with: 0, 1 (failed), 128 + signal (interrupted)
    final_status_error: str | None = None  # the store's final status could not be written


def output_times(n_steps: int, steps_per_output: int, dt: float) -> np.ndarray:
    """Times of the outputs: every ``steps_per_output`` steps from 0, and the last step.

    Built in place (16 bytes per output at the peak, not a Python list of every step
    index): :mod:`fhnpde.resources` counts it before a run starts.
    """
    k = -(-n_steps // steps_per_output)  # len(range(0, n_steps, steps_per_output))
    times = np.empty(k + 1)
    times[:k] = np.arange(0, n_steps, steps_per_output)
    times[k] = n_steps
    times *= dt
    return times


class StopRun(Exception):
    """Raised by an observer to end the run as ``interrupted`` (exit 130), e.g. a wall-clock
    limit; unlike a signal it is not a ``KeyboardInterrupt``."""


class Observer:
    """What the time loop calls: ``start(info)`` once, ``output(t, state)`` at every output
    time (from t = 0), ``finish(status, stats)`` once however the run ends. The defaults do
    nothing; an observer may raise :class:`NumericalFailure` (the run fails) or
    :class:`StopRun` (the run is interrupted)."""

    def start(self, info) -> None:
        pass

    def output(self, t, state) -> None:
        pass

    def finish(self, status, stats) -> None:
        pass


class BlowUpGuard(Observer):
    """Stops the run at the first output with a NaN or infinite value."""

    def output(self, t, state):
        for name in ("v", "w"):
            # the state's one device-to-host copy at an output besides the store writer's
            if not bool(np.isfinite(to_numpy(getattr(state, name))).all()):
                raise BlowUp(
                    f"the solution blew up before t = {t:g} ({name} is not finite); "
                    "lower time.dt or check the parameters"
                )


class ProgressBar(Observer):
    """tqdm bar over simulated time; silent when quiet or not on a terminal."""

    def __init__(self, quiet: bool = False, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = not quiet and getattr(self.stream, "isatty", lambda: False)()
        self.bar = None

    def start(self, info):
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=float(info.times[-1]), unit="t", desc=info.case.name,
                            file=self.stream, bar_format="{l_bar}{bar}| t={n:.4g}/{total:.4g} "
                            "[{elapsed}<{remaining}]")
            self.last = 0.0

    def output(self, t, state):
        if self.bar is not None:
            self.bar.update(float(t) - self.last)
            self.last = float(t)

    def finish(self, status, stats):
        if self.bar is not None:
            self.bar.close()


class WallClockLimit(Observer):
    """Ends the run as ``interrupted`` once the time loop has run ``seconds`` of wall time."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def start(self, info):
        self.t0 = None

    def output(self, t, state):
        # The clock starts at the first output, so the store's creation (and the first
        # import of zarr) is not charged to the time loop.
        if self.t0 is None:
            self.t0 = _time.monotonic()
        elif _time.monotonic() - self.t0 > self.seconds:
            raise StopRun(f"wall-clock limit of {self.seconds:g} s reached")


class RunClock:
    """Where a run's wall time goes, as the store's ``stats`` report it:

    - ``startup_s``: from the clock's start (the call of :func:`run_case` or
      :func:`fhnpde.solve`) to the time loop: resource checks, building the problem and the
      solver (importing numba and the kernel modules), creating the store;
    - ``compile_s``: numba loading cached kernels or compiling them, wherever it happens (the
      first load of a process also builds numba's target context; see
      :class:`fhnpde.backends.CompileClock`), or :mod:`fhnpde.native` loading their object
      code instead;
    - ``wall_time_s``: the time loop alone (steps and outputs), of which ``output_s`` went
      to the observers at the output times (writing the store, the blow-up guard): the
      stepping alone is ``wall_time_s - output_s``.

    The three do not overlap: ``compile_s`` is taken out of the other two.
    """

    def __init__(self):
        self.t0 = _time.perf_counter()
        self.compile = CompileClock()
        self.loop_t0 = self.loop_compile0 = None
        self.output = 0.0  # seconds in the observers' output calls (of the loop's time)

    def __enter__(self) -> RunClock:
        self.compile.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.compile.__exit__(*exc)

    def loop_starts(self) -> None:
        self.compile.listen()  # numba may have been imported while the solver was built
        self.loop_t0, self.loop_compile0 = _time.perf_counter(), self.compile.seconds

    def times(self) -> dict[str, float]:
        """``startup_s``, ``compile_s``, ``wall_time_s`` so far (the loop ends now)."""
        end = _time.perf_counter()
        loop_t0 = end if self.loop_t0 is None else self.loop_t0
        before = self.compile.seconds if self.loop_compile0 is None else self.loop_compile0
        in_loop = self.compile.seconds - before
        return {"wall_time_s": round(max(0.0, end - loop_t0 - in_loop), 6),
                "output_s": round(self.output, 6),
                "startup_s": round(max(0.0, loop_t0 - self.t0 - before), 6),
                "compile_s": round(self.compile.seconds, 6)}

    def outputs(self, observers, t, state) -> None:
        """Hand ``state`` at time ``t`` to every observer, timed as ``output_s``."""
        t0 = _time.perf_counter()
        try:
            for obs in observers:
                obs.output(t, state)
        finally:
            self.output += _time.perf_counter() - t0


def _failures() -> tuple[type[BaseException], ...]:
    """The exceptions that end a run as failed: a numerical failure, a failed store write,
    and a tridiagonal solve's :class:`~fhnpde.tridiagonal.PivotError` (a Jacobian that lost
    dominance) where :mod:`fhnpde.tridiagonal` is loaded: a run that never imported it
    cannot raise one, and it is not imported for the ``except`` clause's sake."""
    from .store import StoreWriteError

    pivot = sys.modules.get("fhnpde.tridiagonal.errors")
    return (NumericalFailure, StoreWriteError) + ((pivot.PivotError,) if pivot else ())


def integrate(solver: Solver, state: State, case: Case, observers=(), *,
              clock: RunClock | None = None) -> Result:
    """Step ``solver`` from t = 0 to ``time.t_end``, calling observers at output times.

    ``clock``: the :class:`RunClock` started where the run started (a new one otherwise,
    whose start-up is then the observers' start alone)."""
    if clock is None:
        with RunClock() as clock:
            return integrate(solver, state, case, observers, clock=clock)
    spec = case.time
    dt = spec.dt
    n_steps, per_output = spec.n_steps, spec.steps_per_output
    info = RunInfo(case, solver, n_steps, per_output, output_times(n_steps, per_output, dt))
    from . import signals

    started = []
    status, message, exit_status = "running", "", 1
    step = 0
    try:
        for obs in observers:
            # a signal while an observer starts (the store being renamed into place) is held
            # until it has started, so that it is finished like every other started observer
            with signals.deferred():
                obs.start(info)
                started.append(obs)
        clock.loop_starts()
        clock.outputs(observers, 0.0, solver.output_state(state))
        # one advance call covers an output interval, in blocks of at most BLOCK_UPDATES
        # node updates, so a signal (handled between calls) stops even a run with one
        # output interval of 5e9 steps within about a second
        block = max(1, BLOCK_UPDATES // max(1, math.prod(np.shape(state.v))))
        while step < n_steps:
            target = min(step + per_output, n_steps)
            while step < target:
                k = min(target - step, block)
                state = solver.advance(state, step * dt, dt, k)
                step += k
            clock.outputs(observers, step * dt, solver.output_state(state))
        status, exit_status = "complete", 0
    except _failures() as exc:
        status, message = "failed", str(exc)
    except (KeyboardInterrupt, StopRun) as exc:
        why = f" ({exc})" if str(exc) else ""
        status, message = "interrupted", f"interrupted at t = {step * dt:g}{why}"
        exit_status = signals.exit_status(exc)
    finally:
        size = int(np.shape(state.v)[-1]) if np.ndim(state.v) else 1
        stats = {
            "steps": int(step),
            "dt": float(dt),
            "t_reached": float(step * dt),
            **clock.times(),
            "node_updates": int(step) * size,
            **solver.stats(),
        }
        if status == "running":  # an exception we do not handle: still close the store
            status = "failed"
        # the final status is written whatever arrives now (a second Ctrl-C, a SIGTERM)
        with signals.swallowed():
            for obs in started:
                obs.finish(status, stats)
    return Result(status, stats, message, exit_status=exit_status)


#: where each solver option comes from in a case (an OptionError's ``option`` -> key path)
OPTION_KEYS = {"method": "solver.method", "dt": "time.dt", "exact": "reaction",
               "reaction": "reaction"}


def option_key(option: str) -> str:
    """The case key path of a solver option (``"newton.rtol"`` -> ``"solver.newton.rtol"``)."""
    head, _, rest = option.partition(".")
    if head in OPTION_KEYS:
        return ".".join(filter(None, (OPTION_KEYS[head], rest)))
    return f"solver.{option}"


def solver_options(case: Case):
    """The typed options (:class:`fhnpde.solvers.SolverOptions`) a case's ``solver`` and
    ``reaction`` sections ask for; :func:`build_solver` adds the reaction step of a solver
    that takes one (``uses_reaction``) once the problem is known."""
    from .solvers.options import AdaptiveOptions, NewtonOptions, ReactionOptions, SolverOptions

    spec = case.solver
    newton, adaptive = spec.newton, spec.adaptive
    exact = (ReactionOptions(case.reaction.scheme, int(case.reaction.substeps))
             if case.reaction.kind == "exact" else ReactionOptions())
    return SolverOptions(
        backend=spec.backend,
        tridiagonal=spec.tridiagonal,
        diffusion=spec.diffusion,
        merge_diffusion=spec.merge_diffusion,
        space_order=spec.space_order,
        newton=NewtonOptions(float(newton.rtol), int(newton.max_iter), newton.predictor,
                             newton.stop),
        adaptive=AdaptiveOptions(**{f: float(getattr(adaptive, f))
                                    for f in AdaptiveOptions.__dataclass_fields__}),
        exact=exact,
    )


def build_solver(case: Case, *, namespace=None, device=None):
    """The problem and the checked solver of a case (CaseError on a bad combination).

    ``namespace``/``device``: run the array path on that array-API namespace and device
    instead of the backend's (the tests run every solver on ``array_api_strict`` so).

    The one place where a case meets the solvers: the case becomes a problem (numbers) and
    typed options; a solver's :class:`~fhnpde.solvers.OptionError` comes back as a CaseError
    naming the case's key path; a dt beyond the scheme's stability limit is refused unless
    ``solver.force``.
    """
    import dataclasses

    from .backends import BackendUnavailable
    from .problem import build_problem
    from .solvers import OptionError, solver_class

    try:
        problem = build_problem(case)
        geometry = problem.geometry
        cls = solver_class(case.solver.method, geometry)
        options = dataclasses.replace(solver_options(case), namespace=namespace, device=device)
        if getattr(cls, "uses_reaction", False):
            from .reaction import reaction_step

            options = dataclasses.replace(
                options, reaction=reaction_step(case.reaction, problem, options, case.time.dt))
        solver = cls(problem, options)
    except OptionError as exc:
        raise CaseError(str(exc), key=option_key(exc.option)) from None
    except BackendUnavailable as exc:
        raise CaseError(str(exc), key="solver.backend") from None
    dt = case.time.dt
    if solver.exceeds_limit(dt) and not case.solver.force:
        raise CaseError(
            f"{dt} exceeds the stability limit {solver.stability_limit(dt):.6g} of the "
            f"{solver.name} scheme ({solver.limit_formula()}); lower time.dt or set "
            "solver.force: true",
            key="time.dt",
        )
    return problem, solver


def run_layout(case: Case, problem, solver):
    """The names, dims and attributes of a run's outputs (:class:`fhnpde.store.RunLayout`)."""
    from .store import RunLayout, sheet_coord_attrs, x_attrs
    from .version import __version__

    attrs = {
        "fhnpde_version": __version__,
        "case": case.to_yaml(),
        "solver": solver.name,
        "title": case.name,
        "description": case.description,
    }
    if problem.is_sheet:
        coords = {"x": ("x", problem.grid.x, sheet_coord_attrs("x")),
                  "y": ("y", problem.grid.y, sheet_coord_attrs("y"))}
        kind = "sheet"
    elif problem.is_cable:
        coords = {"x": ("x", problem.grid.x, x_attrs())}
        kind = "cable"
    else:
        coords = {"member": ("member", np.arange(problem.size), {"long_name": "ensemble member"})}
        for name, values in problem.members.items():
            coords[name] = ("member", values, {"long_name": f"varied input {name}"})
        kind = "point"
    return RunLayout(kind, coords, attrs, solver.output_variables())


def store_writer(case: Case, problem, solver, path, *, overwrite=False,
                 key="output.path") -> object:
    from .store import StoreWriter

    n_outputs = len(output_times(case.time.n_steps, case.time.steps_per_output, case.time.dt))
    return StoreWriter(path, run_layout(case, problem, solver), chunk_mb=case.output.chunk_mb,
                       n_outputs=n_outputs, overwrite=overwrite, key=key)


def run_case(case: Case, *, out=None, overwrite=False, quiet=True, observers=(),
             force: bool = False) -> Result:
    """Validate, run and store a case. Raises CaseError for bad input (nothing written),
    including a run whose memory or disk estimate exceeds what is available, unless
    ``force`` (see :mod:`fhnpde.resources`)."""
    from .resources import check_run
    from .store import prepare_path

    key = "--out" if out else "output.path"
    with RunClock() as clock:
        # before build_solver: building the problem allocates the nodes (or members) already
        check_run(case, out or case.output.path, force=force, path_key=key)
        problem, solver = build_solver(case)
        path = prepare_path(out or case.output.path, overwrite, key=key)
        writer = store_writer(case, problem, solver, path, overwrite=overwrite, key=key)
        state = solver.init()
        result = integrate(solver, state, case,
                           [BlowUpGuard(), *observers, writer, ProgressBar(quiet)], clock=clock)
    result.path = str(path)
    result.final_status_error = writer.final_status_error
    if writer.error is not None and result.status == "complete":
        # the last outputs could not be written when the run ended: the store says failed
        result.status, result.message, result.exit_status = "failed", str(writer.error), 1
    return result
