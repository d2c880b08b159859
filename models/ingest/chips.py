"""Chip sequences: a T x C x H x W stack centred on every unit, written as a Zarr cube.

Reads are grouped by scene and by neighbourhood: units are sorted into spatial tiles, and for each
tile every scene's file is read once over the tile's bounding window, from which the chips are
sliced. Each raster is read in its own CRS (the unit point is reprojected, not the raster). Memory
is bounded by one tile window per scene plus one flush of chips.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import xarray as xr
import zarr
from pyproj import Transformer
from rasterio.errors import RasterioError
from rasterio.transform import rowcol
from rasterio.windows import Window
from zarr.codecs import BloscCodec

from models.ingest.catalog import CatalogError
from models.io.storage import atomic_path

UNIT_CHUNK = 64
CHIP_SIZE = 32  # pixels per side; 32 Landsat pixels ~ 1 km, a village's surroundings
TILE_PX = 512  # spatial tile of grouped windowed reads
CHUNK_PX = 2048  # side of the squares extracted as separate jobs (about 61 km of 30 m pixels)
WORKERS = 2  # reader threads
# Blosc-LZ4 level 5 without shuffle: on the int16 cube of 10,000 units (8 dates x 6 bands x 32 x 32) the
# whole extraction takes 2.9x the time of reading every raster once, vs 3.1x with byte shuffle and
# 3.6x+ with zstd, for a larger store (891 MB vs 689 and 611 MB; benchmarks/ingest.py).
CODEC = (BloscCodec(cname="lz4", clevel=5, shuffle="noshuffle"),)


@dataclass
class Scene:
    """Open file handles of one date plus how to turn their values into physical units."""

    paths: list[str]
    crs: str
    nodata: list[float]
    scales: list[float]
    offsets: list[float]
    handles: list = field(default_factory=list)

    def __enter__(self) -> Scene:
        try:
            self.handles = [rasterio.open(p) for p in self.paths]
        except RasterioError as err:
            raise CatalogError(f"cannot open raster: {err}. Rebuild the imagery catalog (the files may have moved)") from err
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.close()

    @property
    def transform(self):
        return self.handles[0].transform

    @property
    def shape(self) -> tuple[int, int]:
        return self.handles[0].height, self.handles[0].width

    def _bands(self, row0: int, col0: int, height: int, width: int) -> Iterator[tuple[int, np.ndarray, tuple[slice, slice]]]:
        """(band index, raw values, where they go in a (height, width) window) for every band, one
        read per file; nothing when the window misses the raster."""
        r0, c0 = max(row0, 0), max(col0, 0)
        r1, c1 = min(row0 + height, self.shape[0]), min(col0 + width, self.shape[1])
        if r1 <= r0 or c1 <= c0:
            return
        window, place = Window(c0, r0, c1 - c0, r1 - r0), (slice(r0 - row0, r1 - row0), slice(c0 - col0, c1 - col0))
        band = 0
        for path, handle in zip(self.paths, self.handles, strict=True):
            try:
                raw = handle.read(window=window)
            except RasterioError as err:
                raise CatalogError(f"cannot read raster {path}: {err}. Download or export it again, then re-run imagery_catalog") from err
            for b in range(raw.shape[0]):
                yield band, raw[b], place
                band += 1

    def read(self, row0: int, col0: int, height: int, width: int) -> np.ndarray:
        """(C, height, width) float32 in physical units; outside the raster and nodata are NaN."""
        out = np.full((len(self.nodata), height, width), np.nan, dtype=np.float32)
        for band, raw, place in self._bands(row0, col0, height, width):
            values = raw.astype(np.float32)
            nodata = self.nodata[band]
            bad = np.isnan(values) if np.isnan(nodata) else (raw == nodata) | np.isnan(values)
            values = values * self.scales[band] + self.offsets[band]
            values[bad] = np.nan
            out[(band, *place)] = values
        return out

    def read_raw(self, row0: int, col0: int, height: int, width: int, coding: IntegerCoding) -> np.ndarray:
        """(C, height, width) of the files' own integers in ``coding.dtype``; outside the raster and
        nodata are ``coding.fill``. Physical values are ``raw * coding.scale + coding.offset``."""
        out = np.full((len(self.nodata), height, width), coding.fill, dtype=coding.dtype)
        for band, raw, place in self._bands(row0, col0, height, width):
            nodata = self.nodata[band]
            target = out[(band, *place)]
            target[...] = raw
            if not np.isnan(nodata):
                target[raw == nodata] = coding.fill
        return out


@dataclass(frozen=True)
class IntegerCoding:
    """Reflectance kept as the sources' integers: physical = raw * scale + offset, ``fill`` = missing."""

    dtype: str
    scale: float
    offset: float
    fill: int


def integer_coding(catalog: pd.DataFrame) -> IntegerCoding | None:
    """How the cube stores reflectance: the sources' own integers under CF ``scale_factor`` /
    ``add_offset`` / ``_FillValue`` when every band is integer with one scale and offset (Landsat and
    Sentinel-2 L2 products, the simulator), which xarray decodes on read; ``None`` (float32) otherwise:
    float sources, or bands with different scales, which one CF variable cannot hold.

    8- and 16-bit signed sources are stored as int16 with -32768 as the fill value (the products'
    own nodata convention); unsigned 16-bit sources as int32 with -1.
    """
    dtypes = {np.dtype(d) for row in catalog["dtypes"] for d in row}
    scales = {float(v) for row in catalog["scales"] for v in row}
    offsets = {float(v) for row in catalog["offsets"] for v in row}
    if len(scales) > 1 or len(offsets) > 1 or not all(np.issubdtype(d, np.integer) and d.itemsize <= 2 for d in dtypes):
        return None
    if np.dtype("uint16") in dtypes:
        return IntegerCoding("int32", scales.pop(), offsets.pop(), -1)
    return IntegerCoding("int16", scales.pop(), offsets.pop(), int(np.iinfo(np.int16).min))


def scenes_from_catalog(catalog: pd.DataFrame) -> list[Scene]:
    return [Scene(list(r.paths), r.crs, list(r.nodata), list(r.scales), list(r.offsets)) for r in catalog.itertuples()]


def chip_origins(x: np.ndarray, y: np.ndarray, transform, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-left (row, col) of the ``size`` x ``size`` window whose centre pixel holds (x, y).

    For even sizes the unit's pixel is at index ``size // 2`` in both axes.
    """
    rows, cols = rowcol(transform, x, y, op=np.floor)
    return np.asarray(rows, dtype=np.int64) - size // 2, np.asarray(cols, dtype=np.int64) - size // 2


def unit_origins(lon: np.ndarray, lat: np.ndarray, scenes: list[Scene], size: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, N) chip origins: each unit's point reprojected into each scene's own CRS."""
    rows, cols = [], []
    for scene in scenes:
        x, y = Transformer.from_crs("EPSG:4326", scene.crs, always_xy=True).transform(lon, lat)
        r, c = chip_origins(np.asarray(x), np.asarray(y), scene.transform, size)
        rows.append(r)
        cols.append(c)
    return np.stack(rows), np.stack(cols)


def _read_tile(scene: Scene, rows, cols, size: int, chips: np.ndarray, valid: np.ndarray, coding: IntegerCoding | None) -> None:
    """Fill ``chips`` (n, C, size, size) for units whose origins are ``rows``, ``cols`` from one read
    of the scene (physical float32, or raw integers under ``coding``), and ``valid`` (n, size, size)
    with where every band has data."""
    r0, c0 = int(rows.min()), int(cols.min())
    height, width = int(rows.max()) - r0 + size, int(cols.max()) - c0 + size
    block = scene.read(r0, c0, height, width) if coding is None else scene.read_raw(r0, c0, height, width, coding)
    offsets = np.arange(size)
    flat = ((rows - r0)[:, None, None] + offsets[None, :, None]) * width + (cols - c0)[:, None, None] + offsets[None, None, :]
    for band in range(block.shape[0]):  # gather each band straight into place: one copy, no temporary
        np.take(block[band].ravel(), flat, out=chips[:, band], mode="clip")
    missing = np.isnan(chips) if coding is None else chips == coding.fill
    np.logical_not(missing.any(axis=1), out=valid)


def spatial_tiles(rows: np.ndarray, cols: np.ndarray, tile_px: int) -> list[np.ndarray]:
    """Unit indices grouped by the ``tile_px`` grid cell that holds their chip origin."""
    key = (rows // tile_px) * 1_000_003 + (cols // tile_px)
    order = np.argsort(key, kind="stable")
    _, starts = np.unique(key[order], return_index=True)
    return np.split(order, starts[1:])


def iter_chip_tiles(
    lon, lat, scenes: list[Scene], size: int, tile_px: int = TILE_PX, workers: int = WORKERS, coding: IntegerCoding | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (unit indices, chips (n, T, C, size, size), valid (n, T, size, size)) tile by tile:
    float32 physical values, or the sources' integers under ``coding``.

    Reader threads write each date straight into the tile's arrays (no stacking pass), and compute
    its validity mask there, in parallel.
    """
    rows, cols = unit_origins(np.asarray(lon), np.asarray(lat), scenes, size)
    n_bands = len(scenes[0].nodata)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for idx in spatial_tiles(rows[0], cols[0], tile_px):
            chips = np.empty((len(idx), len(scenes), n_bands, size, size), dtype=np.float32 if coding is None else coding.dtype)
            valid = np.empty((len(idx), len(scenes), size, size), dtype=bool)

            def read(t: int, idx=idx, chips=chips, valid=valid) -> None:
                _read_tile(scenes[t], rows[t, idx], cols[t, idx], size, chips[:, t], valid[:, t], coding)

            list(pool.map(read, range(len(scenes))))
            yield idx, chips, valid


@dataclass
class CubeSummary:
    """What the extraction found: units kept, units without a valid pixel on any date, and per date
    how many of the located units had no valid pixel (a pixel is valid when every band is)."""

    n_units: int
    dropped_all_nodata: list[str]
    valid_fraction: float
    n_located: int = 0
    dates: list[str] = field(default_factory=list)
    nodata_by_date: list[int] = field(default_factory=list)

    def date_table(self) -> pd.DataFrame:
        share = np.asarray(self.nodata_by_date) / max(self.n_located, 1)
        return pd.DataFrame({"date": self.dates, "units_without_data": self.nodata_by_date, "share": share})

    @classmethod
    def of(cls, cube: xr.Dataset) -> CubeSummary:
        """The record an assembled cube carries in its ``extraction`` attribute (``assemble_cubes``)."""
        if "extraction" not in cube.attrs:
            raise KeyError("this cube carries no extraction record: it was not written by assemble_cubes; re-materialize it")
        return cls(**cube.attrs["extraction"])


class _CubeAppender:
    """Buffers chips and appends them to a Zarr store in whole unit chunks.

    Writes run on one background thread, so compressing a batch overlaps reading the next tiles;
    at most one batch waits in memory.
    """

    def __init__(self, path: Path, dates, bands: list[str], size: int, flush_units: int, coding: IntegerCoding | None):
        self.path, self.dates, self.bands, self.size, self.flush_units = path, dates, bands, size, flush_units
        self.coding = coding
        self.chips: list[np.ndarray] = []
        self.valid: list[np.ndarray] = []
        self.meta: list[pd.DataFrame] = []
        self.written = 0
        self._writer = ThreadPoolExecutor(max_workers=1)
        self._pending = None

    def add(self, chips: np.ndarray, valid: np.ndarray, meta: pd.DataFrame) -> None:
        self.chips.append(chips)
        self.valid.append(valid)
        self.meta.append(meta)
        if sum(len(m) for m in self.meta) >= self.flush_units:
            self.flush(final=False)

    def flush(self, final: bool = True) -> None:
        """Hand the buffered units (all, or whole unit chunks of them) to the writer thread, which
        concatenates and writes them while the next tiles are read."""
        total = sum(len(m) for m in self.meta)
        n = total if final else (total // UNIT_CHUNK) * UNIT_CHUNK
        if n:
            (chips, valid, meta), (self.chips, self.valid, self.meta) = _split_buffers((self.chips, self.valid, self.meta), n)
            self._wait()
            self._pending = self._writer.submit(self._write, chips, valid, meta, self.written == 0)
            self.written += n
        if final:
            self._wait()
            self._writer.shutdown()

    def _wait(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def _write(self, chips: list[np.ndarray], valid: list[np.ndarray], meta: list[pd.DataFrame], first: bool) -> None:
        batch = _cube_batch(np.concatenate(chips), np.concatenate(valid), pd.concat(meta), self.dates, self.bands, self.size)
        if self.coding is not None:  # already integers: xarray writes them as they are, with the CF attributes
            batch["reflectance"].attrs.update(scale_factor=self.coding.scale, add_offset=self.coding.offset)
        if first:
            chunks = (UNIT_CHUNK, len(self.dates), len(self.bands), self.size, self.size)
            encoding = {
                "reflectance": {
                    "chunks": chunks,
                    "compressors": CODEC,
                    **({} if self.coding is None else {"_FillValue": self.coding.fill}),
                },
                "valid": {"chunks": chunks[:2] + chunks[3:], "compressors": CODEC},
            }
            batch.to_zarr(self.path, mode="w", encoding=encoding, consolidated=False, zarr_format=3)
        else:  # raw appends: xarray would apply the CF encoding again to integers already encoded
            group = zarr.open_group(self.path, mode="r+")
            for name in ("reflectance", "valid", "unit", "lon", "lat"):
                group[name].append(batch[name].values, axis=0)


def _split_buffers(buffers: tuple[list, ...], n: int) -> tuple[tuple[list, ...], tuple[list, ...]]:
    """Split parallel lists of per-tile arrays (same lengths) into their first ``n`` units and the
    rest, slicing the tile that straddles ``n`` (views, no copies)."""
    head, tail = tuple([] for _ in buffers), tuple([] for _ in buffers)
    taken = 0
    for parts in zip(*buffers, strict=True):
        k = min(len(parts[0]), n - taken)
        for h, t, part in zip(head, tail, parts, strict=True):
            if k:
                h.append(part[:k])
            if k < len(part):
                t.append(part[k:])
        taken += k
    return head, tail


def _cube_batch(chips: np.ndarray, valid: np.ndarray, units: pd.DataFrame, dates, bands, size: int) -> xr.Dataset:
    offsets = np.arange(size) - size // 2
    return xr.Dataset(
        {
            "reflectance": (("unit", "time", "band", "y", "x"), chips),
            "valid": (("unit", "time", "y", "x"), valid),
        },
        coords={
            "unit": units["unit_id"].astype(str).to_numpy(dtype=object),
            "time": np.asarray(dates, dtype="datetime64[ns]"),
            "band": np.asarray(bands, dtype=object),
            "y": offsets,
            "x": offsets,
            "lon": ("unit", units["lon"].to_numpy(dtype=np.float64)),
            "lat": ("unit", units["lat"].to_numpy(dtype=np.float64)),
        },
    )


class _NothingWritten(Exception):
    """A chunk whose units all lack data: nothing to rename into place."""


def write_sequence_cube(
    units: pd.DataFrame,
    catalog: pd.DataFrame,
    path: str | Path,
    size: int = CHIP_SIZE,
    flush_units: int = 512,
    tile_px: int = TILE_PX,
    workers: int = WORKERS,
    require_data: bool = True,
) -> CubeSummary:
    """Extract every unit's chip sequence and write the Zarr cube at ``path`` atomically.

    ``units`` needs unit_id, lon, lat (EPSG:4326). Units whose whole sequence is nodata are
    dropped and reported. The cube's unit order is spatial (for read locality): select by ``unit``.
    Without ``require_data`` (one chunk of a larger extraction) a set of units none of which has
    data writes nothing and returns ``n_units == 0`` instead of failing.
    """
    scenes = scenes_from_catalog(catalog)
    dropped: list[str] = []
    valid_px = total_px = 0
    nodata_by_date = np.zeros(len(catalog), dtype=np.int64)
    with contextlib.suppress(_NothingWritten), atomic_path(path) as tmp, contextlib.ExitStack() as stack:
        for scene in scenes:
            stack.enter_context(scene)
        bands = list(catalog["band_names"].iloc[0])
        coding = integer_coding(catalog)
        cube = _CubeAppender(tmp, catalog["date"].to_numpy(), bands, size, flush_units, coding)
        for idx, chips, valid in iter_chip_tiles(units["lon"], units["lat"], scenes, size, tile_px, workers, coding):
            has_date = valid.any(axis=(2, 3))  # (n, T): any pixel valid in every band
            nodata_by_date += (~has_date).sum(axis=0)
            has_data = has_date.any(axis=1)
            if not has_data.all():  # copy only when a unit is dropped
                dropped += units["unit_id"].iloc[idx[~has_data]].astype(str).tolist()
                chips, valid, idx = chips[has_data], valid[has_data], idx[has_data]
            valid_px += np.count_nonzero(valid)
            total_px += valid.size
            cube.add(chips, valid, units.iloc[idx])
        cube.flush()
        if cube.written == 0 and require_data:
            raise CatalogError(
                "no unit has a valid pixel on any date: the units do not overlap the imagery's data (check lon/lat and the rasters' nodata values)"
            )
        if cube.written == 0:
            raise _NothingWritten  # leaves no file: atomic_path removes the empty temporary store
    dates = [f"{d:%Y-%m-%d}" for d in pd.to_datetime(catalog["date"])]
    return CubeSummary(cube.written, dropped, float(valid_px / max(total_px, 1)), len(units), dates, nodata_by_date.tolist())


def plan_chunks(units: pd.DataFrame, catalog: pd.DataFrame, chunk_px: int) -> dict[str, pd.DataFrame]:
    """Units (unit_id, lon, lat) grouped by the ``chunk_px`` square of the first scene's pixel grid
    that holds them, keyed ``r<row>_c<col>``: independent extraction jobs for separate workers, each
    reading only its own windows of every scene."""
    first = catalog.iloc[0]
    x, y = Transformer.from_crs("EPSG:4326", first["crs"], always_xy=True).transform(units["lon"].to_numpy(), units["lat"].to_numpy())
    rows = np.floor((first["top"] - np.asarray(y)) / first["res_y"] / chunk_px).astype(np.int64)
    cols = np.floor((np.asarray(x) - first["left"]) / first["res_x"] / chunk_px).astype(np.int64)
    return by_square(units, rows, cols)


def by_square(frame: pd.DataFrame, rows: np.ndarray, cols: np.ndarray) -> dict[str, pd.DataFrame]:
    """``frame``'s rows grouped by square (``rows``, ``cols``: each row's square), keyed
    ``r<row>_c<col>`` (``m`` for a minus sign: Dagster mapping keys are word characters)."""
    keys = pd.Series([f"r{r}_c{c}".replace("-", "m") for r, c in zip(rows, cols, strict=True)], index=frame.index)
    return {key: part.reset_index(drop=True) for key, part in frame.groupby(keys, sort=True)}


def assemble_cubes(parts: list[tuple[Path, CubeSummary]], path: str | Path) -> CubeSummary:
    """Concatenate chunk cubes (as ``write_sequence_cube`` wrote them) along ``unit`` into one cube
    at ``path``, atomically, copying their stored integers as they are; the summaries add up."""
    summaries = [summary for _, summary in parts]
    written = [(p, s) for p, s in parts if s.n_units]
    if not written:
        raise CatalogError(
            "no unit has a valid pixel on any date: the units do not overlap the imagery's data (check lon/lat and the rasters' nodata values)"
        )
    with atomic_path(path) as tmp:
        shutil.copytree(written[0][0], tmp)
        group = zarr.open_group(tmp, mode="r+")
        for part_path, _ in written[1:]:
            part = zarr.open_group(part_path, mode="r")
            for name in ("reflectance", "valid", "unit", "lon", "lat"):
                group[name].append(part[name][:], axis=0)
        summary = _combine(summaries)
        group.attrs["extraction"] = dataclasses.asdict(summary)
    return summary


def _combine(summaries: list[CubeSummary]) -> CubeSummary:
    n = sum(s.n_units for s in summaries)
    return CubeSummary(
        n_units=n,
        dropped_all_nodata=[u for s in summaries for u in s.dropped_all_nodata],
        valid_fraction=sum(s.valid_fraction * s.n_units for s in summaries) / max(n, 1),
        n_located=sum(s.n_located for s in summaries),
        dates=summaries[0].dates,
        nodata_by_date=np.sum([s.nodata_by_date for s in summaries], axis=0).astype(int).tolist(),
    )


def open_cube(path: str | Path) -> xr.Dataset:
    """Open a cube lazily (no dask needed): index it, then ``.values`` reads only what is asked."""
    return xr.open_zarr(path, chunks=None, consolidated=False)


def check_nodata(summary: CubeSummary, max_all_nodata_share: float, max_date_nodata_share: float) -> None:
    """Fail when more than ``max_all_nodata_share`` of units have no valid pixel on any date, or when
    on some date more than ``max_date_nodata_share`` of units have none (an empty or mis-flagged scene)."""
    n = max(summary.n_located, 1)
    share = len(summary.dropped_all_nodata) / n
    if share > max_all_nodata_share:
        raise CatalogError(
            f"{len(summary.dropped_all_nodata)} units ({share:.1%}) have no valid pixel on any date, above ChipsConfig.max_all_nodata_share = {max_all_nodata_share:.1%}: "
            f"{summary.dropped_all_nodata[:5]}. They sit in the imagery's nodata (its border or a band's nodata); check the imagery covers them, or raise the share"
        )
    dates = summary.date_table()
    empty = dates[dates["share"] > max_date_nodata_share]
    if len(empty):
        listed = ", ".join(f"{r.date} ({r.share:.0%})" for r in empty.itertuples())
        raise CatalogError(
            f"on {listed} more than ChipsConfig.max_date_nodata_share = {max_date_nodata_share:.0%} of units have no valid pixel: an empty scene or a wrong nodata value. "
            "Remove the date from the imagery, fix its nodata value, or raise the share if partial coverage is expected"
        )
