"""The sweep's store: its layout (variables, dtypes, attributes; the fields' names and
coordinates are those of :mod:`fhnpde.store`), the template written before the members run,
each member's region write, and the checks that a store at a path is this sweep's.

The store-safety rules of run stores hold here too: the template is built beside the path
and moved into place under the writer's lock (:mod:`fhnpde.storefs`).
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..case import CaseError
from ..store import field_attrs, field_time_chunk, sheet_coord_attrs, time_attrs, x_attrs
from .spec import Sweep, member_layout

STATUS_CODES = {"pending": 0, "complete": 1, "failed": 2}
SUMMARY_VARIABLES = ("propagated", "pulses", "speed", "t_arrival", "t_reached", "steps",
                     "wall_time_s")
# The per-member variables' dtypes; every other one is float64.
DTYPES = {"status": np.int8, "propagated": np.int8, "pulses": np.int32, "steps": np.int64}


def variable_dtype(name: str):
    """The dtype of the per-member variable ``name`` in the sweep's store."""
    return DTYPES.get(name, np.float64)


ATTRS = {
    "status": {"long_name": "member status", "flag_values": [0, 1, 2],
               "flag_meanings": "pending complete failed"},
    "propagated": {"long_name": "a pulse reached the far end of the cable (1) or not (0); -1: "
                                "not measured (a sheet)"},
    "pulses": {"long_name": "largest number of pulses at once (cable) or of upstrokes (point; "
                            "sheet: at one node)"},
    "speed": {"long_name": "measured conduction speed", "units": "1"},
    "t_arrival": {"long_name": "time the first pulse reached the far end", "units": "1"},
    "t_reached": {"long_name": "time the member's run reached", "units": "1"},
    "steps": {"long_name": "time steps taken"},
    "wall_time_s": {"long_name": "wall time of the member on its worker", "units": "s"},
}


def template(sweep: Sweep):
    """The store's Dataset: numpy coordinates, lazy (dask) data chunked 1 along member."""
    import dask.array as da
    import xarray as xr

    from ..version import __version__

    n = sweep.size
    coords: dict[str, Any] = {"member": ("member", np.arange(n), {"long_name": "sweep member"})}
    for key, vals in sweep.values.items():
        coords[key] = ("member", np.asarray(vals), {"long_name": f"varied key {key}"})
    data = {}
    for name in ("status", *SUMMARY_VARIABLES):
        dtype = variable_dtype(name)
        fill = 0 if np.issubdtype(dtype, np.integer) else np.nan
        data[name] = ("member", da.full(n, fill, dtype=dtype, chunks=1), ATTRS[name])
    if sweep.spec.keep == "fields":
        times, axes = member_layout(sweep.cases[0])
        coords["time"] = ("time", times, time_attrs())
        sheet = "y" in axes
        for dim, axis in axes.items():
            attrs = (sheet_coord_attrs(dim) if sheet else x_attrs() if dim == "x"
                     else {"long_name": "cell of a point ensemble"})
            coords[dim] = (dim, axis, attrs)
        shape = tuple(axis.size for axis in axes.values())
        tchunk = field_time_chunk(times.size, int(np.prod(shape)))
        for name in ("v", "w"):
            arr = da.full((n, times.size, *shape), np.nan, chunks=(1, tchunk, *shape))
            data[name] = (("member", "time", *axes), arr, field_attrs(name))
    attrs = {
        "fhnpde_version": __version__,
        "layout": "sweep",
        "title": sweep.spec.name,
        "description": sweep.spec.description,
        "sweep": yaml.safe_dump(sweep.spec.model_dump(mode="json"), sort_keys=False),
        "base_case": yaml.safe_dump(sweep.base, sort_keys=False),
        "varied": list(sweep.values),
        "keep": sweep.spec.keep,
        "fingerprint": sweep.fingerprint,
        "members": n,
        "status": "running",
    }
    if any(case.is_sheet for case in sweep.cases):
        from .summaries import SHEET_NOTE

        attrs["summaries_note"] = SHEET_NOTE
    return xr.Dataset(data, coords=coords, attrs=attrs)


def open_attrs(path: Path) -> dict:
    """The store's root attributes (CaseError naming the file when its metadata is damaged)."""
    from ..storecheck import root_attributes

    return root_attributes(path)


def member_statuses(path: Path) -> np.ndarray:
    """Every member's status code (CaseError when the ``status`` array is missing or a
    chunk of it does not decode)."""
    from ..storecheck import sweep_statuses

    return sweep_statuses(path)


def check_store(sweep: Sweep, path: Path, overwrite: bool) -> bool:
    """True if ``path`` holds this sweep's store (to be reused); False if a new one is to be
    written there (with ``overwrite``, replacing a store of ours once the new template
    exists: :func:`write_template`). Refuses a path holding something else."""
    from ..store import is_store, prepare_path
    from ..storefs import check_name

    check_name(path, key="--out")
    if path.exists() and is_store(path) and not overwrite:
        attrs = open_attrs(path)
        if attrs.get("layout") == "sweep" and attrs.get("fingerprint") == sweep.fingerprint:
            return True
        raise CaseError(
            f"{path} holds a different run or sweep; pass --overwrite to replace it or "
            "choose another --out",
            key="--out",
        )
    prepare_path(path, overwrite, key="--out")
    return False


def write_template(sweep: Sweep, path: Path, overwrite: bool = False) -> None:
    """The template store: metadata, coordinates and fill values; every member pending.

    Built beside ``path`` and moved into place (:func:`fhnpde.storefs.install`), so an old
    store is replaced only once the new one exists; the caller holds ``path``'s lock."""
    from ..storefs import install, staging_dir

    staging = staging_dir(path)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore",
                                    message="Consolidated metadata is currently not part")
            template(sweep).to_zarr(str(staging), mode="w", compute=False, zarr_format=3,
                                     consolidated=True)
        install(staging, path, overwrite, key="--out")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def prepare_store(sweep: Sweep, path: Path, overwrite: bool) -> bool:
    """Create the template store, or reuse the store of the same sweep; True if reused."""
    from ..storefs import WriterLock

    if check_store(sweep, path, overwrite):
        return True
    lock = WriterLock.acquire(path, key="--out")
    try:
        write_template(sweep, path, overwrite)
    finally:
        lock.release()
    return False


def write_region(store: str, index: int, variables: dict[str, np.ndarray]) -> None:
    """Write one member's slice (leading axis = member) of each variable, straight to zarr.

    The template fixed every array's shape, dtype and chunks (1 along member), so this only
    writes the member's own chunks; no metadata is touched (zarr rather than xarray's
    ``to_zarr(region=...)``, which would cost each worker xarray's import and a metadata
    read per call for the same bytes).
    """
    import zarr

    group = zarr.open_group(store, mode="r+", use_consolidated=False)
    for name, data in variables.items():
        group[name][index:index + 1] = data
