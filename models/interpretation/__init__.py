"""Interpretation: land-cover classification and the attribution of the heterogeneity to land cover."""

from models.interpretation.attribution import (
    attenuation_vs_truth,
    attribute,
    best_linear_projection,
    cate_by_quantile,
    land_cover_design,
    quantile_table,
)
from models.interpretation.classifier import (
    CLASSIFIERS,
    LandCoverClassifier,
    LandCoverMaps,
    classify_scenes,
    cross_validate,
    cv_report,
    spatial_folds,
)
from models.interpretation.landcover import (
    NODATA_CLASS,
    PALETTE,
    WORLDCOVER,
    LabelError,
    colormap,
    labels_for_scenes,
    land_cover_chips,
    map_files,
    pixel_features,
    scene_features,
    unit_fractions,
)

__all__ = [
    "CLASSIFIERS",
    "LabelError",
    "LandCoverClassifier",
    "LandCoverMaps",
    "NODATA_CLASS",
    "PALETTE",
    "WORLDCOVER",
    "attenuation_vs_truth",
    "attribute",
    "best_linear_projection",
    "cate_by_quantile",
    "classify_scenes",
    "colormap",
    "cross_validate",
    "cv_report",
    "labels_for_scenes",
    "land_cover_chips",
    "land_cover_design",
    "map_files",
    "pixel_features",
    "quantile_table",
    "scene_features",
    "spatial_folds",
    "unit_fractions",
]
