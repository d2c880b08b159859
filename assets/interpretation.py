"""Interpretation: land-cover maps over the imagery, each unit's land cover, and which land cover
drives the effect heterogeneity (the BLP of the DR scores), with example chips."""

from typing import Literal

import dagster as dg
import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr

from assets.metadata import figure_md, table_md
from assets.partitions import trials
from assets.retries import retry_transient_io
from models.analyst.plots import coefficient_plot, confusion_plot, example_chips, land_cover_panel
from models.causal.cate import SCORE_CHOICE, LearnerConfig, fit_full
from models.ingest.chips import CHIP_SIZE
from models.ingest.design import cluster_groups, trial_frame
from models.interpretation.attribution import attenuation_vs_truth, attribute, quantile_table
from models.interpretation.classifier import classify_scenes
from models.interpretation.landcover import WORLDCOVER, labels_for_scenes, land_cover_chips, map_files, unit_fractions
from models.io.manifest import StudyManifest
from models.io.rasters import Raster
from models.io.truth import read_unit_truth
from pipelines.resources import Config, StorageResource, StudySource

GROUP = "interpretation"


class LandCoverConfig(Config):
    """Where the training labels come from: the simulator's truth (demo), a categorical raster (any
    CRS, e.g. WorldCover) or a labelled vector file (points or polygons, any CRS) with a class column;
    ``crosswalk`` maps the user's class values to WorldCover codes. ``classifier`` 'auto' picks forest,
    logistic or boosting by spatially blocked cross-validation over ``cv_folds`` folds of ``block_px``
    blocks; a class with fewer than ``min_pixels_per_class`` labelled pixels is left out and named; a
    pixel missing up to ``max_missing_bands`` bands is classified from the bands it has."""

    labels: Literal["simulator", "raster", "vector"] = "simulator"
    label_path: str | None = None
    class_column: str = "class"
    crosswalk: dict[str, int] | None = None
    label_scene: int = -1  # which scene (date) the user's labels describe
    per_class: int = 2000
    min_pixels_per_class: int = 20
    block_px: int = 64
    cv_folds: int = 4
    classifier: Literal["auto", "forest", "logistic", "boosting"] = "auto"
    max_missing_bands: int = 1
    seed: int = 0


@dg.asset(
    group_name=GROUP,
    kinds={"geotiff", "sklearn"},
    io_manager_key="geotiff_io",
    check_specs=[
        dg.AssetCheckSpec(
            "land_cover_accuracy",
            asset="land_cover_maps",
            description="Pooled accuracy of the spatially blocked cross-validation is at least 0.7.",
        )
    ],
)
def land_cover_maps(
    context: dg.AssetExecutionContext,
    config: LandCoverConfig,
    imagery_catalog: pd.DataFrame,
    study_inputs: StudyManifest,
    storage: StorageResource,
):
    """One classified GeoTIFF per date (uint8 WorldCover codes, nodata 0, the WorldCover colour table,
    overviews) over the imagery's extent, in the folder ``land_cover_maps/``, and beside each a
    ``bands_used_<date>.tif`` bit mask of the bands every pixel was classified from.

    A classifier on the bands plus NDVI, NDWI and NDBI (forest, logistic or boosting, chosen by
    spatially blocked cross-validation), trained on labelled pixels. The accuracy, macro F1,
    per-class F1 with its spread across folds and the confusion matrix pool every held-out block of
    every fold. Classes with too few labels are left out and named; coverage says how much of the
    imagery got a class and how much of it from every band.
    """
    truth_dir = study_inputs.truth.landcover
    labels = labels_for_scenes(
        config.labels, imagery_catalog, truth_dir, config.label_path, config.class_column, config.crosswalk, config.label_scene
    )
    with retry_transient_io(context), storage.staging() as stage:
        staged = stage.output("land_cover_maps")
        result = classify_scenes(
            imagery_catalog, labels, staged.path, config.per_class, config.min_pixels_per_class, config.block_px,
            seed=config.seed, classifier=config.classifier, cv_folds=config.cv_folds, max_missing_bands=config.max_missing_bands,
        )  # fmt: skip
        left_out = ", ".join(f"{c} {WORLDCOVER[c]} ({n} px)" for c, n in result.left_out.items())
        if left_out:
            context.log.warning(f"land-cover classes left out for fewer than {config.min_pixels_per_class} labelled pixels: {left_out}")
        metadata = {
            "classifier": result.classifier,
            "accuracy": result.accuracy,
            "macro_f1": result.cv.macro_f1,
            "fold_accuracy": ", ".join(f"{a:.3f}" for a in result.cv.fold_accuracy),
            "cv_folds": result.cv_folds,
            "classifiers_compared": table_md(result.candidates),
            "classes_left_out": left_out or "none",
            "classes_missing_from_some_folds": ", ".join(result.cv.never_held_out) or "none",
            "coverage": table_md(result.coverage),
            "training_pixels": result.training_pixels,
            "train_seconds": result.train_seconds,
            "predict_seconds": result.predict_seconds,
            "per_class": table_md(result.cv.per_class),
            "confusion": table_md(result.cv.confusion.reset_index(names="true \\ predicted")),
            "confusion_plot": figure_md(confusion_plot(result.cv.confusion), "confusion"),
            "maps": figure_md(land_cover_panel(result.paths, result.dates, result.classes, result.left_out), "land cover"),
        }
        yield dg.Output(staged, metadata=metadata)
    yield dg.AssetCheckResult(
        check_name="land_cover_accuracy",
        passed=bool(result.accuracy >= 0.7),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"accuracy": result.accuracy, "macro_f1": result.cv.macro_f1, "classifier": result.classifier},
    )


class UnitLandCoverConfig(Config):
    """The chip around each unit over which class shares are counted (pixels per side)."""

    chip_size: int = CHIP_SIZE


@dg.asset(group_name=GROUP, kinds={"parquet"}, partitions_def=trials)
def unit_land_cover(config: UnitLandCoverConfig, land_cover_maps: Raster, rct_units: gpd.GeoDataFrame) -> dg.Output:
    """Per unit and date the share of each WorldCover class among the classified pixels of the unit's
    chip, and the change between the first and the last date.

    Columns: ``unit_id``; ``date`` (YYYY-MM-DD, or ``change`` for last minus first);
    ``frac_<code>`` the share of class <code> (0-1, NaN where the chip has no classified pixel; on
    ``change`` rows the difference in share).
    """
    paths, dates = map_files(land_cover_maps.path)
    table = unit_fractions(paths, dates, pd.DataFrame(rct_units.drop(columns="geometry")), config.chip_size)
    shares = table[table["date"] == dates[-1]].filter(like="frac_").mean()
    last = pd.DataFrame({"class": shares.index, "mean share at the last date": shares.to_numpy()})
    return dg.Output(table, metadata={"units": table["unit_id"].nunique(), "dates": len(dates), "mean_shares": table_md(last)})


@dg.asset_check(
    asset=unit_land_cover,
    blocking=True,
    partitions_def=trials,
    description="Each unit's class shares sum to one on every date where it has classified pixels.",
)
def land_cover_shares_sum_to_one(unit_land_cover: pd.DataFrame) -> dg.AssetCheckResult:
    """Shares are counted over classified pixels only, so they must add up to one."""
    dated = unit_land_cover[unit_land_cover["date"] != "change"].filter(like="frac_")
    sums = dated.sum(axis=1, min_count=1).dropna()
    return dg.AssetCheckResult(
        passed=bool(np.allclose(sums, 1.0, atol=1e-6)), metadata={"rows": len(sums), "max_deviation": float(np.abs(sums - 1).max())}
    )


class AttributionConfig(Config):
    """Reference class of the land-cover design: the other classes' coefficients read against it.
    Grassland (30) by default, a background class; the most common class where it is absent."""

    reference_class: int = 30
    cluster_vcov: Literal["CR3", "CR1"] = "CR3"  # with clusters: grf's clustered HC3, or CR1
    n_estimators: int = LearnerConfig.n_estimators
    seed: int = LearnerConfig.seed


@dg.asset(group_name=GROUP, kinds={"parquet", "statsmodels"}, partitions_def=trials)
def heterogeneity_attribution(
    context: dg.AssetExecutionContext,
    config: AttributionConfig,
    unit_land_cover: pd.DataFrame,
    cate_estimates: pd.DataFrame,
    rct_units: gpd.GeoDataFrame,
    study_inputs: StudyManifest,
    source: StudySource,
) -> dg.Output:
    """Which land cover raises or lowers the effect: the best linear projection of the DR scores on
    each class's share at the last date and its change since the first (HC3 standard errors,
    cluster-robust when the trial has clusters), per 10 percentage points, Bonferroni-adjusted.

    Beside it: the effect by quintile of the strongest features, the importance of each feature in a
    causal forest refitted on land cover alone, and, on the simulator, the same projection on the true
    land cover (how much misclassification attenuates the coefficients).
    """
    gamma = cate_estimates.drop_duplicates("unit_id").set_index("unit_id")["gamma"]
    clusters = rct_units.set_index("unit_id")["cluster"] if "cluster" in rct_units else None
    blp, design = attribute(unit_land_cover, gamma, clusters, config.reference_class, config.cluster_vcov)
    top = blp.reindex(blp["p_value"].sort_values().index)["term"].head(3).tolist()
    quintiles = quantile_table(
        gamma.loc[design.index].to_numpy(), design, top, clusters.loc[design.index].to_numpy() if clusters is not None else None
    )
    trial = trial_frame(rct_units, source.outcomes[0], design.index)
    forest = fit_full(
        "causal_forest",
        design.to_numpy(),
        trial["treatment"].to_numpy(),
        trial["outcome"].to_numpy(),
        trial["propensity"].to_numpy(),
        LearnerConfig(n_estimators=config.n_estimators, seed=config.seed),
        cluster_groups(trial),
    )
    importance = pd.DataFrame({"term": design.columns, "importance": forest.feature_importances_}).sort_values(
        "importance", ascending=False
    )
    meta = {
        "units": len(design),
        "reference_class": int(design.attrs["reference"]),
        "attribution": table_md(blp[["feature", "per_10pp", "per_10pp_lower", "per_10pp_upper", "p_value", "p_bonferroni"]]),
        "coefficients": figure_md(coefficient_plot(blp), "coefficients"),
        "effect_by_quintile": table_md(quintiles),
        "importance_in_land_cover_forest": table_md(importance),
    }
    truth = read_unit_truth(study_inputs.truth.units)
    if truth is not None:
        meta["attenuation_vs_true_land_cover"] = table_md(attenuation_vs_truth(blp, gamma, truth, design))
    context.log.info(f"land-cover attribution on {len(design)} units, reference class {design.attrs['reference']}")
    return dg.Output(blp, metadata=meta)


@dg.asset(group_name=GROUP, kinds={"png"}, partitions_def=trials, io_manager_key="file_io")
def land_cover_examples(
    cate_estimates: pd.DataFrame,
    unit_image_sequences: xr.Dataset,
    land_cover_maps: Raster,
    rct_units: gpd.GeoDataFrame,
    storage: StorageResource,
):
    """The three units with the highest and the three with the lowest estimated effect (the first
    learner on image sequence + tabular): their true-colour image sequences beside their classified
    land cover at the last date, as a PNG."""
    learner = cate_estimates["learner"].iloc[0]
    pick = cate_estimates[(cate_estimates["data_choice"] == SCORE_CHOICE) & (cate_estimates["learner"] == learner)]
    pick = pick[pick["unit_id"].isin(list(unit_image_sequences["unit"].values))].sort_values("tau")
    chosen = pd.concat([pick.tail(3).iloc[::-1], pick.head(3)])
    paths, dates = map_files(land_cover_maps.path)
    units = pd.DataFrame(rct_units.drop(columns="geometry")).set_index("unit_id").loc[chosen["unit_id"]].reset_index()
    size = unit_image_sequences.sizes["x"]
    classes = land_cover_chips(paths[-1], units, size)
    figure = example_chips(
        [unit_image_sequences["reflectance"].sel(unit=u).values for u in chosen["unit_id"]],
        classes,
        list(unit_image_sequences["band"].values),
        [f"{u}\ntau {t:.2f}" for u, t in zip(chosen["unit_id"], chosen["tau"], strict=True)],
        [str(d)[:10] for d in unit_image_sequences["time"].values],
    )
    with storage.staging() as stage:
        staged = stage.output("land_cover_examples.png")
        figure.savefig(staged.path, dpi=110)
        yield dg.Output(staged, metadata={"examples": figure_md(figure, "examples"), "units": ", ".join(chosen["unit_id"])})
