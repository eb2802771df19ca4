"""Determinism: the same config and seed give bit-identical summary.json and traces, whatever
the launcher — a single run, the basic launcher, the joblib launcher (loky processes) and the
Ray launcher (jobs on a Ray head on 127.0.0.1).

Two episodes: a demo-plant episode (an injection, a threshold detector, a defence) and a short
smart-factory episode with its twin, the network, an injection, a threshold detector and the
``cps_only`` containment orchestrator (safe mode, a cut conduit, an audit log), with its
baseline. What is compared:

* ``summary.json`` as JSON text after removing :data:`cosim.tracking.summary.WALL_CLOCK_KEYS`
  (wall times, MLflow run id, audit log path and head hash) — everything else bit for bit;
* ``trace.csv`` and ``trace.parquet`` byte for byte, and ``config.yaml``;
* ``audit.jsonl`` and ``alerts.jsonl`` line by line without their wall-clock fields at any
  depth (``wall``, an alert's ``wall_time``, the wall-clock keys, and the chain hashes
  ``prev``/``hash`` that cover them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cosim.tracking.summary import WALL_CLOCK_KEYS, deterministic_view
from tests.launchers.support import REPO, RayHead, ray_head, run_sweep  # noqa: F401 (ray_head: a fixture)
from tests.tracking.configs import write_test_conf

pytestmark = pytest.mark.filterwarnings("ignore:.*is validated against ConfigStore schema:UserWarning")

CASES = {  # experiment configs written into the test's config directory; job order of the sweeps
    "det_demo": """# @package _global_
defaults:
  - override /plant: demo
  - override /twin: none
  - override /network: none
  - override /attack: demo_press
  - override /defense: flag
duration: 3.0
seed: 2
""",
    "det_cell": """# @package _global_
defaults:
  - override /plant: smart_factory
  - override /twin: replica
  - override /network: cell
  - override /attack: injection
  - override /defense: cps_only
  - override /detector: thr_cell
attack:
  events:
    - {attack: injection, name: forced_press, target: plc.valve_cmd, at: 1.0, duration: 1.0, params: {value: true}}
duration: 5.0
seed: 4
""",
}
DETECTOR = """name: thr_cell
detectors:
  thr: {_target_: tests.tracking.components.ThresholdDetector, signal: press.pressure, threshold: 2.0}
"""
TRACES = ("trace.csv", "trace.parquet", "config.yaml")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("determinism")
    conf = write_test_conf(root / "conf")
    for name, text in CASES.items():
        (conf / "experiment").mkdir(exist_ok=True)
        (conf / "experiment" / f"{name}.yaml").write_text(text)
    (conf / "detector" / "thr_cell.yaml").write_text(DETECTOR)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "RAY_USAGE_STATS_ENABLED": "0"}
    common = [f"hydra.searchpath=[file://{conf}]", "progress=false", "plot=false", "mlflow.enabled=false",
              f"baseline.cache_dir={root / 'baselines'}"]
    return {"root": root, "env": env, "common": common, "runs": {}}


def _fresh_baselines(setup: dict[str, object]) -> None:
    # every launcher computes the baseline itself (baseline_cached is the same: false)
    shutil.rmtree(Path(str(setup["root"])) / "baselines", ignore_errors=True)


def _lines_without(path: Path, keys: tuple[str, ...]) -> list[str]:
    """The JSON lines of ``path`` without ``keys`` and the wall-clock keys, at any depth."""
    drop = (*WALL_CLOCK_KEYS, *keys)
    return [json.dumps(deterministic_view(json.loads(line), drop)) for line in path.read_text().splitlines()]


def _episode_files(run_dir: Path) -> dict[str, object]:
    """What must be identical: summary JSON text without the wall-clock keys, trace bytes..."""
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "FINISHED", summary.get("error")
    files: dict[str, object] = {"summary.json": json.dumps(deterministic_view(summary), indent=2)}
    for name in TRACES:
        files[name] = (run_dir / name).read_bytes()
    files["audit.jsonl"] = _lines_without(run_dir / "audit.jsonl", ("wall", "wall_time", "prev", "hash"))
    files["alerts.jsonl"] = _lines_without(run_dir / "alerts.jsonl", ("wall_time",))
    return files


def _compare(reference: dict[str, object], other: dict[str, object], label: str) -> None:
    for name, value in reference.items():
        assert other[name] == value, f"{label}: {name} differs"


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=REPO, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _reference(setup: dict[str, object]) -> dict[str, dict[str, object]]:
    """Both episodes through the basic launcher (one process, one job after the other)."""
    runs: dict[str, dict[str, object]] = setup["runs"]  # type: ignore[assignment]
    if "basic" not in runs:
        _fresh_baselines(setup)
        sweep = Path(str(setup["root"])) / "basic"
        _run(["-m", "hydra/launcher=basic", f"experiment={','.join(CASES)}", *setup["common"],  # type: ignore[list-item]
              f"hydra.sweep.dir={sweep}"], setup["env"])  # type: ignore[arg-type]
        runs["basic"] = {case: _episode_files(sweep / str(num)) for num, case in enumerate(CASES)}
    return runs["basic"]


def test_wall_clock_keys_are_the_only_differences_between_two_runs(setup: dict[str, object]) -> None:
    reference = _reference(setup)
    run_dir = Path(str(setup["root"])) / "single"
    _run(["experiment=det_demo", *setup["common"], f"hydra.run.dir={run_dir}"], setup["env"])  # type: ignore[list-item]
    _compare(reference["det_demo"], _episode_files(run_dir), "single run vs basic launcher")
    full = json.loads((run_dir / "summary.json").read_text())
    assert {"wall_time_s", "realtime_factor", "total_wall_s"} <= set(full) & set(WALL_CLOCK_KEYS)
    # the smart-factory episode exercised what the comparison is about
    cell = json.loads(reference["det_cell"]["summary.json"])  # type: ignore[arg-type]
    assert cell["detected"] is True and cell["parts_baseline"] is not None and cell["baseline_cached"] is False
    assert cell["defence"]["safe_mode_entries"] >= 1 and cell["defence"]["audit_chain_verified"] is True
    assert cell["twin_deviation_rms"] is not None


def test_joblib_launcher_gives_the_same_bytes(setup: dict[str, object]) -> None:
    reference = _reference(setup)
    _fresh_baselines(setup)
    sweep = Path(str(setup["root"])) / "joblib"
    proc = _run(["-m", "hydra/launcher=joblib", f"experiment={','.join(CASES)}", *setup["common"],  # type: ignore[list-item]
                 f"hydra.sweep.dir={sweep}"], setup["env"])  # type: ignore[arg-type]
    assert "Joblib.Parallel" in proc.stdout + proc.stderr
    for num, case in enumerate(CASES):
        _compare(reference[case], _episode_files(sweep / str(num)), f"joblib vs basic, {case}")


@pytest.mark.slow
def test_ray_launcher_gives_the_same_bytes(setup: dict[str, object], ray_head: RayHead) -> None:  # noqa: F811
    reference = _reference(setup)
    _fresh_baselines(setup)
    sweep = run_sweep("experiments.run",
                      ["hydra/launcher=ray", f"experiment={','.join(CASES)}", *setup["common"],  # type: ignore[list-item]
                       f"hydra.launcher.ray.init.address={ray_head.address}"],
                      Path(str(setup["root"])) / "ray", prefix=ray_head.netns_prefix,
                      env={**ray_head.env, **setup["env"]})  # type: ignore[dict-item]
    assert sweep.returncode == 0, sweep.output[-4000:]
    assert "Ray Launcher is launching 2 jobs" in sweep.output
    for num, case in enumerate(CASES):
        _compare(reference[case], _episode_files(sweep.sweep_dir / str(num)), f"Ray vs basic, {case}")
