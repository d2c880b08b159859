"""An analyst's DuckDB database: one view per Parquet table, with the data dictionary as comments.

The views read the Parquet files in place (nothing is copied), so the database is small and always
shows the latest materialization. A trial-level table is a folder of one file per trial
(``<table>/<trial>.parquet``); its view reads them all and adds the trial's key as column ``trial``. DuckDB's spatial extension is not loaded: it would be downloaded
at run time, and eotrials runs offline; GeoParquet geometry reads as WKB.
"""

from __future__ import annotations

from pathlib import Path

from models.analyst.data_dictionary import describe


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _source(table: Path) -> str:
    """The ``FROM`` of a view: one Parquet file, or every trial's file of a folder with its key."""
    table = Path(table).resolve()
    if not table.is_dir():
        return f"read_parquet({_quoted(str(table))})"
    files = _quoted(str(table / "*.parquet"))
    return f"(SELECT regexp_extract(filename, '([^/]+)[.]parquet$', 1) AS trial, COLUMNS(lambda c: c NOT IN ('filename', 'trial')) FROM read_parquet({files}, filename = true, union_by_name = true))"


def build_database(tables: dict[str, Path], path: str | Path) -> list[str]:
    """Create ``path`` with a view per table (name -> Parquet file, or folder of per-trial Parquet
    files) and column comments; returns the view names."""
    import duckdb

    with duckdb.connect(str(path)) as con:
        for name, table in sorted(tables.items()):
            con.execute(f'CREATE OR REPLACE VIEW "{name}" AS SELECT * FROM {_source(table)}')
            for (column,) in con.execute(f'SELECT column_name FROM (DESCRIBE "{name}")').fetchall():
                text = describe(column, name)
                if text:
                    con.execute(f'COMMENT ON COLUMN "{name}"."{column}" IS {_quoted(text)}')
    return sorted(tables)
