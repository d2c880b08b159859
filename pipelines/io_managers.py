"""Format-aware storage: Parquet/GeoParquet tables, JSON manifests, and staged Zarr/GeoTIFF outputs.

Nothing is pickled. Every write goes to a temporary sibling and is renamed into place, so an
interrupted run leaves the previous materialization readable.
"""

import json
import shutil
from pathlib import Path

import dagster as dg
import geopandas as gpd
import pandas as pd
import pyarrow.parquet as pq

from models.chips import open_cube
from models.storage import atomic_path, replace_path, write_json
from pipelines.resources import StorageResource

SUFFIXES = (".parquet", ".zarr", ".tif", ".safetensors", ".json")
STAGED = (".zarr", ".tif", ".safetensors")


class LocalStorageIOManager(dg.ConfigurableIOManager):
    """Stores each asset under ``storage.root/<asset key>`` in the format its value calls for.

    - GeoDataFrame -> GeoParquet, DataFrame -> Parquet, dict -> JSON;
    - ``Path`` to a staged ``.zarr``, ``.tif`` or ``.safetensors`` the asset wrote -> renamed into place.
    Loading gives back a (Geo)DataFrame, a dict, a lazy ``xarray.Dataset`` for Zarr, or the
    ``Path`` of a GeoTIFF or safetensors file.
    """

    storage: StorageResource

    def _base(self, context) -> Path:
        return self.storage.path(*context.asset_key.path)

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        base = self._base(context)
        if isinstance(obj, pd.DataFrame):
            target = base.with_suffix(".parquet")
            with atomic_path(target) as tmp:
                obj.to_parquet(tmp, index=False)
        elif isinstance(obj, dict):
            target = write_json(obj, base.with_suffix(".json"))
        elif isinstance(obj, Path) and obj.suffix in STAGED:
            target = base.with_suffix(obj.suffix)
            replace_path(obj, target)
            shutil.rmtree(obj.parent, ignore_errors=True)  # the emptied staging folder
        else:
            raise TypeError(f"{context.asset_key.to_user_string()}: no storage format for {type(obj).__name__}")
        context.add_output_metadata({"path": dg.MetadataValue.path(str(target.resolve()))})

    def load_input(self, context: dg.InputContext):
        base = self._base(context.upstream_output)
        found = [base.with_suffix(s) for s in SUFFIXES if base.with_suffix(s).exists()]
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
