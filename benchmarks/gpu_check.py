"""GPU check: every solver on cupy and on torch-CUDA, the CUDA cyclic-reduction kernel and the
TensorRT runtime, against the CPU.

On a machine with a CUDA GPU it prints one table: for each solver and case (the runs of
``tests/test_array_api.py``: explicit, adaptive, crank-nicolson and split on divergent and
impulse_train, adaptive on divergent_adaptive, euler, rk4 and crank-nicolson on cell_ensemble),
each GPU path's largest difference from the CPU run (numpy backend, the same tridiagonal method)
and its wall time against the numba backend's (warm: a first run compiles and is not timed; the
median of ``--repeats``). Then the same for the ``cyclic-reduction-cuda`` kernel (a batch of
random diagonally dominant systems against scipy's LAPACK solve, timed against ``thomas``) and
for the TensorRT runtime of ``models/itnn_cable`` (its engine built into a temporary copy;
outputs against onnxruntime on the CPU, float32). A path whose library is missing is a row
saying so. Agreement: within 1e-10 for float64 solvers, 1e-3 for the float32 TensorRT engine;
the last line says whether everything agreed, and the exit status is 1 if not.

On a machine without a CUDA GPU it says so in one line and exits 0.

    python benchmarks/gpu_check.py [--repeats 3] [--tol 1e-10]
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES = ROOT / "cases"
CABLE = ["explicit", "adaptive", "crank-nicolson", "split"]
POINT = ["euler", "rk4", "crank-nicolson"]
TRIDIAGONAL = "cyclic-reduction"  # the tridiagonal method that runs on device arrays
TORCH_DEVICE = "cuda"
SYSTEMS = (1024, 801)  # batch and size of the tridiagonal check
RUNS = [
    *[("divergent.yaml", m, ["time.t_end=20", "time.save_every=5"]) for m in CABLE],
    *[("impulse_train.yaml", m, ["time.t_end=40", "time.save_every=10"]) for m in CABLE],
    *[("cell_ensemble.yaml", m, ["time.t_end=20", "time.save_every=5"]) for m in POINT],
    ("divergent_adaptive.yaml", "adaptive", ["time.t_end=20", "time.save_every=5"]),
]


def gpu_found() -> str | None:
    """A line naming the GPU, or None when torch, cupy and numba.cuda find none."""
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    from fhnpde.backends import cupy_usable

    if cupy_usable():
        return "a CUDA GPU (cupy)"
    if importlib.util.find_spec("numba") is not None:
        from numba import cuda

        if cuda.is_available():
            return "a CUDA GPU (numba.cuda)"
    return None


def case_for(name, method, sets, backend, tridiagonal):
    from fhnpde.case import load_case

    extra = ["time.dt=0.1"] if method in ("crank-nicolson", "split") and "cell" not in name else []
    return load_case(CASES / name, [*sets, *extra, f"solver.method={method}",
                                    f"solver.backend={backend}",
                                    f"solver.tridiagonal={tridiagonal}"])


def run(case, repeats, **where):
    """(v, w at every output as numpy, median wall time of the warm runs)."""
    from fhnpde.driver import BlowUpGuard, build_solver, integrate, run_layout
    from fhnpde.store import MemoryRecorder

    times, ds = [], None
    for r in range(repeats + 1):
        problem, solver = build_solver(case, **where)
        recorder = MemoryRecorder(run_layout(case, problem, solver))
        t0 = time.perf_counter()
        result = integrate(solver, solver.init(), case, [BlowUpGuard(), recorder])
        synchronize()
        if r:  # the first run compiles kernels and warms the device
            times.append(time.perf_counter() - t0)
        if result.status != "complete":
            raise RuntimeError(f"{result.status}: {result.message}")
        ds = recorder.dataset()
    return np.stack([ds["v"].values, ds["w"].values]), statistics.median(times or [0.0])


def synchronize() -> None:
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
        sys.modules["torch"].cuda.synchronize()
    if "cupy" in sys.modules:
        sys.modules["cupy"].cuda.Device().synchronize()


def row(label, path, diff, seconds, reference, tol):
    if isinstance(diff, str):
        return [label, path, diff, "", ""], True
    ok = diff <= tol
    speed = f"{reference / seconds:.3g}x" if seconds and reference else ""
    return [label, path, f"{diff:.2e}{'' if ok else ' FAIL'}",
            f"{seconds * 1e3:.1f} ms" if seconds else "", speed], ok


def solver_rows(repeats, tol):
    from fhnpde.backends import cupy_usable

    torch_cuda = (importlib.util.find_spec("torch") is not None
                  and sys.modules.setdefault("torch", __import__("torch")).cuda.is_available())
    rows, ok = [], True
    for name, method, sets in RUNS:
        label = f"{method} / {name.removesuffix('.yaml')}"
        cpu, _ = run(case_for(name, method, sets, "numpy", TRIDIAGONAL), 0)
        _, numba_s = run(case_for(name, method, sets, "numba", "thomas"), repeats)
        paths = []
        if cupy_usable():
            paths.append(("cupy", lambda n=name, m=method, s=sets:
                          run(case_for(n, m, s, "cupy", TRIDIAGONAL), repeats)))
        else:
            rows.append([label, "cupy", "cupy not usable here", "", ""])
        if torch_cuda:
            paths.append(("torch-cuda", lambda n=name, m=method, s=sets:
                          run(case_for(n, m, s, "torch", TRIDIAGONAL), repeats,
                              device=TORCH_DEVICE)))
        else:
            rows.append([label, "torch-cuda", "torch finds no CUDA device", "", ""])
        for path, go in paths:
            try:
                values, seconds = go()
                diff = float(np.max(np.abs(values - cpu)))
            except Exception as exc:  # report and go on: the table is the result
                diff, seconds = f"error: {type(exc).__name__}: {exc}"[:120], None
            r, good = row(label, path, diff, seconds, numba_s, tol)
            rows.append(r)
            ok = ok and good and not isinstance(diff, str)
    return rows, ok


def tridiagonal_rows(repeats, tol):
    from scipy.linalg import solve_banded

    from fhnpde import tridiagonal

    rng = np.random.default_rng(0)
    batch, n = SYSTEMS
    lower, upper = rng.uniform(-1, 1, (2, batch, n))
    diag = 2.5 + rng.uniform(0, 1, (batch, n))
    rhs = rng.standard_normal((batch, n))
    ref = np.stack([solve_banded((1, 1), np.stack([np.r_[0, upper[j, :-1]], diag[j],
                                                   np.r_[lower[j, 1:], 0]]), rhs[j])
                    for j in range(batch)])

    def timed(method, to_device, back):
        args = [to_device(a) for a in (lower, diag, upper, rhs)]
        out = tridiagonal.solve(*args, method=method)  # warm-up, compiles
        times = []
        for _ in range(repeats):
            synchronize()
            t0 = time.perf_counter()
            out = tridiagonal.solve(*args, method=method)
            synchronize()
            times.append(time.perf_counter() - t0)
        return back(out), statistics.median(times)

    _, thomas_s = timed("thomas", lambda a: a, lambda a: a)
    label = f"tridiagonal {batch} x {n}"
    try:
        from numba import cuda

        x, seconds = timed("cyclic-reduction-cuda", cuda.to_device,
                           lambda a: a.copy_to_host() if hasattr(a, "copy_to_host") else a)
        diff = float(np.max(np.abs(x - ref)))
    except Exception as exc:
        diff, seconds = f"error: {type(exc).__name__}: {exc}"[:120], None
    r, good = row(label, "cyclic-reduction-cuda", diff, seconds, thomas_s, tol)
    return [r], good and not isinstance(diff, str)


def tensorrt_rows(tol32):
    label = "itnn_cable surrogate"
    if importlib.util.find_spec("tensorrt") is None:
        return [[label, "tensorrt", "tensorrt not installed", "", ""]], True
    try:
        from surrogates.export import build_engine
        from surrogates.runtime import box_inputs, model_files, open_runtime

        with tempfile.TemporaryDirectory() as tmp:
            model = Path(tmp) / "itnn_cable"
            shutil.copytree(ROOT / "models" / "itnn_cable", model)
            build_engine(model / "model.onnx", model / "model.engine")
            cpu = open_runtime(model_files(model, "onnxruntime"), "onnxruntime")
            trt = open_runtime(model_files(model, "tensorrt"), "tensorrt", device="cuda")
            x = box_inputs(cpu.meta, 1 << 16, seed=1)
            want = np.asarray(cpu(x))
            import torch

            xd = torch.as_tensor(x, device="cuda")
            trt(xd)
            synchronize()
            t0 = time.perf_counter()
            got = trt(xd)
            synchronize()
            seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            cpu(x)
            cpu_s = time.perf_counter() - t0
            from fhnpde.backends import to_numpy

            diff = float(np.max(np.abs(to_numpy(got) - want)))
    except Exception as exc:
        diff, seconds, cpu_s = f"error: {type(exc).__name__}: {exc}"[:120], None, None
    r, good = row(label, "tensorrt (vs onnxruntime cpu)", diff, seconds, cpu_s, tol32)
    return [r], good and not isinstance(diff, str)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tol", type=float, default=1e-10)
    args = parser.parse_args(argv)
    gpu = gpu_found()
    if gpu is None:
        print("gpu_check: no CUDA GPU here (torch, cupy and numba.cuda find none); "
              "nothing to check")
        return 0
    print(f"gpu_check on {gpu}")
    rows, ok = solver_rows(args.repeats, args.tol)
    more, ok2 = tridiagonal_rows(args.repeats, args.tol)
    trt, ok3 = tensorrt_rows(1e-3)
    table = [["run", "path", "max |diff| vs CPU", "time", "speed vs numba/cpu"], *rows, *more,
             *trt]
    widths = [max(len(str(r[i])) for r in table) for i in range(5)]
    for r in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    everything = ok and ok2 and ok3
    print("all GPU paths agree with the CPU" if everything else "SOME GPU PATHS DISAGREE OR FAILED")
    return 0 if everything else 1


if __name__ == "__main__":
    sys.exit(main())
