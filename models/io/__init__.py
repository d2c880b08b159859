"""Storage and tables: atomic writes, the study manifest, users' tables read deliberately, the simulator's truth read back."""

from models.io.manifest import NO_SURVEY, StudyManifest, StudyTruth
from models.io.rasters import Raster
from models.io.storage import StagedOutput, Staging, atomic_path, replace_path, staging, write_json
from models.io.tables import TableError, read_table
from models.io.truth import dominant_landcover, read_unit_truth

__all__ = [
    "NO_SURVEY",
    "Raster",
    "StagedOutput",
    "Staging",
    "StudyManifest",
    "StudyTruth",
    "TableError",
    "atomic_path",
    "dominant_landcover",
    "read_table",
    "read_unit_truth",
    "replace_path",
    "staging",
    "write_json",
]
