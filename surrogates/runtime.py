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

Nothing here trusts the files: ``model.json`` is validated against a strict schema
(:class:`ModelDescription`), and every runtime, once open, checks its file against it: the
input and output count, dtype (float32) and shape ``(batch, n_in) -> (batch, 2)`` that the
file declares (onnxruntime session inputs/outputs, TensorRT engine bindings; for torch the
state dict's tensors against the declared architecture, loaded with ``weights_only=True``
so that no pickled object runs), and then a probe inference on small batches of inputs in
the training box, whose outputs must be finite float32 arrays of shape ``(n, 2)``. Any
mismatch is a :class:`~fhnpde.case.CaseError` (one sentence naming the file, the expected
and the found): a model with a third output column must not turn a reaction step into
something else silently.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fhnpde.case import CaseError, quote

__all__ = ["RUNTIMES", "ModelDescription", "ModelFiles", "Runtime", "box_inputs", "model_files",
           "open_runtime", "read_model_json", "validate_model_json"]

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


# --- model.json: a strict schema ---------------------------------------------------------

_Finite = Annotated[float, Field(allow_inf_nan=False)]
_Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
_Range = Annotated[list[_Finite], Field(min_length=2, max_length=2)]
_Vector = list[_Finite]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _KineticsDescription(_Strict):
    name: str
    params: dict[str, _Finite]

    @model_validator(mode="after")
    def _known(self) -> _KineticsDescription:
        from fhnpde.models import check_params

        check_params(self.name, self.params)  # ValueError: one sentence
        return self


class _Normalisation(_Strict):
    in_offset: _Vector
    in_scale: _Vector
    out_offset: _Vector
    out_scale: _Vector


class ModelDescription(_Strict):
    """The schema of ``model.json`` as :func:`surrogates.models.save_model` writes it."""

    format: Literal["surrogates-model/1"]
    kind: Literal["ddnn", "pinn", "itnn", "neural-ode"]
    inputs: list[str] = Field(min_length=1)
    outputs: list[str]
    widths: list[Annotated[int, Field(gt=0)]] = Field(min_length=1)
    activations: list[str] = Field(min_length=1)
    residual: bool
    structure: Literal["plain", "rest-factored"] = "plain"
    prior: Literal["none", "euler"] = "none"
    parameters: Annotated[int, Field(ge=0)]
    normalisation: _Normalisation
    torch_version: str
    name: str
    kinetics: _KineticsDescription
    dt_r: _Positive | None
    save_dt: _Positive | None
    t_end: _Positive | None
    state_box: dict[str, _Range]
    fixed: dict[str, _Finite]
    data_path: str | None
    data_fingerprint: str | None
    fhnpde_version: str
    validation: dict[str, float] | None = None
    training: dict[str, float | str | None] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ModelDescription:
        from fhnpde.errors import KeyedError
        from fhnpde.models import FAMILIES

        from .architectures import mlp_parameters, network_outputs
        from .config import ACTIVATIONS

        if self.outputs != ["v", "w"]:
            raise KeyedError("outputs", f"must be ['v', 'w'], got {self.outputs}")
        if len(set(self.inputs)) != len(self.inputs):
            raise KeyedError("inputs", f"must name each input once, got {self.inputs}")
        if self.kind == "neural-ode" and self.inputs != ["v", "w", "I"]:
            raise KeyedError("inputs", f"must be ['v', 'w', 'I'] for a {self.kind} model, got "
                             f"{self.inputs}")
        if self.kind == "itnn":
            family = FAMILIES.get(self.kinetics.name)
            names = list(family.defaults) if family is not None else []
            if self.inputs[:3] != ["v", "w", "I"] or any(k not in names
                                                         for k in self.inputs[3:]):
                raise KeyedError("inputs", f"must be ['v', 'w', 'I'] followed by parameters of "
                                 f"the {self.kinetics.name} kinetics ({', '.join(names)}) for a "
                                 f"one-step model, got {self.inputs}")
        elif self.kind in ("ddnn", "pinn") and (
                self.inputs[0] != "t" or any(k not in ("t", "v0", "w0", "I") for k in self.inputs)):
            raise KeyedError("inputs", f"must be t and any of v0, w0, I for a {self.kind} "
                             f"model, got {self.inputs}")
        if self.structure == "rest-factored" and (self.kind != "itnn" or not self.residual):
            raise KeyedError("structure", "rest-factored is a structure of residual one-step "
                             f"(itnn) models, not of a {self.kind} model")
        if self.kind == "itnn" and self.dt_r is None:
            raise KeyedError("dt_r", "must be a number > 0 for a one-step (itnn) model, got None")
        if self.prior != "none" and (self.structure != "rest-factored" or self.dt_r is None):
            raise KeyedError("prior", f"{self.prior} needs structure rest-factored and dt_r")
        for name in self.activations:
            if name not in ACTIVATIONS:
                raise KeyedError("activations", f"unknown activation {name!r}; valid: "
                                 f"{', '.join(ACTIVATIONS)}")
        if len(self.activations) not in (1, len(self.widths)):
            raise KeyedError("activations", f"must give one activation or one per hidden layer "
                             f"({len(self.widths)}), got {len(self.activations)}")
        want = mlp_parameters(self.widths, len(self.inputs), network_outputs(self.structure))
        if self.parameters != want:
            raise KeyedError("parameters", f"must be {want} for widths {self.widths} and "
                             f"{len(self.inputs)} inputs, got {self.parameters}")
        norm = self.normalisation
        for name, size in (("in_offset", len(self.inputs)), ("in_scale", len(self.inputs)),
                           ("out_offset", 2), ("out_scale", 2)):
            values = getattr(norm, name)
            if len(values) != size:
                raise KeyedError(f"normalisation.{name}", f"must have {size} values, got "
                                 f"{len(values)}")
            if name.endswith("scale") and not all(v > 0 for v in values):
                raise KeyedError(f"normalisation.{name}", f"must be > 0, got {values}")
        for name, (lo, hi) in self.state_box.items():
            if hi < lo:
                raise KeyedError(f"state_box.{name}", f"must be [low, high] with low <= high, "
                                 f"got {[lo, hi]}")
        for name in self.inputs:
            if name != "t" and name not in self.state_box and name not in self.fixed:
                raise KeyedError("state_box", f"gives no range for input {name!r} (nor does "
                                 "fixed)")
        return self


def _schema_message(exc: ValidationError) -> str:
    """``key: what is wrong`` of the most telling pydantic error, on one short line."""
    from fhnpde.case import explain_error

    priority = ("value_error", "missing", "extra_forbidden", "literal_error")

    def rank(err):
        kind = err["type"]
        return (priority.index(kind) if kind in priority else len(priority), -len(err["loc"]))

    err = min(exc.errors(), key=rank)
    path, text = explain_error(err)
    if err["type"] == "extra_forbidden":
        text = "unknown key"
    elif err["type"] in ("too_short", "too_long"):
        text = err["msg"].replace("List should have", "must have") + f", got {err.get('input')!r}"
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{path}: {text}" if path else text


def validate_model_json(meta: Any, path: Path,
                        key: str | None = "reaction.model") -> dict[str, Any]:
    """``meta`` (the parsed ``path``) if it is a model description ``surrogates train``
    writes, else a CaseError naming the file, the key and what is wrong."""
    again = "train the model again with `python -m surrogates train CONFIG`"
    if not isinstance(meta, dict):
        raise CaseError(f"{path} holds a JSON {type(meta).__name__}, not a model description; "
                        f"{again}", key=key)
    if meta.get("format") != FORMAT:
        raise CaseError(f"{path} is not a surrogates model description (format "
                        f"{meta.get('format')!r}, expected {FORMAT!r}); {again}", key=key)
    try:
        ModelDescription.model_validate(meta)
    except ValidationError as exc:
        raise CaseError(f"{path}: {_schema_message(exc)}; this is not the model.json "
                        f"`python -m surrogates train` writes: {again}", key=key) from None
    return meta


def read_model_json(directory: Path, key: str | None = "reaction.model") -> dict[str, Any]:
    """The validated ``model.json`` of a model directory (CaseError naming ``key``)."""
    directory = Path(directory)
    path = directory / METADATA
    if not path.is_file():
        raise CaseError(f"no trained model at {directory} (no {METADATA}); train one with "
                        "`python -m surrogates train CONFIG` and give its directory", key=key)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise CaseError(f"{path} cannot be read as JSON ({exc.__class__.__name__}); train the "
                        "model again", key=key) from None
    return validate_model_json(meta, path, key)


def box_inputs(meta: dict[str, Any], n: int, seed: int = 0) -> np.ndarray:
    """``n`` float32 inputs uniform in the model's training box (columns ``meta['inputs']``).

    A fixed input (e.g. ``I`` of a model trained at one current) takes its fixed value; the
    time ``t`` of a trajectory model runs over ``[0, t_end]``.
    """
    rng = np.random.default_rng(seed)
    box, fixed = meta["state_box"], meta.get("fixed", {})
    columns = []
    for name in meta["inputs"]:
        if name in box:
            lo, hi = box[name]
            columns.append(rng.uniform(lo, hi, n))
        elif name in fixed:
            columns.append(np.full(n, float(fixed[name])))
        elif name == "t":
            columns.append(rng.uniform(0.0, float(meta.get("t_end") or 1.0), n))
        else:
            raise ValueError(f"model.json gives neither a box nor a fixed value for input {name!r}")
    return np.stack(columns, 1).astype(np.float32)


def model_files(model: str | Path, runtime: str, key: str = "reaction.model") -> ModelFiles:
    """Resolve a model directory or file for ``runtime`` (CaseError naming ``key``)."""
    if runtime not in RUNTIMES:
        raise CaseError(f"unknown runtime {quote(runtime)}; valid runtimes: {', '.join(RUNTIMES)}",
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


class DeviceArrays:
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


PROBE_BATCHES = (1, 7)


def _first_line(exc: BaseException, limit: int = 160) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _shape_text(shape) -> str:
    """``(batch, 3)``: a shape with its free axes by name, as a tuple is written."""
    dims = [str(d) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


class Runtime(ABC):
    """``runtime(x) -> y``: a batch (n, n_in) of float32 inputs -> (n, 2) float32 outputs.

    A subclass opens its file, checks what the file declares against ``model.json`` and
    then calls :meth:`probe`; after that, calls on any batch size are trusted.
    """

    name: str = ""
    device: str = "cpu"
    key: str = "reaction.model"

    def __init__(self, files: ModelFiles):
        self.files = files
        self.meta = files.meta
        self.n_inputs = len(files.meta["inputs"])

    @abstractmethod
    def __call__(self, x):
        """Implemented by each method's subclass."""

    def mismatch(self, what: str) -> CaseError:
        """The CaseError of a file that does not do what its model.json promises."""
        return CaseError(f"{self.files.artifact} {what}, so it is not the model its "
                         f"{self.files.directory / METADATA} describes; export or train it "
                         "again", key=self.key)

    def check_tensor(self, role: str, name: str, dtype: str, shape, width: int) -> None:
        """A declared input/output: float32, two axes, a free batch axis, ``width`` columns.

        ``shape`` holds ints for fixed sizes and anything else (a name, None, -1) for free
        ones; a free column count is left to the probe.
        """
        expected = f"(batch, {width}) float32"
        if dtype != "float32":
            raise self.mismatch(f"declares its {role} {name!r} as {dtype}, expected {expected}")
        shape = tuple(shape)
        fixed = [d if isinstance(d, int) and d >= 0 else None for d in shape]
        if len(shape) != 2 or (fixed[1] is not None and fixed[1] != width):
            raise self.mismatch(f"declares its {role} {name!r} with shape {_shape_text(shape)}, "
                                f"expected {expected}")
        if fixed[0] is not None:
            raise self.mismatch(f"declares its {role} {name!r} with a fixed batch of {fixed[0]} "
                                f"rows (shape {_shape_text(shape)}), expected {expected} with "
                                "any batch")

    def probe_input(self, x: np.ndarray):
        """The probe batch as this runtime takes it (host numpy by default)."""
        return x

    def probe(self) -> None:
        """Run small batches of inputs in the training box; each must give finite float32
        ``(n, 2)`` outputs."""
        x_all = box_inputs(self.meta, max(PROBE_BATCHES), seed=0)
        for n in PROBE_BATCHES:
            try:
                y = self(self.probe_input(x_all[:n]))
            except Exception as exc:  # any failure of a foreign file
                raise self.mismatch(f"fails on a probe batch of {n} inputs in the training box "
                                    f"({type(exc).__name__}: {_first_line(exc)})") from None
            y = _to_host(y)
            if y.shape != (n, 2) or y.dtype != np.float32:
                raise self.mismatch(f"gives {y.dtype} outputs of shape {_shape_text(y.shape)} "
                                    f"for a probe batch of {n} inputs, expected float32 "
                                    f"({n}, 2): one row of (v, w) per input")
            if not np.all(np.isfinite(y)):
                raise self.mismatch(f"gives non-finite outputs for a probe batch of {n} inputs "
                                    "in its training box")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.files.artifact)!r}, device={self.device!r})"


def _to_host(y) -> np.ndarray:
    """A runtime's output as a numpy array (numpy, torch tensors, cupy arrays)."""
    if isinstance(y, np.ndarray):
        return y
    module = type(y).__module__.split(".")[0]
    if module == "torch":
        return y.detach().cpu().numpy()
    if module == "cupy":
        return y.get()
    return np.asarray(y)


class TorchRuntime(Runtime):
    """The saved torch module, evaluated under ``torch.inference_mode``.

    The weights are read with ``torch.load(weights_only=True)`` and their tensors checked
    against the architecture ``model.json`` declares (:func:`surrogates.models.load_model`).
    """

    name = "torch"

    def __init__(self, files: ModelFiles, device: str = "cpu"):
        super().__init__(files)
        import torch

        from .models import load_model

        if device == "cuda" and not torch.cuda.is_available():
            raise CaseError("runtime torch on the GPU needs a CUDA build of torch and a GPU; "
                            "use solver.backend: numba (CPU)", key="reaction.runtime")
        self.torch = torch
        model, _ = load_model(files.directory, weights=files.artifact, key=self.key)
        self.model = model.to(device)
        self.device = device
        self.probe()

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


_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16",
              "tensor(double)": "float64"}


class OnnxRuntime(Runtime):
    """An ONNX file in an onnxruntime InferenceSession (one ``run`` per batch).

    The session must have one input ``(batch, n_in)`` and one output ``(batch, 2)``, both
    float32 with a free batch axis, and pass the probe.
    """

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
        try:
            self.session = ort.InferenceSession(str(files.artifact), options,
                                                providers=providers)
        except Exception as exc:  # onnxruntime raises its own pybind types
            raise CaseError(f"onnxruntime cannot load {files.artifact} ({_first_line(exc)}); "
                            f"export it again with `python -m surrogates export "
                            f"{files.directory} --format onnx`", key=self.key) from None
        self.device = device
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise self.mismatch(f"has {len(inputs)} inputs and {len(outputs)} outputs, expected "
                                f"one input (batch, {self.n_inputs}) and one output (batch, 2)")
        for role, arg, width in (("input", inputs[0], self.n_inputs), ("output", outputs[0], 2)):
            self.check_tensor(role, arg.name, _ORT_TYPES.get(arg.type, arg.type), arg.shape,
                              width)
        self.input, self.output = inputs[0].name, outputs[0].name
        self.probe()

    def __call__(self, x):
        if isinstance(x, np.ndarray):
            x = np.ascontiguousarray(x, dtype=np.float32)
            return self.session.run([self.output], {self.input: x})[0]
        # device arrays: bind input and output by address (no host round trip)
        dev = DeviceArrays(x)
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
    Its bindings must be one float32 input ``(-1, n_in)`` and one float32 output ``(-1, 2)``,
    and it must pass the probe (run on device copies of the probe batches).
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
        if hasattr(self._runtime, "engine_host_code_allowed"):
            # an engine may carry host code (a lean runtime, plugin libraries) that TensorRT
            # would load and run: never for a file from disk
            self._runtime.engine_host_code_allowed = False
        try:
            self.engine = self._runtime.deserialize_cuda_engine(files.artifact.read_bytes())
        except Exception:  # TensorRT's own error types
            self.engine = None
        if self.engine is None:
            raise CaseError(f"{files.artifact} is not an engine this TensorRT "
                            f"{trt.__version__} can load; build it again on this machine with "
                            "`python -m surrogates export MODEL --format tensorrt`",
                            key=self.key)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode
        ins = [n for n in names if self.engine.get_tensor_mode(n) == mode.INPUT]
        outs = [n for n in names if self.engine.get_tensor_mode(n) == mode.OUTPUT]
        if len(ins) != 1 or len(outs) != 1:
            raise self.mismatch(f"has {len(ins)} input and {len(outs)} output bindings, expected "
                                f"one input (batch, {self.n_inputs}) and one output (batch, 2)")
        self.input, self.output = ins[0], outs[0]
        for role, name, width in (("input", self.input, self.n_inputs),
                                  ("output", self.output, 2)):
            dtype = self.engine.get_tensor_dtype(name)
            self.check_tensor(role, name, "float32" if dtype == trt.DataType.FLOAT else
                              str(dtype), tuple(self.engine.get_tensor_shape(name)), width)
        lo, _, hi = self.engine.get_tensor_profile_shape(self.input, 0)
        self.batch_range = (int(lo[0]), int(hi[0]))
        self.context = self.engine.create_execution_context()
        if self.batch_range[0] <= min(PROBE_BATCHES) and max(PROBE_BATCHES) <= self.batch_range[1]:
            self.probe()

    def probe_input(self, x: np.ndarray):
        """A device copy (cupy if installed, else torch CUDA) of a probe batch."""
        if importlib.util.find_spec("cupy") is not None:
            import cupy

            return cupy.asarray(x)
        import torch

        return torch.from_numpy(x).cuda()

    def __call__(self, x):
        dev = DeviceArrays(x)
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
    raise CaseError(f"unknown runtime {quote(runtime)}; valid runtimes: {', '.join(RUNTIMES)}",
                    key="reaction.runtime")
