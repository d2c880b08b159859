"""The benchmark harness measures a fresh process and records where the figures came from."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from harness import environment, measure  # noqa: E402
from tests.benchmark_workloads import allocate, fail, sleep  # noqa: E402


def test_measure_reports_the_child_process_own_peak_memory():
    small, large = measure(allocate, 10), measure(allocate, 300)
    assert large["peak_rss_mb"] - small["peak_rss_mb"] > 250  # each child's peak, not the largest so far
    assert large["allocated_mb"] == 300 and large["seconds"] > 0


def test_measure_reports_failures_and_stops_runaways():
    assert measure(fail)["status"].startswith("failed: ValueError")
    assert measure(sleep, 30, limit=2)["status"] == "stopped after 2 s"


def test_environment_names_the_code_and_the_machine():
    env = environment()
    assert env["git_sha"] and env["cpu_count"] >= 1 and env["packages"]["numpy"]
    assert "torch" in env["threads"]


def test_the_pipeline_benchmark_shrinks_only_the_region_above_its_threshold_and_its_config_is_valid():
    import dagster as dg
    from pipeline import run_config

    from pipelines.definitions import defs

    job = defs.resolve_job_def("eotrials_job")
    small, large = run_config(10_000, "in_process", 2, 10_000), run_config(100_000, "in_process", 2, 10_000)
    assert small["ops"]["study_inputs"]["config"]["region_px"] == large["ops"]["study_inputs"]["config"]["region_px"] == 3200
    assert "cate_estimates" not in small["ops"] and "cate_estimates" not in large["ops"]  # every learner at every size
    for config in (small, large):
        assert dg.validate_run_config(job, config)["ops"]["study_inputs"]["config"]["n_units"] in (10_000, 100_000)
