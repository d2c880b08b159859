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
from matplotlib.patches import Patch
from rasterio.enums import Resampling


def map_axes(ax, crs: str | None) -> None:
    """Axis labels with the CRS and units, and ticks in kilometres (six-digit metre ticks overlap)."""
    from matplotlib.ticker import FuncFormatter

    km = FuncFormatter(lambda v, _: f"{v / 1000:.0f}")
    ax.xaxis.set_major_formatter(km)
    ax.yaxis.set_major_formatter(km)
    where = f", {crs}" if crs else ""
    ax.set_xlabel(f"easting (km{where})", fontsize=8)
    ax.set_ylabel(f"northing (km{where})", fontsize=8)
    ax.tick_params(labelsize=7)


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
    map_axes(ax, str(src.crs))
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

    from models.interpretation.landcover import PALETTE, WORLDCOVER

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


def toc_bands(table: pd.DataFrame, title: str = "TOC with 95% pointwise bands") -> Figure:
    """TOC curves with bands (``models.causal.heterogeneity.toc_by_choice``): one panel per learner, one
    line per data choice."""
    learners = list(table["learner"].unique())
    fig = Figure(figsize=(4.2 * len(learners), 3.6))
    axes = fig.subplots(1, len(learners), squeeze=False, sharey=True)[0]
    for ax, learner in zip(axes, learners, strict=True):
        for choice, part in table[table["learner"] == learner].groupby("data_choice", sort=False):
            (line,) = ax.plot(part["q"], part["toc"], label=choice)
            ax.fill_between(part["q"], part["ci_lower"], part["ci_upper"], color=line.get_color(), alpha=0.15)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel("share treated, by priority (q)")
        ax.set_title(learner, fontsize=9)
    axes[0].set_ylabel("TOC(q), outcome units")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def gates_calibration(table: pd.DataFrame, learner: str, title: str = "GATES by CATE quintile") -> Figure:
    """Calibration plot (``models.causal.heterogeneity.gates_by_choice``): each quintile's GATE with its 95%
    interval against its mean predicted CATE, one series per data choice; the diagonal is perfect
    calibration."""
    fig = Figure(figsize=(5.2, 4))
    ax = fig.subplots()
    part = table[table["learner"] == learner]
    for k, (choice, rows) in enumerate(part.groupby("data_choice", sort=False)):
        offset = (k - 1.5) * 0.01 * (part["mean_value"].max() - part["mean_value"].min() + 1e-9)
        yerr = [rows["gate"] - rows["ci_lower"], rows["ci_upper"] - rows["gate"]]
        ax.errorbar(rows["mean_value"] + offset, rows["gate"], yerr=yerr, fmt="o-", capsize=2, ms=3, label=choice)
    low = min(part["mean_value"].min(), part["ci_lower"].min())
    high = max(part["mean_value"].max(), part["ci_upper"].max())
    ax.plot([low, high], [low, high], color="grey", lw=0.8, ls="--", label="calibrated")
    ax.set_xlabel("mean predicted CATE in quintile")
    ax.set_ylabel("GATE (mean DR score), 95% CI")
    ax.set_title(f"{title} ({learner})", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


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


def bias_by_response(summary: pd.DataFrame, title: str = "bias per unit of effect vs the map's treatment response") -> Figure:
    """Each method's slope of estimated on true effect minus 1 (0 = unbiased) against the response
    ratio (the map's treatment response over its calibration slope), one point per response setting
    (columns response, method, slope, response_ratio). LCC and Tweedie assume a ratio of 1."""
    rows = summary.drop_duplicates(["response", "method"]).sort_values("response_ratio")
    fig = Figure(figsize=(6.5, 3.8))
    ax = fig.subplots()
    for method, part in rows[rows["method"] != "oracle"].groupby("method", sort=False):
        ax.plot(part["response_ratio"], part["slope"] - 1, marker="o", label=method)
    low = float((rows["slope"] - 1).min())
    ax.set_ylim(low - 1.0, max(0.3, float((rows["slope"] - 1).max()) + 0.1))
    for _, row in rows.drop_duplicates("response").iterrows():  # the settings' names below the lines
        name = row["response"].removeprefix("imagery: ")
        ax.annotate(name, (row["response_ratio"], low - 0.95), fontsize=6, rotation=90, va="bottom", ha="center")
    ax.axhline(0, color="grey", lw=0.8, ls="--")
    ax.axvline(1, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("map's treatment response / calibration slope b")
    ax.set_ylabel("slope of estimate on true effect - 1")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def wealth_calibration(predictions: pd.DataFrame, title: str = "wealth map: predicted vs surveyed") -> Figure:
    """Predicted against surveyed wealth, one panel per split (columns split, prediction, wealth),
    with the diagonal and the least-squares line of prediction on truth: its slope is the
    attenuation b that the corrections undo (calibration split) and that trials inherit."""
    splits = [s for s in ("train", "calibration", "test") if s in set(predictions["split"])]
    fig = Figure(figsize=(3.2 * len(splits), 3.2))
    axes = np.atleast_1d(fig.subplots(1, len(splits), sharex=True, sharey=True))
    low, high = predictions[["prediction", "wealth"]].min().min(), predictions[["prediction", "wealth"]].max().max()
    for ax, split in zip(axes, splits, strict=True):
        part = predictions[predictions["split"] == split]
        slope, intercept = np.polyfit(part["wealth"], part["prediction"], 1)
        ax.scatter(part["wealth"], part["prediction"], s=3, alpha=0.4, color="tab:blue")
        ax.plot([low, high], [low, high], color="grey", lw=0.8, ls="--", label="prediction = truth")
        ax.plot([low, high], [intercept + slope * low, intercept + slope * high], color="tab:red", lw=1.2, label=f"fit, slope {slope:.2f}")
        ax.set_title(f"{split} ({len(part)})", fontsize=9)
        ax.set_xlabel("surveyed wealth index", fontsize=8)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("predicted wealth index", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def estimate_distributions(trials: pd.DataFrame, title: str = "trial estimates by method") -> Figure:
    """Box plots of the ATE estimates over simulated trials (columns response, method, true_effect,
    estimate): one row per response, one panel per true effect, the true effect as a line."""
    responses, effects = list(trials["response"].unique()), sorted(trials["true_effect"].unique())
    methods = list(trials["method"].unique())
    fig = Figure(figsize=(2.4 * len(effects) + 0.6, 2.6 * len(responses)))
    axes = np.atleast_2d(fig.subplots(len(responses), len(effects), sharey=True, squeeze=False))
    for i, response in enumerate(responses):
        for j, effect in enumerate(effects):
            ax = axes[i, j]
            part = trials[(trials["response"] == response) & (trials["true_effect"] == effect)]
            ax.boxplot([part.loc[part["method"] == m, "estimate"] for m in methods], showfliers=False)
            ax.set_xticks(range(1, len(methods) + 1), methods, rotation=45, fontsize=7)
            ax.axhline(effect, color="tab:red", lw=1, ls="--")
            ax.set_title(f"{response}, true effect {effect:+.2f}", fontsize=8)
        axes[i, 0].set_ylabel("estimated ATE", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def cate_map(
    cate: np.ndarray,
    outside: np.ndarray,
    extent: tuple[float, float, float, float],
    title: str = "CATE",
    units: pd.DataFrame | None = None,
    crs: str | None = None,
    truth: pd.Series | None = None,
) -> Figure:
    """The CATE grid with the trial's units (``x``, ``y`` in the grid's CRS) overlaid; beside it the
    cells inside the trial's support (hatched: extrapolation); and, where the simulator's truth is
    known (``truth``: true CATE by unit_id), the units coloured by their true CATE on the same scale."""
    panels = 3 if truth is not None else 2
    fig = Figure(figsize=(4.6 * panels + 1, 4.4), layout="constrained")
    axes = fig.subplots(1, panels)
    lo, hi = np.nanpercentile(cate, [2, 98])
    im = axes[0].imshow(cate, cmap="viridis", extent=extent, vmin=lo, vmax=hi)
    axes[0].set_title(title, fontsize=9)
    masked = np.where(outside > 0, np.nan, cate)
    axes[1].imshow(masked, cmap="viridis", extent=extent, vmin=lo, vmax=hi)
    axes[1].contourf(np.flipud(outside > 0), levels=[0.5, 1.5], colors="none", hatches=["///"], extent=extent)
    axes[1].set_title("where the trial has support (hatched: extrapolation)", fontsize=9)
    if units is not None:
        for ax in axes[:2]:
            ax.scatter(units["x"], units["y"], s=3, facecolors="none", edgecolors="white", linewidths=0.4, label="trial units")
        axes[0].legend(loc="lower right", fontsize=7, framealpha=0.6)
    if truth is not None and units is not None:
        true = truth.reindex(units["unit_id"].astype(str)).to_numpy(dtype=float)
        axes[2].imshow(np.full_like(cate, np.nan), extent=extent)
        axes[2].scatter(units["x"], units["y"], c=true, s=8, cmap="viridis", vmin=lo, vmax=hi)
        axes[2].set_title("truth (simulator): each unit's true CATE", fontsize=9)
    for ax in axes:
        map_axes(ax, crs)
    fig.colorbar(im, ax=axes.tolist(), shrink=0.8, label="CATE (outcome units)")
    return fig


def raster_panels(
    layers: dict[str, np.ndarray], extent: tuple[float, float, float, float], cmap: str = "RdYlGn", crs: str | None = None, label: str = ""
) -> Figure:
    """Side-by-side maps on a shared colour scale (e.g. true vs naive vs debiased wealth)."""
    lo = min(np.nanpercentile(v, 2) for v in layers.values())
    hi = max(np.nanpercentile(v, 98) for v in layers.values())
    fig = Figure(figsize=(4.4 * len(layers) + 1, 4.4), layout="constrained")
    axes = fig.subplots(1, len(layers), squeeze=False)
    for ax, (name, values) in zip(axes[0], layers.items(), strict=True):
        im = ax.imshow(values, cmap=cmap, extent=extent, vmin=lo, vmax=hi)
        ax.set_title(name, fontsize=9)
        map_axes(ax, crs)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label=label)
    return fig


def coefficient_plot(blp: pd.DataFrame, title: str = "What in the landscape moves the effect") -> Figure:
    """BLP coefficients per 10 percentage points with 95% intervals, one row per feature."""
    table = blp.iloc[::-1]
    fig = Figure(figsize=(6.5, 0.35 * len(table) + 1.5))
    ax = fig.subplots()
    y = np.arange(len(table))
    est, lo, hi = 0.1 * table["estimate"], 0.1 * table["ci_lower"], 0.1 * table["ci_upper"]
    colours = np.where(lo > 0, "tab:green", np.where(hi < 0, "tab:red", "tab:gray"))
    for yi, e, l, h, c in zip(y, est, lo, hi, colours, strict=True):
        ax.plot([l, h], [yi, yi], color=c, lw=1.5)
        ax.plot([e], [yi], "o", color=c)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, table["feature"], fontsize=8)
    ax.set_xlabel("change in the treatment effect per 10 percentage points (95% CI)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def rate_difference_plot(differences: pd.DataFrame, target: str = "AUTOC") -> Figure:
    """Paired RATE differences between data choices as a forest plot, one panel per learner: each
    row "a - b" with its 95% interval from the same half-sample draws; green or red where the
    interval excludes zero."""
    table = differences[differences["target"] == target]
    learners = list(table["learner"].unique())
    rows = max(len(table[table["learner"] == learner]) for learner in learners)
    fig = Figure(figsize=(4.2 * len(learners), 0.32 * rows + 1.4))
    axes = fig.subplots(1, len(learners), squeeze=False, sharex=True)[0]
    for ax, learner in zip(axes, learners, strict=True):
        part = table[table["learner"] == learner].iloc[::-1]
        y = np.arange(len(part))
        lo, hi, est = part["ci_lower"].to_numpy(), part["ci_upper"].to_numpy(), part["difference"].to_numpy()
        colours = np.where(lo > 0, "tab:green", np.where(hi < 0, "tab:red", "tab:gray"))
        ax.hlines(y, lo, hi, colors=colours, lw=1.5)
        ax.scatter(est, y, c=colours, s=14, zorder=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(y, [f"{a} - {b}" for a, b in zip(part["data_choice_a"], part["data_choice_b"], strict=True)], fontsize=7)
        ax.set_title(learner, fontsize=9)
        ax.set_xlabel(f"difference in {target} (95% CI)", fontsize=8)
    fig.tight_layout()
    return fig


def confusion_plot(confusion: pd.DataFrame, title: str = "held-out confusion matrix (row-normalized)") -> Figure:
    """The confusion matrix as an image, rows normalized to recall."""
    values = confusion.to_numpy(float)
    norm = values / np.maximum(values.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    labels = [str(c).split(" ")[0] for c in confusion.index]
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    for (i, j), v in np.ndenumerate(norm):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="white" if v > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def _class_rgb(classes: np.ndarray) -> np.ndarray:
    from models.interpretation.landcover import PALETTE

    lut = np.zeros((256, 3), dtype=np.float32)
    for code, rgb in PALETTE.items():
        lut[code] = np.asarray(rgb) / 255
    return lut[classes]


def land_cover_panel(
    paths: list[str], dates: list[str], classes: list[int] | None = None, left_out: dict[int, int] | None = None, max_px: int = 300
) -> Figure:
    """The classified maps side by side in WorldCover colours (decimated reads). The legend shows the
    mapped ``classes`` and names the classes ``left_out`` for too few labels (with their pixel counts)."""
    from models.interpretation.landcover import PALETTE, WORLDCOVER

    fig = Figure(figsize=(2.4 * len(paths), 2.9))
    axes = fig.subplots(1, len(paths), squeeze=False)
    for ax, path, date in zip(axes[0], paths, dates, strict=True):
        with rasterio.open(path) as src:
            factor = max(1, int(np.ceil(max(src.width, src.height) / max_px)))
            codes = src.read(1, out_shape=(src.height // factor, src.width // factor), resampling=Resampling.nearest)
        ax.imshow(_class_rgb(codes))
        ax.set_title(date, fontsize=8)
        ax.axis("off")
    handles = [Patch(color=np.asarray(PALETTE[c]) / 255, label=f"{c} {WORLDCOVER[c]}") for c in (classes or list(PALETTE)[:9])]
    handles += [
        Patch(fill=False, hatch="//", label=f"not mapped, {n} labelled px: {c} {WORLDCOVER[c]}") for c, n in (left_out or {}).items()
    ]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=6)
    fig.tight_layout(rect=(0, 0.06 + 0.04 * np.ceil(len(handles) / 4), 1, 1))
    return fig


def example_chips(
    sequences: list[np.ndarray], land_cover: list[np.ndarray], bands: list[str], labels: list[str], dates: list[str]
) -> Figure:
    """One row per unit: its true-colour sequence, then its classified land cover at the last date."""
    rows, cols = len(sequences), len(dates) + 1
    fig = Figure(figsize=(1.3 * cols, 1.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    rgb_idx = [bands.index(b) for b in ("red", "green", "blue")]
    for r, (seq, classes, label) in enumerate(zip(sequences, land_cover, labels, strict=True)):
        frames = np.nan_to_num(_stretch(seq[:, rgb_idx].transpose(0, 2, 3, 1)))
        for c in range(len(dates)):
            axes[r, c].imshow(frames[c])
            axes[r, c].axis("off")
            if r == 0:
                axes[r, c].set_title(dates[c][:4], fontsize=7)
        axes[r, -1].imshow(_class_rgb(classes))
        axes[r, -1].axis("off")
        axes[r, 0].text(-0.1, 0.5, label, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=7)
    axes[0, -1].set_title("land cover", fontsize=7)
    fig.tight_layout()
    return fig
