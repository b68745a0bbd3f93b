"""``python -m fhnpde info``: versions and which backends and runtimes are usable here."""

from __future__ import annotations

import importlib.util
import platform
import sys
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("numpy", "scipy", "numba", "xarray", "zarr", "pydantic", "matplotlib", "pillow",
            "torch", "onnxruntime", "cupy-cuda12x", "cupy", "tensorrt", "dask", "distributed")


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _cuda_devices() -> str:
    """GPUs seen by numba.cuda, without importing cupy or torch."""
    if importlib.util.find_spec("numba") is None:
        return "no (numba missing)"
    try:
        from numba import cuda

        if not cuda.is_available():
            return "no CUDA GPU"
        return ", ".join(d.name.decode() if isinstance(d.name, bytes) else str(d.name)
                         for d in cuda.gpus)
    except Exception as exc:  # report, never fail
        return f"no ({exc.__class__.__name__})"


def describe() -> str:
    from .backends import cupy_usable, numba_usable
    from .version import __version__

    lines = [f"fhnpde {__version__}", f"python {sys.version.split()[0]} on {platform.machine()}",
             "", "packages:"]
    for name in PACKAGES:
        v = _version(name)
        if v is not None or name in ("numpy", "scipy", "numba", "xarray", "zarr"):
            lines.append(f"  {name:<14} {v or 'not installed'}")
    gpus = _cuda_devices()
    tensorrt = importlib.util.find_spec("tensorrt")
    lines += ["", "backends:",
              "  numpy          yes",
              f"  numba          {'yes' if numba_usable() else 'no'}",
              f"  cupy           {'yes' if cupy_usable() else 'no'}",
              f"  CUDA GPU       {gpus}",
              "", "neural runtimes:",
              f"  torch          {'yes' if importlib.util.find_spec('torch') else 'no'}",
              f"  onnxruntime    {'yes' if importlib.util.find_spec('onnxruntime') else 'no'}",
              f"  tensorrt       {'yes' if tensorrt and 'no' not in gpus[:2] else 'no'}"]
    return "\n".join(lines)
