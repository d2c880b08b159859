"""How tests/data/nc_landsat7_2000_labels.parquet was made (run from the repository root).

Labelled points for the real Landsat 7 scene, in its own State Plane CRS (EPSG:32119), 40 per class,
chosen where spectral indices leave little doubt (digital numbers, so only their ratios matter):
water where NDWI > 0.2 and NIR < 30 (open water is dark in NIR); forest where NDVI > 0.45 and SWIR1 < NIR
(dense canopy); developed where NDBI > 0.15 and NDVI < 0.1 (bright, unvegetated); herbaceous where
0.2 < NDVI < 0.35 (sparse green cover). User class names, mapped to WorldCover by the test's crosswalk.
"""

import geopandas as gpd
import numpy as np
import rasterio

FOLDER = "tests/data/nc_landsat7_2000"
bands = {}
for name, number in (("green", 20), ("red", 30), ("nir", 40), ("swir1", 50)):
    with rasterio.open(f"{FOLDER}/lsat7_2000_{number}.tif") as src:
        bands[name] = src.read(1, masked=True).astype(float).filled(np.nan)
        transform, crs = src.transform, src.crs


def ratio(a, b):
    return (a - b) / (a + b)


ndvi, ndwi, ndbi = ratio(bands["nir"], bands["red"]), ratio(bands["green"], bands["nir"]), ratio(bands["swir1"], bands["nir"])
rules = {
    "water": (ndwi > 0.2) & (bands["nir"] < 30),
    "forest": (ndvi > 0.45) & (bands["swir1"] < bands["nir"]),
    "developed": (ndbi > 0.15) & (ndvi < 0.1),
    "herbaceous": (ndvi > 0.2) & (ndvi < 0.35),
}
rng = np.random.default_rng(0)
rows, cols, labels = [], [], []
for name, mask in rules.items():
    r, c = np.nonzero(np.nan_to_num(mask, nan=0).astype(bool))
    pick = rng.choice(len(r), size=40, replace=False)
    rows += list(r[pick])
    cols += list(c[pick])
    labels += [name] * 40
x, y = rasterio.transform.xy(transform, rows, cols)
points = gpd.GeoDataFrame({"lc": labels}, geometry=gpd.points_from_xy(x, y), crs=crs)
points.to_parquet("tests/data/nc_landsat7_2000_labels.parquet")
print(points["lc"].value_counts())
