"""Data scarcity on Problem A: PINN vs DDNN with 10 / 100 / 1,000 training points, many seeds.

    .venv/bin/python benchmarks/surrogates_data_scarcity.py [--seeds 20] [--sizes 10 100 1000]
        [--iterations 20000] [--out runs/surrogates/scarcity]
        [--figure docs/img/surrogates-scarcity-curves.png]

The protocol (docs/surrogates.md, "Data scarcity: PINN vs DDNN"):

- Seed s (0 .. seeds-1) of size N draws N training points of the Problem A trajectory
  (stratified times on the solver's grid, surrogates.data.trajectory_points, data seed
  100 + s) and initialises the network with torch seed s; the DDNN and the PINN of seed s
  get the same points and the same initial weights.
- Nothing else is seen in training: no validation set drives the learning rate or picks a
  checkpoint. Both train full-batch Adam for the same fixed budget under the same fixed
  schedule (lr held, then decayed 100x), and the final weights are the result. The PINN
  adds the physics residual at 512 fresh collocation times per iteration and the initial
  state, as in the project's trainer (surrogates.train.Objective).
- The test set is the dense trajectory at the 2,500 midpoints t = (k + 1/2) 0.01 of the
  training grid (RK4 at dt 0.005): disjoint from every training set by construction, and
  used only to measure the MAE (and to draw the curves, never to choose anything).
- All seeds of one (size, model) train as one batched ensemble (surrogates.ensemble), on
  one thread with deterministic algorithms: the same command gives the same numbers.

Writes OUT/results.md (the table), OUT/results.json (per-seed errors and statistics),
OUT/curves.csv (training loss and test MAE every --record-every iterations, per member)
and the figure of the training curves.
"""

from __future__ import annotations

import argparse
import json
import time
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
    Problem,
    TrainSpec,
    member,
    plateau_change,
    train_ensemble,
)
from surrogates.models import predict

KINDS = ("ddnn", "pinn")
WIDTHS = [32, 32, 32]
# converged: at the held learning rate, the training loss fell by less than this fraction
# over the last fifth of that phase (the decay that follows only removes Adam's noise), or
# the final loss is below FLOOR (the points interpolated to float32 resolution)
CONVERGED = 0.25
FLOOR = 1e-8


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


def training_sets(cfg, size: int, seeds: int) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for s in range(seeds):
        x, y = trajectory_points(cfg, SampleSpec(size=size, seed=100 + s))
        xs.append(x[:, 0])
        ys.append(y)
    return np.stack(xs), np.stack(ys)


def test_errors(models, t_test: np.ndarray, y_test: np.ndarray) -> list[dict[str, float]]:
    out = []
    for m in models:
        err = np.abs(predict(m, t_test[:, None]) - y_test)
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
    lines = ["| points | model | converged | median loss drop, end of held lr | median loss "
             "drop, last fifth | median test-MAE change, last fifth | final train loss "
             "(median) | wall s |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for size in sizes:
        for kind in KINDS:
            r = results["runs"][f"{kind}-{size}"]
            held = np.asarray(r["loss_drop_held_phase"])
            done = (held < CONVERGED) | (np.asarray(r["final_loss"]) < FLOOR)
            lines.append(
                f"| {size} | {kind.upper()} | {int(np.sum(done))}/{len(held)} "
                f"| {np.median(held):.3f} | {np.median(r['loss_drop_last_fifth']):.3f} "
                f"| {np.median(r['mae_change_last_fifth']):+.3f} "
                f"| {fmt(float(np.median(r['final_loss'])))} | {r['wall_s']:.0f} |")
    return "\n".join(lines)


def write_curves(path: Path, curves: list[tuple[str, int, object]]) -> None:
    rows = ["model,points,iteration,lr,member,train_loss,data_loss,physics_loss,ic_loss,"
            "test_mae"]
    for kind, size, h in curves:
        total, data, phys, ic, mae = (h.array(n) for n in
                                      ("total", "data", "physics", "ic", "monitor"))
        for i, it in enumerate(h.iterations):
            for e in range(total.shape[1]):
                rows.append(f"{kind},{size},{it},{h.lr[i]:.3e},{e},{total[i, e]:.6e},"
                            f"{data[i, e]:.6e},{phys[i, e]:.6e},{ic[i, e]:.6e},"
                            f"{mae[i, e]:.6e}")
    path.write_text("\n".join(rows) + "\n")


def plot_curves(path: Path, curves: list[tuple[str, int, object]], sizes: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(sizes), figsize=(4.2 * len(sizes), 6.4), sharex=True,
                             squeeze=False)
    colours = {"ddnn": "tab:blue", "pinn": "tab:red"}
    for kind, size, h in curves:
        col = sizes.index(size)
        it = np.asarray(h.iterations)
        for row, name in enumerate(("total", "monitor")):
            ax = axes[row, col]
            vals = h.array(name)
            ax.semilogy(it, vals, color=colours[kind], alpha=0.12, lw=0.6)
            ax.semilogy(it, np.median(vals, 1), color=colours[kind], lw=2,
                        label=f"{kind.upper()} (median)")
    for col, size in enumerate(sizes):
        axes[0, col].set_title(f"{size} training points")
        axes[1, col].set_xlabel("iteration")
    axes[0, 0].set_ylabel("training loss (normalised)")
    axes[1, 0].set_ylabel("test MAE (reported only)")
    axes[0, 0].legend(loc="upper right", fontsize=8)
    fig.suptitle("Problem A, PINN vs DDNN: every seed (thin) and the median (thick)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--iterations", type=int, default=20000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--record-every", type=int, default=250)
    ap.add_argument("--out", default="runs/surrogates/scarcity")
    ap.add_argument("--figure", default="docs/img/surrogates-scarcity-curves.png")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite OUT/results.md from OUT/results.json without training")
    args = ap.parse_args()
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
    tt, yt = torch.as_tensor(t_test, dtype=torch.float32), torch.as_tensor(y_test,
                                                                          dtype=torch.float32)

    def monitor(model):
        return (model(tt) - yt).abs().mean((1, 2)).numpy()

    results: dict = {"protocol": {
        "problem": "A", "seeds": args.seeds, "sizes": args.sizes, "widths": WIDTHS,
        "activation": "tanh", "iterations": args.iterations, "lr": args.lr,
        "schedule": "held for 50 %, then exponential decay to 1 % of lr",
        "collocation": problem.collocation, "data_seeds": "100 + s", "init_seeds": "s",
        "collocation_seed": spec.seed, "test_points": len(t_test),
        "test_reference_gap": gap, "converged_if_loss_drop_below": CONVERGED,
        "converged_if_final_loss_below": FLOOR,
        "torch": torch.__version__}, "runs": {}, "stats": {}}
    curves = []
    for size in args.sizes:
        x, y = training_sets(cfg, size, args.seeds)
        for kind in KINDS:
            t0 = time.perf_counter()
            model = BatchedMLP([member(kind, WIDTHS, d.t_end, y[s], s)
                                for s in range(args.seeds)])
            hist = train_ensemble(model, kind, x, y, problem, spec, monitor=monitor)
            wall = time.perf_counter() - t0
            errors = test_errors(model.to_surrogates(kind), t_test, y_test)
            mae_curve = hist.array("monitor")
            k = max(1, round(0.2 * (len(mae_curve) - 1)))
            results["runs"][f"{kind}-{size}"] = {
                "wall_s": wall, "errors": errors,
                "final_loss": hist.array("total")[-1].tolist(),
                "loss_drop_held_phase": plateau_change(hist, 0.2, until=spec.hold).tolist(),
                "loss_drop_last_fifth": plateau_change(hist, 0.2).tolist(),
                "mae_change_last_fifth": (mae_curve[-1] / mae_curve[-1 - k] - 1).tolist()}
            torch.save(model.state_dict(), out / f"{kind}-{size}.pt")
            curves.append((kind, size, hist))
            print(f"{kind} {size}: median test MAE "
                  f"{np.median([e['mae'] for e in errors]):.3e} ({wall:.0f} s)", flush=True)
        pinn = [e["mae"] for e in results["runs"][f"pinn-{size}"]["errors"]]
        ddnn = [e["mae"] for e in results["runs"][f"ddnn-{size}"]["errors"]]
        results["stats"][str(size)] = compare_errors(pinn, ddnn)
    results["wall_s"] = time.perf_counter() - wall0
    write_curves(out / "curves.csv", curves)
    plot_curves(Path(args.figure), curves, args.sizes)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(report(results, args.sizes, out))


def report(results: dict, sizes: list[int], out: Path) -> str:
    """The two tables, also written to OUT/results.md."""
    p = results["protocol"]
    text = (table(results, sizes) + "\n\n" + convergence_table(results, sizes)
            + f"\n\n{p['seeds']} seeds, {p['iterations']} iterations; wall "
            f"{results['wall_s']:.0f} s; test reference gap (dt vs dt/2) "
            f"{p['test_reference_gap']:.1e}\n")
    (out / "results.md").write_text(text)
    return text


if __name__ == "__main__":
    main()
