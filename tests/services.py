"""Real servers for end-to-end tests: start a program on loopback, wait until it answers, stop it.

The servers (dagster-webserver, dagster-daemon, PostgreSQL, Redis, Celery workers, Chromium) are
real processes from the virtual environment or Debian's packages; ``make test`` installs the
Debian ones (``make servers``). A missing one fails the test that needs it, naming the package.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ARTIFACTS = Path(os.environ.get("EOTRIALS_TEST_ARTIFACTS", ROOT / "test-artifacts"))


def require(program: str, package: str) -> str:
    """Path of ``program``; fail naming Debian's ``package`` when it is not installed."""
    path = shutil.which(program) or next((str(p) for p in Path("/usr/lib/postgresql").glob(f"*/bin/{program}")), None)
    if not path:
        pytest.fail(f"{program} not found: install Debian's {package} (`make servers` or `apt-get install {package}`)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(ready: Callable[[], bool], what: str, timeout: float = 60, process: subprocess.Popen | None = None) -> None:
    """Poll ``ready`` until it returns True; fail naming ``what`` on timeout or if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before it was ready")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


def http_ok(url: str) -> Callable[[], bool]:
    return lambda: urllib.request.urlopen(url, timeout=5).status == 200


def port_open(port: int) -> Callable[[], bool]:
    def probe() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True

    return probe


class Processes:
    """Background programs with their output in log files; ``stop`` ends their process groups."""

    def __init__(self, logs: Path, env: dict[str, str]):
        self.logs, self.env, self.running = logs, env, []
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")  # noqa: SIM115 - closed with the process in stop()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.running.append((proc, log))
        return proc

    def log(self, name: str, full: bool = False) -> str:
        """A program's output so far (its last 4,000 characters unless ``full``)."""
        text = (self.logs / f"{name}.log").read_text()
        return text if full else text[-4000:]

    def stop(self) -> None:
        for proc, log in reversed(self.running):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            log.close()
        self.running.clear()


def wait_for_run(client, run_id: str, timeout: float) -> str:
    """Poll a run's status through GraphQL until it ends; return the final status name."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id).value
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(3)
    raise TimeoutError(f"run {run_id} still running after {timeout:.0f} s")


def as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to Debian's ``postgres`` user when we are root."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextlib.contextmanager
def production_stack(root: Path, webserver: bool = True, workers: int = 2) -> Iterator[tuple[dict[str, str], Processes, int]]:
    """deploy/'s production set-up on loopback: PostgreSQL storage, Redis, ``workers`` Celery
    workers and (with ``webserver``) the webserver and the daemon over a fresh DAGSTER_HOME under
    ``root``. Yields the environment that reaches them, the processes and the webserver's port."""
    initdb, pg_ctl = require("initdb", "postgresql"), require("pg_ctl", "postgresql")
    redis = require("redis-server", "redis-server")
    pgdata = Path(tempfile.mkdtemp(prefix="eotrials-pg-"))  # outside pytest's root-only tmp dir
    if os.geteuid() == 0:
        shutil.chown(pgdata, "postgres")
    pg_port, redis_port, web_port = free_port(), free_port(), free_port()
    subprocess.run(as_postgres([initdb, "-D", str(pgdata / "db"), "-U", "dagster", "--auth=trust"]), check=True, capture_output=True)
    options = f"-p {pg_port} -k {pgdata} -c listen_addresses=127.0.0.1"
    pg_cmd = as_postgres([pg_ctl, "-D", str(pgdata / "db"), "-o", options, "-l", str(pgdata / "postgres.log"), "-w"])
    subprocess.run([*pg_cmd, "start"], check=True, capture_output=True)
    home = root / "home"
    home.mkdir(parents=True)
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
        for name in (f"worker{i + 1}" for i in range(workers)):
            worker = servers.start(name, [*celery, "-n", f"{name}@%h", "--", "--concurrency", "1", "--prefetch-multiplier", "1"])
            wait_until(lambda name=name: " ready." in servers.log(name), f"celery {name}", timeout=60, process=worker)
        if webserver:
            cmd = [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(web_port)]
            web = servers.start("webserver", cmd)
            servers.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"])
            wait_until(http_ok(f"http://127.0.0.1:{web_port}/server_info"), "dagster-webserver", timeout=120, process=web)
        yield env, servers, web_port
    finally:
        servers.stop()
        subprocess.run([*pg_cmd, "stop", "-m", "fast"], capture_output=True)
        shutil.rmtree(pgdata, ignore_errors=True)
