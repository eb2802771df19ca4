"""Faults inside the framework: a hung or crashing FMU, a killed job, a lost tracking server,
a killed sweep resumed.

Every episode is the demo plant with the test FMU ``faulty`` (``models/fmus/faulty``, real C
compiled like the station FMUs) added as a unit; its parameters make a step hang, abort,
segfault, SIGKILL its own process or sleep, at a given simulated time. Each fault must give
one ``error:`` line naming it, a FAILED ``summary.json``, a FAILED MLflow run where one had
started, the trace recorded up to the fault, and leave other jobs of a sweep alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient

from cosim.tracking.report import child_runs
from experiments.relog import main as relog_main
from experiments.run import execute
from tests.experiments.test_run_server import free_port
from tests.tracking.configs import write_test_conf

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore:.*is validated against ConfigStore schema:UserWarning")

FAULTY_PLANT = """defaults:
  - demo
  - _self_
name: demo_faulty
units:
  faulty:
    _target_: cosim.units.fmu.FMUUnit
    path: ${fmu:faulty}
    parameters: {hang_at: -1.0, crash_at: -1.0, crash_mode: 1, step_sleep_s: 0.0}
"""
BASE = ("plant=demo_faulty", "twin=none", "network=none", "attack=none", "defense=none", "duration=3",
        "progress=false", "record.checkpoint_s=0.5")
P = "plant.units.faulty.parameters"


def write_conf(root: Path) -> Path:
    conf = write_test_conf(root)
    (conf / "plant").mkdir(exist_ok=True)
    (conf / "plant" / "demo_faulty.yaml").write_text(FAULTY_PLANT)
    return conf


@pytest.fixture(scope="module")
def tracking_db(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def tracking(tracking_db, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_db)
    monkeypatch.delenv("COSIM_MLFLOW_PARENT_RUN", raising=False)
    return tracking_db


def episode(tmp_path: Path, *overrides: str) -> tuple[int, dict, str | None, Path]:
    conf = write_conf(tmp_path / "conf")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("run", overrides=[f"hydra.searchpath=[file://{conf}]", f"baseline.cache_dir={tmp_path / 'b'}",
                                        *BASE, *overrides])
    out = tmp_path / "out"
    status, summary, run_id = execute(cfg, out, {}, search_dirs=[conf])
    return status, summary, run_id, out


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def trace_end(out: Path) -> float:
    return float((out / "trace.csv").read_text().splitlines()[-1].split(",")[0])


def assert_failed_run(uri: str, run_id: str, error: str) -> None:
    mlf = MlflowClient(uri)
    run = mlf.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["error"] == error
    arts = {a.path for a in mlf.list_artifacts(run_id)}
    assert {"summary.json", "config.yaml", "traces"} <= arts
    assert "traces/trace.csv" in {a.path for a in mlf.list_artifacts(run_id, "traces")}


# A hung FMU: the watchdog -----------------------------------------------------------------
def test_hung_fmu_is_ended_by_the_watchdog(tmp_path, tracking, capfd):
    status, summary, run_id, out = episode(tmp_path, f"{P}.hang_at=1.0", "watchdog.step_timeout_s=1")
    assert status == 1 and summary["status"] == "FAILED" and summary["error_type"] == "StepTimeout"
    assert summary["error"] == ("unit 'faulty': step at t=1.0 hung: no return within 1 s "
                                "(watchdog.step_timeout_s)")
    assert summary["unit"] == "faulty" and summary["timeout_s"] == 1.0
    assert error_lines(capfd.readouterr().err) == [f"error: {summary['error']}"]
    assert trace_end(out) == pytest.approx(1.0)  # every completed tick, up to the hung step
    assert (out / "trace.parquet").is_file() and not (out / "trace.partial.csv").exists()
    assert json.loads((out / "summary.json").read_text())["status"] == "FAILED"
    assert_failed_run(tracking, run_id, summary["error"])


@pytest.mark.slow
def test_hung_fmu_without_isolation_ends_the_process_after_recording(tmp_path, tracking):
    """``isolation=none``: the watchdog records the failure, then ends the job's own process."""
    conf = write_conf(tmp_path / "conf")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "experiments.run", *BASE, f"{P}.hang_at=0.5", "isolation=none",
                           "watchdog.step_timeout_s=1", f"hydra.searchpath=[file://{conf}]",
                           f"hydra.run.dir={out}", f"baseline.cache_dir={tmp_path / 'b'}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MLFLOW_TRACKING_URI": tracking})
    summary = json.loads((out / "summary.json").read_text())
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert error_lines(proc.stderr) == [f"error: {summary['error']}"]
    assert summary["status"] == "FAILED" and "unit 'faulty': step at t=0.5 hung" in summary["error"]
    assert trace_end(out) == pytest.approx(0.5)
    assert_failed_run(tracking, summary["mlflow_run_id"], summary["error"])


# A crash or a kill: process isolation -----------------------------------------------------
@pytest.mark.parametrize(("mode", "name"), [(1, "SIGABRT"), (2, "SIGSEGV"), (3, "SIGKILL")])
def test_crash_or_kill_fails_only_the_episode_with_its_trace(tmp_path, tracking, capfd, mode, name):
    status, summary, run_id, out = episode(tmp_path, f"{P}.crash_at=1.2", f"{P}.crash_mode={mode}")
    assert status == 1 and summary["status"] == "FAILED" and summary["error_type"] == "JobKilled"
    number = int(getattr(signal, name))
    assert summary["error"].startswith(f"episode process killed by {name} (signal {number})")
    assert summary["exit_code"] == -number
    assert "trace kept up to t=1 s" in summary["error"]  # checkpointed every 0.5 s: up to t=1.0
    assert error_lines(capfd.readouterr().err) == [f"error: {summary['error']}"]
    assert trace_end(out) == pytest.approx(1.0) and summary["sim_time_s"] == pytest.approx(1.0)
    assert not (out / "trace.partial.csv").exists()
    assert json.loads((out / "summary.json").read_text()) == summary
    assert_failed_run(tracking, run_id, summary["error"])


def test_checkpointed_trace_equals_the_full_trace(tmp_path, tracking):
    status, summary, _, out = episode(tmp_path, "record.checkpoint_s=0.7")
    assert status == 0 and summary["status"] == "FINISHED"
    assert not (out / "trace.partial.csv").exists()  # removed once trace.csv is written
    assert trace_end(out) == pytest.approx(3.0)


def test_recorder_checkpoint_equals_write_csv_across_a_rollback(tmp_path):
    from cosim import FMUUnit, Master, Recorder
    from models.build import build_fmu

    m = Master(0.01)
    m.add_unit(FMUUnit("f", build_fmu("faulty")))
    m.set_input("f.u", 1.0)
    rec = m.add_observer(Recorder(["f.y", "f.t"]))
    m.build()
    rec.checkpoint_to(tmp_path / "partial.csv", 7)
    m.step(20)
    snap = m.save_snapshot()
    m.step(30)  # checkpointed rows beyond the snapshot are cut from the file on restore
    m.restore_snapshot(snap)
    m.step(33)
    rec.checkpoint()
    assert (tmp_path / "partial.csv").read_text() == rec.write_csv(tmp_path / "full.csv").read_text()
    assert rec.finish_checkpoint(tmp_path / "trace.csv") == tmp_path / "trace.csv"
    assert (tmp_path / "trace.csv").read_text() == (tmp_path / "full.csv").read_text()
    assert not (tmp_path / "partial.csv").exists() and rec.finish_checkpoint(tmp_path / "x.csv") is None


# A sweep goes on ---------------------------------------------------------------------------
def run_sweep(root: Path, *overrides: str, wait: bool = True) -> subprocess.Popen:
    conf = write_conf(root / "conf")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    env.pop("COSIM_MLFLOW_PARENT_RUN", None)
    cmd = [sys.executable, "-m", "experiments.run", "-m", *BASE, f"hydra.searchpath=[file://{conf}]",
           f"hydra.sweep.dir={root / 'sweep'}", f"baseline.cache_dir={root / 'b'}", "hydra/launcher=joblib",
           "hydra.launcher.n_jobs=2", *overrides]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    if wait:
        proc.out, proc.err = proc.communicate(timeout=600)
    return proc


def summaries(sweep_dir: Path) -> dict[str, dict]:
    return {d.name: json.loads((d / "summary.json").read_text())
            for d in sorted(sweep_dir.iterdir()) if (d / "summary.json").is_file()}


@pytest.mark.slow
def test_sweep_with_hung_and_crashing_jobs_finishes_the_others(tmp_path):
    proc = run_sweep(tmp_path, f"{P}.hang_at=-1,1.0", f"{P}.crash_at=-1,1.5", "watchdog.step_timeout_s=1")
    assert proc.returncode == 0, proc.err[-3000:]
    assert "Traceback" not in proc.err and "Fatal Python error" not in proc.err
    done = summaries(tmp_path / "sweep")
    assert sorted(done) == ["0", "1", "2", "3"]
    assert done["0"]["status"] == "FINISHED" and done["0"]["sim_time_s"] == pytest.approx(3.0)
    assert done["1"]["error_type"] == "JobKilled" and "SIGABRT" in done["1"]["error"]  # crash at 1.5
    assert done["2"]["error_type"] == "StepTimeout" and done["3"]["error_type"] == "StepTimeout"  # hang at 1.0
    mlf = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = json.loads((tmp_path / "sweep" / "mlflow_sweep.json").read_text())["run_id"]
    p = mlf.get_run(parent)
    assert p.info.status == "FINISHED" and p.data.tags["jobs"] == "4" and p.data.tags["jobs_failed"] == "3"
    for job, s in done.items():
        run = mlf.get_run(s["mlflow_run_id"])
        assert run.data.tags["mlflow.parentRunId"] == parent and run.data.tags["job"] == job
        assert run.info.status == s["status"]


# The tracking server goes away ------------------------------------------------------------
def start_server(root: Path, port: int) -> subprocess.Popen:
    import urllib.request

    mlflow_bin = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen([str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{root / 'server.db'}", "--workers", "1",
                             "--artifacts-destination", str(root / "artifacts")],
                            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                if resp.status == 200:
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(proc)
            pytest.fail("mlflow server did not start")
        time.sleep(0.5)


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)  # the server and its workers, started here
    proc.wait()


@pytest.mark.slow
def test_tracking_server_lost_mid_run_keeps_results_and_relog_logs_them(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(tmp_path, port)
    conf = write_conf(tmp_path / "conf")
    out = tmp_path / "out"
    env = {**os.environ, "MLFLOW_TRACKING_URI": url, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
           "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    env.pop("COSIM_MLFLOW_PARENT_RUN", None)
    try:
        # 300 steps of 10 ms sleep: the run is under way long enough to lose its server
        episode_proc = subprocess.Popen(
            [sys.executable, "-m", "experiments.run", *BASE, f"{P}.step_sleep_s=0.01", "mlflow.experiment=lost",
             f"hydra.searchpath=[file://{conf}]", f"hydra.run.dir={out}", f"baseline.cache_dir={tmp_path / 'b'}"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while not (out / "mlflow_run.json").is_file():  # the run has started on the server
            assert episode_proc.poll() is None and time.monotonic() < deadline, episode_proc.stderr.read()
            time.sleep(0.05)
        stop_server(server)
        _, err = episode_proc.communicate(timeout=300)
    finally:
        stop_server(server)
    assert episode_proc.returncode == 1
    summary = json.loads((out / "summary.json").read_text())
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith(f"error: tracking server {url} failed")
    assert f"python -m experiments.relog {out}" in lines[0] and summary["tracking_error"] == lines[0][7:]
    assert summary["status"] == "FINISHED" and summary["sim_time_s"] == pytest.approx(3.0)
    for name in ("trace.csv", "trace.parquet", "config.yaml", "mlflow_run.json"):
        assert (out / name).is_file(), name

    server = start_server(tmp_path, port)  # the same store again
    try:
        os.environ["MLFLOW_TRACKING_URI"] = url
        try:
            assert relog_main([str(out)]) == 0
        finally:
            del os.environ["MLFLOW_TRACKING_URI"]
        mlf = MlflowClient(url)
        run = mlf.get_run(summary["mlflow_run_id"])  # the run made before the server went away
        assert run.info.status == "FINISHED" and run.data.params["seed"] == "0"
        assert run.data.metrics["sim_time_s"] == pytest.approx(3.0)
        arts = {a.path for a in mlf.list_artifacts(run.info.run_id)}
        assert {"summary.json", "config.yaml", "traces"} <= arts
        relogged = json.loads((out / "summary.json").read_text())
        assert relogged["relogged"] is True and "tracking_error" not in relogged
    finally:
        stop_server(server)


# A killed sweep, resumed ------------------------------------------------------------------
@pytest.mark.slow
def test_killed_sweep_is_resumed_without_rerunning_finished_jobs(tmp_path):
    sweep_dir = tmp_path / "sweep"
    # jobs 0 and 1 are quick; 2 and 3 sleep 10 ms a step (3 s): the sweep is killed while they run
    over = (f"{P}.step_sleep_s=0,0.01", "seed=0,1")
    proc = run_sweep(tmp_path, *over, wait=False)
    try:
        deadline = time.monotonic() + 300
        while True:
            done = summaries(sweep_dir) if sweep_dir.is_dir() else {}
            started = all((sweep_dir / j / "mlflow_run.json").is_file() for j in ("2", "3"))
            if {"0", "1"} <= set(done) and started:
                break
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep, its workers and their episodes
        proc.wait()
    before = summaries(sweep_dir)
    assert {"0", "1"} <= set(before) and all(before[j]["status"] == "FINISHED" for j in ("0", "1"))
    assert not {"2", "3"} & set(before)
    mtimes = {j: (sweep_dir / j / "summary.json").stat().st_mtime_ns for j in ("0", "1")}
    killed = {j: json.loads((sweep_dir / j / "mlflow_run.json").read_text())["run_id"] for j in ("2", "3")}
    parent = json.loads((sweep_dir / "mlflow_sweep.json").read_text())["run_id"]

    proc = run_sweep(tmp_path, *over, "resume=true")
    assert proc.returncode == 0, proc.err[-3000:]
    after = summaries(sweep_dir)
    assert sorted(after) == ["0", "1", "2", "3"] and all(s["status"] == "FINISHED" for s in after.values())
    for j in ("0", "1"):  # not run again
        assert (sweep_dir / j / "summary.json").stat().st_mtime_ns == mtimes[j]
        assert after[j]["mlflow_run_id"] == before[j]["mlflow_run_id"]
    mlf = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert json.loads((sweep_dir / "mlflow_sweep.json").read_text())["run_id"] == parent  # the same parent
    p = mlf.get_run(parent)
    assert p.info.status == "FINISHED" and p.data.tags["jobs"] == "4" and p.data.tags["jobs_finished"] == "4"
    for j in ("2", "3"):
        assert after[j]["mlflow_run_id"] != killed[j]
        assert mlf.get_run(killed[j]).info.status == "KILLED"  # left RUNNING by the killed sweep
        run = mlf.get_run(after[j]["mlflow_run_id"])
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent
    # the report counts each job once: the killed attempts are superseded
    assert {r.info.run_id for r in child_runs(mlf, p)} == {after[j]["mlflow_run_id"] for j in after}


# A killed supervisor ------------------------------------------------------------------------
def test_episode_process_ends_with_its_supervising_process(tmp_path):
    import psutil

    conf = write_conf(tmp_path / "conf")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    # 10 ms of sleep a step: the episode would take over a minute
    cmd = [sys.executable, "-m", "experiments.run", *BASE, "duration=60", f"{P}.step_sleep_s=0.01",
           f"hydra.searchpath=[file://{conf}]", f"hydra.run.dir={tmp_path / 'run'}", "baseline.enabled=false"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "run" / "mlflow_run.json").is_file():  # the episode's process is running
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
            time.sleep(0.05)
        (episode,) = psutil.Process(proc.pid).children()
        os.kill(proc.pid, signal.SIGKILL)  # the supervisor alone, not its process group
        proc.wait()
        gone, alive = psutil.wait_procs([episode], timeout=10)
        assert gone and not alive
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
