"""Jobs, schedules and sensors that re-run the asset graph."""

import hashlib
import json
from pathlib import Path

import dagster as dg

from models.catalog import imagery_files
from pipelines.resources import StudySource

all_assets_job = dg.define_asset_job("eotrials_job", selection=dg.AssetSelection.all(), description="Materialize the whole graph.")
ingest_job = dg.define_asset_job(
    "ingest_job", selection=dg.AssetSelection.groups("ingest"), description="Re-read the trial and the imagery."
)
evidence_job = dg.define_asset_job(
    "evidence_job",
    selection=dg.AssetSelection.groups("ingest", "representation", "causal"),
    description="The trial's heterogeneity evidence: ingest, encoders and embeddings, CATEs and their tests.",
)

weekly_refresh = dg.ScheduleDefinition(
    name="weekly_refresh",
    job=all_assets_job,
    cron_schedule="0 3 * * 1",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Re-run everything on Monday nights (off until switched on in the UI).",
)


def imagery_state(source: str) -> dict[str, float | None]:
    """Modification time of every file of an imagery source (a folder's rasters, or a catalog CSV
    and the files it lists; None for a listed file that is missing): the sensor's view of it."""
    return {str(p): (p.stat().st_mtime if p.exists() else None) for p in imagery_files(source)}


def state_digest(state: dict) -> str:
    """A digest of the state that is the same in every process (Python's ``hash`` is salted per process)."""
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]


@dg.sensor(job=ingest_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.STOPPED)
def new_imagery_sensor(context: dg.SensorEvaluationContext, source: StudySource):
    """Re-ingest when a scene is added to or changed in the configured imagery folder or catalog CSV."""
    if source.imagery is None:
        return dg.SkipReason("StudySource.imagery is not set (the demo is simulated, nothing to watch)")
    state = imagery_state(source.imagery)
    previous = json.loads(context.cursor) if context.cursor else {}
    if state == previous:
        return dg.SkipReason("no new or changed scenes")
    context.update_cursor(json.dumps(state))
    changed = sorted(Path(p).name for p, mtime in state.items() if previous.get(p, -1) != mtime)
    return dg.RunRequest(run_key=f"imagery-{state_digest(state)}", tags={"changed_scenes": ",".join(changed)[:200]})
