"""Carry a fitted CATE model beyond the trial: a regular grid, its predictions, and where they extrapolate."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from affine import Affine
from pyproj import Transformer
from sklearn.neighbors import NearestNeighbors

from models.storage import atomic_path


def grid_cells(scene: pd.Series, step_px: int) -> tuple[pd.DataFrame, Affine, tuple[int, int]]:
    """Cell centres every ``step_px`` pixels over a catalog scene, as lon/lat, plus the grid's transform."""
    rows, cols = scene["height"] // step_px, scene["width"] // step_px
    res_x, res_y = scene["res_x"] * step_px, scene["res_y"] * step_px
    transform = Affine(res_x, 0, scene["left"], 0, -res_y, scene["top"])
    r, c = np.mgrid[0:rows, 0:cols]
    x, y = rasterio.transform.xy(transform, r.ravel(), c.ravel())  # cell centres
    lon, lat = Transformer.from_crs(scene["crs"], "EPSG:4326", always_xy=True).transform(x, y)
    cells = pd.DataFrame({"unit_id": [f"cell_{i}_{j}" for i, j in zip(r.ravel(), c.ravel())], "lon": lon, "lat": lat, "row": r.ravel(), "col": c.ravel()})
    return cells, transform, (rows, cols)


def grid_extent(transform: Affine, shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """(left, right, bottom, top) of a north-up grid, as matplotlib's ``imshow`` wants it."""
    return transform.c, transform.c + shape[1] * transform.a, transform.f + shape[0] * transform.e, transform.f


def extrapolation_ratio(trial: np.ndarray, new: np.ndarray, quantile: float = 0.95) -> np.ndarray:
    """Distance from each new point to its nearest trial unit (standardized feature space), over the
    ``quantile`` of nearest-neighbour distances within the trial. Above 1: outside the trial's support."""
    mean, sd = trial.mean(axis=0), trial.std(axis=0) + 1e-9
    trial_z, new_z = (trial - mean) / sd, (new - mean) / sd
    nn = NearestNeighbors(n_neighbors=2).fit(trial_z)
    within = nn.kneighbors(trial_z)[0][:, 1]
    return nn.kneighbors(new_z, n_neighbors=1)[0][:, 0] / np.quantile(within, quantile)


def write_grid_geotiff(path: str | Path, layers: dict[str, np.ndarray], transform: Affine, crs: str) -> Path:
    """A float32 multi-band GeoTIFF (one band per layer, described), nodata NaN, written atomically."""
    stack = np.stack(list(layers.values())).astype(np.float32)
    profile = {"driver": "GTiff", "count": len(layers), "height": stack.shape[1], "width": stack.shape[2], "dtype": "float32", "crs": crs, "transform": transform, "nodata": np.nan, "compress": "deflate"}
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(stack)
            dst.descriptions = tuple(layers)
    return Path(path)


def embed_places(places: pd.DataFrame, catalog: pd.DataFrame, fitted, chip_size: int, workdir: Path, device) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Chip sequences and embeddings (one array per fold model) for places given as unit_id, lon, lat.

    Places whose sequence is all nodata are left out; the returned frame lists the kept ones, in order.
    """
    from models.chips import open_cube, write_sequence_cube
    from models.training import load_sequences

    write_sequence_cube(places, catalog, Path(workdir) / "places.zarr", size=chip_size)
    data = load_sequences(open_cube(Path(workdir) / "places.zarr"), frames=fitted.frames, stats=(fitted.band_mean, fitted.band_std))
    kept = places.set_index("unit_id").loc[list(data.unit_ids)].reset_index()
    return kept, fitted.transform_each(data, device)


def to_grid(values: np.ndarray, cells: pd.DataFrame, shape: tuple[int, int]) -> np.ndarray:
    """Scatter per-cell values onto a (rows, cols) float32 grid; cells without a value are NaN."""
    grid = np.full(shape, np.nan, dtype=np.float32)
    grid[cells["row"].to_numpy(), cells["col"].to_numpy()] = values
    return grid
