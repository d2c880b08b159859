"""VRT mosaics: later sources over earlier ones except at their nodata, band names kept, and
sources named relative to the VRT where it must move with them."""

import numpy as np
import rasterio
from rasterio.transform import from_origin

from models.ingest.mosaic import write_mosaic

PROFILE = {"driver": "GTiff", "width": 8, "height": 6, "count": 2, "dtype": "int16", "nodata": -9999, "crs": "EPSG:32636"}
TRANSFORM = from_origin(500_000, 60_000, 30, 30)


def _write(path, values: np.ndarray) -> str:
    with rasterio.open(path, "w", transform=TRANSFORM, **PROFILE) as dst:
        dst.write(values)
        dst.descriptions = ("red", "nir")
        dst.scales = (1e-4, 1e-4)
    return str(path)


def test_an_overlay_paints_over_its_base_except_at_its_nodata_and_moves_with_its_folder(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    base = _write(folder / "base.tif", np.arange(96, dtype=np.int16).reshape(2, 6, 8))
    patch = np.full((2, 6, 8), -9999, dtype=np.int16)
    patch[:, 1:3, 2:5] = 7
    overlay = _write(folder / "overlay.tif", patch)
    write_mosaic([[(base, b), (overlay, b)] for b in (1, 2)], folder / "scene.vrt", relative=True)
    folder.rename(tmp_path / "moved")
    with rasterio.open(tmp_path / "moved" / "scene.vrt") as src:
        mosaic, names, scales = src.read(), src.descriptions, src.scales
    expected = np.where(patch == -9999, np.arange(96, dtype=np.int16).reshape(2, 6, 8), patch)
    np.testing.assert_array_equal(mosaic, expected)
    assert names == ("red", "nir") and scales == (1e-4, 1e-4)
    absolute = write_mosaic([[(str(tmp_path / "moved" / "base.tif"), 1)]], tmp_path / "absolute.vrt")
    assert 'relativeToVRT="0"' in absolute.read_text() and str(tmp_path / "moved" / "base.tif") in absolute.read_text()
