"""What every column of every eotrials table means, in one place.

The same descriptions go into the Parquet files' field metadata (an analyst's tool shows them
without eotrials), into each asset's column schema in the Dagster UI, and into
docs/data_dictionary.md (``python -m models.analyst.data_dictionary > docs/data_dictionary.md``).
Units are in brackets; "outcome units" are those of the trial's outcome, "wealth units" those of
the survey's wealth index.
"""

from __future__ import annotations

import re

import pyarrow as pa

_CI = "95% confidence interval"

COLUMNS: dict[str, str] = {
    # identifiers and design
    "unit_id": "trial unit (or surveyed place) identifier, as text",
    "survey_id": "surveyed place identifier, as text",
    "scene_id": "imagery scene identifier",
    "lon": "longitude [degrees, EPSG:4326]",
    "lat": "latitude [degrees, EPSG:4326]",
    "x": "easting in the imagery's CRS [m]",
    "y": "northing in the imagery's CRS [m]",
    "geometry": "unit location as a point (GeoParquet, EPSG:4326)",
    "treatment": "assigned treatment: 1 treated, 0 control",
    "outcome": "the trial's outcome [outcome units]",
    "stratum": "randomization stratum",
    "cluster": "randomization cluster (e.g. village); errors are clustered on it",
    "assignment_probability": "design probability of treatment [0-1]",
    "fold": "cross-fitting fold (0-based); the models that score a unit never saw its fold",
    "split": "survey split: train (fits the map), calibration (fits the corrections) or test (evaluates)",
    "date": "acquisition date (YYYY-MM-DD); 'change' rows hold last minus first date",
    # imagery catalog
    "paths": "files read for the scene (band files or the date's mosaic VRT)",
    "source_files": "the raster files behind the paths",
    "crs": "coordinate reference system of the scene",
    "left": "west edge of the scene [CRS units]",
    "bottom": "south edge of the scene [CRS units]",
    "right": "east edge of the scene [CRS units]",
    "top": "north edge of the scene [CRS units]",
    "res_x": "pixel width [CRS units]",
    "res_y": "pixel height [CRS units]",
    "width": "scene width [pixels]",
    "height": "scene height [pixels]",
    "band_count": "number of bands",
    "band_names": "band names in order (blue, green, red, nir, swir1, swir2)",
    "dtypes": "stored data type of each band",
    "nodata": "nodata value of each band",
    "scales": "scale factor of each band (physical = raw x scale + offset)",
    "offsets": "offset of each band",
    # CATEs
    "data_choice": "features the CATE learner saw: tabular, image, image_sequence or image_sequence_tabular",
    "learner": "CATE learner: causal_forest, dr_learner or t_learner",
    "tau": "out-of-fold estimated CATE [outcome units]",
    "se": "standard error of tau from the learner (variance only, not the bias of imperfect features) [outcome units]",
    "lower": "lower end of the learner's nominal 95% interval for tau; covers far less than 95% (see unit_interval_coverage) [outcome units]",
    "upper": "upper end of the learner's nominal 95% interval for tau [outcome units]",
    "gamma": "doubly robust (AIPW) score of the unit, shared by every data choice [outcome units]",
    "tau_sequential": "CATE from a model fitted on earlier folds only (grf's rate_cv scheme); empty for fold 0 [outcome units]",
    # heterogeneity evidence
    "autoc": "RATE with AUTOC weighting (grf definition) [outcome units]",
    "autoc_se": "half-sample bootstrap standard error of autoc [outcome units]",
    "autoc_lower": f"lower end of the {_CI} of autoc [outcome units]",
    "autoc_upper": f"upper end of the {_CI} of autoc [outcome units]",
    "autoc_ratio": "autoc / autoc_se: the headline test statistic for heterogeneity",
    "qini": "RATE with Qini weighting (grf definition) [outcome units]",
    "qini_se": "half-sample bootstrap standard error of qini [outcome units]",
    "qini_lower": f"lower end of the {_CI} of qini [outcome units]",
    "qini_upper": f"upper end of the {_CI} of qini [outcome units]",
    "qini_ratio": "qini / qini_se",
    "autoc_sequential": "mean AUTOC over folds ranked by models fitted on earlier folds (cross-fitted RATE) [outcome units]",
    "autoc_sequential_t": "pooled t-statistic of the cross-fitted RATE: sum of the ranked folds' t-statistics / sqrt(their number)",
    "autoc_sequential_p": "one-sided p-value of autoc_sequential_t (no heterogeneity): the RATE test whose level holds",
    "blp_sequential_t": "pooled t-statistic of the calibration test's differential coefficient, per fold on sequential priorities",
    "blp_sequential_p": "one-sided p-value of blp_sequential_t (no heterogeneity)",
    "blp_mean": "BLP calibration test: coefficient on the mean prediction (1 = average effect right)",
    "blp_mean_se": "standard error of blp_mean (HC3, or cluster-robust)",
    "blp_differential": "BLP calibration test: coefficient on the differential prediction (> 0: heterogeneity; 1: calibrated)",
    "blp_differential_se": "standard error of blp_differential (HC3, or cluster-robust)",
    "blp_differential_p": "one-sided p-value of blp_differential > 0",
    "pehe": "root mean squared error of tau against the simulator's true CATE [outcome units]",
    "rank_correlation": "Spearman correlation of tau with the true CATE",
    "unit_interval_coverage": "share of units whose nominal 95% interval holds the true CATE (simulator only) [0-1]",
    "gates_coverage": "share of CATE quintiles whose GATE interval holds the group's true mean CATE (simulator only) [0-1]",
    "data_choice_a": "first data choice of the pair",
    "data_choice_b": "second data choice of the pair",
    "target": "RATE weighting: AUTOC or QINI",
    "difference": "RATE of data_choice_a minus that of data_choice_b, on the same half-sample draws [outcome units]",
    "q": "share of units treated, by decreasing priority [0-1]",
    "toc": "TOC(q): mean effect of the top q share minus the overall mean effect [outcome units]",
    "group": "quintile of the ranking variable (1 = lowest)",
    "units": "number of units in the group",
    "low": "smallest value of the ranking variable in the group",
    "high": "largest value of the ranking variable in the group",
    "mean_value": "mean of the ranking variable in the group (the mean predicted CATE for GATES)",
    "gate": "group average treatment effect: mean DR score of the group [outcome units]",
    "quantile": "quintile of the land-cover feature (1 = lowest)",
    # generic estimates
    "method": "estimator",
    "estimate": "point estimate [outcome units]",
    "std_error": "standard error [outcome units]",
    "ci_lower": f"lower end of the {_CI} [outcome units]",
    "ci_upper": f"upper end of the {_CI} [outcome units]",
    "p_value": "two-sided p-value",
    "p_bonferroni": "p_value times the number of terms (capped at 1)",
    # attribution
    "term": "design column: level_<code> (share at the last date) or change_<code> (last minus first)",
    "feature": "the term in words",
    "per_10pp": "change in the effect per 10 percentage points of the feature [outcome units]",
    "per_10pp_lower": f"lower end of the {_CI} of per_10pp [outcome units]",
    "per_10pp_upper": f"upper end of the {_CI} of per_10pp [outcome units]",
    # wealth map and many trials
    "wealth": "surveyed (or true) wealth index; in a trial table, wealth measured for some units (PPI++'s labels) [wealth units]",
    "prediction": "the wealth map's prediction [wealth units]",
    "trial": "the trial's key (its partition: the trial table's file name), or a simulated trial (sim_<response>_<n>)",
    "lcc": "predicted wealth after the linear calibration correction: for effect estimation, not one place's wealth [wealth units]",
    "tweedie": "predicted wealth after Tweedie's correction: for effect estimation, not one place's wealth [wealth units]",
    "response": "how the treatment reaches the map: imagery: <change setting> (chips change on the setting's dates in its pattern, the map re-predicts), linear shortcut, or observed",
    "response_ratio": "the map's treatment response (naive slope) over its calibration slope b: 1 is what LCC and Tweedie assume",
    "true_effect": "the true ATE on wealth [wealth units]",
    "covered": "whether the 95% interval holds the true effect",
    "labels": "units whose measured wealth the estimate uses (oracle: all, ppi: its labelled units, map-based methods: 0)",
    "bias": "mean of estimate minus true effect over trials [wealth units]",
    "rmse": "root mean squared error over trials [wealth units]",
    "coverage": "share of trials whose 95% interval holds the true effect [0-1]",
    "mean_estimate": "mean estimate over trials [wealth units]",
    "trials": "number of trials",
    "slope": "slope of estimate on true effect over all effects (1 = no attenuation)",
    "expected_naive_estimate": "calibration slope b times the true effect: what attenuation predicts for naive",
    # simulation study
    "seed": "simulation seed",
    "n_units": "units in the simulated trial",
    "effect_strength": "sd of the heterogeneous part of the true CATE",
    "heterogeneity": "what drives the simulated CATE: static land cover, change, both or none",
    "encoder": "image-sequence encoder as capacity:objective (none for tabular)",
    "seconds": "fit time [s]",
    "comparison": "which data choices are compared, and the RATE weighting",
    "seeds": "number of simulated worlds",
    "mean_difference": "mean over seeds of the paired RATE difference [outcome units]",
    "seeds_a_wins": "seeds whose within-trial interval puts the first choice ahead",
    "seeds_b_wins": "seeds whose within-trial interval puts the second choice ahead",
}

PATTERNS: tuple[tuple[str, str], ...] = (
    (r"e(\d+)", "embedding dimension {0} of the unit's image (sequence) encoder"),
    (r"x_(.+)", "covariate {0}, standardized (mean 0, sd 1)"),
    (r"frac_(\d+)", "share of WorldCover class {0} among the classified pixels of the unit's chip [0-1]"),
    (r"level_(\d+)", "share of WorldCover class {0} at the last date [0-1]"),
    (r"change_(\d+)", "change in the share of WorldCover class {0}, last minus first date"),
)

COVARIATE_TABLES = ("rct_units", "tabular_features", "embeddings_tabular")


def describe(column: str, table: str | None = None) -> str | None:
    """The column's description; a trial covariate (in the tables that carry them) otherwise; None if unknown."""
    if column in COLUMNS:
        return COLUMNS[column]
    for pattern, template in PATTERNS:
        match = re.fullmatch(pattern, column)
        if match:
            return template.format(*match.groups())
    if table in COVARIATE_TABLES:
        scaled = ", standardized (mean 0, sd 1)" if table == "embeddings_tabular" else ""
        return f"covariate from the trial table (StudySource.covariates){scaled}"
    return None


def unit_of(description: str | None) -> str | None:
    """The unit in a description's trailing brackets ("longitude [degrees, EPSG:4326]" -> "degrees,
    EPSG:4326"); None for unitless columns (identifiers, codes, counts)."""
    match = re.search(r"\[([^\[\]]+)\]\s*$", description or "")
    return match.group(1) if match else None


def field_metadata(column: str, table: str | None = None) -> dict[str, str]:
    """``description`` and, where there is one, ``unit``: what a column carries in every place."""
    text = describe(column, table)
    unit = unit_of(text)
    return {} if text is None else {"description": text, **({"unit": unit} if unit else {})}


def with_descriptions(table: pa.Table, name: str | None = None) -> pa.Table:
    """The table with each field's description and unit in its Parquet field metadata (keys
    ``description``, ``unit``)."""
    fields = []
    for field in table.schema:
        extra = {k.encode(): v.encode() for k, v in field_metadata(field.name, name).items()}
        fields.append(field.with_metadata({**(field.metadata or {}), **extra}) if extra else field)
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


def markdown() -> str:
    """The data dictionary as Markdown (docs/data_dictionary.md)."""
    lines = [
        "# Data dictionary",
        "",
        "Every column of every eotrials table, generated from `models/analyst/data_dictionary.py`",
        "(`python -m models.analyst.data_dictionary > docs/data_dictionary.md`). The same text is in each",
        "Parquet file's field metadata (keys `description` and, in brackets here, `unit`) and on each",
        "asset's page in the Dagster UI (the unit as the column's `unit` tag).",
        "",
        "| column | meaning |",
        "|---|---|",
        *(f"| `{name}` | {text} |" for name, text in COLUMNS.items()),
        "",
        "Column families:",
        "",
        *(f"- `{pattern}`: {template.format('<n>')}" for pattern, template in PATTERNS),
        f"- other columns of {', '.join(f'`{t}`' for t in COVARIATE_TABLES)}: covariates from the trial table.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(), end="")
