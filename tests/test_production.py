"""The production deployment on real servers: PostgreSQL run/event/schedule storage, the queued run
coordinator drained by dagster-daemon, and the Celery executor with a Redis broker and two workers,
all on loopback (deploy/dagster.yaml, deploy/celery.yaml). The demo's ingest, representation and
causal groups (``evidence_job``) are launched through the webserver's GraphQL API."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance
from dagster_graphql import DagsterGraphQLClient

from tests.services import BIN, ROOT, Processes, free_port, http_ok, port_open, require, wait_for_run, wait_until

pytestmark = pytest.mark.slow


def as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to Debian's ``postgres`` user when we are root."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """PostgreSQL, Redis, webserver, daemon and two Celery workers; yields (GraphQL client, env, logs)."""
    initdb, pg_ctl = require("initdb", "postgresql"), require("pg_ctl", "postgresql")
    redis = require("redis-server", "redis-server")
    root = tmp_path_factory.mktemp("prod")
    pgdata = Path(tempfile.mkdtemp(prefix="eotrials-pg-"))  # outside pytest's root-only tmp dir
    if os.geteuid() == 0:
        shutil.chown(pgdata, "postgres")
    pg_port, redis_port, web_port = free_port(), free_port(), free_port()
    subprocess.run(as_postgres([initdb, "-D", str(pgdata / "db"), "-U", "dagster", "--auth=trust"]), check=True, capture_output=True)
    options = f"-p {pg_port} -k {pgdata} -c listen_addresses=127.0.0.1"
    pg_cmd = as_postgres([pg_ctl, "-D", str(pgdata / "db"), "-o", options, "-l", str(pgdata / "postgres.log"), "-w"])
    subprocess.run([*pg_cmd, "start"], check=True, capture_output=True)
    home = root / "home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    env = os.environ | {
        "DAGSTER_HOME": str(home),
        "EOTRIALS_DATA": str(root / "data"),
        "EOTRIALS_DEVICE": "cpu",
        "EOTRIALS_CELERY_BROKER": f"redis://127.0.0.1:{redis_port}/0",
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": str(pg_port),
        "DAGSTER_PG_USER": "dagster",
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": "postgres",
        "OMP_NUM_THREADS": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",  # dagster-celery calls `celery` by name
    }
    servers = Processes(root / "logs", env)
    try:
        servers.start("redis", [redis, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        wait_until(port_open(redis_port), "redis-server")
        celery = [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(ROOT / "deploy" / "celery.yaml")]
        for name in ("worker1", "worker2"):
            worker = servers.start(name, [*celery, "-n", f"{name}@%h", "--", "--concurrency", "1", "--prefetch-multiplier", "1"])
            wait_until(lambda name=name: " ready." in servers.log(name), f"celery {name}", timeout=60, process=worker)
        web = servers.start("webserver", [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(web_port)])
        servers.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"])
        wait_until(http_ok(f"http://127.0.0.1:{web_port}/server_info"), "dagster-webserver", timeout=120, process=web)
        yield DagsterGraphQLClient("127.0.0.1", port_number=web_port), env, servers
    finally:
        servers.stop()
        subprocess.run([*pg_cmd, "stop", "-m", "fast"], capture_output=True)
        shutil.rmtree(pgdata, ignore_errors=True)


def test_evidence_job_runs_on_postgres_and_two_celery_workers(stack):
    client, env, servers = stack
    os.environ.update({k: v for k, v in env.items() if k.startswith("DAGSTER_PG_")})
    instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
    instance.add_dynamic_partitions("trials", ["west"])  # as the trials sensor would, in PostgreSQL
    chunked = {"ops": {"unit_image_sequences": {"config": {"chunk_px": 512}}}}  # the demo's 1024 px region in 512 px squares
    run_id = client.submit_job_execution("evidence_job", run_config=chunked, tags={"dagster/partition": "west"})
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
