from pathlib import Path

import pytest

from models.storage import atomic_path


def test_atomic_file_write_keeps_previous_on_error(tmp_path: Path):
    target = tmp_path / "table.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
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
