"""Analyst: the materialized tables as one DuckDB database, for SQL without Dagster, and each trial's report."""

import dagster as dg
import geopandas as gpd
import pandas as pd

from assets.partitions import trials
from models.analyst.database import build_database
from models.analyst.plots import cate_map as cate_map_figure
from models.analyst.plots import coefficient_plot, rate_difference_plot, study_area_map, toc_bands
from models.analyst.report import write_report
from models.analyst.summary import debiasing_sentence, trial_summary
from models.debiasing.trust import CorrectionDiagnostics, trial_diagnostics
from models.io.manifest import StudyManifest
from models.io.rasters import Raster
from models.io.truth import read_unit_truth
from models.representation.grid import GridMap
from pipelines.resources import StorageResource

GROUP = "analyst"

TABLES = (
    "imagery_catalog", "rct_units", "tabular_features", "cate_estimates", "heterogeneity_evaluation", "rate_differences",
    "toc_curves", "gates", "ate_summary", "unit_land_cover", "heterogeneity_attribution", "survey_predictions",
    "unit_wealth_predictions", "wealth_effects", "trial_outcomes", "debiasing_evaluation", "simulation_study",
    "simulation_comparison",
)  # fmt: skip


def _table_path(storage: StorageResource, name: str):
    """A table's Parquet file, or its folder of per-trial files; None when not materialized."""
    folder, file = storage.path(name), storage.path(f"{name}.parquet")
    return folder if folder.is_dir() and any(folder.glob("*.parquet")) else file if file.exists() else None


@dg.asset(group_name=GROUP, kinds={"duckdb"}, deps=list(TABLES), io_manager_key="file_io")
def analyst_database(storage: StorageResource):
    """A DuckDB file with a view over every table above (reading the Parquet in place; a trial-level
    table's view unites every trial's file, with the trial in column ``trial``) and every column's
    description as a comment: `duckdb data/analyst_database.duckdb`, then SQL."""
    tables = {name: path for name in TABLES if (path := _table_path(storage, name)) is not None}
    with storage.staging() as stage:
        staged = stage.output("analyst_database.duckdb")
        views = build_database(tables, staged.path)
        yield dg.Output(staged, metadata={"views": ", ".join(views), "count": len(views)})


@dg.asset(group_name=GROUP, kinds={"html"}, partitions_def=trials, io_manager_key="file_io")
def trial_report(
    context: dg.AssetExecutionContext,
    study_inputs: StudyManifest,
    imagery_catalog: pd.DataFrame,
    rct_units: gpd.GeoDataFrame,
    cate_map: Raster,
    ate_summary: pd.DataFrame,
    heterogeneity_evaluation: pd.DataFrame,
    toc_curves: pd.DataFrame,
    rate_differences: pd.DataFrame,
    heterogeneity_attribution: pd.DataFrame,
    unit_wealth_predictions: pd.DataFrame,
    wealth_effects: pd.DataFrame,
    wealth_corrections: dict | None,
    debiasing_evaluation: pd.DataFrame | None,
    storage: StorageResource,
):
    """The trial on one self-contained HTML page (`data/trial_report/<trial>.html`). It opens with the
    answer (the ATE, whether heterogeneity is detected and by which data choice best, the land-cover
    drivers that survive Bonferroni, whether the debiased outcomes are warranted, and which version
    of the trial table it comes from); then the units on the imagery, the CATE map (and, on the demo,
    the truth), TOC curves with bands, the paired data-choice differences as a forest plot, the
    land-cover attribution and the debiased outcomes' evaluation."""
    crs = imagery_catalog["crs"].iloc[0]
    grid = GridMap.read(cate_map.path)
    truth = read_unit_truth(study_inputs.truth.units)
    arms = rct_units.groupby("treatment").size().rename("units").reset_index()
    attribution = heterogeneity_attribution[["feature", "per_10pp", "per_10pp_lower", "per_10pp_upper", "p_value", "p_bonferroni"]]
    skipped = study_inputs.without_survey
    available = not skipped and not wealth_effects.empty and wealth_corrections is not None
    diagnostics = trial_diagnostics(unit_wealth_predictions, wealth_effects, wealth_corrections) if available else None
    summary = trial_summary(
        ate_summary, heterogeneity_evaluation, rate_differences, attribution, wealth_effects, wealth_corrections, skipped, diagnostics
    )
    stamp = rct_units.attrs.get("trial_table", {})
    summary.append(
        f"Trial table: {stamp.get('trial_table_rows', '?')} rows, sha256 {stamp.get('trial_table_sha256', 'unknown')}; "
        f"{len(rct_units)} units analysed."
    )
    autoc = rate_differences[rate_differences["target"] == "AUTOC"].drop(columns="target")
    debiasing = (
        [
            diagnostics.verdict,
            wealth_effects,
            "Which correction to trust: held-out effect slopes on the calibration split (1 = unbiased)",
            CorrectionDiagnostics.from_dict(wealth_corrections["trust"]).table(),
            "Label budget: labels PPI++ needs for each method's interval width",
            diagnostics.budget,
        ]
        if diagnostics is not None
        else [debiasing_sentence(wealth_effects, wealth_corrections, skipped)]  # why there is nothing to show
    )
    if diagnostics is not None and debiasing_evaluation is not None:
        debiasing += ["One map, many trials: how each method fares over simulated trials", debiasing_evaluation]
    sections = [
        ("Summary", [summary]),
        ("The trial", [arms, study_area_map(imagery_catalog["paths"].iloc[0][0], rct_units)]),
        (
            "Where would it work: the CATE map",
            [
                cate_map_figure(
                    grid.layers["cate"],
                    grid.layers["outside_support"],
                    grid.extent,
                    "CATE (image sequence)",
                    rct_units,
                    grid.crs,
                    None if truth is None else truth["tau"],
                ),
                "Hatched cells are farther from every trial unit in feature space than 95% of trial units are "
                "from theirs: the map extrapolates there.",
            ],
        ),
        ("Is there heterogeneity? TOC curves with 95% bands", [toc_bands(toc_curves)]),
        ("Which data reveal it: paired AUTOC differences (same half-sample draws)", [rate_difference_plot(rate_differences), autoc]),
        (
            "What in the landscape drives it (per 10 percentage points of land cover)",
            [coefficient_plot(heterogeneity_attribution), attribution],
        ),
        ("This trial's effect on mapped wealth: naive vs debiased outcomes", debiasing),
    ]
    with storage.staging() as stage:
        staged = stage.output("trial_report.html")
        write_report(staged.path, f"eotrials: trial {context.partition_key}, {len(rct_units)} units, imagery in {crs}", sections)
        yield dg.Output(
            staged, metadata={"sections": len(sections), "size_kb": staged.path.stat().st_size / 1024, "summary": "\n".join(summary)}
        )
