"""The one Definitions object: wiring only, no logic."""

from __future__ import annotations

import dagster as dg

from rooney_pipeline import jobs, retraining
from rooney_pipeline.assets import ASSETS
from rooney_pipeline.executors import configured_executor
from rooney_pipeline.resources import resources

defs = dg.Definitions(
    assets=ASSETS,
    jobs=[*jobs.JOBS, *retraining.JOBS],
    schedules=retraining.SCHEDULES,
    sensors=[*jobs.SENSORS, *retraining.SENSORS],
    # one resource per concern (config and raw data, lake, model store, alerts), each location
    # from its environment variable as dg.EnvVar (the UI shows the name, never the value)
    resources=resources(),
    # Partition runs are small; in-process avoids ~2-3 s of process start per step.
    # Parallelism comes from concurrent partition runs, or the Dask executor when configured.
    executor=configured_executor(),
)
