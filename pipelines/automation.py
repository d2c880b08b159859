"""Jobs, schedules and sensors that re-run the asset graph: the shared map once, every trial by partition."""

import hashlib
import json
from pathlib import Path

import dagster as dg

from assets.partitions import trials
from models.ingest.catalog import imagery_files
from models.ingest.trial_folder import LOOKED_FOR, TrialFolder, scan_trials
from pipelines.resources import StorageResource, StudySource

TRIAL_ASSETS = dg.AssetSelection.assets("rct_units").downstream() - dg.AssetSelection.assets("analyst_database")
SHARED_ASSETS = dg.AssetSelection.all() - dg.AssetSelection.assets("rct_units").downstream()

all_assets_job = dg.define_asset_job(
    "eotrials_job",
    selection=dg.AssetSelection.all(),
    description="The whole graph for one trial (a partition), the shared imagery, map and corrections included.",
)
map_job = dg.define_asset_job(
    "map_job",
    selection=SHARED_ASSETS,
    description="What every trial shares: the study's inputs, the imagery catalog, land cover, the wealth map and its corrections.",
)
trial_job = dg.define_asset_job(
    "trial_job",
    selection=TRIAL_ASSETS,
    description="One trial's units, chips, encoders, CATEs, heterogeneity evidence, attribution, debiased outcomes and report.",
)
evidence_job = dg.define_asset_job(
    "evidence_job",
    selection=dg.AssetSelection.groups("ingest", "representation", "causal") - SHARED_ASSETS
    | dg.AssetSelection.assets("study_inputs", "imagery_catalog"),
    description="One trial's heterogeneity evidence: ingest, encoders and embeddings, CATEs and their tests.",
)
analyst_job = dg.define_asset_job(
    "analyst_job", selection=dg.AssetSelection.assets("analyst_database"), description="The DuckDB database over every trial's tables."
)

weekly_map_refresh = dg.ScheduleDefinition(
    name="weekly_map_refresh",
    job=map_job,
    cron_schedule="0 3 * * 1",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Re-fit the shared map on Monday nights (off until switched on in the UI); trials' debiased outcomes follow it.",
)


@dg.schedule(job=trial_job, cron_schedule="0 5 * * 1", default_status=dg.DefaultScheduleStatus.STOPPED)
def weekly_trials_refresh(context: dg.ScheduleEvaluationContext, source: StudySource, storage: StorageResource):
    """Re-run every trial that still has a table on Monday mornings, after the map (off until
    switched on in the UI). A trial whose table was removed is retired: not scheduled, its outputs
    kept readable, and said so in the log."""
    keys = context.instance.get_dynamic_partitions(trials.name)
    if not keys:
        return dg.SkipReason("no trials yet: drop a trial table into the trials folder")
    folder = trials_folder(source, storage)
    present = set(scan_trials(folder).tables) if folder.is_dir() else set()
    retired = [key for key in keys if key not in present]
    if retired:
        context.log.warning(f"retired trials, not re-run (their tables are gone from {folder}; outputs kept): {', '.join(retired)}")
    stamp = context.scheduled_execution_time.strftime("%Y%m%d")
    requests = [dg.RunRequest(run_key=f"{key}-{stamp}", partition_key=key) for key in keys if key in present]
    return requests or dg.SkipReason(f"every trial's table is gone from {folder}: nothing to re-run ({', '.join(retired)} retired)")


def trials_folder(source: StudySource, storage: StorageResource) -> Path:
    """The folder of trial tables: ``StudySource.trials``, or the demo's under the storage root."""
    return Path(source.trials) if source.trials else storage.path("demo_study", "trials")


def trial_state(folder: Path | TrialFolder) -> dict[str, float]:
    """Each trial table's modification time by key: the trials sensor's view of the folder."""
    scan = folder if isinstance(folder, TrialFolder) else scan_trials(folder)
    return {key: path.stat().st_mtime for key, path in scan.tables.items()}


def trial_requests(state: dict[str, float], previous: dict[str, float], known: set[str]) -> tuple[list[str], list[str]]:
    """Trials to add as partitions (tables not yet known) and trials to re-run (new, or a table that
    changed since the sensor last looked)."""
    new = sorted(set(state) - known)
    changed = sorted(k for k in state if k in known and k in previous and previous[k] != state[k])
    return new, new + changed


@dg.sensor(job=trial_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
def trial_tables_sensor(context: dg.SensorEvaluationContext, source: StudySource, storage: StorageResource):
    """A trial table dropped into the trials folder adds its trial as a partition and runs it; a
    table that changes re-runs its trial. A file that is not a trial table (Excel, text, a name with
    spaces) is named in the log with its fix and blocks no other trial; a removed table retires its
    trial (not re-run, outputs kept)."""
    folder = trials_folder(source, storage)
    if not folder.is_dir():
        return dg.SkipReason(
            f"no trials folder at {folder} (looked for {LOOKED_FOR} files): set StudySource.trials, or materialize study_inputs for the demo"
        )
    scan = scan_trials(folder)
    for name, problem in scan.problems.items():
        context.log.warning(f"{folder / name}: {problem}")
    known = set(context.instance.get_dynamic_partitions(trials.name))
    retired = sorted(known - set(scan.tables))
    if retired:
        context.log.warning(f"tables gone from {folder}: {', '.join(retired)} retired (not re-run; their outputs stay readable)")
    state = trial_state(scan)
    previous = json.loads(context.cursor) if context.cursor else {}
    new, run = trial_requests(state, previous, known)
    if not run:
        context.update_cursor(json.dumps(state))
        return dg.SkipReason(_nothing_to_run(scan, retired))
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"{key}-{state[key]}", partition_key=key) for key in run],
        dynamic_partitions_requests=[trials.build_add_request(new)] if new else [],
        cursor=json.dumps(state),
    )


def _nothing_to_run(scan: TrialFolder, retired: list[str]) -> str:
    """The skip reason: why nothing runs, with every file that is not a trial and what to do."""
    if not scan.tables and not scan.problems:
        reason = f"the trials folder {scan.folder} is empty: drop one {LOOKED_FOR} file per trial, named by its key"
    else:
        reason = f"no new or changed trial tables in {scan.folder}"
    if scan.problems:
        reason += f". Not trial tables: {scan.describe()}"
    if retired:
        reason += f". Retired (table gone): {', '.join(retired)}"
    return reason


def imagery_state(source: str) -> dict[str, float | None]:
    """Modification time of every file of an imagery source (a folder's rasters, or a catalog CSV
    and the files it lists; None for a listed file that is missing): the sensor's view of it."""
    return {str(p): (p.stat().st_mtime if p.exists() else None) for p in imagery_files(source)}


def state_digest(state: dict) -> str:
    """A digest of the state that is the same in every process (Python's ``hash`` is salted per process)."""
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]


@dg.sensor(job=map_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.STOPPED)
def new_imagery_sensor(context: dg.SensorEvaluationContext, source: StudySource):
    """Re-read the imagery and re-fit the shared map when a scene is added to or changed in the
    configured imagery folder or catalog CSV (the trials' debiased outcomes follow the map)."""
    if source.imagery is None:
        return dg.SkipReason("StudySource.imagery is not set (the demo is simulated, nothing to watch)")
    state = imagery_state(source.imagery)
    previous = json.loads(context.cursor) if context.cursor else {}
    if state == previous:
        return dg.SkipReason("no new or changed scenes")
    context.update_cursor(json.dumps(state))
    changed = sorted(Path(p).name for p, mtime in state.items() if previous.get(p, -1) != mtime)
    return dg.RunRequest(run_key=f"imagery-{state_digest(state)}", tags={"changed_scenes": ",".join(changed)[:200]})
