"""Pictures of runs: space-time images and profiles (cables), a grid of snapshots and an
animation (sheets), trajectories and phase planes (point ensembles). matplotlib is imported
here only, with the non-interactive Agg backend.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .case import CaseError


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


def level_crossings(v: np.ndarray, x: np.ndarray, level: float = 0.3) -> np.ndarray:
    """Every position where v crosses ``level``, linearly interpolated between nodes: the
    front and the back of each pulse, in order along the cable."""
    s = np.asarray(v) - level
    i = np.flatnonzero(np.sign(s[:-1]) != np.sign(s[1:]))
    return x[i] + (x[i + 1] - x[i]) * s[i] / (s[i] - s[i + 1])


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
    if "active_mask" in ds:  # adaptive runs: which base-grid nodes were computed
        act = np.asarray(ds["active_mask"].values, dtype=bool)
        tt, xx = np.nonzero(act)
        ax0.plot(x[xx], t[tt], ",", color="red", alpha=0.4, label="active nodes")
        ax0.legend(loc="upper right", fontsize=8, framealpha=0.5)
    ax0.set_xlabel("x")
    ax0.set_ylabel("t")
    status = ds.attrs.get("status", "?")
    if status == "running" and ds.attrs.get("writer") == "gone":
        status = "running, but its writer is gone"
    ax0.set_title(f"{ds.attrs.get('title', '')}: v(x, t) [{status}]")
    picks = np.unique(np.linspace(0, t.size - 1, 5).round().astype(int))
    for k in picks:
        ax1.plot(x, v[k], label=f"t = {t[k]:g}")
    ax1.set_xlabel("x")
    ax1.set_ylabel("v")
    ax1.set_title("profiles")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, out, 110)


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
    return _save(fig, out, 110)


def plot_sheet(ds, out: Path, snapshots: int = 6) -> Path:
    """A grid of snapshots of ``v`` on a sheet: ``snapshots`` outputs equally spaced in
    time (first and last included), one colour scale for all."""
    plt = _plt()
    t = np.asarray(ds["time"].values)
    x, y = np.asarray(ds["x"].values), np.asarray(ds["y"].values)
    pick = np.unique(np.linspace(0, t.size - 1, min(t.size, snapshots)).round().astype(int))
    v = np.full((t.size, *ds["v"].shape[1:]), np.nan)  # only the snapshots are read
    v[pick] = np.asarray(ds["v"].isel(time=pick).values)
    cols = min(3, pick.size)
    rows = -(-pick.size // cols)
    aspect = (y[-1] - y[0]) / max(x[-1] - x[0], 1e-300)
    fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols + 1.0,
                                                  min(4.0 * aspect, 8.0) * rows + 0.6),
                             squeeze=False, constrained_layout=True)
    lo, hi = _colour_range(ds["v"])
    tip = spiral_tip_or_none(ds)  # reads one output at a time
    for ax, k in zip(axes.flat, pick, strict=False):
        im = ax.imshow(v[k], origin="lower", extent=_extent(x, y), vmin=lo, vmax=hi,
                       cmap="viridis", interpolation="nearest")
        if tip is not None:  # the tip's path so far, and where it is now
            ax.plot(tip.x.values[: k + 1], tip.y.values[: k + 1], color="red", lw=0.8)
            ax.plot(tip.x.values[k], tip.y.values[k], "o", color="red", ms=3)
        ax.set_title(f"t = {t[k]:.4g}", fontsize=9)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    for ax in axes.flat[pick.size:]:
        ax.set_visible(False)
    fig.colorbar(im, ax=axes, label="v", shrink=0.8)
    fig.suptitle(f"{ds.attrs.get('title', '')}: v on the sheet ({y.size} x {x.size} nodes)",
                 fontsize=10)
    return _save(fig, out, 100)


def spiral_tip_or_none(ds):
    """The spiral tip of a sheet run (:func:`fhnpde.analysis.spiral_tip`, isolines at the
    middle of each field's range) when it turns at least once, else None (no spiral)."""
    from .analysis import spiral_tip

    tip = spiral_tip(ds)
    return tip if float(tip.turns) >= 1.0 else None


def _extent(x, y):
    """imshow's extent with each node at the centre of its pixel."""
    hx = 0.5 * (x[1] - x[0]) if x.size > 1 else 0.5
    hy = 0.5 * (y[1] - y[0]) if y.size > 1 else 0.5
    return (x[0] - hx, x[-1] + hx, y[0] - hy, y[-1] + hy)


def _colour_range(v):
    """(min, max) of a field over all its outputs (an xarray variable: reduced chunk by
    chunk, without holding it whole), widened when it is constant; NaN (outputs never
    written) is skipped."""
    lo, hi = float(v.min()), float(v.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return 0.0, 1.0
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


MOVIE_FORMATS = {"gif": "pillow", "mp4": "ffmpeg"}


def check_movie_out(out, key: str = "--movie") -> Path:
    """The animation's path: ``.gif`` (matplotlib's pillow writer) or ``.mp4`` (its ffmpeg
    writer, when ffmpeg is found), in a folder that can be written; CaseError otherwise."""
    from matplotlib import animation

    text = str(out)
    ext = Path(text).suffix[1:].lower()
    if ext not in MOVIE_FORMATS:
        what = f"extension .{ext}" if ext else "no extension"
        raise CaseError(f"{text[:80]} has {what}; an animation is written as .gif or .mp4",
                        key=key)
    if not animation.writers.is_available(MOVIE_FORMATS[ext]):
        need = "ffmpeg on the PATH" if ext == "mp4" else "the pillow package"
        raise CaseError(f"writing .{ext} needs {need}, which matplotlib does not find here; "
                        f"install it or write a .{'gif' if ext == 'mp4' else 'mp4'}", key=key)
    # the folder checks of a picture, with the movie's extension taken as writable
    return check_out(out, key=key, formats=(ext,))


def sheet_movie(ds, out: Path, *, fps: int = 10, progress: bool = True, stream=None) -> Path:
    """An animation of ``v`` on a sheet, one frame per output (matplotlib.animation), with a
    progress bar on ``stream`` (stderr) while it renders when that is a terminal."""
    import sys

    from matplotlib import animation

    plt = _plt()
    stream = stream or sys.stderr
    v = ds["v"]
    t = np.asarray(ds["time"].values)
    x, y = np.asarray(ds["x"].values), np.asarray(ds["y"].values)
    first = np.asarray(v[0].values)
    lo, hi = _colour_range(v)
    aspect = (y[-1] - y[0]) / max(x[-1] - x[0], 1e-300)
    fig, ax = plt.subplots(figsize=(6.0, min(6.0 * aspect, 8.0) + 0.6), constrained_layout=True)
    im = ax.imshow(first, origin="lower", extent=_extent(x, y), vmin=lo, vmax=hi,
                   cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="v")
    title = ax.set_title(f"{ds.attrs.get('title', '')}  t = {t[0]:.4g}", fontsize=9)
    ax.set_xlabel("x")
    ax.set_ylabel("y")

    def frame(k):
        im.set_data(np.asarray(v[k].values))
        title.set_text(f"{ds.attrs.get('title', '')}  t = {t[k]:.4g}")
        return im, title

    anim = animation.FuncAnimation(fig, frame, frames=t.size, blit=False)
    ext = out.suffix[1:].lower()
    writer = animation.writers[MOVIE_FORMATS[ext]](fps=fps)
    bar = None
    if progress and getattr(stream, "isatty", lambda: False)():
        from tqdm import tqdm

        bar = tqdm(total=t.size, unit="frame", desc=f"rendering {out.name}", file=stream)
    try:
        anim.save(out, writer=writer,
                  progress_callback=(lambda i, n: bar.update(1)) if bar is not None else None)
    except OSError as exc:
        raise CaseError(f"cannot write {out} ({exc.strerror or exc}); choose a writable path "
                        "with free space", key="--movie") from None
    finally:
        if bar is not None:
            bar.close()
        plt.close(fig)
    return out


def plot_store(path, out=None, movie=None) -> Path:
    """Draw a run or sweep store to a picture (default: ``<store>.png`` beside it) and, for
    a sheet with ``movie`` (a ``.gif`` or ``.mp4`` path), an animation.

    The store's metadata is checked first (:func:`fhnpde.store.open_run`), then the
    picture's path (:func:`check_out`), both before any data is read; a chunk that does not
    decode is named (:func:`fhnpde.storecheck.reading`). Each is a :class:`CaseError`.
    """
    from .store import open_run
    from .storecheck import reading

    ds = open_run(path)
    out = check_out(out if out is not None else default_out(path))
    sheet = "y" in ds.dims and ds.attrs.get("layout") != "sweep"
    if movie is not None:
        if not sheet:
            raise CaseError(f"animations are drawn of sheet stores (v over time, y, x); "
                            f"{path} is not one: leave out --movie", key="--movie")
        movie = check_movie_out(movie)
    if ds.attrs.get("layout") == "sweep":
        # the picture needs the summaries, not the fields a sweep may keep
        ds = ds.drop_vars([n for n in ("v", "w") if n in ds.data_vars])
    if sheet:  # read snapshot by snapshot, frame by frame: a sheet's history may be large
        with reading(path):
            picture = plot_sheet(ds, out)
            if movie is not None:
                sheet_movie(ds, movie)
        return picture
    with reading(path):
        ds = ds.load()
    if ds.attrs.get("layout") == "sweep":
        return plot_sweep(ds, out)
    if "x" in ds.dims:
        return plot_cable(ds, out)
    return plot_point(ds, out)


def default_out(store) -> Path:
    """``runs/a.zarr`` -> ``runs/a.png``."""
    base = Path(str(store).rstrip("/") or "/")
    if base.name in ("", ".", ".."):
        base = base.resolve()
    return base.with_suffix(".png")


def picture_formats() -> list[str]:
    """File extensions matplotlib can write (``png``, ``pdf``, ``svg``, ...)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return sorted(FigureCanvasBase.get_supported_filetypes())


def check_out(out, key: str = "--out", formats=None) -> Path:
    """The picture's path, checked before any work: its extension names a format matplotlib
    writes (or one of ``formats``), its folder exists or can be made, and a file can be
    created there. CaseError naming ``out`` and what to do otherwise."""
    text = str(out)
    if "\x00" in text:
        raise CaseError(f"{text!r} contains a NUL byte; give a file name such as plot.png",
                        key=key)
    p = Path(text)
    shown = text if len(text) <= 80 else text[:60] + f"... ({len(text)} characters)"
    if text.endswith(("/", os.sep)):
        raise CaseError(f"{shown} names a folder; give a file name in it, e.g. "
                        f"{p / 'plot.png'}", key=key)
    formats = list(formats) if formats is not None else picture_formats()
    ext = p.suffix[1:].lower()
    if ext not in formats:
        what = f"extension .{ext}" if ext else "no extension"
        raise CaseError(f"{shown} has {what}, which names no picture format matplotlib writes; "
                        f"end it with one of .{', .'.join(f for f in ('png', 'pdf', 'svg'))} "
                        f"(all: {', '.join(formats)})", key=key)
    try:
        for parent in p.parents:
            if parent.exists() or parent.is_symlink():
                if not parent.is_dir():
                    raise CaseError(f"cannot write {shown}: {parent} is a file, not a folder; "
                                    "choose a path in a folder", key=key)
                break
        if p.is_dir():
            raise CaseError(f"{shown} is a folder; give a file name in it, e.g. "
                            f"{p / 'plot.png'}", key=key)
        existed = p.exists()
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "ab"):
            pass
        if not existed:
            p.unlink()
    except OSError as exc:  # too long a name, no permission, a read-only file system
        raise CaseError(f"cannot write {shown} ({exc.strerror or exc}); choose a writable path",
                        key=key) from None
    return p


def _save(fig, out: Path, dpi: int) -> Path:
    """``fig.savefig(out)`` and close the figure; a failed write (disk full, the folder gone)
    is a CaseError naming the file."""
    plt = _plt()
    try:
        fig.savefig(out, dpi=dpi)
    except OSError as exc:
        raise CaseError(f"cannot write {out} ({exc.strerror or exc}); choose a writable path "
                        "with free space", key="--out") from None
    finally:
        plt.close(fig)
    return out


# --- studies (convergence orders, stability limits) ----------------------------------------


def plot_convergence(h, errors: dict, out, *, xlabel: str = "h", declared_order=None,
                     fitted: dict | None = None, title: str = "", note: str = "",
                     slopes=(1, 2)) -> Path:
    """Log-log plot of errors against the step ``h`` with dashed reference slopes.

    ``errors`` maps a label (e.g. "rmse") to one error per level; ``fitted`` maps the same
    labels to fitted orders shown in the legend. Reference lines ``C h^p`` for every ``p`` in
    ``slopes`` and the declared order pass through the finest level's first error.
    """
    plt = _plt()
    out = Path(out)
    h = np.asarray(h, dtype=float)
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    markers = iter(("o", "s", "^", "D", "v"))
    for label, e in errors.items():
        e = np.asarray(e, dtype=float)
        fit = (fitted or {}).get(label)
        shown = fit is not None and np.isfinite(fit)
        text = label + (f" (fitted order {fit:.2f})" if shown else "")
        ax.loglog(h, e, marker=next(markers), lw=1.4, label=text)
    first = np.asarray(next(iter(errors.values())), dtype=float)
    orders = sorted({int(p) for p in slopes} | ({int(declared_order)} if declared_order else set()))
    anchor_h, anchor_e = h[-1], first[-1]
    styles = iter(("--", ":", "-.", (0, (5, 2, 1, 2)), (0, (1, 3))))
    for p in orders:
        line = anchor_e * (h / anchor_h) ** p
        extra = " (declared)" if declared_order is not None and p == declared_order else ""
        ax.loglog(h, line, ls=next(styles), color="0.45", lw=1.0, label=f"slope {p}{extra}")
    ax.set_xticks(h, [f"{x:.3g}" for x in h], fontsize=8)
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_xlabel(xlabel + (f"\n{note}" if note else ""), fontsize=9)
    ax.set_ylabel("error of v")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return _save(fig, out, 90)


def plot_stability(solvers, largest, to_cap, out, *, explicit_limit=None, cap=None,
                   theory=None, title: str = "") -> Path:
    """Bar chart (log scale) of the largest stable dt per solver.

    A bar that reached the search cap is hatched and labelled "stable up to the cap"; the
    explicit limit dx^2/(2D) and the cap are horizontal lines, each solver's theoretical
    limit (where one exists) a short black tick on its bar.
    """
    plt = _plt()
    out = Path(out)
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    xs = np.arange(len(solvers))
    values = [np.nan if v is None else v for v in largest]
    colours = ["tab:green" if c else "tab:blue" for c in to_cap]
    bars = ax.bar(xs, values, color=colours, width=0.6)
    for bar, capped, v in zip(bars, to_cap, values, strict=True):
        if capped:
            bar.set_hatch("//")
        if np.isfinite(v):
            label = "stable up to\nthe cap" if capped else f"{v:.4g}"
            ax.annotate(label, (bar.get_x() + bar.get_width() / 2, v), ha="center",
                        va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
    for x, t in zip(xs, theory or [None] * len(solvers), strict=True):
        if t is not None:
            ax.plot([x - 0.35, x + 0.35], [t, t], color="black", lw=2.0)
    if explicit_limit is not None:
        ax.axhline(explicit_limit, color="tab:red", ls="--", lw=1.0,
                   label=f"dx²/(2D) = {explicit_limit:.4g}")
    if cap is not None:
        ax.axhline(cap, color="0.4", ls=":", lw=1.0, label=f"search cap = {cap:.4g}")
    ax.set_yscale("log")
    ax.set_xticks(xs, solvers, fontsize=8)
    ax.set_ylabel("largest stable dt")
    ax.set_title(title, fontsize=9)
    finite = [v for v in values if np.isfinite(v)]
    top = max(finite + [cap or 0.0])
    bottom = min(finite + ([explicit_limit] if explicit_limit else []), default=top)
    ax.set_ylim(bottom / 4.0, top * 4.0)
    ax.grid(alpha=0.3, axis="y", which="both")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return _save(fig, out, 90)


# --- sweeps (threshold maps) ----------------------------------------------------------------


def sweep_grid(ds):
    """A sweep store's members on the grid of its first two varied keys, or None.

    Returns ``(keys, axes, index)`` where ``index[i, j]`` is the member at
    ``(axes[0][i], axes[1][j])``, when every pair of values occurs exactly once.
    """
    keys = list(ds.attrs.get("varied", []))[:2]
    if len(keys) != 2 or len(ds.attrs.get("varied", [])) != 2:
        return None
    c0, c1 = (np.asarray(ds[k].values) for k in keys)
    u0, u1 = np.unique(c0), np.unique(c1)
    if u0.size * u1.size != c0.size:
        return None
    index = np.full((u0.size, u1.size), -1)
    index[np.searchsorted(u0, c0), np.searchsorted(u1, c1)] = np.arange(c0.size)
    if (index < 0).any():
        return None
    return keys, (u0, u1), index


def plot_sweep(ds, out: Path) -> Path:
    """Threshold map of a sweep store: did a pulse reach the far end, and how fast.

    Two varied keys on a full grid: cells coloured by outcome (no propagation, propagated,
    failed, pending) with the propagation boundary drawn as the 0.5 contour of
    ``propagated``, and the measured speed beside it. Otherwise a scatter of the members over
    their first two varied keys (or over the one varied key and speed).
    """
    plt = _plt()
    from matplotlib.colors import BoundaryNorm, ListedColormap

    status = np.asarray(ds["status"].values)
    prop = np.asarray(ds["propagated"].values).astype(float)
    prop[prop < 0] = np.nan  # -1: not measured (sheet members)
    speed = np.asarray(ds["speed"].values, dtype=float)
    speed = np.where(prop > 0, speed, np.nan)
    # outcome: 0 no propagation, 1 propagated, 2 failed, 3 pending
    outcome = np.where(status == 1, prop, np.where(status == 2, 2.0, 3.0))
    cmap = ListedColormap(["#d9d9d9", "#2c7fb8", "#e34a33", "white"])
    norm = BoundaryNorm([-0.5, 0.5, 1.5, 2.5, 3.5], cmap.N)
    names = ["no propagation", "propagated", "failed", "pending"]
    keys = list(ds.attrs.get("varied", []))
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 5.2))
    grid = sweep_grid(ds)
    if grid is not None:
        (k0, k1), (u0, u1), index = grid
        img = outcome[index].T  # rows: second key (y), columns: first key (x)
        ax0.pcolormesh(u0, u1, img, cmap=cmap, norm=norm, shading="nearest")
        ok = (status[index] == 1).T
        threshold_line = ok.all() and 0 < prop.sum() < prop.size
        if threshold_line:
            ax0.contour(u0, u1, prop[index].T, levels=[0.5], colors="black", linewidths=1.5)
        im = ax1.pcolormesh(u0, u1, speed[index].T, cmap="viridis", shading="nearest")
        fig.colorbar(im, ax=ax1, label="speed")
        for ax in (ax0, ax1):
            ax.set_xlabel(k0)
            ax.set_ylabel(k1)
    else:
        threshold_line = False
        k0 = keys[0]
        x = np.asarray(ds[k0].values, dtype=float)
        if len(keys) >= 2:
            y, ylabel = np.asarray(ds[keys[1]].values, dtype=float), keys[1]
        else:
            y, ylabel = prop, "propagated"
        ax0.scatter(x, y, c=outcome, cmap=cmap, norm=norm, s=18, edgecolors="0.3",
                    linewidths=0.3)
        ax0.set_xlabel(k0)
        ax0.set_ylabel(ylabel)
        sc = ax1.scatter(x, speed, c=speed, cmap="viridis", s=18)
        fig.colorbar(sc, ax=ax1, label="speed")
        ax1.set_xlabel(k0)
        ax1.set_ylabel("speed")
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i), ec="0.3") for i in range(4)
               if (outcome == i).any()]
    labels = [names[i] for i in range(4) if (outcome == i).any()]
    if threshold_line:
        handles.append(plt.Line2D([], [], color="black", lw=1.5))
        labels.append("threshold (propagated = 0.5)")
    ax0.legend(handles, labels, fontsize=8, loc="lower right", framealpha=0.8)
    n_prop = int(((status == 1) & (prop > 0)).sum())
    ax0.set_title(f"{ds.attrs.get('title', '')}: {n_prop} of {status.size} members propagated"
                  f", {int((status == 2).sum())} failed", fontsize=10)
    ax1.set_title("measured conduction speed (propagated members)", fontsize=10)
    fig.tight_layout()
    return _save(fig, out, 110)
