"""A regular grid over the study region: its cells, their chips and embeddings, and GeoTIFF output.

Maps beyond the trial (the CATE map, the wealth map) read each cell's chip sequence exactly as a
trial unit's is read, so the encoder sees the same kind of input everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import xarray as xr
from affine import Affine
from pyproj import Transformer

from models.ingest.chips import CHUNK_PX, by_square, open_cube, write_sequence_cube
from models.io.storage import atomic_path


def grid_cells(scene: pd.Series, step_px: int) -> tuple[pd.DataFrame, Affine, tuple[int, int]]:
    """Cell centres every ``step_px`` pixels over a catalog scene, as lon/lat, plus the grid's transform."""
    rows, cols = scene["height"] // step_px, scene["width"] // step_px
    res_x, res_y = scene["res_x"] * step_px, scene["res_y"] * step_px
    transform = Affine(res_x, 0, scene["left"], 0, -res_y, scene["top"])
    r, c = np.mgrid[0:rows, 0:cols]
    x, y = rasterio.transform.xy(transform, r.ravel(), c.ravel())  # cell centres
    lon, lat = Transformer.from_crs(scene["crs"], "EPSG:4326", always_xy=True).transform(x, y)
    cells = pd.DataFrame(
        {
            "unit_id": [f"cell_{i}_{j}" for i, j in zip(r.ravel(), c.ravel(), strict=True)],
            "lon": lon,
            "lat": lat,
            "row": r.ravel(),
            "col": c.ravel(),
        }
    )
    return cells, transform, (rows, cols)


def grid_extent(transform: Affine, shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """(left, right, bottom, top) of a north-up grid, as matplotlib's ``imshow`` wants it."""
    return transform.c, transform.c + shape[1] * transform.a, transform.f + shape[0] * transform.e, transform.f


def to_grid(values: np.ndarray, cells: pd.DataFrame, shape: tuple[int, int]) -> np.ndarray:
    """Scatter per-cell values onto a (rows, cols) float32 grid; cells without a value are NaN."""
    grid = np.full(shape, np.nan, dtype=np.float32)
    grid[cells["row"].to_numpy(), cells["col"].to_numpy()] = values
    return grid


def write_grid_geotiff(
    path: str | Path, layers: dict[str, np.ndarray], transform: Affine, crs: str, tags: dict[str, str] | None = None
) -> Path:
    """A float32 multi-band GeoTIFF (one band per layer, described; dataset ``tags``), nodata NaN,
    written atomically."""
    stack = np.stack(list(layers.values())).astype(np.float32)
    profile = {
        "driver": "GTiff",
        "count": len(layers),
        "height": stack.shape[1],
        "width": stack.shape[2],
        "dtype": "float32",
        "crs": crs,
        "transform": transform,
        "nodata": np.nan,
        "compress": "deflate",
    }
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(stack)
        dst.descriptions = tuple(layers)
        dst.update_tags(**(tags or {}))
    return Path(path)


def place_cube(places: pd.DataFrame, catalog: pd.DataFrame, chip_size: int, workdir: Path, require_data: bool = True) -> xr.Dataset | None:
    """Chip sequences of ``chip_size`` for places given as unit_id, lon, lat, as a cube under
    ``workdir`` (opened lazily). Places whose sequence is all nodata are left out; without
    ``require_data``, None when that is every place."""
    cube_path = Path(workdir) / "places.zarr"
    if write_sequence_cube(places, catalog, cube_path, size=chip_size, require_data=require_data).n_units == 0:
        return None
    return open_cube(cube_path)


def place_sequences(places: pd.DataFrame, catalog: pd.DataFrame, fitted, workdir: Path, require_data: bool = True):
    """``place_cube``'s sequences at the encoders' chip size, in memory as they read them (None when
    no place has data): for a bounded set of places, a grid square or a survey pool."""
    cube = place_cube(places, catalog, fitted.chip_size, workdir, require_data)
    return None if cube is None else fitted.sequences(cube)


def embed_places(
    places: pd.DataFrame, catalog: pd.DataFrame, fitted, workdir: Path, device, require_data: bool = True
) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Embeddings, one array per fold model, of ``place_sequences``; the returned frame lists the
    kept places, in order (none, without ``require_data``, when no place has data)."""
    data = place_sequences(places, catalog, fitted, workdir, require_data)
    if data is None:
        return places.iloc[:0], [np.empty((0, fitted.spec.dim), np.float32) for _ in fitted.models]
    kept = places.set_index("unit_id").loc[list(data.unit_ids)].reset_index()
    return kept, fitted.transform_each(data, device)


@dataclass
class GridMap:
    """Named float32 layers on one north-up grid: what the map assets write and read."""

    layers: dict[str, np.ndarray]
    transform: Affine
    crs: str

    @property
    def shape(self) -> tuple[int, int]:
        return next(iter(self.layers.values())).shape

    @property
    def extent(self) -> tuple[float, float, float, float]:
        return grid_extent(self.transform, self.shape)

    def write(self, path: str | Path, tags: dict[str, str] | None = None) -> Path:
        return write_grid_geotiff(path, self.layers, self.transform, self.crs, tags)

    @classmethod
    def read(cls, path: str | Path) -> GridMap:
        with rasterio.open(path) as src:
            return cls(dict(zip(src.descriptions, src.read(), strict=True)), src.transform, src.crs.to_string())


BLOCK_CELLS = 50_000  # cells a map predicts at a time: a national grid's embeddings never all in memory


@dataclass
class GridEmbedding:
    """The cells of a grid that have imagery, with their embeddings by every fold model."""

    cells: pd.DataFrame  # unit_id, lon, lat, row, col of the cells kept
    per_model: Sequence[np.ndarray | xr.DataArray]  # (cell, feature) per fold model; lazy when read from a cube
    transform: Affine
    shape: tuple[int, int]
    crs: str

    def to_map(self, values: dict[str, np.ndarray]) -> GridMap:
        """Per-cell values (in ``cells`` order) as a GridMap; cells without imagery are NaN."""
        return GridMap({name: to_grid(v, self.cells, self.shape) for name, v in values.items()}, self.transform, self.crs)

    def to_dataset(self) -> xr.Dataset:
        """As a cube (dims model, cell, feature; the grid in the attributes): what the
        ``grid_embeddings`` asset stores as Zarr."""
        cells = self.cells
        return xr.Dataset(
            {"embedding": (("model", "cell", "feature"), np.stack(self.per_model).astype(np.float32))},
            coords={
                "cell": cells["unit_id"].astype(str).to_numpy(dtype=object),
                **{c: ("cell", cells[c].to_numpy()) for c in ("lon", "lat", "row", "col")},
            },
            attrs={"transform": [float(v) for v in list(self.transform)[:6]], "shape": [int(v) for v in self.shape], "crs": str(self.crs)},
        )

    def blocks(self, size: int = BLOCK_CELLS, models: Sequence[int] | None = None) -> Iterator[tuple[slice, list[np.ndarray]]]:
        """Consecutive cells, ``size`` at a time, with the embeddings of them by each fold model (or
        by ``models``), read from the cube only then: memory bounded by the block, not the grid."""
        chosen = [self.per_model[k] for k in (range(len(self.per_model)) if models is None else models)]
        for start in range(0, len(self.cells), size):
            rows = slice(start, start + size)
            yield rows, [np.asarray(e[rows]) for e in chosen]

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> GridEmbedding:
        """The grid of a cube; the embeddings stay in the cube until ``blocks`` reads them."""
        cells = pd.DataFrame({"unit_id": [str(c) for c in ds["cell"].values], **{c: ds[c].values for c in ("lon", "lat", "row", "col")}})
        per_model = [ds["embedding"][k] for k in range(ds.sizes["model"])]
        return cls(cells, per_model, Affine(*ds.attrs["transform"]), tuple(ds.attrs["shape"]), ds.attrs["crs"])


def grid_squares(scene: pd.Series, step_px: int, chunk_px: int) -> dict[str, pd.DataFrame]:
    """The grid's cells (``grid_cells``) grouped by ``chunk_px`` square of the scene, keyed
    ``r<row>_c<col>``: independent embedding jobs for separate workers."""
    cells, _, _ = grid_cells(scene, step_px)
    per = max(chunk_px // step_px, 1)
    return by_square(cells, cells["row"].to_numpy() // per, cells["col"].to_numpy() // per)


def embed_square(cells: pd.DataFrame, catalog: pd.DataFrame, fitted, workdir: Path, device) -> pd.DataFrame:
    """One square's cells with imagery and their embeddings: one row per cell and fold model
    (columns unit_id, lon, lat, row, col, model, e000...); no rows when no cell has data."""
    kept, per_model = embed_places(cells, catalog, fitted, workdir, device, require_data=False)
    frames = []
    for k, z in enumerate(per_model):
        features = pd.DataFrame(z, columns=[f"e{j:03d}" for j in range(z.shape[1])])
        frames.append(pd.concat([kept.reset_index(drop=True), features], axis=1).assign(model=k))
    return pd.concat(frames, ignore_index=True)


def assemble_grid(squares: list[pd.DataFrame], scene: pd.Series, step_px: int) -> GridEmbedding:
    """The squares' embeddings as one ``GridEmbedding`` over the scene's grid."""
    table = pd.concat(squares, ignore_index=True).sort_values(["model", "row", "col"], kind="stable")
    if table.empty:
        raise ValueError("no grid cell has imagery: the grid does not overlap the imagery's data")
    _, transform, shape = grid_cells(scene, step_px)
    features = [c for c in table.columns if c.startswith("e") and c[1:].isdigit()]
    models = sorted(table["model"].unique())
    cells = table[table["model"] == models[0]][["unit_id", "lon", "lat", "row", "col"]].reset_index(drop=True)
    per_model = [table.loc[table["model"] == k, features].to_numpy(np.float32) for k in models]
    return GridEmbedding(cells, per_model, transform, shape, scene["crs"])


def embed_grid(catalog: pd.DataFrame, fitted, step_px: int, workdir: Path, device, chunk_px: int = CHUNK_PX) -> GridEmbedding:
    """A grid every ``step_px`` pixels over the first scene, each cell embedded like a trial unit,
    square by square (``grid_squares``; the ``grid_embeddings`` asset runs the squares as separate
    steps)."""
    scene = catalog.iloc[0]
    squares = [embed_square(c, catalog, fitted, Path(workdir) / key, device) for key, c in grid_squares(scene, step_px, chunk_px).items()]
    return assemble_grid(squares, scene, step_px)
