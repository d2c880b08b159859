"""Ingest: the study's inputs, the imagery catalog, the validated units, chips and covariates."""

import dataclasses
import shutil
import time
from pathlib import Path

import dagster as dg
import geopandas as gpd
import pandas as pd
import xarray as xr

from assets.config import shared_config
from assets.metadata import figure_md, table_md
from assets.partitions import trials
from assets.retries import retry_transient_io
from models.analyst.plots import sequence_strip, study_area_map
from models.debiasing.wealth_map import survey_cube
from models.ingest.catalog import build_catalog
from models.ingest.chips import (
    CHIP_SIZE,
    CHUNK_PX,
    TILE_PX,
    WORKERS,
    CubeSummary,
    assemble_cubes,
    check_nodata,
    open_cube,
    plan_chunks,
    write_sequence_cube,
)
from models.ingest.design import randomization_test
from models.ingest.trial_folder import table_digest, trial_table
from models.ingest.units import (
    RCTSpec,
    check_dropped_share,
    check_outcomes,
    covariate_choice,
    locate_units,
    tabular_matrix,
    validate_rct,
)
from models.io.manifest import StudyManifest
from models.io.storage import atomic_path
from models.io.tables import read_table
from models.simulation.simulator import Heterogeneity, SimulationConfig, StudyPaths, simulate_study
from pipelines.resources import Config, StorageResource, StudySource

GROUP = "ingest"


class DemoStudyConfig(Config):
    """Size and strength of the simulated demo study (used only when no trials folder is configured):
    ``n_units`` per trial, one trial per strip of the region (``trials``, west to east); the trials
    start ``trial_dates`` dates before the end, and the post-treatment imagery shows their change in
    each of ``change_patterns`` (beside the last date only, scattered)."""

    n_units: int = SimulationConfig.n_units
    trials: list[str] = list(SimulationConfig.trials)
    n_survey: int = SimulationConfig.n_survey
    n_dates: int = SimulationConfig.n_dates
    region_px: int = SimulationConfig.region_px
    chip_size: int = SimulationConfig.chip_size
    effect_strength: float = SimulationConfig.effect_strength
    heterogeneity: Heterogeneity = SimulationConfig.heterogeneity
    noise: float = SimulationConfig.noise
    treat_prob: float = SimulationConfig.treat_prob
    stratified: bool = SimulationConfig.stratified
    trial_dates: int = SimulationConfig.trial_dates
    change_patterns: list[str] = list(SimulationConfig.change_patterns)  # of CHANGE_PATTERNS
    seed: int = SimulationConfig.seed


@dg.asset(group_name=GROUP, kinds={"python", "geotiff"})
def study_inputs(
    context: dg.AssetExecutionContext, config: DemoStudyConfig, source: StudySource, storage: StorageResource
) -> StudyManifest:
    """Where the trials folder, imagery and survey live (absolute paths): the user's files, or a
    freshly simulated demo (its trial tables in ``demo_study/trials/``).

    The demo is simulated into a temporary folder and swapped in whole, so a failed run keeps the
    previous demo. Ground-truth paths are recorded for evaluation only; estimators never read them.
    """
    with retry_transient_io(context):
        if not source.is_demo:
            return StudyManifest.create("user", source.trials, source.imagery, source.survey_table)
        sim = SimulationConfig(**config.model_dump() | {"trials": tuple(config.trials), "change_patterns": tuple(config.change_patterns)})
        root = storage.path("demo_study")
        started = time.perf_counter()
        with atomic_path(root) as tmp:
            simulate_study(sim, tmp)
    context.add_output_metadata({"simulation": dg.MetadataValue.json(dataclasses.asdict(sim)), "seconds": time.perf_counter() - started})
    return StudyPaths.under(root).manifest()


@dg.asset(group_name=GROUP, kinds={"parquet", "geotiff"})
def imagery_catalog(
    context: dg.AssetExecutionContext, study_inputs: StudyManifest, source: StudySource, storage: StorageResource
) -> pd.DataFrame:
    """One row per scene: date, file paths, CRS, bounds, resolution, band names, nodata, scales.

    Every raster is opened and the first and last block of every band read here, so a corrupt or
    truncated file or inconsistent band counts fail early, naming the file. Tiles of one date are
    mosaicked into a VRT under ``imagery_mosaics/``.
    """
    with retry_transient_io(context):
        catalog = build_catalog(
            study_inputs.imagery, source.band_names, source.band_files, mosaic_dir=storage.path("imagery_mosaics"), nodata=source.nodata
        )
    preview = catalog[["scene_id", "crs", "res_x", "width", "height", "band_count"]]
    context.add_output_metadata(
        {
            "scenes": len(catalog),
            "bands": ", ".join(catalog["band_names"].iloc[0]),
            "crs": ", ".join(sorted(catalog["crs"].unique())),
            "catalog": table_md(preview),
        }
    )
    return catalog


class UnitsConfig(Config):
    """Validation thresholds for the trial table."""

    min_arm_size: int = RCTSpec.min_arm_size
    max_outside_share: float = 0.05
    max_missing_outcome_share: float = 0.1


@dg.asset(
    group_name=GROUP,
    kinds={"geoparquet"},
    partitions_def=trials,
    check_specs=[dg.AssetCheckSpec("units_inside_imagery", asset="rct_units", description="Share of trial units outside every scene.")],
)
def rct_units(
    context: dg.AssetExecutionContext, config: UnitsConfig, study_inputs: StudyManifest, imagery_catalog: pd.DataFrame, source: StudySource
):
    """The trial's validated table (``<trials folder>/<trial>.csv|parquet``) as GeoParquet: EPSG:4326
    points plus x, y in the imagery CRS.

    Fails on duplicate ids, missing or out-of-range coordinates, non-binary or missing treatment,
    non-numeric outcomes and too-small arms; drops units with a missing outcome (failing above
    ``max_missing_outcome_share``) and units outside the imagery (failing above ``max_outside_share``).
    """
    spec = source.rct_spec(config.min_arm_size)
    path = trial_table(study_inputs.trials, context.partition_key)
    raw = read_table(path, field=f"trial table {path.name}")
    table, no_outcome = check_outcomes(validate_rct(raw, spec), spec, config.max_missing_outcome_share)
    units, outside = locate_units(table, imagery_catalog)
    check_dropped_share(len(table), outside, config.max_outside_share)
    dropped = pd.concat([no_outcome, outside], ignore_index=True)
    arms = units.groupby("treatment").size().rename("units").reset_index()
    first_scene = imagery_catalog["paths"].iloc[0][0]
    stamp = {"trial_table_sha256": table_digest(path), "trial_table_rows": len(raw)}
    units.attrs["trial_table"] = stamp  # kept in the GeoParquet; the IO manager stamps every trial-level output with it
    changed = _table_change(context, stamp["trial_table_sha256"])
    if changed:
        context.log.warning(f"trial {context.partition_key}: {changed}")
    yield dg.Output(
        units,
        data_version=dg.DataVersion(stamp["trial_table_sha256"]),  # a new table marks every downstream result stale in the UI
        metadata={
            "trial": context.partition_key,
            "table": dg.MetadataValue.path(str(path)),
            **stamp,
            "table_changed": changed or "no (same table as the last materialization)",
            "units": len(units),
            "dropped": len(dropped),
            "dropped_missing_outcome": len(no_outcome),
            "dropped_units": table_md(dropped.head(20)),
            "arms": table_md(arms),
            "imagery_crs": imagery_catalog["crs"].iloc[0],
            "study_area": figure_md(study_area_map(first_scene, units), "study area"),
        },
    )
    yield dg.AssetCheckResult(
        check_name="units_inside_imagery",
        passed=len(outside) == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"outside": len(outside), "share": len(outside) / max(len(table), 1)},
    )


def _table_change(context: dg.AssetExecutionContext, digest: str) -> str | None:
    """What changed since this trial's last materialization, or None (first run or same table)."""
    last = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=[context.partition_key]), limit=1
    ).records
    before = last[0].asset_materialization.metadata.get("trial_table_sha256") if last else None
    if before is None or before.value == digest:
        return None
    return f"the trial table changed since the last materialization (sha256 {before.value} -> {digest}); results made from the old table are stale"


@dg.asset_check(
    asset=rct_units,
    blocking=True,
    partitions_def=trials,
    description="Treated count is consistent with the design's assignment probabilities.",
)
def treatment_share_matches_design(rct_units: gpd.GeoDataFrame) -> dg.AssetCheckResult:
    """A randomization check with the estimators' own design probabilities (``models.ingest.design``)."""
    test = randomization_test(rct_units)
    return dg.AssetCheckResult(passed=bool(test.p_value > 1e-3), metadata={**dataclasses.asdict(test), "p_value": float(test.p_value)})


class ChipsConfig(Config):
    """Chip extraction settings."""

    chip_size: int = CHIP_SIZE
    max_all_nodata_share: float = 0.05  # of units with no valid pixel on any date (dropped above this share fails)
    max_date_nodata_share: float = 0.5  # of units with no valid pixel on one date (an empty scene fails)
    chunk_px: int = CHUNK_PX  # side of the squares of the region extracted as separate steps
    tile_px: int = TILE_PX
    workers: int = WORKERS


@dg.op(out=dg.DynamicOut(pd.DataFrame))
def plan_chip_chunks(config: ChipsConfig, rct_units: gpd.GeoDataFrame, imagery_catalog: pd.DataFrame):
    """The trial's units by ``chunk_px`` square of the region: one extraction step each."""
    for key, units in plan_chunks(pd.DataFrame(rct_units[["unit_id", "lon", "lat"]]), imagery_catalog, config.chunk_px).items():
        yield dg.DynamicOutput(units, mapping_key=key)


@dg.op
def extract_chip_chunk(
    context: dg.OpExecutionContext, config: ChipsConfig, units: pd.DataFrame, imagery_catalog: pd.DataFrame, storage: StorageResource
) -> dict:
    """One square's chip sequences as a cube of its own (run-scoped), and what the extraction found."""
    path = storage.path(".runs", context.run.run_id, "chip_chunks", f"{context.get_mapping_key()}.zarr")
    with retry_transient_io(context):
        summary = write_sequence_cube(
            units, imagery_catalog, path, config.chip_size, tile_px=config.tile_px, workers=config.workers, require_data=False
        )
    return {"path": str(path), **dataclasses.asdict(summary)}


@dg.op(out=dg.Out(io_manager_key="zarr_io"))
def assemble_chip_cube(config: ChipsConfig, chunks: list[dict], storage: StorageResource):
    """The chunks' cubes concatenated into the asset's cube; fails on too many units or dates
    without data (``check_nodata``), then removes the chunks' cubes."""
    started = time.perf_counter()
    parts = [(Path(c["path"]), CubeSummary(**{k: v for k, v in c.items() if k != "path"})) for c in chunks]
    with storage.staging() as stage:
        staged = stage.output("cube.zarr")
        summary = assemble_cubes(parts, staged.path)
        check_nodata(summary, config.max_all_nodata_share, config.max_date_nodata_share)
        seconds = time.perf_counter() - started
        metadata = {**_cube_metadata(staged.path, summary), "chunks": len(parts), "assembly_seconds": seconds}
        yield dg.Output(staged, metadata=metadata)
    for path, _ in parts:
        shutil.rmtree(path, ignore_errors=True)


@dg.graph_asset(
    group_name=GROUP,
    kinds={"zarr", "xarray"},
    partitions_def=trials,
    config=shared_config(ChipsConfig, ("plan_chip_chunks", "extract_chip_chunk", "assemble_chip_cube")),
)
def unit_image_sequences(rct_units: gpd.GeoDataFrame, imagery_catalog: pd.DataFrame):
    """Every unit's T x C x H x W chip sequence as a Zarr cube (dims unit, time, band, y, x).

    Extracted square by square of the region (``chunk_px``), each square a separate step that the
    executor runs in parallel (processes, or Celery workers), then concatenated. Within a square,
    windowed reads grouped by scene and neighbourhood, each raster in its own CRS; nodata and cloud
    pixels are NaN in ``reflectance`` and False in ``valid`` (a pixel is valid when every band is).
    Units with no valid pixel on any date are dropped and listed; more than
    ``max_all_nodata_share`` of them is an error, as is a date on which more than
    ``max_date_nodata_share`` of units have no valid pixel. The metadata lists, per date, how many
    units had no data there; the cube's ``extraction`` attribute keeps that record.
    """
    chunks = plan_chip_chunks(rct_units, imagery_catalog)
    return assemble_chip_cube(chunks.map(lambda units: extract_chip_chunk(units, imagery_catalog)).collect())


@dg.asset_check(
    asset=unit_image_sequences,
    partitions_def=trials,
    description="No unit is without a valid pixel on every date, and on no date are more than max_all_nodata_share of units without one.",
)
def chips_have_data(unit_image_sequences: xr.Dataset) -> dg.AssetCheckResult:
    """Reads the extraction record the cube carries (``CubeSummary.of``)."""
    summary = CubeSummary.of(unit_image_sequences)
    dates = summary.date_table()
    sparse = dates.loc[dates["share"] > ChipsConfig().max_all_nodata_share, "date"].tolist()
    return dg.AssetCheckResult(
        passed=not summary.dropped_all_nodata and not sparse,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "all_nodata_units": len(summary.dropped_all_nodata),
            "dates_above_max_all_nodata_share": ", ".join(sparse) or "none",
            "valid_fraction": summary.valid_fraction,
        },
    )


MIN_VALID_FRACTION = 0.5  # of the trial's chip pixels (every date): below it the imagery does not cover the trial


@dg.asset_check(
    asset=unit_image_sequences,
    partitions_def=trials,
    blocking=True,
    description=f"The imagery covers the trial: at least {MIN_VALID_FRACTION:.0%} of its chip pixels are valid (not nodata or cloud).",
)
def imagery_covers_trial(unit_image_sequences: xr.Dataset) -> dg.AssetCheckResult:
    """Blocks the trial's encoders, CATEs and debiased outcomes (and holds back automation) when
    clouds or swath gaps leave most of its chips empty: estimates would rest on a few pixels."""
    summary = CubeSummary.of(unit_image_sequences)
    return dg.AssetCheckResult(
        passed=bool(summary.valid_fraction >= MIN_VALID_FRACTION),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"valid_fraction": summary.valid_fraction, "min_valid_fraction": MIN_VALID_FRACTION, "units": summary.n_units},
    )


class SurveyChipsConfig(Config):
    """Side in pixels of the surveyed places' chips: the input size of the wealth map's encoder."""

    chip_size: int = CHIP_SIZE


@dg.asset(group_name=GROUP, kinds={"zarr", "xarray"}, io_manager_key="zarr_io", output_required=False)
def survey_image_sequences(
    context: dg.AssetExecutionContext,
    config: SurveyChipsConfig,
    study_inputs: StudyManifest,
    imagery_catalog: pd.DataFrame,
    storage: StorageResource,
):
    """The surveyed places' chip sequences as a Zarr cube (dims unit, time, band, y, x; ``unit`` is
    the survey id), shared by every trial and extracted once: what the map encoder learns from and
    the wealth model is fitted on. No trial's units are in it, so every trial can use the map.
    Without a survey nothing is written and the wealth map's assets downstream are skipped."""
    if reason := study_inputs.without_survey:
        context.log.warning(reason)
        return
    survey = read_table(study_inputs.survey_table, field="StudySource.survey_table")
    with storage.staging() as stage:
        staged = stage.output("survey.zarr")
        places, outside, summary = survey_cube(survey, imagery_catalog, staged.path, config.chip_size)
        yield dg.Output(staged, metadata={**_cube_metadata(staged.path, summary), "survey_places": len(places), "outside_imagery": outside})


def _cube_metadata(path, summary) -> dict:
    cube = open_cube(path)
    unit = cube["unit"].values[0]
    dates = [str(d)[:10] for d in cube["time"].values]
    strip = sequence_strip(cube["reflectance"].sel(unit=unit).values, dates, list(cube["band"].values), f"unit {unit}")
    dates_table = summary.date_table()
    return {
        "units": summary.n_units,
        "dims": dg.MetadataValue.json({k: int(v) for k, v in cube.sizes.items()}),
        "valid_fraction": summary.valid_fraction,
        "dropped_all_nodata": dg.MetadataValue.json(summary.dropped_all_nodata[:50]),
        "units_without_data_by_date": table_md(dates_table),
        "max_date_share_without_data": float(dates_table["share"].max()),
        "sequence": figure_md(strip, "sequence strip"),
    }


@dg.asset(group_name=GROUP, kinds={"parquet"}, partitions_def=trials)
def tabular_features(context: dg.AssetExecutionContext, rct_units: gpd.GeoDataFrame, source: StudySource) -> pd.DataFrame:
    """The covariate matrix the causal models use: numeric covariates keyed by unit_id.

    Listed covariates (``StudySource.covariates``) are taken as they are; without a list, numeric
    columns without another role except ids, codes and post-treatment-looking names (the metadata
    says which were taken and which left out, and why). Missing values are median-imputed with a
    ``<name>_missing`` indicator, so no unit is lost.
    """
    table = pd.DataFrame(rct_units.drop(columns="geometry"))
    taken, excluded = covariate_choice(table, source.rct_spec())
    context.log.info(
        f"covariates taken: {taken}; left out: {excluded}"
        + ("" if source.covariates is not None else " (auto-detected: list them in StudySource.covariates)")
    )
    features = tabular_matrix(table, source.rct_spec())
    summary = features.drop(columns="unit_id").describe().T.reset_index(names="covariate")[["covariate", "mean", "std", "min", "max"]]
    left_out = pd.DataFrame({"column": list(excluded), "reason": list(excluded.values())})
    meta = {
        "units": len(features),
        "covariates": features.shape[1] - 1,
        "covariates_taken": ", ".join(taken) or "none",
        "left_out": table_md(left_out),
        "summary": table_md(summary),
    }
    context.add_output_metadata({**meta, "auto_detected": source.covariates is None})
    return features
