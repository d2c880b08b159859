"""The one ``Definitions`` object of the eotrials code location."""

import dagster as dg

from assets import causal, debiasing, generalization, ingest, representation, simulation
from pipelines.automation import all_assets_job, ingest_job, new_imagery_sensor, weekly_refresh
from pipelines.io_managers import LocalStorageIOManager
from pipelines.resources import ComputeResource, StorageResource, StudySource

storage = StorageResource(root=dg.EnvVar("EOTRIALS_DATA").get_value("data"))

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingest, representation, causal, generalization, simulation, debiasing]),
    asset_checks=dg.load_asset_checks_from_modules([ingest, representation, causal, generalization, simulation, debiasing]),
    jobs=[all_assets_job, ingest_job],
    schedules=[weekly_refresh],
    sensors=[new_imagery_sensor],
    resources={
        "io_manager": LocalStorageIOManager(storage=storage),
        "storage": storage,
        "source": StudySource(),
        "compute": ComputeResource(device=dg.EnvVar("EOTRIALS_DEVICE").get_value("auto")),
    },
)
