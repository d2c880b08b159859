"""One virtual raster (GDAL VRT) per date from tiles of that date: the standard way to read a scene
that ships in tiles (Landsat, Sentinel-2) as one raster, without copying pixels.

The VRT XML is written here rather than by ``gdalbuildvrt`` because rasterio's wheels do not ship
GDAL's command-line tools or Python bindings; GDAL itself reads the file. Tiles must share the
CRS, the pixel grid, and per band the data type, nodata value, scale and offset.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path

import rasterio
from rasterio.crs import CRS

from models.io.storage import atomic_path

GRID_TOLERANCE = 0.01  # of a pixel


class MosaicError(ValueError):
    """Tiles that cannot be put on one grid (the message names the files and the fix)."""


def _gdal_type(dtype: str) -> str:
    return {
        "uint8": "Byte",
        "int8": "Int8",
        "uint16": "UInt16",
        "int16": "Int16",
        "uint32": "UInt32",
        "int32": "Int32",
        "float32": "Float32",
        "float64": "Float64",
    }[dtype]


def write_mosaic(bands: list[list[tuple[str, int]]], path: str | Path, relative: bool = False) -> Path:
    """A VRT at ``path`` whose band k mosaics the (file, band index) sources in ``bands[k]``, later
    sources over earlier ones except where they are nodata; each band named as its first source's.
    With ``relative`` the sources are named relative to the VRT, so a folder holding both can move."""
    files = sorted({f for sources in bands for f, _ in sources})
    meta = {}
    for f in files:
        with rasterio.open(f) as ds:
            meta[f] = {
                "crs": ds.crs,
                "transform": ds.transform,
                "width": ds.width,
                "height": ds.height,
                "dtypes": ds.dtypes,
                "nodata": ds.nodatavals,
                "scales": ds.scales,
                "offsets": ds.offsets,
                "descriptions": ds.descriptions,
            }
    first = meta[files[0]]
    crs, res_x, res_y = first["crs"], first["transform"].a, -first["transform"].e
    for f in files:
        m = meta[f]
        if m["crs"] != crs:
            raise MosaicError(f"tile {f} is in {m['crs']}, {files[0]} in {crs}: reproject the tiles of one date to one CRS")
        if abs(m["transform"].a - res_x) > GRID_TOLERANCE * res_x or abs(-m["transform"].e - res_y) > GRID_TOLERANCE * res_y:
            raise MosaicError(f"tile {f} has pixel size {m['transform'].a}, {files[0]} has {res_x}: resample the tiles to one pixel size")
    left = min(meta[f]["transform"].c for f in files)
    top = max(meta[f]["transform"].f for f in files)
    right = max(meta[f]["transform"].c + meta[f]["width"] * res_x for f in files)
    bottom = min(meta[f]["transform"].f - meta[f]["height"] * res_y for f in files)
    width, height = round((right - left) / res_x), round((top - bottom) / res_y)
    folder = Path(path).resolve().parent if relative else None
    band_xml = [_band_xml(k + 1, sources, meta, left, top, res_x, res_y, folder) for k, sources in enumerate(bands)]
    xml = (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">\n'
        f"  <SRS>{html.escape(CRS.from_user_input(crs).to_wkt())}</SRS>\n"
        f"  <GeoTransform>{left!r}, {res_x!r}, 0.0, {top!r}, 0.0, {-res_y!r}</GeoTransform>\n" + "".join(band_xml) + "</VRTDataset>\n"
    )
    with atomic_path(path) as tmp:
        tmp.write_text(xml)
    return Path(path)


def _band_key(m: dict, b: int) -> tuple:
    nodata = m["nodata"][b - 1]
    return m["dtypes"][b - 1], "nan" if nodata is not None and math.isnan(nodata) else nodata, m["scales"][b - 1], m["offsets"][b - 1]


def _source_xml(path: str, folder: Path | None) -> str:
    """A source's name: absolute, or relative to the VRT's ``folder``."""
    if folder is None:
        return f'<SourceFilename relativeToVRT="0">{html.escape(str(Path(path).resolve()))}</SourceFilename>'
    return f'<SourceFilename relativeToVRT="1">{html.escape(os.path.relpath(Path(path).resolve(), folder))}</SourceFilename>'


def _band_xml(
    band: int, sources: list[tuple[str, int]], meta: dict, left: float, top: float, res_x: float, res_y: float, folder: Path | None
) -> str:
    first, first_band = sources[0]
    dtype, nodata = meta[first]["dtypes"][first_band - 1], meta[first]["nodata"][first_band - 1]
    scale, offset = meta[first]["scales"][first_band - 1], meta[first]["offsets"][first_band - 1]
    description = meta[first]["descriptions"][first_band - 1]
    parts = [f'  <VRTRasterBand dataType="{_gdal_type(dtype)}" band="{band}">\n']
    if description:
        parts.append(f"    <Description>{html.escape(description)}</Description>\n")
    if nodata is not None:
        parts.append(f"    <NoDataValue>{nodata!r}</NoDataValue>\n")
    parts.append(f"    <Scale>{scale!r}</Scale>\n    <Offset>{offset!r}</Offset>\n")
    for f, b in sources:
        m = meta[f]
        if _band_key(m, b) != _band_key(meta[first], first_band):
            raise MosaicError(
                f"tile {f} band {b} differs from {first} band {first_band} in data type, nodata, scale or offset: convert the tiles alike"
            )
        col, row = (m["transform"].c - left) / res_x, (top - m["transform"].f) / res_y
        if abs(col - round(col)) > GRID_TOLERANCE or abs(row - round(row)) > GRID_TOLERANCE:
            raise MosaicError(
                f"tile {f} is not aligned with {first}'s pixel grid (offset {col:.3f}, {row:.3f} pixels): resample the tiles to one grid"
            )
        nodata_xml = f"      <NODATA>{nodata!r}</NODATA>\n" if nodata is not None else ""
        parts.append(
            "    <ComplexSource>\n"
            f"      {_source_xml(f, folder)}\n"
            f"      <SourceBand>{b}</SourceBand>\n"
            f'      <SrcRect xOff="0" yOff="0" xSize="{m["width"]}" ySize="{m["height"]}"/>\n'
            f'      <DstRect xOff="{round(col)}" yOff="{round(row)}" xSize="{m["width"]}" ySize="{m["height"]}"/>\n'
            f"{nodata_xml}"
            "    </ComplexSource>\n"
        )
    parts.append("  </VRTRasterBand>\n")
    return "".join(parts)
