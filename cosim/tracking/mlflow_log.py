"""Episodes and sweeps in MLflow, through ``MlflowClient`` (no global active-run state).

Tracking URI: ``MLFLOW_TRACKING_URI`` if set, else the SQLite file ``mlflow.db`` at the
repository root (an absolute path, whatever the working directory). With a SQLite store the
artifacts go to ``mlartifacts/`` beside the database file.

A sweep has one parent run (created by :class:`cosim.tracking.callbacks.MlflowSweepCallback`),
whose id is written to ``<sweep dir>/mlflow_sweep.json``; every job finds it there (or in the
environment variable ``COSIM_MLFLOW_PARENT_RUN``) and becomes a child run tagged
``mlflow.parentRunId``.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cosim.errors import ConfigurationError, TrackingError
from cosim.paths import REPO_ROOT

PARENT_FILE = "mlflow_sweep.json"
ENV_PARENT = "COSIM_MLFLOW_PARENT_RUN"
ROLE_TAG = "cosim.role"  # "sweep" on a parent, "episode" on an episode run
_BATCH = 1000  # MLflow's limit of metrics per log_batch call


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, or ``sqlite:///<repo root>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{REPO_ROOT / 'mlflow.db'}"


def client(uri: str | None = None) -> Any:
    """An ``MlflowClient`` on ``uri`` (default: :func:`tracking_uri`); a tracking server must answer."""
    from mlflow import MlflowClient

    uri = uri or tracking_uri()
    check_server(uri)
    return MlflowClient(tracking_uri=uri)


_ANSWERED: set[str] = set()


def check_server(uri: str, timeout: float | None = None) -> None:
    """Raise :class:`TrackingError` when the server of an ``http(s)://`` tracking URI does not
    accept a connection within ``timeout`` s (default ``COSIM_MLFLOW_CONNECT_TIMEOUT`` or 5):
    one clear error at once instead of MLflow's minutes of retries. Other URIs pass."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or uri in _ANSWERED:
        return
    wait = float(timeout if timeout is not None else os.environ.get("COSIM_MLFLOW_CONNECT_TIMEOUT", 5.0))
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with socket.create_connection((parts.hostname or "localhost", port), timeout=wait):
            pass
    except (OSError, ValueError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else getattr(exc, "strerror", None) or str(exc)
        raise TrackingError(f"MLflow tracking server {uri} does not answer ({reason}); start it, point "
                            "MLFLOW_TRACKING_URI at a running one, or run with mlflow.enabled=false") from None
    _ANSWERED.add(uri)


def _artifact_location(uri: str) -> str | None:
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None  # a server decides


def experiment_id(mlf: Any, name: str) -> str:
    """The id of experiment ``name``, created if needed (safe when parallel jobs race to create it)."""
    from mlflow.exceptions import MlflowException

    if not name:
        raise ConfigurationError("mlflow.experiment must be a non-empty name")
    exp = mlf.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            mlf.restore_experiment(exp.experiment_id)
        return str(exp.experiment_id)
    try:
        return str(mlf.create_experiment(name, artifact_location=_artifact_location(mlf.tracking_uri)))
    except MlflowException:
        exp = mlf.get_experiment_by_name(name)  # created by another job in the meantime
        if exp is None:
            raise
        return str(exp.experiment_id)


def write_parent(sweep_dir: str | Path, run_id: str, experiment: str, uri: str, jobs: int | None = None) -> Path:
    """Record the sweep's parent run (and its number of jobs) in ``<sweep_dir>/mlflow_sweep.json``."""
    from cosim.tracking.summary import write_json_atomic

    return write_json_atomic(Path(sweep_dir) / PARENT_FILE,
                             {"run_id": run_id, "experiment": experiment, "tracking_uri": uri, "jobs": jobs,
                              "started": time.time()})


def read_parent(sweep_dir: str | Path | None) -> dict[str, Any] | None:
    """The parent run of the sweep in ``sweep_dir`` (file first, then ``COSIM_MLFLOW_PARENT_RUN``)."""
    if sweep_dir is not None:
        path = Path(sweep_dir) / PARENT_FILE
        if path.is_file():
            return json.loads(path.read_text())
    run_id = os.environ.get(ENV_PARENT)
    return {"run_id": run_id} if run_id else None


def _finite(value: Any) -> float | None:
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, int | float | np.integer | np.floating):
        v = float(value)
        return v if math.isfinite(v) else None
    return None


class EpisodeRun:
    """One MLflow run (an episode, or a sweep's parent) written through the client.

    Args:
        experiment: experiment name (created if needed).
        run_name: the run's name.
        parent_run_id: makes this a nested child of that run.
        tags: initial tags.
        uri: tracking URI (default :func:`tracking_uri`).
    """

    def __init__(self, experiment: str, run_name: str, parent_run_id: str | None = None,
                 tags: Mapping[str, Any] | None = None, uri: str | None = None) -> None:
        self.client = client(uri)
        self.uri = self.client.tracking_uri
        self.experiment = experiment
        self.experiment_id = experiment_id(self.client, experiment)
        all_tags = {str(k): str(v) for k, v in (tags or {}).items()}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        self.run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=run_name)
        self.run_id: str = self.run.info.run_id
        self.parent_run_id = parent_run_id
        self.status: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(str(k), str(v)[:500]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(str(k), str(v)[:5000]) for k, v in tags.items()]
        if items:
            self.client.log_batch(self.run_id, tags=items)

    def log_metrics(self, metrics: Mapping[str, Any], step: int = 0) -> list[str]:
        """Log every finite number (booleans as 0/1) of ``metrics``; returns the keys logged."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(str(k), v, now, step) for k, value in metrics.items() if (v := _finite(value)) is not None]
        self._batch(items)
        return [m.key for m in items]

    def log_series(self, series: Mapping[str, tuple[Iterable[float], Iterable[float]]],
                   max_points: int = 500) -> None:
        """Time series ``{name: (times_s, values)}`` with step = time in ms, thinned to ``max_points``."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = []
        for name, (times, values) in series.items():
            t = np.asarray(list(times) if not isinstance(times, np.ndarray) else times, dtype=float)
            v = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
            stride = max(1, math.ceil(t.size / max_points))
            for ti, vi in zip(t[::stride], v[::stride], strict=True):
                if math.isfinite(vi):
                    items.append(Metric(str(name), float(vi), now, round(ti * 1000)))
        self._batch(items)

    def _batch(self, items: list[Any]) -> None:
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, metrics=items[i:i + _BATCH])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        p = Path(path)
        if p.is_dir():
            self.client.log_artifacts(self.run_id, str(p), artifact_path)
        elif p.is_file():
            self.client.log_artifact(self.run_id, str(p), artifact_path)

    def finish(self, status: str = "FINISHED", error: str | None = None) -> None:
        """End the run as ``FINISHED`` or ``FAILED`` (the error as tag ``error``)."""
        if error:
            self.set_tags({"error": error})
        self.client.set_terminated(self.run_id, status=status)
        self.status = status


def job_run(name: str, experiment: str, sweep_dir: str | Path | None = None, job: str | None = None,
            tags: Mapping[str, Any] | None = None) -> EpisodeRun:
    """An episode's run: named ``"<job>: <name>"`` and a child of the sweep's parent run
    (:func:`read_parent`) inside a sweep, tagged ``cosim.role=episode``, ``job`` and
    ``sweep_dir`` besides ``tags``. Episodes that ran and jobs that could not even be composed
    both get theirs here, so a sweep's runs look alike in the MLflow UI."""
    parent = read_parent(sweep_dir) if sweep_dir is not None else None
    all_tags: dict[str, Any] = {ROLE_TAG: "episode", **(tags or {})}
    if sweep_dir is not None:
        all_tags["sweep_dir"] = str(Path(sweep_dir).resolve())
    if job is not None:
        all_tags["job"] = job
        name = f"{job}: {name}"
    return EpisodeRun(experiment, name, parent_run_id=parent["run_id"] if parent else None, tags=all_tags,
                      uri=parent.get("tracking_uri") if parent else None)


# The run of an episode, recorded in its run directory ------------------------------
RUN_FILE = "mlflow_run.json"


def write_run_file(out_dir: str | Path, run: EpisodeRun, params: Mapping[str, Any] | None = None,
                   tags: Mapping[str, Any] | None = None, run_name: str | None = None) -> Path:
    """Record an episode's MLflow run in ``<out_dir>/mlflow_run.json`` as soon as it exists.

    The supervising process finds the run there when the episode's process dies (and marks it
    FAILED), :func:`relog` when the tracking server went away, a resumed sweep when it re-runs
    the job (and marks a run left RUNNING by a killed sweep as KILLED).
    """
    from cosim.tracking.summary import write_json_atomic

    return write_json_atomic(Path(out_dir) / RUN_FILE, {
        "run_id": run.run_id, "tracking_uri": run.uri, "experiment": run.experiment,
        "parent_run_id": run.parent_run_id, "run_name": run_name,
        "tags": {str(k): str(v) for k, v in (tags or {}).items()},
        "params": {str(k): str(v) for k, v in (params or {}).items()}})


def read_run_file(out_dir: str | Path) -> dict[str, Any] | None:
    path = Path(out_dir) / RUN_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class _Existing(EpisodeRun):
    """An existing run, reopened by id (no new run is created)."""

    def __init__(self, run_id: str, uri: str | None = None) -> None:
        self.client = client(uri)
        self.uri = self.client.tracking_uri
        self.run = self.client.get_run(run_id)
        self.run_id = run_id
        self.experiment_id = self.run.info.experiment_id
        self.experiment = str(self.client.get_experiment(self.experiment_id).name)
        self.parent_run_id = self.run.data.tags.get("mlflow.parentRunId")
        self.status = self.run.info.status


def reopen(run_id: str, uri: str | None = None) -> EpisodeRun:
    """The existing run ``run_id`` as an :class:`EpisodeRun` (to log more to it and end it)."""
    return _Existing(run_id, uri)


def server_error(exc: BaseException, uri: str | None = None) -> str:
    """One line about a tracking store that could not be reached or refused a call."""
    if isinstance(exc, TrackingError):
        return str(exc)
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:300] + "..."
    return f"tracking server {uri or tracking_uri()} failed: {type(exc).__name__}: {text}"



def tracking_exceptions() -> tuple[type[BaseException], ...]:
    """What a call to the tracking store raises when the store is away or refuses it (including
    :class:`~cosim.errors.TrackingError` from :func:`check_server`)."""
    from mlflow.exceptions import MlflowException

    extra: tuple[type[BaseException], ...] = ()
    try:
        import requests

        extra = (requests.RequestException,)
    except ImportError:  # pragma: no cover
        pass
    return (MlflowException, TrackingError, OSError, *extra)
