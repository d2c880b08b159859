"""The trial table: load, validate, and place every unit on the imagery.

Validation fails with a message that names the problem and the offending unit ids, because a
wrong trial table silently biases every estimate downstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from pyproj import Transformer

RESERVED = {"unit_id", "lon", "lat", "treatment", "stratum", "cluster", "assignment_probability", "geometry", "x", "y"}


class RCTValidationError(ValueError):
    """The trial table is not usable as it stands."""


@dataclass(frozen=True)
class RCTSpec:
    """Column roles of a trial table."""

    outcomes: tuple[str, ...] = ("outcome",)
    covariates: tuple[str, ...] | None = None  # None: every numeric column without another role
    min_arm_size: int = 10


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise RCTValidationError(f"trial table {path} does not exist")
    return pd.read_parquet(path) if path.suffix in {".parquet", ".pq"} else pd.read_csv(path)


def _examples(ids: pd.Series, k: int = 5) -> str:
    shown = ", ".join(map(str, ids.head(k)))
    return shown + (", ..." if len(ids) > k else "")


def covariate_columns(table: pd.DataFrame, spec: RCTSpec) -> list[str]:
    if spec.covariates is not None:
        return list(spec.covariates)
    skip = RESERVED | set(spec.outcomes)
    return [c for c in table.columns if c not in skip and pd.api.types.is_numeric_dtype(table[c])]


def validate_rct(table: pd.DataFrame, spec: RCTSpec = RCTSpec()) -> pd.DataFrame:
    """Return a clean copy of the trial table or raise ``RCTValidationError`` naming the problem."""
    required = ["unit_id", "lon", "lat", "treatment", *spec.outcomes, *(spec.covariates or ())]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise RCTValidationError(f"trial table lacks column(s) {missing}; it has {list(table.columns)}")
    table = table.copy()
    table["unit_id"] = table["unit_id"].astype(str)
    dup = table.loc[table["unit_id"].duplicated(keep=False), "unit_id"].drop_duplicates()
    if len(dup):
        raise RCTValidationError(f"{len(dup)} duplicate unit_id value(s): {_examples(dup)}")
    _check_coordinates(table)
    table["treatment"] = _binary_treatment(table)
    _check_arms(table, spec.min_arm_size)
    if "assignment_probability" in table:
        p = pd.to_numeric(table["assignment_probability"], errors="coerce")
        bad = table.loc[~((p > 0) & (p < 1)), "unit_id"]
        if len(bad):
            raise RCTValidationError(
                f"assignment_probability must lie strictly between 0 and 1; {len(bad)} unit(s) do not: {_examples(bad)}"
            )
    for col in covariate_columns(table, spec):
        if not pd.api.types.is_numeric_dtype(table[col]):
            raise RCTValidationError(f"covariate {col!r} is not numeric (dtype {table[col].dtype}); encode it first")
    return table


def _check_coordinates(table: pd.DataFrame) -> None:
    lon = pd.to_numeric(table["lon"], errors="coerce")
    lat = pd.to_numeric(table["lat"], errors="coerce")
    missing = table.loc[lon.isna() | lat.isna(), "unit_id"]
    if len(missing):
        raise RCTValidationError(f"{len(missing)} unit(s) have missing or non-numeric lon/lat: {_examples(missing)}")
    bad = table.loc[(lon.abs() > 180) | (lat.abs() > 90), "unit_id"]
    if len(bad):
        hint = " (are lon and lat in a projected CRS? they must be EPSG:4326 degrees)"
        raise RCTValidationError(f"{len(bad)} unit(s) have lon/lat out of range{hint}: {_examples(bad)}")
    table["lon"], table["lat"] = lon.astype(float), lat.astype(float)


def _binary_treatment(table: pd.DataFrame) -> pd.Series:
    raw = table["treatment"]
    missing = table.loc[raw.isna(), "unit_id"]
    if len(missing):
        raise RCTValidationError(f"treatment is missing for {len(missing)} unit(s): {_examples(missing)}")
    values = raw.map({True: 1, False: 0}) if raw.dtype == bool else pd.to_numeric(raw, errors="coerce")
    bad = table.loc[~values.isin([0, 1]), ["unit_id", "treatment"]]
    if len(bad):
        examples = ", ".join(f"{u}={t!r}" for u, t in bad.head(5).itertuples(index=False))
        raise RCTValidationError(f"treatment must be 0 or 1; {len(bad)} unit(s) are not: {examples}")
    return values.astype(np.int8)


def _check_arms(table: pd.DataFrame, min_arm_size: int) -> None:
    counts = table["treatment"].value_counts().reindex([0, 1], fill_value=0)
    small = {arm: int(n) for arm, n in counts.items() if n < min_arm_size}
    if small:
        raise RCTValidationError(f"treatment arm(s) with fewer than {min_arm_size} units: {small} (control=0, treated=1)")


def locate_units(table: pd.DataFrame, catalog: pd.DataFrame) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """Split units into those inside at least one scene's footprint and those outside.

    Returns the inside units as a GeoDataFrame (EPSG:4326 points plus ``x``, ``y`` in the first
    scene's CRS) and a table of dropped units with the reason.
    """
    lon, lat = table["lon"].to_numpy(), table["lat"].to_numpy()
    inside = np.zeros(len(table), dtype=bool)
    for crs, scenes in catalog.groupby("crs", sort=False):
        x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
        for s in scenes.itertuples():
            inside |= (x >= s.left) & (x < s.right) & (y > s.bottom) & (y <= s.top)
    ref_crs = catalog["crs"].iloc[0]
    x, y = Transformer.from_crs("EPSG:4326", ref_crs, always_xy=True).transform(lon, lat)
    units = gpd.GeoDataFrame(table.assign(x=x, y=y), geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")
    dropped = pd.DataFrame({"unit_id": table.loc[~inside, "unit_id"], "reason": "outside imagery footprint"})
    return units.loc[inside].reset_index(drop=True), dropped.reset_index(drop=True)


def check_dropped_share(n_total: int, dropped: pd.DataFrame, max_share: float) -> None:
    share = len(dropped) / max(n_total, 1)
    if share > max_share:
        raise RCTValidationError(
            f"{len(dropped)} of {n_total} units ({share:.1%}) fall outside the imagery, above the allowed {max_share:.1%}: "
            f"{_examples(dropped['unit_id'])}. Check the imagery covers the trial and that lon/lat are EPSG:4326."
        )


def standardize(features: pd.DataFrame) -> pd.DataFrame:
    """Zero mean, unit variance per column (constant columns are only centred)."""
    return (features - features.mean()) / features.std(ddof=0).replace(0, 1)


def tabular_matrix(units: pd.DataFrame, spec: RCTSpec = RCTSpec()) -> pd.DataFrame:
    """Covariate matrix keyed by unit_id: numeric covariates, median-imputed with missing indicators."""
    cols = covariate_columns(units, spec)
    out = units[["unit_id"]].copy()
    for col in cols:
        values = units[col].astype(float)
        if values.isna().any():
            out[f"{col}_missing"] = values.isna().astype(np.int8)
            values = values.fillna(values.median())
        out[col] = values
    return out


def study_manifest(rct_table: str, imagery: str | None, survey_table: str | None = None) -> dict:
    """A user study's input paths, checked to exist and made absolute (usable from any working directory)."""
    if imagery is None:
        raise RCTValidationError("StudySource.imagery must name a folder of GeoTIFFs or a catalog CSV")
    paths = {"rct_table": rct_table, "imagery": imagery, "survey_table": survey_table}
    for name, value in paths.items():
        if value is not None and not Path(value).exists():
            raise FileNotFoundError(f"StudySource.{name} = {value!r} does not exist")
    return {"kind": "user", **{k: str(Path(v).resolve()) if v is not None else None for k, v in paths.items()}, "truth": {}}
