"""Export a trained model: ONNX with a dynamic batch axis, and a TensorRT engine built from it.

``python -m surrogates export MODEL --format onnx|tensorrt [--fp16] [--max-batch N]``

ONNX (:func:`export_onnx`)
    The :class:`~surrogates.models.Surrogate` (normalisation, MLP, de-normalisation and the
    ITNN's residual ``+ (v, w)`` in one graph) is exported by ``torch.onnx.export`` (the
    torch.export-based exporter) with input ``x`` of shape ``(batch, n_in)`` and output ``y``
    of shape ``(batch, 2)``, ``batch`` symbolic. The file is then checked against the torch
    model on ``check_points`` random inputs drawn uniformly in the model's training box
    (``model.json: state_box``, the current from its box or fixed value), run at several
    batch sizes: the largest absolute difference is reported and must stay within
    ``1e-5`` (fp32). Written to ``MODEL/model.onnx``.

    ``--fp16`` writes ``MODEL/model-fp16.onnx``, a *typed* mixed-precision graph: float32
    input and output, the normalisation and the residual addition in float32, the MLP's
    weights and activations in float16 (explicit Casts around it). A strongly typed TensorRT
    network takes its precisions from exactly these types. It is checked the same way
    against the fp32 torch model (tolerance ``1e-3``).

    The checker runs the ONNX file with onnxruntime when onnxruntime has kernels for every
    node, and otherwise with ``onnx.reference.ReferenceEvaluator`` (e.g. float16 kernels the
    CPU build lacks); the report says which.

TensorRT (:func:`build_engine`, TensorRT 10/11 Python API)
    The ONNX file just written and checked (``model.onnx``, or ``model-fp16.onnx`` with
    ``--fp16``) is parsed into a **strongly typed** network
    (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``: precisions come from the graph's
    types, not from builder flags such as the removed/deprecated ``BuilderFlag.FP16``), with
    one optimisation profile for the batch axis ``(1, opt_batch, max_batch)``, and serialized
    to ``MODEL/model.engine`` (``model-fp16.engine``). Engines are specific to the GPU and
    TensorRT version they are built with: build them on the machine that runs them.

A summary of every export (file, max difference, tolerance, checker, versions) is kept in
``MODEL/export.json``.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fhnpde.case import CaseError

from .runtime import ENGINE, ENGINE_FP16, ONNX, ONNX_FP16, box_inputs, read_model_json

__all__ = ["ExportResult", "box_inputs", "build_engine", "check_onnx", "export", "export_onnx"]

TOLERANCE = {"fp32": 1e-5, "fp16": 1e-3}
CHECK_BATCHES = (1, 7, 1000)
OPSET = 18
EXPORT_SUMMARY = "export.json"


@dataclass
class ExportResult:
    path: str
    format: str
    precision: str
    max_abs_diff: float | None = None
    tolerance: float | None = None
    checker: str | None = None
    batch_sizes: tuple[int, ...] = ()
    check_points: int = 0

    def line(self) -> str:
        if self.max_abs_diff is None:
            return f"{self.path}: {self.format} {self.precision} engine built"
        return (f"{self.path}: {self.format} {self.precision}, max |onnx - torch| = "
                f"{self.max_abs_diff:.3g} (tolerance {self.tolerance:g}) on {self.check_points} "
                f"inputs in the training box, batches {', '.join(map(str, self.batch_sizes))} "
                f"[{self.checker}]")


def _typed_fp16(model):
    """The model with its MLP in float16 and everything around it in float32."""
    import torch
    from torch import nn

    class TypedHalf(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = copy.deepcopy(m)
            self.net = self.m.net.half()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            m = self.m
            z = ((x - m.in_offset) / m.in_scale).to(torch.float16)
            return m.combine(x, self.net(z).to(torch.float32))

    return TypedHalf(model).eval()


def _torch_export(module, n_in: int, path: Path, opset: int = OPSET) -> None:
    import logging

    import torch

    # the exporter logs one line per torchvision operator it skips: not our concern
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)

    example = torch.zeros((16, n_in), dtype=torch.float32)
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (example,), dynamo=True, opset_version=opset,
                                    input_names=["x"], output_names=["y"],
                                    dynamic_shapes=({0: batch},), verbose=False)
    program.save(str(path))


def _run_onnx(path: Path, x: np.ndarray) -> tuple[np.ndarray, str]:
    """Outputs of an ONNX file; onnxruntime if it can load the graph, else the reference."""
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime as ort

        try:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # e.g. NOT_IMPLEMENTED for a float16 kernel
            reason = str(exc).splitlines()[0][:120]
        else:
            name, out = sess.get_inputs()[0].name, sess.get_outputs()[0].name
            return sess.run([out], {name: x})[0], "onnxruntime"
    else:
        reason = "onnxruntime not installed"
    from onnx.reference import ReferenceEvaluator

    ref = ReferenceEvaluator(str(path))
    return np.asarray(ref.run(None, {"x": x})[0]), f"onnx reference evaluator ({reason})"


def check_onnx(path: str | Path, model, meta: dict[str, Any], *, precision: str = "fp32",
               points: int = 4096, batches: tuple[int, ...] = CHECK_BATCHES,
               seed: int = 0) -> ExportResult:
    """Largest |ONNX - torch| on random inputs in the training box, at several batch sizes.

    Also checks that the file is valid ONNX and that its batch axis is symbolic.
    """
    import onnx
    import torch

    path = Path(path)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    if dims[0].dim_param == "" or dims[0].HasField("dim_value"):
        raise RuntimeError(f"{path}: the batch axis of input {proto.graph.input[0].name!r} is "
                           "not dynamic")
    x = box_inputs(meta, points, seed)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    got, checker = _run_onnx(path, x)
    diff = float(np.max(np.abs(got.astype(np.float64) - want)))
    for b in batches:  # dynamic batch: every size gives the rows of the full batch
        part, _ = _run_onnx(path, x[:b])
        diff = max(diff, float(np.max(np.abs(part.astype(np.float64) - want[:b]))))
    tol = TOLERANCE[precision]
    result = ExportResult(str(path), "onnx", precision, diff, tol, checker,
                          (points, *batches), points)
    if not diff <= tol:
        raise RuntimeError(f"{path}: the ONNX model differs from the torch model by {diff:.3g}, "
                           f"more than the {precision} tolerance {tol:g}")
    return result


def export_onnx(model_dir: str | Path, *, fp16: bool = False, out: str | Path | None = None,
                check: bool = True) -> ExportResult:
    """Write ``model.onnx`` (or ``model-fp16.onnx``) into the model directory and check it."""
    from .models import load_model

    d = Path(model_dir)
    model, meta = load_model(d, key="MODEL")
    path = Path(out) if out is not None else d / (ONNX_FP16 if fp16 else ONNX)
    module = _typed_fp16(model) if fp16 else model
    _torch_export(module, len(meta["inputs"]), path)
    precision = "fp16" if fp16 else "fp32"
    if not check:
        return ExportResult(str(path), "onnx", precision)
    return check_onnx(path, model, meta, precision=precision)


def build_engine(onnx_path: str | Path, engine_path: str | Path, *, min_batch: int = 1,
                 opt_batch: int = 1 << 20, max_batch: int = 1 << 24,
                 workspace_bytes: int | None = None) -> Path:
    """Serialize a TensorRT engine of a (typed) ONNX file: strongly typed network, one
    optimisation profile ``(min_batch, opt_batch, max_batch)`` for the batch axis."""
    if importlib.util.find_spec("tensorrt") is None:
        raise CaseError("--format tensorrt needs the tensorrt package and an NVIDIA GPU "
                        "(pip install -e '.[gpu]'); the ONNX file it would build from is "
                        f"written and checked: {onnx_path}", key="--format")
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    profile = builder.create_optimization_profile()
    inp = network.get_input(0)
    n_in = int(inp.shape[1])
    opt = min(max(opt_batch, min_batch), max_batch)
    profile.set_shape(inp.name, (min_batch, n_in), (opt, n_in), (max_batch, n_in))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT could not build an engine from {onnx_path}")
    out = Path(engine_path)
    out.write_bytes(bytes(serialized))
    return out


def _record(model_dir: Path, result: ExportResult) -> None:
    summary_path = model_dir / EXPORT_SUMMARY
    try:
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    except (OSError, ValueError, RecursionError):
        summary = {}
    if not isinstance(summary, dict):  # not the summary export writes: start it afresh
        summary = {}
    entry = asdict(result)
    entry["path"] = Path(result.path).name
    import onnx
    import torch

    entry["versions"] = {"torch": torch.__version__, "onnx": onnx.__version__}
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        entry["versions"]["onnxruntime"] = onnxruntime.__version__
    summary[entry["path"]] = entry
    summary_path.write_text(json.dumps(summary, indent=2))


def export(model_dir: str | Path, fmt: str = "onnx", *, fp16: bool = False,
           max_batch: int = 1 << 24, report=None) -> list[ExportResult]:
    """The ``export`` command: ONNX (checked), then the TensorRT engine if asked for.

    ``report(line)`` is called with each result's summary line as soon as it is done.
    """
    d = Path(model_dir)
    if fmt not in ("onnx", "tensorrt"):
        raise CaseError(f"unknown format {fmt!r}; valid formats: onnx, tensorrt", key="--format")
    if not d.is_dir():
        raise CaseError("no such model directory; give the directory `python -m surrogates "
                        "train` wrote", source=str(d))
    meta = read_model_json(d, key="MODEL")
    if meta.get("kind") != "itnn":
        raise CaseError(f"is a {meta.get('kind')} model; export serves one-step (itnn) models, "
                        "the ones a reaction step runs", source=str(d))
    onnx_result = export_onnx(d, fp16=fp16)
    _record(d, onnx_result)
    if report is not None:
        report(onnx_result.line())
    results = [onnx_result]
    if fmt == "tensorrt":
        engine = d / (ENGINE_FP16 if fp16 else ENGINE)
        build_engine(onnx_result.path, engine, max_batch=max_batch)
        results.append(ExportResult(str(engine), "tensorrt", onnx_result.precision))
        _record(d, results[-1])
        if report is not None:
            report(results[-1].line())
    return results
