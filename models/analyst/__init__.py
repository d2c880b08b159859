"""What analysts read: the DuckDB database, the data dictionary, the HTML report and the figures."""

from models.analyst.data_dictionary import describe, field_metadata, markdown, unit_of, with_descriptions
from models.analyst.database import build_database
from models.analyst.plots import (
    bias_by_response,
    cate_map,
    coefficient_plot,
    confusion_plot,
    embedding_pca,
    estimate_distributions,
    example_chips,
    gates_calibration,
    land_cover_panel,
    metric_bars,
    raster_panels,
    rate_difference_plot,
    sequence_strip,
    study_area_map,
    toc_bands,
    training_curves,
    wealth_calibration,
)
from models.analyst.report import write_report
from models.analyst.summary import trial_summary

__all__ = [
    "bias_by_response",
    "build_database",
    "cate_map",
    "coefficient_plot",
    "confusion_plot",
    "describe",
    "embedding_pca",
    "estimate_distributions",
    "example_chips",
    "field_metadata",
    "gates_calibration",
    "land_cover_panel",
    "markdown",
    "metric_bars",
    "raster_panels",
    "rate_difference_plot",
    "sequence_strip",
    "study_area_map",
    "toc_bands",
    "training_curves",
    "trial_summary",
    "unit_of",
    "wealth_calibration",
    "with_descriptions",
    "write_report",
]
