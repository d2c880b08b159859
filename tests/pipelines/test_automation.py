"""Declarative automation: a new map or new corrections re-run the shared trial outcomes and every
trial's debiased outcomes, unless a blocking check failed (for one trial: only that trial is held)."""

import dagster as dg
import pytest
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationTargetMaterializationData
from dagster._core.definitions.partitions.context import partition_loading_context

from assets.partitions import trials
from pipelines.definitions import defs

OUTCOMES = dg.AssetKey("trial_outcomes")
FOLLOWERS = {OUTCOMES, dg.AssetKey("debiasing_evaluation"), dg.AssetKey("debiased_wealth_map")}
PER_TRIAL = (dg.AssetKey("unit_wealth_predictions"), dg.AssetKey("wealth_effects"))
TRIALS = ["west", "east"]


def materialize_everything(instance: dg.DagsterInstance, failing: frozenset = frozenset()) -> None:
    """Record a materialization of every asset (every trial's partition of the trial-level ones),
    upstream first, each with its checks passed except the ``failing`` (check, partition) pairs
    (runless events: nothing is computed)."""
    instance.add_dynamic_partitions(trials.name, TRIALS)
    graph = defs.resolve_asset_graph()
    for level in graph.toposorted_asset_keys_by_level:
        for key in level:
            for partition in TRIALS if graph.get(key).partitions_def else [None]:
                instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=partition))
    for check in graph.asset_check_keys:
        for partition in TRIALS if graph.get(check.asset_key).partitions_def else [None]:
            instance.report_runless_asset_event(
                evaluation(instance, check.asset_key, check.name, partition, (check.name, partition) not in failing)
            )


def evaluation(instance, key: dg.AssetKey, check: str, partition: str | None, passed: bool) -> dg.AssetCheckEvaluation:
    """A check's result on the latest materialization of ``key`` (of its ``partition``)."""
    latest = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=1
    )
    record = latest.records[0]
    target = AssetCheckEvaluationTargetMaterializationData(storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp)
    return dg.AssetCheckEvaluation(asset_key=key, check_name=check, passed=passed, partition=partition, target_materialization_data=target)


def requested_partitions(instance, cursor=None) -> tuple[dict, object]:
    """What the automation sensor would request: asset key -> partitions (None for unpartitioned)."""
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    found = {}
    with partition_loading_context(dynamic_partitions_store=instance):
        for r in result.results:
            value = r.get_serializable_subset().value
            if isinstance(value, bool):
                found |= {r.key: None} if value else {}
            elif keys := set(value.get_partition_keys()):
                found[r.key] = keys
    return found, result.cursor


def requested(instance, cursor=None):
    found, cursor = requested_partitions(instance, cursor)
    return set(found), cursor


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


def test_new_corrections_rerun_every_trials_debiased_outcomes(instance):
    _, cursor = requested(instance)
    instance.report_runless_asset_event(dg.AssetMaterialization("wealth_corrections"))
    instance.report_runless_asset_event(check_result("wealth_corrections", "correction_warranted", True))
    found, _ = requested_partitions(instance, cursor)
    assert found[dg.AssetKey("unit_wealth_predictions")] == set(TRIALS)


def test_a_trial_failing_its_balance_check_is_held_back_alone(tmp_path):
    """East's randomization check failed: a new map re-runs west's debiased outcomes, not east's."""
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        materialize_everything(instance, failing=frozenset({("treatment_share_matches_design", "east")}))
        _held_back(instance)


def _held_back(instance):
    _, cursor = requested(instance)
    instance.report_runless_asset_event(dg.AssetMaterialization("wealth_corrections"))
    instance.report_runless_asset_event(check_result("wealth_corrections", "correction_warranted", True))
    found, _ = requested_partitions(instance, cursor)
    assert found[dg.AssetKey("unit_wealth_predictions")] == {"west"}
