"""``python -m fhnpde fit``: the command line of :func:`fhnpde.fit` (no torch at import).

Writes into ``--out`` (default ``runs/fit``): ``fitted.yaml`` (the case with the fitted
values), ``fit.csv`` (key, start, fitted, gradient at the end), ``loss.csv`` (the loss
history) and ``loss.png`` (its picture).
"""

from __future__ import annotations

import math
import sys

from ..case import CaseError

DEFAULT_OUT = "runs/fit"


def add_parser(sub, number) -> None:
    """Register ``fit`` on the subparsers ``sub`` (``number``: the CLI's numeric type)."""
    p = sub.add_parser("fit", help="fit case values to recorded data by gradient descent "
                                   "(solver.backend: torch)")
    p.add_argument("case", help="YAML case file (solver.backend: torch)")
    p.add_argument("--data", required=True, metavar="STORE",
                   help="a store of v (and w) on the case's output times and nodes, or on a "
                        "subset of them: the model is selected there")
    p.add_argument("--wrt", required=True, metavar="KEY[,KEY...]",
                   help="key paths to fit, e.g. model.params.a,model.params.eps,model.diffusion "
                        "(a bare parameter name or 'diffusion' is completed)")
    p.add_argument("--start", action="append", default=[], metavar="KEY=VALUE",
                   help="start value of a fitted key (repeatable; default: the case's value)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a case key, e.g. --set solver.backend=torch (repeatable)")
    p.add_argument("--method", choices=("lbfgs", "adam"), default="lbfgs")
    p.add_argument("--max-iter", type=number(int, 1), default=100,
                   help="iterations at most, >= 1 (default 100)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"folder for fitted.yaml, fit.csv, loss.csv, loss.png "
                        f"(default: {DEFAULT_OUT})")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_fit)


def parse_start(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not sep or not key.strip() or not math.isfinite(value):
            raise CaseError(f"expected KEY=NUMBER, e.g. model.params.a=0.15, got {item!r}",
                            key="--start")
        out[key.strip()] = value
    return out


def cmd_fit(args) -> int:
    from ..case import load_case
    from ..cli import _study_out_dir, _with_source
    from .fitting import fit

    case = load_case(args.case, args.set)
    start = parse_start(args.start)
    out = _study_out_dir(args)
    progress = not args.quiet and sys.stderr.isatty()
    try:
        result = fit(case, args.data, args.wrt, start, method=args.method,
                     max_iter=args.max_iter, progress=progress, data_key="--data")
    except CaseError as exc:
        if exc.key in ("--data", "--start", "method", "max_iter"):
            raise
        raise _with_source(exc, str(args.case)) from None
    write_outputs(result, out)
    if not args.quiet:
        print(result.table())
        print(f"loss {result.history[0]:.4g} -> {result.loss:.4g} in {result.iterations} "
              f"iterations ({result.evaluations} gradients, {result.seconds:.3g} s): "
              f"{result.message}")
        print(f"-> {out}/fitted.yaml, fit.csv, loss.csv, loss.png")
    return 0


def write_outputs(result, out) -> None:
    """fitted.yaml, fit.csv, loss.csv and loss.png in the folder ``out``."""
    (out / "fitted.yaml").write_text(result.case.to_yaml())
    rows = ["key,start,fitted,gradient"]
    rows += [f"{p},{result.start[p]!r},{v!r},{result.gradient.get(p, math.nan)!r}"
             for p, v in result.values.items()]
    (out / "fit.csv").write_text("\n".join(rows) + "\n")
    (out / "loss.csv").write_text(
        "iteration,loss\n" + "".join(f"{i},{v!r}\n" for i, v in enumerate(result.history)))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    positive = [max(v, 1e-300) for v in result.history]
    ax.semilogy(range(len(positive)), positive, "o-", ms=3)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (mean square error)")
    ax.set_title("fit: " + ", ".join(result.values))
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=120)
    plt.close(fig)
