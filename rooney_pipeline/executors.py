"""The executor, chosen by configs/pipeline.yml (execution.executor) or $ROONEY_EXECUTOR:
the same assets run in process, a process per step, or on a Dask cluster."""

from __future__ import annotations

import os

import dagster as dg

from rooney_pipeline.partitions import CONFIG


def configured_executor() -> dg.ExecutorDefinition:
    kind = os.environ.get("ROONEY_EXECUTOR") or CONFIG.pipeline.execution.executor
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "multiprocess":
        return dg.multiprocess_executor
    if kind == "dask":
        from dagster_dask import dask_executor

        d = CONFIG.pipeline.execution.dask
        address = os.environ.get("ROONEY_DASK_ADDRESS") or d.address
        cluster = ({"existing": {"address": address}} if address else
                   {"local": {"n_workers": d.n_workers, "threads_per_worker": d.threads_per_worker,
                              "processes": True, "dashboard_address": None}})
        return dask_executor.configured({"cluster": cluster})
    raise ValueError(f"ROONEY_EXECUTOR={kind!r}: expected in_process, multiprocess or dask")
