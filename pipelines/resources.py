"""Configurable resources: where the study comes from and where outputs go."""

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from models.rct import RCTSpec


class StorageResource(dg.ConfigurableResource):
    """Root folder of every materialized output (tables, cubes, rasters) that analysts read."""

    root: str = "data"

    def path(self, *parts: str) -> Path:
        return Path(self.root).joinpath(*parts)

    def staging_dir(self) -> Path:
        """A fresh folder on the same filesystem as the outputs, so the final rename is atomic."""
        base = self.path(".staging")
        base.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=base))

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A staging folder that is removed if the asset fails (the IO manager empties it on success)."""
        folder = self.staging_dir()
        try:
            yield folder
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise


class StudySource(dg.ConfigurableResource):
    """The trial and its imagery. Leave ``rct_table`` empty to simulate the embedded demo study.

    ``imagery`` is a folder of dated GeoTIFF/COG files or a catalog CSV (columns date, path).
    """

    rct_table: str | None = None
    imagery: str | None = None
    survey_table: str | None = None
    band_names: list[str] | None = None
    outcomes: list[str] = ["outcome"]
    covariates: list[str] | None = None  # None: every numeric column without another role

    def rct_spec(self, min_arm_size: int = 10) -> RCTSpec:
        covariates = tuple(self.covariates) if self.covariates is not None else None
        return RCTSpec(outcomes=tuple(self.outcomes), covariates=covariates, min_arm_size=min_arm_size)

    @property
    def is_demo(self) -> bool:
        return self.rct_table is None


class ComputeResource(dg.ConfigurableResource):
    """Where torch runs: ``auto`` picks CUDA when present, else CPU (``num_threads`` caps CPU threads)."""

    device: str = "auto"
    num_threads: int | None = None

    def torch_device(self):
        import torch

        from models.training import resolve_device

        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        return resolve_device(self.device)
