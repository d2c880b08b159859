"""The production deployment on real servers: PostgreSQL run/event/schedule storage, the queued run
coordinator drained by dagster-daemon, and the Celery executor with a Redis broker and two workers,
all on loopback (deploy/dagster.yaml, deploy/celery.yaml). The demo's ingest, representation and
causal groups (``evidence_job``, on the tiny demo's config) are launched through the webserver's GraphQL API."""

from __future__ import annotations

import copy
import os
import re

import pytest
from dagster import AssetKey, DagsterInstance
from dagster_graphql import DagsterGraphQLClient

from pipelines.definitions import defs
from pipelines.demo import job_config
from tests.services import production_stack, wait_for_run
from tests.tiny_demo import CONFIG, REGION_PX

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """PostgreSQL, Redis, webserver, daemon and two Celery workers; yields (GraphQL client, env, logs)."""
    with production_stack(tmp_path_factory.mktemp("prod")) as (env, servers, port):
        yield DagsterGraphQLClient("127.0.0.1", port_number=port), env, servers


def test_evidence_job_runs_on_postgres_and_two_celery_workers(stack):
    client, env, servers = stack
    os.environ.update({k: v for k, v in env.items() if k.startswith("DAGSTER_PG_")})
    instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
    instance.add_dynamic_partitions("trials", ["west"])  # as the trials sensor would, in PostgreSQL
    config = job_config(
        defs.resolve_job_def("evidence_job"), copy.deepcopy(CONFIG)
    )  # the tiny demo, its region in squares of half its side
    config["ops"]["unit_image_sequences"]["config"]["chunk_px"] = REGION_PX // 2
    run_id = client.submit_job_execution("evidence_job", run_config=config, tags={"dagster/partition": "west"})
    status = wait_for_run(client, run_id, timeout=1500)
    assert status == "SUCCESS", f"run {run_id}: {status}\n" + servers.log("daemon")

    # The run, its events and the trials' partitions live in PostgreSQL, not in files under DAGSTER_HOME.
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    run = instance.get_run_by_id(run_id)
    assert run is not None and run.job_name == "evidence_job"
    assert instance.get_latest_materialization_event(AssetKey("heterogeneity_evaluation")) is not None
    assert instance.get_dynamic_partitions("trials") == ["west"] and run.tags["dagster/partition"] == "west"

    # Every step ran as a Celery task, and both workers took some of them.
    done = {
        name: len(re.findall(r"Task execute_plan\[[^\]]+\] succeeded", servers.log(name, full=True))) for name in ("worker1", "worker2")
    }
    step_keys = {e.step_key for e in instance.all_logs(run_id) if e.step_key}
    steps = len(step_keys)
    assert len([k for k in step_keys if k.startswith("unit_image_sequences.extract_chip_chunk[")]) >= 2  # the west trial's squares
    assert min(done.values()) >= 1, done
    assert sum(done.values()) == steps, (done, steps)
