"""Format-aware storage: Parquet/GeoParquet tables, JSON manifests, and staged Zarr/GeoTIFF/safetensors.

Nothing is pickled. Every write goes to a temporary sibling and is renamed into place, so an
interrupted run leaves the previous materialization readable.
"""

import json
import shutil
from pathlib import Path

import dagster as dg
import geopandas as gpd
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from models.chips import open_cube
from models.data_dictionary import field_metadata, with_descriptions
from models.storage import StagedOutput, atomic_path, replace_path, write_json
from pipelines.resources import StorageResource

SUFFIXES = (".parquet", ".zarr", ".tif", ".safetensors", ".png", ".json", ".duckdb", ".html", "")
STAGED = (".zarr", ".tif", ".safetensors", ".png", ".duckdb", ".html", "")  # "": a folder of files (e.g. one GeoTIFF per date)


def column_schema(frame: pd.DataFrame, table: str) -> dg.TableSchema:
    """Each column's type, its data-dictionary description and its unit (a ``unit`` tag): the asset
    page's column list."""
    columns = []
    for column, dtype in frame.dtypes.items():
        meta = field_metadata(str(column), table)
        tags = {"unit": meta["unit"]} if "unit" in meta else None
        columns.append(dg.TableColumn(str(column), str(dtype), description=meta.get("description"), tags=tags))
    return dg.TableSchema(columns=columns)


class LocalStorageIOManager(dg.ConfigurableIOManager):
    """Stores each asset under ``storage.root/<asset key>`` (a trial's partition under
    ``<asset key>/<trial>``) in the format its value calls for.

    - GeoDataFrame -> GeoParquet, DataFrame -> Parquet with each column's description in its field
      metadata (``models.data_dictionary``), dict -> JSON; tables also get a Dagster column schema;
    - :class:`StagedOutput` (a ``.zarr``, ``.tif``, ``.safetensors``, ``.png``, ``.duckdb``, ``.html`` or a folder
      written inside ``storage.staging()``) -> renamed into place, then its own staging folder is removed.
    Anything else, a bare ``Path`` included, is refused: the manager never deletes what it did not stage.
    Loading gives back a (Geo)DataFrame, a dict, a lazy ``xarray.Dataset`` for Zarr, or the
    ``Path`` of a GeoTIFF, safetensors, PNG, DuckDB or HTML file or of a folder.
    """

    storage: StorageResource

    def _base(self, context, partition: str | None) -> Path:
        """``<root>/<asset>`` or, for a trial's partition, ``<root>/<asset>/<trial>`` (plus the suffix)."""
        return self.storage.path(*context.asset_key.path, *([partition] if partition else []))

    def _step_output(self, context: dg.OutputContext) -> Path:
        """Where an op inside a graph-backed asset (one per chip chunk, say) keeps its output: under
        ``.runs/<run id>/<step>/<output>[/<mapping key>]``, so a re-execution from failure reads
        what the steps that succeeded wrote."""
        return self.storage.path(".runs", *context.get_identifier())

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if not context.has_asset_key:  # an op's output inside a graph-backed asset: a table or a record
            path = self._step_output(context)
            if isinstance(obj, pd.DataFrame):
                with atomic_path(path.with_suffix(".parquet")) as tmp:
                    obj.to_parquet(tmp, index=False)
            elif isinstance(obj, dict):
                write_json(obj, path.with_suffix(".json"))
            else:
                raise TypeError(f"{context.step_key}: op outputs are DataFrames or dicts, got {type(obj).__name__}")
            return
        partition = context.asset_partition_key if context.has_asset_partitions else None
        base, name = self._base(context, partition), context.asset_key.to_user_string()
        metadata = {}
        if isinstance(obj, pd.DataFrame):
            target = base.with_suffix(".parquet")
            with atomic_path(target) as tmp:
                if isinstance(obj, gpd.GeoDataFrame):
                    obj.to_parquet(tmp, index=False)  # geopandas writes the GeoParquet metadata
                else:
                    pq.write_table(with_descriptions(pa.Table.from_pandas(obj, preserve_index=False), name), tmp)
            metadata["dagster/column_schema"] = dg.MetadataValue.table_schema(column_schema(obj, name))
        elif isinstance(obj, dict):
            target = write_json(obj, base.with_suffix(".json"))
        elif isinstance(obj, StagedOutput):
            target = self._move_staged(obj, base, name)
        else:
            hint = " Write it inside `with storage.staging() as stage:` and return `stage.output(name)`." if isinstance(obj, Path) else ""
            raise TypeError(f"{name}: no storage format for {type(obj).__name__}.{hint}")
        context.add_output_metadata({"path": dg.MetadataValue.path(str(target.resolve())), **metadata})

    def _move_staged(self, staged: StagedOutput, base: Path, name: str) -> Path:
        """Rename the staged output into place and remove its staging folder, after checking both are ours."""
        root = self.storage.staging_root.resolve()
        folder, path = staged.staging.resolve(), staged.path.resolve()
        if folder.parent != root or path.parent != folder:
            raise ValueError(f"{name}: staged output {staged.path} is not inside a staging folder of {root}")
        if staged.path.suffix not in STAGED:
            raise ValueError(f"{name}: staged outputs are {STAGED}, got {staged.path.name!r}")
        if not path.exists():
            raise FileNotFoundError(f"{name}: staged output {staged.path} does not exist (yield it inside the `storage.staging()` block)")
        if staged.path.suffix == "" and not path.is_dir():
            raise ValueError(f"{name}: a staged output without a suffix must be a folder, {staged.path} is a file")
        target = base.with_suffix(staged.path.suffix)
        replace_path(path, target)
        shutil.rmtree(folder, ignore_errors=True)
        return target

    def load_input(self, context: dg.InputContext):
        if not context.upstream_output.has_asset_key:
            path = self._step_output(context.upstream_output)
            return (
                pd.read_parquet(path.with_suffix(".parquet"))
                if path.with_suffix(".parquet").exists()
                else json.loads(path.with_suffix(".json").read_text())
            )
        base = self._base(context.upstream_output, context.asset_partition_key if context.has_asset_partitions else None)
        found = [base.with_suffix(s) for s in SUFFIXES if base.with_suffix(s).exists() and (s or base.is_dir())]
        if not found:
            raise FileNotFoundError(f"{context.upstream_output.asset_key.to_user_string()} has not been materialized under {base.parent}")
        path = found[0]
        if path.suffix == ".parquet":
            return gpd.read_parquet(path) if b"geo" in (pq.read_schema(path).metadata or {}) else pd.read_parquet(path)
        if path.suffix == ".json":
            return json.loads(path.read_text())
        if path.suffix == ".zarr":
            return open_cube(path)
        return path
