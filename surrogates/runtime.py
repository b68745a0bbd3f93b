"""Runtimes of a trained one-step model behind one interface: torch, onnxruntime, tensorrt.

A runtime maps a batch of physical inputs ``x`` of shape ``(n, n_in)`` (float32; for the
ITNN ``n_in = 3``: v, w, I) to the outputs ``y`` of shape ``(n, 2)`` (float32: v, w one
reaction interval later) in ONE call, whatever ``n``:

``torch``        the saved :class:`~surrogates.models.Surrogate` (``model.pt``), CPU or CUDA;
                 numpy in -> numpy out, torch tensors in -> torch out, other DLPack arrays
                 (cupy) in -> the same kind out, without copies on the device.
``onnxruntime``  the exported ``model.onnx`` (``python -m surrogates export MODEL --format
                 onnx``): CPUExecutionProvider, or CUDAExecutionProvider with device arrays
                 (cupy / torch CUDA) bound in place through an IOBinding.
``tensorrt``     a serialized engine (``--format tensorrt``), GPU only: inputs and outputs
                 stay on the device (cupy arrays or torch CUDA tensors), the engine reads and
                 writes them by address on the caller's current stream; no host copies.

torch, onnxruntime, tensorrt and cupy are imported when a runtime is opened, never at
``import surrogates.runtime`` (a case with ``runtime: onnxruntime`` does not need torch).

A model is named by its directory (the one ``python -m surrogates train`` writes) or by one
file inside it (``model.onnx``, ``model-fp16.onnx``, ``model.engine``, ...); the directory's
``model.json`` describes it (kinetics, dt_r, state box, normalisation).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fhnpde.case import CaseError

__all__ = ["RUNTIMES", "ModelFiles", "Runtime", "model_files", "open_runtime"]

# the names surrogates.models writes (repeated here so that reading them needs no torch)
METADATA = "model.json"
FORMAT = "surrogates-model/1"
WEIGHTS = "model.pt"
ONNX = "model.onnx"
ONNX_FP16 = "model-fp16.onnx"
ENGINE = "model.engine"
ENGINE_FP16 = "model-fp16.engine"

RUNTIMES = ("torch", "onnxruntime", "tensorrt")
_DEFAULT_FILE = {"torch": (WEIGHTS,), "onnxruntime": (ONNX, ONNX_FP16),
                 "tensorrt": (ENGINE, ENGINE_FP16)}
_SUFFIX = {"torch": (".pt",), "onnxruntime": (".onnx",), "tensorrt": (".engine", ".plan")}


@dataclass(frozen=True)
class ModelFiles:
    """A trained model: its directory, its ``model.json`` and the file a runtime loads."""

    directory: Path
    meta: dict[str, Any]
    artifact: Path


def read_model_json(directory: Path, key: str = "reaction.model") -> dict[str, Any]:
    path = directory / METADATA
    if not path.is_file():
        raise CaseError(f"no trained model at {directory} (no {METADATA}); train one with "
                        "`python -m surrogates train CONFIG` and give its directory", key=key)
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CaseError(f"{path} cannot be read as JSON ({exc.__class__.__name__}); train the "
                        "model again", key=key) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CaseError(f"{path} is not a surrogates model description", key=key)
    return meta


def model_files(model: str | Path, runtime: str, key: str = "reaction.model") -> ModelFiles:
    """Resolve a model directory or file for ``runtime`` (CaseError naming ``key``)."""
    if runtime not in RUNTIMES:
        raise CaseError(f"unknown runtime {runtime!r}; valid runtimes: {', '.join(RUNTIMES)}",
                        key=key.rsplit(".", 1)[0] + ".runtime" if "." in key else "runtime")
    path = Path(model)
    if not path.exists():
        raise CaseError(f"no such model directory or file {str(path)!r} (relative paths are "
                        "read from the current directory); give a trained model's directory",
                        key=key)
    if path.is_dir():
        directory = path
        candidates = [directory / name for name in _DEFAULT_FILE[runtime]]
        found = [c for c in candidates if c.is_file()]
        meta = read_model_json(directory, key)
        if not found:
            how = {"torch": "train it with `python -m surrogates train CONFIG`",
                   "onnxruntime": f"export it with `python -m surrogates export {directory} "
                                  "--format onnx`",
                   "tensorrt": f"build it on the GPU machine with `python -m surrogates export "
                               f"{directory} --format tensorrt`"}[runtime]
            raise CaseError(f"{directory} has no {' or '.join(_DEFAULT_FILE[runtime])} for "
                            f"runtime {runtime}; {how}", key=key)
        return ModelFiles(directory, meta, found[0])
    if path.suffix not in _SUFFIX[runtime]:
        raise CaseError(f"{path.name} is not a file runtime {runtime} loads (it reads "
                        f"{' or '.join(_SUFFIX[runtime])}); give the model directory", key=key)
    return ModelFiles(path.parent, read_model_json(path.parent, key), path)


# --- device arrays (cupy arrays, torch CUDA tensors), shared by onnxruntime and tensorrt ---


class _DeviceArrays:
    """Pointer, device, empty output and stream of a cupy array or a torch CUDA tensor."""

    def __init__(self, x):
        module = type(x).__module__.split(".")[0]
        if module not in ("cupy", "torch"):
            raise TypeError(f"a device runtime needs cupy arrays or torch CUDA tensors, got "
                            f"{type(x).__module__}.{type(x).__name__}")
        self.lib = importlib.import_module(module)
        self.is_torch = module == "torch"
        if self.is_torch and not x.is_cuda:
            raise TypeError("a device runtime needs torch CUDA tensors, got a CPU tensor")

    def pointer(self, a) -> int:
        return int(a.data_ptr()) if self.is_torch else int(a.data.ptr)

    def device_id(self, a) -> int:
        return int(a.device.index) if self.is_torch else int(a.device.id)

    def empty(self, like, shape: tuple[int, ...]):
        if self.is_torch:
            return self.lib.empty(shape, dtype=self.lib.float32, device=like.device)
        with like.device:
            return self.lib.empty(shape, dtype=self.lib.float32)

    def contiguous_f32(self, a):
        if self.is_torch:
            return a.to(self.lib.float32).contiguous()
        return self.lib.ascontiguousarray(a, dtype=self.lib.float32)

    def stream(self) -> int:
        if self.is_torch:
            return int(self.lib.cuda.current_stream().cuda_stream)
        return int(self.lib.cuda.get_current_stream().ptr)


# --- runtimes -------------------------------------------------------------------------------


class Runtime(ABC):
    """``runtime(x) -> y``: a batch (n, n_in) of float32 inputs -> (n, 2) float32 outputs."""

    name: str = ""
    device: str = "cpu"

    def __init__(self, files: ModelFiles):
        self.files = files
        self.meta = files.meta
        self.n_inputs = len(files.meta["inputs"])

    @abstractmethod
    def __call__(self, x):
        """Implemented by each method's subclass."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.files.artifact)!r}, device={self.device!r})"


class TorchRuntime(Runtime):
    """The saved torch module, evaluated under ``torch.inference_mode``."""

    name = "torch"

    def __init__(self, files: ModelFiles, device: str = "cpu"):
        super().__init__(files)
        import torch

        from .models import load_model

        if device == "cuda" and not torch.cuda.is_available():
            raise CaseError("runtime torch on the GPU needs a CUDA build of torch and a GPU; "
                            "use solver.backend: numba (CPU)", key="reaction.runtime")
        self.torch = torch
        model, _ = load_model(files.directory)
        self.model = model.to(device)
        self.device = device

    def __call__(self, x):
        torch = self.torch
        if isinstance(x, np.ndarray):
            t, back = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), "numpy"
        elif isinstance(x, torch.Tensor):
            t, back = x, None
        else:  # cupy and other DLPack producers: shared memory, no copy
            t, back = torch.from_dlpack(x), type(x).__module__.split(".")[0]
        with torch.inference_mode():
            y = self.model(t.to(device=self.device, dtype=torch.float32))
        if back is None:
            return y
        if back == "numpy":
            return y.cpu().numpy()
        return importlib.import_module(back).from_dlpack(y)


class OnnxRuntime(Runtime):
    """An ONNX file in an onnxruntime InferenceSession (one ``run`` per batch)."""

    name = "onnxruntime"

    def __init__(self, files: ModelFiles, device: str = "cpu", threads: int | None = None):
        super().__init__(files)
        if importlib.util.find_spec("onnxruntime") is None:
            raise CaseError("runtime onnxruntime needs the onnxruntime package; install the "
                            "extra: pip install -e '.[surrogates]'", key="reaction.runtime")
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        options.log_severity_level = 3
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise CaseError("runtime onnxruntime on the GPU needs onnxruntime-gpu (no "
                                "CUDAExecutionProvider here); use solver.backend: numba",
                                key="reaction.runtime")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(files.artifact), options, providers=providers)
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name
        self.device = device

    def __call__(self, x):
        if isinstance(x, np.ndarray):
            x = np.ascontiguousarray(x, dtype=np.float32)
            return self.session.run([self.output], {self.input: x})[0]
        # device arrays: bind input and output by address (no host round trip)
        dev = _DeviceArrays(x)
        x = dev.contiguous_f32(x)
        y = dev.empty(x, (x.shape[0], 2))
        binding = self.session.io_binding()
        binding.bind_input(self.input, "cuda", dev.device_id(x), np.float32, tuple(x.shape),
                           dev.pointer(x))
        binding.bind_output(self.output, "cuda", dev.device_id(y), np.float32, tuple(y.shape),
                            dev.pointer(y))
        self.session.run_with_iobinding(binding)
        return y


class TensorRTRuntime(Runtime):
    """A serialized TensorRT engine (TensorRT 10/11 name-based I/O, ``execute_async_v3``).

    Inputs and outputs are device arrays (cupy or torch CUDA); the engine reads the input and
    writes a freshly allocated output by address, on the caller's current CUDA stream. The
    engine's optimisation profile bounds the batch (see :func:`surrogates.export.build_engine`).
    """

    name = "tensorrt"
    device = "cuda"

    def __init__(self, files: ModelFiles):
        super().__init__(files)
        if importlib.util.find_spec("tensorrt") is None:
            raise CaseError("runtime tensorrt needs the tensorrt package and an NVIDIA GPU; "
                            "install the gpu extra or use runtime: onnxruntime",
                            key="reaction.runtime")
        import tensorrt as trt

        self.trt = trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self.logger)
        self.engine = self._runtime.deserialize_cuda_engine(files.artifact.read_bytes())
        if self.engine is None:
            raise CaseError(f"{files.artifact} is not an engine this TensorRT "
                            f"{trt.__version__} can load; build it again on this machine with "
                            "`python -m surrogates export MODEL --format tensorrt`",
                            key="reaction.model")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode
        self.input = next(n for n in names if self.engine.get_tensor_mode(n) == mode.INPUT)
        self.output = next(n for n in names if self.engine.get_tensor_mode(n) == mode.OUTPUT)
        lo, _, hi = self.engine.get_tensor_profile_shape(self.input, 0)
        self.batch_range = (int(lo[0]), int(hi[0]))

    def __call__(self, x):
        dev = _DeviceArrays(x)
        x = dev.contiguous_f32(x)
        n = int(x.shape[0])
        if not self.batch_range[0] <= n <= self.batch_range[1]:
            raise ValueError(f"batch of {n} is outside the engine's optimisation profile "
                             f"{self.batch_range}; rebuild it with a larger --max-batch")
        y = dev.empty(x, (n, 2))
        ctx = self.context
        ctx.set_input_shape(self.input, (n, int(x.shape[1])))
        ctx.set_tensor_address(self.input, dev.pointer(x))
        ctx.set_tensor_address(self.output, dev.pointer(y))
        if not ctx.execute_async_v3(dev.stream()):
            raise RuntimeError(f"TensorRT failed to run {self.files.artifact} on a batch of {n}")
        return y


def open_runtime(model: str | Path | ModelFiles, runtime: str = "onnxruntime", *,
                 device: str = "cpu", threads: int | None = None) -> Runtime:
    """The runtime ``runtime`` for a model directory or file (CaseError on a bad choice)."""
    files = model if isinstance(model, ModelFiles) else model_files(model, runtime)
    if runtime == "torch":
        return TorchRuntime(files, device)
    if runtime == "onnxruntime":
        return OnnxRuntime(files, device, threads)
    if runtime == "tensorrt":
        if device != "cuda":
            raise CaseError("runtime tensorrt keeps the state on the GPU; use "
                            "solver.backend: cupy (or runtime: onnxruntime on the CPU)",
                            key="solver.backend")
        return TensorRTRuntime(files)
    raise CaseError(f"unknown runtime {runtime!r}; valid runtimes: {', '.join(RUNTIMES)}",
                    key="reaction.runtime")
