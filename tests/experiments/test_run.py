"""`python -m experiments.run`: one episode, its summary.json and its MLflow run; bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient

from cosim.tracking.summary import SUMMARY_KEYS
from experiments.run import execute
from tests.tracking.configs import write_test_conf

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore:.*is validated against ConfigStore schema:UserWarning")


@pytest.fixture(scope="module")
def tracking_db(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"  # one store: its tables are made once


@pytest.fixture
def tracking(tracking_db, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_db)
    return tracking_db


def config(tmp_path: Path, *overrides: str):
    conf = write_test_conf(tmp_path / "conf")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("run", overrides=[f"hydra.searchpath=[file://{conf}]", "progress=false",
                                         f"baseline.cache_dir={tmp_path / 'baselines'}", *overrides]), conf


DEMO = ("plant=demo", "twin=none", "network=none", "attack=demo_press", "defense=flag", "duration=3")


def test_episode_writes_summary_and_logs_to_mlflow(tmp_path, tracking):
    cfg, conf = config(tmp_path, *DEMO, "seed=2")
    status, summary, run_id = execute(cfg, tmp_path / "out", {"attack": "demo_press", "defense": "flag"},
                                      search_dirs=[conf])
    assert status == 0, summary.get("error")
    data = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert list(data)[:len(SUMMARY_KEYS)] == list(SUMMARY_KEYS)
    assert data["status"] == "FINISHED" and data["sim_time_s"] == pytest.approx(3.0)
    assert data["detected"] is True and 0.0 <= data["detection_latency_s"] < 1.0  # the forced press raises pressure
    assert 0.0 < data["f1"] <= 1.0 and data["containment_latency_s"] == 0.0
    assert data["realtime_factor"] == pytest.approx(data["sim_time_s"] / data["wall_time_s"])
    assert data["parts_produced"] is None  # the demo plant has no production monitor
    assert data["defence"]["closed"] is True  # what holds resources (a sandbox twin, files) is closed
    c = data["confusion"]
    assert c["tp"] + c["fp"] + c["tn"] + c["fn"] == 301  # grid: recorder samples, every tick of 3 s
    run = MlflowClient(tracking).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["attack"] == "demo_press" and run.data.params["detector_config"] == "thr"
    assert run.data.params["seed"] == "2"
    assert run.data.metrics["f1"] == pytest.approx(data["f1"])
    history = MlflowClient(tracking).get_metric_history(run_id, "ts/score.threshold")
    assert len(history) > 10 and max(m.value for m in history) > 3.0
    arts = {a.path for a in MlflowClient(tracking).list_artifacts(run_id)}
    assert {"summary.json", "config.yaml", "timeline.png", "confusion.png", "audit.jsonl", "traces"} <= arts


def test_failure_mid_run_keeps_traces_and_marks_run_failed(tmp_path, tracking, capsys):
    cfg, conf = config(tmp_path, *DEMO, "detector=thr_fail")
    status, summary, run_id = execute(cfg, tmp_path / "out", {}, search_dirs=[conf])
    assert status == 1 and summary["status"] == "FAILED" and "failing on purpose" in summary["error"]
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if line.startswith("error:")] == [f"error: {summary['error']}"]
    trace = (tmp_path / "out" / "trace.csv").read_text().splitlines()
    assert float(trace[-1].split(",")[0]) == pytest.approx(1.5)  # recorded up to the failure
    data = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert list(data)[:len(SUMMARY_KEYS)] == list(SUMMARY_KEYS) and data["status"] == "FAILED"
    mlf = MlflowClient(tracking)
    run = mlf.get_run(run_id)
    assert run.info.status == "FAILED" and "failing on purpose" in run.data.tags["error"]
    assert "trace.csv" in {a.path.split("/")[-1] for a in mlf.list_artifacts(run_id, "traces")}


def test_smart_factory_episode_against_its_baseline(tmp_path, tracking):
    cfg, conf = config(tmp_path, "duration=25", "attack=injection", "attack.events.0.at=5.0",
                       "attack.events.0.duration=10.0", "defense=none")
    status, summary, _ = execute(cfg, tmp_path / "out", {}, search_dirs=[conf])
    assert status == 0, summary.get("error")
    assert summary["parts_baseline"] >= 1 and summary["parts_produced"] is not None
    assert summary["production_loss_frac"] == pytest.approx(
        max(0, summary["parts_baseline"] - summary["parts_produced"]) / summary["parts_baseline"])
    assert summary["twin_deviation_rms"] > 0 and summary["f1"] is None  # no detectors with defense=none
    assert summary["baseline_cached"] is False
    status, again, _ = execute(config(tmp_path, "duration=25", "defense=none", "attack=spoofing")[0],
                               tmp_path / "out2", {}, search_dirs=[conf])
    assert status == 0 and again["baseline_cached"] is True and again["parts_baseline"] == summary["parts_baseline"]


def test_bad_override_gives_one_error_line_and_exit_1(tmp_path, tracking):
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking}
    proc = subprocess.run([sys.executable, "-m", "experiments.run", "plant=demo", "twin=none", "network=none",
                           "attack=none", "defense=none", "plant.base_step=abc", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: plant.base_step must be a float, got 'abc'"]
    assert "Traceback" not in proc.stderr
    data = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert data["status"] == "FAILED" and "plant.base_step" in data["error"]
    run = MlflowClient(env["MLFLOW_TRACKING_URI"]).get_run(data["mlflow_run_id"])
    assert run.info.status == "FAILED" and "plant.base_step" in run.data.tags["error"]


def test_paper_table_sweeps_every_attack_preset_and_three_defences():
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("run", overrides=["experiment=paper_table"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    presets = sorted(p.stem for p in (REPO / "conf" / "attack").glob("*.yaml") if p.stem != "none")
    assert sorted(params.attack.split(",")) == presets
    assert params.defense.split(",") == ["none", "cps_only", "dt_framework"] and params.seed == "range(5)"
    assert cfg.hydra.launcher.n_jobs == 2 and "joblib" in cfg.hydra.launcher._target_
    assert cfg.mlflow.experiment == "paper_table" and cfg.duration >= 60


def test_config_that_fails_before_the_run_starts_is_one_line_and_a_failed_run(tmp_path, tracking, capsys):
    # the CPS-only detectors read the plant's detection section, which the demo plant lacks
    cfg, conf = config(tmp_path, "plant=demo", "twin=none", "network=none", "attack=none", "defense=cps_only")
    status, summary, run_id = execute(cfg, tmp_path / "out", {}, search_dirs=[conf])
    assert status == 1 and summary["status"] == "FAILED"
    assert summary["error"] == ("detector.detectors.limits.features.physics refers to 'plant.detection.physics', "
                                "which is not in the config: plant 'demo' does not define it (conf/plant/"
                                "smart_factory.yaml shows every section the twin, network, detectors and "
                                "defences read)")
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if line.startswith("error:")] == [f"error: {summary['error']}"]
    run = MlflowClient(tracking).get_run(run_id)
    assert run_id == summary["mlflow_run_id"] and run.info.status == "FAILED"
    assert run.data.tags["error"] == summary["error"] and run.data.tags["defense"] == "cps_only"
