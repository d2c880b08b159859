"""Configurable resources: where the study comes from, where outputs go, shared settings, devices."""

import contextlib
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pydantic

from models.ingest.folds import CrossFitting
from models.ingest.units import RCTSpec
from models.io.storage import Staging, staging


def refuse_unknown_fields(cls, data):
    """A field the class does not have is an error naming the valid ones (pydantic would drop it)."""
    if isinstance(data, dict):
        unknown = sorted(set(data) - set(cls.model_fields))
        if unknown:
            raise ValueError(
                f"{cls.__name__} has no field {', '.join(map(repr, unknown))}; its fields are {', '.join(sorted(cls.model_fields))}"
            )
    return data


class Config(dg.Config):
    """Run config of an asset: an unknown field is refused with the list of valid ones."""

    _known_fields = pydantic.model_validator(mode="before")(classmethod(refuse_unknown_fields))


class Resource(dg.ConfigurableResource):
    """A resource: an unknown field is refused with the list of valid ones."""

    _known_fields = pydantic.model_validator(mode="before")(classmethod(refuse_unknown_fields))


class StorageResource(Resource):
    """Root folder of every materialized output (tables, cubes, rasters) that analysts read.

    ``keep_failed_runs``: how many failed runs keep their step outputs under ``.runs/`` for a
    re-execution from failure (succeeded runs' are pruned; ``pipelines.run_outputs``).
    """

    root: str = "data"
    keep_failed_runs: int = 5

    def path(self, *parts: str) -> Path:
        return Path(self.root).joinpath(*parts)

    @property
    def staging_root(self) -> Path:
        """Where staging folders live: inside the root, so moving an output into place is a rename."""
        return self.path(".staging")

    @contextlib.contextmanager
    def staging(self) -> Iterator[Staging]:
        """A private scratch folder, removed when the block ends, on success and on error alike.

        Yield ``stage.output(name)`` from inside the block: the IO manager moves it into place and
        deletes only that folder.
        """
        with staging(self.staging_root) as stage:
            yield stage


class StudySource(Resource):
    """The trials and their imagery. Leave ``trials`` empty to simulate the embedded demo study.

    ``trials`` is a folder of trial tables, one CSV or Parquet file per trial: the file's stem is
    the trial's key (its partition), so dropping a table there adds a trial (``trial_tables_sensor``).
    ``imagery`` is a folder of dated GeoTIFF/COG files or a catalog CSV (columns date, path).
    ``band_names`` names the bands in order; with several single-band files per date,
    ``band_files`` maps each band to a token of its file names (``{"blue": "B2", ...}``), or the
    band names themselves must appear in the file names. List ``covariates`` explicitly when you
    can: without a list they are auto-detected (see ``tabular_features``). ``nodata`` declares the
    fill value of bands without a nodata tag; without it such a band holding a fill-like value
    (-32768 in int16, -9999, ...) is refused by the catalog, never read as reflectance.
    """

    trials: str | None = None
    imagery: str | None = None
    survey_table: str | None = None
    band_names: list[str] | None = None
    band_files: dict[str, str] | None = None
    outcomes: list[str] = list(RCTSpec.outcomes)
    covariates: list[str] | None = None  # None: every numeric column without another role
    nodata: float | None = None  # the fill value of imagery bands that carry no nodata tag (e.g. -32768)

    def rct_spec(self, min_arm_size: int = RCTSpec.min_arm_size) -> RCTSpec:
        covariates = tuple(self.covariates) if self.covariates is not None else None
        return RCTSpec(outcomes=tuple(self.outcomes), covariates=covariates, min_arm_size=min_arm_size)

    @property
    def is_demo(self) -> bool:
        return self.trials is None


class CrossFittingResource(Resource):
    """The cross-fitting folds shared by the supervised encoders and the CATE learners.

    One setting, so that a unit's encoder never saw its outcome and its CATE model never saw it
    either, with the same fold for both.
    """

    folds: int = CrossFitting.folds
    seed: int = CrossFitting.seed

    def scheme(self) -> CrossFitting:
        return CrossFitting(self.folds, self.seed)


class ComputeResource(Resource):
    """Where torch runs: ``auto`` picks CUDA when present, else CPU (``num_threads`` caps CPU threads)."""

    device: str = "auto"
    num_threads: int | None = None

    def torch_device(self):
        import torch

        from models.representation.training import resolve_device

        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        return resolve_device(self.device)
