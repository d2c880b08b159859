"""Land cover in ESA WorldCover classes: the code list and palette used everywhere in eotrials, a
per-pixel classifier trained on labels from the simulator, a categorical raster or a labelled vector
file, classified GeoTIFFs, and each unit's class fractions."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

WORLDCOVER: dict[int, str] = {
    10: "tree cover",
    20: "shrubland",
    30: "grassland",
    40: "cropland",
    50: "built-up",
    60: "bare / sparse vegetation",
    70: "snow and ice",
    80: "permanent water bodies",
    90: "herbaceous wetland",
    95: "mangroves",
    100: "moss and lichen",
}

# Official WorldCover v200 palette (RGB).
PALETTE: dict[int, tuple[int, int, int]] = {
    10: (0, 100, 0),
    20: (255, 187, 34),
    30: (255, 255, 76),
    40: (240, 150, 255),
    50: (250, 0, 0),
    60: (180, 180, 180),
    70: (240, 240, 240),
    80: (0, 100, 200),
    90: (0, 150, 160),
    95: (0, 207, 117),
    100: (250, 230, 160),
}

NODATA_CLASS = 0


def colormap() -> dict[int, tuple[int, int, int, int]]:
    """GDAL colour table (RGBA) for a uint8 WorldCover raster."""
    return {code: (*rgb, 255) for code, rgb in PALETTE.items()}


def class_fractions(labels: np.ndarray, classes: list[int], valid: np.ndarray | None = None) -> np.ndarray:
    """Fraction of valid pixels in each class over the last two axes: (..., H, W) -> (..., K)."""
    valid = labels != NODATA_CLASS if valid is None else valid
    n = valid.sum(axis=(-2, -1)).astype(np.float64)
    counts = np.stack([((labels == c) & valid).sum(axis=(-2, -1)) for c in classes], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n[..., None] > 0, counts / n[..., None], np.nan)


INDICES: tuple[tuple[str, str, str], ...] = (("ndvi", "nir", "red"), ("ndwi", "green", "nir"), ("ndbi", "swir1", "nir"))


def pixel_features(reflectance: np.ndarray, bands: list[str]) -> np.ndarray:
    """(C, H, W) reflectance in physical units -> (C + 3, H, W) float32: the bands, NDVI, NDWI and NDBI.

    The indices need bands named red, green, nir and swir1 (a normalized difference is 0 where both
    bands are 0). A missing band (NaN) is NaN in its own column and in every index that uses it;
    the classifier picks the model for the bands a pixel has. Written into one preallocated array: on a full scene the features cost about as
    much as reading it.
    """
    missing = {"red", "green", "nir", "swir1"} - set(bands)
    if missing:
        raise ValueError(f"land-cover features need bands {sorted(missing)}; the imagery has {bands} (set StudySource.band_names)")
    c = len(bands)
    out = np.empty((c + len(INDICES), *reflectance.shape[1:]), dtype=np.float32)
    out[:c] = reflectance
    band = {name: out[i] for i, name in enumerate(bands)}
    total = np.empty_like(out[0])
    for k, (_, a, b) in enumerate(INDICES):
        np.add(band[a], band[b], out=total)
        np.subtract(band[a], band[b], out=out[c + k])
        flat = np.abs(total) <= 1e-6
        np.divide(out[c + k], total, out=out[c + k], where=~flat)
        out[c + k][flat] = 0.0
    return out


class LabelError(ValueError):
    """Land-cover labels that cannot train a classifier (the message names the problem and the fix)."""


def scene_transform(scene: pd.Series):
    """The affine transform of a catalog scene's pixel grid."""
    from affine import Affine

    return Affine(scene["res_x"], 0, scene["left"], 0, -scene["res_y"], scene["top"])


def _crosswalked(values: np.ndarray, crosswalk: dict | None, what: str) -> np.ndarray:
    """User class values -> WorldCover codes (0 where unlabelled); unknown values are an error."""
    values = np.asarray(values)
    if crosswalk is None:
        mapping = {v: v for v in np.unique(values)}
    else:
        mapping = {k: int(v) for k, v in crosswalk.items()}
        mapping.update({str(k): int(v) for k, v in crosswalk.items()})
    present = [v for v in pd.unique(values.ravel()) if not (isinstance(v, float) and np.isnan(v)) and v != NODATA_CLASS]
    unknown = sorted({str(v) for v in present if v not in mapping and str(v) not in mapping})
    if unknown:
        raise LabelError(
            f"{what}: class values {unknown[:10]} are not in the crosswalk: add them to LandCoverConfig.crosswalk (user value -> WorldCover code)"
        )
    codes = {v: int(mapping.get(v, mapping.get(str(v)))) for v in present}
    bad = sorted({c for c in codes.values() if c not in WORLDCOVER})
    if bad:
        raise LabelError(f"{what}: codes {bad} are not WorldCover codes {sorted(WORLDCOVER)}: map them with LandCoverConfig.crosswalk")
    out = np.zeros(values.shape, dtype=np.uint8)
    for v, c in codes.items():
        out[values == v] = c
    return out


def raster_labels(path: str, scene: pd.Series, crosswalk: dict | None = None) -> np.ndarray:
    """A categorical raster (any CRS) on the scene's grid by nearest neighbour: (H, W) WorldCover codes, 0 unlabelled."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    with rasterio.open(path) as src:
        if src.crs is None:
            raise LabelError(f"label raster {path} has no CRS: assign one before using it as land-cover labels")
        out = np.zeros((int(scene["height"]), int(scene["width"])), dtype=src.dtypes[0])
        dst = scene_transform(scene)
        reproject(rasterio.band(src, 1), out, dst_transform=dst, dst_crs=scene["crs"], resampling=Resampling.nearest, dst_nodata=0)
        where = f"label raster {path} (CRS {_crs_name(src.crs)}, bounds {_bounds(src.bounds)})"
    return _on_scene(_crosswalked(out, crosswalk, f"label raster {path}"), where, scene)


def vector_labels(path: str, scene: pd.Series, class_column: str, crosswalk: dict | None = None) -> np.ndarray:
    """Labelled points or polygons (GeoPackage, Shapefile, GeoParquet; any CRS) burnt onto the scene's grid."""
    import geopandas as gpd
    from rasterio.features import rasterize

    frame = gpd.read_parquet(path) if str(path).endswith((".parquet", ".geoparquet")) else gpd.read_file(path)
    if class_column not in frame:
        raise LabelError(f"label file {path} has no column {class_column!r} (LandCoverConfig.class_column); it has {list(frame.columns)}")
    if frame.crs is None:
        raise LabelError(f"label file {path} has no CRS: set it (e.g. GeoDataFrame.set_crs) before using it as land-cover labels")
    where = f"label file {path} (CRS {_crs_name(frame.crs)}, bounds {_bounds(frame.total_bounds)})"
    frame = frame.to_crs(scene["crs"])
    codes = _crosswalked(frame[class_column].to_numpy(), crosswalk, f"label file {path}")
    transform = scene_transform(scene)
    shapes = [(geom, int(code)) for geom, code in zip(frame.geometry, codes, strict=True) if code != NODATA_CLASS and geom is not None]
    shape = (int(scene["height"]), int(scene["width"]))
    burnt = rasterize(shapes, out_shape=shape, transform=transform, fill=0, dtype="uint8") if shapes else np.zeros(shape, dtype=np.uint8)
    return _on_scene(burnt, where, scene)


def _crs_name(crs) -> str:
    """EPSG:<code> where the CRS has one, else its name (never a page of WKT)."""
    from pyproj import CRS

    crs = CRS.from_user_input(crs)
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.name


def _bounds(bounds) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in bounds) + ")"


def _on_scene(labels: np.ndarray, where: str, scene: pd.Series) -> np.ndarray:
    """The labels, unless none falls on the scene's grid: then say where both are."""
    if not (labels != NODATA_CLASS).any():
        scene_bounds = (
            scene["left"],
            scene["top"] - scene["res_y"] * scene["height"],
            scene["left"] + scene["res_x"] * scene["width"],
            scene["top"],
        )
        raise LabelError(
            f"no labelled pixel falls on the scenes: {where} and the scenes (CRS {_crs_name(scene['crs'])}, bounds {_bounds(scene_bounds)}) "
            "do not overlap; check the label file's extent and CRS"
        )
    return labels


def write_land_cover(path, bands_path, windows: Iterable[tuple[int, np.ndarray, np.ndarray]], scene: pd.Series) -> None:
    """Two GeoTIFFs on the scene's grid from (first row, classes, bands used) windows, written as they
    come so the scene is never held whole: uint8 WorldCover codes (nodata 0, the WorldCover colour
    table) at ``path``, and at ``bands_path`` a uint16 bit mask of the bands each pixel was classified
    from (bit i: band i, named in the tags; 0 unclassified). Both with overviews."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    from models.io.storage import atomic_path

    height, width = int(scene["height"]), int(scene["width"])
    profile = {
        "driver": "GTiff", "count": 1, "height": height, "width": width, "nodata": NODATA_CLASS,
        "crs": scene["crs"], "transform": scene_transform(scene),
        "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate",
    }  # fmt: skip
    with atomic_path(path) as tmp, atomic_path(bands_path) as tmp_bands:
        with rasterio.open(tmp, "w", dtype="uint8", **profile) as dst, rasterio.open(tmp_bands, "w", dtype="uint16", **profile) as used:
            for row0, classes, bands in windows:
                dst.write(classes, 1, window=Window(0, row0, width, classes.shape[0]))
                used.write(bands, 1, window=Window(0, row0, width, bands.shape[0]))
            dst.write_colormap(1, colormap())
            dst.update_tags(1, classes="; ".join(f"{c}={n}" for c, n in WORLDCOVER.items()))
            used.update_tags(1, bits="; ".join(f"{1 << i}={name}" for i, name in enumerate(scene["band_names"])))
        for done in (tmp, tmp_bands):
            with rasterio.open(done, "r+") as dst:
                factors = [f for f in (2, 4, 8, 16) if min(height, width) // f >= 32]
                if factors:
                    dst.build_overviews(factors, Resampling.mode)


@contextlib.contextmanager
def scene_reader(scene: pd.Series) -> Iterator[Callable[[int, int], np.ndarray]]:
    """``features_at(row0, height)`` for a catalog scene whose files stay open for the block."""
    from models.ingest.chips import scenes_from_catalog

    bands, width = list(scene["band_names"]), int(scene["width"])
    with scenes_from_catalog(scene.to_frame().T)[0] as reader:
        yield lambda row0, height: pixel_features(reader.read(row0, 0, height, width), bands)


def scene_features(scene: pd.Series) -> np.ndarray:
    """Features of a whole catalog scene (for small scenes and tests; large ones go window by window)."""
    with scene_reader(scene) as features_at:
        return features_at(0, int(scene["height"]))


def map_files(folder: Path) -> tuple[list[str], list[str]]:
    """The classified GeoTIFFs of a ``land_cover_maps`` folder and their dates, in date order."""
    paths = sorted(Path(folder).glob("land_cover_*.tif"))
    return [str(p) for p in paths], [p.stem.removeprefix("land_cover_") for p in paths]


def _map_chips(paths: list[str], units: pd.DataFrame, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(unit indices, (n, T, size, size) uint8 class chips) of classified maps, tile by tile."""
    import rasterio

    from models.ingest.chips import Scene, iter_chip_tiles

    crs = []
    for path in paths:
        with rasterio.open(path) as src:
            crs.append(src.crs.to_string())
    scenes = [Scene([p], c, [float(NODATA_CLASS)], [1.0], [0.0]) for p, c in zip(paths, crs, strict=True)]
    with contextlib.ExitStack() as stack:
        for scene in scenes:
            stack.enter_context(scene)
        for idx, chips, _ in iter_chip_tiles(units["lon"].to_numpy(), units["lat"].to_numpy(), scenes, size):
            yield idx, np.nan_to_num(chips[:, :, 0], nan=NODATA_CLASS).astype(np.uint8)


def unit_fractions(paths: list[str], dates: list[str], units: pd.DataFrame, chip_size: int) -> pd.DataFrame:
    """Per unit and date the share of each class among the classified pixels of the unit's chip, and
    (``date == "change"``) the last minus the first date. Columns: unit_id, date, frac_<code>..."""
    codes = sorted(WORLDCOVER)
    parts = []
    for idx, labels in _map_chips(paths, units, chip_size):
        fractions = class_fractions(labels, codes)  # (n, T, K)
        for t, date in enumerate(dates):
            frame = pd.DataFrame(fractions[:, t], columns=[f"frac_{c}" for c in codes])
            parts.append(frame.assign(unit_id=units["unit_id"].iloc[idx].to_numpy(), date=date))
    table = pd.concat(parts, ignore_index=True)
    wide = table.set_index(["unit_id", "date"])
    change = (wide.xs(dates[-1], level="date") - wide.xs(dates[0], level="date")).reset_index().assign(date="change")
    table = pd.concat([table, change], ignore_index=True)
    keep = [c for c in table.columns if not c.startswith("frac_") or table[c].abs().max() > 0]
    return table[["unit_id", "date", *[c for c in keep if c.startswith("frac_")]]]


def labels_for_scenes(
    kind: str,
    catalog: pd.DataFrame,
    truth_dir: str | None = None,
    path: str | None = None,
    class_column: str = "class",
    crosswalk: dict | None = None,
    label_scene: int = -1,
) -> dict[int, np.ndarray]:
    """Training labels on the scenes' grids: the simulator's true land cover for every date, or a
    user's raster / vector labels for the one scene they describe (``label_scene``, default the last)."""
    if kind == "simulator":
        if not truth_dir:
            raise LabelError(
                "LandCoverConfig.labels = 'simulator' needs the simulated demo: for your own study use 'raster' or 'vector' with label_path"
            )
        files = sorted(Path(truth_dir).glob("*.tif"))
        if len(files) != len(catalog):
            raise LabelError(f"{len(files)} true land-cover rasters for {len(catalog)} scenes in {truth_dir}")
        return {i: raster_labels(str(f), catalog.iloc[i]) for i, f in enumerate(files)}
    if not path:
        raise LabelError(f"LandCoverConfig.labels = {kind!r} needs LandCoverConfig.label_path")
    index = range(len(catalog))[label_scene]
    scene = catalog.iloc[index]
    if kind == "raster":
        return {index: raster_labels(path, scene, crosswalk)}
    if kind == "vector":
        return {index: vector_labels(path, scene, class_column, crosswalk)}
    raise LabelError(f"LandCoverConfig.labels must be 'simulator', 'raster' or 'vector', got {kind!r}")


def land_cover_chips(path: str, units: pd.DataFrame, size: int) -> list[np.ndarray]:
    """Each unit's ``size`` x ``size`` chip of a classified map (uint8 codes, 0 outside), in ``units`` order."""
    out: list[np.ndarray] = [np.zeros((size, size), dtype=np.uint8)] * len(units)
    for idx, labels in _map_chips([path], units, size):
        for i, chip in zip(idx, labels[:, 0], strict=True):
            out[i] = chip
    return out
