"""An episode logs to an MLflow tracking server on 127.0.0.1 (MLFLOW_TRACKING_URI=http://...)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient

from experiments.run import execute
from tests.tracking.configs import write_test_conf

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore:.*is validated against ConfigStore schema:UserWarning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path):
    port = free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen([str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--workers", "1"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("mlflow server did not answer within 120 s")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its worker, started here
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_episode_logs_to_a_tracking_server(tmp_path, server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    conf = write_test_conf(tmp_path / "conf")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("run", overrides=[f"hydra.searchpath=[file://{conf}]", "progress=false", "plant=demo",
                                        "twin=none", "network=none", "attack=demo_press", "defense=flag",
                                        "duration=2", "mlflow.experiment=served"])
    status, summary, run_id = execute(cfg, tmp_path / "out", {"attack": "demo_press"}, search_dirs=[conf])
    assert status == 0, summary.get("error")
    mlf = MlflowClient(server)
    run = mlf.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["attack"] == "demo_press"
    assert run.data.metrics["f1"] == pytest.approx(summary["f1"])
    assert mlf.get_experiment(run.info.experiment_id).name == "served"
    assert "summary.json" in {a.path for a in mlf.list_artifacts(run_id)}
