"""Format-aware storage, one IO manager per format, chosen by each asset's ``io_manager_key``.

- ``io_manager`` (:class:`TableIOManager`): DataFrames as Parquet / GeoParquet, records (dicts,
  and typed records such as :class:`StudyManifest`) as JSON; op outputs inside graph-backed assets.
- ``zarr_io``: cubes -> a lazy ``xarray.Dataset``.
- ``geotiff_io``: GeoTIFFs (or a folder of them) -> :class:`Raster`.
- ``encoder_io``: encoders (safetensors + JSON metadata) -> :class:`FittedEncoders`.
- ``file_io``: documents (PNG, HTML, DuckDB) -> their ``Path``.

Nothing is pickled. Every write goes to a temporary sibling and is renamed into place, so an
interrupted run leaves the previous materialization readable. Files an asset writes itself are
written inside ``storage.staging()`` and returned as a :class:`StagedOutput`; the manager renames
it into place and deletes only that staging folder.
"""

import dataclasses
import json
import shutil
import typing
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
import geopandas as gpd
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pydantic

from models.analyst.data_dictionary import field_metadata, with_descriptions
from models.ingest.chips import open_cube
from models.io.manifest import StudyManifest
from models.io.rasters import Raster
from models.io.storage import StagedOutput, atomic_path, replace_path, write_json
from models.representation.training import load_encoders
from pipelines.resources import StorageResource, refuse_unknown_fields

RECORDS = {StudyManifest: StudyManifest.from_dict}  # typed records stored as JSON, rebuilt by annotation


def column_schema(frame: pd.DataFrame, table: str) -> dg.TableSchema:
    """Each column's type, its data-dictionary description and its unit (a ``unit`` tag): the asset
    page's column list."""
    columns = []
    for column, dtype in frame.dtypes.items():
        meta = field_metadata(str(column), table)
        tags = {"unit": meta["unit"]} if "unit" in meta else None
        columns.append(dg.TableColumn(str(column), str(dtype), description=meta.get("description"), tags=tags))
    return dg.TableSchema(columns=columns)


class StorageIOManager(dg.ConfigurableIOManager):
    """Stores each asset under ``storage.root/<asset key>`` (a trial's partition under
    ``<asset key>/<trial>``) in the formats of ``suffixes``; subclasses say how to read one back."""

    storage: StorageResource
    suffixes: ClassVar[tuple[str, ...]] = ()
    _known_fields = pydantic.model_validator(mode="before")(classmethod(refuse_unknown_fields))

    def base(self, context, partition: str | None) -> Path:
        """``<root>/<asset>`` or, for a trial's partition, ``<root>/<asset>/<trial>`` (plus the suffix)."""
        return self.storage.path(*context.asset_key.path, *([partition] if partition else []))

    def trial_stamp(self, context: dg.OutputContext, obj) -> dict:
        """Which version of the trial table a trial-level output came from (its SHA-256 and row
        count), read from the stored ``rct_units`` of the partition: every trial-level asset page
        shows it without each asset carrying it."""
        if not context.has_asset_partitions:
            return {}
        if isinstance(obj, pd.DataFrame) and "trial_table" in obj.attrs:
            return dict(obj.attrs["trial_table"])
        units = self.storage.path("rct_units", context.asset_partition_key).with_suffix(".parquet")
        attrs = (pq.read_schema(units).metadata or {}).get(b"PANDAS_ATTRS") if units.exists() else None
        return dict(json.loads(attrs).get("trial_table", {})) if attrs else {}

    def _stored_base(self, context: dg.InputContext) -> Path:
        return self.base(context.upstream_output, context.asset_partition_key if context.has_asset_partitions else None)

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        name = context.asset_key.to_user_string()
        partition = context.asset_partition_key if context.has_asset_partitions else None
        if not isinstance(obj, StagedOutput):
            hint = " Write it inside `with storage.staging() as stage:` and return `stage.output(name)`." if isinstance(obj, Path) else ""
            raise TypeError(f"{name}: {type(self).__name__} stores staged {self.suffixes} outputs, got {type(obj).__name__}.{hint}")
        target = self._move_staged(obj, self.base(context, partition), name)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(target.resolve())), **self.trial_stamp(context, obj)})

    def _move_staged(self, staged: StagedOutput, base: Path, name: str) -> Path:
        """Rename the staged output into place and remove its staging folder, after checking both are ours."""
        root = self.storage.staging_root.resolve()
        folder, path = staged.staging.resolve(), staged.path.resolve()
        if folder.parent != root or path.parent != folder:
            raise ValueError(f"{name}: staged output {staged.path} is not inside a staging folder of {root}")
        if staged.path.suffix not in self.suffixes:
            raise ValueError(f"{name}: {type(self).__name__} stores {self.suffixes}, got {staged.path.name!r}")
        if not path.exists():
            raise FileNotFoundError(f"{name}: staged output {staged.path} does not exist (yield it inside the `storage.staging()` block)")
        if staged.path.suffix == "" and not path.is_dir():
            raise ValueError(f"{name}: a staged output without a suffix must be a folder, {staged.path} is a file")
        target = base.with_suffix(staged.path.suffix)
        replace_path(path, target)
        shutil.rmtree(folder, ignore_errors=True)
        return target

    def stored_path(self, context: dg.InputContext) -> Path | None:
        """The upstream asset's file in one of this manager's formats. When there is none: None for
        an input annotated ``X | None`` (an optional upstream, such as the survey's wealth map in a
        study without a survey), else a clear error."""
        base = self._stored_base(context)
        for suffix in self.suffixes:
            path = base.with_suffix(suffix)
            if path.exists() and (suffix or path.is_dir()):
                return path
        if context.dagster_type is not None and type(None) in typing.get_args(context.dagster_type.typing_type):
            return None
        raise FileNotFoundError(f"{context.upstream_output.asset_key.to_user_string()} has not been materialized under {base.parent}")

    def load_input(self, context: dg.InputContext):
        path = self.stored_path(context)
        return None if path is None else self.read(path)

    def read(self, path: Path) -> Any:
        raise NotImplementedError


class TableIOManager(StorageIOManager):
    """DataFrames as Parquet (GeoParquet for GeoDataFrames; column descriptions in the field
    metadata and a Dagster column schema), records as JSON; an op's output inside a graph-backed
    asset under ``.runs/<run id>/<step>/<output>[/<mapping key>]``, so a re-execution from failure
    reads what the steps that succeeded wrote."""

    suffixes: ClassVar[tuple[str, ...]] = (".parquet", ".json")

    def _step_output(self, context: dg.OutputContext) -> Path:
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
        base, name = self.base(context, partition), context.asset_key.to_user_string()
        metadata = {}
        if isinstance(obj, pd.DataFrame):
            target = base.with_suffix(".parquet")
            with atomic_path(target) as tmp:
                if isinstance(obj, gpd.GeoDataFrame):
                    obj.to_parquet(tmp, index=False)  # geopandas writes the GeoParquet metadata
                else:
                    pq.write_table(with_descriptions(pa.Table.from_pandas(obj, preserve_index=False), name), tmp)
            metadata["dagster/column_schema"] = dg.MetadataValue.table_schema(column_schema(obj, name))
        elif isinstance(obj, dict) or type(obj) in RECORDS:
            target = write_json(obj if isinstance(obj, dict) else dataclasses.asdict(obj), base.with_suffix(".json"))
        else:
            hint = f" Set io_manager_key to the manager of its format ({', '.join(IO_MANAGER_KEYS)})."
            raise TypeError(f"{name}: no table or record format for {type(obj).__name__}.{hint}")
        context.add_output_metadata({"path": dg.MetadataValue.path(str(target.resolve())), **metadata, **self.trial_stamp(context, obj)})

    def load_input(self, context: dg.InputContext):
        if not context.upstream_output.has_asset_key:
            path = self._step_output(context.upstream_output)
            parquet = path.with_suffix(".parquet")
            return pd.read_parquet(parquet) if parquet.exists() else json.loads(path.with_suffix(".json").read_text())
        path = self.stored_path(context)
        if path is None:
            return None
        if path.suffix == ".parquet":
            return gpd.read_parquet(path) if b"geo" in (pq.read_schema(path).metadata or {}) else pd.read_parquet(path)
        record = json.loads(path.read_text())
        build = RECORDS.get(context.dagster_type.typing_type) if context.dagster_type else None
        return build(record) if build else record


class ZarrIOManager(StorageIOManager):
    """Chip and grid cubes (Zarr), read back lazily as an ``xarray.Dataset``."""

    suffixes: ClassVar[tuple[str, ...]] = (".zarr",)

    def read(self, path: Path):
        return open_cube(path)


class GeoTiffIOManager(StorageIOManager):
    """Rasters: a GeoTIFF, or a folder of dated GeoTIFFs, read back as a :class:`Raster` handle."""

    suffixes: ClassVar[tuple[str, ...]] = (".tif", "")

    def read(self, path: Path) -> Raster:
        return Raster(path)


class EncoderIOManager(StorageIOManager):
    """Trained encoders (safetensors with their JSON metadata), read back as ``FittedEncoders``."""

    suffixes: ClassVar[tuple[str, ...]] = (".safetensors",)

    def read(self, path: Path):
        return load_encoders(path)


class FileIOManager(StorageIOManager):
    """Documents for people (a PNG figure, the HTML report, the DuckDB database): their ``Path``."""

    suffixes: ClassVar[tuple[str, ...]] = (".png", ".html", ".duckdb")

    def read(self, path: Path) -> Path:
        return path


IO_MANAGERS = {
    "io_manager": TableIOManager,
    "zarr_io": ZarrIOManager,
    "geotiff_io": GeoTiffIOManager,
    "encoder_io": EncoderIOManager,
    "file_io": FileIOManager,
}
IO_MANAGER_KEYS = tuple(IO_MANAGERS)


def io_managers(storage: StorageResource) -> dict[str, StorageIOManager]:
    """Every format's IO manager around one storage root."""
    return {key: cls(storage=storage) for key, cls in IO_MANAGERS.items()}
