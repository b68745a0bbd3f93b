"""Kernels loaded from native object code (fhnpde.native): the same bits as numba's kernels,
a fallback to numba for every entry that cannot be trusted, and no numba in a warm process."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fhnpde import native
from fhnpde.backends import kernels

pytest.importorskip("numba")

EXPLICIT = native.SPECS[("fhnpde.solvers.explicit_numba", "explicit_advance_serial")]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty kernel cache of this test's own (numba's kernels are already imported, so
    only the native entries land here) and no remembered kernels."""
    monkeypatch.setenv("FHNPDE_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.delenv("FHNPDE_NATIVE", raising=False)
    monkeypatch.setattr(native, "_MODULES", {})
    return tmp_path


@pytest.fixture(scope="module")
def explicit_object():
    kernel = kernels(EXPLICIT.module).explicit_advance_serial
    meta, obj = native.compile_object(EXPLICIT, kernel)
    return kernel, meta, obj


def explicit_inputs(code, n=203, seed=0):
    rng = np.random.default_rng(seed)
    v, w, current = rng.uniform(-0.3, 1.1, n), rng.uniform(-0.1, 0.4, n), rng.normal(0, .1, n)
    params = (1.0, 0.1, 0.01, 0.5) if code == 0 else (3.0, 0.7, 0.8, 12.5)
    return v, w, current, params


def run_explicit(kernel, code, nsteps, ghosts=(1, -2)):
    v, w, current, params = explicit_inputs(code)
    out_v, out_w = np.empty_like(v), np.empty_like(w)
    kernel(code, v, w, current, params, 0.01, 1.0, 4.0, *ghosts, nsteps, out_v, out_w)
    return out_v, out_w


def test_object_needs_nothing_of_numba(explicit_object):
    _, meta, obj = explicit_object
    assert "refused" not in meta
    assert obj[:4] == b"\x7fELF"
    # nothing of numba's runtime or of Python's C API: the object loads with llvmlite alone
    assert not [s for s in meta["undefined"] if s.startswith(native._RUNTIME_PREFIXES)]


LOADERS = ["elf", "llvm"] if sys.platform == "linux" and platform.machine() == "x86_64" \
    else ["llvm"]


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("code", [0, 1])
@pytest.mark.parametrize("nsteps", [0, 1, 2, 7, 40])
def test_native_kernel_is_bit_identical(explicit_object, code, nsteps, loader):
    kernel, meta, obj = explicit_object
    loaded = native.NativeKernel(EXPLICIT, native.load_object(obj, meta, loader))
    for ghosts in [(1, -2), (202, 0)]:  # mirror (Neumann) and periodic ghost indices
        a = run_explicit(kernel, code, nsteps, ghosts)
        b = run_explicit(loaded, code, nsteps, ghosts)
        assert a[0].tobytes() == b[0].tobytes()
        assert a[1].tobytes() == b[1].tobytes()
        assert np.all(np.isfinite(a[0]))
    if nsteps:
        assert not np.array_equal(a[0], explicit_inputs(code)[0])  # the kernel did something


def test_arguments_of_another_layout_go_to_numba(explicit_object):
    kernel, meta, obj = explicit_object
    loaded = native.NativeKernel(EXPLICIT, native.load_object(obj, meta))
    calls = []
    loaded.fallback = lambda *a: calls.append(a) or kernel(*a)
    v, w, current, params = explicit_inputs(0, n=400)
    out = [np.empty(200), np.empty(200)]
    loaded(0, v[::2].copy(), w[::2].copy(), current[::2], params, 0.01, 1.0, 4.0, 1, -2, 3,
           *out)  # current is a strided view
    assert len(calls) == 1
    ref = [np.empty(200), np.empty(200)]
    kernel(0, v[::2].copy(), w[::2].copy(), current[::2], params, 0.01, 1.0, 4.0, 1, -2, 3, *ref)
    assert np.array_equal(out[0], ref[0])
    assert np.array_equal(out[1], ref[1])


def test_an_exception_in_the_kernel_is_numbas(tmp_path):
    """A non-zero status (the kernel raised) reruns the call through numba with the scratch
    arguments as they were: the exception, or the answer, is numba's."""
    from numba import njit

    @njit
    def halve_or_raise(flag, x, out):
        for i in range(x.shape[0]):
            x[i] = 0.5 * x[i]
        if flag < 0:
            raise ValueError("negative flag")
        for i in range(x.shape[0]):
            out[i] = x[i]
        return flag + 1, x[0]

    spec = native.Spec("tests", "halve_or_raise", ("i", "f8:1", "f8:1"), returns=("i", "f"),
                       scratch=(1,))
    meta, obj = native.compile_object(spec, halve_or_raise)
    assert "refused" not in meta
    loaded = native.NativeKernel(spec, native.load_object(obj, meta))
    loaded.fallback = halve_or_raise
    x, out = np.arange(4.0), np.empty(4)
    assert loaded(3, x, out) == (4, 0.0)
    assert np.array_equal(out, [0, .5, 1, 1.5])
    x = np.arange(1.0, 5.0)
    with pytest.raises(ValueError, match="negative flag"):
        loaded(-1, x, out)
    assert np.array_equal(x, np.arange(1.0, 5.0) / 2)  # halved once (by numba), not twice


@pytest.mark.parametrize("loader", LOADERS)
def test_calls_into_the_math_library_resolve_in_the_process(loader):
    """A kernel calling libm (exp, sin, pow: undefined symbols of its object, found in the
    process) gives numba's bits through either loader."""
    import math

    from numba import njit

    @njit
    def waves(x, out):
        for i in range(x.shape[0]):
            out[i] = math.exp(-x[i]) * math.sin(3.0 * x[i]) + x[i] ** 0.37

    spec = native.Spec("tests", "waves", ("f8:1", "f8:1"))
    meta, obj = native.compile_object(spec, waves)
    assert {"exp", "sin", "pow"} <= set(meta["undefined"])
    loaded = native.NativeKernel(spec, native.load_object(obj, meta, loader))
    x = np.linspace(0.0, 7.0, 1001)
    a, b = np.empty_like(x), np.empty_like(x)
    waves(x, a)
    loaded(x, b)
    assert a.tobytes() == b.tobytes()


def test_an_allocating_kernel_is_refused():
    from numba import njit

    @njit
    def allocates(x, out):
        y = np.empty(x.shape[0])
        for i in range(x.shape[0]):
            y[i] = 2 * x[i]
        for i in range(x.shape[0]):
            out[i] = y[i]

    meta, obj = native.compile_object(native.Spec("tests", "allocates", ("f8:1", "f8:1")),
                                      allocates)
    assert "NRT_MemInfo_alloc" in meta["refused"]
    assert obj == b""


def test_kernels_write_an_entry_and_load_it(cache):
    numba_path = native.kernels(EXPLICIT.module).explicit_advance_serial
    assert not isinstance(numba_path, native.NativeKernel)  # no entry yet: numba's kernel
    path = native.entry_path(EXPLICIT)
    assert path.startswith(str(cache))
    assert os.path.isfile(path)
    loaded = native.load(EXPLICIT)
    assert isinstance(loaded, native.NativeKernel)
    a, b = run_explicit(numba_path, 1, 5), run_explicit(loaded, 1, 5)
    assert np.array_equal(a[0], b[0])
    assert np.array_equal(a[1], b[1])
    native._MODULES.clear()
    assert isinstance(native.kernels(EXPLICIT.module).explicit_advance_serial,
                      native.NativeKernel)


def damage_and_check(path, damage):
    with open(path, "rb") as f:
        data = bytearray(f.read())
    with open(path, "wb") as f:
        f.write(damage(data))
    assert native.load(EXPLICIT) is None
    native._MODULES.clear()
    kernel = native.kernels(EXPLICIT.module).explicit_advance_serial
    assert not isinstance(kernel, native.NativeKernel)  # numba's, which wrote a new entry
    assert isinstance(native.load(EXPLICIT), native.NativeKernel)
    native._MODULES.clear()


def flip_code_byte(data):
    data[-100] ^= 0xFF
    return bytes(data)


def stale_key(data):
    head, _, obj = bytes(data[len(native.MAGIC):]).partition(b"\n")
    meta = json.loads(head)
    meta["key"] = "0" * 20
    return native.MAGIC + json.dumps(meta).encode() + b"\n" + obj


def unresolvable(data):
    head, _, obj = bytes(data[len(native.MAGIC):]).partition(b"\n")
    meta = json.loads(head)
    meta["undefined"] = ["fhnpde_no_such_symbol"]
    return native.MAGIC + json.dumps(meta).encode() + b"\n" + obj


@pytest.mark.parametrize("damage", [flip_code_byte, stale_key, unresolvable,
                                    lambda d: bytes(d[:len(d) // 2]), lambda d: b"junk"],
                         ids=["corrupt", "stale", "unresolvable", "truncated", "junk"])
def test_an_untrusted_entry_falls_back_and_is_rewritten(cache, damage):
    native.kernels(EXPLICIT.module).load(EXPLICIT.name)  # writes the entry
    native._MODULES.clear()
    damage_and_check(native.entry_path(EXPLICIT), damage)


def test_the_key_covers_the_signature_and_numbas_settings(monkeypatch):
    k = native.key(EXPLICIT)
    assert native.key(native.Spec(EXPLICIT.module, EXPLICIT.name, EXPLICIT.args[:-1])) != k
    monkeypatch.setenv("NUMBA_OPT", "1")
    assert native.key(EXPLICIT) != k


def test_native_off(cache, monkeypatch):
    monkeypatch.setenv("FHNPDE_NATIVE", "0")
    native.kernels(EXPLICIT.module).load(EXPLICIT.name)
    assert not os.path.exists(native.entry_path(EXPLICIT))


RUN = textwrap.dedent("""
    import sys
    from fhnpde.cli import main
    try:
        main(sys.argv[1:])
    except SystemExit as e:
        assert not e.code, e.code
    print("numba imported:", "numba" in sys.modules)
    print("llvmlite imported:", "llvmlite" in sys.modules)
""")


def test_a_warm_process_runs_without_numba(tmp_path):
    """The divergent case through the CLI in fresh processes: with a warm object cache numba
    is never imported, and the store holds the numba path's numbers bit for bit."""
    import xarray as xr

    env = {k: v for k, v in os.environ.items() if k not in ("FHNPDE_NATIVE", "NUMBA_CACHE_DIR")}
    sets = ["--set", "time.t_end=20", "--set", "domain.nx=201"]

    def run(out, **extra):
        cmd = [sys.executable, "-c", RUN, "run", "cases/divergent.yaml", "--quiet",
               "--overwrite", "--out", str(tmp_path / out), *sets]
        done = subprocess.run(cmd, cwd=ROOT, env={**env, **extra}, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("first.zarr")  # writes the entry, if this machine had none
    warm = run("native.zarr")
    assert "numba imported: False" in warm
    if "elf" in LOADERS:  # the small loader: not even LLVM is loaded
        assert "llvmlite imported: False" in warm
    assert "numba imported: True" in run("numba.zarr", FHNPDE_NATIVE="0")
    a, b = xr.open_zarr(tmp_path / "native.zarr"), xr.open_zarr(tmp_path / "numba.zarr")
    for name in ("v", "w"):
        assert a[name].values.tobytes() == b[name].values.tobytes()
    stats = a.attrs["stats"]
    assert stats["compile_s"] > 0  # the object's loading is counted as kernel loading


@pytest.fixture
def native_on(monkeypatch):
    """The native path on, in the usual kernel cache (where numba's kernels already are)."""
    monkeypatch.delenv("FHNPDE_NATIVE", raising=False)
    monkeypatch.setattr(native, "_MODULES", {})
    return monkeypatch


SOLVERS = {  # (kernel module, kernel, dt, settings)
    "explicit": ("fhnpde.solvers.explicit_numba", "explicit_advance_serial", 0.02, []),
    "explicit-4": ("fhnpde.solvers.explicit_numba", "explicit4_advance_serial", 0.02,
                   ["solver.space_order=4"]),
    "crank-nicolson": ("fhnpde.solvers.crank_nicolson_numba", "cn_cable_advance", 0.2, []),
    "staggered-cn": ("fhnpde.solvers.staggered_numba", "staggered_cable_advance", 0.2, []),
    "sdirk3": ("fhnpde.solvers.sdirk_numba", "sdirk_cable_advance", 0.2, []),
}


RUNS = {  # a case file and its settings
    "train-mirror": ("impulse_train.yaml", ["stimuli.0.t=[5.0, 30.0]"]),
    "train-ring": ("impulse_train.yaml", ["stimuli.0.t=[5.0, 30.0]",
                                          "domain.boundary=periodic"]),
    "divergent": ("divergent.yaml", ["domain.nx=201", "domain.length=100",
                                     "initial.v.center=50"]),  # no stimulus: masks (0, n)
}


@pytest.mark.parametrize("run", list(RUNS))
@pytest.mark.parametrize("method", list(SOLVERS))
def test_solvers_give_numbas_bits_natively(native_on, cases_dir, method, run):
    """A pulse train (a stimulus switching on, a ring or mirror ends) and the divergent case
    (no stimulus) through each solver's native kernel and through numba's: the same bits."""
    from fhnpde.case import load_case
    from tests.helpers import final_state

    module, name, dt, settings = SOLVERS[method]
    case_file, sets = RUNS[run]
    case = load_case(cases_dir / case_file,
                     [f"solver.method={method.removesuffix('-4')}", "solver.backend=numba",
                      "time.t_end=40", f"time.dt={dt}", "time.save_every=40", *sets,
                      *settings])
    native._MODULES.clear()
    final_state(case)  # writes the entry, if the module's cache has none yet
    native._MODULES.clear()
    _, v, w = final_state(case)
    loaded = native._MODULES[module]._native[name]
    assert isinstance(loaded, native.NativeKernel)
    assert loaded.fallback is None  # every call ran the object's code, none went to numba
    native_on.setenv("FHNPDE_NATIVE", "0")
    native._MODULES.clear()
    _, v_ref, w_ref = final_state(case)
    assert not native._MODULES[module]._native  # numba's kernel ran
    assert np.abs(v_ref).max() > 0.5  # a pulse is on the cable
    assert v.tobytes() == v_ref.tobytes()
    assert w.tobytes() == w_ref.tobytes()


def test_kernel_caches_with_native_entries_are_pruned_as_before(tmp_path):
    from fhnpde.backends import prune_kernel_caches

    folder = tmp_path / "numba"
    for i, name in enumerate(["0123456789abcdef", "1123456789abcdef", "2123456789abcdef"]):
        (folder / name / "fhnpde_ab12").mkdir(parents=True)
        (folder / name / "fhnpde_ab12" / "k.py311.nbi").write_bytes(b"")
        (folder / name / "native").mkdir()
        (folder / name / "native" / "k-0123.native").write_bytes(b"")
        if i == 0:  # not fhnpde's: kept
            (folder / name / "native" / "notes.txt").write_text("x")
        os.utime(folder / name, (i, i))
    prune_kernel_caches(folder, keep=1)
    assert sorted(p.name for p in folder.iterdir()) == ["0123456789abcdef", "2123456789abcdef"]


# --- the fingerprint and the keys, remembered ----------------------------------------------


def content_hash(root):
    """The fingerprint as it was always computed: every file read and hashed."""
    import hashlib
    from pathlib import Path

    digest = hashlib.sha256()
    for path in sorted(Path(root).rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def make_package(root):
    (root / "sub").mkdir(parents=True)
    (root / "a.py").write_text("x = 1\n")
    (root / "sub" / "b.py").write_text("y = 2\n")
    (root / "sub.py").write_text("z = 3\n")  # sorts after the folder sub/, as rglob does
    (root / "notes.txt").write_text("not source")
    old = 1_600_000_000
    for p in (root / "a.py", root / "sub" / "b.py", root / "sub.py"):
        os.utime(p, (old, old))


def test_the_package_fingerprint_is_the_hash_of_its_sources(cache):
    from fhnpde import backends

    root = os.path.dirname(os.path.realpath(backends.__file__))
    assert backends.formula_fingerprint() == content_hash(root)
    assert backends.source_fingerprint(root) == content_hash(root)  # (remembered or not)


def test_a_remembered_fingerprint_follows_every_edit(cache, tmp_path, monkeypatch):
    from fhnpde import backends

    monkeypatch.setattr(backends, "_MEMO", {})
    monkeypatch.setattr(backends, "RACY_SECONDS", 0.0)  # file times of a second ago count
    pkg = tmp_path / "pkg"
    make_package(pkg)
    first = backends.source_fingerprint(str(pkg))
    assert first == content_hash(pkg)
    computed = []
    real = backends.memoised

    def spy(name, signature, compute, **kw):
        return real(name, signature, lambda: computed.append(name) or compute(), **kw)

    monkeypatch.setattr(backends, "memoised", spy)
    monkeypatch.setattr(backends, "_MEMO", {})  # another process: read from the file
    assert backends.source_fingerprint(str(pkg)) == first
    assert computed == []  # taken from the file, nothing read or hashed
    # an edit of the same size with the modification time put back: the change time moved
    target = pkg / "sub" / "b.py"
    st = target.stat()
    target.write_text("y = 5\n")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert target.stat().st_mtime_ns == st.st_mtime_ns
    edited = backends.source_fingerprint(str(pkg))
    assert edited == content_hash(pkg) != first
    assert len(computed) == 1
    (pkg / "c.py").write_text("")  # a new file
    assert backends.source_fingerprint(str(pkg)) == content_hash(pkg) != edited


def test_a_fingerprint_over_a_file_changed_just_now_is_not_remembered(cache, tmp_path,
                                                                      monkeypatch):
    from fhnpde import backends

    monkeypatch.setattr(backends, "_MEMO", {})
    pkg = tmp_path / "pkg"
    make_package(pkg)
    (pkg / "a.py").write_text("x = 2\n")  # now: within RACY_SECONDS
    assert backends.source_fingerprint(str(pkg)) == content_hash(pkg)
    memo = json.loads((cache / "numba" / "memo.json").read_text()) \
        if (cache / "numba" / "memo.json").exists() else {}
    assert f"fingerprint {pkg}" not in memo


def test_the_memo_survives_damage_and_stays_small(cache, monkeypatch):
    from fhnpde import backends

    monkeypatch.setattr(backends, "_MEMO", {})
    path = cache / "numba" / "memo.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert backends.memoised("a", "sig", lambda: "value") == "value"
    monkeypatch.setattr(backends, "_MEMO", {})
    assert backends.memoised("a", "sig", lambda: "other") == "value"  # remembered
    assert backends.memoised("a", "sig2", lambda: "new") == "new"  # another signature
    for i in range(backends.MEMO_ENTRIES + 10):
        backends.memoised(f"k{i}", "s", lambda: "v")
    monkeypatch.setattr(backends, "_MEMO", {})
    kept = json.loads(path.read_text())
    assert len(kept) == backends.MEMO_ENTRIES
    assert f"k{backends.MEMO_ENTRIES + 9}" in kept
    assert "a" not in kept
    path.write_text('["a list"]')
    assert backends.memoised("b", "s", lambda: "v") == "v"


def test_a_remembered_key_is_the_hash_of_its_parts(cache, monkeypatch):
    import hashlib

    from fhnpde import backends

    k = native.key(EXPLICIT)
    parts = None
    real = backends.memoised

    def spy(name, signature, compute, **kw):
        nonlocal parts
        if name.startswith("native key"):
            parts = signature
        return real(name, signature, compute, **kw)

    monkeypatch.setattr(backends, "memoised", spy)
    monkeypatch.setattr(backends, "_MEMO", {})
    assert native.key(EXPLICIT) == k == hashlib.sha256(parts.encode()).hexdigest()[:20]
    assert json.loads(parts)[0] == native.FORMAT
