"""Jobs, schedules and sensors that re-run the asset graph."""

import json
from pathlib import Path

import dagster as dg

from models.catalog import RASTER_SUFFIXES
from pipelines.resources import StudySource

all_assets_job = dg.define_asset_job("eotrials_job", selection=dg.AssetSelection.all(), description="Materialize the whole graph.")
ingest_job = dg.define_asset_job("ingest_job", selection=dg.AssetSelection.groups("ingest"), description="Re-read the trial and the imagery.")

weekly_refresh = dg.ScheduleDefinition(
    name="weekly_refresh",
    job=all_assets_job,
    cron_schedule="0 3 * * 1",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Re-run everything on Monday nights (off until switched on in the UI).",
)


def imagery_state(folder: str) -> dict[str, float]:
    """Modification time of every raster in an imagery folder: the sensor's view of it."""
    root = Path(folder)
    if not root.is_dir():
        return {}
    return {p.name: p.stat().st_mtime for p in sorted(root.iterdir()) if p.suffix.lower() in RASTER_SUFFIXES}


@dg.sensor(job=ingest_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.STOPPED)
def new_imagery_sensor(context: dg.SensorEvaluationContext, source: StudySource):
    """Re-ingest when a scene is added to or changed in the configured imagery folder."""
    if source.imagery is None:
        return dg.SkipReason("StudySource.imagery is not set (the demo is simulated, nothing to watch)")
    state = imagery_state(source.imagery)
    previous = json.loads(context.cursor) if context.cursor else {}
    if state == previous:
        return dg.SkipReason("no new or changed scenes")
    context.update_cursor(json.dumps(state))
    changed = sorted(name for name, mtime in state.items() if previous.get(name) != mtime)
    return dg.RunRequest(run_key=f"imagery-{hash(json.dumps(state, sort_keys=True))}", tags={"changed_scenes": ",".join(changed)[:200]})
