"""The executor: processes on this machine, or Celery workers behind a broker in production."""

import os

import dagster as dg


def executor() -> dg.ExecutorDefinition:
    """Processes on this machine by default (``multi_or_in_process_executor``: run config
    ``execution: {config: {in_process: {}}}`` keeps a run in one process). With ``EOTRIALS_CELERY_BROKER`` set (a Redis URL, see
    deploy/README.md), every step is a Celery task picked up by whichever worker is free; the broker
    doubles as the result backend."""
    if not os.environ.get("EOTRIALS_CELERY_BROKER"):
        return dg.multi_or_in_process_executor
    from dagster_celery import celery_executor

    broker = {"env": "EOTRIALS_CELERY_BROKER"}
    return celery_executor.configured({"broker": broker, "backend": broker, "include": ["pipelines.definitions"]}, name="celery")
