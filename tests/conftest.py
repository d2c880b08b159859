"""Shared fixtures: a small simulated study and tiny hand-made rasters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin

from models.simulation.simulator import SimulationConfig, simulate_study

NC_LANDSAT = Path(__file__).parent / "data" / "nc_landsat7_2000"
SMALL = SimulationConfig(n_units=150, n_survey=200, n_dates=4, region_px=256, chip_size=16, seed=1)


@pytest.fixture(scope="session")
def small_study(tmp_path_factory):
    return simulate_study(SMALL, tmp_path_factory.mktemp("study"))


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """The tiny demo (``tests/tiny_demo.py``) materialized once per session by the README's main
    command: the CLI test reads its outputs, the UI test serves its instance."""
    from tests import tiny_demo as demo

    return demo.build(tmp_path_factory.mktemp("tiny_demo"))


def write_raster(path: Path, data: np.ndarray, crs: str, transform, nodata=None) -> Path:
    """Write a (C, H, W) array as a GeoTIFF."""
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(data)
    return path


def ramp(height: int = 40, width: int = 50, bands: int = 2) -> np.ndarray:
    """Band b, row r, col c holds 1000 * b + 100 * r + c: every pixel identifies itself."""
    b, r, c = np.mgrid[0:bands, 0:height, 0:width]
    return (1000 * b + 100 * r + c).astype(np.float32)


def lonlat_of_pixel(crs: str, transform, row: float, col: float) -> tuple[float, float]:
    """EPSG:4326 coordinates of the centre of pixel (row, col)."""
    x, y = rasterio.transform.xy(transform, row, col)  # pixel centre
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    return float(lon), float(lat)


UTM36 = "EPSG:32636"
GRID = from_origin(500_000, 60_000, 10, 10)


DEMO_TRIAL = SMALL.trials[0]


def selection_of(assets, checks):
    """The assets and every check of the given definitions (a check may target an upstream asset)."""
    import dagster as dg

    keys = [key for a in assets for key in a.keys]
    check_keys = [key for c in checks for key in c.check_keys] + [key for a in assets for key in a.check_keys]
    return dg.AssetSelection.assets(*keys) | dg.AssetSelection.checks(*check_keys)


def materialize_modules(
    modules, root, source=None, ops=None, raise_on_error=True, folds=None, trial=DEMO_TRIAL, instance=None, materialized=()
):
    """Materialize every asset and check of ``modules`` with storage under ``root``, on the CPU: the
    shared assets and, for the trial-level ones, the partition ``trial`` (registered first). The
    assets of the ``materialized`` modules are already under ``root``: read, not run again."""
    import dagster as dg

    from assets.partitions import trials
    from pipelines.definitions import resources
    from pipelines.resources import ComputeResource, CrossFittingResource, StorageResource

    res = resources(StorageResource(root=str(root)), source, ComputeResource(device="cpu"))
    if folds is not None:
        res["cross_fitting"] = CrossFittingResource(folds=folds)
    assets = dg.load_assets_from_modules(modules)
    upstream = dg.load_assets_from_modules(materialized) if materialized else []
    nodes = {a.node_def.name for a in assets}
    partitioned = any(a.partitions_def is not None for a in assets)
    instance = instance or dg.DagsterInstance.ephemeral()
    if partitioned:
        instance.add_dynamic_partitions(trials.name, [trial])
    checks = dg.load_asset_checks_from_modules(modules)
    return dg.materialize(
        [*assets, *upstream, *checks],
        selection=selection_of(assets, checks) if upstream else None,
        resources=res,
        run_config=dg.RunConfig(ops={name: value for name, value in (ops or {}).items() if name in nodes}),
        raise_on_error=raise_on_error,
        partition_key=trial if partitioned else None,
        instance=instance,
    )


def pytest_collection_modifyitems(config, items):
    """GPU tests run where CUDA is present and are reported as skipped (with the reason) elsewhere."""
    import torch

    if torch.cuda.is_available():
        return
    marker = pytest.mark.skip(reason="needs a CUDA device: run `pytest -m gpu` on the GPU machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(marker)


def materialize_assets(assets: list, root: Path):
    """Materialize ``assets`` with the project's IO managers under ``root``; failures are returned, not raised."""
    import dagster as dg

    from pipelines.io_managers import io_managers
    from pipelines.resources import StorageResource

    storage = StorageResource(root=str(root))
    return dg.materialize(assets, resources={"storage": storage, **io_managers(storage)}, raise_on_error=False)


def materialize_asset(asset_fn, root: Path):
    """One asset, as :func:`materialize_assets`."""
    return materialize_assets([asset_fn], root)


def toy_trial(n: int = 40) -> pd.DataFrame:
    """A valid trial table of ``n`` units near (33.1 E, 0.4 N), alternating treatment."""
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "unit_id": [f"u{i}" for i in range(n)],
            "lon": rng.uniform(33.0, 33.2, n),
            "lat": rng.uniform(0.3, 0.5, n),
            "treatment": np.tile([0, 1], n // 2),
            "outcome": rng.standard_normal(n),
            "age": rng.integers(20, 60, n).astype(float),
        }
    )
