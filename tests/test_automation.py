"""Declarative automation: new corrections re-run the trial outcomes, unless a blocking check failed."""

import dagster as dg
import pytest

from pipelines.definitions import defs

OUTCOMES = dg.AssetKey("trial_outcomes")
FOLLOWERS = {OUTCOMES, dg.AssetKey("debiasing_evaluation"), dg.AssetKey("debiased_wealth_map")}


def materialize_everything(instance: dg.DagsterInstance) -> None:
    """Record a materialization of every asset, upstream first, each with its checks passed (runless
    events: nothing is computed)."""
    graph = defs.resolve_asset_graph()
    for level in graph.toposorted_asset_keys_by_level:
        for key in level:
            instance.report_runless_asset_event(dg.AssetMaterialization(key))
    for check in graph.asset_check_keys:
        instance.report_runless_asset_event(dg.AssetCheckEvaluation(asset_key=check.asset_key, check_name=check.name, passed=True))


def requested(instance, cursor=None):
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    return {r.key for r in result.results if r.true_subset.size}, result.cursor


@pytest.fixture
def instance(tmp_path):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        materialize_everything(instance)
        yield instance


def check_result(asset: str, check: str, passed: bool) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(asset_key=dg.AssetKey(asset), check_name=check, passed=passed)


def test_new_corrections_rerun_the_trial_outcomes(instance):
    first, cursor = requested(instance)
    assert not first & FOLLOWERS  # all up to date
    instance.report_runless_asset_event(dg.AssetMaterialization("wealth_corrections"))
    instance.report_runless_asset_event(check_result("wealth_corrections", "correction_warranted", True))
    second, _ = requested(instance, cursor)
    assert OUTCOMES in second and dg.AssetKey("debiasing_evaluation") in second


def test_a_failed_blocking_check_holds_the_trial_outcomes_back(instance):
    _, cursor = requested(instance)
    instance.report_runless_asset_event(dg.AssetMaterialization("wealth_corrections"))
    instance.report_runless_asset_event(check_result("wealth_corrections", "correction_warranted", False))
    second, _ = requested(instance, cursor)
    assert OUTCOMES not in second
