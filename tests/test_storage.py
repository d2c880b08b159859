from pathlib import Path

import pytest

from models.storage import atomic_path


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


def _run(asset_fn, root: Path):
    import dagster as dg

    from pipelines.io_managers import LocalStorageIOManager
    from pipelines.resources import StorageResource

    storage = StorageResource(root=str(root))
    return dg.materialize(
        [asset_fn], resources={"storage": storage, "io_manager": LocalStorageIOManager(storage=storage)}, raise_on_error=False
    )


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

    @dg.asset
    def raster(storage: StorageResource):
        path = storage.path("x.tif")
        path.write_bytes(b"not really a tiff")
        return path

    result = _run(raster, root)
    assert not result.success and "storage.staging()" in _failure(result)
    assert sorted(p.name for p in root.iterdir()) == ["sibling.parquet", "x.tif"]


def test_a_staged_output_is_moved_into_place_and_staging_emptied(tmp_path: Path):
    import dagster as dg

    from pipelines.resources import StorageResource

    @dg.asset
    def raster(storage: StorageResource):
        with storage.staging() as stage:
            staged = stage.output("raster.tif")
            staged.path.write_bytes(b"tiff bytes")
            (stage.folder / "scratch.bin").write_bytes(b"scratch")  # scratch beside the output goes too
            yield dg.Output(staged)

    root = tmp_path / "data"
    assert _run(raster, root).success
    assert (root / "raster.tif").read_bytes() == b"tiff bytes"
    assert list((root / ".staging").iterdir()) == []


def test_a_staged_output_from_elsewhere_is_refused(tmp_path: Path):
    import dagster as dg

    from models.storage import StagedOutput

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "cube.tif").write_bytes(b"x")

    @dg.asset
    def raster():
        return StagedOutput(outside / "cube.tif", outside)

    result = _run(raster, tmp_path / "data")
    assert not result.success and "not inside a staging folder" in _failure(result)
    assert (outside / "cube.tif").exists()


def test_staging_is_removed_on_success_and_on_error(tmp_path: Path):
    from models.storage import staging

    with staging(tmp_path) as stage:
        (stage.folder / "scratch.zarr").mkdir()
    with pytest.raises(RuntimeError), staging(tmp_path) as stage:
        (stage.folder / "half.tif").write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="plain name"), staging(tmp_path) as stage:
        stage.output("../escape.tif")
