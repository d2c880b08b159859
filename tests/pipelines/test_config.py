"""Config and resources cannot be silently wrong: an unknown field (a typo, a renamed setting) is
refused naming the valid ones, for every Config of the assets and every resource and IO manager."""

import dataclasses
import inspect

import dagster as dg
import pydantic
import pytest

from assets import analyst, causal, debiasing, generalization, ingest, interpretation, representation, simulation
from models.causal.cate import LearnerConfig
from pipelines import io_managers, resources

MODULES = [analyst, causal, debiasing, generalization, ingest, interpretation, representation, simulation, io_managers, resources]
CLASSES = sorted(
    {
        cls
        for module in MODULES
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, dg.Config | dg.ConfigurableResource) and cls.__module__.startswith(("assets.", "pipelines."))
    },
    key=lambda cls: cls.__name__,
)


def test_every_config_and_resource_is_checked():
    assert {c.__name__ for c in CLASSES} >= {"CateConfig", "DemoStudyConfig", "StudySource", "StorageResource", "TableIOManager"}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_an_unknown_field_is_refused_naming_the_valid_ones(cls):
    with pytest.raises(pydantic.ValidationError, match=rf"{cls.__name__} has no field 'no_such_field'; its fields are ") as error:
        cls(no_such_field=1)
    assert all(name in str(error.value) for name in cls.model_fields)


def test_the_field_renamed_away_is_refused():
    """``rct_table`` was replaced by the trials folder: a leftover is an error, not a silent demo run."""
    with pytest.raises(pydantic.ValidationError, match="StudySource has no field 'rct_table'; its fields are band_files, band_names"):
        resources.StudySource(rct_table="trial.csv", imagery="scenes/")


def test_every_learner_setting_of_the_cate_config_reaches_the_learners():
    """``learner_config`` passes the fields ``CateConfig`` shares with ``LearnerConfig``: a field
    named differently on one side (a rename) would be a setting that silently does nothing."""
    step_only = {"learners", "sequential_rate"}  # the step's own settings, not the learners'
    shared = {f.name for f in dataclasses.fields(LearnerConfig)} & set(causal.CateConfig.model_fields)
    assert set(causal.CateConfig.model_fields) - step_only == shared
    assert {"n_estimators", "max_tree_units", "mtry", "leaf_share", "n_jobs", "seed"} <= shared
    changed = {"n_estimators": 7, "max_tree_units": 123, "mtry": 3, "leaf_share": 0.5, "n_jobs": 1, "seed": 9}
    cfg = causal.CateConfig(**{name: changed[name] for name in shared}).learner_config()
    assert {name: getattr(cfg, name) for name in shared} == {name: changed[name] for name in shared}
