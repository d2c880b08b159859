"""The trial table: load, validate, and place every unit on the imagery.

Validation fails with a message that names the problem and the offending unit ids, because a
wrong trial table silently biases every estimate downstream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
from pyproj import Transformer

RESERVED = {"unit_id", "lon", "lat", "treatment", "stratum", "cluster", "assignment_probability", "geometry", "x", "y"}
MEASURED_WEALTH = "wealth"  # optional: wealth measured for some units, PPI++'s labels for the mapped outcome


class RCTValidationError(ValueError):
    """The trial table is not usable as it stands."""


@dataclass(frozen=True)
class RCTSpec:
    """Column roles of a trial table."""

    outcomes: tuple[str, ...] = ("outcome",)
    covariates: tuple[str, ...] | None = None  # None: every numeric column without another role
    min_arm_size: int = 10


def _examples(ids: pd.Series, k: int = 5) -> str:
    shown = ", ".join(map(str, ids.head(k)))
    return shown + (", ..." if len(ids) > k else "")


# Column-name tokens that mark an identifier or a code (never a covariate) or a measurement taken
# after treatment (a post-treatment variable as a covariate biases every CATE).
ID_TOKENS = {
    "id",
    "ids",
    "uid",
    "code",
    "codes",
    "key",
    "village",
    "district",
    "region",
    "province",
    "county",
    "ward",
    "subcounty",
    "parish",
}
POST_TOKENS = {"endline", "followup", "post", "midline", "outcome", "outcomes"}


def _tokens(name: str) -> set[str]:
    return set(re.split(r"[^a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower())) - {""}


def covariate_choice(table: pd.DataFrame, spec: RCTSpec) -> tuple[list[str], dict[str, str]]:
    """The covariates, and every candidate left out with the reason.

    Listed covariates (``spec.covariates``) are taken as they are. Otherwise numeric columns
    without another role are taken, except configured outcomes, names that look like an id or a
    code (``village_code``, ``hh_id``), names that look post-treatment (``consumption_endline``)
    and integer columns whose values are all distinct (identifiers). List covariates explicitly
    when you can: only you know which were measured before treatment.
    """
    if spec.covariates is not None:
        return list(spec.covariates), {}
    taken, excluded = [], {}
    for col in table.columns:
        if col in RESERVED:
            continue
        values = table[col]
        if col in spec.outcomes:
            excluded[col] = "a configured outcome"
        elif col == MEASURED_WEALTH:
            excluded[col] = "measured wealth: PPI++'s labels for the mapped outcome, not a covariate"
        elif not pd.api.types.is_numeric_dtype(values):
            excluded[col] = f"not numeric ({values.dtype})"
        elif _tokens(col) & ID_TOKENS:
            excluded[col] = "its name looks like an id or a code"
        elif _tokens(col) & POST_TOKENS:
            excluded[col] = "its name looks like a post-treatment measurement"
        elif pd.api.types.is_integer_dtype(values) and len(values) > 20 and values.nunique() == len(values):
            excluded[col] = "integers, all distinct: looks like an identifier"
        else:
            taken.append(col)
    return taken, excluded


def validate_rct(table: pd.DataFrame, spec: RCTSpec = RCTSpec()) -> pd.DataFrame:
    """Return a clean copy of the trial table or raise ``RCTValidationError`` naming the problem."""
    required = ["unit_id", "lon", "lat", "treatment", *spec.outcomes, *(spec.covariates or ())]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise RCTValidationError(
            f"trial table lacks column(s) {missing}; it has {list(table.columns)}. Rename the columns, or set StudySource.outcomes / StudySource.covariates to the names it has"
        )
    table = table.copy()
    table["unit_id"] = table["unit_id"].astype(str)
    dup = table.loc[table["unit_id"].duplicated(keep=False), "unit_id"].drop_duplicates()
    if len(dup):
        raise RCTValidationError(f"{len(dup)} duplicate unit_id value(s): {_examples(dup)}. Each row must be one unit with its own unit_id")
    _check_coordinates(table)
    table["treatment"] = _binary_treatment(table)
    _check_arms(table, spec.min_arm_size)
    if "assignment_probability" in table:
        p = pd.to_numeric(table["assignment_probability"], errors="coerce")
        bad = table.loc[~((p > 0) & (p < 1)), "unit_id"]
        if len(bad):
            raise RCTValidationError(
                f"assignment_probability must lie strictly between 0 and 1; {len(bad)} unit(s) do not: {_examples(bad)}. Fix the column or drop it (the stratum share is used then)"
            )
    for col in covariate_choice(table, spec)[0]:
        if not pd.api.types.is_numeric_dtype(table[col]):
            raise RCTValidationError(
                f"covariate {col!r} is not numeric (dtype {table[col].dtype}): encode it as numbers or leave it out of StudySource.covariates"
            )
    return table


def _check_coordinates(table: pd.DataFrame) -> None:
    lon = pd.to_numeric(table["lon"], errors="coerce")
    lat = pd.to_numeric(table["lat"], errors="coerce")
    missing = table.loc[lon.isna() | lat.isna(), "unit_id"]
    if len(missing):
        raise RCTValidationError(
            f"{len(missing)} unit(s) have missing or non-numeric lon/lat: {_examples(missing)}. Geocode them or remove them from the trial table"
        )
    bad = table.loc[(lon.abs() > 180) | (lat.abs() > 90), "unit_id"]
    if len(bad):
        hint = " (are lon and lat in a projected CRS? they must be EPSG:4326 degrees)"
        raise RCTValidationError(f"{len(bad)} unit(s) have lon/lat out of range{hint}: {_examples(bad)}")
    table["lon"], table["lat"] = lon.astype(float), lat.astype(float)


def _binary_treatment(table: pd.DataFrame) -> pd.Series:
    raw = table["treatment"]
    missing = table.loc[raw.isna(), "unit_id"]
    if len(missing):
        raise RCTValidationError(
            f"treatment is missing for {len(missing)} unit(s): {_examples(missing)}. Every unit needs its assigned arm (0 or 1)"
        )
    values = raw.map({True: 1, False: 0}) if raw.dtype == bool else pd.to_numeric(raw, errors="coerce")
    bad = table.loc[~values.isin([0, 1]), ["unit_id", "treatment"]]
    if len(bad):
        examples = ", ".join(f"{u}={t!r}" for u, t in bad.head(5).itertuples(index=False))
        raise RCTValidationError(
            f"treatment must be 0 or 1; {len(bad)} unit(s) are not: {examples}. Recode the column (control = 0, treated = 1)"
        )
    return values.astype(np.int8)


def _check_arms(table: pd.DataFrame, min_arm_size: int) -> None:
    counts = table["treatment"].value_counts().reindex([0, 1], fill_value=0)
    small = {arm: int(n) for arm, n in counts.items() if n < min_arm_size}
    if small:
        raise RCTValidationError(
            f"treatment arm(s) with fewer than {min_arm_size} units: {small} (control=0, treated=1). Check the treatment column, or lower UnitsConfig.min_arm_size"
        )


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
    cols = covariate_choice(units, spec)[0]
    out = units[["unit_id"]].copy()
    for col in cols:
        values = units[col].astype(float)
        if values.isna().any():
            out[f"{col}_missing"] = values.isna().astype(np.int8)
            values = values.fillna(values.median())
        out[col] = values
    return out


def check_outcomes(table: pd.DataFrame, spec: RCTSpec, max_missing_share: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Outcomes as numbers; units with a missing outcome dropped (and listed), failing above
    ``max_missing_share``: every estimator downstream needs each unit's outcome.

    Non-numeric values are an error naming the units, never a silent NaN.
    """
    table = table.copy()
    missing = pd.Series(False, index=table.index)
    for col in spec.outcomes:
        values = pd.to_numeric(table[col], errors="coerce")
        bad = table.loc[values.isna() & table[col].notna(), ["unit_id", col]]
        if len(bad):
            examples = ", ".join(f"{u}={v!r}" for u, v in bad.head(5).itertuples(index=False))
            raise RCTValidationError(
                f"outcome {col!r} has {len(bad)} non-numeric value(s): {examples}. Clean the column or list other outcomes in StudySource.outcomes"
            )
        table[col] = values.astype(float)
        missing |= values.isna()
    dropped = pd.DataFrame({"unit_id": table.loc[missing, "unit_id"], "reason": "missing outcome"}).reset_index(drop=True)
    share = len(dropped) / max(len(table), 1)
    if share > max_missing_share:
        raise RCTValidationError(
            f"{len(dropped)} of {len(table)} units ({share:.1%}) have a missing outcome ({', '.join(spec.outcomes)}), above max_missing_outcome_share = {max_missing_share:.1%}: "
            f"{_examples(dropped['unit_id'])}. Impute or remove them, or raise UnitsConfig.max_missing_outcome_share"
        )
    return table.loc[~missing].reset_index(drop=True), dropped
