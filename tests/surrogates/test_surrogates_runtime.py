"""The runtime interface: torch and onnxruntime give the same outputs on the shipped model,
for numpy and torch inputs; model resolution errors are one CaseError naming the key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fhnpde.case import CaseError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "itnn_cable"


@pytest.fixture(scope="module")
def inputs():
    from surrogates.export import box_inputs
    from surrogates.runtime import read_model_json

    return box_inputs(read_model_json(SHIPPED), 5000, seed=11)


def test_import_is_light():
    """A case with runtime: onnxruntime must not need torch: importing the runtime and the
    reaction modules, and validating a model.json, import neither torch nor onnxruntime."""
    import subprocess
    import sys

    code = ("import sys, surrogates.runtime, surrogates.reaction; "
            f"surrogates.runtime.read_model_json(__import__('pathlib').Path({str(SHIPPED)!r})); "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'tensorrt', 'cupy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_torch_and_onnxruntime_agree(inputs):
    pytest.importorskip("torch", reason="the torch runtime needs torch")
    pytest.importorskip("onnxruntime", reason="the onnxruntime runtime needs onnxruntime")
    from surrogates.runtime import open_runtime

    rt_torch = open_runtime(SHIPPED, "torch")
    rt_ort = open_runtime(SHIPPED, "onnxruntime")
    y_torch, y_ort = rt_torch(inputs), rt_ort(inputs)
    assert isinstance(y_torch, np.ndarray)
    assert isinstance(y_ort, np.ndarray)
    assert y_torch.shape == y_ort.shape == (len(inputs), 2)
    assert y_torch.dtype == y_ort.dtype == np.float32
    np.testing.assert_allclose(y_ort, y_torch, rtol=0, atol=1e-5)
    # the model is the reaction's one-step map: close to fhnpde's exact step everywhere in
    # its training box (RK4 at h = 0.01; inputs v, w, I, then the parameter a)
    from fhnpde.models import Kinetics, check_params
    from fhnpde.reaction import ExactReaction
    from surrogates.runtime import read_model_json

    meta = read_model_json(SHIPPED)
    x = inputs.astype(np.float64)
    params = {**check_params("nagumo", meta["kinetics"]["params"]),
              **{k: np.ascontiguousarray(x[:, 3 + j]) for j, k in enumerate(meta["inputs"][3:])}}
    v, w = ExactReaction(Kinetics("nagumo", params), "rk4", 100, "numba")(
        x[:, 0].copy(), x[:, 1].copy(), x[:, 2].copy(), meta["dt_r"])
    assert np.max(np.abs(y_torch - np.stack([v, w], 1))) < 0.02


def test_torch_runtime_keeps_torch_tensors(inputs):
    torch = pytest.importorskip("torch", reason="the torch runtime needs torch")
    from surrogates.runtime import open_runtime

    rt = open_runtime(SHIPPED, "torch")
    y = rt(torch.from_numpy(inputs))
    assert isinstance(y, torch.Tensor)
    np.testing.assert_array_equal(y.numpy(), rt(inputs))


def test_onnx_file_can_be_named_directly(inputs):
    pytest.importorskip("onnxruntime", reason="the onnxruntime runtime needs onnxruntime")
    from surrogates.runtime import open_runtime

    a = open_runtime(SHIPPED / "model.onnx", "onnxruntime")(inputs)
    b = open_runtime(SHIPPED, "onnxruntime")(inputs)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("model", "runtime", "key", "text"), [
    ("no/such/dir", "onnxruntime", "reaction.model", "no such model directory"),
    (str(SHIPPED), "jax", "reaction.runtime",
     "unknown runtime 'jax'; valid runtimes: torch, onnxruntime, tensorrt"),
    (str(SHIPPED / "model.onnx"), "torch", "reaction.model", "is not a file runtime torch loads"),
    (str(SHIPPED), "tensorrt", "reaction.model", "has no model.engine or model-fp16.engine"),
    (str(ROOT / "cases"), "onnxruntime", "reaction.model", "no trained model at"),
])
def test_model_resolution_errors(model, runtime, key, text):
    from surrogates.runtime import model_files

    with pytest.raises(CaseError, match=text) as info:
        model_files(model, runtime)
    assert info.value.key == key


def test_tensorrt_needs_the_gpu_state():
    from surrogates.runtime import ModelFiles, open_runtime, read_model_json

    files = ModelFiles(SHIPPED, read_model_json(SHIPPED), SHIPPED / "model.engine")
    with pytest.raises(CaseError, match="use solver.backend: cupy") as info:
        open_runtime(files, "tensorrt", device="cpu")
    assert info.value.key == "solver.backend"


def test_device_runtimes_refuse_host_arrays():
    """The onnxruntime-CUDA and tensorrt paths take device arrays only (no hidden copies)."""
    torch = pytest.importorskip("torch", reason="needs torch tensors")
    from surrogates.runtime import DeviceArrays

    with pytest.raises(TypeError, match="torch CUDA tensors, got a CPU tensor"):
        DeviceArrays(torch.zeros((4, 3)))
    with pytest.raises(TypeError, match="needs cupy arrays or torch CUDA tensors"):
        DeviceArrays(np.zeros((4, 3), np.float32))


@pytest.mark.gpu
def test_tensorrt_runtime_keeps_cupy_arrays_on_the_device(tmp_path, inputs):
    pytest.importorskip("tensorrt", reason="needs TensorRT and an NVIDIA GPU (none here)")
    cp = pytest.importorskip("cupy", reason="needs cupy and an NVIDIA GPU (none here)")
    import shutil

    from surrogates.export import export
    from surrogates.runtime import open_runtime

    d = tmp_path / "m"
    shutil.copytree(SHIPPED, d)
    export(d, "tensorrt", max_batch=1 << 16)
    rt = open_runtime(d, "tensorrt", device="cuda")
    y = rt(cp.asarray(inputs))
    assert isinstance(y, cp.ndarray)
    ref = open_runtime(d, "onnxruntime")(inputs)
    np.testing.assert_allclose(cp.asnumpy(y), ref, rtol=0, atol=1e-4)
