"""Data scarcity on Problem A: PINN vs DDNN with 10 / 100 / 1,000 training points, many seeds.

    .venv/bin/python benchmarks/surrogates_data_scarcity.py [--seeds 20] [--first-seed 0]
        [--sizes 10 100 1000] [--iterations 2000] [--finish 1500] [--finish-tol 0.01]
        [--finish-window 500] [--out runs/surrogates/scarcity]
        [--figure docs/img/surrogates-scarcity-curves.png]
    .venv/bin/python benchmarks/surrogates_data_scarcity.py --merge OUT_A OUT_B ... --out OUT
        [--figure ...]   # one study from processes that ran different --sizes

The protocol (docs/surrogates.md, "Data scarcity: PINN vs DDNN"):

- Seed s of size N draws N training points of the Problem A trajectory (stratified times
  on the solver's grid, surrogates.data.trajectory_points, data seed 100 + s) and
  initialises the network with torch seed s; the DDNN and the PINN of seed s get the same
  points and the same initial weights.
- Nothing else is seen in training: no validation set drives the learning rate or picks a
  checkpoint. Both train in two phases with the same settings: full-batch Adam for
  --iterations under a fixed schedule (lr held, then decayed 100x; the PINN's physics
  residual at 512 fresh collocation times per iteration, as surrogates.train.Objective),
  then full-batch L-BFGS per member in float64 (the PINN's collocation times fixed, 1,024
  stratified) until the member's convergence test holds or --finish iterations
  (surrogates.ensemble.FinishSpec). The final weights are the result.
- The test set is the dense trajectory at the 2,500 midpoints t = (k + 1/2) 0.01 of the
  training grid (RK4 at dt 0.005): disjoint from every training set by construction, and
  used only to measure the MAE (and to draw the curves, never to choose anything).
- All seeds of one (size, model) run the Adam phase as one batched ensemble
  (surrogates.ensemble), on one thread with deterministic algorithms: the same command
  gives the same numbers.

Writes OUT/results.md (the tables), OUT/results.json (per-seed errors, convergence and
statistics), OUT/curves.csv (both phases: training loss, its parts, the gradient and the
test MAE, per member) and the figure of the training curves.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from fhnpde.models import Kinetics
from surrogates import CONFIGS
from surrogates.comparison import compare_errors
from surrogates.config import SampleSpec, load_config
from surrogates.data import solve_trajectories, trajectory_points
from surrogates.ensemble import (
    BatchedMLP,
    FinishSpec,
    Problem,
    TrainSpec,
    finish_ensemble,
    member,
    train_ensemble,
)

KINDS = ("ddnn", "pinn")
WIDTHS = [32, 32, 32]
ADAM_ITERATIONS = 2000
FINISH = FinishSpec(max_iterations=1500, window=500, tol=1e-2, collocation=1024)


def problem_config(dt: float | None = None):
    overrides = ["data.solver.backend=numpy"]
    if dt is not None:
        overrides.append(f"data.solver.dt={dt}")
    return load_config(CONFIGS / "problem_a.yaml", overrides)


def test_set(cfg) -> tuple[np.ndarray, np.ndarray, float]:
    """The trajectory at the midpoints of the training grid and, as a check of the reference,
    the largest difference between the two step sizes at the common grid points."""
    d = cfg.data
    dt = d.solver.dt
    fine = problem_config(dt / 2)
    initial = (d.fixed["v0"], d.fixed["w0"])
    vary = {"I": {"values": [float(d.fixed["I"])]}}
    _, times, v, w = solve_trajectories(fine, size=1, seed=0, vary=vary, t_end=d.t_end,
                                        save_every=dt / 2, initial=initial)
    _, _, vc, wc = solve_trajectories(cfg, size=1, seed=0, vary=vary, t_end=d.t_end,
                                      save_every=dt, initial=initial)
    gap = float(max(np.abs(v[0, ::2] - vc[0]).max(), np.abs(w[0, ::2] - wc[0]).max()))
    return times[1::2], np.stack([v[0, 1::2], w[0, 1::2]], 1), gap


def training_sets(cfg, size: int, seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for s in seeds:
        x, y = trajectory_points(cfg, SampleSpec(size=size, seed=100 + s))
        xs.append(x[:, 0])
        ys.append(y)
    return np.stack(xs), np.stack(ys)


def test_errors(model: BatchedMLP, t_test: np.ndarray, y_test: np.ndarray
                ) -> list[dict[str, float]]:
    """Every member's errors on the test set, in the model's precision (float64 after the
    finishing phase)."""
    dtype = model.in_scale.dtype
    with torch.no_grad():
        pred = model(torch.as_tensor(t_test, dtype=dtype)).numpy()
    out = []
    for e in range(model.size):
        err = np.abs(pred[e] - y_test)
        out.append({"mae": float(err.mean()), "mae_v": float(err[:, 0].mean()),
                    "mae_w": float(err[:, 1].mean()), "max_v": float(err[:, 0].max())})
    return out


def fmt(x: float) -> str:
    return f"{x:.2e}"


def table(results: dict, sizes: list[int]) -> str:
    lines = [
        "| points | DDNN median MAE [IQR] | PINN median MAE [IQR] | paper's t (Welch, raw) "
        "| p | Cohen d | paired t (log10) | p | Wilcoxon p | rank-biserial "
        "| PINN better | geo-mean PINN/DDNN |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for size in sizes:
        s = results["stats"][str(size)]
        lines.append(
            f"| {size} | {fmt(s['median_b'])} [{fmt(s['q1_b'])}, {fmt(s['q3_b'])}] "
            f"| {fmt(s['median_a'])} [{fmt(s['q1_a'])}, {fmt(s['q3_a'])}] "
            f"| {s['welch_t']:.2f} | {s['welch_p']:.2g} | {s['cohen_d']:.2f} "
            f"| {s['paired_log_t']:.2f} | {s['paired_log_p']:.2g} | {s['wilcoxon_p']:.2g} "
            f"| {s['rank_biserial']:.2f} | {int(s['a_wins'])}/{int(s['n'])} "
            f"| {s['gmean_ratio']:.3g} |")
    return "\n".join(lines)


def convergence_table(results: dict, sizes: list[int]) -> str:
    lines = ["| points | model | converged | by L-BFGS's own test | L-BFGS iterations "
             "(median [max]) | final loss (median) | final max abs gradient (median) "
             "| loss drop, last window (median) | test-MAE change, last window (median) "
             "| Adam s | L-BFGS s |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for size in sizes:
        for kind in KINDS:
            r = results["runs"][f"{kind}-{size}"]
            f = r["finish"]
            n = len(f["reason"])
            its = np.asarray(f["iterations"])
            lines.append(
                f"| {size} | {kind.upper()} "
                f"| {sum(x != 'budget' for x in f['reason'])}/{n} "
                f"| {sum(x == 'lbfgs' for x in f['reason'])}/{n} "
                f"| {np.median(its):.0f} [{its.max()}] "
                f"| {fmt(float(np.median(f['final_loss'])))} "
                f"| {fmt(float(np.median(f['final_grad'])))} "
                f"| {fmt(float(np.median(f['loss_drop_window'])))} "
                f"| {np.median(f['mae_change_window']):+.4f} "
                f"| {r['adam_s']:.0f} | {r['finish_s']:.0f} |")
    return "\n".join(lines)


def window_change(iterations: list[int], values: list[float], window: int) -> float:
    """values[-1] / (the value ``window`` iterations before the end) - 1."""
    back = [i for i, it in enumerate(iterations) if it <= iterations[-1] - window]
    return values[-1] / values[back[-1] if back else 0] - 1.0


def write_curves(path: Path, curves: list[tuple]) -> None:
    """Both phases of every member: Adam every --record-every iterations (the PINN's loss at
    that iteration's fresh collocation times), then L-BFGS every chunk (fixed collocation);
    ``iteration`` counts on from the Adam budget through the L-BFGS iterations."""
    rows = ["model,points,phase,iteration,lr,member,train_loss,data_loss,physics_loss,ic_loss,"
            "max_abs_grad,test_mae"]
    for kind, size, h, fin in curves:
        total, data, phys, ic, mae = (h.array(n) for n in
                                      ("total", "data", "physics", "ic", "monitor"))
        for i, it in enumerate(h.iterations):
            for e in range(total.shape[1]):
                rows.append(f"{kind},{size},adam,{it},{h.lr[i]:.3e},{e},{total[i, e]:.6e},"
                            f"{data[i, e]:.6e},{phys[i, e]:.6e},{ic[i, e]:.6e},,"
                            f"{mae[i, e]:.6e}")
        start = h.iterations[-1]
        for e, r in enumerate(fin):
            for i, it in enumerate(r.iterations):
                rows.append(f"{kind},{size},lbfgs,{start + it},,{e},{r.total[i]:.6e},"
                            f"{r.data[i]:.6e},{r.physics[i]:.6e},{r.ic[i]:.6e},"
                            f"{r.grad[i]:.3e},{r.monitor[i]:.6e}")
    path.write_text("\n".join(rows) + "\n")


def read_curves(path: Path) -> dict:
    """OUT/curves.csv as {(model, points): (adam, lbfgs)}: ``adam`` the Adam records as
    (iterations, {quantity: (records, members)}), ``lbfgs`` per member its L-BFGS records as
    (iterations counted on from the Adam budget, {quantity: values})."""
    import csv

    rows: dict = {}
    with open(path) as fh:
        for r in csv.DictReader(fh):
            rows.setdefault((r["model"], int(r["points"])), []).append(r)
    cells = {}
    for key, rs in rows.items():
        adam = [r for r in rs if r["phase"] == "adam"]
        its = sorted({int(r["iteration"]) for r in adam})
        members = 1 + max(int(r["member"]) for r in rs)
        quantities = {}
        for name, col in (("total", "train_loss"), ("monitor", "test_mae")):
            a = np.full((len(its), members), np.nan)
            index = {it: k for k, it in enumerate(its)}
            for r in adam:
                a[index[int(r["iteration"])], int(r["member"])] = float(r[col])
            quantities[name] = a
        lbfgs = []
        for e in range(members):
            mine = [r for r in rs if r["phase"] == "lbfgs" and int(r["member"]) == e]
            lbfgs.append((np.array([int(r["iteration"]) for r in mine]),
                          {"total": np.array([float(r["train_loss"]) for r in mine]),
                           "monitor": np.array([float(r["test_mae"]) for r in mine])}))
        cells[key] = ((np.array(its), quantities), lbfgs)
    return cells


def plot_curves(path: Path, cells: dict, sizes: list[int]) -> None:
    """The training loss and the test MAE of every member through both phases, per size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(sizes), figsize=(4.4 * len(sizes), 6.6), sharex="col",
                             squeeze=False)
    colours = {"ddnn": "tab:blue", "pinn": "tab:red"}
    for (kind, size), ((it, adam), lbfgs) in sorted(cells.items()):
        if size not in sizes:
            continue
        col = sizes.index(size)
        start = it[-1]
        end = max(r[0][-1] for r in lbfgs) - start
        grid = np.arange(0, end + 1, max(1, end // 200))
        for row, name in enumerate(("total", "monitor")):
            ax = axes[row, col]
            vals = adam[name]
            ax.semilogy(it, vals, color=colours[kind], alpha=0.12, lw=0.6)
            held = []
            for its, rec in lbfgs:
                y = rec[name]
                ax.semilogy(its, y, color=colours[kind], alpha=0.12, lw=0.6)
                # a member that stopped keeps its final value in the median
                held.append(np.exp(np.interp(grid, its - start,
                                             np.log(np.maximum(y, 1e-300)))))
            ax.semilogy(np.concatenate([it, start + grid]),
                        np.concatenate([np.median(vals, 1), np.median(held, 0)]),
                        color=colours[kind], lw=2, label=f"{kind.upper()} (median)")
            ax.axvline(start, color="0.5", ls="--", lw=0.8)
    for col, size in enumerate(sizes):
        axes[0, col].set_title(f"{size} training points")
        axes[1, col].set_xlabel("iteration (Adam, then L-BFGS after the dashed line)")
    axes[0, 0].set_ylabel("training loss (normalised)")
    axes[1, 0].set_ylabel("test MAE (reported only)")
    axes[0, 0].legend(loc="upper right", fontsize=8)
    fig.suptitle("Problem A, PINN vs DDNN: every seed (thin) and the median (thick)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def merge(parts: list[Path], out: Path, figure: Path) -> str:
    """One study from runs of the same protocol over different sizes (``--sizes`` split
    across processes): their results.json and curves.csv joined into OUT, the tables and the
    figure made from them."""
    results: dict = {"runs": {}, "stats": {}, "wall_s": 0.0, "process_wall_s": []}
    lines: list[str] = []
    sizes: list[int] = []
    for part in parts:
        r = json.loads((part / "results.json").read_text())
        protocol = {k: v for k, v in r["protocol"].items() if k != "sizes"}
        if "protocol" in results and results["protocol"] != protocol:
            raise SystemExit(f"{part}: another protocol than {parts[0]}; not merged")
        results["protocol"] = protocol
        results["runs"].update(r["runs"])
        results["stats"].update(r["stats"])
        results["process_wall_s"].append(r.get("wall_s", 0.0))
        results["wall_s"] = max(results["process_wall_s"])  # the processes ran side by side
        sizes += [int(x) for x in r["protocol"]["sizes"]]
        text = (part / "curves.csv").read_text().splitlines()
        lines += text if not lines else text[1:]
    sizes = sorted(set(sizes))
    results["protocol"]["sizes"] = sizes
    results["protocol"]["merged_from"] = [str(p) for p in parts]
    out.mkdir(parents=True, exist_ok=True)
    (out / "curves.csv").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    plot_curves(figure, read_curves(out / "curves.csv"), sizes)
    return report(results, sizes, out)


def stop_at(iterations: np.ndarray, loss: np.ndarray, budget: int, window: int,
            tol: float) -> int:
    """Index of the record where the finishing phase stops under FinishSpec's plateau test
    with ``budget`` L-BFGS iterations (the records are those of a run without the test)."""
    for k, it in enumerate(iterations):
        if it >= budget:
            return k
        back = np.nonzero(iterations <= it - window)[0]
        if len(back) and 1.0 - min(loss[k], loss[back[-1]]) / loss[back[-1]] < tol:
            return k
    return len(iterations) - 1


def budget_check(out: Path, budget: int, window: int, tol: float) -> str:
    """From a run with --finish-tol 0 (every member runs the whole --finish): the test MAE
    each member would have with the protocol's stop at ``budget`` and at twice that, and at
    the end of the run; per cell, the medians and the change of the median."""
    import csv

    rows: dict = {}
    with open(out / "curves.csv") as fh:
        for r in csv.DictReader(fh):
            if r["phase"] == "lbfgs":
                rows.setdefault((r["model"], int(r["points"]), int(r["member"])), []).append(
                    (int(r["iteration"]), float(r["train_loss"]), float(r["test_mae"])))
    lines = [f"| points | model | median MAE, stop at {budget} | median MAE, stop at "
             f"{2 * budget} | change of the median | median MAE at the run's end "
             "(iteration) | members stopped by the test at "
             f"{budget} / {2 * budget} |", "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    cells = sorted({(k[1], k[0]) for k in rows})
    for size, kind in cells:
        one, two, end, conv1, conv2, last = [], [], [], 0, 0, 0
        for (kd, sz, _), rec in sorted(rows.items()):
            if (kd, sz) != (kind, size):
                continue
            a = np.asarray(rec)
            its = a[:, 0] - a[0, 0]
            k1 = stop_at(its, a[:, 1], budget, window, tol)
            k2 = stop_at(its, a[:, 1], 2 * budget, window, tol)
            one.append(a[k1, 2])
            two.append(a[k2, 2])
            end.append(a[-1, 2])
            conv1 += its[k1] < budget
            conv2 += its[k2] < 2 * budget
            last = int(its[-1])
        m1, m2 = np.median(one), np.median(two)
        lines.append(f"| {size} | {kind.upper()} | {fmt(m1)} | {fmt(m2)} | {m2 / m1 - 1:+.3f} "
                     f"| {fmt(float(np.median(end)))} ({last}) | {conv1}/{len(one)} / "
                     f"{conv2}/{len(one)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--iterations", type=int, default=ADAM_ITERATIONS,
                    help="Adam iterations (the first phase)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--finish", type=int, default=FINISH.max_iterations,
                    help="most L-BFGS iterations per member (the finishing phase)")
    ap.add_argument("--finish-tol", type=float, default=FINISH.tol,
                    help="converged when the loss fell by less than this fraction over the "
                    "last --finish-window L-BFGS iterations (0: run the whole --finish)")
    ap.add_argument("--finish-window", type=int, default=FINISH.window)
    ap.add_argument("--record-every", type=int, default=100)
    ap.add_argument("--out", default="runs/surrogates/scarcity")
    ap.add_argument("--figure", default="docs/img/surrogates-scarcity-curves.png")
    ap.add_argument("--merge", nargs="+", type=Path, metavar="DIR",
                    help="join the OUT folders of runs over different --sizes into --out "
                    "(tables and figure)")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite OUT/results.md from OUT/results.json without training")
    ap.add_argument("--budget-check", type=int, metavar="BUDGET",
                    help="from OUT/curves.csv of a run with --finish-tol 0: the test MAE with "
                    "the protocol's stop at BUDGET and at 2 BUDGET L-BFGS iterations")
    args = ap.parse_args()
    if args.budget_check:
        print(budget_check(Path(args.out), args.budget_check, args.finish_window,
                           FINISH.tol))
        return
    if args.merge:
        print(merge(args.merge, Path(args.out), Path(args.figure)))
        return
    if args.report_only:
        results = json.loads((Path(args.out) / "results.json").read_text())
        print(report(results, results["protocol"]["sizes"], Path(args.out)))
        return
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wall0 = time.perf_counter()
    cfg = problem_config()
    d = cfg.data
    t_test, y_test, gap = test_set(cfg)
    kinetics = Kinetics.create(cfg.kinetics.name, cfg.kinetics.params)
    problem = Problem(kinetics, float(d.fixed["I"]), (d.fixed["v0"], d.fixed["w0"]), d.t_end,
                      collocation=cfg.model.pinn.collocation)
    spec = TrainSpec(iterations=args.iterations, lr=args.lr, warm_fraction=0.5,
                     final_factor=1e-2, record_every=args.record_every, seed=12345)
    finish = replace(FINISH, max_iterations=args.finish, tol=args.finish_tol,
                     window=args.finish_window)
    tt = torch.as_tensor(t_test, dtype=torch.float64)
    yt = torch.as_tensor(y_test, dtype=torch.float64)

    def monitor(model):
        dtype = model.in_scale.dtype
        return (model(tt.to(dtype)) - yt.to(dtype)).abs().mean((1, 2)).numpy()

    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    results: dict = {"protocol": {
        "problem": "A", "seeds": seeds, "sizes": args.sizes, "widths": WIDTHS,
        "activation": "tanh", "iterations": args.iterations, "lr": args.lr,
        "schedule": "held for 50 %, then exponential decay to 1 % of lr",
        "collocation": problem.collocation, "data_seeds": "100 + s", "init_seeds": "s",
        "collocation_seed": spec.seed, "test_points": len(t_test),
        "test_reference_gap": gap, "finish": asdict(finish),
        "torch": torch.__version__}, "runs": {}, "stats": {}}
    curves = []
    for size in args.sizes:
        x, y = training_sets(cfg, size, seeds)
        for kind in KINDS:
            t0 = time.perf_counter()
            model = BatchedMLP([member(kind, WIDTHS, d.t_end, y[i], s)
                                for i, s in enumerate(seeds)])
            hist = train_ensemble(model, kind, x, y, problem, spec, monitor=monitor)
            adam_errors = test_errors(model, t_test, y_test)
            t1 = time.perf_counter()
            fin = finish_ensemble(model, kind, x, y, problem, finish, monitor=monitor)
            t2 = time.perf_counter()
            errors = test_errors(model, t_test, y_test)
            w = finish.window
            results["runs"][f"{kind}-{size}"] = {
                "adam_s": t1 - t0, "finish_s": t2 - t1, "errors": errors,
                "adam_errors": adam_errors,
                "adam_final_loss": hist.array("total")[-1].tolist(),
                "finish": {
                    "reason": [r.reason for r in fin],
                    "iterations": [r.iterations[-1] for r in fin],
                    "evaluations": [r.evaluations for r in fin],
                    "final_loss": [r.total[-1] for r in fin],
                    "final_grad": [r.grad[-1] for r in fin],
                    "loss_drop_window": [-window_change(r.iterations, r.total, w)
                                         for r in fin],
                    "mae_change_window": [window_change(r.iterations, r.monitor, w)
                                          for r in fin]}}
            torch.save(model.state_dict(), out / f"{kind}-{size}.pt")
            curves.append((kind, size, hist, fin))
            print(f"{kind} {size}: median test MAE after Adam "
                  f"{np.median([e['mae'] for e in adam_errors]):.3e}, after L-BFGS "
                  f"{np.median([e['mae'] for e in errors]):.3e}; converged "
                  f"{sum(r.converged for r in fin)}/{len(fin)} "
                  f"({t1 - t0:.0f} s + {t2 - t1:.0f} s)", flush=True)
            (out / "results.json").write_text(json.dumps(results, indent=1))
            write_curves(out / "curves.csv", curves)
        pinn = [e["mae"] for e in results["runs"][f"pinn-{size}"]["errors"]]
        ddnn = [e["mae"] for e in results["runs"][f"ddnn-{size}"]["errors"]]
        results["stats"][str(size)] = compare_errors(pinn, ddnn)
    results["wall_s"] = time.perf_counter() - wall0
    plot_curves(Path(args.figure), read_curves(out / "curves.csv"), args.sizes)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(report(results, args.sizes, out))


def report(results: dict, sizes: list[int], out: Path) -> str:
    """The two tables, also written to OUT/results.md."""
    p = results["protocol"]
    text = (table(results, sizes) + "\n\n" + convergence_table(results, sizes)
            + f"\n\nseeds {p['seeds'][0]} .. {p['seeds'][-1]}, {p['iterations']} Adam "
            f"iterations, then L-BFGS {p['finish']}; wall "
            f"{results['wall_s']:.0f} s; test reference gap (dt vs dt/2) "
            f"{p['test_reference_gap']:.1e}\n")
    (out / "results.md").write_text(text)
    return text


if __name__ == "__main__":
    main()
