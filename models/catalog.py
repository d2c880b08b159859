"""Imagery catalog: one row per scene (date), built from a folder of GeoTIFFs or a catalog CSV.

A scene is one multi-band file or several single-band files of the same date (as Landsat ships
them). Every file is opened once for its header, so a corrupt raster fails here, by name.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from rasterio.errors import RasterioError

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt")
_DATE = re.compile(r"(?<!\d)((?:19|20)\d{2})(?:-?(\d{2})-?(\d{2}))?(?!\d)")
RES_TOLERANCE = 0.01


class CatalogError(ValueError):
    """The imagery cannot be catalogued consistently (the message names the file)."""


def date_from_name(name: str) -> pd.Timestamp:
    """Parse YYYY-MM-DD, YYYYMMDD or YYYY from a file name (a bare year means 1 July)."""
    match = _DATE.search(name)
    if not match:
        raise CatalogError(f"no date (YYYY-MM-DD, YYYYMMDD or YYYY) in file name {name!r}")
    year, month, day = match.groups()
    return pd.Timestamp(int(year), int(month or 7), int(day or 1))


def _read_catalog_csv(source: Path) -> pd.DataFrame:
    table = pd.read_csv(source)
    missing = {"date", "path"} - set(table.columns)
    if missing:
        raise CatalogError(f"catalog CSV {source} lacks column(s) {sorted(missing)}")
    paths = [p if Path(p).is_absolute() else str(source.parent / p) for p in table["path"]]
    return pd.DataFrame({"date": table["date"], "path": paths})


def imagery_files(source: str | Path) -> list[Path]:
    """Every file an imagery source consists of: a folder's rasters, or a catalog CSV and the files it
    lists. What a watcher must look at to notice new or changed imagery ([] if there is no source)."""
    source = Path(source)
    if source.is_file():
        return [source, *(Path(p) for p in _read_catalog_csv(source)["path"])]
    return sorted(p for p in source.iterdir() if p.suffix.lower() in RASTER_SUFFIXES) if source.is_dir() else []


def list_scene_files(source: str | Path) -> pd.DataFrame:
    """(date, path) rows from a folder of rasters or from a CSV with columns date, path."""
    source = Path(source)
    if source.is_file():
        table = _read_catalog_csv(source)
        return table.assign(date=pd.to_datetime(table["date"]))
    if not source.is_dir():
        raise CatalogError(f"imagery source {source} is neither a folder nor a catalog CSV")
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in RASTER_SUFFIXES)
    if not files:
        raise CatalogError(f"no GeoTIFF/VRT files in {source}")
    return pd.DataFrame({"date": [date_from_name(p.name) for p in files], "path": [str(p) for p in files]})


def _header(path: str) -> dict:
    try:
        with rasterio.open(path) as ds:
            if ds.crs is None:
                raise CatalogError(f"raster {path} has no CRS")
            scales = ds.scales or (1.0,) * ds.count
            offsets = ds.offsets or (0.0,) * ds.count
            return {
                "crs": ds.crs.to_string(),
                "transform": tuple(ds.transform)[:6],
                "width": ds.width,
                "height": ds.height,
                "count": ds.count,
                "dtypes": list(ds.dtypes),
                "nodata": [np.nan if v is None else float(v) for v in ds.nodatavals],
                "scales": [float(s) for s in scales],
                "offsets": [float(o) for o in offsets],
                "descriptions": [d or "" for d in ds.descriptions],
                "bounds": tuple(ds.bounds),
                "res": ds.res,
            }
    except RasterioError as err:
        raise CatalogError(f"cannot read raster {path}: {err}") from err


def _scene_row(date: pd.Timestamp, paths: list[str], band_names: list[str] | None) -> dict:
    headers = [_header(p) for p in paths]
    first = headers[0]
    for path, h in zip(paths[1:], headers[1:], strict=True):
        if (h["crs"], h["transform"], h["width"], h["height"]) != (first["crs"], first["transform"], first["width"], first["height"]):
            raise CatalogError(f"band file {path} is not on the same grid as {paths[0]} (date {date.date()})")
    names = [d for h in headers for d in h["descriptions"]]
    count = len(names)
    if band_names is not None:
        if len(band_names) != count:
            raise CatalogError(f"scene {date.date()} ({paths[0]}) has {count} bands, {len(band_names)} band names given")
        names = list(band_names)
    elif not all(names) or len(set(names)) != count:
        names = [f"b{i + 1}" for i in range(count)]
    return {
        "scene_id": f"scene_{date:%Y-%m-%d}",
        "date": date,
        "paths": paths,
        "crs": first["crs"],
        "left": first["bounds"][0],
        "bottom": first["bounds"][1],
        "right": first["bounds"][2],
        "top": first["bounds"][3],
        "res_x": first["res"][0],
        "res_y": first["res"][1],
        "width": first["width"],
        "height": first["height"],
        "band_count": count,
        "band_names": names,
        "dtypes": [d for h in headers for d in h["dtypes"]],
        "nodata": [v for h in headers for v in h["nodata"]],
        "scales": [v for h in headers for v in h["scales"]],
        "offsets": [v for h in headers for v in h["offsets"]],
    }


def build_catalog(source: str | Path, band_names: list[str] | None = None) -> pd.DataFrame:
    """Catalog every scene under ``source``; fail on inconsistent band counts or resolutions.

    Scenes may differ in CRS (unit points are reprojected per scene) but not in band count or pixel
    size, which would make chips from different dates cover different ground.
    """
    files = list_scene_files(source)
    rows = [_scene_row(date, sorted(group["path"]), band_names) for date, group in files.groupby("date", sort=True)]
    catalog = pd.DataFrame(rows)
    ref = catalog.iloc[0]
    for _, scene in catalog.iterrows():
        if scene["band_count"] != ref["band_count"]:
            raise CatalogError(f"scene {scene['paths'][0]} has {scene['band_count']} bands, {ref['paths'][0]} has {ref['band_count']}")
        if list(scene["band_names"]) != list(ref["band_names"]):
            raise CatalogError(f"scene {scene['paths'][0]} band names {scene['band_names']} differ from {ref['band_names']}")
        for axis in ("res_x", "res_y"):
            if abs(scene[axis] - ref[axis]) > RES_TOLERANCE * ref[axis]:
                raise CatalogError(f"scene {scene['paths'][0]} pixel size {scene[axis]} differs from {ref[axis]} in {ref['paths'][0]}")
    return catalog.reset_index(drop=True)
