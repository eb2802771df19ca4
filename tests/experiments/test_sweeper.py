"""The project's sweeper validates one job per new override value, and still stops a bad sweep."""

from __future__ import annotations

import importlib
import itertools
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.plugins import Plugins
from mlflow import MlflowClient
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[2]


class CountingLoader:
    def __init__(self) -> None:
        self.composed: list[list[str]] = []

    def load_sweep_config(self, master_config: Any, sweep_overrides: list[str]) -> Any:
        self.composed.append(list(sweep_overrides))
        return master_config


def sweeper_class() -> Any:
    """The class as Hydra's plugin scan left it (the scan executes plugin modules again, in place)."""
    Plugins.instance()
    return importlib.import_module("hydra_plugins.cosim_sweeper.cosim_sweeper").CosimSweeper


def test_one_composition_per_new_override_value():
    attacks, defences, seeds = ["a1", "a2", "a3"], ["d1", "d2"], ["0", "1", "2", "3"]
    batch = [[f"attack={a}", f"defense={d}", f"seed={s}"] for a, d, s in itertools.product(attacks, defences, seeds)]
    sweeper = sweeper_class()(max_batch_size=None)
    loader = CountingLoader()
    sweeper.hydra_context = SimpleNamespace(config_loader=loader)
    sweeper.config = OmegaConf.create({})
    sweeper.validate_batch_is_legal(batch)
    assert len(batch) == 24
    assert len(loader.composed) == 1 + (3 - 1) + (2 - 1) + (4 - 1)
    covered = {o for job in loader.composed for o in job}
    assert covered == {o for job in batch for o in job}  # every value was composed at least once
    assert loader.composed[0] == batch[0]


def test_run_config_selects_it():
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("run", return_hydra_config=True)
    assert cfg.hydra.sweeper._target_ == "hydra_plugins.cosim_sweeper.cosim_sweeper.CosimSweeper"


def test_a_misspelt_option_stops_the_sweep_before_any_job(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    env.pop("COSIM_MLFLOW_PARENT_RUN", None)
    cmd = [sys.executable, "-m", "experiments.run", "-m", "attack=injection,nope", "seed=0,1", "duration=1",
           "progress=false", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "Could not find 'attack/nope'" in proc.stderr
    assert not list((tmp_path / "sweep").glob("*/summary.json"))  # no job ran
    runs = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_runs(
        [e.experiment_id for e in MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()])
    assert [r.info.status for r in runs] == ["FAILED"]  # the sweep's parent run, with the error
    assert "Could not find 'attack/nope'" in runs[0].data.tags["error"]
