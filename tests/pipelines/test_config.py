"""Config and resources cannot be silently wrong: an unknown field (a typo, a renamed setting) is
refused naming the valid ones, for every Config of the assets and every resource and IO manager."""

import inspect

import dagster as dg
import pydantic
import pytest

from assets import analyst, causal, debiasing, generalization, ingest, interpretation, representation, simulation
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
