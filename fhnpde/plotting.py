"""Pictures of runs: space-time images and profiles (cables), trajectories and phase planes
(point ensembles). matplotlib is imported here only, with the non-interactive Agg backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pulse_positions(v: np.ndarray, x: np.ndarray, threshold: float = 0.3):
    """Positions of pulse peaks in a profile: maxima of v above ``threshold``.

    A peak is the largest node of each connected run of nodes above the threshold.
    """
    above = v > threshold
    if not above.any():
        return np.empty(0)
    edges = np.flatnonzero(np.diff(above.astype(np.int8))) + 1
    runs = np.split(np.arange(v.size), edges)
    return np.array([x[r[np.argmax(v[r])]] for r in runs if above[r[0]]])


def plot_cable(ds, out: Path, threshold: float = 0.3) -> Path:
    plt = _plt()
    v = np.asarray(ds["v"].values)
    x = np.asarray(ds["x"].values)
    t = np.asarray(ds["time"].values)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 5.2), width_ratios=[1.25, 1])
    im = ax0.pcolormesh(x, t, v, shading="auto", cmap="viridis", rasterized=True)
    fig.colorbar(im, ax=ax0, label="v")
    px, pt = [], []
    for k in range(t.size):
        peaks = pulse_positions(v[k], x, threshold)
        px.extend(peaks)
        pt.extend([t[k]] * peaks.size)
    if px:
        ax0.plot(px, pt, ".", color="white", ms=2.0, label=f"pulse peaks (v > {threshold})")
        ax0.legend(loc="upper right", fontsize=8, framealpha=0.5)
    if "active_nodes" in ds and ds["active_nodes"].ndim == 2:
        act = np.asarray(ds["active_nodes"].values, dtype=bool)
        tt, xx = np.nonzero(act)
        ax0.plot(x[xx], t[tt], ",", color="red", alpha=0.4, label="active nodes")
        ax0.legend(loc="upper right", fontsize=8, framealpha=0.5)
    ax0.set_xlabel("x")
    ax0.set_ylabel("t")
    ax0.set_title(f"{ds.attrs.get('title', '')}: v(x, t) [{ds.attrs.get('status', '?')}]")
    picks = np.unique(np.linspace(0, t.size - 1, 5).round().astype(int))
    for k in picks:
        ax1.plot(x, v[k], label=f"t = {t[k]:g}")
    ax1.set_xlabel("x")
    ax1.set_ylabel("v")
    ax1.set_title("profiles")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_point(ds, out: Path, max_members: int = 40) -> Path:
    plt = _plt()
    v = np.asarray(ds["v"].values)
    w = np.asarray(ds["w"].values)
    t = np.asarray(ds["time"].values)
    n = v.shape[0]
    pick = np.unique(np.linspace(0, n - 1, min(n, max_members)).round().astype(int))
    colour_by = "I" if "I" in ds.coords else None
    if colour_by is not None:
        c = np.asarray(ds[colour_by].values)
        span = np.ptp(c) or 1.0
        colours = plt.cm.coolwarm((c - c.min()) / span)
    else:
        colours = plt.cm.viridis(np.linspace(0, 1, n))
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 5))
    for m in pick:
        ax0.plot(t, v[m], color=colours[m], lw=0.8, alpha=0.8)
        ax1.plot(v[m], w[m], color=colours[m], lw=0.8, alpha=0.8)
        ax1.plot(v[m, 0], w[m, 0], "o", color=colours[m], ms=2.5)
    ax0.set_xlabel("t")
    ax0.set_ylabel("v")
    ax0.set_title(f"{ds.attrs.get('title', '')}: {pick.size} of {n} trajectories")
    ax1.set_xlabel("v")
    ax1.set_ylabel("w")
    ax1.set_title("phase plane" + (f" (colour: {colour_by})" if colour_by else ""))
    for ax in (ax0, ax1):
        ax.grid(alpha=0.3)
    if colour_by is not None:
        sm = plt.cm.ScalarMappable(cmap="coolwarm",
                                   norm=plt.Normalize(c.min(), c.min() + span))
        fig.colorbar(sm, ax=ax1, label=colour_by)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_store(path, out=None) -> Path:
    """Draw a run store to a PNG (default: ``<store>.png`` beside it)."""
    from .store import open_run

    ds = open_run(path)
    out = Path(out) if out else Path(str(path).rstrip("/")).with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    if "x" in ds.dims:
        return plot_cable(ds, out)
    return plot_point(ds, out)
