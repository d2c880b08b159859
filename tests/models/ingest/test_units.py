import numpy as np
import pandas as pd
import pytest

from models.ingest.catalog import build_catalog
from models.ingest.units import RCTSpec, RCTValidationError, check_dropped_share, locate_units, tabular_matrix, validate_rct
from tests.conftest import toy_trial


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t.assign(unit_id=["u0"] * 2 + list(t.unit_id[2:])), "duplicate unit_id"),
        (lambda t: t.assign(lon=[np.nan] + list(t.lon[1:])), "missing or non-numeric lon/lat: u0"),
        (lambda t: t.assign(lat=[512_345.0] + list(t.lat[1:])), "out of range"),
        (lambda t: t.assign(treatment=[np.nan] + list(t.treatment[1:])), "treatment is missing for 1 unit"),
        (lambda t: t.assign(treatment=[2] + list(t.treatment[1:])), "treatment must be 0 or 1; 1 unit"),
        (lambda t: t.assign(treatment=["yes"] + list(t.treatment[1:])), "u0='yes'"),
        (lambda t: t.assign(treatment=[1] * 35 + [0] * 5), "fewer than 10 units: {0: 5}"),
        (lambda t: t.drop(columns="treatment"), "lacks column"),
        (lambda t: t.assign(assignment_probability=1.0), "strictly between 0 and 1"),
    ],
)
def test_bad_trial_tables_fail_with_a_clear_message(mutate, message):
    with pytest.raises(RCTValidationError, match=message.replace("{", r"\{").replace("}", r"\}")):
        validate_rct(mutate(toy_trial()))


def test_boolean_treatment_is_accepted():
    table = toy_trial().assign(treatment=lambda t: t.treatment.astype(bool))
    assert validate_rct(table)["treatment"].tolist() == toy_trial()["treatment"].tolist()


def test_units_outside_the_imagery_are_dropped_and_counted(small_study):
    catalog = build_catalog(small_study.imagery_dir)
    table = validate_rct(pd.read_csv(small_study.trial_table("west")))
    table.loc[:2, "lon"] = 10.0  # far outside the footprint
    units, dropped = locate_units(table, catalog)
    assert len(units) == len(table) - 3 and dropped["unit_id"].tolist() == table["unit_id"].iloc[:3].tolist()
    assert units.crs.to_epsg() == 4326 and {"x", "y"} <= set(units.columns)
    check_dropped_share(len(table), dropped, max_share=0.05)
    with pytest.raises(RCTValidationError, match="3 of 150 units"):
        check_dropped_share(len(table), dropped, max_share=0.01)


def test_tabular_matrix_imputes_with_indicator():
    table = validate_rct(toy_trial())
    table.loc[0, "age"] = np.nan
    features = tabular_matrix(table, RCTSpec())
    assert list(features.columns) == ["unit_id", "age_missing", "age"]
    assert features.loc[0, "age"] == table["age"].median() and features.loc[0, "age_missing"] == 1
    assert "outcome" not in features and "treatment" not in features
