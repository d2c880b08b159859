"""A materialized GeoTIFF (or a folder of dated GeoTIFFs) as a typed handle.

What the GeoTIFF IO manager gives an asset instead of a bare path: the asset reads it with the
reader its science needs (``GridMap.read``, ``map_files``), and the type says what it is.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import rasterio


@dataclasses.dataclass(frozen=True)
class Raster:
    """A GeoTIFF file, or a folder of them (one per date)."""

    path: Path

    @property
    def files(self) -> list[Path]:
        """The GeoTIFF itself, or a folder's GeoTIFFs in name (date) order."""
        return sorted(self.path.glob("*.tif")) if self.path.is_dir() else [self.path]

    def profile(self) -> dict:
        """The first file's rasterio profile (CRS, transform, size, dtype, nodata)."""
        with rasterio.open(self.files[0]) as src:
            return dict(src.profile)
