"""Trials as dynamic partitions: one partition per trial table (its key is the file's stem).

The ``trial_tables_sensor`` (pipelines/automation.py) adds a partition when a table appears in the
trials folder; trial-level assets carry ``partitions_def=trials``, shared ones (imagery, the wealth
map and its corrections) carry none and are fitted once for every trial.
"""

import warnings

import dagster as dg

trials = dg.DynamicPartitionsDefinition(name="trials")

# Checks on trial-level assets carry the trials' partitions (else a check would load every trial):
# a preview feature in Dagster 1.13, used on purpose, so its warning is said once here, not per check.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning)
