"""Imagery catalog: one row per scene (date), built from a folder of GeoTIFFs or a catalog CSV.

A scene is one multi-band file, several single-band files of the same date (as Landsat ships
them), or tiles of the same date (mosaicked into one VRT). Band order comes from the configured
band names or an explicit band-to-file mapping, never from sorting file names. Every file is
opened here and its first and last block of every band read, so a corrupt or truncated raster
fails here, by name.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

from models.ingest.mosaic import MosaicError, write_mosaic

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt")
_DATE = re.compile(r"(?<!\d)((?:19|20)\d{2})(?:-?(\d{2})-?(\d{2}))?(?!\d)")
RES_TOLERANCE = 0.01


class CatalogError(ValueError):
    """The imagery cannot be catalogued consistently (the message names the file)."""


def date_from_name(name: str) -> pd.Timestamp:
    """Parse YYYY-MM-DD, YYYYMMDD or YYYY from a file name (a bare year means 1 July)."""
    match = _DATE.search(name)
    if not match:
        raise CatalogError(
            f"no date (YYYY-MM-DD, YYYYMMDD or YYYY) in file name {name!r}: rename the file, or list the files with their dates in a catalog CSV (date, path)"
        )
    year, month, day = match.groups()
    return pd.Timestamp(int(year), int(month or 7), int(day or 1))


def _read_catalog_csv(source: Path) -> pd.DataFrame:
    table = pd.read_csv(source)
    missing = {"date", "path"} - set(table.columns)
    if missing:
        raise CatalogError(f"catalog CSV {source} lacks column(s) {sorted(missing)}: it needs a date and a path column")
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
        raise CatalogError(f"imagery source {source} is neither a folder nor a catalog CSV: point StudySource.imagery at one")
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in RASTER_SUFFIXES)
    if not files:
        raise CatalogError(f"no GeoTIFF/VRT files in {source}: point StudySource.imagery at the folder that holds the dated rasters")
    return pd.DataFrame({"date": [date_from_name(p.name) for p in files], "path": [str(p) for p in files]})


def _check_readable(ds, path: str) -> None:
    """Read the first and the last block of every band: a truncated download fails on the last."""
    for b in range(1, ds.count + 1):
        bh, bw = ds.block_shapes[b - 1]
        last = Window((math.ceil(ds.width / bw) - 1) * bw, (math.ceil(ds.height / bh) - 1) * bh, bw, bh)
        for window in (Window(0, 0, bw, bh), last):
            try:
                ds.read(b, window=window.intersection(Window(0, 0, ds.width, ds.height)))
            except RasterioError as err:
                raise CatalogError(
                    f"raster {path} cannot be read (band {b}: {err}); is the file complete? Download or export it again"
                ) from err


FILL_VALUES = (-9999.0, -99999.0, -3.4028234663852886e38)  # common fill values besides an integer dtype's minimum
FILL_SAMPLE_PX = 1024  # a band is checked for fill values on a decimated read of at most this many pixels a side


def _fill_like(ds, band: int) -> tuple[float, int, str] | None:
    """A fill-like value in a decimated read of ``band``, with how many sampled pixels hold it and
    why it looks like fill; None when there is none. Fill-like: a common fill value (the integer
    dtype's minimum, -9999, -99999, float32's lowest), a value below any plausible reflectance
    (scaled value under -1), or one value covering at least half of the scene's edge (the frame a
    sensor or an export pads a scene with) and far rarer inside it."""
    dtype = np.dtype(ds.dtypes[band - 1])
    candidates = [*FILL_VALUES, *([float(np.iinfo(dtype).min)] if dtype.kind == "i" else [])]
    shape = (min(ds.height, FILL_SAMPLE_PX), min(ds.width, FILL_SAMPLE_PX))
    sample = ds.read(band, out_shape=shape)
    found = [(value, int((sample == value).sum()), "a common fill value") for value in candidates if (sample == value).any()]
    if found:
        return max(found, key=lambda f: f[1])
    scale, offset = (ds.scales or (1.0,) * ds.count)[band - 1], (ds.offsets or (0.0,) * ds.count)[band - 1]
    lowest = sample.min()
    if lowest * scale + offset < -1:
        return (
            float(lowest),
            int((sample == lowest).sum()),
            f"below any plausible reflectance ({lowest * scale + offset:g} after scale and offset)",
        )
    if min(shape) >= 8:
        edge = np.concatenate([sample[0], sample[-1], sample[1:-1, 0], sample[1:-1, -1]])
        values, counts = np.unique(edge, return_counts=True)
        value, share = values[counts.argmax()], counts.max() / len(edge)
        inside = float(np.mean(sample[1:-1, 1:-1] == value))
        if share >= 0.5 and inside < share / 2:  # a frame, not a band that is constant everywhere
            return float(value), int((sample == value).sum()), f"covering {share:.0%} of the scene's edge and {inside:.0%} of its inside"
    return None


def _nodata(ds, path: str, declared: float | None) -> list[float]:
    """Each band's nodata: its tag, else the declared ``StudySource.nodata``; a band without either
    that holds a fill-like value is refused (it would pass as reflectance)."""
    values = []
    for band, tag in enumerate(ds.nodatavals, start=1):
        if tag is None and declared is None and (fill := _fill_like(ds, band)) is not None:
            value, count, why = fill
            raise CatalogError(
                f"raster {path} band {band} has no nodata tag but {count} sampled pixels hold {value:g}, {why}: if it is fill, declare it "
                f"with StudySource.nodata = {value:g} (or tag the file: gdal_edit.py -a_nodata {value:g} {Path(path).name}); "
                "if it is real data, set StudySource.nodata to the value your files use for missing pixels"
            )
        fallback = np.nan if declared is None else float(declared)
        values.append(float(tag) if tag is not None else fallback)
    return values


def _header(path: str, nodata: float | None = None) -> dict:
    try:
        with rasterio.open(path) as ds:
            if ds.crs is None:
                raise CatalogError(f"raster {path} has no CRS: assign one (e.g. gdal_edit.py -a_srs) before using it")
            _check_readable(ds, path)
            scales = ds.scales or (1.0,) * ds.count
            offsets = ds.offsets or (0.0,) * ds.count
            return {
                "crs": ds.crs.to_string(),
                "transform": tuple(ds.transform)[:6],
                "width": ds.width,
                "height": ds.height,
                "count": ds.count,
                "dtypes": list(ds.dtypes),
                "nodata": _nodata(ds, path, nodata),
                "scales": [float(s) for s in scales],
                "offsets": [float(o) for o in offsets],
                "descriptions": [d or "" for d in ds.descriptions],
                "bounds": tuple(ds.bounds),
                "res": ds.res,
            }
    except RasterioError as err:
        raise CatalogError(
            f"cannot read raster {path}: {err}. Check the file is a complete GeoTIFF/VRT (download or export it again)"
        ) from err


def _tokens(path: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", Path(path).stem.lower()) if t]


def _band_of_files(
    date: pd.Timestamp, paths: list[str], band_names: list[str] | None, band_files: dict[str, str] | None
) -> dict[str, list[str]]:
    """Which single-band files hold which band: by the explicit mapping (band -> file-name token) or
    by the band names appearing as a token of the file name. Every file must match exactly one band."""
    if band_files is not None:
        keys = {band: str(token).lower() for band, token in band_files.items()}
    elif band_names is not None:
        keys = {band: band.lower() for band in band_names}
    else:
        raise CatalogError(
            f"date {date.date()} has {len(paths)} single-band files ({', '.join(Path(p).name for p in paths[:6])}): say which is which band, "
            "with StudySource.band_files (band -> file-name token, e.g. {'blue': 'B2'}) or StudySource.band_names matching a token of each file name"
        )
    order = list(band_names) if band_names is not None else list(keys)
    if set(order) != set(keys):
        raise CatalogError(
            f"StudySource.band_files names bands {sorted(keys)} but StudySource.band_names lists {order}: make them the same bands"
        )
    by_band: dict[str, list[str]] = {band: [] for band in order}
    for path in paths:
        matches = [band for band, key in keys.items() if key in _tokens(path)]
        if len(matches) != 1:
            found = "no band" if not matches else f"bands {matches}"
            raise CatalogError(
                f"file {path} (date {date.date()}) matches {found} of {keys}: fix StudySource.band_files / band_names or the file name"
            )
        by_band[matches[0]].append(path)
    empty = [band for band, files in by_band.items() if not files]
    if empty:
        raise CatalogError(
            f"date {date.date()} has no file for band(s) {empty} among {[Path(p).name for p in paths]}: add them or fix StudySource.band_files"
        )
    return by_band


def _scene_sources(
    date: pd.Timestamp, paths: list[str], headers: dict, band_names, band_files, mosaic_dir
) -> tuple[list[str], list[str] | None]:
    """The files to read for one date (band files in band order, or one mosaic VRT) and, for band
    files, the band names they give."""
    if len(paths) == 1:
        return paths, None
    single = [headers[p]["count"] == 1 for p in paths]
    if all(single):
        by_band = _band_of_files(date, paths, band_names, band_files)
        if all(len(files) == 1 for files in by_band.values()):
            ordered = [files[0] for files in by_band.values()]
            first = headers[ordered[0]]
            for path in ordered[1:]:
                h = headers[path]
                if (h["crs"], h["transform"], h["width"], h["height"]) != (
                    first["crs"],
                    first["transform"],
                    first["width"],
                    first["height"],
                ):
                    raise CatalogError(
                        f"band file {path} is not on the same grid as {ordered[0]} (date {date.date()}): resample the bands to one grid"
                    )
            return ordered, list(by_band)
        # one VRT per band: bands of one date may differ in data type (float32 reflectance beside an
        # int16 band), which a single multi-band raster cannot read as one array
        mosaics = [_mosaic(date, [[(f, 1) for f in sorted(files)]], mosaic_dir, band) for band, files in by_band.items()]
        return [str(m) for m in mosaics], list(by_band)
    if not any(single) and len({headers[p]["count"] for p in paths}) == 1:
        grids = {(headers[p]["crs"], headers[p]["transform"]) for p in paths}
        if len(grids) < len(paths):
            raise CatalogError(
                f"date {date.date()} has {len(paths)} files and some cover the same grid ({[Path(p).name for p in paths]}): keep one file per tile"
            )
        count = headers[paths[0]]["count"]
        return [str(_mosaic(date, [[(p, b) for p in paths] for b in range(1, count + 1)], mosaic_dir))], None
    raise CatalogError(
        f"date {date.date()} mixes single- and multi-band files or band counts ({[Path(p).name for p in paths]}): use one layout per date"
    )


def _mosaic(date: pd.Timestamp, sources: list[list[tuple[str, int]]], mosaic_dir, band: str | None = None) -> Path:
    if mosaic_dir is None:
        raise CatalogError(f"date {date.date()} arrives in tiles; mosaicking them needs a folder for the VRT (build_catalog's mosaic_dir)")
    try:
        return write_mosaic(sources, Path(mosaic_dir) / f"mosaic_{date:%Y-%m-%d}{'_' + band if band else ''}.vrt")
    except MosaicError as err:
        raise CatalogError(f"date {date.date()}: {err}") from err


def _scene_row(date: pd.Timestamp, paths: list[str], band_names, band_files, mosaic_dir, nodata: float | None = None) -> dict:
    headers = {p: _header(p, nodata) for p in paths}
    files, file_bands = _scene_sources(date, paths, headers, band_names, band_files, mosaic_dir)
    headers = [headers[f] if f in headers else _header(f, nodata) for f in files]
    first = headers[0]
    names = [d for h in headers for d in h["descriptions"]]
    count = len(names)
    if file_bands is not None:
        names = file_bands
    elif band_names is not None:
        if len(band_names) != count:
            raise CatalogError(
                f"scene {date.date()} ({files[0]}) has {count} bands, {len(band_names)} band names given in StudySource.band_names"
            )
        names = list(band_names)
    elif not all(names) or len(set(names)) != count:
        names = [f"b{i + 1}" for i in range(count)]
    return {
        "scene_id": f"scene_{date:%Y-%m-%d}",
        "date": date,
        "paths": files,
        "source_files": paths,
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


def build_catalog(
    source: str | Path,
    band_names: list[str] | None = None,
    band_files: dict[str, str] | None = None,
    mosaic_dir: str | Path | None = None,
    nodata: float | None = None,
) -> pd.DataFrame:
    """Catalog every scene under ``source``; fail on inconsistent band counts or resolutions.

    A band without a nodata tag takes ``nodata`` when given; without either, a fill-like value in
    it (an integer dtype's minimum, -9999, ...) is an error naming the band and the setting.

    Scenes may differ in CRS (unit points are reprojected per scene) but not in band count or pixel
    size, which would make chips from different dates cover different ground. Several files of one
    date are either single-band files (matched to bands by ``band_files`` or ``band_names``) or
    tiles, mosaicked into a VRT under ``mosaic_dir``.
    """
    files = list_scene_files(source)
    rows = [
        _scene_row(date, list(group["path"]), band_names, band_files, mosaic_dir, nodata)
        for date, group in files.groupby("date", sort=True)
    ]
    catalog = pd.DataFrame(rows)
    ref = catalog.iloc[0]
    for _, scene in catalog.iterrows():
        if scene["band_count"] != ref["band_count"]:
            raise CatalogError(
                f"scene {scene['paths'][0]} has {scene['band_count']} bands, {ref['paths'][0]} has {ref['band_count']}: every date needs the same bands"
            )
        if list(scene["band_names"]) != list(ref["band_names"]):
            raise CatalogError(
                f"scene {scene['paths'][0]} band names {scene['band_names']} differ from {ref['band_names']}: set StudySource.band_names"
            )
        for axis in ("res_x", "res_y"):
            if abs(scene[axis] - ref[axis]) > RES_TOLERANCE * ref[axis]:
                raise CatalogError(
                    f"scene {scene['paths'][0]} pixel size {scene[axis]} differs from {ref[axis]} in {ref['paths'][0]}: resample to one pixel size"
                )
    return catalog.reset_index(drop=True)
