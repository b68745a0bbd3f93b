"""Files on disk are not trusted: nothing loaded unpickles code, a crafted or mismatched model
folder is one line and exit status 2 wherever it is loaded, and train/search replace only
their own files.

Crafted pickles carry a payload that creates a marker file when unpickled; each test first
shows that the payload is real (a plain ``torch.load(weights_only=False)`` of a twin file
runs it), then that the project's loaders never run it. Crafted model folders are copies of
the shipped ``models/itnn_cable`` with one thing broken.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from fhnpde.case import CaseError

torch = pytest.importorskip("torch", reason="the surrogates need torch")
onnx = pytest.importorskip("onnx", reason="crafted ONNX graphs need the onnx package")
pytest.importorskip("onnxruntime", reason="the onnxruntime runtime needs onnxruntime")

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "itnn_cable"
#: the shipped model's inputs (v, w, I, then the kinetics parameters it takes, e.g. a)
SHIPPED_META = json.loads((SHIPPED / "model.json").read_text())
INPUTS = SHIPPED_META["inputs"]
N_IN = len(INPUTS)
SHIPPED_OUTPUTS = 6 if SHIPPED_META.get("structure") == "rest-factored" else 2  # network's
CASE = ROOT / "cases" / "divergent_neural.yaml"
CONFIG = ROOT / "surrogates" / "configs" / "itnn.yaml"
# the cable case shrunk to a few steps on a short cable, numpy backend (no compilation)
SMALL_CASE = ["domain.length=20.0", "domain.nx=21", "initial.v.center=10.0", "time.t_end=2",
              "time.save_every=1", "solver.backend=numpy"]


# --- helpers ------------------------------------------------------------------------------


class Payload:
    """Unpickling this object opens ``marker`` for writing: it creates the file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def write_payload(path: Path, marker: Path, wrap=lambda p: {"net.0.weight": p}) -> Path:
    """A torch file whose unpickling would create ``marker`` (shown real on a twin file)."""
    twin, twin_marker = path.with_name(path.name + ".twin"), path.with_name("twin-marker")
    torch.save(wrap(Payload(twin_marker)), twin)
    torch.load(twin, weights_only=False)  # what the old code did: the payload runs
    assert twin_marker.exists(), "the crafted pickle does not run its payload"
    twin.unlink()
    twin_marker.unlink()
    torch.save(wrap(Payload(marker)), path)
    return path


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=300)


def one_line_exit_2(out: subprocess.CompletedProcess, *texts: str) -> str:
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    for text in texts:
        assert text in lines[0], lines[0]
    return lines[0]


def one_line_in_process(capsys, main, args: list[str], *texts: str) -> str:
    """``main(args)`` (a CLI's entry point) returns 2 with one stderr line holding ``texts``."""
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    for text in texts:
        assert text in lines[0], lines[0]
    return lines[0]


def copy_model(tmp_path: Path, name: str = "m") -> Path:
    d = tmp_path / name
    shutil.copytree(SHIPPED, d)
    return d


def edit_json(d: Path, change) -> None:
    meta = json.loads((d / "model.json").read_text())
    change(meta)
    (d / "model.json").write_text(json.dumps(meta))


def onnx_file(path: Path, *, weights: np.ndarray, in_shape=("batch", N_IN),
              out_shape=("batch", 2), hide_columns: bool = False) -> Path:
    """A small ONNX graph ``y = x @ weights`` with the declared shapes given.

    ``hide_columns``: ``y`` goes through a Slice whose end is computed from the input's
    values (always all columns), so that no shape inference can know its column count:
    only running the graph shows it.
    """
    from onnx import TensorProto, helper, numpy_helper

    def const(name, value):
        return numpy_helper.from_array(np.asarray(value), name)

    initializers = [const("W", weights.astype(np.float32))]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["z" if hide_columns else "y"])]
    if hide_columns:  # ends = int(sum(0 * x) + columns)
        nodes += [helper.make_node("Mul", ["x", "zero"], ["x0"]),
                  helper.make_node("ReduceSum", ["x0"], ["s"], keepdims=0),
                  helper.make_node("Add", ["s", "columns"], ["e"]),
                  helper.make_node("Cast", ["e"], ["ei"], to=TensorProto.INT64),
                  helper.make_node("Reshape", ["ei", "one"], ["ends"]),
                  helper.make_node("Slice", ["z", "starts", "ends", "axes"], ["y"])]
        initializers += [const("zero", np.float32(0)),
                         const("columns", np.float32(weights.shape[1])),
                         const("one", np.array([1], np.int64)),
                         const("starts", np.array([0], np.int64)),
                         const("axes", np.array([1], np.int64))]
    graph = helper.make_graph(
        nodes, "crafted",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
        initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


KEEP_VW = np.eye(N_IN, 2)  # (v, w, I, ...) -> (v, w)


def tiny_sets(tmp_path: Path) -> list[str]:
    """Overrides of the itnn config: a small data store and a training of a few seconds."""
    return [f"data.path={tmp_path}/itnn.zarr", f"training.out={tmp_path}/default-out",
            f"search.out={tmp_path}/search", "data.solver.backend=numpy",
            "data.train.size=200", "data.validation.size=100", "data.rollouts.size=4",
            "data.rollouts.steps=3", "model.widths=[8]", "training.iterations=20",
            "training.validate_every=10", "training.checkpoint_every=10",
            "training.batch_size=32"]


def cli_sets(sets: list[str]) -> list[str]:
    return [arg for s in sets for arg in ("--set", s)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(config, --set overrides) of a tiny itnn training whose data store exists."""
    from surrogates.config import load_config
    from surrogates.data import generate

    tmp = tmp_path_factory.mktemp("tiny")
    sets = tiny_sets(tmp)
    cfg = load_config(CONFIG, sets)
    generate(cfg)
    return cfg, sets


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    """A directory holding a model train wrote (copied by the tests that change it)."""
    from surrogates.train import train

    cfg, _ = tiny
    d = tmp_path_factory.mktemp("trained") / "model"
    train(cfg, out=d)
    return d


# --- 1. nothing loaded from disk unpickles code --------------------------------------------


def _calls(tree: ast.AST, module: str, names: set[str]):
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in names and isinstance(node.func.value, ast.Name)
                and node.func.value.id in (module,)):
            yield node


def test_no_loader_in_the_project_can_unpickle():
    """Every torch.load passes weights_only=True, no np.load allows pickles, nothing calls
    pickle/joblib/dill loaders (surrogates, fhnpde, benchmarks)."""
    offenders = []
    for folder in ("surrogates", "fhnpde", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            where = path.relative_to(ROOT)
            for call in _calls(tree, "torch", {"load"}):
                kw = {k.arg: k.value for k in call.keywords}
                ok = (isinstance(kw.get("weights_only"), ast.Constant)
                      and kw["weights_only"].value is True)
                if not ok:
                    offenders.append(f"{where}:{call.lineno} torch.load without weights_only=True")
            for call in _calls(tree, "np", {"load"}):
                kw = {k.arg: k.value for k in call.keywords}
                if "allow_pickle" in kw and not (isinstance(kw["allow_pickle"], ast.Constant)
                                                 and kw["allow_pickle"].value is False):
                    offenders.append(f"{where}:{call.lineno} np.load(allow_pickle=...)")
            for module in ("pickle", "cloudpickle", "dill", "joblib", "marshal"):
                for call in _calls(tree, module, {"load", "loads"}):
                    offenders.append(f"{where}:{call.lineno} {module}.{call.func.attr}")
    assert offenders == []


def test_crafted_checkpoint_is_refused_without_running_it(tiny, tmp_path):
    """`surrogates train` used to resume checkpoint.pt with weights_only=False: the payload
    ran. Now: exit 2, one line naming the file and the fix, and the refusal comes before any
    data is generated."""
    _, sets = tiny
    out = tmp_path / "out"
    out.mkdir()
    marker = tmp_path / "marker"
    write_payload(out / "checkpoint.pt", marker,
                  wrap=lambda p: {"format": "surrogates-checkpoint/2", "model": {"w": p}})
    fresh = [s for s in sets if not s.startswith("data.path=")] + [f"data.path={tmp_path}/new.zarr"]
    res = run_module("surrogates", "train", str(CONFIG), *cli_sets(fresh), "--out", str(out),
                     "--quiet")
    one_line_exit_2(res, f"{out / 'checkpoint.pt'} cannot be resumed",
                    "weights_only=True refuses it", "delete it", "--overwrite")
    assert not marker.exists()
    assert not (tmp_path / "new.zarr").exists()
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]


@pytest.mark.parametrize(("content", "text"), [
    (b"", "cannot be resumed"),
    (b"\x80\x04garbage", "cannot be resumed"),
    ("dict-without-format", "is not a checkpoint this version"),
    ("wrong-history", "'history' is not what train writes there"),
])
def test_broken_checkpoints_are_one_caseerror(tiny, tmp_path, content, text):
    from surrogates.train import train

    cfg, _ = tiny
    out = tmp_path / "out"
    out.mkdir()
    if content == "dict-without-format":
        torch.save({"model": {}}, out / "checkpoint.pt")
    elif content == "wrong-history":
        from surrogates.train import CHECKPOINT_FORMAT

        torch.save({"format": CHECKPOINT_FORMAT, "model_spec": {}, "model": {},
                    "optimizer": {"state": {}, "param_groups": []}, "scheduler": None,
                    "generator": torch.Generator().get_state(),
                    "torch_rng": torch.get_rng_state(), "iteration": 1, "stale": 0,
                    "best_iteration": 0, "history": "not a list", "best_loss": 1.0,
                    "best_state": {}}, out / "checkpoint.pt")
    else:
        (out / "checkpoint.pt").write_bytes(content)
    with warnings.catch_warnings(record=True) as caught:  # a warning is a second stderr line
        warnings.simplefilter("always")
        with pytest.raises(CaseError, match=text) as info:
            train(cfg, out=out)
    assert [str(w.message) for w in caught] == []
    assert "checkpoint.pt" in str(info.value)
    assert "\n" not in str(info.value)


def _plain(obj) -> bool:
    """Only what weights_only=True reads: tensors, numbers, strings, None, lists/dicts."""
    if isinstance(obj, dict):
        return all(isinstance(k, str | int) and _plain(v) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return all(_plain(v) for v in obj)
    return obj is None or isinstance(obj, torch.Tensor | bool | int | float | str)


def test_checkpoint_train_writes_is_plain_data_and_resumes(tiny, tmp_path, monkeypatch):
    from surrogates import train as train_module
    from surrogates.train import CHECKPOINT_FORMAT, train

    cfg, _ = tiny
    original = train_module.Objective.validation_loss
    calls = {"n": 0}

    def interrupt_at_20(self):
        calls["n"] += 1
        if calls["n"] == 3:  # validations at 0, 10, then 20 (after the checkpoint at 10)
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(train_module.Objective, "validation_loss", interrupt_at_20)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out=tmp_path / "cut")
    ck = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert ck["format"] == CHECKPOINT_FORMAT
    assert ck["iteration"] == 10
    assert _plain(ck)
    assert [p.name for p in (tmp_path / "cut").iterdir()] == ["checkpoint.pt"]  # no temp files
    monkeypatch.setattr(train_module.Objective, "validation_loss", original)
    res = train(cfg, out=tmp_path / "cut")
    assert [h["iteration"] for h in res.history] == [0, 10, 20]
    assert not (tmp_path / "cut" / "checkpoint.pt").exists()


def test_checkpoint_of_another_architecture_is_refused(tiny, tmp_path, monkeypatch):
    from surrogates import train as train_module
    from surrogates.train import train

    cfg, _ = tiny

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    original = train_module._save_checkpoint

    def save_then_stop(*args, **kwargs):
        original(*args, **kwargs)
        stop()

    monkeypatch.setattr(train_module, "_save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out=tmp_path / "out")
    wider = cfg.model_copy(deep=True)
    wider.model.widths = [16]
    with pytest.raises(CaseError, match="written by a training of another model section; "
                                        "delete it"):
        train(wider, out=tmp_path / "out")


# --- 2. train and search replace only their own files --------------------------------------


def test_overwrite_replaces_only_trains_files(trained, tiny, tmp_path):
    _, sets = tiny
    d = tmp_path / "model"
    shutil.copytree(trained, d)
    user = {"notes.txt": "mine", "results.csv": "a,b\n1,2\n", "sub/data.npy": "keep"}
    for name, text in user.items():
        (d / name).parent.mkdir(exist_ok=True)
        (d / name).write_text(text)
    (d / "model.onnx").write_bytes(b"an export of the weights being replaced")
    old_meta = (d / "model.json").read_text()
    res = run_module("surrogates", "train", str(CONFIG), *cli_sets(sets), "--set",
                     "training.seed=1", "--out", str(d), "--overwrite", "--quiet")
    assert res.returncode == 0, res.stderr
    for name, text in user.items():
        assert (d / name).read_text() == text
    assert not (d / "model.onnx").exists()  # it described the old weights
    assert (d / "model.json").read_text() != old_meta
    assert json.loads((d / "model.json").read_text())["training"]["seed"] == 1
    assert sorted(p.name for p in d.iterdir()) == sorted(
        ["notes.txt", "results.csv", "sub", "model.pt", "model.json", "config.yaml",
         "history.csv"])


def test_foreign_model_json_is_never_replaced(tiny, tmp_path):
    _, sets = tiny
    d = tmp_path / "theirs"
    d.mkdir()
    (d / "model.json").write_text('{"model": "someone else\'s"}')
    (d / "model.pt").write_text("theirs")
    res = run_module("surrogates", "train", str(CONFIG), *cli_sets(sets), "--out", str(d),
                     "--overwrite", "--quiet")
    one_line_exit_2(res, f"{d / 'model.json'} is not a model description",
                    "choose another --out")
    assert (d / "model.json").read_text() == '{"model": "someone else\'s"}'
    assert (d / "model.pt").read_text() == "theirs"
    assert sorted(p.name for p in d.iterdir()) == ["model.json", "model.pt"]


def test_stray_files_need_overwrite(tiny, tmp_path):
    """A config.yaml of the user's in --out was silently replaced before."""
    from surrogates.train import train

    cfg, _ = tiny
    d = tmp_path / "project"
    d.mkdir()
    (d / "config.yaml").write_text("my: config\n")
    with pytest.raises(CaseError, match="holds config.yaml but no model.json"):
        train(cfg, out=d)
    assert (d / "config.yaml").read_text() == "my: config\n"
    assert sorted(p.name for p in d.iterdir()) == ["config.yaml"]


def test_search_refuses_a_directory_that_is_not_its_own(tiny, tmp_path):
    _, sets = tiny
    d = tmp_path / "mine"
    d.mkdir()
    (d / "results.md").write_text("# my results\n")
    res = run_module("surrogates", "search", str(CONFIG), *cli_sets(sets), "--out", str(d),
                     "--count", "1", "--quiet")
    one_line_exit_2(res, "holds results.md but no candidates.json", "choose another --out")
    assert (d / "results.md").read_text() == "# my results\n"
    assert sorted(p.name for p in d.iterdir()) == ["results.md"]
    (d / "candidates.json").write_text('{"not": "a candidate list"}')
    res = run_module("surrogates", "search", str(CONFIG), *cli_sets(sets), "--out", str(d),
                     "--count", "1", "--quiet")
    one_line_exit_2(res, "candidates.json is not the candidate list")


def test_search_candidate_keeps_a_foreign_model_json(tiny, tmp_path):
    """A candidate directory whose model.json is not train's fails; the file stays (the
    search used to delete every model.json that did not read back)."""
    from surrogates.search import sample_architectures, train_candidate

    cfg, _ = tiny
    pytest.importorskip("dask", reason="search candidates are dask tasks")
    arch = sample_architectures(cfg.search.model_copy(update={"count": 1}))[0]
    d = tmp_path / "models" / arch["id"]
    d.mkdir(parents=True)
    (d / "model.json").write_text("{not json")
    config = cfg.to_dict()
    config["data"]["path"] = str(cfg.data_path.resolve())
    with pytest.raises(CaseError, match="is not a model description"):
        train_candidate(config, arch, str(d))
    assert (d / "model.json").read_text() == "{not json"


# --- 3. crafted model folders: one line, exit 2, wherever they are loaded -----------------


def _garbage_onnx(d):
    (d / "model.onnx").write_bytes(b"this is not a protobuf \x00\xff" * 10)


def _empty_onnx(d):
    (d / "model.onnx").write_bytes(b"")


def _dt_r_null(d):
    edit_json(d, lambda m: m.update(dt_r=None))


def _no_state_box(d):
    edit_json(d, lambda m: m.pop("state_box"))


def _not_json(d):
    (d / "model.json").write_text("{\"format\": \"surrogates-model/1\", ")


def _json_list(d):
    (d / "model.json").write_text("[1, 2, 3]")


def _unknown_activation(d):
    edit_json(d, lambda m: m.update(activations=["os.system"]))


def _three_columns_declared(d):
    onnx_file(d / "model.onnx", weights=np.eye(N_IN, 3), out_shape=("batch", 3))


def _three_columns_at_run_time(d):
    onnx_file(d / "model.onnx", weights=np.eye(N_IN, 3), out_shape=("batch", "columns"),
              hide_columns=True)


def _fixed_batch(d):
    onnx_file(d / "model.onnx", weights=KEEP_VW, in_shape=(16, N_IN), out_shape=(16, 2))


def _nan_outputs(d):
    onnx_file(d / "model.onnx", weights=np.full((N_IN, 2), np.nan))


ONNX_CASES = {
    "garbage onnx": (_garbage_onnx, "onnxruntime cannot load"),
    "empty onnx": (_empty_onnx, "onnxruntime cannot load"),
    "dt_r null": (_dt_r_null, "model.json: dt_r: must be a number > 0 for a one-step (itnn) "
                              "model, got None"),
    "missing state_box": (_no_state_box, "model.json: state_box: missing required key"),
    "model.json not JSON": (_not_json, "model.json cannot be read as JSON"),
    "model.json a list": (_json_list, "model.json holds a JSON list"),
    "unknown activation": (_unknown_activation, "activations: unknown activation 'os.system'"),
    "3 output columns declared": (_three_columns_declared,
                                  "declares its output 'y' with shape (batch, 3), expected "
                                  "(batch, 2) float32"),
    "3 output columns at run time": (_three_columns_at_run_time,
                                     "gives float32 outputs of shape (1, 3) for a probe batch "
                                     "of 1 inputs, expected float32 (1, 2)"),
    "fixed batch": (_fixed_batch, "declares its input 'x' with a fixed batch of 16 rows"),
    "non-finite outputs": (_nan_outputs, "gives non-finite outputs for a probe batch"),
}


def test_crafted_onnx_passes_when_it_is_right(tmp_path):
    """The checks let a right file through: the crafted (batch, n_in) -> (batch, 2) graph of
    the same kind as the broken ones below opens and keeps (v, w)."""
    from surrogates.runtime import open_runtime

    x = np.zeros((2, N_IN), np.float32)
    x[:, :2] = [[0.1, 0.02], [0.5, 0.1]]
    x[:, 3:] = 0.1
    for hide_columns in (False, True):
        d = copy_model(tmp_path, f"m{hide_columns}")
        onnx_file(d / "model.onnx", weights=KEEP_VW, out_shape=("batch", "columns"),
                  hide_columns=hide_columns)
        np.testing.assert_array_equal(open_runtime(d, "onnxruntime")(x), x[:, :2])


@pytest.mark.parametrize("name", list(ONNX_CASES))
def test_crafted_model_folder_in_a_case_is_one_line(tmp_path, capsys, name):
    from fhnpde.cli import main

    corrupt, text = ONNX_CASES[name]
    d = copy_model(tmp_path)
    corrupt(d)
    store = tmp_path / "s.zarr"
    args = ["run", str(CASE), "--out", str(store), "--quiet", *cli_sets(SMALL_CASE),
            "--set", f"reaction.model={d}"]
    line = one_line_in_process(capsys, main, args, "reaction.model: ", text)
    assert str(d) in line
    assert not store.exists()


def test_the_small_case_runs_with_an_intact_copy(tmp_path, capsys):
    """The control of the test above: the same command on an unbroken copy completes."""
    from fhnpde.cli import main

    d = copy_model(tmp_path)
    args = ["run", str(CASE), "--out", str(tmp_path / "s.zarr"), "--quiet",
            *cli_sets(SMALL_CASE), "--set", f"reaction.model={d}"]
    assert main(args) == 0, capsys.readouterr().err


def _widths_mismatch(d):
    from surrogates.architectures import mlp_parameters, network_outputs

    edit_json(d, lambda m: m.update(widths=[32, 32], parameters=mlp_parameters(
        [32, 32], N_IN, network_outputs(m.get("structure", "plain")))))


def _weights_float64(d):
    state = torch.load(d / "model.pt", weights_only=True)
    torch.save({k: v.double() for k, v in state.items()}, d / "model.pt")


def _weights_missing_layer(d):
    state = torch.load(d / "model.pt", weights_only=True)
    state.pop("net.4.bias")
    torch.save(state, d / "model.pt")


def _weights_not_a_dict(d):
    torch.save([torch.zeros(3)], d / "model.pt")


TORCH_CASES = {
    "widths do not match the weights": (
        _widths_mismatch, f"net.0.weight has shape ({SHIPPED_META['widths'][0]}, {N_IN}), but "
        f"the architecture its model.json declares (inputs {INPUTS}, widths [32, 32], "
        f"{SHIPPED_OUTPUTS} outputs) needs (32, {N_IN})"),
    "float64 weights": (_weights_float64, "is torch.float64, expected torch.float32"),
    "a layer missing": (_weights_missing_layer, "(missing net.4.bias)"),
    "not a state dict": (_weights_not_a_dict, "holds a list, not a state dict"),
    "dt_r null": (_dt_r_null, "dt_r: must be a number > 0"),
}


@pytest.mark.parametrize("name", list(TORCH_CASES))
def test_crafted_model_folder_with_runtime_torch(tmp_path, capsys, name):
    from fhnpde.cli import main

    corrupt, text = TORCH_CASES[name]
    d = copy_model(tmp_path)
    corrupt(d)
    args = ["run", str(CASE), "--out", str(tmp_path / "s.zarr"), "--quiet",
            *cli_sets(SMALL_CASE), "--set", f"reaction.model={d}", "--set",
            "reaction.runtime=torch"]
    one_line_in_process(capsys, main, args, "reaction.model: ", text)


@pytest.mark.parametrize("name", ["widths do not match the weights", "dt_r null",
                                  "a layer missing"])
@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_crafted_model_folder_in_evaluate_and_export(tmp_path, capsys, name, command):
    from surrogates.__main__ import main

    corrupt, text = TORCH_CASES[name]
    d = copy_model(tmp_path)
    corrupt(d)
    before = sorted(p.name for p in d.iterdir())
    args = [command, str(d)] + (["--format", "onnx"] if command == "export" else [])
    one_line_in_process(capsys, main, args, "surrogates: error: ", text)
    assert sorted(p.name for p in d.iterdir()) == before


def test_malicious_model_pt_with_runtime_torch_is_refused(tmp_path):
    """`python -m fhnpde run` with runtime: torch on a model.pt whose unpickling runs code."""
    d = copy_model(tmp_path)
    marker = tmp_path / "marker"
    write_payload(d / "model.pt", marker)
    res = run_module("fhnpde", "run", str(CASE), "--out", str(tmp_path / "s.zarr"),
                     *cli_sets(SMALL_CASE), "--set", f"reaction.model={d}",
                     "--set", "reaction.runtime=torch")
    one_line_exit_2(res, "reaction.model: ", f"{d / 'model.pt'} is not a plain torch state dict",
                    "weights_only=True refuses it (UnpicklingError)")
    assert not marker.exists()
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_malicious_model_pt_in_evaluate_and_export(tmp_path, command):
    d = copy_model(tmp_path)
    marker = tmp_path / "marker"
    write_payload(d / "model.pt", marker)
    res = run_module("surrogates", command, str(d),
                     *(["--format", "onnx"] if command == "export" else []))
    one_line_exit_2(res, "surrogates: error: ", "weights_only=True refuses it")
    assert not marker.exists()


# --- 4. a model whose outputs disagree with model.json is never used silently --------------


def test_three_column_onnx_through_python_m_fhnpde(tmp_path):
    """Accepted before (the reaction step silently became something else); now refused."""
    d = copy_model(tmp_path)
    _three_columns_declared(d)
    res = run_module("fhnpde", "run", str(CASE), "--out", str(tmp_path / "s.zarr"),
                     *cli_sets(SMALL_CASE), "--set", f"reaction.model={d}")
    one_line_exit_2(res, f"{d / 'model.onnx'} declares its output 'y' with shape (batch, 3), "
                         "expected (batch, 2) float32")
    assert not (tmp_path / "s.zarr").exists()


def test_every_runtime_checks_its_declared_shapes_and_probes():
    """The checks live on the Runtime base, used by torch, onnxruntime and tensorrt alike."""
    from surrogates.runtime import ModelFiles, Runtime, read_model_json

    meta = read_model_json(SHIPPED)

    class Echo(Runtime):
        name = "echo"

        def __init__(self, outputs):
            super().__init__(ModelFiles(SHIPPED, meta, SHIPPED / "model.echo"))
            self.outputs = outputs

        def __call__(self, x):
            return self.outputs(x)

    Echo(lambda x: x[:, :2].copy()).probe()
    with pytest.raises(CaseError, match=r"gives float64 outputs of shape \(1, 2\)"):
        Echo(lambda x: x[:, :2].astype(np.float64)).probe()
    with pytest.raises(CaseError, match=rf"shape \(1, {N_IN}\) for a probe batch of 1"):
        Echo(lambda x: x.copy()).probe()
    with pytest.raises(CaseError, match=r"shape \(2,\) for a probe batch of 1"):
        Echo(lambda x: np.zeros(2, np.float32)).probe()

    def fails(x):
        raise RuntimeError("boom")

    with pytest.raises(CaseError, match=r"fails on a probe batch of 1 inputs .*RuntimeError: boom"):
        Echo(fails).probe()
    rt = Echo(lambda x: x)
    rt.check_tensor("input", "x", "float32", (-1, 3), 3)  # TensorRT writes -1 for free axes
    with pytest.raises(CaseError, match=r"declares its output 'y' as float16"):
        rt.check_tensor("output", "y", "float16", ("batch", 2), 2)
    with pytest.raises(CaseError, match=r"with shape \(-1, 2, 1\)"):
        rt.check_tensor("output", "y", "float32", (-1, 2, 1), 2)
