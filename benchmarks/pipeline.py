"""The whole asset graph for one trial at several trial sizes: wall time, peak memory, compute time
per group and its growth exponent, and the same graph on each executor: the multiprocess executor,
one process (in-process), and Celery workers on Redis with PostgreSQL storage (deploy/).

    python benchmarks/pipeline.py                                   # 1,000 and 3,000 units, in-process
    python benchmarks/pipeline.py --units 1000 10000 100000 --limit 3300
    python benchmarks/pipeline.py --units 1000 --executors multiprocess in_process celery --executor-units 1000
    python benchmarks/pipeline.py --merge results/a.json results/b.json --out results/pipeline.json  # one commit's sizes
    python benchmarks/pipeline.py --units 100000 --shrink-above 100000 --executor multiprocess \
        --select '+key:"land_cover_maps" or +key:"grid_embeddings" or +key:"map_grid_embeddings"'  # the region's steps

Each size runs `dagster asset materialize -m pipelines.definitions --partition west` in a fresh
DAGSTER_HOME and data root (the trial registered first, as the trials sensor would), with
everything at demo settings except what grows with the trial: one trial of ``units`` units over
the whole simulated region, which grows with it (constant density: ``region_px`` ~ sqrt(units));
the survey stays at 3,000 places (the map is fitted once, whatever the trial). The simulation study
is left out: it simulates its own trials and does not grow with the trial (its cost is in
benchmarks/results/simulation_default_grid.md).

Above ``--shrink-above`` units (default 10,000) the region stops growing, and the row says so
(``shrunk``): it stays at its 10,000-unit size (the units grow denser), because the simulated
imagery, the land-cover maps and both grids grow with area, not with the trial: a 100,000-unit
region (10,240 px) is about 7 GB of compressed imagery. ``--shrink-above 100000`` grows it (the
simulator writes it strip by strip; ``pipeline_region.json``, the region's steps alone). ``cate_estimates`` fits every learner at every size (it fitted the
T-learner only above 10,000 units before the forests split on quantile bins with every core:
benchmarks/cate_estimates.py). The encoders train on at most ``max_train_units`` (20,000, their
default) and embed every unit streamed. Exponents use the sizes run at the same settings only.

Per-group time is the sum of its steps' durations (on the multiprocess executor steps of different
groups run side by side, so they add up to more than the wall time). The growth exponent of a group
is the slope of log(time) on log(units) across the sizes. Peak memory is sampled every 0.5 s over
the run's process tree and, on Celery, the workers' trees, and per process: each step's row in
``steps`` has its duration and the peak of the process it ran in (its own on the multiprocess
executor, so ``--executor multiprocess`` gives every step's peak memory).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from harness import write_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.services: the production stack the Celery runs use
SELECTION = "* and not group:simulation"
TRIAL = "west"
EXECUTORS = ("multiprocess", "in_process", "celery")


def region_px(units: int) -> int:
    """The side of a region that holds ``units`` at the demo's density (1,024 px for 1,000 units)."""
    return int(1024 * math.sqrt(units / 1000) // 64 * 64)


def run_config(units: int, executor: str, processes: int, shrink_above: int, extra_ops: dict | None = None) -> dict:
    """Demo settings for a trial of ``units``; above ``shrink_above`` the region stops growing (see
    the module docstring). ``extra_ops`` (op config, as in
    run config) is merged under the size's own settings: a smoke run's fewer epochs, say."""
    ops: dict = {name: {"config": dict(value.get("config", {}))} for name, value in (extra_ops or {}).items()}
    ops.setdefault("study_inputs", {"config": {}})["config"].update(
        {"n_units": units, "region_px": region_px(min(units, shrink_above)), "trials": [TRIAL]}
    )
    config: dict = {"ops": ops}
    if executor != "celery":  # Celery's executor is chosen by EOTRIALS_CELERY_BROKER and configured in pipelines/executors.py
        chosen = {"in_process": {}} if executor == "in_process" else {"multiprocess": {"max_concurrent": processes}}
        config["execution"] = {"config": chosen}
    return config


def sample_peaks(proc: psutil.Popen, others: list[int], started: float, limit: float) -> tuple[float, dict[int, float]]:
    """Peak RSS (MB) of the run's process tree plus ``others``' trees (Celery workers), and of each
    process by pid (a step's pid is in its events: ``step_table``)."""
    tree_peak, per_pid = 0.0, {}
    while proc.poll() is None and time.perf_counter() - started < limit:
        try:
            roots = [proc, *(psutil.Process(pid) for pid in others)]
            rss = {p.pid: p.memory_info().rss / 2**20 for root in roots for p in [root, *root.children(recursive=True)]}
        except psutil.Error:
            continue
        tree_peak = max(tree_peak, sum(rss.values()))
        per_pid |= {pid: max(mb, per_pid.get(pid, 0.0)) for pid, mb in rss.items()}
        time.sleep(0.5)
    return tree_peak, per_pid


def materialize(
    units: int,
    executor: str,
    processes: int,
    shrink_above: int,
    env: dict,
    workers: list[int],
    limit: float,
    extra_ops: dict | None = None,
    selection: str = SELECTION,
) -> dict:
    """Register the trial, run the ``selection`` once; wall time, peak RSS, and per process (pid) its peak RSS."""
    register = f"import dagster as dg; dg.DagsterInstance.get().add_dynamic_partitions('trials', ['{TRIAL}'])"
    subprocess.run([sys.executable, "-c", register], cwd=ROOT, env=env, check=True, capture_output=True)
    cmd = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "pipelines.definitions", "--select", selection]
    cmd += ["--partition", TRIAL, "--config-json", json.dumps(run_config(units, executor, processes, shrink_above, extra_ops))]
    stderr = Path(env["EOTRIALS_DATA"]).parent / "stderr.log"
    started = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(stderr, "w"))  # noqa: SIM115
    tree_peak, per_pid = sample_peaks(proc, workers, started, limit)
    peaks = {"tree_peak_rss_mb": tree_peak, "max_process_rss_mb": max(per_pid.values(), default=0.0)}
    if proc.poll() is None:
        proc.kill()
        return {"status": f"stopped after {limit:.0f} s", "wall_seconds": limit, **peaks}, per_pid
    status = "ok" if proc.returncode == 0 else f"failed: {stderr.read_text()[-300:]}"
    return {"status": status, "wall_seconds": time.perf_counter() - started, **peaks}, per_pid


@contextlib.contextmanager
def environment(executor: str, workdir: Path):
    """The environment a run needs (a fresh home and data root; on Celery the production stack with
    two workers) and the workers' process ids."""
    if executor != "celery":
        (workdir / "home").mkdir()
        yield os.environ | {"DAGSTER_HOME": str(workdir / "home"), "EOTRIALS_DATA": str(workdir / "data"), "EOTRIALS_DEVICE": "cpu"}, []
        return
    from tests.services import production_stack

    with production_stack(workdir, webserver=False) as (env, servers, _):
        yield env, [proc.pid for proc, _ in servers.running if "worker" in " ".join(proc.args)]


def step_table(env: dict, per_pid: dict[int, float]) -> pd.DataFrame:
    """Every step that succeeded, from the run's event log: its group, start (seconds after the
    first step's), duration and the peak RSS of the process it ran in (its own process on the
    multiprocess executor; the run's or a worker's, shared with other steps, on the others)."""
    import dagster as dg

    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    group_of = {a.node_def.name: graph.get(next(iter(a.keys))).group_name for a in graph.assets_defs if a.keys}
    rows, starts, first = [], {}, 0.0
    os.environ.update({k: v for k, v in env.items() if k.startswith("DAGSTER_PG_")})
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        run = instance.get_runs(limit=1)[0]
        for event in instance.all_logs(run.run_id):
            if event.step_key is None or event.dagster_event is None:
                continue
            kind = event.dagster_event.event_type
            if kind == dg.DagsterEventType.STEP_START:
                first = first if starts else event.timestamp
                starts[event.step_key] = (event.timestamp, event.dagster_event.pid)
            elif kind == dg.DagsterEventType.STEP_SUCCESS and event.step_key in starts:
                started, pid = starts[event.step_key]
                group = group_of.get(event.step_key.split(".")[0], "checks")
                rows.append(
                    {
                        "step": event.step_key,
                        "group": group,
                        "started_s": started - first,
                        "seconds": event.timestamp - started,
                        "peak_rss_mb": per_pid.get(pid),
                    }
                )
    return pd.DataFrame(rows, columns=["step", "group", "started_s", "seconds", "peak_rss_mb"])


def exponents(table: pd.DataFrame) -> pd.DataFrame:
    """Per group, the slope of log(seconds) on log(units) (1 = linear)."""
    rows = []
    for group, part in table.groupby("group"):
        part = part[part["seconds"] > 0]
        if part["units"].nunique() >= 2:
            slope = np.polyfit(np.log(part["units"]), np.log(part["seconds"]), 1)[0]
            rows.append({"group": group, "exponent": round(float(slope), 2)})
    return pd.DataFrame(rows)


def unshrunk_exponents(rows: list[dict], groups: list[dict]) -> pd.DataFrame:
    """``exponents`` over the sizes whose region grew with the trial (rows not ``shrunk``)."""
    unshrunk = {row["units"] for row in rows if not row["shrunk"]}
    kept = [group for group in groups if group["units"] in unshrunk]
    return exponents(pd.DataFrame(kept)) if kept else pd.DataFrame()


def merge(paths: list[str], out: str) -> None:
    """Results files of one commit (sizes run separately, e.g. the 100,000-unit row alone) as one:
    every row with its commit, their groups and steps, and exponents across all their unshrunk sizes."""
    results = [json.loads(Path(path).read_text()) for path in paths]
    commits = {result["environment"]["git_sha"].removesuffix("-dirty")[:7] for result in results}
    if len(commits) != 1:
        raise SystemExit(f"exponents need every size on one commit; these files come from {sorted(commits)}")
    commit = commits.pop()
    rows = [{**row, "commit": commit} for result in results for row in result["rows"]]
    groups = [group for result in results for group in result.get("groups", [])]
    steps = [step for result in results for step in result.get("steps", [])]
    growth = unshrunk_exponents(rows, groups)
    print(growth.to_markdown(index=False))
    write_results(out, rows, {"merged": paths}, groups=groups, steps=steps, exponents=growth.to_dict("records"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, nargs="+", default=[1000, 3000])
    parser.add_argument("--processes", type=int, default=2, help="the multiprocess executor's max_concurrent")
    parser.add_argument("--executor", choices=EXECUTORS, default="in_process", help="the executor of the scaling runs")
    parser.add_argument("--executors", nargs="+", choices=EXECUTORS, default=[], help="executors to compare at --executor-units")
    parser.add_argument("--shrink-above", type=int, default=10_000, help="units above which the region stops growing")
    parser.add_argument(
        "--executor-units", type=int, nargs="*", default=[1000], help="sizes run on every executor in --executors (others: --executor only)"
    )
    parser.add_argument("--limit", type=float, default=3600, help="seconds before a run is stopped")
    parser.add_argument("--ops-json", default="{}", help="extra op config merged under each size's (e.g. fewer epochs for a smoke run)")
    parser.add_argument("--select", default=SELECTION, help="the assets run (Dagster's selection syntax)")
    parser.add_argument("--merge", nargs="+", metavar="RESULTS", help="merge these results files of one commit into --out (runs nothing)")
    parser.add_argument("--out", default="benchmarks/results/pipeline.json")
    args = parser.parse_args()
    if args.merge:
        merge(args.merge, args.out)
        return
    runs, groups, steps = [], [], []
    for units in args.units:
        for executor in dict.fromkeys([args.executor, *(args.executors if units in args.executor_units else [])]):
            with tempfile.TemporaryDirectory() as tmp, environment(executor, Path(tmp)) as (env, workers):
                measured, per_pid = materialize(
                    units, executor, args.processes, args.shrink_above, env, workers, args.limit, json.loads(args.ops_json), args.select
                )
                row = {"units": units, "executor": executor, "shrunk": units > args.shrink_above, **measured}
                if executor == args.executor:  # a stopped run keeps the steps that finished
                    table = step_table(env, per_pid).assign(units=units)
                    steps += table.to_dict("records")
                    groups += [{"units": units, "group": g, "seconds": s} for g, s in table.groupby("group")["seconds"].sum().items()]
            runs.append(row)
            print(json.dumps(row), flush=True)
            write_results(args.out, runs, vars(args), groups=groups, steps=steps)  # so far: a run stopped late keeps what finished
    runs_table, groups_table = pd.DataFrame(runs), pd.DataFrame(groups)
    growth = unshrunk_exponents(runs, groups)
    print(runs_table.round(1).to_markdown(index=False))
    if len(groups_table):
        print(groups_table.pivot(index="group", columns="units", values="seconds").round(1).to_markdown())
        print(growth.to_markdown(index=False))
    write_results(args.out, runs, vars(args), groups=groups, steps=steps, exponents=growth.to_dict("records"))


if __name__ == "__main__":
    main()
