"""Array namespaces (numpy, cupy, torch) and the numba compiler, imported only when used.

The array paths of the solvers are written against the array API standard: ``namespace``
gives numpy itself for ``numpy`` and ``numba`` (numpy >= 2 follows the standard), and the
``array-api-compat`` wrappers of cupy and torch, so the same code runs on all of them.
:func:`to_numpy` is the one device-to-host copy (the store writer and the blow-up guard).
"""

from __future__ import annotations

import importlib
import importlib.util
from functools import cache

import numpy as np

BACKENDS = ("numpy", "numba", "cupy", "torch")

PARALLEL_MIN_NODES = 262_144  # measured: below this one thread is faster than two


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run on this machine."""


@cache
def numba_usable() -> bool:
    return importlib.util.find_spec("numba") is not None


@cache
def torch_usable() -> bool:
    return importlib.util.find_spec("torch") is not None


@cache
def cupy_usable() -> bool:
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        cupy = importlib.import_module("cupy")
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # any CUDA failure means "not usable"
        return False


def namespace(backend: str):
    """The array namespace a backend computes with: numpy for numpy/numba, the
    array-API wrappers of cupy and torch (``array_api_compat.cupy`` / ``.torch``)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    if backend == "cupy":
        if not cupy_usable():
            raise BackendUnavailable(
                "cupy is not usable here (not installed or no CUDA GPU); "
                "install fhnpde[gpu] on a GPU machine or use backend numba"
            )
        return importlib.import_module("array_api_compat.cupy")
    if backend == "torch":
        if not torch_usable():
            raise BackendUnavailable("torch is not installed; pip install torch or use backend "
                                     "numpy")
        return importlib.import_module("array_api_compat.torch")
    if backend == "numba" and not numba_usable():
        raise BackendUnavailable("numba is not installed; pip install numba or use backend numpy")
    return np


def array_namespace(*arrays):
    """The array namespace of ``arrays`` (numpy for numpy arrays, without importing
    array-api-compat; its wrappers otherwise)."""
    if all(isinstance(a, np.ndarray | np.generic | float | int) for a in arrays):
        return np
    import array_api_compat

    return array_api_compat.array_namespace(*arrays)


def device_of(a):
    """The device of an array, for creating arrays beside it (None for numpy, which has one;
    ``array_api_compat.device`` otherwise)."""
    if isinstance(a, np.ndarray | np.generic):
        return None
    import array_api_compat

    return array_api_compat.device(a)


def to_numpy(a) -> np.ndarray:
    """A numpy copy (or the array itself) of an array of any namespace: the one
    device-to-host copy of the package (store writer, blow-up guard)."""
    if isinstance(a, np.ndarray):
        return a
    if isinstance(a, np.generic | float | int | bool):
        return np.asarray(a)
    get = getattr(a, "get", None)  # cupy
    if get is not None:
        return np.asarray(get())
    cpu = getattr(a, "cpu", None)  # torch (any device)
    if cpu is not None and hasattr(a, "detach"):
        return cpu().detach().numpy()
    if hasattr(a, "__dlpack__"):  # any array-API array on the CPU, e.g. array_api_strict
        import array_api_compat

        cpu_device = getattr(array_api_compat.array_namespace(a), "Device", None)
        if cpu_device is not None and getattr(a, "device", None) != cpu_device("CPU_DEVICE"):
            a = array_api_compat.to_device(a, cpu_device("CPU_DEVICE"))
        return np.from_dlpack(a)
    return np.asarray(a)


def _source_files(root: str) -> list[tuple[tuple[str, ...], str]]:
    """The ``*.py`` files under ``root`` as ``(parts of the relative path, path)``, in the
    order of ``sorted(Path(root).rglob("*.py"))`` (folders reached through links are not
    entered, as rglob does not)."""
    import os

    found = []
    stack = [((), root)]
    while stack:
        rel, folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(((*rel, entry.name), entry.path))
                elif entry.name.endswith(".py") and not entry.is_dir():
                    found.append(((*rel, entry.name), entry.path))
    found.sort()
    return found


#: a change younger than this may not show in a file's times yet (the file system's clock
#: ticks in steps): a fingerprint over such a file is not remembered (see formula_fingerprint)
RACY_SECONDS = 2.0


@cache
def formula_fingerprint() -> str:
    """A hash of every source file of the package (:func:`source_fingerprint` of its folder).

    numba's on-disk cache checks only the file that defines a kernel, not the formula
    functions a kernel calls from other modules; a kernel cached before a formula was
    edited would silently run the old formula. Kernels are therefore cached in a directory
    named after this fingerprint, so any change to the package's code compiles afresh.
    """
    import os

    return source_fingerprint(os.path.dirname(os.path.realpath(__file__)))


def source_fingerprint(root: str) -> str:
    """SHA-256 (16 hex digits) of the relative path and bytes of every ``*.py`` file under
    ``root``, in sorted order.

    The hash is remembered (:func:`memoised`) with every file's size, modification and
    change times (ns) and inode: a process whose files all show the same takes it from
    there instead of reading and hashing them again (0.4 ms of ``stat`` against 3.5 ms for
    the package, and no OpenSSL import). Writing a file changes its modification and change
    times (the change time cannot be set back), so an edited file never matches; a
    fingerprint taken while a file's last change is under :data:`RACY_SECONDS` old is not
    remembered, so that an edit within one tick of the file system's clock after it cannot
    go unseen.
    """
    import os
    import time

    files = _source_files(root)
    lines, newest = [], 0
    for rel, path in files:
        st = os.stat(path)
        newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
        lines.append(f"{'/'.join(rel)} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} "
                     f"{st.st_ino}")

    def digest() -> str:
        import hashlib

        h = hashlib.sha256()
        for rel, path in files:
            h.update("/".join(rel).encode())
            with open(path, "rb") as f:
                h.update(f.read())
        return h.hexdigest()[:16]

    fresh = time.time_ns() - newest < RACY_SECONDS * 1e9
    return memoised(f"fingerprint {root}", "\n".join(lines), digest, remember=not fresh)


def _cache_root():
    import os
    from pathlib import Path

    base = os.environ.get("FHNPDE_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    if not os.environ.get("FHNPDE_CACHE_DIR"):
        root = root / "fhnpde"
    return root / "numba"


#: the entries :func:`memoised` keeps at most (the most recently written)
MEMO_ENTRIES = 64
_MEMO: dict = {}  # file -> its entries, read once a process


def memoised(name: str, signature: str, compute, *, remember: bool = True) -> str:
    """``compute()``, a string determined by ``signature``, remembered on disk under
    ``name`` beside the kernel caches (``memo.json``): a later call, in any process, with
    the same name and signature returns it without computing it. ``remember=False``
    computes it and leaves the file as it is. The file is written atomically; one that
    cannot be read or written only costs the computation."""
    import json
    import os

    path = _cache_root() / "memo.json"
    memo = _MEMO.get(path)
    if memo is None:
        try:
            memo = json.loads(path.read_bytes())
        except (OSError, ValueError):
            memo = {}
        if not isinstance(memo, dict):
            memo = {}
        _MEMO[path] = memo
    found = memo.get(name)
    if isinstance(found, list) and len(found) == 2 and found[0] == signature \
            and isinstance(found[1], str):
        return found[1]
    value = compute()
    if not remember:
        return value
    memo.pop(name, None)
    memo[name] = [signature, value]
    while len(memo) > MEMO_ENTRIES:
        memo.pop(next(iter(memo)))
    tmp = path.with_name(f".memo.json.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(memo))
        os.replace(tmp, path)
    except OSError:
        pass
    finally:
        try:
            tmp.unlink()
        except OSError:
            pass
    return value


def cache_dir() -> str:
    path = _cache_root() / formula_fingerprint()
    if not path.exists():
        prune_kernel_caches(path.parent, keep=4)
    return str(path)


def kernel_cache_dir() -> str:
    """Where the kernels' compiled code is kept: ``NUMBA_CACHE_DIR`` if the user set it,
    else :func:`cache_dir` (numba's cache files, and :mod:`fhnpde.native`'s objects in
    ``native/``)."""
    import os

    return os.environ.get("NUMBA_CACHE_DIR") or cache_dir()


def _is_kernel_cache(path) -> bool:
    """True for a folder this module made: named by a fingerprint (16 hex digits), holding
    only numba's per-package folders (``fhnpde_<hash>``, ``tridiagonal_<hash>``) of its cache
    files (``*.nbi`` index, ``*.nbc`` code) and :mod:`fhnpde.native`'s objects
    (``native/*.native``), and no links."""
    import os
    import re

    if not re.fullmatch(r"[0-9a-f]{16}", path.name) or path.is_symlink() or not path.is_dir():
        return False
    for root, dirs, files in os.walk(path):
        if any(os.path.islink(os.path.join(root, d)) for d in dirs):
            return False
        if any(not f.endswith((".nbi", ".nbc", ".native"))
               or os.path.islink(os.path.join(root, f))
               for f in files):
            return False
    return True


def prune_kernel_caches(folder, keep: int) -> None:
    """Remove all but the ``keep`` most recently used kernel caches (older versions' code).

    Only folders that :func:`_is_kernel_cache` recognises are candidates: ``FHNPDE_CACHE_DIR``
    may point anywhere, and nothing fhnpde did not write is ever removed."""
    import shutil

    try:
        old = sorted((p for p in folder.iterdir() if _is_kernel_cache(p)),
                     key=lambda p: p.stat().st_mtime, reverse=True)[keep:]
    except OSError:
        return
    for p in old:
        shutil.rmtree(p, ignore_errors=True)


#: the open :class:`CompileClock` objects (a clock opened before numba was imported starts
#: counting once :func:`kernels` imports it)
_OPEN_CLOCKS: list[CompileClock] = []


def charge_compile(seconds: float) -> None:
    """Count ``seconds`` of kernel loading done without numba (:mod:`fhnpde.native`) on
    every open :class:`CompileClock`."""
    for clock in _OPEN_CLOCKS:
        clock.seconds += seconds


class CompileClock:
    """Seconds numba spends loading cached kernels or compiling them while the clock is open.

    numba loads (or compiles) a kernel at its first call with new argument types, and the
    first load of a process also builds numba's target context; every such load and compile
    holds numba's compiler lock, whose start and end numba announces as
    ``numba:compiler_lock`` events (:mod:`numba.core.event`). The clock sums the outermost
    of them, so a time loop can report its own time without the kernel loading inside its
    first step. It imports nothing: it listens once numba is imported (already, or later
    through :func:`kernels`); compiling by a numba imported some other way during the clock
    is not seen. numba's events are process-wide: a compile in another thread while the
    clock is open is counted too.
    """

    def __init__(self):
        self.seconds = 0.0
        self._listener = None

    def __enter__(self) -> CompileClock:
        _OPEN_CLOCKS.append(self)
        self.listen()
        return self

    def __exit__(self, *exc) -> None:
        _OPEN_CLOCKS.remove(self)
        if self._listener is not None:
            from numba.core import event

            event.unregister("numba:compiler_lock", self._listener)
            self._listener = None

    def listen(self) -> None:
        """Start listening if numba has been imported since the clock opened."""
        import sys

        if self._listener is not None or "numba.core.event" not in sys.modules:
            return
        from time import perf_counter

        from numba.core import event

        clock = self

        class Listener(event.Listener):
            depth = 0
            t0 = 0.0

            def on_start(self, ev):
                if self.depth == 0:
                    self.t0 = perf_counter()
                self.depth += 1

            def on_end(self, ev):
                self.depth -= 1
                if self.depth == 0:
                    clock.seconds += perf_counter() - self.t0

        self._listener = Listener()
        event.register("numba:compiler_lock", self._listener)


@cache
def numba_target() -> None:
    """Build numba's CPU target context once, without importing ``scipy.linalg``.

    numba builds its target context (every typing and lowering registry it has) at the first
    compiled call of a process, even one that loads a cached kernel; building it imports
    :mod:`numba.np.arraymath`, whose import-time check that a BLAS exists imports
    ``scipy.linalg.cython_blas`` and with it the whole of ``scipy.linalg`` (about half of
    the build, measured: docs/performance.md). No fhnpde kernel calls BLAS, and where scipy
    is installed that BLAS exists, so the check is answered with a placeholder module that
    is removed right after: a later ``np.dot`` in someone else's numba code imports the real
    one (numba imports it again before each use). Without scipy numba checks as usual.
    The build holds numba's compiler lock, so :class:`CompileClock` counts it as kernel
    loading, where it would fall otherwise; so does the first typing of an array argument,
    which imports ``numpy.ma`` (numba checks for masked arrays) outside the lock at a
    kernel's first call otherwise (measured 0.03-0.17 s, charged to the time loop).
    """
    import sys
    import types

    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.registry import cpu_target

    name = "scipy.linalg.cython_blas"
    placeholder = None
    if name not in sys.modules and importlib.util.find_spec("scipy") is not None:
        placeholder = sys.modules[name] = types.ModuleType(name)
    try:
        with global_compiler_lock:
            cpu_target.target_context.refresh()
            from numba import typeof

            typeof(np.empty(0))
    finally:
        if placeholder is not None and sys.modules.get(name) is placeholder:
            del sys.modules[name]


def kernels(module: str = "fhnpde.solvers.explicit_numba"):
    """A module of compiled kernels (imports numba on first use), e.g.
    ``fhnpde.solvers.crank_nicolson_numba``; the default is the explicit solver's.

    Unless the user set ``NUMBA_CACHE_DIR`` themselves, the kernels are cached under
    ``~/.cache/fhnpde/numba/<fingerprint>`` (see :func:`formula_fingerprint`); numba picks
    the cache location when a kernel is defined, so the setting is scoped to this import.
    """
    import sys

    if module in sys.modules:
        return sys.modules[module]
    if not numba_usable():
        raise BackendUnavailable("numba is not installed; pip install numba or use backend numpy")
    import os

    from numba.core import config

    previous = config.CACHE_DIR
    if not os.environ.get("NUMBA_CACHE_DIR"):
        config.CACHE_DIR = cache_dir()
    try:
        loaded = importlib.import_module(module)
    finally:
        config.CACHE_DIR = previous
    _tolerate_cache_write_errors(loaded)
    for clock in _OPEN_CLOCKS:
        clock.listen()
    numba_target()
    return loaded


def _tolerate_cache_write_errors(module) -> None:
    """A kernel whose compiled code cannot be saved (disk full, a file size limit, a
    read-only cache) still runs: it is compiled again next time instead of ending the run
    with numba's OSError."""
    import functools

    def tolerant(save):
        @functools.wraps(save)
        def save_overload(sig, data):
            try:
                save(sig, data)
            except OSError:
                pass

        return save_overload

    for obj in vars(module).values():
        cache = getattr(obj, "_cache", None)
        save = getattr(cache, "save_overload", None)
        if save is not None and not getattr(save, "_fhnpde_tolerant", False):
            cache.save_overload = tolerant(save)
            cache.save_overload._fhnpde_tolerant = True
