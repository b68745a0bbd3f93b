"""ONNX export of the shipped ITNN: fp32 within 1e-5 of torch on the training box at several
batch sizes (dynamic batch axis), the typed fp16 graph, and the TensorRT path."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="export needs torch (the surrogates extra)")
pytest.importorskip("onnx", reason="export needs onnx (the surrogates extra)")
pytest.importorskip("onnxscript", reason="torch.onnx.export (dynamo) needs onnxscript")

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "itnn_cable"
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def model_copy(tmp_path_factory) -> Path:
    """The shipped model's weights and description in a scratch directory."""
    d = tmp_path_factory.mktemp("model") / "itnn_cable"
    d.mkdir()
    for name in ("model.pt", "model.json", "config.yaml"):
        shutil.copy(SHIPPED / name, d / name)
    return d


@pytest.fixture(scope="module")
def export_run(model_copy):
    """``python -m surrogates export DIR --format onnx`` (in process): exit status, stdout."""
    import contextlib
    import io

    from surrogates.__main__ import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["export", str(model_copy), "--format", "onnx"])
    return rc, out.getvalue()


@pytest.fixture(scope="module")
def exported(export_run, model_copy):
    """The check recorded for model.onnx by the export command."""
    import json

    assert export_run[0] == 0
    return json.loads((model_copy / "export.json").read_text())["model.onnx"]


@pytest.fixture(scope="module")
def fp16_run(model_copy):
    """``export DIR --format tensorrt --fp16``: writes and checks model-fp16.onnx first; the
    engine build then needs TensorRT (exit 2 with one line without it)."""
    import contextlib
    import io

    from surrogates.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["export", str(model_copy), "--format", "tensorrt", "--fp16",
                   "--max-batch", str(1 << 20)])
    return rc, out.getvalue(), err.getvalue()


def _torch_outputs(directory, x):
    import torch

    from surrogates.models import load_model

    model, _ = load_model(directory)
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def test_fp32_onnx_matches_torch_within_1e_5(export_run, exported, model_copy):
    rc, out = export_run
    assert "max |onnx - torch| =" in out
    assert "tolerance 1e-05" in out
    assert exported["max_abs_diff"] <= 1e-5
    assert exported["checker"] == "onnxruntime"
    assert (model_copy / "model.onnx").is_file()


@pytest.mark.parametrize("batch", [1, 2, 33, 1000, 20000])
def test_dynamic_batch_axis(exported, model_copy, batch):
    ort = pytest.importorskip("onnxruntime", reason="the check runs the graph in onnxruntime")
    from surrogates.export import box_inputs
    from surrogates.runtime import read_model_json

    meta = read_model_json(model_copy)
    x = box_inputs(meta, batch, seed=batch)
    sess = ort.InferenceSession(str(model_copy / "model.onnx"), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": x})
    assert y.shape == (batch, 2)
    np.testing.assert_allclose(y, _torch_outputs(model_copy, x), rtol=0, atol=1e-5)


def test_graph_has_symbolic_batch_and_float32_io(exported, model_copy):
    import onnx

    from surrogates.runtime import read_model_json

    proto = onnx.load(str(model_copy / "model.onnx"))
    (inp,), (out,) = proto.graph.input, proto.graph.output
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param
    assert dims[1].dim_value == len(read_model_json(model_copy)["inputs"])
    assert out.type.tensor_type.shape.dim[0].dim_param
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_box_inputs_cover_the_training_box(model_copy):
    from surrogates.export import box_inputs
    from surrogates.runtime import read_model_json

    meta = read_model_json(model_copy)
    x = box_inputs(meta, 20000)
    for j, name in enumerate(meta["inputs"]):
        lo, hi = meta["state_box"].get(name, [meta["fixed"].get(name)] * 2)
        assert x[:, j].min() >= np.float32(lo)
        assert x[:, j].max() <= np.float32(hi)
        if hi > lo:  # spread over the whole range
            assert x[:, j].min() < lo + 0.01 * (hi - lo)
            assert x[:, j].max() > hi - 0.01 * (hi - lo)


def test_typed_fp16_graph_is_what_tensorrt_would_consume(fp16_run, model_copy):
    """--fp16: float32 input/output, float16 MLP weights; checked (onnxruntime or the ONNX
    reference evaluator) within 1e-3 of the fp32 torch model."""
    import json

    import onnx

    rc, out, err = fp16_run
    path = model_copy / "model-fp16.onnx"
    check = json.loads((model_copy / "export.json").read_text())["model-fp16.onnx"]
    assert check["max_abs_diff"] <= 1e-3
    assert check["precision"] == "fp16"
    assert "model-fp16.onnx: onnx fp16, max |onnx - torch|" in out
    proto = onnx.load(str(path))
    types = {init.data_type for init in proto.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in types
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param  # the axis the optimisation profile ranges over


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed: the engine test below runs")
def test_tensorrt_without_tensorrt_exits_2_with_one_line(fp16_run):
    rc, out, err = fp16_run
    lines = err.strip().splitlines()
    assert rc == 2
    assert len(lines) == 1
    assert "needs the tensorrt package" in lines[0]


def test_shipped_onnx_matches_shipped_weights():
    """models/itnn_cable/model.onnx is the export of models/itnn_cable/model.pt."""
    from surrogates.export import check_onnx
    from surrogates.models import load_model

    model, meta = load_model(SHIPPED)
    assert check_onnx(SHIPPED / "model.onnx", model, meta).max_abs_diff <= 1e-5


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TENSORRT, reason="needs TensorRT and an NVIDIA GPU (none here)")
@pytest.mark.parametrize("fp16", [False, True])
def test_tensorrt_engine_matches_torch(model_copy, fp16):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU and a CUDA build of torch")
    from surrogates.export import box_inputs, export
    from surrogates.runtime import open_runtime, read_model_json

    export(model_copy, "tensorrt", fp16=fp16, max_batch=1 << 20)
    engine = model_copy / ("model-fp16.engine" if fp16 else "model.engine")
    rt = open_runtime(engine, "tensorrt", device="cuda")
    x = box_inputs(read_model_json(model_copy), 50000)
    y = rt(torch.from_numpy(x).cuda())
    assert y.is_cuda
    np.testing.assert_allclose(y.cpu().numpy(), _torch_outputs(model_copy, x), rtol=0,
                               atol=1e-3 if fp16 else 1e-4)
