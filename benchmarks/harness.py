"""What every benchmark shares: one fresh process per measurement, its wall time and peak RSS, and a
record of the environment the figures came from, the machine's speed (``host_seconds``) among it.

    from harness import measure, write_results
    row = measure(fit_one, "causal_forest", 10_000, limit=1200)   # {'seconds': ..., 'peak_rss_mb': ..., **fit_one's dict}
    write_results("benchmarks/results/x.json", rows, vars(args))

A fresh ``spawn`` process per measurement means the peak RSS is the measurement's own (not the
largest so far), imports and caches start cold, and a run past ``limit`` is stopped, not waited on.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import multiprocessing as mp
import os
import platform
import resource
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

PACKAGES = ("numpy", "pandas", "scikit-learn", "econml", "torch", "rasterio", "xarray", "zarr", "dagster")


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB.

    Linux keeps ``ru_maxrss`` across ``execve``, so a spawned child would report its parent's peak
    when that is larger; ``VmHWM`` belongs to the process's own address space and starts afresh.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(fn: Callable[..., dict | None], args: tuple, kwargs: dict, queue) -> None:
    try:
        started = time.perf_counter()
        result = fn(*args, **kwargs) or {}
        seconds = time.perf_counter() - started
        queue.put({"seconds": round(seconds, 3), "peak_rss_mb": round(peak_rss_mb()), **result})
    except Exception as error:  # reported as the row's status, the benchmark goes on
        queue.put({"status": f"failed: {type(error).__name__}: {error}"[:300]})


def measure(fn: Callable[..., dict | None], *args, limit: float | None = None, **kwargs) -> dict:
    """Run ``fn(*args, **kwargs)`` in a fresh process: its dict plus ``seconds`` (the call alone) and
    ``peak_rss_mb``; ``status`` says when it failed or ran past ``limit`` seconds. ``fn`` must be
    importable (module level), its arguments picklable."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, args, kwargs, queue))
    proc.start()
    proc.join(limit)
    if proc.is_alive():
        proc.kill()
        proc.join()
        return {"status": f"stopped after {limit:.0f} s"}
    return queue.get() if not queue.empty() else {"status": f"failed: exit code {proc.exitcode}"}


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=10
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else None
    except OSError:
        return None


def _cpu() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _gpu() -> dict | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return {"name": torch.cuda.get_device_name(0), "cuda": torch.version.cuda, "count": torch.cuda.device_count()}


@functools.cache
def host_seconds(repeats: int = 3) -> float:
    """Seconds a fixed single-thread workload takes here (the best of ``repeats``): a regression tree
    on 10,000 x 20 seeded values, like the tree building that dominates the large runs. Machines of
    one kind differ from day to day (1.35x to 1.7x for the same code, docs/scaling.md), so figures
    from different results files compare only at a similar ``host_seconds``."""
    import numpy as np
    from sklearn.tree import DecisionTreeRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(10_000, 20))
    y = X[:, 0] * X[:, 1] + rng.normal(size=len(X))
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        DecisionTreeRegressor(min_samples_leaf=5, random_state=0).fit(X, y)
        best = min(best, time.perf_counter() - started)
    return round(best, 4)


def environment() -> dict:
    """Git SHA, Python, package versions, CPU, GPU, thread settings and ``host_seconds`` of this machine."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    threads = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    try:
        import torch

        threads["torch"] = torch.get_num_threads()
    except ImportError:
        pass
    return {
        "git_sha": _git_sha(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu(),
        "cpu_count": os.cpu_count(),
        "gpu": _gpu(),
        "threads": threads,
        "host_seconds": host_seconds(),
        "packages": versions,
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_results(path: str | Path, rows: list[dict], args: dict, **extra) -> Path:
    """Rows, the arguments and the environment as one JSON file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"environment": environment(), "args": args, **extra, "rows": rows}, indent=2, default=str))
    return path
