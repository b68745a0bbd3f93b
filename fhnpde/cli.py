"""``python -m fhnpde``: run, convergence, stability, plot, info.

Exit status: 0 done; 2 bad input (one line on stderr, no traceback); 1 numerical failure or
a failed write (store kept and marked ``failed``); 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP (store
marked ``interrupted``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from . import signals
from .case import CaseError
from .store import StoreWriteError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

#: the commands, in the order :func:`build_parser` adds them (tested against it)
COMMANDS = ("run", "info", "plot", "convergence", "stability", "sweep", "fit")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's usage errors are bad input too: exit 2
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _say_error(message: str) -> None:
    print(f"fhnpde: error: {message}", file=sys.stderr)


def cmd_run(args) -> int:
    import numpy as np

    from .case import load_case
    from .driver import WallClockLimit, run_case

    case = load_case(args.case, args.set)
    observers = [WallClockLimit(args.max_wall)] if args.max_wall else []
    try:
        # A blow-up overflows before the guard sees the non-finite output: let the guard
        # report it in one line instead of numpy printing a warning per operation.
        with np.errstate(over="ignore", invalid="ignore"):
            result = run_case(case, out=args.out, overwrite=args.overwrite, quiet=args.quiet,
                              observers=observers, force=args.force)
    except CaseError as exc:
        raise exc.with_source(str(args.case)) if exc.source is None else exc from None
    if result.status == "complete" and not getattr(result, "final_status_error", None):
        if not args.quiet:
            s = result.stats
            print(f"{case.name}: complete, {s['steps']} steps in {s['wall_time_s']:.3g} s "
                  f"-> {result.path}")
        return EXIT_OK
    late = getattr(result, "final_status_error", None)
    if result.status == "interrupted":
        _say_error(f"{result.message}; the store {result.path} keeps every completed output "
                   + (f"but {late}" if late else "and is marked interrupted"))
        return result.exit_status or EXIT_INTERRUPTED
    if result.status == "complete":  # the outputs are all there, the status write failed
        _say_error(f"{late}; every output is in {result.path}")
        return EXIT_FAILED
    _say_error(result.message if "marked failed" in result.message else
               f"{result.message}; the store {result.path} is marked failed")
    return EXIT_FAILED


def cmd_info(args) -> int:
    from .info import describe

    print(describe())
    return EXIT_OK


def cmd_plot(args) -> int:
    from .plotting import plot_store

    out = plot_store(args.store, args.out, movie=args.movie)
    print(out)
    if args.movie:
        print(args.movie)
    return EXIT_OK


def _study_out_dir(args) -> Path:
    """The folder for the study's files, made if missing; CaseError naming ``--out`` when
    it cannot be (a file in the way, no permission, a name too long, a NUL byte)."""
    from .studies import DEFAULT_OUT

    text = str(args.out or DEFAULT_OUT)
    if "\x00" in text:
        raise CaseError(f"{text!r} contains a NUL byte; give a folder name", key="--out")
    out = Path(text)
    shown = text if len(text) <= 80 else text[:60] + f"... ({len(text)} characters)"
    try:
        if out.exists() and not out.is_dir():
            raise CaseError(f"{shown} exists and is not a folder; give a folder", key="--out")
        for parent in out.parents:
            if parent.exists() and not parent.is_dir():
                raise CaseError(f"cannot make {shown}: {parent} is a file, not a folder",
                                key="--out")
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".fhnpde-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CaseError(f"cannot write in {shown} ({exc.strerror or exc}); choose a writable "
                        "folder", key="--out") from None
    return out


def _with_source(exc: CaseError, source: str) -> CaseError:
    return exc if exc.source is not None else exc.with_source(source)


def cmd_convergence(args) -> int:
    """``python -m fhnpde convergence``: print the table, write CSV, TXT and PNG."""
    from .case import load_case
    from .driver import NumericalFailure
    from .plotting import plot_convergence
    from .studies import convergence_study

    case = load_case(args.case, args.set)
    out = _study_out_dir(args)  # before the study: a bad --out must not cost its runs
    try:
        result = convergence_study(
            case, args.vary, levels=args.levels, ratio=args.ratio,
            reference=args.reference, t_end=args.t_end,
            progress=lambda m: print(m, file=sys.stderr, flush=True),
        )
    except CaseError as exc:
        raise _with_source(exc, str(args.case)) from None
    except NumericalFailure as exc:
        print(f"fhnpde: error: {exc}", file=sys.stderr)
        return 1
    stem = f"convergence-{case.name}-{result.solver}-{result.vary}"
    report = result.report()
    print(report)
    (out / f"{stem}.txt").write_text(report + "\n")
    result.write_csv(out / f"{stem}.csv")
    hs = [lv.h for lv in result.levels]
    plot_convergence(
        hs, {"rmse": [lv.rmse for lv in result.levels],
             "max error": [lv.max_error for lv in result.levels]},
        out / f"{stem}.png",
        xlabel="dt" if result.vary == "dt" else "dx",
        declared_order=result.declared_order,
        fitted={"rmse": result.fitted_order_rmse, "max error": result.fitted_order_max},
        title=f"{case.name}: {result.solver}, error of v at t = {result.t_end:g}",
        note=f"reference: {result.reference}"
        + (f"; dt ~ dx^{result.dt_exponent:g}" if result.dt_exponent is not None else "")
        + (f"; {result.boundary}" if result.boundary else ""),
    )
    print(f"\nwrote {out / stem}.csv, .txt, .png")
    return 0


def cmd_stability(args) -> int:
    """``python -m fhnpde stability``: print the table, write CSV, TXT and PNG."""
    from .case import load_case
    from .plotting import plot_stability
    from .studies import stability_study

    case = load_case(args.case, args.set)
    out = _study_out_dir(args)  # before the study: a bad --out must not cost its runs
    try:
        study = stability_study(
            case, args.solver, cap_factor=getattr(args, "cap", 100.0),
            rtol=getattr(args, "rtol", 0.005), t_end=getattr(args, "t_end", None),
            progress=lambda m: print(m, file=sys.stderr, flush=True),
        )
    except CaseError as exc:
        raise _with_source(exc, str(args.case)) from None
    stem = f"stability-{case.name}"
    report = study.report()
    print(report)
    (out / f"{stem}.txt").write_text(report + "\n")
    study.write_csv(out / f"{stem}.csv")
    plot_stability(
        [r.solver for r in study.results],
        [r.largest_stable_dt for r in study.results],
        [r.stable_to_cap for r in study.results],
        out / f"{stem}.png",
        explicit_limit=study.explicit_limit,
        cap=study.results[0].cap if study.results else None,
        theory=[r.theory_limit for r in study.results],
        title=f"{case.name}: largest stable dt (t_end = {study.t_end:g}"
        + (f", dx = {study.dx:g})" if study.dx else ")"),
    )
    print(f"\nwrote {out / stem}.csv, .txt, .png")
    return 0


def cmd_sweep(args) -> int:
    from .sweep import sweep_command

    return sweep_command(args)


def _number(kind: type, low: float | None = None, high: float | None = None, *,
            above: bool = False, why_high: str = ""):
    """An argparse ``type=`` reading an int or a finite float in ``[low, high]`` (``(low,
    high]`` with ``above``); a bad value is argparse's one-line usage error (exit 2).
    ``why_high`` is said after the upper bound."""

    def parse(text: str):
        noun = "an integer" if kind is int else "a number"
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if low is not None and (value < low or (above and value == low)):
            raise argparse.ArgumentTypeError(
                f"must be {'>' if above else '>='} {low:g}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(
                f"must be <= {high:g}{f' ({why_high})' if why_high else ''}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; ``only="run"``: the same parser with the ``run`` command
    alone, which parses every command line whose first word is ``run`` as the whole parser
    does (what :func:`main` builds for ``run``: the other commands' parsers and the modules
    they read their ranges from are not imported)."""
    parser = _Parser(prog="python -m fhnpde",
                     description="FitzHugh–Nagumo solvers: point models and cables.")
    # the run command alone names every command in its usage line, as the whole parser does
    metavar = {"metavar": "{" + ",".join(COMMANDS) + "}"} if only == "run" else {}
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                **metavar)

    p = sub.add_parser("run", help="run a case file and write its zarr store")
    p.add_argument("case", help="YAML case file")
    p.add_argument("--out", help="store path (default: the case's output.path)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a case key, e.g. --set time.dt=0.01 (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.add_argument("--force", action="store_true",
                   help="run even if the memory or disk estimate exceeds what is available")
    p.add_argument("--max-wall", type=_number(float, 0.0, above=True), default=None,
                   metavar="SECONDS",
                   help="stop after this much wall time, > 0 (store marked interrupted, "
                        "exit 130)")
    p.set_defaults(func=cmd_run)
    if only == "run":
        return parser

    from .cluster import max_workers
    from .studies import CAP_RANGE, LEVELS_RANGE, MAX_STEPS, RATIO_RANGE, RTOL_RANGE

    p = sub.add_parser("info", help="versions and usable backends")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("plot", help="space-time picture and profiles (PNG) of a store; "
                                    "snapshots (and --movie) of a sheet")
    p.add_argument("store", help="a store written by python -m fhnpde run or sweep")
    p.add_argument("--out", help="picture path; its extension picks the format: .png, .pdf, "
                                 ".svg, ... (default: the store's path with .png)")
    p.add_argument("--movie", metavar="OUT.gif|mp4",
                   help="sheets: also write an animation of v, one frame per output (.gif; "
                        ".mp4 needs ffmpeg)")
    p.set_defaults(func=cmd_plot)

    # The studies' ranges are checked by the studies themselves (fhnpde.studies), for the
    # command line and the Python API alike; the parser only reads finite numbers.
    p = sub.add_parser("convergence", help="observed order of accuracy in dt or dx")
    p.add_argument("case")
    p.add_argument("--vary", choices=("dt", "dx"), required=True)
    p.add_argument("--levels", type=_number(int), default=4,
                   help=f"resolutions, {LEVELS_RANGE[0]} to {LEVELS_RANGE[1]} (default 4): two "
                        "give one observed order; each level multiplies the finest run's work by "
                        "the ratio or more, and the self reference runs two levels finer still")
    p.add_argument("--ratio", type=_number(int), default=2,
                   help=f"refinement between levels, an integer {RATIO_RANGE[0]} to "
                        f"{RATIO_RANGE[1]} (default 2): finer grids must hold the coarser "
                        "grids' nodes, and larger ratios make the finest runs too costly")
    p.add_argument("--t-end", type=_number(float), default=None,
                   help="end time of every level, > 0 and a whole number of the coarsest "
                        f"steps (default: the case's time.t_end); no run may exceed "
                        f"{MAX_STEPS:.0e} steps")
    p.add_argument("--reference", choices=("self", "scipy"), default="self")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="folder for the table, CSV and picture (default: runs/studies)")
    p.set_defaults(func=cmd_convergence)

    p = sub.add_parser("stability", help="largest stable dt per solver")
    p.add_argument("case")
    p.add_argument("--solver", action="append", default=None, metavar="NAME",
                   help="a registered solver of the case's geometry (repeatable; default: "
                        "every one)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="folder for the table, CSV and picture (default: runs/studies)")
    p.add_argument("--t-end", type=_number(float), default=None,
                   help="length of each trial run, > 0 (default: the case's time.t_end); a run "
                        f"at the explicit limit may not exceed {MAX_STEPS:.0e} steps")
    p.add_argument("--cap", type=_number(float), default=100.0,
                   help="search up to this multiple of the explicit limit dx^2/(2D), > "
                        f"{CAP_RANGE[0]:g} and <= {CAP_RANGE[1]:g} (default 100): solvers "
                        "stable at any dt stop there, so it bounds their search")
    p.add_argument("--rtol", type=_number(float), default=0.005,
                   help="relative width of the final bisection bracket, "
                        f"{RTOL_RANGE[0]:g} to {RTOL_RANGE[1]:g} (default 0.005): finer "
                        "brackets spend runs on digits the instability criterion does not "
                        "determine, and one below float resolution would never close")
    p.set_defaults(func=cmd_stability)

    p = sub.add_parser("sweep", help="run a parameter sweep on dask.distributed into one store")
    p.add_argument("sweep", help="YAML sweep file")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="address of an existing dask scheduler (default: a local cluster)")
    p.add_argument("--workers", type=_number(int, 1, max_workers(), why_high="one per core"),
                   default=None, metavar="N",
                   help=f"worker processes of the local cluster, 1 to {max_workers()} (default: "
                        "one per core): each runs one single-threaded member at a time, so "
                        "more workers than cores would only share the cores")
    p.add_argument("--dashboard", action="store_true",
                   help="serve the local cluster's dask dashboard on 127.0.0.1 (its address "
                        "is printed); without it none is started")
    p.add_argument("--out", help="store path (default: the sweep's output.path)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing store instead of resuming it")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.add_argument("--force", action="store_true",
                   help="run even if the memory or disk estimate exceeds what is available")
    p.set_defaults(func=cmd_sweep)

    from .gradients.command import add_parser as add_fit_parser

    add_fit_parser(sub, _number)
    return parser


def main(argv=None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser("run" if words[:1] == ["run"] else None)
    args = parser.parse_args(argv)
    # Ctrl-C, SIGTERM (a batch scheduler's time-out) and SIGHUP stop the time loop as a
    # KeyboardInterrupt, also when a shell script set SIGINT to "ignore" for background jobs.
    signals.install()
    try:
        return args.func(args)
    except CaseError as exc:
        _say_error(str(exc))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        _say_error(f"interrupted ({exc})" if str(exc) else "interrupted")
        return signals.exit_status(exc)
    except StoreWriteError as exc:  # e.g. a sweep's final status on a full disk
        _say_error(str(exc))
        return EXIT_FAILED
    except BrokenPipeError:
        return EXIT_OK
    finally:
        if argv is None:  # a process of its own: its exit status is chosen, keep it
            signals.ignore_from_now()


def exit_process(status: int):
    """End ``python -m fhnpde`` with ``status`` as a normal exit would, less the interpreter's
    teardown: the atexit handlers run and stdout and stderr are flushed, then ``os._exit``
    ends the process without freeing every module and object one by one (12-13 ms after a
    run, numpy's and the case schema's modules: docs/performance.md). The normal exit is
    taken instead where something may still need it: another non-daemon thread alive, a
    tracer or profiler attached (``python -m cProfile -m fhnpde`` prints its report after
    the module ends), or a flush that fails (Python then reports it as usual)."""
    import atexit

    # threads an exit waits for are threading's (imported by whoever started one)
    threading = sys.modules.get("threading")
    others = threading is not None and any(
        t is not threading.main_thread() and not t.daemon for t in threading.enumerate())
    if (not isinstance(status, int) or sys.gettrace() is not None
            or sys.getprofile() is not None or others):
        sys.exit(status)
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        sys.exit(status)
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
