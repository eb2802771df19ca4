"""Log finished run directories to MLflow afterwards (when the tracking server was away).

    python -m experiments.relog multirun/run/2026-01-01_12-00-00/3 outputs/run/2026-01-01_12-00-00
    MLFLOW_TRACKING_URI=http://tracking:5000 python -m experiments.relog multirun/run/<sweep>/*

An episode writes everything it logs to its run directory first (``summary.json``,
``config.yaml``, traces, plots, ``alerts.jsonl``, ``audit.jsonl``) and records its MLflow run
in ``mlflow_run.json``. This logs a directory the same way: into that run if the tracking
store knows it (it was created before the server went away), else into a new run with the
same name, tags, params and parent. The run ends with the status of ``summary.json``.
Metric series come from ``trace.csv`` (detector score series are not in the run directory).

Tracking URI: ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else the one recorded in
``mlflow_run.json``, else the default (``mlflow.db`` at the repository root).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from cosim.errors import ConfigurationError
from cosim.tracking.mlflow_log import (
    ROLE_TAG,
    EpisodeRun,
    read_run_file,
    reopen,
    server_error,
    tracking_exceptions,
    write_run_file,
)
from cosim.tracking.summary import write_summary

LOGGED_TAG = "cosim.logged"  # "true" once an episode's results are in its run


def _trace(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return {}
    out: dict[str, np.ndarray] = {}
    for i, name in enumerate(rows[0]):
        values = [r[i] for r in rows[1:] if len(r) > i]
        try:
            out[name] = np.array(values, dtype=np.float64)
        except ValueError:
            out[name] = np.array(values, dtype=object)
    return out


def relog(run_dir: str | Path, uri: str | None = None) -> str:
    """Log the episode in ``run_dir`` to MLflow; returns the run id.

    Raises:
        ConfigurationError: ``run_dir`` holds no ``summary.json`` or ``config.yaml``.
        MlflowException, OSError: the tracking store cannot be reached (still).
    """
    from experiments.run import EpisodeResult, log_episode

    run_dir = Path(run_dir)
    summary_path, config_path = run_dir / "summary.json", run_dir / "config.yaml"
    if not summary_path.is_file() or not config_path.is_file():
        raise ConfigurationError(f"{run_dir} is not an episode's run directory (no summary.json or config.yaml)")
    summary: dict[str, Any] = json.loads(summary_path.read_text())
    cfg = OmegaConf.load(config_path)
    info = read_run_file(run_dir) or {}
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or info.get("tracking_uri")
    run: EpisodeRun | None = None
    if info.get("run_id"):
        from mlflow.exceptions import MlflowException

        try:
            run = reopen(info["run_id"], uri)
        except MlflowException:
            run = None  # another store, or the run was lost with the server's database
    if run is not None and (run.run.data.tags.get(LOGGED_TAG) == "true"
                            or (run.status != "RUNNING" and not summary.get("tracking_error"))):
        return run.run_id  # logged already
    if run is None:
        tags = {ROLE_TAG: "episode", **(info.get("tags") or {}), "relogged_from": str(run_dir.resolve())}
        name = info.get("run_name") or f"relogged {run_dir.name}"
        run = EpisodeRun(info.get("experiment") or str(cfg.get("mlflow", {}).get("experiment", "cosim")), name,
                         parent_run_id=info.get("parent_run_id"), tags=tags, uri=uri)
        run.log_params(info.get("params") or {"seed": cfg.get("seed")})
    status = str(summary.get("status") or "FAILED")
    ep = EpisodeResult(summary=summary, data=_trace(run_dir / "trace.csv")) if status == "FINISHED" else None
    if ep is not None and "time" not in ep.data:
        ep.data["time"] = np.zeros(0)
    log_episode(run, cfg, ep, run_dir)
    run.set_tags({LOGGED_TAG: "true", "relogged": "true"})
    run.finish(status if status in ("FINISHED", "FAILED", "KILLED") else "FAILED", error=summary.get("error"))
    summary["mlflow_run_id"] = run.run_id
    if summary.pop("tracking_error", None) is not None:
        summary["relogged"] = True
    write_summary(run_dir, summary)
    write_run_file(run_dir, run, info.get("params"), info.get("tags"), info.get("run_name"))
    return run.run_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.relog", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="episode run directories (with summary.json)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: see above)")
    args = parser.parse_args(argv)
    failed = 0
    for run_dir in args.run_dirs:
        try:
            run_id = relog(run_dir, args.tracking_uri)
        except ConfigurationError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        except tracking_exceptions() as exc:
            print(f"error: {run_dir}: {server_error(exc, args.tracking_uri)}", file=sys.stderr)
            failed += 1
            continue
        print(f"{run_dir}: MLflow run {run_id}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
