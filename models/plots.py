"""Figures for the asset pages and for notebooks: plain matplotlib, returned unsaved.

Figures are built with matplotlib's object API (``Figure``), not ``pyplot``: no global figure
registry to leak into, no backend switched for the whole process, safe in Dagster's worker threads.
A notebook shows them by evaluating the returned figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import rasterio
from matplotlib.figure import Figure
from rasterio.enums import Resampling


def _stretch(img: np.ndarray) -> np.ndarray:
    lo, hi = np.nanpercentile(img, [2, 98]) if np.isfinite(img).any() else (0.0, 1.0)
    return np.clip((img - lo) / (hi - lo + 1e-9), 0, 1)


def study_area_map(scene_path: str, units: pd.DataFrame, band: int = 4, max_px: int = 800) -> Figure:
    """One band of a scene (decimated read, never the full raster) with units coloured by arm."""
    with rasterio.open(scene_path) as src:
        factor = max(1, int(np.ceil(max(src.width, src.height) / max_px)))
        shape = (src.height // factor, src.width // factor)
        img = src.read(min(band, src.count), out_shape=shape, resampling=Resampling.average, masked=True).astype(float).filled(np.nan)
        left, bottom, right, top = src.bounds
    fig = Figure(figsize=(6, 6))
    ax = fig.subplots()
    ax.imshow(_stretch(img), cmap="gray", extent=(left, right, bottom, top))
    for arm, colour in ((0, "tab:blue"), (1, "tab:orange")):
        sel = units[units["treatment"] == arm]
        ax.scatter(sel["x"], sel["y"], s=6, c=colour, label=f"{'treated' if arm else 'control'} (n={len(sel)})")
    ax.set_title(f"study area: units over band {band}")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    fig.tight_layout()
    return fig


def sequence_strip(reflectance: np.ndarray, dates: list[str], bands: list[str], title: str) -> Figure:
    """True-colour strip of one unit's T x C x H x W sequence (masked pixels shown black)."""
    rgb_idx = [bands.index(b) if b in bands else i for i, b in enumerate(("red", "green", "blue"))]
    rgb = _stretch(reflectance[:, rgb_idx].transpose(0, 2, 3, 1))
    rgb = np.nan_to_num(rgb)
    fig = Figure(figsize=(1.6 * len(dates), 2.0))
    axes = fig.subplots(1, len(dates), squeeze=False)
    for ax, frame, date in zip(axes[0], rgb, dates, strict=True):
        ax.imshow(frame)
        ax.set_title(str(date)[:10], fontsize=7)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _lines(
    series: dict[str, tuple[np.ndarray, np.ndarray]],
    xlabel: str,
    ylabel: str,
    title: str,
    zero_line: bool = False,
    marker: str | None = None,
) -> Figure:
    fig = Figure(figsize=(5.5, 3.5))
    ax = fig.subplots()
    for name, (x, y) in series.items():
        ax.plot(x, y, label=name, marker=marker)
    if zero_line:
        ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def training_curves(histories: list[list[dict]], title: str) -> Figure:
    """Loss per epoch, one line per fold."""
    series = {
        (f"fold {k}" if len(histories) > 1 else "loss"): ([r["epoch"] for r in h], [r["loss"] for r in h])
        for k, h in enumerate(histories)
        if h
    }
    return _lines(series, "epoch", "loss", title, marker="o")


def embedding_pca(embeddings: np.ndarray, colour_by: dict[str, np.ndarray], title: str) -> Figure:
    """First two principal components, one panel per colouring (e.g. treatment arm, land cover)."""
    from sklearn.decomposition import PCA

    from models.landcover import PALETTE, WORLDCOVER

    xy = PCA(n_components=2).fit_transform(embeddings)
    fig = Figure(figsize=(4.5 * len(colour_by), 4))
    axes = fig.subplots(1, len(colour_by), squeeze=False)
    for ax, (name, labels) in zip(axes[0], colour_by.items(), strict=True):
        for value in np.unique(labels):
            sel = labels == value
            colour = np.array(PALETTE[int(value)]) / 255 if name == "land cover" and int(value) in PALETTE else None
            label = WORLDCOVER.get(int(value), str(value)) if name == "land cover" else f"{name}={value}"
            ax.scatter(xy[sel, 0], xy[sel, 1], s=5, color=colour, label=label)
        ax.set_title(f"{title}: {name}", fontsize=9)
        ax.set_xlabel("PC1")
        ax.set_ylabel("PC2")
        ax.legend(fontsize=6, markerscale=2)
    fig.tight_layout()
    return fig


def toc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str = "TOC") -> Figure:
    """Targeting operator characteristic curves, one per priority rule."""
    return _lines(curves, "share treated, by priority (q)", "TOC(q)", title, zero_line=True)


def metric_bars(table: pd.DataFrame, metric: str, by: str, hue: str, title: str) -> Figure:
    """Mean (and sd error bars) of ``metric`` grouped by ``by`` with one bar per ``hue`` value."""
    summary = table.groupby([by, hue])[metric].agg(["mean", "std"]).reset_index()
    groups, hues = list(summary[by].unique()), list(summary[hue].unique())
    width = 0.8 / len(hues)
    fig = Figure(figsize=(1.8 * len(groups) + 2, 3.5))
    ax = fig.subplots()
    for i, h in enumerate(hues):
        sel = summary[summary[hue] == h].set_index(by).reindex(groups)
        ax.bar(np.arange(len(groups)) + i * width, sel["mean"], width, yerr=sel["std"].fillna(0), label=str(h), capsize=2)
    ax.set_xticks(np.arange(len(groups)) + width * (len(hues) - 1) / 2, groups, fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def cate_map(cate: np.ndarray, outside: np.ndarray, extent: tuple[float, float, float, float], title: str = "CATE") -> Figure:
    """The CATE grid beside it with cells outside the trial's support hatched out."""
    fig = Figure(figsize=(10, 4.5))
    axes = fig.subplots(1, 2)
    im = axes[0].imshow(cate, cmap="viridis", extent=extent)
    fig.colorbar(im, ax=axes[0], shrink=0.8, label="CATE")
    axes[0].set_title(title)
    masked = np.where(outside > 0, np.nan, cate)
    im2 = axes[1].imshow(masked, cmap="viridis", extent=extent, vmin=np.nanmin(cate), vmax=np.nanmax(cate))
    axes[1].contourf(np.flipud(outside > 0), levels=[0.5, 1.5], colors="none", hatches=["///"], extent=extent)
    axes[1].set_title("CATE where the trial has support (hatched: extrapolation)")
    fig.colorbar(im2, ax=axes[1], shrink=0.8)
    fig.tight_layout()
    return fig


def raster_panels(layers: dict[str, np.ndarray], extent: tuple[float, float, float, float], cmap: str = "RdYlGn") -> Figure:
    """Side-by-side maps on a shared colour scale (e.g. naive vs debiased wealth)."""
    lo = min(np.nanpercentile(v, 2) for v in layers.values())
    hi = max(np.nanpercentile(v, 98) for v in layers.values())
    fig = Figure(figsize=(4.2 * len(layers), 4))
    axes = fig.subplots(1, len(layers), squeeze=False)
    for ax, (name, values) in zip(axes[0], layers.items(), strict=True):
        im = ax.imshow(values, cmap=cmap, extent=extent, vmin=lo, vmax=hi)
        ax.set_title(name, fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    return fig
