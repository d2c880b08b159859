"""Self-describing tables: one data dictionary behind the Parquet field metadata, the Dagster
column schema and docs/data_dictionary.md."""

from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.analyst.data_dictionary import describe, markdown, unit_of, with_descriptions
from tests.conftest import materialize_asset

ROOT = Path(__file__).resolve().parents[3]


def test_the_docs_page_is_generated_from_the_dictionary():
    assert (ROOT / "docs" / "data_dictionary.md").read_text() == markdown()


def test_columns_families_and_covariates():
    assert "CATE" in describe("tau") and "[outcome units]" in describe("tau")
    assert describe("e007") == "embedding dimension 007 of the unit's image (sequence) encoder"
    assert "class 50" in describe("frac_50") and "last minus first" in describe("change_40")
    assert describe("age_head", "rct_units").startswith("covariate from the trial table")
    assert describe("age_head", "cate_estimates") is None and describe("no_such_column") is None


def test_field_metadata_keeps_the_data():
    table = pa.table({"unit_id": ["a", "b"], "tau": [0.1, 0.2], "mystery": [1, 2]})
    described = with_descriptions(table, "cate_estimates")
    assert described.equals(table.cast(described.schema)) and described.column("tau").to_pylist() == [0.1, 0.2]
    assert described.schema.field("tau").metadata[b"description"].decode() == describe("tau")
    assert described.schema.field("tau").metadata[b"unit"] == b"outcome units"
    assert b"unit" not in described.schema.field("unit_id").metadata  # identifiers have no unit
    assert not described.schema.field("mystery").metadata


def test_units_are_read_from_the_trailing_brackets():
    assert unit_of(describe("lon")) == "degrees, EPSG:4326" and unit_of(describe("x")) == "m"
    assert unit_of(describe("treatment")) is None and unit_of(None) is None


def test_the_io_manager_writes_descriptions_and_a_column_schema(tmp_path):
    @dg.asset
    def cate_estimates() -> pd.DataFrame:
        return pd.DataFrame({"unit_id": ["U1", "U2"], "tau": [0.5, -0.1], "fold": [0, 1]})

    result = materialize_asset(cate_estimates, tmp_path)
    assert result.success
    path = tmp_path / "cate_estimates.parquet"
    schema = pq.read_schema(path)
    assert schema.field("tau").metadata[b"description"].decode() == describe("tau")
    assert pd.read_parquet(path)["tau"].tolist() == [0.5, -0.1]
    columns = result.asset_materializations_for_node("cate_estimates")[0].metadata["dagster/column_schema"].value.columns
    assert [(c.name, c.description) for c in columns] == [(c, describe(c)) for c in ("unit_id", "tau", "fold")]
    assert [c.tags.get("unit") for c in columns] == [None, "outcome units", None]


def test_the_analyst_database_has_a_view_per_table_with_comments(tmp_path):
    import duckdb

    from models.analyst.database import build_database

    pd.DataFrame({"unit_id": ["U1", "U2"], "tau": [0.5, -0.1]}).to_parquet(tmp_path / "cate_estimates.parquet")
    pd.DataFrame({"method": ["naive"], "estimate": [0.3]}).to_parquet(tmp_path / "ate_summary.parquet")
    tables = {p.stem: p for p in tmp_path.glob("*.parquet")}
    assert build_database(tables, tmp_path / "eotrials.duckdb") == ["ate_summary", "cate_estimates"]
    with duckdb.connect(str(tmp_path / "eotrials.duckdb"), read_only=True) as con:
        assert con.execute("SELECT sum(tau) FROM cate_estimates").fetchone()[0] == pytest.approx(0.4)
        comment = con.execute(
            "SELECT comment FROM duckdb_columns() WHERE table_name = 'cate_estimates' AND column_name = 'tau'"
        ).fetchone()[0]
    assert comment == describe("tau")
