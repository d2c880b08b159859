"""How tests/data/nc_landsat7_2000_hand_labels.parquet was made (run from the repository root).

Hand-drawn training polygons for the real Landsat 7 scene, by visual interpretation, not by spectral
rules (the classifier's own features could learn a rule exactly). One person looked at two renders
of the scene at 4x zoom: a false-colour composite (NIR, red, green; 2-98% stretch) and a true-colour
one (red, green, blue), with a 10-pixel grid, and drew rectangles inside areas that read as one class:
- water: black in both composites (a lake at the scene's southern edge, two ponds);
- forest: dark maroon, textured canopy in false colour, dark brown-green in true colour;
- developed: roofs and parking, white in true colour and cyan in false colour;
- grass: smooth bright red in false colour, even green in true colour (pasture, lawns, fields);
- bare: red-clay construction sites, orange in true colour and pale green in false colour.
Each rectangle was checked at 7x zoom and dropped where it mixed classes (six of 22 were). Two
polygons (the lake and one developed block) lie where SWIR2 has no data, as real labels do.
The rectangles are pixel (col, row) bounds on the scene's grid, turned into State Plane polygons.
"""

import geopandas as gpd
import rasterio
from shapely.geometry import box

SCENE = "tests/data/nc_landsat7_2000/lsat7_2000_40.tif"
RECTANGLES = [  # class, col0, row0, col1, row1 (pixels, end exclusive)
    ("water", 152, 414, 166, 421), ("water", 172, 170, 192, 184), ("water", 255, 337, 260, 344),
    ("forest", 150, 106, 166, 120), ("forest", 185, 355, 215, 375), ("forest", 100, 300, 130, 330),
    ("developed", 337, 382, 346, 390), ("developed", 346, 346, 358, 352), ("developed", 31, 120, 42, 132),
    ("grass", 270, 300, 290, 318), ("grass", 183, 258, 192, 274),
    ("bare", 74, 237, 82, 245), ("bare", 336, 247, 343, 252), ("bare", 250, 186, 258, 193),
    ("bare", 307, 240, 313, 250), ("bare", 306, 374, 314, 385),
]  # fmt: skip

if __name__ == "__main__":
    with rasterio.open(SCENE) as src:
        transform, crs = src.transform, src.crs
    polygons = [box(*(transform * (c0, r1)), *(transform * (c1, r0))) for _, c0, r0, c1, r1 in RECTANGLES]
    frame = gpd.GeoDataFrame({"cover": [r[0] for r in RECTANGLES]}, geometry=polygons, crs=crs)
    frame.to_parquet("tests/data/nc_landsat7_2000_hand_labels.parquet")
    print(frame["cover"].value_counts())
