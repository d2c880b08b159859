"""Real servers for end-to-end tests: start a program on loopback, wait until it answers, stop it.

The servers (dagster-webserver, dagster-daemon, PostgreSQL, Redis, Celery workers, Chromium) are
real processes from the virtual environment or Debian's packages; ``make test`` installs the
Debian ones (``make servers``). A missing one fails the test that needs it, naming the package.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
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
