"""Ingest: the study's inputs, the imagery catalog, the validated units, chips and covariates."""

import dataclasses
import time
from pathlib import Path
from typing import Literal

import dagster as dg
import geopandas as gpd
import pandas as pd
from scipy.stats import binomtest

from assets.metadata import figure_md, table_md
from models.catalog import build_catalog
from models.chips import open_cube, write_sequence_cube
from models.plots import sequence_strip, study_area_map
from models.rct import check_dropped_share, locate_units, read_table, tabular_matrix, validate_rct
from models.simulate import SimulationConfig, StudyPaths, simulate_study
from models.storage import atomic_path
from pipelines.resources import StorageResource, StudySource

GROUP = "ingest"


class DemoStudyConfig(dg.Config):
    """Size and strength of the simulated demo study (used only when no trial table is configured)."""

    n_units: int = 1000
    n_survey: int = 3000
    n_dates: int = 8
    region_px: int = 1024
    chip_size: int = 32
    effect_strength: float = 1.0
    heterogeneity: Literal["both", "static", "change", "none"] = "both"
    noise: float = 1.0
    treat_prob: float = 0.5
    stratified: bool = False
    seed: int = 0


@dg.asset(group_name=GROUP, kinds={"python", "geotiff"})
def study_inputs(context: dg.AssetExecutionContext, config: DemoStudyConfig, source: StudySource, storage: StorageResource) -> dict:
    """Where the trial table, imagery and survey live: the user's files, or a freshly simulated demo.

    The demo is simulated into a temporary folder and swapped in whole, so a failed run keeps the
    previous demo. Ground-truth paths are recorded for evaluation only; estimators never read them.
    """
    if not source.is_demo:
        for name in ("rct_table", "imagery", "survey_table"):
            value = getattr(source, name)
            if value is not None and not Path(value).exists():
                raise FileNotFoundError(f"StudySource.{name} = {value!r} does not exist")
        if source.imagery is None:
            raise ValueError("StudySource.imagery must name a folder of GeoTIFFs or a catalog CSV")
        return {"kind": "user", "rct_table": source.rct_table, "imagery": source.imagery, "survey_table": source.survey_table, "truth": {}}
    sim = SimulationConfig(**config.model_dump())
    root = storage.path("demo_study")
    started = time.perf_counter()
    with atomic_path(root) as tmp:
        simulate_study(sim, tmp)
    paths = StudyPaths.under(root)
    context.add_output_metadata({"simulation": dg.MetadataValue.json(dataclasses.asdict(sim)), "seconds": time.perf_counter() - started})
    return {
        "kind": "demo",
        "rct_table": str(paths.rct_table),
        "imagery": str(paths.imagery_dir),
        "survey_table": str(paths.survey_table),
        "truth": {"units": str(paths.unit_truth), "landcover": str(paths.landcover_dir), "wealth": str(paths.wealth_truth)},
    }


def simulated_truth(study_inputs: dict) -> pd.DataFrame | None:
    """The simulator's per-unit truth, indexed by unit_id (None for real studies). For evaluation
    and plots only: no estimator reads it."""
    path = study_inputs.get("truth", {}).get("units")
    return pd.read_parquet(path).set_index("unit_id") if path and Path(path).exists() else None


@dg.asset(group_name=GROUP, kinds={"parquet", "geotiff"})
def imagery_catalog(context: dg.AssetExecutionContext, study_inputs: dict, source: StudySource) -> pd.DataFrame:
    """One row per scene: date, file paths, CRS, bounds, resolution, band names, nodata, scales.

    Every raster header is read here, so a corrupt file or inconsistent band counts fail early,
    naming the file.
    """
    catalog = build_catalog(study_inputs["imagery"], band_names=source.band_names)
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


class UnitsConfig(dg.Config):
    """Validation thresholds for the trial table."""

    min_arm_size: int = 10
    max_outside_share: float = 0.05


@dg.asset(
    group_name=GROUP,
    kinds={"geoparquet"},
    check_specs=[dg.AssetCheckSpec("units_inside_imagery", asset="rct_units", description="Share of trial units outside every scene.")],
)
def rct_units(context: dg.AssetExecutionContext, config: UnitsConfig, study_inputs: dict, imagery_catalog: pd.DataFrame, source: StudySource):
    """The validated trial table as GeoParquet: EPSG:4326 points plus x, y in the imagery CRS.

    Fails on duplicate ids, missing or out-of-range coordinates, non-binary or missing treatment
    and too-small arms; drops units outside the imagery and fails above ``max_outside_share``.
    """
    table = validate_rct(read_table(study_inputs["rct_table"]), source.rct_spec(config.min_arm_size))
    units, dropped = locate_units(table, imagery_catalog)
    check_dropped_share(len(table), dropped, config.max_outside_share)
    arms = units.groupby("treatment").size().rename("units").reset_index()
    first_scene = imagery_catalog["paths"].iloc[0][0]
    yield dg.Output(
        units,
        metadata={
            "units": len(units),
            "dropped": len(dropped),
            "dropped_units": table_md(dropped.head(20)),
            "arms": table_md(arms),
            "imagery_crs": imagery_catalog["crs"].iloc[0],
            "study_area": figure_md(study_area_map(first_scene, units), "study area"),
        },
    )
    share = len(dropped) / max(len(table), 1)
    yield dg.AssetCheckResult(
        check_name="units_inside_imagery",
        passed=len(dropped) == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"outside": len(dropped), "share": share},
    )


@dg.asset_check(asset=rct_units, blocking=True, description="Treated count is consistent with the design's assignment probability.")
def treatment_share_matches_design(rct_units: gpd.GeoDataFrame) -> dg.AssetCheckResult:
    """A randomization check: a two-sided binomial test of the treated count against the design."""
    n, treated = len(rct_units), int(rct_units["treatment"].sum())
    p = float(rct_units["assignment_probability"].mean()) if "assignment_probability" in rct_units else 0.5
    p_value = binomtest(treated, n, p).pvalue
    return dg.AssetCheckResult(passed=bool(p_value > 1e-3), metadata={"treated": treated, "units": n, "design_p": p, "p_value": float(p_value)})


class ChipsConfig(dg.Config):
    """Chip extraction settings."""

    chip_size: int = 32
    max_all_nodata_share: float = 0.05
    tile_px: int = 512
    workers: int = 2


@dg.asset(
    group_name=GROUP,
    kinds={"zarr", "xarray"},
    check_specs=[dg.AssetCheckSpec("chips_have_data", asset="unit_image_sequences", description="No unit's sequence is entirely nodata.")],
)
def unit_image_sequences(context: dg.AssetExecutionContext, config: ChipsConfig, rct_units: gpd.GeoDataFrame, imagery_catalog: pd.DataFrame, storage: StorageResource):
    """Every unit's T x C x H x W chip sequence as a Zarr cube (dims unit, time, band, y, x).

    Windowed reads grouped by scene and neighbourhood, each raster in its own CRS; nodata and
    cloud pixels are NaN in ``reflectance`` and False in ``valid``. Units with no valid pixel on
    any date are dropped and listed; more than ``max_all_nodata_share`` of them is an error.
    """
    started = time.perf_counter()
    with storage.staging() as folder:
        staged = folder / "cube.zarr"
        summary = write_sequence_cube(rct_units, imagery_catalog, staged, config.chip_size, tile_px=config.tile_px, workers=config.workers)
        share = len(summary.dropped_all_nodata) / max(len(rct_units), 1)
        if share > config.max_all_nodata_share:
            raise ValueError(f"{len(summary.dropped_all_nodata)} units ({share:.1%}) have all-nodata chip sequences, above {config.max_all_nodata_share:.1%}: {summary.dropped_all_nodata[:5]}")
        seconds = time.perf_counter() - started
        yield dg.Output(staged, metadata={**_cube_metadata(staged, summary), "seconds": seconds, "chips_per_second": summary.n_units / seconds})
    yield dg.AssetCheckResult(
        check_name="chips_have_data",
        passed=not summary.dropped_all_nodata,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"all_nodata_units": len(summary.dropped_all_nodata), "valid_fraction": summary.valid_fraction},
    )


def _cube_metadata(path: Path, summary) -> dict:
    cube = open_cube(path)
    unit = cube["unit"].values[0]
    dates = [str(d)[:10] for d in cube["time"].values]
    strip = sequence_strip(cube["reflectance"].sel(unit=unit).values, dates, list(cube["band"].values), f"unit {unit}")
    return {
        "units": summary.n_units,
        "dims": dg.MetadataValue.json({k: int(v) for k, v in cube.sizes.items()}),
        "valid_fraction": summary.valid_fraction,
        "dropped_all_nodata": dg.MetadataValue.json(summary.dropped_all_nodata[:50]),
        "sequence": figure_md(strip, "sequence strip"),
    }


@dg.asset(group_name=GROUP, kinds={"parquet"})
def tabular_features(context: dg.AssetExecutionContext, rct_units: gpd.GeoDataFrame, source: StudySource) -> pd.DataFrame:
    """The covariate matrix the causal models use: numeric covariates keyed by unit_id.

    Missing values are median-imputed with a ``<name>_missing`` indicator, so no unit is lost.
    """
    features = tabular_matrix(pd.DataFrame(rct_units.drop(columns="geometry")), source.rct_spec())
    summary = features.drop(columns="unit_id").describe().T.reset_index(names="covariate")[["covariate", "mean", "std", "min", "max"]]
    context.add_output_metadata({"units": len(features), "covariates": features.shape[1] - 1, "summary": table_md(summary)})
    return features
