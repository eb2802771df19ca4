"""The Ray launcher runs a two-job sweep on a Ray head started on 127.0.0.1 and joined by address."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient

from experiments.plant import register_resolvers
from experiments.simulate import simulate
from tests.launchers.support import REPO, RayHead, run_sweep

register_resolvers()
# Long enough for the seed to matter: the demo's inspection station draws its first random
# number after 2.5 s, so seeds 0 and 1 give identical traces up to there.
DURATION = 4


@pytest.mark.slow
def test_ray_sweep_runs_both_jobs_on_the_cluster(ray_head: RayHead, tmp_path: Path) -> None:
    sweep = run_sweep("experiments.simulate",
                      ["hydra/launcher=ray", "plant=demo", f"duration={DURATION}", "seed=0,1", "plot=false",
                       f"hydra.launcher.ray.init.address={ray_head.address}"],
                      tmp_path / "sweep", prefix=ray_head.netns_prefix, env=ray_head.env)
    print(f"Ray head start {ray_head.start_s:.1f} s, sweep {sweep.wall_s:.1f} s")
    assert sweep.returncode == 0, sweep.output[-4000:]
    assert "Ray Launcher is launching 2 jobs" in sweep.output

    for num, seed in ((0, 0), (1, 1)):
        summary = sweep.job_summary(num)
        assert summary["status"] == "FINISHED" and summary["completed"] is True and summary["ticks"] == DURATION * 100
        assert (sweep.sweep_dir / str(num) / "trace.csv").is_file()
        hydra_cfg = yaml.safe_load((sweep.sweep_dir / str(num) / ".hydra" / "hydra.yaml").read_text())["hydra"]
        assert hydra_cfg["launcher"]["_target_"].endswith("RayLauncher")
        assert hydra_cfg["launcher"]["ray"]["init"]["address"] == ray_head.address
        assert f"seed={seed}" in hydra_cfg["overrides"]["task"]

    # The jobs ran in worker processes of *this* head (its log folder holds their output),
    # not in the driver and not in a private Ray the driver might have started instead.
    ran_in: dict[str, int] = {}
    for log in ray_head.worker_logs():
        pid = int(log.stem.rsplit("-", 1)[1])
        text = log.read_text(errors="replace")
        for num in ("0", "1"):
            if str(sweep.sweep_dir / num / "trace.csv") in text:
                ran_in[num] = pid
    assert set(ran_in) == {"0", "1"}, [p.name for p in ray_head.worker_logs()]
    assert sweep.driver_pid not in ran_in.values()
    # Ray forwards the workers' output to the driver, prefixed with the task and worker pid.
    for pid in set(ran_in.values()):
        assert re.search(rf"\(_run_job pid={pid}\)", sweep.output)

    # Determinism: each job got its own seed, and the job run by Ray gives the same bytes as the
    # same config run in-process.
    ray_trace = (sweep.sweep_dir / "1" / "trace.csv").read_bytes()
    assert ray_trace != (sweep.sweep_dir / "0" / "trace.csv").read_bytes()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("simulate", overrides=["plant=demo", f"duration={DURATION}", "seed=1", "progress=false",
                                             "plot=false"])
    simulate(cfg, tmp_path / "local")
    assert ray_trace == (tmp_path / "local" / "trace.csv").read_bytes()


@pytest.mark.slow
def test_ray_sweep_of_episodes_nests_in_one_mlflow_parent(ray_head: RayHead, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tasks_before = ray_head.tasks_started()
    sweep = run_sweep("experiments.run",
                      ["hydra/launcher=ray", "plant=demo", "twin=none", "network=none", "attack=none",
                       "defense=none", "duration=2", "seed=0,1", "plot=false", "progress=false",
                       f"baseline.cache_dir={tmp_path / 'baselines'}",
                       f"hydra.launcher.ray.init.address={ray_head.address}"],
                      tmp_path / "sweep", prefix=ray_head.netns_prefix,
                      env={**ray_head.env, "MLFLOW_TRACKING_URI": uri})
    assert sweep.returncode == 0, sweep.output[-4000:]
    parent_id = json.loads((sweep.sweep_dir / "mlflow_sweep.json").read_text())["run_id"]
    summaries = [sweep.job_summary(num, "summary.json") for num in (0, 1)]
    assert [s["status"] for s in summaries] == ["FINISHED", "FINISHED"]

    client = MlflowClient(uri)
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["cosim.role"] == "sweep"
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(c.info.run_id for c in children) == sorted(str(s["mlflow_run_id"]) for s in summaries)
    assert sorted(c.data.params["seed"] for c in children) == ["0", "1"]
    assert all(c.info.status == "FINISHED" for c in children)
    # Both episodes ran as tasks in this head's workers (a job in multirun mode prints nothing).
    assert ray_head.tasks_started() - tasks_before == 2
