"""An analyst's DuckDB database: one view per Parquet table, with the data dictionary as comments.

The views read the Parquet files in place (nothing is copied), so the database is small and always
shows the latest materialization. DuckDB's spatial extension is not loaded: it would be downloaded
at run time, and eotrials runs offline; GeoParquet geometry reads as WKB.
"""

from __future__ import annotations

from pathlib import Path

from models.data_dictionary import describe


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def build_database(tables: dict[str, Path], path: str | Path) -> list[str]:
    """Create ``path`` with a view per table (name -> Parquet file) and column comments; returns the view names."""
    import duckdb

    with duckdb.connect(str(path)) as con:
        for name, table in sorted(tables.items()):
            con.execute(f'CREATE OR REPLACE VIEW "{name}" AS SELECT * FROM read_parquet({_quoted(str(Path(table).resolve()))})')
            for (column,) in con.execute(f'SELECT column_name FROM (DESCRIBE "{name}")').fetchall():
                text = describe(column, name)
                if text:
                    con.execute(f'COMMENT ON COLUMN "{name}"."{column}" IS {_quoted(text)}')
    return sorted(tables)
