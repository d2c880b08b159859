"""A materialized GeoTIFF (or a folder of dated GeoTIFFs) as a typed handle.

What the GeoTIFF IO manager gives an asset instead of a bare path: the asset reads it with the
reader its science needs (``GridMap.read``, ``map_files``), and the type says what it is.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Raster:
    """A GeoTIFF file, or a folder of them (one per date)."""

    path: Path
