"""The eotrials Dagster code location: definitions, jobs, schedules, sensors, resources, IO."""
