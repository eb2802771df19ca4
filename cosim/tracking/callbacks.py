"""Hydra callback: one MLflow parent run per sweep, its id in the sweep directory.

``conf/run.yaml`` registers it under ``hydra.callbacks``. ``on_multirun_start`` (in the
process that launches the sweep) creates the parent run and writes its id to
``<sweep dir>/mlflow_sweep.json`` and to ``COSIM_MLFLOW_PARENT_RUN``, so jobs in worker
processes (joblib, Ray, SLURM with a shared file system) nest under it. ``on_multirun_end``
marks the parent ``FINISHED`` with counts of finished and failed children (the latest run of
each job: a resumed sweep runs some jobs again). Single runs (``on_run_start``) are left alone.

With ``resume=true`` and the directory of an earlier sweep, the parent recorded there is
reopened (set RUNNING again) instead of a new one being made, so re-run jobs nest under it
beside the ones that finished before.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from cosim.tracking.mlflow_log import (
    ENV_PARENT,
    ROLE_TAG,
    EpisodeRun,
    client,
    job_run,
    read_parent,
    server_error,
    tracking_exceptions,
    write_parent,
)


def one_line(text: str) -> str:
    """A multi-line message (Hydra's list of options, a YAML parser's marks) as one line."""
    parts: list[str] = []
    listing = False
    for line in str(text).splitlines():
        item = line.strip()
        if not item:
            continue
        if item.startswith("Config search path"):
            break  # Hydra's search path follows: not what is wrong
        if parts and line[:1] in (" ", "\t"):
            parts[-1] += (" " if parts[-1].endswith(":") or not listing else ", ") + item
            listing = listing or parts[-1].endswith(":" + " " + item)
        else:
            parts.append(item)
            listing = False
    return "".join(p if i == 0 else (" " if parts[i - 1].endswith(".") else "; ") + p for i, p in enumerate(parts))


def fail_sweep(sweep_dir: str | Path, error: str) -> None:
    """Mark the sweep's parent run FAILED with ``error`` (a sweep that stopped before its jobs,
    e.g. on a config that does not compose). A tracking problem here is said, not raised: the
    sweep's own error is the one that counts."""
    error = one_line(error)
    parent = read_parent(sweep_dir)
    os.environ.pop(ENV_PARENT, None)
    if not parent or not parent.get("run_id"):
        return
    from mlflow.entities import RunTag

    try:
        mlf = client(parent.get("tracking_uri"))
        mlf.log_batch(str(parent["run_id"]), tags=[RunTag("error", error[:5000])])
        mlf.set_terminated(str(parent["run_id"]), status="FAILED")
    except tracking_exceptions() as exc:
        print(f"error: sweep: could not mark the MLflow parent run {parent.get('run_id')} FAILED: "
              f"{server_error(exc, parent.get('tracking_uri'))}", file=sys.stderr)


def fail_job(sweep_dir: str | Path, job: str, overrides: list[str], error: str, error_type: str) -> None:
    """Record a job of the sweep that could not be launched (its overrides do not compose
    together) as FAILED: ``<sweep_dir>/<job>/summary.json`` (the job's directory as
    ``conf/run.yaml`` names it, ``hydra.sweep.subdir: ${hydra.job.num}``) and a FAILED child of
    the sweep's parent run, named and tagged like an episode's, with the error. A tracking
    problem is said, not raised: the summary on disk keeps the failure."""
    from cosim.tracking.summary import empty_summary, write_summary

    error = one_line(error)
    out_dir = Path(sweep_dir) / job
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = empty_summary() | {"status": "FAILED", "error": error, "error_type": error_type,
                                 "overrides": " ".join(overrides)}
    print(f"error: job {job} ({' '.join(overrides)}): {error}", file=sys.stderr)
    write_summary(out_dir, summary)
    parent = read_parent(sweep_dir)
    if not parent or not parent.get("run_id"):
        return
    try:
        run = job_run(" ".join(overrides), str(parent.get("experiment") or "cosim"), sweep_dir, job,
                      {"overrides": " ".join(overrides)})
        run.finish("FAILED", error=error[:5000])
    except tracking_exceptions() as exc:
        print(f"error: sweep: could not record job {job} as FAILED in MLflow: "
              f"{server_error(exc, parent.get('tracking_uri'))}", file=sys.stderr)
        return
    write_summary(out_dir, summary | {"mlflow_run_id": run.run_id})


def count_jobs(overrides: list[str], sweeper_params: dict[str, Any]) -> int | None:
    """Jobs of a basic-sweeper sweep: the product of the sweep lengths (command line over config)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        merged = {str(k): f"{k}={v}" for k, v in sweeper_params.items()}
        merged.update({o.split("=", 1)[0].lstrip("+~"): o for o in overrides if "=" in o})
        total = 1
        for override in OverridesParser.create().parse_overrides(list(merged.values())):
            if override.is_sweep_override():
                total *= len(list(override.sweep_string_iterator()))
        return total
    except Exception:  # another sweeper's syntax: no count, no bar
        return None


class MlflowSweepCallback(Callback):
    """Creates and closes the parent run of a sweep.

    Args:
        experiment: MLflow experiment name; ``None`` takes ``mlflow.experiment`` of the config.
    """

    def __init__(self, experiment: str | None = None) -> None:
        self.experiment = experiment

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        experiment = self.experiment or str(config.get("mlflow", {}).get("experiment", "cosim"))
        overrides = list(config.hydra.overrides.task)
        sweeper_params = dict(config.hydra.sweeper.get("params") or {})
        earlier = read_parent(sweep_dir) if config.get("resume") else None
        if earlier and earlier.get("run_id"):
            self._reopen(sweep_dir, earlier, count_jobs(overrides, sweeper_params))
            return
        name = f"sweep {sweep_dir.name}"
        exp_choice = config.hydra.runtime.choices.get("experiment") if config.hydra.get("runtime") else None
        if exp_choice:
            name = f"sweep {exp_choice} {sweep_dir.name}"
        run = EpisodeRun(experiment, name, tags={ROLE_TAG: "sweep", "sweep_dir": str(sweep_dir.resolve()),
                                                 "overrides": " ".join(overrides),
                                                 "experiment_choice": exp_choice or ""})
        run.log_params({"sweep." + str(k): v for k, v in sweeper_params.items()}
                       | {"overrides": " ".join(overrides) or "-"})
        total = count_jobs(overrides, sweeper_params)
        write_parent(sweep_dir, run.run_id, experiment, run.uri, jobs=total)
        os.environ[ENV_PARENT] = run.run_id
        print(f"sweep: MLflow parent run {run.run_id} in experiment '{experiment}' ({run.uri})", file=sys.stderr)

    @staticmethod
    def _reopen(sweep_dir: Path, parent: dict[str, Any], jobs: int | None) -> None:
        from mlflow.entities import RunTag

        uri = parent.get("tracking_uri")
        mlf = client(uri)
        run_id = str(parent["run_id"])
        mlf.update_run(run_id, status="RUNNING")
        mlf.log_batch(run_id, tags=[RunTag("resumed", "true")])
        write_parent(sweep_dir, run_id, str(parent.get("experiment") or ""), mlf.tracking_uri, jobs=jobs)
        os.environ[ENV_PARENT] = run_id
        print(f"sweep: resuming {sweep_dir}; MLflow parent run {run_id} ({mlf.tracking_uri})", file=sys.stderr)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        parent = read_parent(sweep_dir)
        if not parent:
            return
        try:
            self._close(parent)
        except tracking_exceptions() as exc:
            print(f"error: sweep: could not close the MLflow parent run {parent.get('run_id')}: "
                  f"{server_error(exc, parent.get('tracking_uri'))}", file=sys.stderr)
        finally:
            os.environ.pop(ENV_PARENT, None)

    @staticmethod
    def _close(parent: dict[str, Any]) -> None:
        mlf = client(parent.get("tracking_uri"))
        run_id = parent["run_id"]
        found = mlf.search_runs([mlf.get_run(run_id).info.experiment_id],
                                filter_string=f"tags.mlflow.parentRunId = '{run_id}'", max_results=10000)
        latest: dict[str, Any] = {}  # per job: its latest run (a resumed sweep ran some again)
        for child in sorted(found, key=lambda r: r.info.start_time or 0):
            latest[child.data.tags.get("job") or child.info.run_id] = child
        children = list(latest.values())
        counts: dict[str, int] = {}
        for child in children:
            counts[child.info.status] = counts.get(child.info.status, 0) + 1
        from mlflow.entities import RunTag

        mlf.log_batch(run_id, tags=[RunTag("jobs", str(len(children))),
                                    RunTag("jobs_failed", str(counts.get("FAILED", 0))),
                                    RunTag("jobs_finished", str(counts.get("FINISHED", 0)))])
        mlf.set_terminated(run_id, status="FINISHED")
        print(f"sweep: {len(children)} job(s), {counts.get('FAILED', 0)} failed; parent run {run_id} "
              f"(report: python -m experiments.report --sweep {run_id})", file=sys.stderr)
