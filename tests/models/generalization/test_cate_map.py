"""The CATE map predicts block by block from the grid cube, as it would on a national grid."""

import numpy as np
import xarray as xr

from models.generalization.prediction import TrialSupport, cate_map
from models.representation.grid import GridEmbedding, assemble_grid, grid_squares
from tests.models.representation.test_grid import SCENE, _square_embeddings


class LinearEffect:
    """A fitted CATE model's interface (econml's ``effect``) with a known answer."""

    def effect(self, X: np.ndarray) -> np.ndarray:
        return 0.5 * X[:, 0] - 0.1 * X[:, 1]


def test_blocks_read_from_the_cube_give_the_whole_grid_map(tmp_path):
    grid = assemble_grid([_square_embeddings(c) for c in grid_squares(SCENE, 10, 40).values()], SCENE, 10)
    grid.to_dataset().to_zarr(tmp_path / "grid.zarr", mode="w", consolidated=False, zarr_format=3)
    lazy = GridEmbedding.from_dataset(xr.open_zarr(tmp_path / "grid.zarr", consolidated=False))
    assert all(isinstance(e, xr.DataArray) for e in lazy.per_model)  # nothing read yet
    blocks = list(lazy.blocks(size=7, models=[1]))
    assert len(blocks) == -(-len(grid.cells) // 7) and all(len(e) == 1 for _, e in blocks)
    np.testing.assert_array_equal(np.concatenate([e[0] for _, e in blocks]), grid.per_model[1])

    trial = np.random.default_rng(0).normal(5, 3, size=(200, 2))
    whole = cate_map(LinearEffect(), trial, grid, block_cells=len(grid.cells))
    blockwise = cate_map(LinearEffect(), trial, lazy, block_cells=7)
    for name, layer in whole.layers.items():
        np.testing.assert_array_equal(blockwise.layers[name], layer, err_msg=name)
    cells = grid.cells
    expected = np.mean([LinearEffect().effect(e) for e in grid.per_model], axis=0)
    np.testing.assert_allclose(whole.layers["cate"][cells["row"], cells["col"]], expected)


def test_trial_support_ratio_is_small_inside_the_trial_and_large_far_outside():
    trial = np.random.default_rng(1).standard_normal((500, 3))
    support = TrialSupport(trial)
    assert (support.ratio(trial) == 0).all()  # every trial unit is its own nearest neighbour
    inside, far = support.ratio(np.zeros((1, 3))), support.ratio(np.full((1, 3), 10.0))
    assert inside[0] < 1 < far[0]
