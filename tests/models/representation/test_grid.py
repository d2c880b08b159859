"""The map grid: cells grouped in squares, embedded square by square, stored and read back as a cube."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from affine import Affine

from models.representation.grid import GridEmbedding, assemble_grid, grid_cells, grid_squares

SCENE = pd.Series({"height": 100, "width": 130, "res_x": 30.0, "res_y": 30.0, "left": 500_000.0, "top": 60_000.0, "crs": "EPSG:32636"})


def _square_embeddings(cells: pd.DataFrame, models: int = 2) -> pd.DataFrame:
    """What ``embed_square`` returns, with embeddings that encode each cell's row and col."""
    frames = []
    for k in range(models):
        z = np.column_stack([cells["row"] + 100 * k, cells["col"]]).astype(np.float32)
        frames.append(pd.concat([cells, pd.DataFrame(z, columns=["e000", "e001"])], axis=1).assign(model=k))
    return pd.concat(frames, ignore_index=True)


def test_squares_cover_every_cell_once_and_reassemble_in_grid_order():
    cells, transform, shape = grid_cells(SCENE, 10)
    squares = grid_squares(SCENE, step_px=10, chunk_px=40)
    assert shape == (10, 13) and len(squares) == 3 * 4  # 10 x 13 cells in squares of 4 x 4 cells
    assert sorted(pd.concat(squares.values())["unit_id"]) == sorted(cells["unit_id"])
    parts = [_square_embeddings(c) for c in reversed(list(squares.values()))]  # in any order
    parts[0] = parts[0].iloc[:0]  # a square without imagery
    grid = assemble_grid(parts, SCENE, 10)
    assert grid.transform == transform and grid.shape == shape and len(grid.per_model) == 2
    for k, z in enumerate(grid.per_model):
        np.testing.assert_array_equal(z[:, 0], grid.cells["row"] + 100 * k)
        np.testing.assert_array_equal(z[:, 1], grid.cells["col"])
    with pytest.raises(ValueError, match="no grid cell has imagery"):
        assemble_grid([parts[0]], SCENE, 10)


def test_grid_embedding_round_trips_through_a_zarr_cube(tmp_path):
    grid = assemble_grid([_square_embeddings(c) for c in grid_squares(SCENE, 10, 40).values()], SCENE, 10)
    grid.to_dataset().to_zarr(tmp_path / "grid.zarr", mode="w", consolidated=False, zarr_format=3)
    back = GridEmbedding.from_dataset(xr.open_zarr(tmp_path / "grid.zarr", consolidated=False))
    assert back.transform == grid.transform and back.shape == grid.shape and back.crs == "EPSG:32636"
    assert isinstance(back.transform, Affine)
    pd.testing.assert_frame_equal(back.cells, grid.cells, check_dtype=False)
    for a, b in zip(back.per_model, grid.per_model, strict=True):
        np.testing.assert_array_equal(a, b)
    layer = back.to_map({"row": back.cells["row"].to_numpy(float)}).layers["row"]
    np.testing.assert_array_equal(layer[:, 0], np.arange(10))
