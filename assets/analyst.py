"""Analyst: the materialized tables as one DuckDB database, for SQL without Dagster."""

import dagster as dg

from models.analyst import build_database
from pipelines.resources import StorageResource

GROUP = "analyst"

TABLES = (
    "imagery_catalog", "rct_units", "tabular_features", "cate_estimates", "heterogeneity_evaluation", "rate_differences",
    "toc_curves", "gates", "ate_summary", "unit_land_cover", "heterogeneity_attribution", "survey_predictions",
    "unit_wealth_predictions", "trial_outcomes", "debiasing_evaluation", "simulation_study", "simulation_comparison",
)  # fmt: skip


@dg.asset(group_name=GROUP, kinds={"duckdb"}, deps=list(TABLES))
def analyst_database(storage: StorageResource):
    """A DuckDB file with a view over every table above (reading the Parquet in place) and every
    column's description as a comment: `duckdb data/analyst_database.duckdb`, then SQL."""
    tables = {name: storage.path(f"{name}.parquet") for name in TABLES if storage.path(f"{name}.parquet").exists()}
    with storage.staging() as stage:
        staged = stage.output("analyst_database.duckdb")
        views = build_database(tables, staged.path)
        yield dg.Output(staged, metadata={"views": ", ".join(views), "count": len(views)})
