"""The whole asset graph at several trial sizes: wall time, peak memory, compute time per group and
its growth exponent, and the multiprocess executor's parallel run against one step at a time.

    python benchmarks/pipeline.py                          # 1,000 and 3,000 units, 2 processes; 1,000 also serial
    python benchmarks/pipeline.py --units 1000 10000 100000 --serial-units 1000 10000

Each size runs `dagster asset materialize -m pipelines.definitions` in a fresh DAGSTER_HOME and data
root, as `make demo` does, with everything at demo settings except what grows with the trial:
the simulated region grows with the number of units (constant density: ``region_px`` ~ sqrt(units))
and the survey stays at 3,000 places (the map is fitted once, whatever the trial). The simulation
study is left out: it simulates its own trials and does not grow with the trial (its cost is in
benchmarks/results/simulation_default_grid.md). Per-group time is the sum of its steps' durations
(steps of different groups run side by side, so they add up to more than the wall time). The
growth exponent of a group is the slope of log(time) on log(units) across the sizes.
"""

from __future__ import annotations

import argparse
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
SELECTION = "* and not group:simulation"


def run_config(units: int, max_concurrent: int) -> dict:
    region_px = int(1024 * math.sqrt(units / 1000) // 64 * 64)
    return {
        "ops": {"study_inputs": {"config": {"n_units": units, "region_px": region_px}}},
        "execution": {"config": {"max_concurrent": max_concurrent}},
    }


def materialize(units: int, max_concurrent: int, workdir: Path, limit: float) -> dict:
    """Run the graph once; wall time, peak RSS of the whole process tree (sampled every 0.5 s) and the
    largest single process."""
    home, data = workdir / "home", workdir / "data"
    home.mkdir(parents=True)
    env = os.environ | {"DAGSTER_HOME": str(home), "EOTRIALS_DATA": str(data), "EOTRIALS_DEVICE": "cpu"}
    cmd = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "pipelines.definitions", "--select", SELECTION]
    cmd += ["--config-json", json.dumps(run_config(units, max_concurrent))]
    started = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(workdir / "stderr.log", "w"))  # noqa: SIM115
    tree_peak = single_peak = 0.0
    while proc.poll() is None and time.perf_counter() - started < limit:
        try:
            rss = [p.memory_info().rss for p in [proc, *proc.children(recursive=True)]]
        except psutil.Error:
            continue
        tree_peak, single_peak = max(tree_peak, sum(rss) / 2**20), max(single_peak, max(rss) / 2**20)
        time.sleep(0.5)
    if proc.poll() is None:
        proc.kill()
        return {"status": f"stopped after {limit:.0f} s"}
    status = "ok" if proc.returncode == 0 else f"failed: {(workdir / 'stderr.log').read_text()[-300:]}"
    return {
        "status": status,
        "wall_seconds": time.perf_counter() - started,
        "tree_peak_rss_mb": tree_peak,
        "max_process_rss_mb": single_peak,
    }


def group_seconds(home: Path) -> dict[str, float]:
    """Sum of step durations per asset group, from the run's event log."""
    import dagster as dg

    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    group_of = {a.node_def.name: graph.get(next(iter(a.keys))).group_name for a in graph.assets_defs if a.keys}
    totals: dict[str, float] = {}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_runs(limit=1)[0]
        starts = {}
        for event in instance.all_logs(run.run_id):
            if event.step_key is None or event.dagster_event is None:
                continue
            kind = event.dagster_event.event_type
            if kind == dg.DagsterEventType.STEP_START:
                starts[event.step_key] = event.timestamp
            elif kind == dg.DagsterEventType.STEP_SUCCESS and event.step_key in starts:
                group = group_of.get(event.step_key, "checks")
                totals[group] = totals.get(group, 0.0) + event.timestamp - starts[event.step_key]
    return totals


def exponents(table: pd.DataFrame) -> pd.DataFrame:
    """Per group, the slope of log(seconds) on log(units) (1 = linear)."""
    rows = []
    for group, part in table.groupby("group"):
        part = part[part["seconds"] > 0]
        if part["units"].nunique() >= 2:
            slope = np.polyfit(np.log(part["units"]), np.log(part["seconds"]), 1)[0]
            rows.append({"group": group, "exponent": round(float(slope), 2)})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, nargs="+", default=[1000, 3000])
    parser.add_argument("--processes", type=int, default=2, help="the multiprocess executor's max_concurrent")
    parser.add_argument("--serial-units", type=int, nargs="*", default=[1000], help="sizes also run one step at a time (max_concurrent 1)")
    parser.add_argument("--limit", type=float, default=3600, help="seconds before a run is stopped")
    parser.add_argument("--out", default="benchmarks/results/pipeline.json")
    args = parser.parse_args()
    runs, groups = [], []
    for units in args.units:
        for processes in [args.processes, 1] if units in args.serial_units else [args.processes]:
            with tempfile.TemporaryDirectory() as tmp:
                row = {"units": units, "processes": processes, **materialize(units, processes, Path(tmp), args.limit)}
                if row["status"] == "ok" and processes == args.processes:
                    groups += [{"units": units, "group": g, "seconds": s} for g, s in group_seconds(Path(tmp) / "home").items()]
            runs.append(row)
            print(json.dumps(row), flush=True)
            write_results(args.out, runs, vars(args), groups=groups)  # so far: a long run stopped late keeps what finished
    runs_table, groups_table = pd.DataFrame(runs), pd.DataFrame(groups)
    print(runs_table.round(1).to_markdown(index=False))
    if len(groups_table):
        print(groups_table.pivot(index="group", columns="units", values="seconds").round(1).to_markdown())
        print(exponents(groups_table).to_markdown(index=False))
    write_results(
        args.out, runs, vars(args), groups=groups, exponents=exponents(groups_table).to_dict("records") if len(groups_table) else []
    )


if __name__ == "__main__":
    main()
