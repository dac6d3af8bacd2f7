"""The one Definitions object: wiring only, no logic."""

from __future__ import annotations

import os

import dagster as dg

from rooney_pipeline import jobs, retraining
from rooney_pipeline.assets import ASSETS
from rooney_pipeline.executors import configured_executor
from rooney_pipeline.resources import DiscordResource, RooneyResource

defs = dg.Definitions(
    assets=ASSETS,
    jobs=[*jobs.JOBS, *retraining.JOBS],
    schedules=retraining.SCHEDULES,
    sensors=[*jobs.SENSORS, *retraining.SENSORS],
    resources={
        "rooney": RooneyResource(
            config_dir=os.environ.get("ROONEY_CONFIG_DIR"),
            data_dir=os.environ.get("ROONEY_DATA_DIR"),
            lake_dir=os.environ.get("ROONEY_LAKE_DIR"),
            model_store=os.environ.get("ROONEY_MODEL_STORE"),
        ),
        # the webhook URL only as EnvVar("ROONEY_DISCORD_WEBHOOK_URL"): the UI shows its name, never its value
        "discord": DiscordResource.from_env(),
    },
    # Partition runs are small; in-process avoids ~2-3 s of process start per step.
    # Parallelism comes from concurrent partition runs, or the Dask executor when configured.
    executor=configured_executor(),
)
