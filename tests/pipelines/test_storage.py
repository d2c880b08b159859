from pathlib import Path

import pytest

from models.io.storage import atomic_path
from tests.conftest import materialize_asset, materialize_assets


def test_atomic_file_write_keeps_previous_on_error(tmp_path: Path):
    target = tmp_path / "table.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.txt"]


def test_atomic_directory_is_swapped_whole(tmp_path: Path):
    target = tmp_path / "cube.zarr"
    target.mkdir()
    (target / "old").write_text("1")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["cube.zarr"]


def _failure(result) -> str:
    return str(next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data.error)


def test_returning_a_bare_path_is_refused_and_deletes_nothing(tmp_path: Path):
    """The defect: a Path to storage.path("x.tif") used to be 'staged', and its parent (the root) removed."""
    import dagster as dg
    import pandas as pd

    from pipelines.resources import StorageResource

    root = tmp_path / "data"
    root.mkdir()
    pd.DataFrame({"a": [1]}).to_parquet(root / "sibling.parquet")

    @dg.asset(io_manager_key="geotiff_io")
    def raster(storage: StorageResource):
        path = storage.path("x.tif")
        path.write_bytes(b"not really a tiff")
        return path

    result = materialize_asset(raster, root)
    assert not result.success and "storage.staging()" in _failure(result)
    assert sorted(p.name for p in root.iterdir()) == ["sibling.parquet", "x.tif"]


def test_a_staged_output_is_moved_into_place_and_staging_emptied(tmp_path: Path):
    import dagster as dg

    from pipelines.resources import StorageResource

    @dg.asset(io_manager_key="geotiff_io")
    def raster(storage: StorageResource):
        with storage.staging() as stage:
            staged = stage.output("raster.tif")
            staged.path.write_bytes(b"tiff bytes")
            (stage.folder / "scratch.bin").write_bytes(b"scratch")  # scratch beside the output goes too
            yield dg.Output(staged)

    root = tmp_path / "data"
    assert materialize_asset(raster, root).success
    assert (root / "raster.tif").read_bytes() == b"tiff bytes"
    assert list((root / ".staging").iterdir()) == []


def test_a_staged_output_from_elsewhere_is_refused(tmp_path: Path):
    import dagster as dg

    from models.io.storage import StagedOutput

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "cube.tif").write_bytes(b"x")

    @dg.asset(io_manager_key="geotiff_io")
    def raster():
        return StagedOutput(outside / "cube.tif", outside)

    result = materialize_asset(raster, tmp_path / "data")
    assert not result.success and "not inside a staging folder" in _failure(result)
    assert (outside / "cube.tif").exists()


def test_staging_is_removed_on_success_and_on_error(tmp_path: Path):
    from models.io.storage import staging

    with staging(tmp_path) as stage:
        (stage.folder / "scratch.zarr").mkdir()
    with pytest.raises(RuntimeError), staging(tmp_path) as stage:
        (stage.folder / "half.tif").write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="plain name"), staging(tmp_path) as stage:
        stage.output("../escape.tif")


def test_each_format_has_its_own_manager_and_typed_loads(tmp_path: Path):
    """A staged GeoTIFF given to the table manager is refused naming the keys; the manifest comes back
    as a StudyManifest and a GeoTIFF as a Raster handle, by the downstream asset's annotation."""
    import dagster as dg

    from models.io.manifest import StudyManifest
    from models.io.rasters import Raster
    from pipelines.resources import StorageResource

    @dg.asset
    def wrong_manager(storage: StorageResource):
        with storage.staging() as stage:
            staged = stage.output("raster.tif")
            staged.path.write_bytes(b"tiff bytes")
            yield dg.Output(staged)

    result = materialize_asset(wrong_manager, tmp_path / "wrong")
    assert not result.success and "geotiff_io" in _failure(result)

    @dg.asset
    def manifest() -> StudyManifest:
        return StudyManifest.create("user", tmp_path, tmp_path)

    @dg.asset(io_manager_key="geotiff_io")
    def raster(storage: StorageResource):
        with storage.staging() as stage:
            staged = stage.output("raster.tif")
            staged.path.write_bytes(b"tiff bytes")
            yield dg.Output(staged)

    seen = {}

    @dg.asset
    def reader(manifest: StudyManifest, raster: Raster) -> dict:
        seen.update(manifest=manifest, raster=raster)
        return {}

    assert materialize_assets([manifest, raster, reader], tmp_path / "data").success
    assert seen["manifest"] == StudyManifest("user", str(tmp_path.resolve()), str(tmp_path.resolve()))
    assert seen["raster"] == Raster(tmp_path / "data" / "raster.tif")
