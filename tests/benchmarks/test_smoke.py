"""Every benchmark runs at a tiny size, so that none can rot unseen (a benchmark that reads a renamed
field used to fail only when someone ran ``make bench``). The figures themselves are not judged here."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.tiny_demo import CONFIG

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    "ingest": ["--units", "100", "--naive-sample", "10", "--region-px", "256", "--repeats", "1"],
    "encoder": ["--device", "cpu", "--capacities", "small", "--units", "64", "--epochs", "1", "--batch-size", "32"],
    "cate": ["--units", "300", "--learners", "t_learner", "--limit", "300", "--max-fit-units", "200", "--learner-json", '{"n_jobs": 1}'],
    "cate_estimates": ["--units", "300", "--no-sequential", "--learner-json", '{"n_estimators": 8}'],
    "debias": ["--cells", "20000", "--calibration", "300", "--direct-sample", "2000"],
    "study2_simulation": ["--seeds", "0", "--n-train", "500", "--n-calibration", "300", "--n-trial", "500"],
    "landcover": ["--large-px", "256", "--demo-px", "256", "--demo-dates", "2"],
    "landcover_real_labels": ["--seeds", "0"],
    "correction_diagnostics": ["--seeds", "0"],
    "simulator": ["--units", "60", "--survey", "40"],
}


def run_benchmark(name: str, args: list[str], tmp_path: Path) -> dict:
    out = tmp_path / f"{name}.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *args, "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{name}: {done.stderr[-3000:]}"
    return json.loads(out.read_text())


@pytest.mark.parametrize("name", list(TINY))
def test_benchmark_runs_at_a_tiny_size(name, tmp_path):
    result = run_benchmark(name, TINY[name], tmp_path)
    assert result["rows"] and result["environment"]["python"] and result["environment"]["host_seconds"] > 0
    failed = [row for row in result["rows"] if str(row.get("status", "ok")) not in ("ok", "")]
    assert not failed, failed


@pytest.mark.slow
def test_pipeline_benchmark_runs_the_graph_at_a_tiny_size(tmp_path):
    ops = {name: value for name, value in CONFIG["ops"].items() if name != "simulation_study"}
    result = run_benchmark("pipeline", ["--units", "60", "--ops-json", json.dumps(ops), "--limit", "600"], tmp_path)
    assert [row["status"] for row in result["rows"]] == ["ok"] and result["groups"]
    steps = pd.DataFrame(result["steps"])
    assert {"study_inputs", "cate_estimates.fit_cate"} <= {s.split("[")[0] for s in steps["step"]}
    assert (steps["peak_rss_mb"] > 100).all()  # the step's process (here the run's own), found by its pid
    first = steps.set_index("step")["started_s"]
    assert first["study_inputs"] == 0 and (first.drop("study_inputs") > 0).all()  # the graph's root starts it
    by_group = steps.groupby("group")["seconds"].sum()
    assert {g["group"]: round(g["seconds"], 6) for g in result["groups"]} == by_group.round(6).to_dict()


def _results(path: Path, sha: str, units: int, seconds: float, shrunk: bool = False) -> str:
    rows = [{"units": units, "shrunk": shrunk, "status": "ok"}]
    groups = [{"units": units, "group": "causal", "seconds": seconds}]
    path.write_text(json.dumps({"environment": {"git_sha": sha}, "rows": rows, "groups": groups, "steps": []}))
    return str(path)


def test_pipeline_merge_fits_exponents_across_files_of_one_commit(tmp_path):
    small = _results(tmp_path / "a.json", "abc1234def", 1_000, 10.0)
    large = _results(tmp_path / "b.json", "abc1234def-dirty", 100_000, 10.0 * 100**1.2)
    shrunk = _results(tmp_path / "c.json", "abc1234def", 1_000_000, 1.0, shrunk=True)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "pipeline.py"), "--merge", small, large, shrunk, "--out", str(tmp_path / "m.json")]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=120)
    merged = json.loads((tmp_path / "m.json").read_text())
    assert [row["units"] for row in merged["rows"]] == [1_000, 100_000, 1_000_000]
    assert {row["commit"] for row in merged["rows"]} == {"abc1234"}
    assert merged["exponents"] == [{"group": "causal", "exponent": 1.2}]  # the shrunk size left out
    other = _results(tmp_path / "d.json", "fff0000aaa", 10_000, 1.0)
    refused = subprocess.run([*cmd[:3], small, other, "--out", str(tmp_path / "n.json")], cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode != 0 and "one commit" in refused.stderr


def test_demo_figures_read_the_tiny_demo(tiny_demo):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "demo_figures.py"), str(tiny_demo.data), str(tiny_demo.home)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "land cover accuracy" in done.stdout and "west" in done.stdout
