"""``python -m surrogates generate|train|search|evaluate|export|wave``.

    python -m surrogates generate CONFIG [--set KEY=VALUE ...] [--overwrite]
    python -m surrogates train CONFIG [--set ...] [--out DIR] [--overwrite] [--quiet]
    python -m surrogates search CONFIG [--set ...] [--scheduler ADDRESS] [--workers N] [--count N]
                                [--out DIR] [--dashboard]
    python -m surrogates evaluate MODEL_DIR [--steps N] [--out DIR]
    python -m surrogates export MODEL_DIR --format onnx|tensorrt [--fp16] [--max-batch N]
    python -m surrogates wave CASE [--set KEY=VALUE ...] [--substeps N] [--json FILE]

``wave`` runs a neural-reaction case and the same case with the exact reaction and says
whether the wave is kept (activation times within 1 %, peak within 3 %; exit status 1 if not).

Exit status: 0 done; 2 bad input (one line on stderr, no traceback); 1 training diverged
(for a search: some candidate failed; the others are in the table and a rerun retries it);
130 interrupted (a training keeps its latest checkpoint and resumes from it; a search keeps
every finished model and skips it next time).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

from fhnpde.case import CaseError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _need_torch() -> None:
    if importlib.util.find_spec("torch") is None:
        raise CaseError("torch is not installed; install the extra: pip install -e '.[surrogates]'")


def cmd_generate(args) -> int:
    from .config import load_config
    from .data import generate, load_data

    cfg = load_config(args.config, args.set)
    path = generate(cfg, overwrite=args.overwrite)
    d = load_data(path)
    # the training arrays by name; a cable store's per-run arrays as a count of runs
    sizes = {k: v.shape for k, v in d.items()
             if k != "attrs" and hasattr(v, "shape") and not k.startswith("cable_")}
    runs = {split: int(d["attrs"].get(f"cables_{split}", 0)) for split in ("train", "val")}
    cables = (f", exact cable runs: {runs['train']} train, {runs['val']} validation"
              if any(runs.values()) else "")
    print(f"{cfg.name}: {d['attrs']['kind']} data in {d['attrs']['generation_wall_s']:.3g} s "
          f"-> {path} {sizes}{cables}")
    return EXIT_OK


def cmd_train(args) -> int:
    _need_torch()
    from .config import load_config
    from .train import summary_line, train

    cfg = load_config(args.config, args.set)
    result = train(cfg, out=args.out, quiet=args.quiet, overwrite=args.overwrite)
    print(summary_line(result))
    return EXIT_OK


def cmd_search(args) -> int:
    if args.scheduler and args.dashboard:
        raise CaseError(f"--dashboard: applies to the local cluster only, not to the one at "
                        f"--scheduler {args.scheduler}; leave out one of the two")
    _need_torch()
    from .config import load_config
    from .search import run_search

    cfg = load_config(args.config, args.set)
    res = run_search(cfg, scheduler=args.scheduler, workers=args.workers, count=args.count,
                     out=args.out, quiet=args.quiet, dashboard=args.dashboard)
    rows = [r for r in res["rows"] if r["status"] == "trained"]
    found = len(rows) - len(res["trained"])
    line = f"{cfg.name}: {len(rows)} models ({len(res['trained'])} trained now, {found} found"
    line += f", {len(res['failed'])} failed)" if res["failed"] else ")"
    print(f"{line} -> {res['directory']}/results.md, pareto.png")
    for r in rows[:5]:
        print(f"  {r['model']}: MAE {r['mae']:.3g}, max {r['max_error']:.3g}, "
              f"{r['parameters']} parameters, {r['inference_s_per_1e6']:.3g} s / 1e6 nodes")
    for ident, message in res["failed"].items():
        print(f"surrogates: error: candidate {ident} failed: {message}", file=sys.stderr)
    if res["failed"]:
        return EXIT_FAILED
    return EXIT_OK


def cmd_evaluate(args) -> int:
    _need_torch()
    from .diagnostics import evaluate, summary

    report = evaluate(args.model, out=args.out, steps=args.steps)
    print(summary(report))
    return EXIT_OK


def cmd_export(args) -> int:
    _need_torch()
    from .export import export

    export(args.model, args.format, fp16=args.fp16, max_batch=args.max_batch, report=print)
    return EXIT_OK


def cmd_wave(args) -> int:
    import json
    from pathlib import Path

    from fhnpde.loading import load_case

    from .wave import check_wave, report

    case = load_case(args.case, args.set)
    try:
        agreement, _, _ = check_wave(case, substeps=args.substeps)
    except CaseError as exc:  # a key of this case file: name the file, as fhnpde run does
        raise (exc if exc.source else exc.with_source(args.case)) from None
    print(report(case.name, agreement))
    if args.json:
        Path(args.json).write_text(json.dumps(agreement.as_dict(), indent=2) + "\n")
    return EXIT_OK if agreement.ok() else EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m surrogates", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def with_config(name, help_):
        s = sub.add_parser(name, help=help_)
        s.add_argument("config", help="surrogate config (YAML), e.g. surrogates/configs/itnn.yaml")
        s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, e.g. --set training.iterations=500")
        return s

    g = with_config("generate", "solve the training and validation data with fhnpde")
    g.add_argument("--overwrite", action="store_true")
    g.set_defaults(func=cmd_generate)
    t = with_config("train", "train the config's model (data generated if missing)")
    t.add_argument("--out", help="model directory (default: training.out)")
    t.add_argument("--overwrite", action="store_true", help="replace a trained model")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)
    s = with_config("search", "architecture search over shapes x sizes x activations")
    s.add_argument("--scheduler", metavar="ADDRESS",
                   help="dask scheduler of an existing cluster, e.g. tcp://host:8786 (its workers "
                        "must reach the search directory and the data); default: a local cluster")
    s.add_argument("--workers", type=int,
                   help="worker processes of the local cluster (default: search.workers)")
    s.add_argument("--count", type=int, help="number of architectures")
    s.add_argument("--out", help="search directory (default: search.out)")
    s.add_argument("--dashboard", action="store_true",
                   help="serve the local cluster's dask dashboard on 127.0.0.1 (its address is "
                        "printed); without it none is started")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_search)
    x = sub.add_parser("export", help="ONNX (checked against torch) or a TensorRT engine")
    x.add_argument("model", help="a trained model directory")
    x.add_argument("--format", choices=["onnx", "tensorrt"], default="onnx")
    x.add_argument("--fp16", action="store_true",
                   help="typed float16 MLP (float32 input, output and residual)")
    x.add_argument("--max-batch", type=int, default=1 << 24,
                   help="largest batch of the TensorRT optimisation profile (default 2^24)")
    x.set_defaults(func=cmd_export)
    e = sub.add_parser("evaluate", help="errors, rollout drift, phase-portrait similarity")
    e.add_argument("model", help="a trained model directory")
    e.add_argument("--steps", type=int,
                   help="ITNN rollout steps (default: diagnostics.rollout_steps)")
    e.add_argument("--out", help="where to write evaluation.json and plots (default: MODEL)")
    e.set_defaults(func=cmd_evaluate)
    w = sub.add_parser("wave", help="a neural-reaction case against its exact twin, whole run")
    w.add_argument("case", help="a case with reaction.kind: neural, e.g. "
                                "cases/divergent_neural.yaml")
    w.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a case key, e.g. --set model.params.a=0.08")
    w.add_argument("--substeps", type=int, default=100,
                   help="RK4 substeps per step of the exact reaction (default 100)")
    w.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    w.set_defaults(func=cmd_wave)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CaseError as exc:
        print(f"surrogates: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("surrogates: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RuntimeError as exc:
        if "diverged" in str(exc) or "data solver" in str(exc):
            print(f"surrogates: error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        raise


if __name__ == "__main__":
    sys.exit(main())
