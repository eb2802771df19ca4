"""The SLURM launcher's local executor (hydra-submitit-launcher, submitit_local) runs a two-job sweep."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.launchers.support import run_sweep


@pytest.mark.slow
def test_submitit_local_sweep_finishes_both_jobs(tmp_path: Path) -> None:
    sweep = run_sweep("experiments.simulate",
                      ["hydra/launcher=slurm_local", "plant=demo", "duration=2", "seed=0,1", "plot=false"],
                      tmp_path / "sweep")
    assert sweep.returncode == 0, sweep.output[-4000:]
    assert "Submitit 'local' sweep output dir" in sweep.output
    for num in (0, 1):
        summary = sweep.job_summary(num)
        assert summary["status"] == "FINISHED" and summary["completed"] is True and summary["ticks"] == 200
        hydra_cfg = yaml.safe_load((sweep.sweep_dir / str(num) / ".hydra" / "hydra.yaml").read_text())["hydra"]
        assert hydra_cfg["launcher"]["_target_"].endswith("LocalLauncher")

    # submitit ran each job in its own process (the job id of the local executor is its pid),
    # kept its bookkeeping under the sweep dir, and stored a result for each job.
    jobs = [p for p in (sweep.sweep_dir / ".submitit").iterdir() if p.name.isdigit()]
    assert len(jobs) == 2
    for job in jobs:
        assert int(job.name) not in (sweep.driver_pid, os.getpid())
        assert (job / f"{job.name}_0_result.pkl").is_file()
        assert "FINISHED" in (job / f"{job.name}_0_log.out").read_text()
