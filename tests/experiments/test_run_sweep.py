"""A tiny sweep (joblib, two parallel workers): one MLflow parent, nested children, a failed job."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from cosim.tracking.mlflow_log import PARENT_FILE
from tests.tracking.configs import FILES, write_test_conf

REPO = Path(__file__).resolve().parents[2]


def run_sweep(root: Path, *overrides: str, attack: str = "attack=demo_press",
              files: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, str, Path]:
    """Run ``experiments.run -m`` on the demo plant with the test configs (and ``files``, written
    beside them); returns (process, uri, sweep dir)."""
    conf = write_test_conf(root / "conf")
    for rel, text in (files or {}).items():
        (conf / rel).parent.mkdir(parents=True, exist_ok=True)
        (conf / rel).write_text(text)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    sweep_dir = root / "sweep"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    env.pop("COSIM_MLFLOW_PARENT_RUN", None)
    cmd = [sys.executable, "-m", "experiments.run", "-m", "plant=demo", "twin=none", "network=none",
           attack, "defense=flag", "progress=false", f"hydra.searchpath=[file://{conf}]",
           f"hydra.sweep.dir={sweep_dir}", f"baseline.cache_dir={root / 'baselines'}",
           "hydra.launcher.n_jobs=2", *overrides]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    return proc, uri, sweep_dir


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Three jobs on two workers: seeds 0 and 1 with 2 s, and a bad duration (-1) that fails."""
    root = tmp_path_factory.mktemp("sweep")
    proc, uri, sweep_dir = run_sweep(root, "seed=0,1", "duration=2,-1")
    return proc, uri, sweep_dir


@pytest.mark.slow
def test_sweep_nests_children_under_one_parent(sweep):
    proc, uri, sweep_dir = sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    mlf = MlflowClient(uri)
    exp = mlf.get_experiment_by_name("cosim")
    runs = mlf.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("cosim.role") == "sweep"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    recorded = json.loads((sweep_dir / PARENT_FILE).read_text())
    assert recorded["run_id"] == parent.info.run_id and recorded["jobs"] == 4
    assert "sweep [" in proc.stderr and "4/4 jobs" in proc.stderr  # the sweep's progress line
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 4 and len(runs) == 5
    finished = [r for r in children if r.info.status == "FINISHED"]
    failed = [r for r in children if r.info.status == "FAILED"]
    assert sorted(r.data.params["seed"] for r in finished) == ["0", "1"]
    assert all(float(r.data.params["duration"]) == 2.0 for r in finished)
    assert len(failed) == 2 and all("duration must be positive" in r.data.tags["error"] for r in failed)
    for r in finished:
        assert r.data.params["attack"] == "demo_press" and r.data.params["defense"] == "flag"
        assert r.data.metrics["sim_time_s"] == pytest.approx(2.0) and "f1" in r.data.metrics
        job_dir = sweep_dir / r.data.tags["job"]
        summary = json.loads((job_dir / "summary.json").read_text())
        assert summary["mlflow_run_id"] == r.info.run_id and summary["f1"] == pytest.approx(r.data.metrics["f1"])
    assert parent.data.tags["jobs_failed"] == "2" and parent.data.tags["jobs_finished"] == "2"
    statuses = sorted(json.loads((d / "summary.json").read_text())["status"]
                      for d in sweep_dir.iterdir() if d.is_dir())
    assert statuses == ["FAILED", "FAILED", "FINISHED", "FINISHED"]


@pytest.mark.slow
def test_report_builds_from_the_sweep(sweep, tmp_path, monkeypatch):
    from cosim.tracking.report import build_report

    proc, uri, _ = sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    report = build_report(out_dir=tmp_path / "report", framework="flag")  # the latest sweep
    mlf = MlflowClient(uri)
    children = [r for r in mlf.search_runs([mlf.get_experiment_by_name("cosim").experiment_id])
                if r.data.tags.get("mlflow.parentRunId") == report.parent_id and r.info.status == "FINISHED"]
    f1 = [r.data.metrics["f1"] for r in children]
    assert report.runs == 4 and report.failed == 2 and len(report.rows) == 1
    row = report.rows[0]
    assert (row["attack"], row["defense"], row["n"], row["failed"]) == ("demo_press", "flag", 2, 2)
    assert row["f1_mean"] == pytest.approx(sum(f1) / 2)
    assert row["f1_std"] == pytest.approx(abs(f1[0] - f1[1]) / 2 ** 0.5)
    md = (tmp_path / "report" / "report.md").read_text()
    assert f"| demo_press | flag | 2 (+2 failed) | {row['f1_mean']:.3g} ± {row['f1_std']:.2g} |" in md
    with (tmp_path / "report" / "report.csv").open() as fh:
        (csv_row,) = list(csv.DictReader(fh))
    assert float(csv_row["f1_mean"]) == pytest.approx(row["f1_mean"]) and csv_row["seeds"] == "0,1"
    claims = {c["claim"]: c for c in report.claims}
    assert claims["detection F1"]["pass"] == ("PASS" if row["f1_mean"] >= 0.95 else "FAIL")
    assert claims["production loss cut vs CPS-only"]["pass"] == "n/a"  # no CPS-only runs in this sweep
    logged = {a.path for a in mlf.list_artifacts(report.parent_id, "report")}
    assert {"report/report.md", "report/report.csv", "report/f1.png"} <= logged


@pytest.mark.slow
def test_job_whose_overrides_do_not_compose_together_fails_alone(tmp_path):
    # attack.extra exists with demo_extra, or when the experiment adds it: of the eight jobs only
    # (plain, demo_press, either value) do not compose, and each of their values composed in an
    # earlier job, so the up-front check passes them and the launcher meets them
    files = {"attack/demo_extra.yaml": FILES["attack/demo_press.yaml"] + "extra: 1\n",
             "experiment/adds_extra.yaml": "# @package _global_\nattack: {extra: 0}\n",
             "experiment/plain.yaml": "# @package _global_\n{}\n"}
    proc, uri, sweep_dir = run_sweep(tmp_path, "experiment=adds_extra,plain", "attack.extra=2,3", "duration=1",
                                     attack="attack=demo_extra,demo_press", files=files)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = {d.name: json.loads((d / "summary.json").read_text()) for d in sweep_dir.iterdir() if d.is_dir()}
    failed = {job: s for job, s in summaries.items() if s["status"] == "FAILED"}
    assert len(summaries) == 8 and len(failed) == 2, summaries
    for job, summary in failed.items():
        assert "attack.extra" in summary["error"] and "experiment=plain" in summary["overrides"] \
            and "attack=demo_press" in summary["overrides"]
        assert f"error: job {job} (" in proc.stderr
    mlf = MlflowClient(uri)
    runs = mlf.search_runs([mlf.get_experiment_by_name("cosim").experiment_id], max_results=100)
    (parent,) = [r for r in runs if r.data.tags.get("cosim.role") == "sweep"]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["jobs_failed"] == "2" and parent.data.tags["jobs_finished"] == "6"
    for job, summary in failed.items():
        child = mlf.get_run(summary["mlflow_run_id"])
        assert child.info.status == "FAILED" and child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["job"] == job and "attack.extra" in child.data.tags["error"]
